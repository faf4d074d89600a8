"""On-disk cache of integrated frames: one ``.npz`` per (sample, framing parameters), written atomically.

The key is a dict holding everything the frames depend on (source file identity, segment, number of frames, split
rule, sensor size, resize, format version); its SHA-1 names the file and the key itself is stored inside and
compared on read. A partial, corrupt (zip CRC) or mismatching file is deleted and rebuilt.
"""
from __future__ import annotations

import hashlib
import json
import os
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np

__all__ = ["FrameCache", "source_identity"]

CACHE_VERSION = 1


def source_identity(path: str | os.PathLike) -> dict:
    """Path, size and modification time of a source file (a changed file gives a new cache key)."""
    st = os.stat(path)
    return {"path": str(Path(path).resolve()), "size": st.st_size, "mtime_ns": st.st_mtime_ns}


class FrameCache:
    """``get(key, build)``: the cached array for ``key``, built by ``build()`` and stored on a miss."""

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root)
        self.rebuilt = 0  # corrupt or mismatching files replaced (for tests and logs)

    def path_for(self, key: dict) -> Path:
        digest = hashlib.sha1(self._encode(key).encode()).hexdigest()
        return self.root / digest[:2] / f"{digest}.npz"

    @staticmethod
    def _encode(key: dict) -> str:
        return json.dumps({"cache_version": CACHE_VERSION, **key}, sort_keys=True, default=str)

    def _read(self, path: Path, key: dict) -> np.ndarray | None:
        try:
            with np.load(path, allow_pickle=False) as npz:
                if str(npz["key"]) != self._encode(key):
                    return None
                return npz["frames"].astype(np.float32)
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, zlib.error):
            return None

    def get(self, key: dict, build: Callable[[], np.ndarray]) -> np.ndarray:
        path = self.path_for(key)
        if path.exists():
            frames = self._read(path, key)
            if frames is not None:
                return frames
            self.rebuilt += 1
            path.unlink(missing_ok=True)
        frames = np.asarray(build(), dtype=np.float32)
        self._write(path, key, frames)
        return frames

    def _write(self, path: Path, key: dict, frames: np.ndarray) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        counts = frames.astype(np.uint32) if np.array_equal(frames, np.round(frames)) and frames.min(initial=0) >= 0 else frames
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        try:
            with open(tmp, "wb") as fh:
                np.savez_compressed(fh, frames=counts, key=np.array(self._encode(key)))
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)

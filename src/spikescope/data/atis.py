"""N-Caltech101 ATIS ``.bin`` files: 5 bytes per event, no header.

``x = b0``, ``y = b1``, ``p = b2 >> 7``, ``t = ((b2 & 0x7F) << 16) | (b3 << 8) | b4`` (µs), as SpikingJelly's
``load_ATIS_bin``.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .events import EventFileError, make_events

__all__ = ["read_atis", "write_atis"]


def read_atis(path: str | os.PathLike) -> np.ndarray:
    """Events of an N-Caltech101 ``.bin`` file."""
    path = Path(path)
    raw = np.fromfile(path, dtype=np.uint8)
    if raw.size % 5:
        raise EventFileError(
            f"{path}: {raw.size} bytes is not a whole number of 5-byte ATIS events; the file is truncated"
        )
    rec = raw.reshape(-1, 5).astype(np.int64)
    t = ((rec[:, 2] & 0x7F) << 16) | (rec[:, 3] << 8) | rec[:, 4]
    return make_events(t, rec[:, 0], rec[:, 1], rec[:, 2] >> 7)


def write_atis(path: str | os.PathLike, events: np.ndarray) -> None:
    """Write events so that :func:`read_atis` returns them (x, y < 256, t < 2**23)."""
    t = events["t"].astype(np.int64)
    if np.any(t >= 1 << 23) or np.any(t < 0) or np.any(events["x"] > 255) or np.any(events["y"] > 255):
        raise ValueError("write_atis: needs 0 <= t < 2**23 µs and x, y < 256")
    rec = np.stack(
        [events["x"], events["y"], (events["p"].astype(np.int64) << 7) | (t >> 16), (t >> 8) & 0xFF, t & 0xFF], axis=1
    ).astype(np.uint8)
    Path(path).write_bytes(rec.tobytes())

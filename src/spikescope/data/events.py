"""The event record shared by every reader, and ``load_events(path)`` dispatching on the file's header.

Events are a numpy structured array of dtype :data:`EVENT_DTYPE` with fields ``t`` (µs, int64), ``x``, ``y``
(pixel column and row, int16) and ``p`` (polarity 0/1, uint8), in file order (time-sorted for the supported formats).
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

__all__ = ["EVENT_DTYPE", "EventFileError", "make_events", "load_events", "detect_format", "aedat_version"]

EVENT_DTYPE = np.dtype([("t", np.int64), ("x", np.int16), ("y", np.int16), ("p", np.uint8)])


class EventFileError(ValueError):
    """An event file that cannot be parsed (unknown format, truncated, malformed header)."""


def make_events(t, x, y, p) -> np.ndarray:
    """Pack four equal-length 1-D arrays into an :data:`EVENT_DTYPE` structured array."""
    t, x, y, p = (np.asarray(a) for a in (t, x, y, p))
    if not (t.shape == x.shape == y.shape == p.shape) or t.ndim != 1:
        raise ValueError(f"t, x, y, p must be 1-D of equal length, got shapes {t.shape} {x.shape} {y.shape} {p.shape}")
    out = np.empty(t.shape[0], dtype=EVENT_DTYPE)
    out["t"], out["x"], out["y"], out["p"] = t, x, y, p
    return out


def aedat_version(head: bytes, path: str | os.PathLike) -> str:
    """The version of an ``#!AER-DAT<version>`` first line; versions other than 2.x and 3.x are refused."""
    line = head.split(b"\n", 1)[0].strip().decode("ascii", "replace")
    version = line.removeprefix("#!AER-DAT")
    if not version or version.split(".")[0] not in ("2", "3"):
        raise EventFileError(
            f"{path}: AEDAT version {version or '?'} ({line!r}) is not supported; spikescope reads AEDAT 2.0 "
            "(CIFAR10-DVS) and 3.1 (DVS128 Gesture): convert the file (e.g. with dv-processing) to one of those"
        )
    return version


def detect_format(path: str | os.PathLike) -> str:
    """``"aedat31"``, ``"aedat2"`` or ``"atis"`` from the first bytes of the file (ATIS ``.bin`` has no header)."""
    path = Path(path)
    with open(path, "rb") as fh:
        head = fh.read(64)
    if head.startswith(b"#!AER-DAT"):
        version = aedat_version(head, path)
        return {"2": "aedat2", "3": "aedat31"}[version.split(".")[0]]
    if head.startswith(b"#") and path.suffix.lower() == ".aedat":
        return "aedat2"
    if path.suffix.lower() == ".bin":
        return "atis"
    raise EventFileError(
        f"{path}: unknown event file format (first bytes {head[:16]!r}); supported: AEDAT 3.1 (DVS128 Gesture), "
        "AEDAT 2 (CIFAR10-DVS) and ATIS .bin (N-Caltech101)"
    )


def load_events(path: str | os.PathLike) -> np.ndarray:
    """Read any supported event file into an :data:`EVENT_DTYPE` array, the format detected from its header."""
    from .aedat2 import read_aedat2
    from .aedat31 import read_aedat31
    from .atis import read_atis

    readers = {"aedat31": read_aedat31, "aedat2": read_aedat2, "atis": read_atis}
    return readers[detect_format(path)](path)

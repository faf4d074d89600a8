"""CIFAR10-DVS AEDAT 2 files: ``#`` header lines, then big-endian uint32 pairs (address, timestamp µs).

Address bits: ``x_raw = (a & 0xFE) >> 1``, ``y_raw = (a & 0x7F00) >> 8``, ``pol = a & 1``. Like SpikingJelly (which
the SMA paper used) the reader returns ``x = 127 - y_raw``, ``y = 127 - x_raw``, ``p = 1 - pol``.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .events import EventFileError, aedat_version, make_events

__all__ = ["read_aedat2", "write_aedat2"]


def _skip_header(buf: bytes) -> int:
    pos = 0
    while buf[pos : pos + 1] == b"#":
        nl = buf.find(b"\n", pos)
        if nl < 0:
            return len(buf)
        pos = nl + 1
    return pos


def read_aedat2(path: str | os.PathLike) -> np.ndarray:
    """Events of a CIFAR10-DVS ``.aedat`` file (128x128, SpikingJelly's orientation)."""
    path = Path(path)
    buf = path.read_bytes()
    if buf.startswith(b"#!AER-DAT") and aedat_version(buf[:64], path).split(".")[0] != "2":
        raise EventFileError(f"{path}: an AEDAT {aedat_version(buf[:64], path)} file, not AEDAT 2; use load_events")
    pos = _skip_header(buf)
    body = len(buf) - pos
    if body % 8:
        raise EventFileError(
            f"{path}: {body} bytes after the header is not a whole number of 8-byte (address, timestamp) "
            "records; the file is truncated or not a CIFAR10-DVS AEDAT file"
        )
    words = np.frombuffer(buf, ">u4", offset=pos).reshape(-1, 2)
    addr, t = words[:, 0], words[:, 1].astype(np.int64)
    x_raw = (addr & 0xFE) >> 1
    y_raw = (addr & 0x7F00) >> 8
    return make_events(t, 127 - y_raw.astype(np.int64), 127 - x_raw.astype(np.int64), 1 - (addr & 1).astype(np.int64))


def write_aedat2(path: str | os.PathLike, events: np.ndarray) -> None:
    """Write events so that :func:`read_aedat2` returns them (coordinates in 0..127, t < 2**32)."""
    x, y = events["x"].astype(np.uint32), events["y"].astype(np.uint32)
    if np.any(x > 127) or np.any(y > 127):
        raise ValueError("write_aedat2: CIFAR10-DVS coordinates must be in 0..127")
    addr = ((127 - x) << 8) | ((127 - y) << 1) | (1 - events["p"].astype(np.uint32))
    words = np.stack([addr, events["t"].astype(np.uint32)], axis=1).astype(">u4")
    Path(path).write_bytes(b"#!AER-DAT2.0\r\n# This is a raw AE data file - do not edit\r\n" + words.tobytes())

"""AEDAT 3.1 (DVS128 Gesture): ASCII header, then packets of a 28-byte header and ``capacity * size`` bytes.

Packet header (little-endian): uint16 eventType, uint16 eventSource, uint32 eventSize, eventTSOffset,
eventTSOverflow, eventCapacity, eventNumber, eventValid. Polarity packets (type 1, 8 bytes per event): uint32 data,
uint32 timestamp with ``x = (data >> 17) & 0x7FFF``, ``y = (data >> 2) & 0x7FFF``, ``p = (data >> 1) & 1``,
``t = timestamp | overflow << 31``. As SpikingJelly's ``load_aedat_v3`` (which the SMA paper used), every one of the
``capacity`` slots of a polarity packet is read and the valid bit is not filtered; the other types of the format
(0 special ... 12 spike) are skipped, and packets of a type outside it are skipped with a warning naming them.
"""
from __future__ import annotations

import os
import warnings
from collections import Counter
from pathlib import Path

import numpy as np

from .events import EVENT_DTYPE, EventFileError, make_events

__all__ = ["read_aedat31", "write_aedat31", "read_gesture_labels", "write_gesture_labels"]

END_HEADER = b"#!END-HEADER\r\n"
_KNOWN_TYPES = range(13)  # special, polarity, frame, imu6, imu9, sample, ear, config, point1d-4d, spike
_PACKET = np.dtype(
    [("type", "<u2"), ("source", "<u2"), ("size", "<u4"), ("ts_offset", "<u4"), ("ts_overflow", "<u4"),
     ("capacity", "<u4"), ("number", "<u4"), ("valid", "<u4")]
)


def _header_end(buf: bytes, path: Path) -> int:
    pos = 0
    while pos < len(buf) and buf[pos : pos + 1] == b"#":
        nl = buf.find(b"\n", pos)
        if nl < 0:
            raise EventFileError(f"{path}: AEDAT 3.1 header is not terminated by {END_HEADER!r} (truncated file?)")
        line = buf[pos : nl + 1]
        pos = nl + 1
        if line == END_HEADER:
            return pos
    raise EventFileError(f"{path}: no {END_HEADER!r} line in the AEDAT 3.1 header")


def read_aedat31(path: str | os.PathLike) -> np.ndarray:
    """All polarity events of an AEDAT 3.1 file as an :data:`EVENT_DTYPE` array (file order)."""
    path = Path(path)
    buf = path.read_bytes()
    if not buf.startswith(b"#!AER-DAT3"):
        raise EventFileError(f"{path}: not an AEDAT 3.x file (it must start with '#!AER-DAT3.1')")
    pos = _header_end(buf, path)
    chunks, unknown = [], Counter()
    while pos < len(buf):
        if pos + _PACKET.itemsize > len(buf):
            raise EventFileError(f"{path}: truncated packet header at byte {pos} (file size {len(buf)})")
        head = np.frombuffer(buf, _PACKET, count=1, offset=pos)[0]
        pos += _PACKET.itemsize
        nbytes = int(head["capacity"]) * int(head["size"])
        if pos + nbytes > len(buf):
            raise EventFileError(
                f"{path}: truncated packet at byte {pos - _PACKET.itemsize}: it declares {nbytes} bytes of events, "
                f"{len(buf) - pos} remain"
            )
        if head["type"] == 1 and nbytes:
            if head["size"] < 8:
                raise EventFileError(f"{path}: polarity packet with eventSize {head['size']} < 8")
            rec = np.frombuffer(buf, np.uint8, count=nbytes, offset=pos).reshape(-1, int(head["size"]))[:, :8]
            words = np.ascontiguousarray(rec).view("<u4")
            data, ts = words[:, 0], words[:, 1].astype(np.int64)
            chunks.append((data, ts | (np.int64(head["ts_overflow"]) << 31)))
        elif int(head["type"]) not in _KNOWN_TYPES:
            unknown[int(head["type"])] += int(head["capacity"])
        pos += nbytes
    if unknown:
        types = ", ".join(f"type {k} ({n} slots)" for k, n in sorted(unknown.items()))
        warnings.warn(f"{path}: skipped packets of event types that AEDAT 3.1 does not define: {types}; the file may "
                      "be corrupt (the polarity events of the other packets were read)", stacklevel=2)
    if not chunks:
        return np.empty(0, dtype=EVENT_DTYPE)
    data = np.concatenate([c[0] for c in chunks])
    t = np.concatenate([c[1] for c in chunks])
    return make_events(t, (data >> 17) & 0x7FFF, (data >> 2) & 0x7FFF, (data >> 1) & 1)


def write_aedat31(path: str | os.PathLike, events: np.ndarray, packet_size: int = 4096) -> None:
    """Write events as an AEDAT 3.1 file of polarity packets (valid bit set); ``t`` must be < 2**63."""
    path = Path(path)
    header = b"#!AER-DAT3.1\r\n#Format: RAW\r\n#Source 1: DVS128\r\n" + END_HEADER
    parts = [header]
    t = events["t"].astype(np.int64)
    for start in range(0, len(events), packet_size):
        sl = slice(start, start + packet_size)
        n = len(events[sl])
        overflow = t[sl] >> 31
        if np.any(overflow != overflow[0]):
            raise ValueError("write_aedat31: a packet spans a timestamp overflow; use a smaller packet_size")
        head = np.zeros(1, _PACKET)
        head[0] = (1, 1, 8, 4, int(overflow[0]), n, n, n)
        data = (
            (events["x"][sl].astype(np.uint32) << 17)
            | (events["y"][sl].astype(np.uint32) << 2)
            | (events["p"][sl].astype(np.uint32) << 1)
            | 1
        )
        words = np.stack([data, (t[sl] & 0x7FFFFFFF).astype(np.uint32)], axis=1).astype("<u4")
        parts += [head.tobytes(), words.tobytes()]
    path.write_bytes(b"".join(parts))


def read_gesture_labels(path: str | os.PathLike) -> np.ndarray:
    """DVS128 Gesture ``*_labels.csv`` (header row; class 1..11, startTime_usec, endTime_usec) as int64 ``[n, 3]``."""
    path = Path(path)
    try:
        rows = np.loadtxt(path, dtype=np.int64, delimiter=",", skiprows=1, ndmin=2)
    except ValueError as err:
        raise EventFileError(f"{path}: malformed label csv ({err}); expected rows 'class,startTime_usec,endTime_usec'") from err
    if rows.size and rows.shape[1] != 3:
        raise EventFileError(f"{path}: expected 3 columns (class, startTime_usec, endTime_usec), got {rows.shape[1]}")
    return rows.reshape(-1, 3)


def write_gesture_labels(path: str | os.PathLike, rows) -> None:
    """Write ``(class 1-based, start_us, end_us)`` rows in the DVS128 Gesture csv layout."""
    lines = ["class,startTime_usec,endTime_usec"] + [f"{int(c)},{int(s)},{int(e)}" for c, s, e in rows]
    Path(path).write_text("\n".join(lines) + "\n")

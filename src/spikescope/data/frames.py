"""Integrate an event stream into a fixed number of count frames (SpikingJelly's rule, used by the SMA paper).

With N events and M frames:

* ``split_by="number"``: frame j holds events ``[⌊N/M⌋·j, ⌊N/M⌋·(j+1))``; the last frame runs to N.
* ``split_by="time"``: with ``ΔT = ⌊(t[N-1] - t[0]) / M⌋``, frame j holds the events with
  ``t[0] + ΔT·j <= t < t[0] + ΔT·(j+1)``; the last frame runs to the end of the stream.

Each frame counts events per (polarity, y, x): channel 0 is ``p == 0``, channel 1 every other polarity.
Events must be time-sorted for ``"time"`` (the readers return file order, which is sorted for the datasets here).
"""
from __future__ import annotations

from typing import Literal

import numpy as np

__all__ = ["integrate_frames", "frame_bounds"]

SplitBy = Literal["number", "time"]


def frame_bounds(t: np.ndarray, num_frames: int, split_by: SplitBy = "number") -> np.ndarray:
    """Start/stop event indices ``[M, 2]`` of each frame (half-open ranges into the stream)."""
    n = int(t.shape[0])
    if num_frames < 1:
        raise ValueError(f"num_frames must be >= 1, got {num_frames}")
    j = np.arange(num_frames, dtype=np.int64)
    if split_by == "number":
        step = n // num_frames
        lo, hi = step * j, step * (j + 1)
    elif split_by == "time":
        if n == 0:
            lo = hi = np.zeros(num_frames, dtype=np.int64)
        else:
            t = np.asarray(t, dtype=np.int64)
            dt = (int(t[-1]) - int(t[0])) // num_frames
            edges = int(t[0]) + dt * np.arange(num_frames + 1, dtype=np.int64)
            idx = np.searchsorted(t, edges, side="left")
            lo, hi = idx[:-1], idx[1:]
    else:
        raise ValueError(f"split_by must be 'number' or 'time', got {split_by!r}")
    hi = hi.copy()
    hi[-1] = n
    return np.stack([lo, hi], axis=1)


def integrate_frames(
    events: np.ndarray,
    num_frames: int,
    height: int,
    width: int,
    split_by: SplitBy = "number",
    resize: tuple[int, int] | None = None,
) -> np.ndarray:
    """Count frames ``float32 [num_frames, 2, H, W]`` of an :data:`~spikescope.data.events.EVENT_DTYPE` stream.

    ``height``/``width`` are the sensor size; every event must lie inside it. ``resize=(h, w)`` maps the
    coordinates to a coarser grid (``x·w // width``, ``y·h // height``) before counting, so the counts of the
    pixels merged into one are summed and the output is ``[num_frames, 2, h, w]``.
    """
    x = events["x"].astype(np.int64)
    y = events["y"].astype(np.int64)
    if x.size and (x.min() < 0 or y.min() < 0 or x.max() >= width or y.max() >= height):
        raise ValueError(
            f"events outside the {height}x{width} sensor (x in [{x.min()}, {x.max()}], y in [{y.min()}, {y.max()}]); "
            "pass the dataset's sensor size as height/width"
        )
    out_h, out_w = (height, width) if resize is None else resize
    if resize is not None:
        x, y = x * out_w // width, y * out_h // height
    pol = (events["p"] != 0).astype(np.int64)
    bounds = frame_bounds(events["t"], num_frames, split_by)
    frame_of = np.full(x.size, -1, dtype=np.int64)
    for j, (lo, hi) in enumerate(bounds):
        frame_of[lo:hi] = j
    keep = frame_of >= 0
    flat = ((frame_of * 2 + pol) * out_h + y) * out_w + x
    counts = np.bincount(flat[keep], minlength=num_frames * 2 * out_h * out_w)
    return counts.astype(np.float32).reshape(num_frames, 2, out_h, out_w)

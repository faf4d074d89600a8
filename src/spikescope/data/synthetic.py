"""Synthetic event data: moving shapes rendered through a simulated event camera, written in the real file formats.

Each sample is a bright square or disc crossing a textured background along one of ``num_classes`` directions
(class k moves at angle ``2πk / num_classes``). Intensity frames are rendered at ``steps`` instants; a pixel emits
an ON (OFF) event each time its log intensity rises (falls) by its own threshold ``C·(1 + σ·n_pixel)`` above
(below) its reference level, which then moves by that threshold, as a DVS pixel does. Background shot noise is
added. The samples are written as DVS128 Gesture (AEDAT 3.1 + label csv + trial lists), CIFAR10-DVS (AEDAT 2) or
N-Caltech101 (ATIS ``.bin``) folders, so the real readers and dataset classes load them.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from .aedat2 import write_aedat2
from .aedat31 import write_aedat31, write_gesture_labels
from .atis import write_atis
from .events import EVENT_DTYPE, make_events

__all__ = ["SyntheticConfig", "render_sample", "simulate_events", "write_synthetic_dataset"]

Layout = Literal["dvs128", "cifar10dvs", "ncaltech101"]


@dataclass(frozen=True)
class SyntheticConfig:
    num_classes: int = 4
    samples_per_class: int = 40
    size: int = 32  # sensor is size x size
    steps: int = 40  # rendered intensity frames per sample
    duration_us: int = 400_000
    threshold: float = 0.2  # log-intensity contrast threshold C
    threshold_sigma: float = 0.03  # per-pixel relative threshold mismatch
    noise_rate_hz: float = 2.0  # background shot-noise events per pixel per second
    test_fraction: float = 0.25
    seed: int = 0


def render_sample(cfg: SyntheticConfig, label: int, rng: np.random.Generator) -> np.ndarray:
    """Intensity frames ``[steps, size, size]`` in (0, 1] of one moving shape of class ``label``."""
    s = cfg.size
    yy, xx = np.mgrid[0:s, 0:s].astype(np.float64)
    freq = rng.uniform(0.2, 0.6, size=2)
    background = 0.25 + 0.08 * np.sin(freq[0] * xx + rng.uniform(0, 6)) * np.cos(freq[1] * yy + rng.uniform(0, 6))
    angle = 2 * np.pi * label / cfg.num_classes + rng.normal(0, 0.15)
    direction = np.array([np.cos(angle), np.sin(angle)])
    travel = s * rng.uniform(0.45, 0.65)
    centre = s / 2 + rng.normal(0, s * 0.08, size=2)
    start = centre - direction * travel / 2
    radius = s * rng.uniform(0.1, 0.18)
    square = rng.random() < 0.5
    level = rng.uniform(0.7, 1.0)
    frames = np.empty((cfg.steps, s, s))
    for k in range(cfg.steps):
        cx, cy = start + direction * travel * k / (cfg.steps - 1)
        if square:
            dist = np.maximum(np.abs(xx - cx), np.abs(yy - cy)) - radius
        else:
            dist = np.hypot(xx - cx, yy - cy) - radius
        cover = np.clip(0.5 - dist, 0.0, 1.0)  # anti-aliased edge, one pixel wide
        frames[k] = background * (1 - cover) + level * cover
    return frames


def simulate_events(frames: np.ndarray, cfg: SyntheticConfig, rng: np.random.Generator) -> np.ndarray:
    """Events of an intensity sequence ``[steps, H, W]`` through a DVS pixel model, sorted by time."""
    steps, h, w = frames.shape
    log_i = np.log(frames + 1e-3)
    thresh = cfg.threshold * (1 + cfg.threshold_sigma * rng.standard_normal((h, w)))
    thresh = np.maximum(thresh, 0.05)
    ref = log_i[0].copy()
    dt = cfg.duration_us / (steps - 1)
    ts, xs, ys, ps = [], [], [], []
    for k in range(1, steps):
        diff = log_i[k] - ref
        n = np.floor(np.abs(diff) / thresh).astype(np.int64)
        ref += np.sign(diff) * n * thresh
        iy, ix = np.nonzero(n)
        if iy.size == 0:
            continue
        reps = n[iy, ix]
        order = np.concatenate([np.arange(r) for r in reps])
        t = (k - 1) * dt + dt * (order + rng.uniform(0, 1, order.size)) / np.repeat(reps, reps)
        ts.append(t)
        xs.append(np.repeat(ix, reps))
        ys.append(np.repeat(iy, reps))
        ps.append(np.repeat(diff[iy, ix] > 0, reps))
    n_noise = rng.poisson(cfg.noise_rate_hz * h * w * cfg.duration_us * 1e-6)
    ts.append(rng.uniform(0, cfg.duration_us, n_noise))
    xs.append(rng.integers(0, w, n_noise))
    ys.append(rng.integers(0, h, n_noise))
    ps.append(rng.random(n_noise) < 0.5)
    t = np.concatenate(ts).astype(np.int64)
    order = np.argsort(t, kind="stable")
    return make_events(t[order], np.concatenate(xs)[order], np.concatenate(ys)[order], np.concatenate(ps)[order])


def _samples(cfg: SyntheticConfig):
    """``(index, label, events)`` for every sample, classes interleaved, deterministic in ``cfg.seed``."""
    rng = np.random.default_rng(cfg.seed)
    for i in range(cfg.samples_per_class):
        for label in range(cfg.num_classes):
            yield i, label, simulate_events(render_sample(cfg, label, rng), cfg, rng)


def write_synthetic_dataset(root: str | os.PathLike, layout: Layout = "dvs128", cfg: SyntheticConfig | None = None) -> Path:
    """Write a synthetic dataset under ``root`` in the folder layout of ``layout``; returns ``root``.

    * ``dvs128``: ``userNN_synthetic.aedat`` (one sample of every class per file, 100 ms apart) with
      ``userNN_synthetic_labels.csv``, ``trials_to_train.txt`` / ``trials_to_test.txt`` (the last
      ``test_fraction`` of the users are the test trials).
    * ``cifar10dvs``: ``classK/synthetic_classK_i.aedat``.
    * ``ncaltech101``: ``Caltech101/classK/image_iiii.bin``.
    """
    cfg = cfg or SyntheticConfig()
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    width = len(str(cfg.num_classes - 1))
    if layout == "dvs128":
        n_test = max(1, round(cfg.samples_per_class * cfg.test_fraction))
        per_user: dict[int, list] = {}
        for i, label, ev in _samples(cfg):
            per_user.setdefault(i, []).append((label, ev))
        for i, items in per_user.items():
            name = f"user{i + 1:02d}_synthetic"
            gap = 100_000
            offset, chunks, rows = gap, [], []
            order = np.random.default_rng(cfg.seed + 1000 + i).permutation(len(items))
            for j in order:
                label, ev = items[j]
                shifted = ev.copy()
                shifted["t"] += offset
                chunks.append(shifted)
                rows.append((label + 1, offset, offset + cfg.duration_us))
                offset += cfg.duration_us + gap
            write_aedat31(root / f"{name}.aedat", np.concatenate(chunks) if chunks else np.empty(0, EVENT_DTYPE))
            write_gesture_labels(root / f"{name}_labels.csv", rows)
        users = [f"user{i + 1:02d}_synthetic.aedat" for i in sorted(per_user)]
        (root / "trials_to_train.txt").write_text("\n".join(users[: len(users) - n_test]) + "\n")
        (root / "trials_to_test.txt").write_text("\n".join(users[len(users) - n_test :]) + "\n")
    elif layout in ("cifar10dvs", "ncaltech101"):
        base = root / "Caltech101" if layout == "ncaltech101" else root
        for i, label, ev in _samples(cfg):
            folder = base / f"class{label:0{width}d}"
            folder.mkdir(parents=True, exist_ok=True)
            if layout == "cifar10dvs":
                write_aedat2(folder / f"synthetic_class{label:0{width}d}_{i}.aedat", ev)
            else:
                write_atis(folder / f"image_{i + 1:04d}.bin", ev)
    else:
        raise ValueError(f"unknown layout {layout!r}; use dvs128, cifar10dvs or ncaltech101")
    return root

"""Augmentation of event frames ``[T, 2, H, W]``: one random transform per sample, shared by all T frames."""
from __future__ import annotations

import torch

__all__ = ["FlipTranslate"]


class FlipTranslate:
    """Horizontal flip with probability ``flip_p`` and an integer shift of up to ``max_shift`` pixels in x and y.

    The SMA CIFAR10-DVS recipe (RandomHorizontalFlip 0.5 + RandomAffine translate 5 px); draws from torch's global
    RNG, so a resumed run replays the same augmentations. Vacated pixels are zero.
    """

    def __init__(self, flip_p: float = 0.5, max_shift: int = 5) -> None:
        self.flip_p = flip_p
        self.max_shift = max_shift

    def __call__(self, frames: torch.Tensor) -> torch.Tensor:
        if torch.rand(()) < self.flip_p:
            frames = frames.flip(-1)
        dx, dy = (torch.randint(-self.max_shift, self.max_shift + 1, (2,))).tolist()
        out = torch.zeros_like(frames)
        h, w = frames.shape[-2:]
        ys, yd = (slice(0, h - dy), slice(dy, h)) if dy >= 0 else (slice(-dy, h), slice(0, h + dy))
        xs, xd = (slice(0, w - dx), slice(dx, w)) if dx >= 0 else (slice(-dx, w), slice(0, w + dx))
        out[..., yd, xd] = frames[..., ys, xs]
        return out

"""Anchors of the released RPN (mmdet ``AnchorGenerator``), with its stride labels or the true strides.

Level ``l`` (P2..P6) has base size ``32 * 2 ** l`` and ratios ``r = h / w`` in (0.5, 1, 2): ``w = size / sqrt(r)``,
``h = size * sqrt(r)``, centred at (0, 0), **not rounded** (torchvision rounds). The anchor at grid cell
``(iy, ix)`` is the base shifted by ``(ix * s, iy * s)``; order (row, column, ratio). The grid step ``s`` is
``STRIDES[layout][l]``: ``"official"`` = (4, 8, 16, 32, 64), the labels the released detector assumes although
P5 / P6 are stride-16 / 32 maps (its P5/P6 anchors step by twice their feature spacing); ``"corrected"`` =
(4, 8, 16, 16, 32), the maps' true strides (what torchvision's generator infers).
"""
from __future__ import annotations

import math

import torch

__all__ = ["STRIDES", "SIZES", "RATIOS", "base_anchors", "grid_anchors", "valid_flags"]

STRIDES = {"official": (4, 8, 16, 32, 64), "corrected": (4, 8, 16, 16, 32)}
SIZES = (32, 64, 128, 256, 512)
RATIOS = (0.5, 1.0, 2.0)


def base_anchors(size: float, ratios=RATIOS, device=None) -> torch.Tensor:
    """``[len(ratios), 4]`` anchors centred at the origin."""
    r = torch.tensor(ratios, dtype=torch.float32, device=device).sqrt()
    w, h = size / r, size * r
    return torch.stack([-0.5 * w, -0.5 * h, 0.5 * w, 0.5 * h], dim=1)


def grid_anchors(size: float, stride: int, grid: tuple[int, int], device=None) -> torch.Tensor:
    """``[H * W * 3, 4]`` anchors of one level with a ``grid = (H, W)`` feature map."""
    h, w = grid
    ys = torch.arange(h, dtype=torch.float32, device=device) * stride
    xs = torch.arange(w, dtype=torch.float32, device=device) * stride
    yy, xx = torch.meshgrid(ys, xs, indexing="ij")
    shifts = torch.stack([xx, yy, xx, yy], dim=-1).reshape(-1, 1, 4)
    return (shifts + base_anchors(size, device=device)[None]).reshape(-1, 4)


def valid_flags(grid: tuple[int, int], stride: int, pad_hw: tuple[int, int], device=None) -> torch.Tensor:
    """``[H * W * 3]`` bool: anchors at ``ix < ceil(W_pad / s)`` and ``iy < ceil(H_pad / s)`` (``pad_hw``: the
    image's size padded to a multiple of 32); other anchors sit in padding (as counted with stride ``s``)."""
    h, w = grid
    vh, vw = min(math.ceil(pad_hw[0] / stride), h), min(math.ceil(pad_hw[1] / stride), w)
    ok = torch.zeros(h, w, dtype=torch.bool, device=device)
    ok[:vh, :vw] = True
    return ok[:, :, None].expand(h, w, len(RATIOS)).reshape(-1)

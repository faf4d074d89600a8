"""Run per-frame layers on time-first sequences ``[T, B, ...]`` by folding T into the batch.

``SeqToBatch(module)`` wraps any module. The named layers below are the usual ``torch.nn`` layers whose forward
accepts ``[T, B, ...]``; they are subclasses, so their state-dict keys are exactly those of ``torch.nn`` and
released checkpoints load without renaming::

    conv = TConv2d(3, 64, 3, padding=1)      # [T, B, 3, H, W] -> [T, B, 64, H, W]
    bn = TBatchNorm2d(64)                    # statistics over the folded T*B batch
"""
from __future__ import annotations

import torch
from torch import nn

__all__ = [
    "fold_time",
    "unfold_time",
    "SeqToBatch",
    "TConv1d",
    "TConv2d",
    "TBatchNorm1d",
    "TBatchNorm2d",
    "TMaxPool2d",
    "TAvgPool2d",
    "TAdaptiveAvgPool2d",
    "TimeSharedDropout",
]


def fold_time(x: torch.Tensor) -> torch.Tensor:
    """``[T, B, ...] -> [T*B, ...]``."""
    if x.dim() < 3:
        raise ValueError(f"expected a time-first tensor [T, B, ...] with at least 3 dims, got shape {tuple(x.shape)}")
    return x.flatten(0, 1)


def unfold_time(y: torch.Tensor, T: int) -> torch.Tensor:
    """``[T*B, ...] -> [T, B, ...]``."""
    return y.unflatten(0, (T, y.shape[0] // T))


class SeqToBatch(nn.Module):
    """Apply ``module`` to every timestep of ``[T, B, ...]`` at once (T folded into the batch)."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return unfold_time(self.module(fold_time(x)), x.shape[0])


def _time_folded(base: type[nn.Module], frame_dims: int) -> type[nn.Module]:
    """Subclass ``base`` so that forward takes ``[T, B, *frame]`` (frame of ``frame_dims`` dims incl. channels)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != frame_dims + 2:
            raise ValueError(
                f"{type(self).__name__}: expected [T, B, ...] with {frame_dims + 2} dims, got shape {tuple(x.shape)}"
            )
        return unfold_time(base.forward(self, x.flatten(0, 1)), x.shape[0])

    doc = f"``torch.nn.{base.__name__}`` on ``[T, B, ...]`` (T folded into the batch; same state-dict keys)."
    return type(f"T{base.__name__}", (base,), {"forward": forward, "__doc__": doc, "__module__": __name__})


TConv1d = _time_folded(nn.Conv1d, 2)
TConv2d = _time_folded(nn.Conv2d, 3)
TBatchNorm1d = _time_folded(nn.BatchNorm1d, 2)
TBatchNorm2d = _time_folded(nn.BatchNorm2d, 3)
TMaxPool2d = _time_folded(nn.MaxPool2d, 3)
TAvgPool2d = _time_folded(nn.AvgPool2d, 3)
TAdaptiveAvgPool2d = _time_folded(nn.AdaptiveAvgPool2d, 3)


class TimeSharedDropout(nn.Module):
    """Dropout on ``[T, B, ...]`` with one mask per sample shared by all timesteps (SpikingJelly ``layer.Dropout``)."""

    def __init__(self, p: float = 0.5) -> None:
        super().__init__()
        if not 0 <= p < 1:
            raise ValueError(f"TimeSharedDropout: p must be in [0, 1), got {p}")
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0:
            return x
        mask = torch.empty_like(x[0]).bernoulli_(1 - self.p) / (1 - self.p)
        return x * mask

    def extra_repr(self) -> str:
        return f"p={self.p}"

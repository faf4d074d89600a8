"""Threshold-dependent batch norm (TDBN) of MS-ResNet: a BatchNorm over (B, T, H, W) per channel.

The released code wraps an ``nn.BatchNorm3d`` as ``.bn`` and applies it to the transposed ``[B, C, T, H, W]``
tensor; its statistics equal those of a BatchNorm2d over the folded ``T*B`` batch, which is what we run. The
wrapper keeps the released state-dict names (``<name>.bn.weight``, ``<name>.bn.running_mean``, ...).
"""
from __future__ import annotations

import torch
from torch import nn

from .time import TBatchNorm2d

__all__ = ["TDBatchNorm"]


class TDBatchNorm(nn.Module):
    """``[T, B, C, H, W] -> [T, B, C, H, W]``; gamma initialised to ``gamma`` (MS-ResNet: V_th = 0.5; 0 on the
    last BN of a residual branch; 1 is the plain BatchNorm init), beta to 0."""

    def __init__(self, num_features: int, gamma: float = 1.0, eps: float = 1e-5, momentum: float = 0.1) -> None:
        super().__init__()
        self.bn = TBatchNorm2d(num_features, eps=eps, momentum=momentum)
        nn.init.constant_(self.bn.weight, gamma)
        nn.init.zeros_(self.bn.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(x)

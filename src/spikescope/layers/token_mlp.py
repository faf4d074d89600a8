"""The channel MLPs of the LIF-based spiking transformers, on token maps ``[T, B, C, H, W]``.

Both are two 1x1 convolutions (with bias) + BatchNorm, hidden width ``hidden``; the state-dict keys are the authors'
(``fc1_conv``, ``fc1_bn``, ``fc2_conv``, ``fc2_bn``):

* :class:`SpikingMLP` (Spikformer, QKFormer): post-activation, ``LIF(BN(Conv(LIF(BN(Conv(x))))))``; spikes out.
* :class:`MembraneMLP` (SDT-v1, "membrane shortcut"): pre-activation, ``BN(Conv(LIF(BN(Conv(LIF(x))))))``; a membrane
  increment out, which the block adds to its membrane input. As in the reference, when ``hidden == dim`` the hidden
  pre-activation also gets the input added.
"""
from __future__ import annotations

import torch
from torch import nn

from .attention import LIFSpec
from .time import TBatchNorm2d, TConv2d

__all__ = ["SpikingMLP", "MembraneMLP"]


def _check(x: torch.Tensor, dim: int, who: str) -> None:
    if x.dim() != 5 or x.shape[2] != dim:
        raise ValueError(f"{who}: expected token maps [T, B, {dim}, H, W], got shape {tuple(x.shape)}")


class _MLPBase(nn.Module):
    def __init__(self, dim: int, hidden: int, spike: LIFSpec) -> None:
        super().__init__()
        self.dim, self.hidden = dim, hidden
        self.fc1_conv = TConv2d(dim, hidden, 1)
        self.fc1_bn = TBatchNorm2d(hidden)
        self.fc1_lif = spike.make()
        self.fc2_conv = TConv2d(hidden, dim, 1)
        self.fc2_bn = TBatchNorm2d(dim)
        self.fc2_lif = spike.make()


class SpikingMLP(_MLPBase):
    """``[T,B,dim,H,W]`` -> spikes ``[T,B,dim,H,W]``: conv-BN-LIF twice (hidden width ``hidden``)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check(x, self.dim, "SpikingMLP")
        x = self.fc1_lif(self.fc1_bn(self.fc1_conv(x)))
        return self.fc2_lif(self.fc2_bn(self.fc2_conv(x)))


class MembraneMLP(_MLPBase):
    """``[T,B,dim,H,W]`` membrane -> membrane increment ``[T,B,dim,H,W]``: LIF-conv-BN twice."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check(x, self.dim, "MembraneMLP")
        h = self.fc1_bn(self.fc1_conv(self.fc1_lif(x)))
        if self.hidden == self.dim:
            h = h + x
        return self.fc2_bn(self.fc2_conv(self.fc2_lif(h)))

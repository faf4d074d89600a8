"""QFPN: the spiking feature pyramid of the Semantic FPN segmenter (``seg/mmseg/models/necks/fpn.py``, ``QFPN``).

Four backbone taps ``[T, B, C_i, H_i, W_i]`` (each level half the size of the previous one) -> four maps
``[T, B, c, H_i, W_i]``. Every conv reads integer spikes (no activation, no extra levels)::

    lateral i   SN -> Conv1x1 (C_i -> c, bias) -> BN
    top-down    L_{i-1} += nearest-resize(L_i, to L_{i-1}'s size)      i = 3, 2, 1
    output i    SN -> Conv3x3 (c -> c, pad 1, bias) -> BN

Init as released: Xavier-uniform conv weights, zero biases, BN (1, 0).
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ...layers.conv_bn import ConvBN, NeuronFactory

__all__ = ["SpikeConvBN", "QFPN"]


class SpikeConvBN(ConvBN):
    """``[T, B, C, H, W]`` -> spike -> conv (``padding = k // 2``) -> BN; keys ``conv.*``, ``bn.*``."""

    def __init__(self, spike: NeuronFactory, c_in: int, c_out: int, kernel_size: int, bias: bool) -> None:
        super().__init__(c_in, c_out, kernel_size, padding=kernel_size // 2, bias=bias)
        self.spike = spike()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(self.spike(x))


class QFPN(nn.Module):
    """Spiking FPN neck; ``in_channels`` = the four taps' channels, ``channels`` = c (128 or 256)."""

    def __init__(self, in_channels: Sequence[int], channels: int, spike: NeuronFactory) -> None:
        super().__init__()
        if len(in_channels) != 4:
            raise ValueError(f"QFPN: expected 4 input levels, got in_channels={list(in_channels)}")
        self.lateral = nn.ModuleList([SpikeConvBN(spike, c, channels, 1, bias=True) for c in in_channels])
        self.output = nn.ModuleList([SpikeConvBN(spike, channels, channels, 3, bias=True) for _ in in_channels])
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, feats: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """Four ``[T, B, C_i, H_i, W_i]`` -> four ``[T, B, c, H_i, W_i]``."""
        if len(feats) != len(self.lateral):
            raise ValueError(f"QFPN: expected {len(self.lateral)} feature maps, got {len(feats)}")
        lat = [layer(x) for layer, x in zip(self.lateral, feats)]
        for i in range(len(lat) - 1, 0, -1):
            lat[i - 1] = lat[i - 1] + resize_time_first(lat[i], lat[i - 1].shape[-2:], "nearest")
        return [layer(x) for layer, x in zip(self.output, lat)]


def resize_time_first(x: torch.Tensor, size: Sequence[int], mode: str) -> torch.Tensor:
    """``F.interpolate`` of ``[T, B, C, H, W]`` to ``size`` (bilinear with ``align_corners=False``)."""
    align = False if mode == "bilinear" else None
    y = F.interpolate(x.flatten(0, 1), size=tuple(size), mode=mode, align_corners=align)
    return y.unflatten(0, x.shape[:2])

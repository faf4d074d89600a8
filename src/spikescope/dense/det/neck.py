"""SpikeFPN of the released detector (``det/mmdet/models/necks/spike_fpn.py``): ``[T, B, C_i, H_i, W_i]`` x 4 ->
P2..P6 ``[T, B, out, h, w]``.

Lateral ``i``: spike -> Conv1x1 (bias); top-down: ``L[i-1] += nearest-upsample(L[i])`` (an identity add from the
stride-16 C5 to C4); output ``i``: spike -> Conv3x3 (bias) -> P2..P5; P6 = every other pixel of P5 (max-pool k 1,
s 2). No norm, no activation. Init: Xavier-uniform, bias 0. The spikes are :func:`~spikescope.dense.fpn_spike`
(with the released {0, 1} evaluation clamp unless ``released_clamp=False``).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..spikes import Spiked, fpn_spike

__all__ = ["SpikeFPN"]


class SpikeFPN(nn.Module):
    def __init__(self, in_channels: list[int], out_channels: int = 256, released_clamp: bool = True) -> None:
        super().__init__()
        self.lateral_convs = nn.ModuleList(
            [Spiked(fpn_spike(released_clamp), nn.Conv2d(c, out_channels, 1)) for c in in_channels])
        self.fpn_convs = nn.ModuleList(
            [Spiked(fpn_spike(released_clamp), nn.Conv2d(out_channels, out_channels, 3, padding=1))
             for _ in in_channels])
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, feats: list[torch.Tensor]) -> list[torch.Tensor]:
        lat = [conv(x) for conv, x in zip(self.lateral_convs, feats)]
        for i in range(len(lat) - 1, 0, -1):
            up = F.interpolate(lat[i].flatten(0, 1), size=lat[i - 1].shape[-2:], mode="nearest")
            lat[i - 1] = lat[i - 1] + up.unflatten(0, lat[i].shape[:2])
        outs = [conv(x) for conv, x in zip(self.fpn_convs, lat)]
        outs.append(outs[-1][..., ::2, ::2])
        return outs

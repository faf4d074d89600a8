"""QFPNHead: the spiking Semantic FPN decode head (``seg/mmseg/models/decode_heads/fpn_head.py``).

Input: the four QFPN maps ``[T, B, c, H_i, W_i]`` at strides 2, 4, 8, 16. Branch i has 1, 1, 2, 3 stages
(SN -> Conv3x3 no bias -> BN), each followed by a bilinear x2 upsample except on branch 0, so every branch ends at
stride 2. The branches are summed at branch 0's size (bilinear resize, ``align_corners=False``) and classified by
SN -> Conv1x1 (c -> classes, bias): logits ``[T, B, classes, H_0, W_0]`` at stride 2.

The released head builds ``Dropout2d(0.1)`` but never applies it (``dropout=0.0`` reproduces that; 0.1 is the
clean variant) and builds plain BatchNorm despite its SyncBN config. Init: classifier normal(0, 0.01), bias 0;
the stage convs keep PyTorch's default init.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ...layers.conv_bn import NeuronFactory
from .neck import SpikeConvBN, resize_time_first

__all__ = ["QFPNHead", "BRANCH_DEPTHS"]

#: Conv stages per branch: max(1, log2(label stride) - 2) for the released stride labels 4, 8, 16, 32.
BRANCH_DEPTHS = (1, 1, 2, 3)


class QFPNHead(nn.Module):
    """Four ``[T, B, c, H_i, W_i]`` -> logits ``[T, B, num_classes, H_0, W_0]``."""

    def __init__(self, channels: int, num_classes: int, spike: NeuronFactory, dropout: float = 0.0) -> None:
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"QFPNHead: num_classes must be >= 1, got {num_classes}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"QFPNHead: dropout must be in [0, 1), got {dropout}")
        self.branches = nn.ModuleList(
            nn.ModuleList(SpikeConvBN(spike, channels, channels, 3, bias=False) for _ in range(depth))
            for depth in BRANCH_DEPTHS
        )
        self.classifier_spike = spike()
        self.dropout = nn.Dropout2d(dropout) if dropout > 0 else nn.Identity()
        self.classifier = nn.Conv2d(channels, num_classes, 1)
        nn.init.normal_(self.classifier.weight, 0.0, 0.01)
        nn.init.zeros_(self.classifier.bias)

    def forward(self, feats: Sequence[torch.Tensor]) -> torch.Tensor:
        if len(feats) != len(self.branches):
            raise ValueError(f"QFPNHead: expected {len(self.branches)} feature maps, got {len(feats)}")
        out = None
        for i, (branch, x) in enumerate(zip(self.branches, feats)):
            for stage in branch:
                x = stage(x)
                if i > 0:
                    x = resize_time_first(x, (2 * x.shape[-2], 2 * x.shape[-1]), "bilinear")
            out = x if out is None else out + resize_time_first(x, out.shape[-2:], "bilinear")
        s = self.classifier_spike(out).flatten(0, 1)
        return self.classifier(self.dropout(s)).unflatten(0, out.shape[:2])

"""The four backbone taps the Semantic FPN reads, over an SDT-v3 model's ``forward_features(x, blocks=True)``."""
from __future__ import annotations

import torch
from torch import nn

from ...models import create_model

__all__ = ["SegTaps", "SEG_TAPS"]

#: ConvBlock1_1 (stride 2), ConvBlock1_2 (4), ConvBlock2_2 (8), stage 4 (16); stage 3 is not read.
SEG_TAPS = ("stage1.block0", "stage1", "stage2", "stage4")


class SegTaps(nn.Module):
    """``[B, 3, H, W]`` -> the four ``[T, B, C_i, H_i, W_i]`` taps of ``sdt_v3_<size>`` (no classifier)."""

    def __init__(self, size: str, **options) -> None:
        super().__init__()
        self.model = create_model(f"sdt_v3_{size}", num_classes=0, **options)
        c0, c1, _, c3 = self.model.cfg.embed_dims
        self.channels = (c0 // 2, c0, c1, c3)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        feats = self.model.forward_features(x, blocks=True, up_to="stage4")
        return [feats[name] for name in SEG_TAPS]

    def remap_key(self, key: str) -> str:
        """A released backbone key -> ``backbone.model.<ours>``."""
        return "backbone.model." + next(iter(self.model.remap_checkpoint({key: None})))

"""Spike-driven Transformer (SDT-v1; Yao et al., NeurIPS 2023), ImageNet models.

Layout: the SPS stem in its membrane form (:class:`~spikescope.models.spikformer.SpikingPatchSplit` with
``membrane=True``) -> L membrane-shortcut blocks ``x + SDSA(x)``, ``x + MLP(x)`` where every branch starts with a
LIF and ends with conv + BN, so the residual stream carries membrane potentials and all matmul inputs are binary ->
spatial mean -> head LIF -> linear head, per timestep. SDSA: ``Q ⊙ LIF_0.5(sum over tokens of K ⊙ V)``
(:class:`~spikescope.layers.attention.SpikeDrivenSelfAttention`). LIF: tau 2, threshold 1, hard reset 0,
detach_reset, Sigmoid(4); ``spike_mode="plif"`` gives the reference's PLIF option.

The reference defines a ``talking_heads`` Conv1d (heads x heads) in each attention that its forward never uses; it is
not built here and :meth:`SpikeDrivenTransformer.remap_checkpoint` drops it from the authors' checkpoints.

Sizes (the authors' README / ImageNet table; T = 4; the ImageNet configs use 8 heads, which SDSA does not depend on):

============== ===== ===== =============== ================================
name             L     D    params (paper)   top-1 (%)
============== ===== ===== =============== ================================
sdt_v1_8_384     8    384      16.81 M        72.28
sdt_v1_6_512     6    512       —             74.11
sdt_v1_8_512     8    512      29.68 M        74.57
sdt_v1_10_512   10    512       —             74.66
sdt_v1_8_768     8    768      66.34 M        77.07 (288x288 inference)
============== ===== ===== =============== ================================

The three parameter counts are as quoted from the SDT-v1 table in QKFormer (NeurIPS 2024) Table 2; the SDT-v1 paper's
own table could not be retrieved here, so the 6-512 and 10-512 counts are unconfirmed ("—").
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from ..layers.attention import LIFSpec, SpikeDrivenSelfAttention
from ..layers.token_mlp import MembraneMLP
from ._spiking_transformer import TokenBlock, flat_forward_features
from .registry import register_sizes
from .spikformer import SpikingPatchSplit

__all__ = ["SDTv1Config", "SpikeDrivenTransformer", "SIZES", "PAPER_PARAMS", "ERF_LAYERS", "ERF_PROTOCOL"]


@dataclass(frozen=True)
class SDTv1Config:
    """One SDT-v1 size and its options (every field is a ``create_model`` keyword)."""

    depth: int = 8
    embed_dim: int = 384
    mlp_ratio: float = 4.0
    in_channels: int = 3
    num_classes: int = 1000
    timesteps: int = 4
    stem_pools: tuple[bool, bool, bool, bool] = (True, True, True, True)  # the reference's pooling_stat "1111"
    kv_threshold: float = 0.5
    spike_mode: Literal["lif", "plif"] = "lif"
    tau: float = 2.0
    v_threshold: float = 1.0
    surrogate: str = "sigmoid"
    alpha: float = 4.0
    backend: str = "auto"

    @property
    def spike(self) -> LIFSpec:
        if self.spike_mode not in ("lif", "plif"):
            raise ValueError(f"SDT-v1: spike_mode must be 'lif' or 'plif', got {self.spike_mode!r}")
        return LIFSpec(self.tau, self.v_threshold, self.surrogate, self.alpha, self.backend, self.spike_mode == "plif")


SIZES: dict[str, SDTv1Config] = {
    "sdt_v1_8_384": SDTv1Config(depth=8, embed_dim=384),
    "sdt_v1_6_512": SDTv1Config(depth=6, embed_dim=512),
    "sdt_v1_8_512": SDTv1Config(depth=8, embed_dim=512),
    "sdt_v1_10_512": SDTv1Config(depth=10, embed_dim=512),
    "sdt_v1_8_768": SDTv1Config(depth=8, embed_dim=768),
}
#: Published counts we could confirm (see the module docstring); the other sizes are absent on purpose.
PAPER_PARAMS: dict[str, float] = {"sdt_v1_8_384": 16.81e6, "sdt_v1_8_512": 29.68e6, "sdt_v1_8_768": 66.34e6}

#: ``forward_features`` names of the tensors the ST-ERF code hooks (``block[i].attn.proj_conv``, docs/papers.md#spatial-erf-as-released).
ERF_LAYERS: dict[str, tuple[str, ...]] = {
    name: tuple(f"block{i}.attn.proj_conv" for i in range(cfg.depth)) for name, cfg in SIZES.items()
}
#: How the ST-ERF paper ran it (stimulus on output timestep 0 only).
ERF_PROTOCOL = {"model": "sdt_v1_8_384", "checkpoint": "sd_former_v1_8_384.pth.tar", "runs": 90, "t_out": (0,)}


class SpikeDrivenTransformer(nn.Module):
    """SDT-v1 classifier. ``forward``: ``[B,3,H,W]`` (repeated over T) or ``[T,B,3,H,W]`` -> ``[T,B,classes]``.

    ``forward_features(x, blocks=False)`` returns ``{"stage1": last block output}`` (a membrane potential); with
    ``blocks=True`` also ``patch_embed``, ``block{i}``, ``block{i}.attn`` (SDSA branch, i.e. its proj BN output,
    before the residual add) and ``block{i}.attn.proj_conv`` (the ST-ERF hook). All ``[T,B,C,H/16,W/16]``.
    """

    def __init__(self, cfg: SDTv1Config) -> None:
        super().__init__()
        self.cfg = cfg
        spike = cfg.spike
        d = cfg.embed_dim
        self.patch_embed = SpikingPatchSplit(cfg.in_channels, d, spike, cfg.stem_pools, membrane=True)
        self.block = nn.ModuleList(
            TokenBlock(
                SpikeDrivenSelfAttention(d, spike, cfg.kv_threshold, conv_dims=2),
                MembraneMLP(d, int(d * cfg.mlp_ratio), spike),
            )
            for _ in range(cfg.depth)
        )
        self.head_lif = spike.make()
        self.head = nn.Linear(d, cfg.num_classes)
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(m: nn.Module) -> None:
        """The reference's init: truncated-normal (std 0.02) Conv2d weights with zero bias; BN at (1, 0)."""
        if isinstance(m, nn.Conv2d):
            nn.init.trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)

    def forward_features(self, x: torch.Tensor, blocks: bool = False) -> dict[str, torch.Tensor]:
        """``stage1`` ``[T,B,C,H,W]``; with ``blocks`` also ``patch_embed`` and every block's taps (``block{i}...``)."""
        return flat_forward_features(self, x, blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.head_lif(self.forward_features(x)["stage1"].mean(dim=(3, 4))))

    def remap_checkpoint(self, state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Drop the reference's unused ``attn.talking_heads`` convolutions."""
        return {k: v for k, v in state_dict.items() if ".talking_heads." not in k}


register_sizes(
    SpikeDrivenTransformer,
    SIZES,
    family="sdt_v1",
    describe=lambda name, cfg: f"Spike-driven Transformer (SDT-v1, NeurIPS 2023) {cfg.depth}-{cfg.embed_dim}, SDSA attention.",
)

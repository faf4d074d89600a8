"""QKFormer (Zhou et al., "QKFormer: Hierarchical Spiking Transformer using Q-K Attention", NeurIPS 2024), ImageNet.

Three stages on a 224x224 input (stage widths D/4, D/2, D at strides 4, 8, 16; 1, 2, 7 blocks for L = 10):

* ``patch_embed1`` (stride 4): [3x3 conv, BN, max-pool, LIF] to D/8, [3x3 conv, BN, max-pool, LIF] to D/4,
  [3x3 conv, BN, LIF]; plus the *deformed shortcut* [1x1/2 conv, BN, LIF] from the first LIF's output, added.
* ``patch_embed2``/``3`` (stride 2 each): [3x3 conv, BN, max-pool, LIF], [3x3 conv, BN, LIF]; plus the shortcut
  [1x1/2 conv, BN, LIF] of the input, added.
* stages 1-2: blocks with Q-K token attention (``tssa``, :class:`~spikescope.layers.attention.QKTokenAttention`; or
  channel attention with ``qk_attention="channel"``); stage 3: Spikformer SSA blocks (``attn``). Post-activation
  spiking MLPs, ratio 4. Head: linear on the spatial mean, per timestep.

LIF: tau 2, threshold 1 (0.5 for the attention LIFs), hard reset 0, detach_reset, Sigmoid(4).

Sizes (HST-L-D), paper Table 2 (ImageNet-1K, 224x224, T = 4):

================ ===== ===== ======= ================ =============== ==========
name               L     D    heads    blocks/stage    params (paper)   top-1 (%)
================ ===== ===== ======= ================ =============== ==========
qkformer_10_384   10    384     6       1, 2, 7         16.47 M         78.80
qkformer_10_512   10    512     8       1, 2, 7         29.08 M         82.04
qkformer_10_768   10    768    12       1, 2, 7         64.96 M         84.22
================ ===== ===== ======= ================ =============== ==========
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from ..layers.attention import LIFSpec, QKChannelAttention, QKTokenAttention, SpikingSelfAttention
from ..layers.time import TBatchNorm2d, TConv2d, TMaxPool2d
from ..layers.token_mlp import SpikingMLP
from ._spiking_transformer import TokenBlock, record, to_sequence, trunc_normal_linear_init
from .registry import register_sizes

__all__ = ["QKFormerConfig", "QKFormer", "SIZES", "PAPER_PARAMS", "ERF_LAYERS", "ERF_PROTOCOL"]


@dataclass(frozen=True)
class QKFormerConfig:
    """One QKFormer size and its options (every field is a ``create_model`` keyword)."""

    embed_dim: int = 384
    depths: tuple[int, int, int] = (1, 2, 7)
    num_heads: int = 6
    mlp_ratio: float = 4.0
    in_channels: int = 3
    num_classes: int = 1000
    timesteps: int = 4
    qk_attention: Literal["token", "channel"] = "token"  # the Q-K attention of stages 1-2
    scale: float = 0.125
    attn_threshold: float = 0.5
    tau: float = 2.0
    v_threshold: float = 1.0
    surrogate: str = "sigmoid"
    alpha: float = 4.0
    backend: str = "auto"

    @property
    def spike(self) -> LIFSpec:
        return LIFSpec(self.tau, self.v_threshold, self.surrogate, self.alpha, self.backend)


SIZES: dict[str, QKFormerConfig] = {
    "qkformer_10_384": QKFormerConfig(embed_dim=384, num_heads=6),
    "qkformer_10_512": QKFormerConfig(embed_dim=512, num_heads=8),
    "qkformer_10_768": QKFormerConfig(embed_dim=768, num_heads=12),
}
PAPER_PARAMS: dict[str, float] = {"qkformer_10_384": 16.47e6, "qkformer_10_512": 29.08e6, "qkformer_10_768": 64.96e6}


def _erf_layers(depths: tuple[int, int, int]) -> tuple[str, ...]:
    return tuple(f"stage{s + 1}.block{j}.attn.proj_conv" for s, n in enumerate(depths) for j in range(n))


#: ``forward_features`` names of the tensors the ST-ERF code hooks: ``stage1/2[j].tssa.proj_conv`` and
#: ``stage3[j].attn.proj_conv`` in the authors' module names (docs/papers.md#spatial-erf-as-released).
ERF_LAYERS: dict[str, tuple[str, ...]] = {name: _erf_layers(cfg.depths) for name, cfg in SIZES.items()}
#: How the ST-ERF paper ran it (stimulus on all output timesteps).
ERF_PROTOCOL = {"model": "qkformer_10_384", "checkpoint": "qk_10_384_checkpoint-199", "runs": 50, "t_out": "all"}


class PatchEmbedInit(nn.Module):
    """Stage-1 patch embedding: ``[T,B,C_in,H,W]`` -> spike counts ``[T,B,dim,H/4,W/4]`` (values 0..2)."""

    def __init__(self, in_channels: int, dim: int, spike: LIFSpec) -> None:
        super().__init__()
        self.proj_conv = TConv2d(in_channels, dim // 2, 3, padding=1, bias=False)
        self.proj_bn = TBatchNorm2d(dim // 2)
        self.proj_lif = spike.make()
        self.proj1_conv = TConv2d(dim // 2, dim, 3, padding=1, bias=False)
        self.proj1_bn = TBatchNorm2d(dim)
        self.proj1_lif = spike.make()
        self.proj2_conv = TConv2d(dim, dim, 3, padding=1, bias=False)
        self.proj2_bn = TBatchNorm2d(dim)
        self.proj2_lif = spike.make()
        self.proj_res_conv = TConv2d(dim // 2, dim, 1, stride=2, bias=False)
        self.proj_res_bn = TBatchNorm2d(dim)
        self.proj_res_lif = spike.make()
        self.pool = TMaxPool2d(3, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.proj_lif(self.pool(self.proj_bn(self.proj_conv(x))))
        y = self.proj1_lif(self.pool(self.proj1_bn(self.proj1_conv(s))))
        y = self.proj2_lif(self.proj2_bn(self.proj2_conv(y)))
        return y + self.proj_res_lif(self.proj_res_bn(self.proj_res_conv(s)))


class PatchEmbeddingStage(nn.Module):
    """Stage-2/3 patch embedding: ``[T,B,dim/2,H,W]`` -> spike counts ``[T,B,dim,H/2,W/2]``."""

    def __init__(self, dim: int, spike: LIFSpec) -> None:
        super().__init__()
        self.proj3_conv = TConv2d(dim // 2, dim, 3, padding=1, bias=False)
        self.proj3_bn = TBatchNorm2d(dim)
        self.proj3_lif = spike.make()
        self.proj4_conv = TConv2d(dim, dim, 3, padding=1, bias=False)
        self.proj4_bn = TBatchNorm2d(dim)
        self.proj4_lif = spike.make()
        self.proj_res_conv = TConv2d(dim // 2, dim, 1, stride=2, bias=False)
        self.proj_res_bn = TBatchNorm2d(dim)
        self.proj_res_lif = spike.make()
        self.pool = TMaxPool2d(3, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.proj3_lif(self.pool(self.proj3_bn(self.proj3_conv(x))))
        y = self.proj4_lif(self.proj4_bn(self.proj4_conv(y)))
        return y + self.proj_res_lif(self.proj_res_bn(self.proj_res_conv(x)))


class QKFormer(nn.Module):
    """QKFormer classifier. ``forward``: ``[B,3,H,W]`` (repeated over T) or ``[T,B,3,H,W]`` -> ``[T,B,classes]``.

    ``forward_features(x, blocks=False)`` returns the stage outputs ``stage1`` (``[T,B,D/4,H/4,W/4]``), ``stage2``
    (D/2, /8) and ``stage3`` (D, /16). With ``blocks=True`` also ``patch_embed{s}`` and, per stage s and block j,
    ``stage{s}.block{j}`` (output), ``stage{s}.block{j}.attn`` (the attention branch before the residual add: ``tssa``
    in stages 1-2, ``attn`` in stage 3) and ``stage{s}.block{j}.attn.proj_conv`` (the ST-ERF hook).
    """

    def __init__(self, cfg: QKFormerConfig) -> None:
        super().__init__()
        if cfg.embed_dim % 8 or cfg.embed_dim // 4 % cfg.num_heads:
            raise ValueError(
                f"QKFormer: embed_dim ({cfg.embed_dim}) must be a multiple of 8 with embed_dim/4 divisible by "
                f"num_heads ({cfg.num_heads})"
            )
        if cfg.qk_attention not in ("token", "channel"):
            raise ValueError(f"QKFormer: qk_attention must be 'token' or 'channel', got {cfg.qk_attention!r}")
        self.cfg = cfg
        spike = cfg.spike
        dims = (cfg.embed_dim // 4, cfg.embed_dim // 2, cfg.embed_dim)
        self.patch_embed1 = PatchEmbedInit(cfg.in_channels, dims[0], spike)
        self.patch_embed2 = PatchEmbeddingStage(dims[1], spike)
        self.patch_embed3 = PatchEmbeddingStage(dims[2], spike)
        for s, (d, n) in enumerate(zip(dims, cfg.depths), start=1):
            self.add_module(f"stage{s}", nn.ModuleList(self._block(s, d) for _ in range(n)))
        self.head = nn.Linear(cfg.embed_dim, cfg.num_classes)
        self.apply(trunc_normal_linear_init)

    def _block(self, stage: int, d: int) -> TokenBlock:
        cfg, spike = self.cfg, self.cfg.spike
        mlp = SpikingMLP(d, int(d * cfg.mlp_ratio), spike)
        if stage == 3:
            return TokenBlock(SpikingSelfAttention(d, cfg.num_heads, spike, cfg.scale, cfg.attn_threshold), mlp)
        if cfg.qk_attention == "token":
            attn = QKTokenAttention(d, cfg.num_heads, spike, cfg.attn_threshold)
        else:
            attn = QKChannelAttention(d, spike, cfg.attn_threshold)
        return TokenBlock(attn, mlp, attn_name="tssa")

    def forward_features(self, x: torch.Tensor, blocks: bool = False) -> dict[str, torch.Tensor]:
        x = to_sequence(x, self.cfg.timesteps, self.cfg.in_channels, "QKFormer")
        feats: dict[str, torch.Tensor] = {}
        for s in (1, 2, 3):
            x = getattr(self, f"patch_embed{s}")(x)
            if blocks:
                feats[f"patch_embed{s}"] = x
            for j, blk in enumerate(getattr(self, f"stage{s}")):
                taps = {} if blocks else None
                x = blk(x, taps)
                if blocks:
                    record(feats, f"stage{s}.block{j}", taps)
            feats[f"stage{s}"] = x
        return feats

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.forward_features(x)["stage3"].mean(dim=(3, 4)))


register_sizes(
    QKFormer,
    SIZES,
    family="qkformer",
    describe=lambda name, cfg: f"QKFormer HST-{sum(cfg.depths)}-{cfg.embed_dim} (NeurIPS 2024), hierarchical, Q-K attention.",
)

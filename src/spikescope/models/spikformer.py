"""Spikformer (Zhou et al., "Spikformer: When Spiking Neural Network Meets Transformer", ICLR 2023), ImageNet models.

Layout: SPS patch stem (4 x [3x3 conv, BN, LIF, 3x3/2 max-pool] with widths D/8, D/4, D/2, D, then a 3x3 relative
position conv + BN + LIF added to its input) -> L blocks ``x + SSA(x)``, ``x + MLP(x)`` on the 14x14 token map ->
spatial mean -> linear head, per timestep. SSA: ``LIF_0.5(Q K^T V * 0.125)``, no softmax (:class:`~spikescope.layers.
attention.SpikingSelfAttention`). LIF everywhere: tau 2, threshold 1, hard reset 0, detach_reset, Sigmoid(4).

This is the published architecture: there is **no token re-ordering**. The copy in the ST-ERF repository wraps every
block in a top-k token selector that re-orders tokens by a data-dependent score (docs/papers.md#spatial-erf-as-released); we do not.
The reference's two LayerNorms per block (``norm1``, ``norm2``) are never called; they are not built here and
:meth:`Spikformer.remap_checkpoint` drops them from the authors' checkpoints.

Sizes (Spikformer-L-D), paper Table 2 (ImageNet-1K, 224x224, T = 4):

================== ===== ===== ======= =============== ===========
name                 L     D    heads   params (paper)   top-1 (%)
================== ===== ===== ======= =============== ===========
spikformer_8_384     8    384     8        16.81 M        70.24
spikformer_6_512     6    512     8        23.37 M        72.46
spikformer_8_512     8    512     8        29.68 M        73.38
spikformer_10_512   10    512     8        36.01 M        73.68
spikformer_8_768     8    768    12        66.34 M        74.81
================== ===== ===== ======= =============== ===========

Heads: 8 in the authors' ImageNet builder (D = 512); 12 for D = 768 is our choice (head width 64), it does not change
the parameter count.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..layers.attention import LIFSpec, SpikingSelfAttention
from ..layers.time import TBatchNorm2d, TConv2d, TMaxPool2d
from ..layers.token_mlp import SpikingMLP
from ._spiking_transformer import TokenBlock, flat_forward_features, trunc_normal_linear_init
from .registry import register_sizes

__all__ = ["SpikformerConfig", "Spikformer", "SpikingPatchSplit", "SIZES", "PAPER_PARAMS", "ERF_LAYERS", "ERF_PROTOCOL"]


@dataclass(frozen=True)
class SpikformerConfig:
    """One Spikformer size and its options (every field is a ``create_model`` keyword)."""

    depth: int = 8
    embed_dim: int = 384
    num_heads: int = 8
    mlp_ratio: float = 4.0
    in_channels: int = 3
    num_classes: int = 1000
    timesteps: int = 4
    stem_pools: tuple[bool, bool, bool, bool] = (True, True, True, True)  # ImageNet: /16; CIFAR: (F, F, T, T)
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


#: The paper's Table 2 sizes (name -> config) and their published parameter counts.
SIZES: dict[str, SpikformerConfig] = {
    "spikformer_8_384": SpikformerConfig(depth=8, embed_dim=384),
    "spikformer_6_512": SpikformerConfig(depth=6, embed_dim=512),
    "spikformer_8_512": SpikformerConfig(depth=8, embed_dim=512),
    "spikformer_10_512": SpikformerConfig(depth=10, embed_dim=512),
    "spikformer_8_768": SpikformerConfig(depth=8, embed_dim=768, num_heads=12),
}
PAPER_PARAMS: dict[str, float] = {
    "spikformer_8_384": 16.81e6,
    "spikformer_6_512": 23.37e6,
    "spikformer_8_512": 29.68e6,
    "spikformer_10_512": 36.01e6,
    "spikformer_8_768": 66.34e6,
}

#: ``forward_features`` names of the tensors the ST-ERF code hooks (``block[i].attn.proj_conv``, docs/papers.md#spatial-erf-as-released).
ERF_LAYERS: dict[str, tuple[str, ...]] = {
    name: tuple(f"block{i}.attn.proj_conv" for i in range(cfg.depth)) for name, cfg in SIZES.items()
}
#: How the ST-ERF paper ran it: model, checkpoint file, noise runs, output timesteps given the stimulus.
ERF_PROTOCOL = {"model": "spikformer_8_512", "checkpoint": "checkpoint-308", "runs": 300, "t_out": (0,)}


class SpikingPatchSplit(nn.Module):
    """SPS stem: ``[T,B,C_in,H,W]`` -> ``[T,B,D,H/16,W/16]`` (with all four pools; ceil division otherwise).

    Four stages ``proj_conv{i}`` (3x3, no bias) + ``proj_bn{i}`` + LIF + 3x3/2 max-pool (``stem_pools[i]``), widths
    D/8, D/4, D/2, D; then the relative position embedding ``rpe_conv`` (3x3) + ``rpe_bn`` added to its input.

    ``membrane=False`` (Spikformer): every stage spikes before pooling, RPE = ``LIF(BN(Conv(s))) + s`` (spike counts).
    ``membrane=True`` (SDT-v1 ``MS_SPS``): the last stage pools its BN output ``m`` without spiking, and the output is
    the membrane ``BN(Conv(LIF(m))) + m``, since SDT-v1 blocks start with a LIF.
    """

    def __init__(self, in_channels: int, embed_dim: int, spike: LIFSpec, pools=(True,) * 4, membrane=False) -> None:
        super().__init__()
        if embed_dim % 8:
            raise ValueError(f"SpikingPatchSplit: embed_dim must be a multiple of 8, got {embed_dim}")
        if len(pools) != 4:
            raise ValueError(f"SpikingPatchSplit: stem_pools needs 4 flags, got {pools}")
        self.pools = tuple(bool(p) for p in pools)
        self.membrane = membrane
        widths = [in_channels, embed_dim // 8, embed_dim // 4, embed_dim // 2, embed_dim]
        for i in range(4):
            s = "" if i == 0 else str(i)
            self.add_module(f"proj_conv{s}", TConv2d(widths[i], widths[i + 1], 3, padding=1, bias=False))
            self.add_module(f"proj_bn{s}", TBatchNorm2d(widths[i + 1]))
            self.add_module(f"proj_lif{s}", spike.make())
        self.pool = TMaxPool2d(3, stride=2, padding=1)
        self.rpe_conv = TConv2d(embed_dim, embed_dim, 3, padding=1, bias=False)
        self.rpe_bn = TBatchNorm2d(embed_dim)
        if not membrane:
            self.rpe_lif = spike.make()

    def _stage(self, i: int, x: torch.Tensor) -> torch.Tensor:
        s = "" if i == 0 else str(i)
        x = getattr(self, f"proj_bn{s}")(getattr(self, f"proj_conv{s}")(x))
        last_membrane = self.membrane and i == 3
        if not last_membrane:
            x = getattr(self, f"proj_lif{s}")(x)
        return self.pool(x) if self.pools[i] else x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i in range(4):
            x = self._stage(i, x)
        if self.membrane:
            return self.rpe_bn(self.rpe_conv(self.proj_lif3(x))) + x
        return self.rpe_lif(self.rpe_bn(self.rpe_conv(x))) + x


class Spikformer(nn.Module):
    """Spikformer classifier. ``forward``: ``[B,3,H,W]`` (repeated over T) or ``[T,B,3,H,W]`` -> ``[T,B,classes]``
    (average over T for the prediction, as the authors do).

    ``forward_features(x, blocks=False)`` returns ``{"stage1": last block output}``; with ``blocks=True`` also
    ``patch_embed``, and per block i: ``block{i}`` (output), ``block{i}.attn`` (SSA branch before the residual add),
    ``block{i}.attn.proj_conv`` (its projection conv output, the ST-ERF hook). All ``[T,B,C,H/16,W/16]``.
    """

    def __init__(self, cfg: SpikformerConfig) -> None:
        super().__init__()
        self.cfg = cfg
        spike = cfg.spike
        d = cfg.embed_dim
        self.patch_embed = SpikingPatchSplit(cfg.in_channels, d, spike, cfg.stem_pools)
        self.block = nn.ModuleList(
            TokenBlock(
                SpikingSelfAttention(d, cfg.num_heads, spike, cfg.scale, cfg.attn_threshold, conv_dims=1),
                SpikingMLP(d, int(d * cfg.mlp_ratio), spike),
            )
            for _ in range(cfg.depth)
        )
        self.head = nn.Linear(d, cfg.num_classes)
        self.apply(trunc_normal_linear_init)

    def forward_features(self, x: torch.Tensor, blocks: bool = False) -> dict[str, torch.Tensor]:
        """``stage1`` ``[T,B,C,H,W]``; with ``blocks`` also ``patch_embed`` and every block's taps (``block{i}...``)."""
        return flat_forward_features(self, x, blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.forward_features(x)["stage1"].mean(dim=(3, 4)))

    def remap_checkpoint(self, state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Drop the reference's unused per-block LayerNorms (``block.i.norm1/norm2``)."""
        return {k: v for k, v in state_dict.items() if ".norm1." not in k and ".norm2." not in k}


register_sizes(
    Spikformer,
    SIZES,
    family="spikformer",
    describe=lambda name, cfg: f"Spikformer-{cfg.depth}-{cfg.embed_dim} (ICLR 2023), paper Table 2: {PAPER_PARAMS[name] / 1e6:.2f} M.",
)

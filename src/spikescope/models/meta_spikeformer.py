"""Meta-SpikeFormer / Spike-Driven Transformer v2 (Yao et al., ICLR 2024), docs/papers.md#sdt-v2-and-sdt-v3-blocks.

The Meta-SDT layout (:mod:`.meta_sdt`) with binary LIF spikes: tau 2, threshold 1 (0.5 for the spike on the
attention product), hard reset to 0 with the reset detached, Sigmoid surrogate alpha 4, T = 4 by default.
SepConv has no BN/spike after its depthwise conv, transformer blocks have no SepConv, and the attention uses
RepConv + BN projections, V of width C and a fixed scale 0.125.

Sizes (8 heads, ratio 4; the count is ours, with the 1000-class head and the conv mixer)::

    name                     embed dims            params    published
    meta_spikeformer_15m      64, 128, 256, 360    15.11 M   15.1 M
    meta_spikeformer_31m      96, 192, 384, 480    31.33 M   31.3 M
    meta_spikeformer_55m     128, 256, 512, 640    55.35 M   55.4 M

Sources: the 31M and 55M widths are the released classification factories ``metaspikformer_8_384`` /
``metaspikformer_8_512`` (BICLab/Spike-Driven-Transformer-V2, ``classification/models.py``); the 15M width
[64, 128, 256, 360] is the one of the released 15M segmentation configs and reproduces the published 15.1 M
with this layout; the "published" column is the paper's parameter column (15.1 / 31.3 / 55.4 M).

Options: ``mixer``, ``mixer_ratio``, ``mixer_layout``, ``mixer_drop`` (as for SDT-v3; the released v2 has the conv
mixer), ``T``, ``num_classes``, ``tau``, ``v_threshold``, ``attn_v_threshold``, ``surrogate_alpha``, ``backend``,
``head_spike``.

Head: the released classifier applies the linear head to the spatial mean of the real-valued stage-4 features
(its LIF copy feeds only the optional distillation head, which is not built here); ``head_spike=True`` inserts
the LIF (mean -> LIF -> Linear, the fully spike-driven layout of docs/papers.md#meta-sdt-macro-layout).

The authors' released state dicts (``downsample1_1.encode_conv``, ``block3.0.attn.q_conv.0.body.1.bn``, ...) load
with :func:`spikescope.models.load_checkpoint` through :meth:`MetaSpikeFormer.remap_checkpoint`; a distillation
head (``head_kd.*``) in the file is reported as unexpected (load with ``strict=False`` to skip it).
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import torch

from ..layers.meta_attention import repconv_bn
from ..neurons import LIF, Sigmoid
from .meta_sdt import RELEASED_LAYOUT_RULES, BlockSpec, MetaSDT, compile_key_rules, rename_key
from .registry import register_sizes

__all__ = ["MetaSpikeFormerConfig", "MetaSpikeFormer", "SIZES", "remap_meta_spikeformer_keys"]


@dataclass(frozen=True)
class MetaSpikeFormerConfig:
    embed_dims: tuple[int, int, int, int]
    num_classes: int = 1000
    in_chans: int = 3
    T: int = 4
    tau: float = 2.0
    v_threshold: float = 1.0
    attn_v_threshold: float = 0.5
    surrogate_alpha: float = 4.0
    backend: str = "auto"
    head_spike: bool = False
    heads: int = 8
    mlp_ratio: int = 4
    mixer: str = "conv"
    mixer_ratio: int = 4
    mixer_layout: str = "raster"
    mixer_drop: float | None = None


SIZES = {
    "15m": MetaSpikeFormerConfig(embed_dims=(64, 128, 256, 360)),
    "31m": MetaSpikeFormerConfig(embed_dims=(96, 192, 384, 480)),
    "55m": MetaSpikeFormerConfig(embed_dims=(128, 256, 512, 640)),
}


def _spec(cfg: MetaSpikeFormerConfig) -> BlockSpec:
    lif = partial(
        LIF,
        tau=cfg.tau,
        v_threshold=cfg.v_threshold,
        v_reset=0.0,
        detach_reset=True,
        surrogate=Sigmoid(cfg.surrogate_alpha),
        backend=cfg.backend,
    )
    return BlockSpec(
        neuron=lif,
        attn_neuron=partial(lif, v_threshold=cfg.attn_v_threshold),
        head_neuron=lif if cfg.head_spike else None,
        sepconv_dw_norm=False,
        transformer_sepconv=False,
        attn_v_ratio=1,
        attn_scale=0.125,
        attn_proj=repconv_bn,
    )


# The authors' key names -> ours: the shared layout rules, then v2's SepConv (separate BN names) and RepConv.
_KEY_RULES = compile_key_rules(
    RELEASED_LAYOUT_RULES
    + [
        (r"\.Conv\.pwconv1\.", ".token_mixer.pw1.conv."),
        (r"\.Conv\.bn1\.", ".token_mixer.pw1.bn."),
        (r"\.Conv\.dwconv\.", ".token_mixer.dw.conv."),
        (r"\.Conv\.pwconv2\.", ".token_mixer.pw2.conv."),
        (r"\.Conv\.bn2\.", ".token_mixer.pw2.bn."),
        (r"\.attn\.(q|k|v|proj)_conv\.0\.body\.0\.", r".attn.\1.conv.pw_in."),
        (r"\.attn\.(q|k|v|proj)_conv\.0\.body\.1\.bn\.", r".attn.\1.conv.pad_bn."),
        (r"\.attn\.(q|k|v|proj)_conv\.0\.body\.2\.0\.", r".attn.\1.conv.dw."),
        (r"\.attn\.(q|k|v|proj)_conv\.0\.body\.2\.1\.", r".attn.\1.conv.pw_out."),
        (r"\.attn\.(q|k|v|proj)_conv\.0\.body\.2\.2\.", r".attn.\1.conv.bn."),
        (r"\.attn\.(q|k|v|proj)_conv\.1\.", r".attn.\1.bn."),
    ]
)


def remap_meta_spikeformer_keys(key: str) -> str:
    """One released Meta-SpikeFormer key -> ours (``block3.0.attn.q_conv.1.weight`` -> ``stage3.blocks.0.attn.q.bn.weight``).

    Keys that match no rule (``head.*``, ``head_kd.*``) come back unchanged.
    """
    return rename_key(key, _KEY_RULES)


class MetaSpikeFormer(MetaSDT):
    """Meta-SpikeFormer classifier; see the module docstring for sizes and options."""

    def __init__(self, cfg: MetaSpikeFormerConfig) -> None:
        super().__init__(cfg, _spec(cfg))

    def remap_checkpoint(self, state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Rename the authors' keys (``downsample1_1.encode_conv.weight`` ...) to this model's module names."""
        return {remap_meta_spikeformer_keys(k): v for k, v in state_dict.items()}


register_sizes(
    MetaSpikeFormer,
    {f"meta_spikeformer_{size}": cfg for size, cfg in SIZES.items()},
    family="meta_spikeformer",
    describe=lambda name, cfg: f"Meta-SpikeFormer {name.rsplit('_', 1)[1].upper()} "
    f"(dims {'/'.join(map(str, cfg.embed_dims))}), LIF, T={cfg.T}; mixer=conv|mlpixer|srb.",
    time_field="T",
    variants=tuple({"mixer": m} for m in ("conv", "mlpixer", "srb")),
)

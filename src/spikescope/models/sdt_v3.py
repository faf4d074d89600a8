"""SDT-v3 / E-SpikeFormer (Yao et al. 2025) with the conv, MLPixer and SRB channel mixers (sterf.md §3.1, §3.3-3.8).

Integer spikes (I-LIF / "MultiSpike") with D = 4, T = 1 by default. Sizes (embed dims [C0, C1, C2, C3], 8 heads,
mixer ratio 4; parameters with the 1000-class head, counted from the released state dicts, sterf.md §3.8)::

    size  embed dims           conv      mlpixer r4  mlpixer r6  srb r4    paper name
    t     24,  48,  96, 128    2.702 M   -           -           -         -
    s     32,  64, 128, 192    5.106 M   4.498 M     4.536 M     4.801 M   "SDTv3-T"
    m     48,  96, 192, 240   10.023 M   8.657 M     8.742 M     9.339 M   -
    l     64, 128, 256, 360   18.988 M  16.559 M    16.711 M    17.772 M   "SDTv3-B"

Options of every size: ``mixer="conv"|"mlpixer"|"srb"``, ``mixer_ratio`` (4; MLPixer also 6),
``mixer_layout="raster"|"pointwise"`` (MLPixer/SRB; raster = the released code), ``mixer_drop`` (``None`` = as
released: 0.2 for MLPixer/SRB, 0 for conv), ``num_classes``, ``T``, ``spike_max`` (D), ``heads``, ``mlp_ratio``,
``attn_scale_factor``: the attention product is scaled by ``attn_scale_factor * (C/heads)^-1/2``; 2 (default) as the
trained SDT-v3 and the authors' detection/segmentation backbones, 1 as the model file their ERF script imports
(``erf_sdt/models/sdtv3.py`` of EricZhang1412/Spatial-temporal-ERF, where the x2 is commented out).

The authors' released state dicts load with :func:`spikescope.models.load_checkpoint` through
:meth:`SDTv3.remap_checkpoint`.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import torch

from ..layers.meta_attention import conv1x1_bn
from ..neurons import IntegerSpike
from .meta_sdt import DEPTHS, RELEASED_LAYOUT_RULES, BlockSpec, MetaSDT, compile_key_rules, rename_key
from .registry import register_sizes

__all__ = ["SDTv3Config", "SDTv3", "SIZES", "ERF_LAYERS", "ERF_PROTOCOL", "remap_sdt_v3_keys"]


@dataclass(frozen=True)
class SDTv3Config:
    embed_dims: tuple[int, int, int, int]
    num_classes: int = 1000
    in_chans: int = 3
    T: int = 1
    spike_max: int = 4  # D: integer spikes in {0, 1/D, ..., 1}
    heads: int = 8
    mlp_ratio: int = 4
    mixer: str = "conv"
    mixer_ratio: int = 4
    mixer_layout: str = "raster"
    mixer_drop: float | None = None
    attn_scale_factor: float = 2.0  # attention product x factor * (C/heads)^-1/2; 1.0 = the ERF script's model file


SIZES = {
    "t": SDTv3Config(embed_dims=(24, 48, 96, 128)),
    "s": SDTv3Config(embed_dims=(32, 64, 128, 192)),
    "m": SDTv3Config(embed_dims=(48, 96, 192, 240)),
    "l": SDTv3Config(embed_dims=(64, 128, 256, 360)),
}

#: The tensors the ST-ERF code hooks (``block3[i].attn.proj_conv`` / ``block4[i]...``: conv + BN of the attention
#: output, before the residual add), in our module names; stages 1-2 were not hooked (sterf.md §1.3).
ERF_LAYERS: dict[str, tuple[str, ...]] = {
    f"sdt_v3_{size}": tuple(f"stage{s}.blocks.{i}.attn.proj" for s in (3, 4) for i in range(DEPTHS[s - 1]))
    for size in SIZES
}
#: How the authors' ERF script ran SDT-v3 (``compute_erf_sdt``): 60 noise runs, the stimulus 5 columns right of the
#: centre, the attention scale of the model file it imports (d^-1/2); T = 1, so every output timestep is the one.
ERF_PROTOCOL = {"model": "sdt_v3_s", "checkpoint": "V3_5.1M_1x4.pth", "runs": 60, "t_out": "all", "offset": (0, 5),
                "overrides": {"attn_scale_factor": 1.0}}

# The authors' key names -> ours: the shared layout rules, then SDT-v3's SepConv (conv + BN pairs) and attention.
_KEY_RULES = compile_key_rules(
    RELEASED_LAYOUT_RULES
    + [
        (r"\.[Cc]onv\.pwconv1\.0\.", ".token_mixer.pw1.conv."),
        (r"\.[Cc]onv\.pwconv1\.1\.", ".token_mixer.pw1.bn."),
        (r"\.[Cc]onv\.dwconv\.0\.", ".token_mixer.dw.conv."),
        (r"\.[Cc]onv\.dwconv\.1\.", ".token_mixer.dw.bn."),
        (r"\.[Cc]onv\.pwconv2\.0\.", ".token_mixer.pw2.conv."),
        (r"\.[Cc]onv\.pwconv2\.1\.", ".token_mixer.pw2.bn."),
        (r"\.attn\.(q|k|v|proj)_conv\.0\.", r".attn.\1.conv."),
        (r"\.attn\.(q|k|v|proj)_conv\.1\.", r".attn.\1.bn."),
    ]
)


def remap_sdt_v3_keys(key: str) -> str:
    """One released SDT-v3 key (e.g. ``block3.0.attn.q_conv.1.weight``) -> ours (``stage3.blocks.0.attn.q.bn.weight``).

    Keys that match no rule (``head.*``) come back unchanged.
    """
    return rename_key(key, _KEY_RULES)


def _spec(cfg: SDTv3Config) -> BlockSpec:
    spike = partial(IntegerSpike, cfg.spike_max)
    return BlockSpec(
        neuron=spike,
        attn_neuron=spike,
        head_neuron=partial(IntegerSpike, cfg.spike_max, norm=1.0),  # integers 0..D before the classifier
        sepconv_dw_norm=True,
        transformer_sepconv=True,
        attn_v_ratio=4,
        attn_scale=None,  # attn_scale_factor / sqrt(C / heads)
        attn_proj=conv1x1_bn,
        attn_scale_factor=cfg.attn_scale_factor,
    )


class SDTv3(MetaSDT):
    """SDT-v3 classifier; see the module docstring for sizes and options, :class:`MetaSDT` for the layout."""

    def __init__(self, cfg: SDTv3Config) -> None:
        if cfg.spike_max < 1:
            raise ValueError(f"spike_max (D) must be >= 1, got {cfg.spike_max}")
        super().__init__(cfg, _spec(cfg))

    def remap_checkpoint(self, state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Rename the authors' keys (``downsample1_1.encode_conv.weight`` ...) to this model's module names."""
        return {remap_sdt_v3_keys(k): v for k, v in state_dict.items()}


#: The paper's names for two of the sizes (sterf.md §3.1, inferred from the ADE20K parameter deltas).
_PAPER_NAMES = {"s": ' (the paper\'s "SDTv3-T")', "l": ' (the paper\'s "SDTv3-B")'}

register_sizes(
    SDTv3,
    {f"sdt_v3_{size}": cfg for size, cfg in SIZES.items()},
    family="sdt_v3",
    describe=lambda name, cfg: f"SDT-v3-{name[-1].upper()} (dims {'/'.join(map(str, cfg.embed_dims))})"
    f"{_PAPER_NAMES.get(name[-1], '')}, integer spikes D={cfg.spike_max}; mixer=conv|mlpixer|srb.",
    time_field="T",
    variants=tuple({"mixer": m} for m in ("conv", "mlpixer", "srb")),
)

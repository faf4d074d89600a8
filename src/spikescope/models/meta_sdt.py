"""The Meta-SDT macro layout shared by SDT-v2 (Meta-SpikeFormer) and SDT-v3 (E-SpikeFormer), sterf.md §3.1.

For embed dims ``[C0, C1, C2, C3]`` and a 224x224 input (C, stride, map)::

    stage1  downsamples.0  Conv7x7 s2 + BN (no spike before)
            blocks.0       ConvBlock                                C0/2   2  112^2
            downsamples.1  SN -> Conv3x3 s2 + BN
            blocks.1       ConvBlock                                C0     4   56^2
    stage2  downsamples.0  SN -> Conv3x3 s2 + BN
            blocks.0-1     ConvBlock                                C1     8   28^2
    stage3  downsamples.0  SN -> Conv3x3 s2 + BN
            blocks.0-5     TransformerBlock                         C2    16   14^2
    stage4  downsamples.0  SN -> Conv3x3 s1 + BN
            blocks.0-1     TransformerBlock                         C3    16   14^2
    head    mean over H, W -> SN -> Linear(C3, classes)   (the released v2 classifier has no SN here)

The channel mixer of the four ConvBlocks is chosen by ``mixer`` (:mod:`spikescope.layers.mixers`); stages 3-4 and
the SepConv token mixers do not change with it. Dense heads read (sterf.md §3.9): det P1..P4 = ``stage1`` ..
``stage4``; seg x1..x4 = ``stage1.block0``, ``stage1``, ``stage2``, ``stage4``.
"""
from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from ..layers.conv_bn import NeuronFactory
from ..layers.meta_attention import (
    MLP,
    ConvBlock,
    Downsample,
    MetaSpikeDrivenSelfAttention,
    ProjFactory,
    SepConv,
    TransformerBlock,
)
from ..layers.mixers import LAYOUTS, MIXERS, build_mixer

__all__ = [
    "BlockSpec",
    "MetaSDT",
    "Stage",
    "STRIDE",
    "DEPTHS",
    "KeyRules",
    "compile_key_rules",
    "rename_key",
    "RELEASED_LAYOUT_RULES",
]

#: Total downsampling of the network; input H and W must be multiples of it.
STRIDE = 16
#: (conv blocks of stage 1, stage 2; transformer blocks of stage 3, stage 4) in every released size.
DEPTHS = (2, 2, 6, 2)


KeyRules = list[tuple[re.Pattern, "str | Callable[[re.Match], str]"]]


def compile_key_rules(rules: list[tuple[str, str | Callable[[re.Match], str]]]) -> KeyRules:
    """``[(regex, replacement), ...]`` -> compiled rules for :func:`rename_key`."""
    return [(re.compile(pattern), repl) for pattern, repl in rules]


def rename_key(key: str, rules: KeyRules) -> str:
    """Apply every rule in order (``re.sub``); a key that matches none comes back unchanged."""
    for pattern, repl in rules:
        key = pattern.sub(repl, key)
    return key


#: The released code's module names for the layout (both families): downsamples, blocks, encode conv/BN.
RELEASED_LAYOUT_RULES = [
    (r"^downsample1_1\.", "stage1.downsamples.0."),
    (r"^downsample1_2\.", "stage1.downsamples.1."),
    (r"^downsample([234])\.", r"stage\1.downsamples.0."),
    (r"^ConvBlock1_1\.0\.", "stage1.blocks.0."),
    (r"^ConvBlock1_2\.0\.", "stage1.blocks.1."),
    (r"^ConvBlock2_([12])\.0\.", lambda m: f"stage2.blocks.{int(m.group(1)) - 1}."),
    (r"^block([34])\.(\d+)\.", r"stage\1.blocks.\2."),
    (r"\.encode_conv\.", ".conv."),
    (r"\.encode_bn\.", ".bn."),
    # the conv blocks' channel mixers: conv1/bn1/conv2/bn2 (conv, SRB) and fc1/fc2 (MLPixer, SRB)
    (r"^(stage[12]\.blocks\.\d)\.conv([12])\.", r"\1.channel_mixer.fc\2.conv."),
    (r"^(stage[12]\.blocks\.\d)\.bn([12])\.", r"\1.channel_mixer.fc\2.bn."),
    (r"^(stage[12]\.blocks\.\d)\.fc([12])\.", r"\1.channel_mixer.fc\2."),
    (r"\.mlp\.fc([12])_conv\.", r".mlp.fc\1.conv."),
    (r"\.mlp\.fc([12])_bn\.", r".mlp.fc\1.bn."),
]


@dataclass(frozen=True)
class BlockSpec:
    """What differs between SDT-v2 and SDT-v3 inside the shared layout."""

    neuron: NeuronFactory  # every spike layer
    attn_neuron: NeuronFactory  # the spike on the attention product
    head_neuron: NeuronFactory | None  # the spike before the classifier (None: the head reads the real mean)
    sepconv_dw_norm: bool  # BN + spike after the SepConv depthwise conv (v3)
    transformer_sepconv: bool  # a SepConv_3 token mixer in each transformer block (v3)
    attn_v_ratio: int  # V width / C
    attn_scale: float | None  # None: 2 / sqrt(head dim)
    attn_proj: ProjFactory  # q/k/v/out projection


class Stage(nn.Module):
    """Blocks, each preceded by its downsample (``nn.Identity`` where there is none)."""

    def __init__(self, blocks: list[nn.Module], downsamples: dict[int, nn.Module]) -> None:
        super().__init__()
        self.downsamples = nn.ModuleList([downsamples.get(i, nn.Identity()) for i in range(len(blocks))])
        self.blocks = nn.ModuleList(blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for down, block in zip(self.downsamples, self.blocks):
            x = block(down(x))
        return x


class MetaSDT(nn.Module):
    """Meta-SDT classifier: ``[B, 3, H, W]`` (repeated over ``T``) or ``[T, B, 3, H, W]`` -> ``[T, B, classes]``.

    ``cfg`` needs ``embed_dims, num_classes, in_chans, T, heads, mlp_ratio, mixer, mixer_ratio, mixer_layout,
    mixer_drop``; ``spec`` says which neuron and block variants to build.
    """

    def __init__(self, cfg, spec: BlockSpec) -> None:
        super().__init__()
        _validate(cfg)
        self.cfg = cfg
        c0, c1, c2, c3 = cfg.embed_dims
        n = spec.neuron

        def conv_block(dim: int) -> ConvBlock:
            mixer = build_mixer(cfg.mixer, dim, cfg.mixer_ratio, cfg.mixer_layout, cfg.mixer_drop, n)
            return ConvBlock(SepConv(dim, 7, n, dw_norm=spec.sepconv_dw_norm), mixer)

        def transformer_block(dim: int) -> TransformerBlock:
            attn = MetaSpikeDrivenSelfAttention(
                dim, n, spec.attn_neuron, cfg.heads, spec.attn_v_ratio, spec.attn_scale, spec.attn_proj
            )
            token = SepConv(dim, 3, n, dw_norm=spec.sepconv_dw_norm) if spec.transformer_sepconv else None
            return TransformerBlock(attn, MLP(dim, cfg.mlp_ratio, n), token)

        _, d2, d3, d4 = DEPTHS
        self.stage1 = Stage(
            [conv_block(c0 // 2), conv_block(c0)],
            {0: Downsample(cfg.in_chans, c0 // 2, 7, 2, None), 1: Downsample(c0 // 2, c0, 3, 2, n)},
        )
        self.stage2 = Stage([conv_block(c1) for _ in range(d2)], {0: Downsample(c0, c1, 3, 2, n)})
        self.stage3 = Stage([transformer_block(c2) for _ in range(d3)], {0: Downsample(c1, c2, 3, 2, n)})
        self.stage4 = Stage([transformer_block(c3) for _ in range(d4)], {0: Downsample(c2, c3, 3, 1, n)})
        self.head_sn = spec.head_neuron() if spec.head_neuron is not None else nn.Identity()
        self.head = nn.Linear(c3, cfg.num_classes) if cfg.num_classes > 0 else nn.Identity()
        self.apply(_init_linear)

    @property
    def stages(self) -> list[Stage]:
        return [self.stage1, self.stage2, self.stage3, self.stage4]

    def _as_sequence(self, x: torch.Tensor, any_size: bool = False) -> torch.Tensor:
        if x.dim() not in (4, 5) or x.shape[-3] != self.cfg.in_chans:
            raise ValueError(
                f"{type(self).__name__}: expected [B, {self.cfg.in_chans}, H, W] or [T, B, {self.cfg.in_chans}, H, W],"
                f" got shape {tuple(x.shape)}"
            )
        if x.dim() == 4:
            x = x.unsqueeze(0).expand(self.cfg.T, *x.shape)
        H, W = x.shape[-2:]
        if not any_size and (H % STRIDE or W % STRIDE):
            fix_h, fix_w = -(-H // STRIDE) * STRIDE, -(-W // STRIDE) * STRIDE
            raise ValueError(
                f"{type(self).__name__}: input height and width must be multiples of {STRIDE}, got {H}x{W}; "
                f"resize or pad to e.g. {fix_h}x{fix_w}"
            )
        return x

    def forward_features(
        self, x: torch.Tensor, blocks: bool = False, up_to: str | None = None, any_size: bool = False
    ) -> dict[str, torch.Tensor]:
        """Named outputs ``stage1`` .. ``stage4``, each ``[T, B, C, H, W]`` (real-valued, after the residual add).

        With ``blocks=True`` every block's output is included too, in execution order, named ``stage{s}.block{i}``
        (``stage1.block0`` is ConvBlock1_1 at stride 2, ``stage1.block1`` = ``stage1`` is ConvBlock1_2 at stride 4).
        ``up_to`` (a stage or block name) stops the network after that output: ``up_to="stage2"`` skips
        stages 3-4, e.g. for an ERF of the early stages. ``any_size=True`` accepts H, W that are not multiples of 16
        (dense heads on whole resized images): every stride-2 layer then gives ceil(H / 2), as the released code.
        """
        names = self.feature_names(blocks=True)
        if up_to is not None and up_to not in names:
            raise ValueError(f"{type(self).__name__}: unknown feature {up_to!r}; choose from {names}")
        x = self._as_sequence(x, any_size)
        feats: dict[str, torch.Tensor] = {}
        for s, stage in enumerate(self.stages, start=1):
            for i, (down, block) in enumerate(zip(stage.downsamples, stage.blocks)):
                x = block(down(x))
                name = f"stage{s}.block{i}"
                if blocks or name == up_to:
                    feats[name] = x
                if name == up_to:
                    return feats
            feats[f"stage{s}"] = x
            if f"stage{s}" == up_to:
                return feats
        return feats

    def feature_names(self, blocks: bool = False) -> list[str]:
        """The keys :meth:`forward_features` returns, in order."""
        names = []
        for s, stage in enumerate(self.stages, start=1):
            if blocks:
                names += [f"stage{s}.block{i}" for i in range(len(stage.blocks))]
            names.append(f"stage{s}")
        return names

    def forward_head(self, x: torch.Tensor) -> torch.Tensor:
        """``[T, B, C, H, W]`` stage-4 features -> ``[T, B, classes]``."""
        return self.head(self.head_sn(x.mean((3, 4))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self._as_sequence(x)
        for stage in self.stages:
            x = stage(x)
        return self.forward_head(x)


def _init_linear(m: nn.Module) -> None:
    """Released init: trunc-normal(0.02) weights and zero bias for every ``nn.Linear``; PyTorch defaults elsewhere."""
    if isinstance(m, nn.Linear):
        nn.init.trunc_normal_(m.weight, std=0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)


def _validate(cfg) -> None:
    if len(cfg.embed_dims) != 4:
        raise ValueError(f"embed_dims must have 4 entries [C0, C1, C2, C3], got {cfg.embed_dims}")
    if cfg.embed_dims[0] % 2:
        raise ValueError(f"embed_dims[0] must be even (stage 1 starts at C0/2), got {cfg.embed_dims[0]}")
    if cfg.mixer not in MIXERS:
        raise ValueError(f"unknown mixer {cfg.mixer!r}; use one of {MIXERS}")
    if cfg.mixer_layout not in LAYOUTS:
        raise ValueError(f"unknown mixer_layout {cfg.mixer_layout!r}; use one of {LAYOUTS}")
    if cfg.T < 1:
        raise ValueError(f"T must be >= 1, got {cfg.T}")

"""Semantic FPN on the SDT-v3 backbones (the ADE20K model of the ST-ERF paper, Table "ADE20K"), as released.

``semfpn_sdt_v3_{s,m,l}``: backbone taps ``stage1.block0`` (ConvBlock1_1, stride 2), ``stage1`` (4), ``stage2`` (8)
and ``stage4`` (16) -> :class:`~.neck.QFPN` (``neck_channels``) -> :class:`~.head.QFPNHead` -> logits at stride 2,
averaged over T. Input ``[B, 3, H, W]`` of any size, output ``[B, num_classes, ceil(H/2), ceil(W/2)]``.

Options: the backbone's (``mixer`` = ``conv|mlpixer|srb|mlpixer6``, ``mixer_ratio``, ``mlp_ratio``, ``mixer_layout``,
``mixer_drop``, ``T``, ``spike_max``, ``embed_dims`` to change the size's widths; ``mlpixer6`` is the paper's
"MLPixer e6" = ``mixer="mlpixer", mixer_ratio=6, mlp_ratio=6``), ``neck_channels`` (128; 256 is the
released ``sr_l`` config), ``num_classes`` (150), and three flags whose defaults reproduce the released code:

* ``spike_norm=1.0``: the neck/head spikes are integers 0..D (the released quantiser ignores its Norm argument);
  ``spike_norm=4`` gives the intended {0, 1/4, ..., 1}.
* ``head_dropout=0.0``: the released head builds Dropout2d(0.1) but never applies it; 0.1 applies it.
* ``avg_non_ignore=False``: the loss sums the cross-entropy of the non-ignored pixels and divides by all pixels;
  ``True`` divides by the non-ignored ones (PyTorch's mean).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, fields
from functools import partial

import torch
import torch.nn.functional as F
from torch import nn

from ...data.ade20k import IGNORE_INDEX
from ...models.registry import apply_overrides, register_model
from ...neurons import IntegerSpike
from ..backbone import SEG_TAPS, build_backbone
from ..spikes import DenseSpike
from .head import QFPNHead
from .neck import QFPN

__all__ = ["SemFPNConfig", "SemanticFPN", "seg_loss", "SIZES", "remap_semfpn_key"]


@dataclass(frozen=True)
class SemFPNConfig:
    size: str = "s"
    num_classes: int = 150
    neck_channels: int = 128
    mixer: str = "conv"
    mixer_ratio: int | None = None  # None: the backbone's default (4)
    mlp_ratio: int | None = None
    mixer_layout: str = "raster"
    mixer_drop: float | None = None
    T: int = 1
    spike_max: int = 4
    embed_dims: tuple[int, int, int, int] | None = None  # None: the size's own
    spike_norm: float = 1.0
    head_dropout: float = 0.0
    avg_non_ignore: bool = False


SIZES = {s: SemFPNConfig(size=s) for s in ("s", "m", "l")}
_BACKBONE_FIELDS = ("mixer", "mixer_ratio", "mlp_ratio", "mixer_layout", "mixer_drop", "T", "spike_max")


def seg_loss(logits: torch.Tensor, labels: torch.Tensor, avg_non_ignore: bool = False,
             ignore_index: int = IGNORE_INDEX) -> torch.Tensor:
    """Cross-entropy of ``[B, K, h, w]`` logits (bilinearly resized to the labels' ``[B, H, W]``).

    Released: the sum over non-ignored pixels divided by all B*H*W pixels; ``avg_non_ignore``: by the non-ignored.
    """
    if logits.shape[-2:] != labels.shape[-2:]:
        logits = F.interpolate(logits, size=labels.shape[-2:], mode="bilinear", align_corners=False)
    total = F.cross_entropy(logits, labels, ignore_index=ignore_index, reduction="sum")
    count = (labels != ignore_index).sum() if avg_non_ignore else torch.tensor(labels.numel())
    return total / count.clamp(min=1).to(total.dtype)


class SemanticFPN(nn.Module):
    """Backbone taps -> QFPN -> QFPNHead; ``forward`` gives stride-2 logits, :meth:`loss` the released loss."""

    def __init__(self, cfg: SemFPNConfig) -> None:
        super().__init__()
        if cfg.neck_channels < 1:
            raise ValueError(f"neck_channels must be >= 1, got {cfg.neck_channels}")
        self.cfg = cfg
        options = {k: getattr(cfg, k) for k in _BACKBONE_FIELDS if getattr(cfg, k) is not None}
        if cfg.embed_dims is not None:
            options["embed_dims"] = tuple(cfg.embed_dims)
        self.backbone = build_backbone(f"sdt_v3_{cfg.size}", SEG_TAPS, **options)
        if cfg.spike_norm == 1.0:  # as released: integers 0..D
            spike = partial(DenseSpike, cfg.spike_max)
        else:
            spike = partial(IntegerSpike, cfg.spike_max, norm=cfg.spike_norm)
        self.neck = QFPN(self.backbone.channels, cfg.neck_channels, spike)
        self.head = QFPNHead(cfg.neck_channels, cfg.num_classes, spike, cfg.head_dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, 3, H, W]`` (or ``[T, B, 3, H, W]``) -> logits ``[B, num_classes, ceil(H/2), ceil(W/2)]``."""
        return self.head(self.neck(list(self.backbone(x).values()))).mean(0)

    def loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """:func:`seg_loss` with this model's ``avg_non_ignore``."""
        return seg_loss(logits, labels, self.cfg.avg_non_ignore)

    def head_parameters(self) -> list[nn.Parameter]:
        """The decode head's parameters (trained at 2x the learning rate in the released recipe)."""
        return list(self.head.parameters())

    def remap_checkpoint(self, state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Rename a released mmseg checkpoint's keys (``backbone.*``, ``neck.*``, ``decode_head.*``) to ours."""
        out = {}
        for key, value in state_dict.items():
            if key.startswith("backbone."):
                inner = self.backbone.body.remap_checkpoint({key[len("backbone."):]: value})
                key = "backbone.body." + next(iter(inner))
            else:
                key = remap_semfpn_key(key)
            out[key] = value
        return out


_HEAD_RULES = [
    (re.compile(r"^neck\.lateral_convs\.(\d)\.0\."), r"neck.lateral.\1.conv."),
    (re.compile(r"^neck\.lateral_convs\.(\d)\.1\."), r"neck.lateral.\1.bn."),
    (re.compile(r"^neck\.fpn_convs\.(\d)\.0\."), r"neck.output.\1.conv."),
    (re.compile(r"^neck\.fpn_convs\.(\d)\.1\."), r"neck.output.\1.bn."),
    (re.compile(r"^decode_head\.scale_heads\.(\d)\.([024])\.1\."),
     lambda m: f"head.branches.{m.group(1)}.{int(m.group(2)) // 2}.conv."),
    (re.compile(r"^decode_head\.scale_heads\.(\d)\.([024])\.2\."),
     lambda m: f"head.branches.{m.group(1)}.{int(m.group(2)) // 2}.bn."),
    (re.compile(r"^decode_head\.conv_seg\."), "head.classifier."),
]


def remap_semfpn_key(key: str) -> str:
    """One released neck / decode-head key (``decode_head.scale_heads.3.4.1.weight``) -> ours
    (``head.branches.3.2.conv.weight``); other keys come back unchanged."""
    for pattern, repl in _HEAD_RULES:
        key = pattern.sub(repl, key)
    return key


def _builder(size: str):
    base = SIZES[size]
    name = f"semfpn_sdt_v3_{size}"

    def build(**overrides) -> SemanticFPN:
        if "size" in overrides:
            raise TypeError(f"{name}: the size is part of the name; use semfpn_sdt_v3_{{s,m,l}}")
        return SemanticFPN(apply_overrides(base, overrides, name))

    build.__name__ = name
    build.__doc__ = (f"Semantic FPN (QFPN + QFPNHead) on SDT-v3-{size.upper()}, ADE20K 150 classes; "
                     f"options {[f.name for f in fields(SemFPNConfig) if f.name != 'size']}.")
    return build


for _size in SIZES:
    register_model(f"semfpn_sdt_v3_{_size}", input_size=(3, 512, 512), timesteps=1, family="semfpn",
                   variants=tuple({"mixer": m} for m in ("srb", "mlpixer", "mlpixer6")))(_builder(_size))

"""Backbone taps for dense heads: named SDT-v3 / Meta-SpikeFormer features as ``[T, B, C, H, W]``, any input size.

Taps (ST-ERF detection and segmentation code, EricZhang1412/Spatial-temporal-ERF ``det/`` and ``seg/``)::

    tap             released name   channels   true stride
    stage1.block0   ConvBlock1_1    C0 / 2     2
    stage1          ConvBlock1_2    C0         4
    stage2          ConvBlock2_2    C1         8
    stage3          block3[5]       C2         16
    stage4          block4[1]       C3         16    (the stage-4 downsample has stride 1)

Detection reads ``DET_TAPS`` = stage1..stage4, segmentation ``SEG_TAPS`` = stage1.block0, stage1, stage2, stage4.
Inputs of any height and width are accepted (stride-2 layers give ceil(H / 2), as the released code). The MLPixer /
SRB raster reshape mixes everything in the tensor, batch padding included, as the released code does.

Backbone options: ``mixer="conv"|"mlpixer"|"srb"|"mlpixer6"``; ``"mlpixer6"`` is the paper's "MLPixer ε6", i.e.
``mixer="mlpixer", mixer_ratio=6, mlp_ratio=6`` (the released ε6 classes pass one ratio to both the conv-block
mixers and the transformer MLPs).
"""
from __future__ import annotations

import re
from collections.abc import Sequence

import torch
from torch import nn

from ..models import create_model
from ..models.meta_sdt import MetaSDT

__all__ = ["DenseBackbone", "DET_TAPS", "SEG_TAPS", "MIXER_PRESETS", "backbone_options", "build_backbone"]

DET_TAPS = ("stage1", "stage2", "stage3", "stage4")
SEG_TAPS = ("stage1.block0", "stage1", "stage2", "stage4")

#: Named backbone options that expand to several model options.
MIXER_PRESETS: dict[str, dict] = {"mlpixer6": {"mixer": "mlpixer", "mixer_ratio": 6, "mlp_ratio": 6}}

_TRUE_STRIDE = {"stage1.block0": 2, "stage1": 4, "stage1.block1": 4, "stage2": 8, "stage3": 16, "stage4": 16}


def backbone_options(mixer: str = "conv", **options) -> dict:
    """Model options for ``create_model`` with the presets expanded (``mixer="mlpixer6"`` -> three options).

    A preset's values win unless the same key is passed with a different value, which raises.
    """
    preset = MIXER_PRESETS.get(mixer, {"mixer": mixer})
    for key, value in preset.items():
        if key in options and options[key] != value:
            raise ValueError(f"mixer={mixer!r} sets {key}={value}, but {key}={options[key]} was also given; drop one")
    return {**options, **preset}


class DenseBackbone(nn.Module):
    """``[B, 3, H, W]`` or ``[T, B, 3, H, W]`` -> ``{tap: [T, B, C, h, w]}`` in the order of ``taps``.

    ``model`` is a :class:`~spikescope.models.meta_sdt.MetaSDT` (SDT-v3, Meta-SpikeFormer); its classifier head is
    dropped (an ``nn.Identity``) and the network stops after the last tap. State-dict keys stay the model's own
    (``body.stage1...``).
    """

    def __init__(self, model: nn.Module, taps: Sequence[str] = DET_TAPS) -> None:
        super().__init__()
        if not isinstance(model, MetaSDT):
            raise TypeError(f"DenseBackbone: expected an SDT-v3 / Meta-SpikeFormer model, got {type(model).__name__}")
        names = model.feature_names(blocks=True)
        bad = [t for t in taps if t not in names]
        if bad or not taps:
            raise ValueError(f"DenseBackbone: unknown taps {bad or list(taps)}; choose from {names}")
        model.head_sn, model.head = nn.Identity(), nn.Identity()
        self.body = model
        self.taps = tuple(taps)
        self._last = max(self.taps, key=names.index)

    @property
    def channels(self) -> list[int]:
        """Channels of each tap, in order."""
        c0, c1, c2, c3 = self.body.cfg.embed_dims
        per_stage = {1: c0, 2: c1, 3: c2, 4: c3}
        out = []
        for tap in self.taps:
            m = re.fullmatch(r"stage(\d)(?:\.block(\d+))?", tap)
            s, i = int(m.group(1)), m.group(2)
            out.append(c0 // 2 if (s == 1 and i == "0") else per_stage[s])
        return out

    @property
    def strides(self) -> list[int]:
        """True stride of each tap (stage-3/4 blocks: 16)."""
        return [_TRUE_STRIDE.get(t, 16 if t.startswith(("stage3", "stage4")) else 8) for t in self.taps]

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        feats = self.body.forward_features(x, blocks=True, up_to=self._last, any_size=True)
        return {t: feats[t] for t in self.taps}


def build_backbone(name: str, taps: Sequence[str] = DET_TAPS, mixer: str = "conv", **options) -> DenseBackbone:
    """A :class:`DenseBackbone` of the registered ``name`` (e.g. ``"sdt_v3_s"``) without a head; ``mixer`` may be a
    preset (``"mlpixer6"``), ``options`` go to ``create_model``."""
    return DenseBackbone(create_model(name, num_classes=0, **backbone_options(mixer, **options)), taps)

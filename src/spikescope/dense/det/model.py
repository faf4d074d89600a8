"""Spiking Mask R-CNN on SDT-v3 (ST-ERF detection code, EricZhang1412/Spatial-temporal-ERF ``det/``).

``maskrcnn_sdt_v3_{s,l}``: DenseBackbone (taps stage1..stage4) -> SpikeFPN (256, P2..P6) -> spiking RPN ->
RoI box head (2 FC 1024) and mask head (4 convs, 28 x 28), every layer after the backbone preceded by an integer
spike. Options: ``mixer`` (``conv | srb | mlpixer | mlpixer6``), ``mixer_ratio``, ``mlp_ratio``, ``mixer_drop``,
``layout`` (``"official"``: the released stride labels and FPN eval clamp; ``"corrected"``: true strides, consistent
clamp), ``fpn_eval_clamp`` (override the clamp alone), ``num_classes``, ``neck_channels``, ``fc``, ``embed_dims``,
``T``, ``rpn_proposals`` (1000), ``roi_batch`` (512). Parameters (80 classes): S conv 24,924,368, S SRB 24,619,856, L conv 38,738,616, L SRB 37,523,384.

``model(images [B, 3, H, W], image_sizes, targets=None)``: ``images`` padded to multiples of 32, ``image_sizes`` the
unpadded ``(h, w)`` of each; training with ``targets`` (per image ``boxes [n, 4]`` xyxy, ``labels [n]`` 0-based,
``masks [n, h, w]`` bool) returns the five losses; evaluation returns per image ``boxes, scores, labels,
mask_probs [n, 28, 28]`` in input pixels. ``forward_features`` names the backbone and FPN maps for
``spikescope erf spatial --model maskrcnn_sdt_v3_s --layers stage4 p5 ...``.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass

import torch
from torch import nn

from ...models import register_model
from ...models.registry import apply_overrides
from ...models.sdt_v3 import remap_sdt_v3_keys
from ..backbone import DET_TAPS, build_backbone
from .neck import SpikeFPN
from .roi_heads import RoIHeads
from .rpn import RPN

__all__ = ["MaskRCNNConfig", "SpikeMaskRCNN", "remap_detector_key", "PARAMS"]

#: Parameter counts of the released detector rebuilt in plain torch (80 classes).
PARAMS = {("s", "conv"): 24_924_368, ("s", "srb"): 24_619_856, ("s", "mlpixer"): 24_316_400,
          ("s", "mlpixer6"): 25_049_328, ("l", "conv"): 38_738_616, ("l", "srb"): 37_523_384,
          ("l", "mlpixer"): 36_310_264, ("l", "mlpixer6"): 39_085_016}


@dataclass(frozen=True)
class MaskRCNNConfig:
    backbone: str = "sdt_v3_s"
    mixer: str = "conv"
    mixer_ratio: int | None = None  # None: the backbone's default (4; 6 with mixer="mlpixer6")
    mlp_ratio: int | None = None
    mixer_drop: float | None = None  # None: as released (0.2 in MLPixer / SRB)
    embed_dims: tuple[int, int, int, int] | None = None  # None: the backbone size's
    T: int = 1
    num_classes: int = 80
    neck_channels: int = 256
    fc: int = 1024
    layout: str = "official"
    fpn_eval_clamp: bool | None = None  # None: True with layout official, False with corrected
    rpn_proposals: int = 1000  # proposals kept per image after NMS (train and test)
    roi_batch: int = 512  # RoIs sampled per image for the box head's loss


class SpikeMaskRCNN(nn.Module):
    def __init__(self, cfg: MaskRCNNConfig) -> None:
        super().__init__()
        if cfg.layout not in ("official", "corrected"):
            raise ValueError(f"layout must be 'official' or 'corrected', got {cfg.layout!r}")
        self.cfg = cfg
        opts = {k: getattr(cfg, k) for k in ("mixer_ratio", "mlp_ratio", "embed_dims") if getattr(cfg, k) is not None}
        self.backbone = build_backbone(cfg.backbone, DET_TAPS, mixer=cfg.mixer, mixer_drop=cfg.mixer_drop, T=cfg.T,
                                       **opts)
        clamp = cfg.layout == "official" if cfg.fpn_eval_clamp is None else cfg.fpn_eval_clamp
        self.neck = SpikeFPN(self.backbone.channels, cfg.neck_channels, released_clamp=clamp)
        self.rpn = RPN(cfg.neck_channels, cfg.layout, max_per_img=cfg.rpn_proposals)
        self.roi_head = RoIHeads(cfg.neck_channels, cfg.fc, cfg.num_classes, cfg.layout, batch_per_image=cfg.roi_batch)

    def features(self, images: torch.Tensor) -> list[torch.Tensor]:
        """P2..P6 ``[T, B, C, h, w]`` of a padded batch."""
        return self.neck(list(self.backbone(images).values()))

    def forward_features(self, x: torch.Tensor, blocks: bool = False) -> dict[str, torch.Tensor]:
        """Named maps for the ERF tools: the backbone's (``stage1`` .. ``stage4``; every block with ``blocks``) and
        the FPN outputs ``p2`` .. ``p6``, each ``[T, B, C, h, w]``."""
        feats = self.backbone.body.forward_features(x, blocks=True, any_size=True)
        pyramid = self.neck([feats[t] for t in DET_TAPS])
        if not blocks:
            feats = {k: v for k, v in feats.items() if "." not in k}
        return {**feats, **{f"p{i + 2}": p for i, p in enumerate(pyramid)}}

    def forward(self, images: torch.Tensor, image_sizes: list[tuple[int, int]], targets: list[dict] | None = None):
        feats = self.features(images)
        pad = [(math.ceil(h / 32) * 32, math.ceil(w / 32) * 32) for h, w in image_sizes]
        if self.training:
            if targets is None:
                raise ValueError("SpikeMaskRCNN: training mode needs targets; call model.eval() to predict")
            proposals, losses = self.rpn(feats, image_sizes, pad, [t["boxes"] for t in targets])
            losses.update(self.roi_head(feats, proposals, image_sizes, targets))
            return losses
        proposals, _ = self.rpn(feats, image_sizes, pad)
        return self.roi_head(feats, proposals, image_sizes)

    def remap_checkpoint(self, state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The released detector's keys (``neck.lateral_convs.0.1.module.conv.weight`` ...) -> ours."""
        return {remap_detector_key(k): v for k, v in state_dict.items()}




def remap_detector_key(key: str) -> str:
    """One key of a released detector checkpoint -> ours; keys already ours come back unchanged."""
    if key.startswith("backbone.") and not key.startswith("backbone.body."):
        return "backbone.body." + remap_sdt_v3_keys(key[len("backbone."):])
    for wrapped in (".1.module.conv.", ".1.module."):
        if wrapped in key:
            key = key.replace(wrapped, ".layer.")
            break
    if key.startswith("rpn_head."):
        key = re.sub(r"^rpn_head\.(rpn_cls|rpn_reg)\.layer\.", r"rpn_head.\1.", key)  # one shared spike here
        key = "rpn.head." + key[len("rpn_head."):]
    return key


def _builder(size: str):
    base = MaskRCNNConfig(backbone=f"sdt_v3_{size}")

    def builder(**overrides) -> nn.Module:
        return SpikeMaskRCNN(apply_overrides(base, overrides, f"maskrcnn_sdt_v3_{size}"))

    builder.__name__ = f"maskrcnn_sdt_v3_{size}"
    builder.__doc__ = (f"Spiking Mask R-CNN 1x on SDT-v3-{size.upper()} (COCO, 80 classes); "
                       "mixer=conv|srb|mlpixer|mlpixer6, layout=official|corrected.")
    return builder


for _size in ("s", "l"):
    register_model(f"maskrcnn_sdt_v3_{_size}", input_size=(3, 800, 1216), timesteps=1, family="maskrcnn_sdt_v3",
                   variants=tuple({"mixer": m} for m in ("conv", "srb", "mlpixer", "mlpixer6")))(_builder(_size))

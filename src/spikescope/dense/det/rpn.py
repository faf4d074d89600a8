"""Spiking RPN of the released detector: head, targets, losses and proposals (mmdet ``RPNHead`` rules).

Head (shared over P2..P6): spike -> Conv3x3 (no ReLU) -> spike -> Conv1x1 objectness (3) and deltas (12,
anchor-major); logits averaged over T; init normal(0, 0.01), bias 0.
Targets: valid anchors only (:func:`~.anchors.valid_flags`), MaxIoU 0.7 / 0.3 with low-quality matches at 0.3,
256 sampled anchors per image (<= 50 % positive). Losses: objectness BCE summed over the sampled anchors and box L1
summed over the positives' 4 deltas, each divided by the batch's number of sampled anchors.
Proposals per image: per level the top ``nms_pre`` scores, decode, clip to the image, drop empty boxes, NMS 0.7 per
level, keep the best ``max_per_img``.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops import batched_nms, clip_boxes_to_image

from ..spikes import Spiked, head_spike
from .anchors import RATIOS, SIZES, STRIDES, grid_anchors, valid_flags
from .boxes import DeltaCoder, max_iou_assign, sample

__all__ = ["SpikeRPNHead", "RPN"]


class SpikeRPNHead(nn.Module):
    """P_l ``[T, B, C, H, W]`` -> objectness ``[B, A, H, W]`` and deltas ``[B, 4A, H, W]`` (means over T)."""

    def __init__(self, channels: int = 256, anchors: int = len(RATIOS)) -> None:
        super().__init__()
        self.rpn_conv = Spiked(head_spike(), nn.Conv2d(channels, channels, 3, padding=1))
        self.sn = head_spike()
        self.rpn_cls = nn.Conv2d(channels, anchors, 1)
        self.rpn_reg = nn.Conv2d(channels, 4 * anchors, 1)
        for m in (self.rpn_conv.layer, self.rpn_cls, self.rpn_reg):
            nn.init.normal_(m.weight, std=0.01)
            nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        s = self.sn(self.rpn_conv(x)).flatten(0, 1)
        t = x.shape[0]
        return (self.rpn_cls(s).unflatten(0, (t, -1)).mean(0), self.rpn_reg(s).unflatten(0, (t, -1)).mean(0))


class RPN(nn.Module):
    """Head + anchors + targets/losses (training) + proposals.

    ``forward(feats, image_sizes, pad_sizes, gt_boxes=None)`` -> ``(proposals per image [<=max_per_img, 4],
    losses)``; ``losses`` is empty without ``gt_boxes``.
    """

    def __init__(self, channels: int = 256, layout: str = "official", nms_pre: tuple[int, int] = (2000, 1000),
                 max_per_img: int = 1000, nms_iou: float = 0.7, batch_per_image: int = 256,
                 pos_fraction: float = 0.5) -> None:
        super().__init__()
        if layout not in STRIDES:
            raise ValueError(f"RPN: unknown layout {layout!r}; use one of {list(STRIDES)}")
        self.head = SpikeRPNHead(channels)
        self.strides = STRIDES[layout]
        self.coder = DeltaCoder()
        self.nms_pre, self.max_per_img, self.nms_iou = nms_pre, max_per_img, nms_iou
        self.batch_per_image, self.pos_fraction = batch_per_image, pos_fraction

    def anchors(self, grids: list[tuple[int, int]], device) -> list[torch.Tensor]:
        return [grid_anchors(SIZES[lv], self.strides[lv], g, device) for lv, g in enumerate(grids)]

    def forward(self, feats: list[torch.Tensor], image_sizes: list[tuple[int, int]],
                pad_sizes: list[tuple[int, int]], gt_boxes: list[torch.Tensor] | None = None):
        outs = [self.head(f) for f in feats]
        grids = [tuple(o[0].shape[-2:]) for o in outs]
        anchors = self.anchors(grids, feats[0].device)
        B = outs[0][0].shape[0]
        # per image, per level: scores [H*W*A], deltas [H*W*A, 4] in anchor order (row, column, ratio)
        scores = [o[0].permute(0, 2, 3, 1).reshape(B, -1) for o in outs]
        deltas = [o[1].permute(0, 2, 3, 1).reshape(B, -1, 4) for o in outs]
        losses = {}
        if gt_boxes is not None:
            losses = self.loss(anchors, grids, torch.cat(scores, 1), torch.cat(deltas, 1), pad_sizes, gt_boxes)
        with torch.no_grad():
            props = [self._proposals([s[b] for s in scores], [d[b] for d in deltas], anchors, image_sizes[b])
                     for b in range(B)]
        return props, losses

    def loss(self, anchors, grids, scores, deltas, pad_sizes, gt_boxes) -> dict[str, torch.Tensor]:
        flat = torch.cat(anchors)
        assigned, targets = [], []
        for b, gt in enumerate(gt_boxes):
            valid = torch.cat([valid_flags(g, self.strides[lv], pad_sizes[b], flat.device)
                               for lv, g in enumerate(grids)])
            a = max_iou_assign(gt, flat, 0.7, 0.3, 0.3, valid)
            assigned.append(a)
            targets.append(self.coder.encode(gt[(a - 1).clamp(min=0)], flat) if gt.numel() else torch.zeros_like(flat))
        pos, neg = sample(assigned, self.batch_per_image, self.pos_fraction)
        pos, neg = torch.stack(pos), torch.stack(neg)
        n = (pos | neg).sum().clamp(min=1)
        chosen = pos | neg
        cls = F.binary_cross_entropy_with_logits(scores[chosen], pos[chosen].to(scores.dtype), reduction="sum") / n
        box = (deltas[pos] - torch.stack(targets)[pos]).abs().sum() / n
        return {"loss_rpn_cls": cls, "loss_rpn_bbox": box}

    def _proposals(self, scores, deltas, anchors, image_size) -> torch.Tensor:
        pre = self.nms_pre[0 if self.training else 1]
        boxes, kept, levels = [], [], []
        for lv, (s, d, a) in enumerate(zip(scores, deltas, anchors)):
            s = s.sigmoid()
            top = s.topk(min(pre, s.numel())).indices
            b = clip_boxes_to_image(self.coder.decode(d[top], a[top]), image_size)
            boxes.append(b)
            kept.append(s[top])
            levels.append(torch.full_like(top, lv))
        boxes, kept, levels = torch.cat(boxes), torch.cat(kept), torch.cat(levels)
        ok = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
        boxes, kept, levels = boxes[ok], kept[ok], levels[ok]
        keep = batched_nms(boxes.float(), kept.float(), levels, self.nms_iou)[: self.max_per_img]
        return boxes[keep].detach()

"""Box maths of the released Mask R-CNN (mmdet 3.x rules): delta coder, MaxIoU assigner, random sampling.

* :class:`DeltaCoder` - deltas ``((cx' - cx) / w, (cy' - cy) / h, log(w' / w), log(h' / h)) / stds``, widths
  ``x2 - x1`` (no +1); decoding clamps ``dw, dh`` to ``±log(1000 / 16)`` on both sides (torchvision's ``BoxCoder``
  clamps only above, so it is not reused).
* :func:`max_iou_assign` - mmdet ``MaxIoUAssigner`` with ``gt_max_assign_all``: negatives ``0 <= IoU < neg``,
  positives ``IoU >= pos``, then for each GT in order whose best IoU is ``>= min_pos`` every candidate with exactly
  that IoU becomes its positive (a later GT overwrites). torchvision's ``Matcher`` has no ``min_pos``.
* :func:`sample` - torchvision's ``BalancedPositiveNegativeSampler`` (the same rule as mmdet's ``RandomSampler``).
"""
from __future__ import annotations

import math

import torch
from torchvision.models.detection._utils import BalancedPositiveNegativeSampler
from torchvision.ops import box_iou

__all__ = ["DeltaCoder", "max_iou_assign", "sample", "IGNORE", "NEGATIVE"]

IGNORE, NEGATIVE = -1, 0
_CLIP = abs(math.log(16 / 1000))


class DeltaCoder:
    """Encode boxes ``[N, 4]`` (x1, y1, x2, y2) against references, and decode deltas ``[N, 4]`` back."""

    def __init__(self, stds: tuple[float, float, float, float] = (1.0, 1.0, 1.0, 1.0)) -> None:
        self.stds = stds

    def _std(self, ref: torch.Tensor) -> torch.Tensor:
        return ref.new_tensor(self.stds)

    def encode(self, boxes: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
        rw, rh = ref[:, 2] - ref[:, 0], ref[:, 3] - ref[:, 1]
        rx, ry = ref[:, 0] + 0.5 * rw, ref[:, 1] + 0.5 * rh
        w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
        x, y = boxes[:, 0] + 0.5 * w, boxes[:, 1] + 0.5 * h
        d = torch.stack([(x - rx) / rw, (y - ry) / rh, torch.log(w / rw), torch.log(h / rh)], dim=1)
        return d / self._std(ref)

    def decode(self, deltas: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
        d = deltas * self._std(ref)
        rw, rh = ref[:, 2] - ref[:, 0], ref[:, 3] - ref[:, 1]
        rx, ry = ref[:, 0] + 0.5 * rw, ref[:, 1] + 0.5 * rh
        x, y = rx + d[:, 0] * rw, ry + d[:, 1] * rh
        w, h = rw * d[:, 2].clamp(-_CLIP, _CLIP).exp(), rh * d[:, 3].clamp(-_CLIP, _CLIP).exp()
        return torch.stack([x - 0.5 * w, y - 0.5 * h, x + 0.5 * w, y + 0.5 * h], dim=1)


def max_iou_assign(gt: torch.Tensor, boxes: torch.Tensor, pos: float, neg: float, min_pos: float,
                   valid: torch.Tensor | None = None) -> torch.Tensor:
    """``[N]`` assignment of ``boxes [N, 4]`` to ``gt [G, 4]``: ``-1`` ignored, ``0`` negative, ``g + 1`` GT ``g``.

    ``valid [N]`` (bool): candidates outside it are ignored and take no part in the matching.
    """
    n = boxes.shape[0]
    out = torch.full((n,), IGNORE, dtype=torch.long, device=boxes.device)
    ok = torch.ones(n, dtype=torch.bool, device=boxes.device) if valid is None else valid
    if gt.numel() == 0:
        out[ok] = NEGATIVE
        return out
    iou = box_iou(gt, boxes)
    iou[:, ~ok] = -1.0
    best, best_gt = iou.max(dim=0)
    out[(best >= 0) & (best < neg)] = NEGATIVE
    strong = best >= pos
    out[strong] = best_gt[strong] + 1
    gt_best = iou.max(dim=1).values
    for g in range(gt.shape[0]):
        if gt_best[g] >= min_pos:
            out[iou[g] == gt_best[g]] = g + 1
    return out


def sample(assigned: list[torch.Tensor], num: int, pos_fraction: float) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Per image: boolean masks of ``<= num * pos_fraction`` random positives and the rest random negatives."""
    pos, neg = BalancedPositiveNegativeSampler(num, pos_fraction)(assigned)
    return [p.bool() for p in pos], [q.bool() for q in neg]

"""Semantic-segmentation metrics accumulated over a whole set (mmseg ``IoUMetric``).

Per class c, over the pixels whose label is not ``ignore_index``, sums over all images of
I_c = #(pred = c and gt = c), P_c = #(pred = c), G_c = #(gt = c); U_c = P_c + G_c - I_c. Then
IoU_c = I_c / U_c and Acc_c = I_c / G_c (NaN where the denominator is 0), mIoU = nanmean(IoU) and
mAcc = nanmean(Acc), aAcc = sum(I) / sum(G); reported in % rounded to 2 decimals. Sums over images, not means of
per-image IoUs.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import torch

__all__ = ["SegMetric", "format_seg_report"]


class SegMetric:
    """Accumulate ``(pred, gt)`` label maps of any shape; ``state`` is ``[3, num_classes]`` int64 (I, P, G)."""

    def __init__(self, num_classes: int, ignore_index: int = 255) -> None:
        if num_classes < 1:
            raise ValueError(f"SegMetric: num_classes must be >= 1, got {num_classes}")
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.state = torch.zeros(3, num_classes, dtype=torch.int64)

    def update(self, pred: torch.Tensor, gt: torch.Tensor) -> None:
        """Add one image (or a batch) of predicted and true class indices of the same shape."""
        if pred.shape != gt.shape:
            raise ValueError(f"SegMetric: prediction {tuple(pred.shape)} and label {tuple(gt.shape)} differ in shape")
        pred, gt = pred.reshape(-1).long().cpu(), gt.reshape(-1).long().cpu()
        keep = gt != self.ignore_index
        pred, gt = pred[keep], gt[keep]
        bad = (gt < 0) | (gt >= self.num_classes)
        if bad.any():
            raise ValueError(f"SegMetric: label value {int(gt[bad][0])} outside 0..{self.num_classes - 1} and not "
                             f"the ignore index {self.ignore_index}")
        n = self.num_classes
        hit = pred == gt
        self.state[0] += torch.bincount(gt[hit], minlength=n)
        self.state[1] += torch.bincount(pred[(pred >= 0) & (pred < n)], minlength=n)
        self.state[2] += torch.bincount(gt, minlength=n)

    def compute(self) -> dict:
        """``mIoU``, ``aAcc``, ``mAcc`` (%, 2 decimals) and per-class ``IoU`` / ``Acc`` lists (%, NaN if undefined)."""
        inter, pred, gt = self.state.double()
        union = pred + gt - inter
        iou = inter / union  # 0/0 -> NaN
        acc = inter / gt
        return {
            "mIoU": _pct(iou.nanmean()),
            "aAcc": _pct(inter.sum() / gt.sum()),
            "mAcc": _pct(acc.nanmean()),
            "IoU": [_pct(v) for v in iou],
            "Acc": [_pct(v) for v in acc],
        }


def _pct(v: torch.Tensor) -> float:
    v = float(v)
    return v if math.isnan(v) else round(100 * v, 2)


def format_seg_report(res: dict, class_names: Sequence[str] | None = None) -> str:
    """The per-class IoU / Acc table followed by a ``mIoU aAcc mAcc`` summary line."""
    names = list(class_names) if class_names is not None else [str(i) for i in range(len(res["IoU"]))]
    width = max(10, *(len(n) for n in names))
    lines = [f"{'class':{width}s} {'IoU':>7s} {'Acc':>7s}"]
    for name, iou, acc in zip(names, res["IoU"], res["Acc"]):
        lines.append(f"{name:{width}s} {iou:7.2f} {acc:7.2f}")
    lines.append(f"mIoU {res['mIoU']:.2f}  aAcc {res['aAcc']:.2f}  mAcc {res['mAcc']:.2f}")
    return "\n".join(lines)

"""RoI pooling, spiking box and mask heads, their targets, losses and inference (released ``SpikeStandardRoIHead``).

* Pooler (mmdet ``SingleRoIExtractor`` on P2..P5): level ``floor(log2(sqrt(w h) / 56 + 1e-6))`` clamped to 0..3,
  then ``torchvision.ops.roi_align(aligned=True, sampling_ratio=0)`` at scale ``1 / stride``; strides
  (4, 8, 16, 32) with the released labels (level 3, a stride-16 map, is sampled at half-coordinates) or the true
  (4, 8, 16, 16). Each time step is pooled separately: ``[T, N, C, k, k]``.
* Box head: flatten -> spike -> FC 1024 -> spike -> FC 1024 -> ``fc_cls`` (classes + 1, background **last**) and
  ``fc_reg`` (4 x classes, class-major), means over T. Mask head: 4 x (spike -> Conv3x3 -> ReLU) -> spike ->
  ConvTranspose 2x -> spike -> Conv1x1 (classes), mean over T -> ``[N, classes, 28, 28]``.
* Targets: proposals + GT boxes, MaxIoU 0.5 / 0.5 (low-quality at 0.5), 512 RoIs per image (<= 25 % positive),
  deltas with stds (0.1, 0.1, 0.2, 0.2). Losses: CE mean over sampled RoIs; L1 of the GT-class deltas of the
  positives summed / sampled RoIs; mask BCE of the GT-class channel, mean over pixels, targets = the GT bitmap
  RoI-aligned (aligned) to 28 x 28 and binarised at 0.5.
* Inference: softmax, per-class decode and clip, scores > 0.05, NMS 0.5 per class, top 100; masks of those boxes.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops import batched_nms, clip_boxes_to_image, roi_align

from ..spikes import Spiked, head_spike
from .boxes import DeltaCoder, max_iou_assign, sample

__all__ = ["RoIPooler", "BoxHead", "MaskHead", "RoIHeads", "roi_levels", "paste_masks", "ROI_STRIDES"]

ROI_STRIDES = {"official": (4, 8, 16, 32), "corrected": (4, 8, 16, 16)}


def roi_levels(boxes: torch.Tensor, finest_scale: int = 56, levels: int = 4) -> torch.Tensor:
    """``[N]`` level index of each box ``[N, 4]`` (mmdet rule)."""
    scale = ((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])).sqrt()
    return torch.floor(torch.log2(scale / finest_scale + 1e-6)).clamp(0, levels - 1).long()


class RoIPooler(nn.Module):
    """``feats`` (P2..P5, ``[T, B, C, H, W]``), ``rois [N, 5]`` (image index, x1, y1, x2, y2) -> ``[T, N, C, k, k]``."""

    def __init__(self, output_size: int, layout: str = "official") -> None:
        super().__init__()
        self.output_size, self.strides = output_size, ROI_STRIDES[layout]

    def forward(self, feats: list[torch.Tensor], rois: torch.Tensor) -> torch.Tensor:
        T, B, C = feats[0].shape[:3]
        k = self.output_size
        out = feats[0].new_zeros(T, rois.shape[0], C, k, k)
        lv = roi_levels(rois[:, 1:])
        for level, stride in enumerate(self.strides):
            idx = torch.nonzero(lv == level).squeeze(1)
            if idx.numel() == 0:
                continue
            r = rois[idx]
            # fold time into the batch: image b at step t is row t * B + b
            rt = torch.cat([torch.cat([(r[:, :1] + t * B), r[:, 1:]], 1) for t in range(T)])
            pooled = roi_align(feats[level].flatten(0, 1), rt.to(feats[level].dtype), k, 1.0 / stride,
                               sampling_ratio=0, aligned=True)
            out[:, idx] = pooled.unflatten(0, (T, idx.numel())).to(out.dtype)
        return out


class BoxHead(nn.Module):
    """``[T, N, C, 7, 7]`` -> class logits ``[N, classes + 1]`` (background last), deltas ``[N, 4 * classes]``."""

    def __init__(self, in_channels: int = 256, fc: int = 1024, num_classes: int = 80, roi: int = 7) -> None:
        super().__init__()
        self.shared_fcs = nn.ModuleList([Spiked(head_spike(), nn.Linear(in_channels * roi * roi, fc)),
                                         Spiked(head_spike(), nn.Linear(fc, fc))])
        self.fc_cls = nn.Linear(fc, num_classes + 1)
        self.fc_reg = nn.Linear(fc, 4 * num_classes)
        for m in self.shared_fcs:
            nn.init.xavier_uniform_(m.layer.weight)
            nn.init.zeros_(m.layer.bias)
        nn.init.normal_(self.fc_cls.weight, std=0.01)
        nn.init.normal_(self.fc_reg.weight, std=0.001)
        nn.init.zeros_(self.fc_cls.bias)
        nn.init.zeros_(self.fc_reg.bias)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = x.flatten(2)
        for fc in self.shared_fcs:
            x = fc(x)
        return self.fc_cls(x).mean(0), self.fc_reg(x).mean(0)


class MaskHead(nn.Module):
    """``[T, N, C, 14, 14]`` -> mask logits ``[N, classes, 28, 28]``."""

    def __init__(self, channels: int = 256, num_classes: int = 80, convs: int = 4) -> None:
        super().__init__()
        self.convs = nn.ModuleList([Spiked(head_spike(), nn.Conv2d(channels, channels, 3, padding=1))
                                    for _ in range(convs)])
        self.upsample = Spiked(head_spike(), nn.ConvTranspose2d(channels, channels, 2, stride=2))
        self.conv_logits = Spiked(head_spike(), nn.Conv2d(channels, num_classes, 1))
        for m in self.convs:
            nn.init.kaiming_normal_(m.layer.weight, mode="fan_out", nonlinearity="relu")
            nn.init.zeros_(m.layer.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for conv in self.convs:
            x = F.relu(conv(x))
        return self.conv_logits(self.upsample(x)).mean(0)


def paste_masks(probs: torch.Tensor, boxes: torch.Tensor, size: tuple[int, int], threshold: float = 0.5,
                chunk: int = 32) -> torch.Tensor:
    """``probs [N, 28, 28]`` in ``boxes [N, 4]`` -> bool masks ``[N, H, W]``: each pixel centre (x + 0.5, y + 0.5)
    samples the map bilinearly (zeros outside), kept where the value is ``>= threshold``."""
    H, W = size
    out = torch.zeros(len(boxes), H, W, dtype=torch.bool, device=probs.device)
    ys = torch.arange(H, device=probs.device, dtype=torch.float32) + 0.5
    xs = torch.arange(W, device=probs.device, dtype=torch.float32) + 0.5
    for i in range(0, len(boxes), chunk):
        b = boxes[i:i + chunk].float()
        gx = 2 * (xs[None] - b[:, :1]) / (b[:, 2:3] - b[:, :1]).clamp(min=1e-6) - 1  # [n, W]
        gy = 2 * (ys[None] - b[:, 1:2]) / (b[:, 3:4] - b[:, 1:2]).clamp(min=1e-6) - 1  # [n, H]
        grid = torch.stack([gx[:, None, :].expand(-1, H, -1), gy[:, :, None].expand(-1, -1, W)], dim=-1)
        img = F.grid_sample(probs[i:i + chunk, None].float(), grid, align_corners=False, padding_mode="zeros")
        out[i:i + chunk] = img[:, 0] >= threshold
    return out


class RoIHeads(nn.Module):
    """Box and mask branches. ``forward(feats, proposals, image_sizes, targets=None)``: training -> losses;
    evaluation -> per image ``{"boxes", "scores", "labels", "mask_probs" [n, 28, 28]}`` in input-image pixels."""

    def __init__(self, channels: int = 256, fc: int = 1024, num_classes: int = 80, layout: str = "official",
                 batch_per_image: int = 512, pos_fraction: float = 0.25, score_thr: float = 0.05,
                 nms_iou: float = 0.5, max_per_img: int = 100) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.box_pool, self.mask_pool = RoIPooler(7, layout), RoIPooler(14, layout)
        self.bbox_head = BoxHead(channels, fc, num_classes)
        self.mask_head = MaskHead(channels, num_classes)
        self.coder = DeltaCoder((0.1, 0.1, 0.2, 0.2))
        self.batch_per_image, self.pos_fraction = batch_per_image, pos_fraction
        self.score_thr, self.nms_iou, self.max_per_img = score_thr, nms_iou, max_per_img

    @staticmethod
    def _rois(boxes: list[torch.Tensor]) -> torch.Tensor:
        return torch.cat([torch.cat([b.new_full((len(b), 1), i), b], 1) for i, b in enumerate(boxes)])

    def forward(self, feats, proposals, image_sizes, targets=None):
        feats = feats[:4]
        if targets is not None:
            return self.loss(feats, proposals, targets)
        return self.predict(feats, proposals, image_sizes)

    def loss(self, feats, proposals, targets) -> dict[str, torch.Tensor]:
        cands = [torch.cat([t["boxes"], p]) for p, t in zip(proposals, targets)]
        assigned = [max_iou_assign(t["boxes"], c, 0.5, 0.5, 0.5) for c, t in zip(cands, targets)]
        pos, neg = sample(assigned, self.batch_per_image, self.pos_fraction)
        boxes, labels, deltas, flags, mask_boxes, mask_targets = [], [], [], [], [], []
        for c, a, p, q, t in zip(cands, assigned, pos, neg, targets):
            keep = p | q
            c, a, p = c[keep], a[keep], p[keep]
            gt_idx = (a - 1).clamp(min=0)
            has_gt = len(t["boxes"]) > 0
            lab = torch.full_like(a, self.num_classes)
            if has_gt:
                lab[p] = t["labels"][gt_idx[p]]
            boxes.append(c)
            labels.append(lab)
            flags.append(p)
            deltas.append(self.coder.encode(t["boxes"][gt_idx], c) if has_gt else torch.zeros_like(c))
            mask_boxes.append(c[p])
            if p.any():  # the matched GT bitmap RoI-aligned (scale 1, aligned) to 28 x 28, binarised
                bitmaps = t["masks"][:, None].to(c.dtype)
                r = torch.cat([gt_idx[p, None].to(c.dtype), c[p]], 1)
                mask_targets.append(roi_align(bitmaps, r, 28, 1.0, sampling_ratio=0, aligned=True)[:, 0] >= 0.5)
        rois = self._rois(boxes)
        labels, deltas, flags = torch.cat(labels), torch.cat(deltas), torch.cat(flags)
        cls, reg = self.bbox_head(self.box_pool(feats, rois))
        n = max(len(labels), 1)
        loss_cls = F.cross_entropy(cls.float(), labels, reduction="sum") / n
        reg = reg.float().view(len(reg), self.num_classes, 4)
        pos_reg = reg[flags, labels[flags]]
        loss_bbox = (pos_reg - deltas[flags]).abs().sum() / n
        if flags.any():
            logits = self.mask_head(self.mask_pool(feats, self._rois(mask_boxes))).float()
            logits = logits[torch.arange(len(logits), device=logits.device), labels[flags]]
            target = torch.cat(mask_targets).to(logits.dtype)
            loss_mask = F.binary_cross_entropy_with_logits(logits, target)
        else:  # no positive RoI in the batch: a zero that still reaches every mask-head parameter
            loss_mask = sum(p.sum() for p in self.mask_head.parameters()) * 0.0
        return {"loss_cls": loss_cls, "loss_bbox": loss_bbox, "loss_mask": loss_mask}

    @torch.no_grad()
    def predict(self, feats, proposals, image_sizes) -> list[dict[str, torch.Tensor]]:
        cls, reg = self.bbox_head(self.box_pool(feats, self._rois(proposals)))
        probs = cls.float().softmax(-1)
        reg = reg.float()
        results, start = [], 0
        for props, size in zip(proposals, image_sizes):
            n = len(props)
            p, d = probs[start:start + n, :-1], reg[start:start + n].view(n, self.num_classes, 4)
            start += n
            boxes = self.coder.decode(d.reshape(-1, 4), props.repeat_interleave(self.num_classes, 0).float())
            boxes = clip_boxes_to_image(boxes, size).view(n, self.num_classes, 4)
            labels = torch.arange(self.num_classes, device=p.device).expand(n, -1)
            ok = p > self.score_thr
            boxes, scores, labels = boxes[ok], p[ok], labels[ok]
            keep = batched_nms(boxes, scores, labels, self.nms_iou)[: self.max_per_img]
            results.append({"boxes": boxes[keep], "scores": scores[keep], "labels": labels[keep]})
        det_boxes = [r["boxes"] for r in results]
        if sum(len(b) for b in det_boxes):
            logits = self.mask_head(self.mask_pool(feats, self._rois(det_boxes))).float()
            lab = torch.cat([r["labels"] for r in results])
            m = logits[torch.arange(len(lab), device=lab.device), lab].sigmoid()
        else:
            m = probs.new_zeros(0, 28, 28)
        start = 0
        for r in results:
            r["mask_probs"] = m[start:start + len(r["boxes"])]
            start += len(r["boxes"])
        return results

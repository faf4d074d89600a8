"""COCO 2017 for the spiking Mask R-CNN: dataset, the released train/test transforms (torch path), padded batches.

Layout (docs/data.md)::

    <root>/annotations/instances_{train,val}2017.json
    <root>/{train,val}2017/<file_name>.jpg

Categories sorted by id -> labels 0..K-1. Annotations with ``w < 1``, ``h < 1``, ``area <= 0``, no overlap with the
image or an unknown category are skipped; crowd annotations take no part (ignored). Training drops images with no
annotation at all (crowd-only images stay) and images whose shorter side is < 32 px; evaluation keeps every image.

Train transform, per image (released pipeline): keep-ratio resize to fit ``first_scale`` (853 x 512); flip
(p ``flip`` = 0.5); then either (p 1 - ``crop`` = 0.5) a keep-ratio resize to (1333, s), s drawn from
``multiscale`` (480..800 step 32), or (p ``crop``) a resize to (1333, s), s in ``crop_scales`` (400, 500, 600), a
random crop with sides in ``crop_range`` (384..600; boxes clipped, empty ones dropped; a crop with no box left is
kept) and the multiscale resize. Keep-ratio sizes are ``floor(side * f + 0.5)`` with
``f = min(long_max / long, short_max / short)``; images are resized bilinearly (``torch.nn.functional.interpolate``, no antialias, rounded to uint8 after each resize, like OpenCV),
masks nearest. Test: keep-ratio resize to fit ``test_scale`` (1333 x 800). Then ImageNet mean/std on 0-255 RGB.

Training batches group images by orientation as released (mmdet 3.x ``AspectRatioBatchSampler``):
:class:`AspectRatioBatchSampler` over this rank's shuffled share (the loader's ``batch_sampler``).
"""
from __future__ import annotations

import contextlib
import io
import math
from collections.abc import Sequence, Sized
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import Dataset, Sampler

__all__ = ["CocoDetection", "DetTransforms", "AspectRatioBatchSampler", "collate", "keep_ratio_size",
           "MEAN", "STD", "require_pycocotools"]

MEAN = (123.675, 116.28, 103.53)
STD = (58.395, 57.12, 57.375)


def require_pycocotools():
    """``pycocotools.coco`` / ``cocoeval`` / ``mask``, or an ImportError that says how to install them."""
    try:
        from pycocotools import coco, cocoeval, mask
    except ImportError as err:
        raise ImportError("COCO data and metrics need pycocotools: pip install 'spikescope[dense]'") from err
    return coco, cocoeval, mask


def keep_ratio_size(w: int, h: int, scale: tuple[int, int]) -> tuple[int, int]:
    """``(new_w, new_h)`` fitting ``scale = (long_max, short_max)`` with ``floor(side * f + 0.5)``."""
    f = min(max(scale) / max(w, h), min(scale) / min(w, h))
    return int(w * f + 0.5), int(h * f + 0.5)


@dataclass
class DetTransforms:
    """The released train / test pipeline's sizes (see the module docstring); ``train`` selects the random one."""

    train: bool = True
    first_scale: tuple[int, int] = (853, 512)
    multiscale: list[int] = field(default_factory=lambda: list(range(480, 801, 32)))
    crop_scales: list[int] = field(default_factory=lambda: [400, 500, 600])
    crop_range: tuple[int, int] = (384, 600)
    long_max: int = 1333
    test_scale: tuple[int, int] = (1333, 800)
    flip: float = 0.5
    crop: float = 0.5  # probability of the resize + crop branch

    def __call__(self, img: torch.Tensor, boxes: torch.Tensor, labels: torch.Tensor, masks: torch.Tensor):
        """``img [3, H, W]`` float 0-255, ``boxes [n, 4]``, ``labels [n]``, ``masks [n, H, W]`` bool -> the same
        transformed, and the test resize's per-axis factors ``(sx, sy)`` (``None`` in training). Random draws use
        torch's generator (restored on resume)."""
        if not self.train:
            img, boxes, masks, scale = _resize(img, boxes, masks, self.test_scale)
            return img, boxes, labels, masks, scale
        img, boxes, masks, _ = _resize(img, boxes, masks, self.first_scale)
        if torch.rand(()) < self.flip:
            w = img.shape[-1]
            img, masks = img.flip(-1), masks.flip(-1)
            boxes = torch.stack([w - boxes[:, 2], boxes[:, 1], w - boxes[:, 0], boxes[:, 3]], 1)
        if torch.rand(()) < self.crop:
            img, boxes, masks, _ = _resize(img, boxes, masks, (self.long_max, _pick(self.crop_scales)))
            img, boxes, labels, masks = _crop(img, boxes, labels, masks, self.crop_range)
        img, boxes, masks, _ = _resize(img, boxes, masks, (self.long_max, _pick(self.multiscale)))
        return img, boxes, labels, masks, None


def _pick(values: list[int]) -> int:
    return values[int(torch.randint(len(values), ()))]


def _resize(img, boxes, masks, scale):
    h, w = img.shape[-2:]
    nw, nh = keep_ratio_size(w, h, scale)
    img = F.interpolate(img[None], size=(nh, nw), mode="bilinear", align_corners=False)[0].round().clamp(0, 255)
    if len(masks):
        masks = F.interpolate(masks[None].float(), size=(nh, nw), mode="nearest")[0].bool()
    else:
        masks = masks.new_zeros(0, nh, nw)
    sx, sy = nw / w, nh / h
    boxes = boxes * boxes.new_tensor([sx, sy, sx, sy])
    boxes[:, 0::2] = boxes[:, 0::2].clamp(0, nw)
    boxes[:, 1::2] = boxes[:, 1::2].clamp(0, nh)
    return img, boxes, masks, (sx, sy)


def _crop(img, boxes, labels, masks, crop_range):
    h, w = img.shape[-2:]
    lo, hi = crop_range
    ch = int(torch.randint(min(h, lo), min(h, hi) + 1, ()))
    cw = int(torch.randint(min(w, lo), min(w, hi) + 1, ()))
    y0 = int(torch.randint(h - ch + 1, ()))
    x0 = int(torch.randint(w - cw + 1, ()))
    img, masks = img[:, y0:y0 + ch, x0:x0 + cw], masks[:, y0:y0 + ch, x0:x0 + cw]
    boxes = boxes - boxes.new_tensor([x0, y0, x0, y0])
    boxes[:, 0::2] = boxes[:, 0::2].clamp(0, cw)
    boxes[:, 1::2] = boxes[:, 1::2].clamp(0, ch)
    keep = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
    return img, boxes[keep], labels[keep], masks[keep]


class CocoDetection(Dataset):
    """``(image [3, h, w] normalised, target)`` of ``<root>/<split>2017``; ``filter_images`` (default: for the
    train split) applies the training image filter. ``target``: ``boxes [n, 4]`` xyxy in ``image`` pixels, ``labels [n]``,
    ``masks [n, h, w]`` bool, ``image_id``, ``orig_size (H, W)``, ``scale (sx, sy)`` (test: resized / original)."""

    def __init__(self, root: str | Path, split: str = "train", transforms: DetTransforms | None = None,
                 min_size: int = 32, filter_images: bool | None = None) -> None:
        root = Path(root)
        ann = root / "annotations" / f"instances_{split}2017.json"
        self.images_dir = root / f"{split}2017"
        if not ann.is_file() or not self.images_dir.is_dir():
            raise FileNotFoundError(
                f"COCO {split}2017 not found under {root}: expected {ann} and {self.images_dir}/ "
                "(docs/data.md says where to get them)")
        coco_mod, _, self._mask = require_pycocotools()
        self.ann_file = ann
        with contextlib.redirect_stdout(io.StringIO()):  # COCO() prints its loading times
            self.coco = coco_mod.COCO(str(ann))
        self.cat_ids = sorted(self.coco.getCatIds())
        self.label_of = {c: i for i, c in enumerate(self.cat_ids)}
        self.classes = [self.coco.cats[c]["name"] for c in self.cat_ids]
        self.transforms = transforms or DetTransforms(train=split == "train")
        ids = sorted(self.coco.imgs)
        if split == "train" if filter_images is None else filter_images:
            ids = [i for i in ids if self.coco.imgToAnns.get(i)
                   and min(self.coco.imgs[i]["width"], self.coco.imgs[i]["height"]) >= min_size]
        self.ids = ids

    def __len__(self) -> int:
        return len(self.ids)

    def aspect_flags(self) -> list[int]:
        """Per image (in ``ids`` order) 1 if ``width >= height`` else 0, from the annotation file's sizes (no image
        is decoded); the released grouping's two buckets (a square image goes with the landscape ones)."""
        return [int(self.coco.imgs[i]["width"] >= self.coco.imgs[i]["height"]) for i in self.ids]

    def _annotations(self, image_id: int, W: int, H: int):
        boxes, labels, masks = [], [], []
        for a in self.coco.imgToAnns.get(image_id, []):
            x, y, w, h = a["bbox"]
            inter = max(0.0, min(x + w, W) - max(x, 0.0)) * max(0.0, min(y + h, H) - max(y, 0.0))
            if a.get("iscrowd", 0) or inter <= 0 or a.get("area", w * h) <= 0 or w < 1 or h < 1 \
                    or a["category_id"] not in self.label_of:
                continue
            boxes.append([x, y, x + w, y + h])
            labels.append(self.label_of[a["category_id"]])
            masks.append(self.coco.annToMask(a))
        return (torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4), torch.tensor(labels, dtype=torch.long),
                torch.from_numpy(np.stack(masks)).bool() if masks else torch.zeros(0, H, W, dtype=torch.bool))

    def __getitem__(self, index: int):
        image_id = self.ids[index]
        info = self.coco.imgs[image_id]
        with Image.open(self.images_dir / info["file_name"]) as im:
            img = torch.from_numpy(np.asarray(im.convert("RGB"), dtype=np.uint8).copy()).permute(2, 0, 1).float()
        H, W = img.shape[-2:]
        img, boxes, labels, masks, scale = self.transforms(img, *self._annotations(image_id, W, H))
        img = (img - torch.tensor(MEAN)[:, None, None]) / torch.tensor(STD)[:, None, None]
        return img, {"boxes": boxes, "labels": labels, "masks": masks, "image_id": image_id,
                     "orig_size": (H, W), "scale": scale}


class AspectRatioBatchSampler(Sampler[list[int]]):
    """Batches of ``batch_size`` indices of one orientation, as the released mmdet 3.x ``AspectRatioBatchSampler``.

    ``sampler`` gives this rank's share of the epoch (a seeded ``DistributedSampler``: shuffled from
    ``seed + epoch``, padded by repeating its first indices to a multiple of the world size, so every rank gets
    ``ceil(N / world)`` indices); ``flags[i]`` is image ``i``'s bucket (:meth:`CocoDetection.aspect_flags`). Indices
    are put into their bucket in the sampler's order and a bucket is yielded when it holds ``batch_size``. No
    bucket is padded: at the end of the epoch the rest (< ``batch_size`` of each bucket, bucket 0 first) is yielded
    in chunks of ``batch_size``, so at most one batch per rank and epoch mixes orientations and the last one can be
    short (released ``drop_last=False``). ``len`` is ``ceil(len(sampler) / batch_size)``, the same on every rank.
    ``set_epoch`` reaches the sampler (the same ``(seed, epoch)`` gives the same batches: exact resume)."""

    def __init__(self, sampler: Sized, flags: Sequence[int], batch_size: int) -> None:
        if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
            raise ValueError(f"data.batch_size: expected a positive integer, got {batch_size!r}")
        bad = [f for f in flags if f not in (0, 1)]
        if bad:
            raise ValueError(f"aspect-ratio flags must be 0 (portrait) or 1 (landscape), got {bad[0]!r}")
        self.sampler, self.flags, self.batch_size = sampler, list(flags), batch_size

    def set_epoch(self, epoch: int) -> None:
        self.sampler.set_epoch(epoch)

    def __iter__(self):
        buckets: tuple[list[int], list[int]] = ([], [])
        for index in self.sampler:
            bucket = buckets[self.flags[index]]
            bucket.append(index)
            if len(bucket) == self.batch_size:
                yield bucket[:]
                bucket.clear()
        rest = buckets[0] + buckets[1]
        for start in range(0, len(rest), self.batch_size):
            yield rest[start:start + self.batch_size]

    def __len__(self) -> int:
        return math.ceil(len(self.sampler) / self.batch_size)


def collate(batch):
    """``[(image, target)]`` -> ``(images [B, 3, Hp, Wp], image_sizes [(h, w)], targets)``, zero-padded bottom/right
    to the batch's largest height and width, each rounded up to a multiple of 32."""
    sizes = [tuple(img.shape[-2:]) for img, _ in batch]
    Hp = math.ceil(max(h for h, _ in sizes) / 32) * 32
    Wp = math.ceil(max(w for _, w in sizes) / 32) * 32
    images = batch[0][0].new_zeros(len(batch), 3, Hp, Wp)
    for i, (img, _) in enumerate(batch):
        images[i, :, : img.shape[1], : img.shape[2]] = img
    return images, sizes, [t for _, t in batch]


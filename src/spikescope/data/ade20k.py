"""ADE20K (SceneParsing, ``ADEChallengeData2016``) for semantic segmentation.

Layout (nothing is downloaded)::

    <root>/ADEChallengeData2016/images/{training,validation}/ADE_*.jpg
    <root>/ADEChallengeData2016/annotations/{training,validation}/ADE_*.png   (uint8: 0 = other, 1..150)

``root`` may also be the ``ADEChallengeData2016`` folder itself. Labels are reduced (``reduce_zero_label``):
0 -> 255 (ignored), k -> k - 1, giving the 150 classes of :data:`ADE20K_CLASSES`.

Training items are ``(image [3, 512, 512], label [512, 512])``: :class:`~spikescope.data.seg_transforms.SegTrainPipeline`
driven by a generator seeded with ``(seed, epoch, index)`` (the epoch comes with the index from
:class:`EpochTaggedSampler`; a plain index means epoch 0), ImageNet normalisation, then padding bottom/right to the
crop size (image 0, label 255). Test items are ``(image [3, h, w], label [H, W])``: the image resized to fit
``test_scale`` (keep ratio, no padding, any size), the label at the original resolution.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset, DistributedSampler

from .datasets import DatasetNotFoundError
from .seg_transforms import SegTrainPipeline, rescale_size, resize_image

__all__ = ["ADE20K", "ADE20K_CLASSES", "EpochTaggedSampler", "IGNORE_INDEX", "IMAGENET_MEAN", "IMAGENET_STD", "reduce_zero_label",
           "normalize_image"]

IGNORE_INDEX = 255
IMAGENET_MEAN = (123.675, 116.28, 103.53)  # on 0-255 RGB
IMAGENET_STD = (58.395, 57.12, 57.375)
SPLITS = ("training", "validation")

#: Class names in the order of mmseg's ``ADE20KDataset`` (index = PNG value - 1).
ADE20K_CLASSES = (
    "wall", "building", "sky", "floor", "tree", "ceiling", "road", "bed", "windowpane", "grass", "cabinet",
    "sidewalk", "person", "earth", "door", "table", "mountain", "plant", "curtain", "chair", "car", "water",
    "painting", "sofa", "shelf", "house", "sea", "mirror", "rug", "field", "armchair", "seat", "fence", "desk",
    "rock", "wardrobe", "lamp", "bathtub", "railing", "cushion", "base", "box", "column", "signboard",
    "chest of drawers", "counter", "sand", "sink", "skyscraper", "fireplace", "refrigerator", "grandstand", "path",
    "stairs", "runway", "case", "pool table", "pillow", "screen door", "stairway", "river", "bridge", "bookcase",
    "blind", "coffee table", "toilet", "flower", "book", "hill", "bench", "countertop", "stove", "palm",
    "kitchen island", "computer", "swivel chair", "boat", "bar", "arcade machine", "hovel", "bus", "towel", "light",
    "truck", "tower", "chandelier", "awning", "streetlight", "booth", "television receiver", "airplane",
    "dirt track", "apparel", "pole", "land", "bannister", "escalator", "ottoman", "bottle", "buffet", "poster",
    "stage", "van", "ship", "fountain", "conveyer belt", "canopy", "washer", "plaything", "swimming pool", "stool",
    "barrel", "basket", "waterfall", "tent", "bag", "minibike", "cradle", "oven", "ball", "food", "step", "tank",
    "trade name", "microwave", "pot", "animal", "bicycle", "lake", "dishwasher", "screen", "blanket", "sculpture",
    "hood", "sconce", "vase", "traffic light", "tray", "ashcan", "fan", "pier", "crt screen", "plate", "monitor",
    "bulletin board", "shower", "radiator", "glass", "clock", "flag",
)


def reduce_zero_label(label: np.ndarray) -> np.ndarray:
    """Raw PNG values -> class indices: 0 -> 255 (ignored), k -> k - 1 (255 stays 255)."""
    out = label.astype(np.int64) - 1
    out[(label == 0) | (label == IGNORE_INDEX)] = IGNORE_INDEX
    return out.astype(np.uint8)


def normalize_image(img: np.ndarray) -> torch.Tensor:
    """uint8 ``[H, W, 3]`` RGB -> float ``[3, H, W]`` with the ImageNet mean/std of 0-255 values."""
    x = torch.from_numpy(img.astype(np.float32)).permute(2, 0, 1)
    mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(3, 1, 1)
    return (x - mean) / std


def _find_base(root: Path) -> Path:
    for base in (root / "ADEChallengeData2016", root):
        if (base / "images").is_dir() and (base / "annotations").is_dir():
            return base
    raise DatasetNotFoundError(
        f"ADE20K: no images/ and annotations/ under {root} or {root / 'ADEChallengeData2016'}; unpack "
        "ADEChallengeData2016.zip so that <root>/ADEChallengeData2016/images/training/ADE_train_00000001.jpg exists"
    )


class ADE20K(Dataset):
    """ADE20K split ``"training"`` or ``"validation"``; ``train=True`` applies ``pipeline`` (see module doc)."""

    def __init__(self, root: str | Path, split: str = "training", train: bool = True,
                 pipeline: SegTrainPipeline | None = None, test_scale: tuple[int, int] = (2048, 512),
                 seed: int = 0) -> None:
        if split not in SPLITS:
            raise ValueError(f"ADE20K: unknown split {split!r}; use one of {SPLITS}")
        base = _find_base(Path(root))
        img_dir, ann_dir = base / "images" / split, base / "annotations" / split
        self.images = sorted(img_dir.glob("*.jpg"))
        if not self.images:
            raise DatasetNotFoundError(f"ADE20K: no .jpg images in {img_dir}")
        self.labels = [ann_dir / f"{p.stem}.png" for p in self.images]
        missing = [p for p in self.labels if not p.is_file()]
        if missing:
            raise DatasetNotFoundError(f"ADE20K: {len(missing)} image(s) without a label, e.g. {missing[0]}")
        self.split, self.train = split, train
        self.pipeline = pipeline or SegTrainPipeline()
        self.test_scale = tuple(test_scale)
        self.seed = seed
        self.classes = ADE20K_CLASSES
        self.num_classes = len(ADE20K_CLASSES)

    def __len__(self) -> int:
        return len(self.images)

    def load(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """The raw ``(uint8 RGB [H, W, 3], reduced label [H, W])`` of one item."""
        from PIL import Image

        with Image.open(self.images[index]) as im:
            img = np.array(im.convert("RGB"))
        with Image.open(self.labels[index]) as lb:
            label = np.array(lb)
        if label.ndim != 2 or label.shape != img.shape[:2]:
            raise ValueError(f"ADE20K: label {self.labels[index]} has shape {label.shape}, expected a single-channel "
                             f"map of the image's size {img.shape[:2]}")
        return img, reduce_zero_label(label)

    def __getitem__(self, key: int | tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        """``index`` or ``(index, epoch)`` -> ``(image, label)``."""
        index, epoch = key if isinstance(key, tuple) else (key, 0)
        img, label = self.load(index)
        if not self.train:
            size = rescale_size(img.shape[1], img.shape[0], self.test_scale)
            return normalize_image(resize_image(img, size)), torch.from_numpy(label.astype(np.int64))
        rng = np.random.default_rng((self.seed, epoch, index))
        img, label = self.pipeline(img, label, rng)
        ch, cw = self.pipeline.crop
        x = torch.zeros(3, ch, cw)
        y = torch.full((ch, cw), IGNORE_INDEX, dtype=torch.int64)
        x[:, : img.shape[0], : img.shape[1]] = normalize_image(img)
        y[: label.shape[0], : label.shape[1]] = torch.from_numpy(label.astype(np.int64))
        return x, y


class EpochTaggedSampler(DistributedSampler):
    """``DistributedSampler`` (shuffled by ``seed`` and epoch) yielding ``(index, epoch)``, so that a dataset's
    augmentation is seeded by the pass it belongs to, in any worker process and after a resume."""

    def __iter__(self):
        epoch = self.epoch
        return ((i, epoch) for i in super().__iter__())

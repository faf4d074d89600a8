"""Static image datasets (CIFAR-10/100, ImageNet folders) via torchvision, with the recipes' timm transforms.

Nothing is downloaded: a missing folder raises :class:`~spikescope.data.datasets.DatasetNotFoundError` saying what to
put where. ImageNet transforms come from :func:`timm.data.create_transform` (RandomResizedCrop + flip + AutoAugment /
RandAugment + random erasing for training; resize by ``crop_pct`` and centre crop for evaluation); CIFAR uses the
usual pad-4 random crop + flip.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from torch.utils.data import Dataset

from .datasets import DatasetNotFoundError

__all__ = ["ImageRecipe", "build_transform", "build_static_dataset"]

CIFAR_MEAN, CIFAR_STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)


@dataclass(frozen=True)
class ImageRecipe:
    """Augmentation settings of a recipe (timm names). ``auto_augment``: e.g. ``"original"`` (AutoAugment ImageNet
    policy, MS-ResNet) or ``"rand-m9-mstd0.5-inc1"`` (SDT-v3); ``None`` for none."""

    img_size: int = 224
    auto_augment: str | None = None
    re_prob: float = 0.0
    interpolation: str = "bilinear"
    crop_pct: float = 0.875
    hflip: float = 0.5
    color_jitter: float | None = None


def build_transform(recipe: ImageRecipe, train: bool, dataset: str):
    from timm.data import create_transform

    small = dataset in ("cifar10", "cifar100")
    mean, std = (CIFAR_MEAN, CIFAR_STD) if small else ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    if small:  # the usual CIFAR pipeline: pad-4 random crop and flip for training
        import torchvision.transforms as T

        aug = [T.RandomCrop(32, padding=4), T.RandomHorizontalFlip(recipe.hflip)] if train else []
        return T.Compose([*aug, T.ToTensor(), T.Normalize(mean, std)])
    return create_transform(
        recipe.img_size,
        is_training=train,
        auto_augment=recipe.auto_augment if train else None,
        re_prob=recipe.re_prob if train else 0.0,
        re_mode="pixel",
        interpolation=recipe.interpolation,
        crop_pct=recipe.crop_pct,
        hflip=recipe.hflip,
        color_jitter=recipe.color_jitter,
        mean=mean,
        std=std,
    )


def build_static_dataset(name: str, root: str | Path, train: bool, recipe: ImageRecipe | None = None) -> Dataset:
    """``cifar10`` / ``cifar100`` (torchvision's python-pickle folders) or ``imagenet`` (``root/train``,
    ``root/val`` class folders) with the transform of ``recipe``."""
    import torchvision

    root = Path(root)
    recipe = recipe or ImageRecipe(img_size=32 if name.startswith("cifar") else 224)
    transform = build_transform(recipe, train, name)
    if name in ("cifar10", "cifar100"):
        cls = torchvision.datasets.CIFAR10 if name == "cifar10" else torchvision.datasets.CIFAR100
        try:
            return cls(str(root), train=train, transform=transform, download=False)
        except RuntimeError as err:
            folder = "cifar-10-batches-py" if name == "cifar10" else "cifar-100-python"
            raise DatasetNotFoundError(
                f"{name} not found in {root}: download the python version from "
                f"https://www.cs.toronto.edu/~kriz/cifar.html and extract it so that {root / folder} exists"
            ) from err
    if name == "imagenet":
        split = root / ("train" if train else "val")
        if not split.is_dir():
            raise DatasetNotFoundError(
                f"ImageNet folder {split} not found: put ILSVRC-2012 (https://image-net.org/download.php) under "
                f"{root} as train/<wnid>/*.JPEG and val/<wnid>/*.JPEG (validation images sorted into class folders)"
            )
        return torchvision.datasets.ImageFolder(str(split), transform=transform)
    raise ValueError(f"unknown static dataset {name!r}; use cifar10, cifar100 or imagenet")

"""Datasets and loaders of a recipe: event datasets (synthetic generated on first use), static image datasets."""
from __future__ import annotations

from pathlib import Path

import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Sampler

from ..data import CIFAR10DVS, DVS128Gesture, FlipTranslate, NCaltech101, write_synthetic_dataset
from ..data.static import build_static_dataset
from .config import DataSection
from .distributed import DistInfo

__all__ = ["build_datasets", "build_loaders", "ShardSampler", "num_classes_of", "check_num_classes"]

_EVENT = {"dvs128_gesture": DVS128Gesture, "cifar10_dvs": CIFAR10DVS, "ncaltech101": NCaltech101}


def _ensure_synthetic(cfg: DataSection) -> Path:
    root = Path(cfg.root)
    if not (root / "trials_to_train.txt").is_file():
        write_synthetic_dataset(root, "dvs128", cfg.synthetic)
    return root


def build_datasets(cfg: DataSection) -> tuple[Dataset, Dataset]:
    """``(train, test)`` datasets of the data section."""
    if cfg.name in ("cifar10", "cifar100", "imagenet"):
        return (build_static_dataset(cfg.name, cfg.root, True, cfg.image),
                build_static_dataset(cfg.name, cfg.root, False, cfg.image))
    kwargs = dict(num_frames=cfg.num_frames, split_by=cfg.split_by, resize=cfg.resize, cache_dir=cfg.cache_dir)
    if cfg.name == "synthetic":
        root, cls = _ensure_synthetic(cfg), DVS128Gesture
        kwargs["sensor_size"] = cfg.sensor_size or (cfg.synthetic.size, cfg.synthetic.size)
        kwargs["classes"] = [str(i) for i in range(cfg.synthetic.num_classes)]
    else:
        root, cls = Path(cfg.root), _EVENT[cfg.name]
        if cfg.sensor_size is not None:
            kwargs["sensor_size"] = cfg.sensor_size
        if cfg.split_seed is not None and cfg.name != "dvs128_gesture":
            kwargs["split_seed"] = cfg.split_seed
        if cfg.name != "dvs128_gesture":
            kwargs["allow_missing_classes"] = cfg.allow_missing_classes
    train = cls(root, train=True, transform=FlipTranslate() if cfg.augment else None, **kwargs)
    return train, cls(root, train=False, **kwargs)


def num_classes_of(dataset: Dataset) -> int | None:
    classes = getattr(dataset, "classes", None)
    return len(classes) if classes is not None else None


def check_num_classes(cfg, num_classes: int | None) -> None:
    """Refuse a model with fewer outputs (``model.options.num_classes``) than the dataset has classes."""
    from .config import ConfigError

    wanted = cfg.model.options.get("num_classes")
    if num_classes is not None and isinstance(wanted, int) and wanted < num_classes:
        raise ConfigError(f"model.options.num_classes: {wanted} outputs, but {cfg.data.name} has {num_classes} "
                          f"classes; set model.options.num_classes={num_classes}")


class ShardSampler(Sampler[int]):
    """Indices ``rank, rank + world, ...`` in order, without padding (every sample evaluated exactly once)."""

    def __init__(self, length: int, rank: int, world_size: int) -> None:
        self.indices = list(range(rank, length, world_size))

    def __iter__(self):
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)


def build_loaders(train_set: Dataset, test_set: Dataset, cfg: DataSection, dist: DistInfo, seed: int):
    """Train loader (a seeded :class:`DistributedSampler`, also for one process, ``drop_last``) and test loader
    (this rank's shard). ``sampler.set_epoch(e)`` fixes each epoch's order, so a resumed run sees the same batches."""
    sampler = DistributedSampler(train_set, num_replicas=dist.world_size, rank=dist.rank, shuffle=True, seed=seed,
                                 drop_last=False)
    pin = dist.device.type == "cuda"
    train = DataLoader(train_set, batch_size=cfg.batch_size, sampler=sampler, drop_last=True,
                       num_workers=cfg.num_workers, pin_memory=pin, persistent_workers=cfg.num_workers > 0)
    test = DataLoader(test_set, batch_size=cfg.eval_batch_size or cfg.batch_size,
                      sampler=ShardSampler(len(test_set), dist.rank, dist.world_size),
                      num_workers=cfg.num_workers, pin_memory=pin)
    if len(train) == 0:
        raise ValueError(f"data.batch_size {cfg.batch_size} exceeds this rank's {len(sampler)} training samples")
    return train, test


def move(batch, device: torch.device):
    x, y = batch
    return x.to(device, non_blocking=True), torch.as_tensor(y).to(device, non_blocking=True)

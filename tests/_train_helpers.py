"""Small models and datasets for the engine tests (no registry model needed)."""
from pathlib import Path

import torch
import torch.nn.functional as F
import yaml
from torch import nn
from torch.utils.data import TensorDataset

from spikescope.demo import DEMO_RECIPE
from spikescope.layers.time import TConv2d
from spikescope.neurons import LIF
from spikescope.train.config import load_config


class TinySNN(nn.Module):
    """[T, B, 2, 8, 8] -> conv -> LIF -> dropout -> linear -> [T, B, classes] (no BatchNorm: DDP-exact)."""

    def __init__(self, classes: int = 3, dropout: float = 0.0) -> None:
        super().__init__()
        self.conv = TConv2d(2, 4, 3, padding=1)
        self.lif = LIF(tau=2.0, detach_reset=True)
        self.drop = nn.Dropout(dropout)
        self.fc = nn.Linear(4 * 8 * 8, classes)

    def forward(self, x):
        s = self.drop(self.lif(self.conv(x)))
        return self.fc(s.flatten(2))


class RankBN(nn.BatchNorm2d):
    """BatchNorm over ``[T, B, C, H, W]``; with ``ranks=R`` (training) it normalises the batch positions
    ``r, r + R, ...`` with their own statistics and keeps running statistics of ``r = 0`` only: what R DDP processes
    without SyncBatchNorm compute (each rank its own shard's statistics; rank 0's buffers broadcast), in one process."""

    def __init__(self, channels: int, ranks: int = 1) -> None:
        super().__init__(channels)
        self.ranks = ranks

    def forward(self, x):
        if not self.training or self.ranks == 1:
            return super().forward(x.flatten(0, 1)).view(x.shape)
        out = torch.empty_like(x)
        self.num_batches_tracked += 1
        for r in range(self.ranks):
            part = x[:, r :: self.ranks]
            stats = (self.running_mean, self.running_var) if r == 0 else (None, None)
            y = F.batch_norm(part.flatten(0, 1), *stats, self.weight, self.bias, True, self.momentum, self.eps)
            out[:, r :: self.ranks] = y.view(part.shape)
        return out


class TinyBNSNN(TinySNN):
    """TinySNN with BatchNorm after the convolution (``ranks``: see :class:`RankBN`)."""

    def __init__(self, classes: int = 3, ranks: int = 1) -> None:
        super().__init__(classes)
        self.bn = RankBN(4, ranks)

    def forward(self, x):
        return self.fc(self.lif(self.bn(self.conv(x))).flatten(2))


def tiny_datasets(n_train=24, n_test=12, T=3, classes=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    def make(n):
        y = torch.arange(n) % classes
        x = torch.rand(n, T, 2, 8, 8, generator=g) * 2
        x[torch.arange(n), :, 0, y, :] += 2.0  # a class-dependent row lights up
        return TensorDataset(x, y)
    return make(n_train), make(n_test)


def tiny_config(tmp_path, **train):
    values = {
        "model": {"name": "tiny"},
        "data": {"batch_size": 4, "root": str(tmp_path / "unused")},
        "optim": {"name": "sgd", "lr": 0.05, "weight_decay": 1e-4, "clip_grad": 1.0},
        "schedule": {"name": "cosine", "warmup_epochs": 1, "warmup_lr": 0.01},
        "train": {"epochs": 4, "out_dir": str(tmp_path), "run_name": "run", "progress": False, **train},
    }
    return load_config(values=values)


def tiny_demo_recipe(tmp_path: Path, epochs: int = 2) -> Path:
    """``tmp_path/tiny.yaml``: the demo recipe shrunk to a seconds-long CLI run (2 classes, 4-wide SMA-VGG8, T = 4)
    writing its data under ``tmp_path/data`` and its run to ``tmp_path/runs/tiny``."""
    recipe = yaml.safe_load(yaml.safe_dump(DEMO_RECIPE))
    recipe["model"]["options"].update(widths=[4, 4, 4, 4, 4], hidden=[8, 8], timesteps=4, num_classes=2)
    recipe["data"].update(root=str(tmp_path / "data"), num_frames=4, batch_size=4)
    recipe["data"]["synthetic"].update(num_classes=2, samples_per_class=8, size=32, steps=10)
    recipe["train"].update(epochs=epochs, out_dir=str(tmp_path / "runs"), progress=False)
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return path

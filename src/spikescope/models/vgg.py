"""SMA-VGG8 for event data (docs/papers.md#sma-vgg8): five conv blocks, SMA in blocks 2 and 3, a spiking MLP head.

=========  =====================================================================================
block i    Conv3x3 (bias) -> [SMA, blocks 2-3] -> BN2d (over T*B) -> LIF -> MaxPool 2x2
widths     2 -> 64 -> 128 -> 256 -> 512 -> 512
head       AdaptiveAvgPool2d(3) -> flatten (512*9) -> Linear 2048 -> LIF -> Dropout 0.5
           -> Linear 1024 -> LIF -> Dropout 0.5 -> Linear classes          (dropout mask shared over T)
SMA        c_reduction 4, t_reduction 4, kernels (1, 3, 5, 7), AZO on, rtr 4, rcr per dataset
LIF        tau 2, V_th 1, hard reset to 0, detach_reset, ATan(2)  (SpikingJelly LIFNode defaults)
=========  =====================================================================================

==================  ===========  ===  =======  ===  ==========  =============
name                input        T    classes  rcr  params      sma=False
==================  ===========  ===  =======  ===  ==========  =============
sma_vgg8_dvs128     2x128x128    16   11       10   22,452,531  15,461,835
sma_vgg8_cifar10dvs 2x128x128    10   10       4    22,451,014  15,460,810
sma_vgg8_ncaltech101 2x180x240   14   101      24   22,544,543  15,554,085
==================  ===========  ===  =======  ===  ==========  =============

Input ``[T, B, 2, H, W]`` event frames (H, W >= 32; a static ``[B, C, H, W]`` is repeated over T); output
``[T, B, classes]``. ``sma=False`` gives the plain VGG8 baseline.
"""
from __future__ import annotations

import re
from collections import OrderedDict
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from ..layers.bn_spike import bn_then_spike
from ..layers.sma import SMA
from ..layers.time import TAdaptiveAvgPool2d, TBatchNorm2d, TConv2d, TimeSharedDropout, TMaxPool2d
from ..neurons import LIF, ATan
from .registry import apply_overrides, register_model

__all__ = ["VGG8Config", "VGG8"]


def _lif() -> LIF:
    return LIF(tau=2.0, v_threshold=1.0, v_reset=0.0, decay_input=True, detach_reset=True, surrogate=ATan(2.0))


@dataclass(frozen=True)
class VGG8Config:
    timesteps: int = 16
    num_classes: int = 11
    in_channels: int = 2
    input_size: tuple[int, int] = (128, 128)  # (H, W) of the dataset's frames; the network accepts any H, W >= 32
    widths: tuple[int, int, int, int, int] = (64, 128, 256, 512, 512)
    hidden: tuple[int, int] = (2048, 1024)
    pool_size: int = 3
    dropout: float = 0.5
    sma: bool = True
    sma_blocks: tuple[int, ...] = (2, 3)  # 1-based block indices that get an SMA after their conv
    variant: Literal["full", "light"] = "full"
    kernels: tuple[int, ...] = (1, 3, 5, 7)
    c_reduction: float = 4
    t_reduction: float = 4
    azo: bool = True
    rcr: int = 10
    rtr: int = 4


class VGGBlock(nn.Module):
    """Conv3x3 -> [SMA] -> BN -> LIF -> MaxPool 2x2: ``[T, B, C_in, H, W] -> [T, B, C_out, H/2, W/2]``."""

    def __init__(self, c_in: int, c_out: int, sma: SMA | None) -> None:
        super().__init__()
        self.conv = TConv2d(c_in, c_out, 3, padding=1, bias=True)
        self.sma = sma
        self.bn = TBatchNorm2d(c_out)
        self.lif = _lif()
        self.pool = TMaxPool2d(2, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        if self.sma is not None:
            x = self.sma(x)
        return self.pool(bn_then_spike(x, self.bn, self.lif))


class VGG8(nn.Module):
    """(SMA-)VGG8; ``forward_features`` names the block outputs ``stage1..stage5`` (``[T, B, C, H, W]``)."""

    def __init__(self, cfg: VGG8Config) -> None:
        super().__init__()
        if len(cfg.widths) != 5 or len(cfg.hidden) != 2:
            raise ValueError(f"VGG8: widths needs 5 entries and hidden 2, got {cfg.widths} and {cfg.hidden}")
        if not set(cfg.sma_blocks) <= {1, 2, 3, 4, 5}:
            raise ValueError(f"VGG8: sma_blocks must be block indices 1..5, got {cfg.sma_blocks}")
        self.cfg = cfg
        c_in = cfg.in_channels
        for i, width in enumerate(cfg.widths, start=1):
            sma = None
            if cfg.sma and i in cfg.sma_blocks:
                sma = SMA(width, cfg.timesteps, kernels=cfg.kernels, c_reduction=cfg.c_reduction,
                          t_reduction=cfg.t_reduction, azo=cfg.azo, rcr=cfg.rcr, rtr=cfg.rtr, branch="lif",
                          variant=cfg.variant)
            self.add_module(f"block{i}", VGGBlock(c_in, width, sma))
            c_in = width
        h1, h2 = cfg.hidden
        self.head = nn.Sequential(OrderedDict([
            ("pool", TAdaptiveAvgPool2d(cfg.pool_size)),
            ("flatten", nn.Flatten(2)),
            ("fc1", nn.Linear(c_in * cfg.pool_size**2, h1)),
            ("lif1", _lif()),
            ("drop1", TimeSharedDropout(cfg.dropout)),
            ("fc2", nn.Linear(h1, h2)),
            ("lif2", _lif()),
            ("drop2", TimeSharedDropout(cfg.dropout)),
            ("fc3", nn.Linear(h2, cfg.num_classes)),
        ]))

    def _check_input(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() not in (4, 5) or x.shape[-3] != self.cfg.in_channels:
            raise ValueError(
                f"VGG8: expected event frames [T, B, {self.cfg.in_channels}, H, W] (or a static "
                f"[B, {self.cfg.in_channels}, H, W]), got shape {tuple(x.shape)}"
            )
        if x.dim() == 4:
            x = x.unsqueeze(0).expand(self.cfg.timesteps, *x.shape)
        if min(x.shape[-2:]) < 32:
            raise ValueError(f"VGG8: frames must be at least 32x32 (five 2x2 max-pools), got {tuple(x.shape[-2:])}")
        return x

    def forward_features(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        x = self._check_input(x)
        feats = {}
        for i in range(1, 6):
            x = getattr(self, f"block{i}")(x)
            feats[f"stage{i}"] = x
        return feats

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[T, B, C, H, W] -> [T, B, num_classes]``."""
        return self.head(self.forward_features(x)["stage5"])

    def remap_checkpoint(self, state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Map the released SMA-VGG8 keys onto ours (``module.`` is already stripped by the loader).

        Released block layouts: ``block{i}.0.0`` conv, then for a plain block ``block{i}.1.0`` BN, for an SMA block
        ``block{i}.1.<SMA keys>`` and ``block{i}.2.0`` BN; the N-Caltech101 script keeps block 1's conv and BN in
        one container (``block1.0.0`` / ``block1.0.1``). Head: ``others.{2,5,8}`` = ``head.fc{1,2,3}``.
        """
        rules = [
            (r"^block(\d)\.0\.0\.", r"block\1.conv."),
            (r"^block(\d)\.0\.1\.", r"block\1.bn."),
            (r"^block(\d)\.1\.0\.", r"block\1.bn."),
            (r"^block(\d)\.1\.(?=[A-Za-z])", r"block\1.sma."),
            (r"^block(\d)\.2\.0\.", r"block\1.bn."),
            (r"^others\.2\.", "head.fc1."),
            (r"^others\.5\.", "head.fc2."),
            (r"^others\.8\.", "head.fc3."),
        ]
        out = {}
        for key, value in state_dict.items():
            for pattern, repl in rules:
                new, hits = re.subn(pattern, repl, key)
                if hits:
                    key = new
                    break
            out[key] = value
        return out


_DATASETS = {
    # name: (input (C, H, W), T, classes, rcr)
    "sma_vgg8_dvs128": ((2, 128, 128), 16, 11, 10),
    "sma_vgg8_cifar10dvs": ((2, 128, 128), 10, 10, 4),
    "sma_vgg8_ncaltech101": ((2, 180, 240), 14, 101, 24),
}


def _register(name: str):
    input_size, timesteps, _, _ = _DATASETS[name]
    return register_model(name, input_size=input_size, timesteps=timesteps, input_kind="events", family="vgg")


def _config(name: str) -> VGG8Config:
    (c, h, w), T, classes, rcr = _DATASETS[name]
    return VGG8Config(timesteps=T, num_classes=classes, in_channels=c, input_size=(h, w), rcr=rcr)


@_register("sma_vgg8_dvs128")
def sma_vgg8_dvs128(**overrides) -> VGG8:
    """SMA(-AZO)-VGG8 for DVS128 Gesture (T=16, 11 classes, rcr 10); sma=False gives the plain VGG8."""
    return VGG8(apply_overrides(_config("sma_vgg8_dvs128"), overrides, "sma_vgg8_dvs128"))


@_register("sma_vgg8_cifar10dvs")
def sma_vgg8_cifar10dvs(**overrides) -> VGG8:
    """SMA(-AZO)-VGG8 for CIFAR10-DVS (T=10, 10 classes, rcr 4); sma=False gives the plain VGG8."""
    return VGG8(apply_overrides(_config("sma_vgg8_cifar10dvs"), overrides, "sma_vgg8_cifar10dvs"))


@_register("sma_vgg8_ncaltech101")
def sma_vgg8_ncaltech101(**overrides) -> VGG8:
    """SMA(-AZO)-VGG8 for N-Caltech101 (T=14, 101 classes, rcr 24); sma=False gives the plain VGG8."""
    return VGG8(apply_overrides(_config("sma_vgg8_ncaltech101"), overrides, "sma_vgg8_ncaltech101"))

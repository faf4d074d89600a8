"""MS-ResNet-18/34/104 (membrane-shortcut spiking ResNet) and SMA-ResNet for ImageNet, docs/papers.md#ms-resnet-and-sma-resnet.

=========  ================================================================================================
block      branch: LIF -> Conv3x3(stride s) -> [SMA] -> TDBN -> LIF -> Conv3x3 -> TDBN(gamma 0); out = branch +
           shortcut (real-valued, no neuron after the add); shortcut when s != 1 or C changes:
           18/34: Conv1x1(s) -> TDBN;  104: AvgPool 2x2 -> Conv1x1 -> TDBN
stem       18/34: Conv7x7 s2 -> TDBN;  104: Conv3x3 s2 -> Conv3x3 -> Conv3x3 (bias) -> TDBN.  No max-pool: the
           first block of every stage has stride 2 (224 -> 112 -> 56 -> 28 -> 14 -> 7)
stages     conv2_x..conv5_x, widths 64/128/256/512; depths 18: [2,2,2,2], 34: [3,4,6,3], 104: [3,8,32,8]
head       LIF -> spatial mean -> (104: Dropout 0.2, mask shared over T) -> Linear 512 -> classes, per timestep
neuron     mem_update: u[t] = 0.25 u[t-1] (1 - s[t-1]) + x[t], s = u > 0.5, rectangular surrogate 1{0 < u < 1};
           = our LIF(tau=4/3, V_th=0.5, hard reset 0, decay_input=False, detach_reset, Rectangle(alpha=1))
TDBN       BatchNorm over (T, B, H, W) per channel, gamma initialised to V_th = 0.5
SMA        ``sma=True``: inside the branch after its first conv, in the first two blocks of every stage; C = stage
           width, T = 6, c_reduction 4, t_reduction 1.5 (-> 4 hidden), branches Conv -> TDBN -> ReLU, AZO rcr 4,
           rtr 2 (off by default; on in ``ms_resnet104_sma``, our reading: the release holds no 104 SMA script)
=========  ================================================================================================

==============  ==========  ============================
name            params      with ``sma=True``
==============  ==========  ============================
ms_resnet18     11,693,736  71,087,400
ms_resnet34     21,801,896
ms_resnet104    77,350,504  ``ms_resnet104_sma`` (AZO on)
==============  ==========  ============================

Input: a static image ``[B, 3, H, W]`` (repeated over T = 6 inside) or ``[T, B, 3, H, W]``; output
``[T, B, classes]`` (its mean over T equals the released T-averaged logits). Module names equal the released ones
(``conv1``, ``conv2_x.0.residual_function.1``, ``...shortcut.1.bn``, ``fc``; SMA inserted at branch index 2), so the
authors' checkpoints load without renaming.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from ..layers.sma import SMA
from ..layers.tdbn import TDBatchNorm
from ..layers.time import TAvgPool2d, TConv2d, TimeSharedDropout
from ..neurons import LIF, Rectangle
from .registry import apply_overrides, register_model

__all__ = ["MSResNetConfig", "MSResNet", "MSBlock", "ms_neuron"]

V_TH = 0.5


def ms_neuron() -> LIF:
    """The MS-ResNet ``mem_update`` neuron as our LIF (docs/papers.md#sma-neurons)."""
    return LIF(tau=4.0 / 3.0, v_threshold=V_TH, v_reset=0.0, decay_input=False, detach_reset=True,
               surrogate=Rectangle(1.0))


@dataclass(frozen=True)
class MSResNetConfig:
    depths: tuple[int, int, int, int] = (2, 2, 2, 2)
    widths: tuple[int, int, int, int] = (64, 128, 256, 512)
    stem: Literal["conv7", "conv3x3"] = "conv7"
    shortcut: Literal["conv", "avgpool"] = "conv"
    dropout: float = 0.0
    timesteps: int = 6
    num_classes: int = 1000
    in_channels: int = 3
    input_size: tuple[int, int] = (224, 224)
    sma: bool = False
    sma_blocks: int = 2  # the first sma_blocks blocks of every stage get an SMA
    azo: bool = False
    rcr: int = 4
    rtr: int = 2
    c_reduction: float = 4
    t_reduction: float = 1.5
    kernels: tuple[int, ...] = (1, 3, 5, 7)


class MSBlock(nn.Module):
    """Membrane-shortcut residual block: ``[T, B, C_in, H, W] -> [T, B, C_out, H/s, W/s]`` (real-valued)."""

    def __init__(self, c_in: int, c_out: int, stride: int, shortcut: str, sma: SMA | None) -> None:
        super().__init__()
        branch: list[nn.Module] = [ms_neuron(), TConv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)]
        if sma is not None:
            branch.append(sma)
        branch += [TDBatchNorm(c_out, V_TH), ms_neuron(), TConv2d(c_out, c_out, 3, padding=1, bias=False),
                   TDBatchNorm(c_out, 0.0)]
        self.residual_function = nn.Sequential(*branch)
        layers: list[nn.Module] = []
        if stride != 1 or c_in != c_out:
            if shortcut == "avgpool":
                layers = [TAvgPool2d(stride, stride), TConv2d(c_in, c_out, 1, bias=False)]
            else:
                layers = [TConv2d(c_in, c_out, 1, stride=stride, bias=False)]
            layers.append(TDBatchNorm(c_out, V_TH))
        self.shortcut = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.residual_function(x) + self.shortcut(x)


class MSResNet(nn.Module):
    """MS-ResNet / SMA-ResNet; ``forward_features`` names the stage outputs ``stage1..stage4`` (``[T,B,C,H,W]``)."""

    def __init__(self, cfg: MSResNetConfig) -> None:
        super().__init__()
        if cfg.stem not in ("conv7", "conv3x3") or cfg.shortcut not in ("conv", "avgpool"):
            raise ValueError(f"MSResNet: stem must be conv7|conv3x3 and shortcut conv|avgpool, got {cfg}")
        self.cfg = cfg
        c0 = cfg.widths[0]
        if cfg.stem == "conv7":
            stem = [TConv2d(cfg.in_channels, c0, 7, stride=2, padding=3, bias=False)]
        else:
            stem = [TConv2d(cfg.in_channels, c0, 3, stride=2, padding=1),
                    TConv2d(c0, c0, 3, padding=1), TConv2d(c0, c0, 3, padding=1)]
        self.conv1 = nn.Sequential(*stem, TDBatchNorm(c0, V_TH))
        c_in = c0
        for s, (depth, width) in enumerate(zip(cfg.depths, cfg.widths), start=2):
            blocks = []
            for i in range(depth):
                sma = None
                if cfg.sma and i < cfg.sma_blocks:
                    sma = SMA(width, cfg.timesteps, kernels=cfg.kernels, c_reduction=cfg.c_reduction,
                              t_reduction=cfg.t_reduction, azo=cfg.azo, rcr=cfg.rcr, rtr=cfg.rtr, branch="relu")
                blocks.append(MSBlock(c_in, width, 2 if i == 0 else 1, cfg.shortcut, sma))
                c_in = width
            self.add_module(f"conv{s}_x", nn.Sequential(*blocks))
        self.lif = ms_neuron()
        self.dropout = TimeSharedDropout(cfg.dropout)
        self.fc = nn.Linear(c_in, cfg.num_classes)

    def _stem(self, x: torch.Tensor) -> torch.Tensor:
        """Static ``[B, C, H, W]``: the stem convs run once and are repeated over T before the TDBN (same values as
        convolving the repeated input). ``[T, B, C, H, W]`` runs as it is."""
        if x.dim() == 4:
            h = x.unsqueeze(0)
            for conv in self.conv1[:-1]:
                h = conv(h)
            return self.conv1[-1](h.expand(self.cfg.timesteps, *h.shape[1:]))
        return self.conv1(x)

    def forward_features(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        if x.dim() not in (4, 5) or x.shape[-3] != self.cfg.in_channels:
            raise ValueError(
                f"MSResNet: expected an image [B, {self.cfg.in_channels}, H, W] or a sequence "
                f"[T, B, {self.cfg.in_channels}, H, W], got shape {tuple(x.shape)}"
            )
        x = self._stem(x)
        feats = {}
        for s in range(2, 2 + len(self.cfg.depths)):
            x = getattr(self, f"conv{s}_x")(x)
            feats[f"stage{s - 1}"] = x
        return feats

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, C, H, W]`` or ``[T, B, C, H, W]`` -> ``[T, B, num_classes]``."""
        x = self.forward_features(x)[f"stage{len(self.cfg.depths)}"]
        x = self.lif(x).mean((-2, -1))
        return self.fc(self.dropout(x))


_SIZES = {
    "ms_resnet18": MSResNetConfig(depths=(2, 2, 2, 2)),
    "ms_resnet34": MSResNetConfig(depths=(3, 4, 6, 3)),
    "ms_resnet104": MSResNetConfig(depths=(3, 8, 32, 8), stem="conv3x3", shortcut="avgpool", dropout=0.2),
    "ms_resnet104_sma": MSResNetConfig(depths=(3, 8, 32, 8), stem="conv3x3", shortcut="avgpool", dropout=0.2,
                                       sma=True, azo=True),
}


def _build(name: str, overrides: dict) -> MSResNet:
    return MSResNet(apply_overrides(_SIZES[name], overrides, name))


def _register(name: str):
    return register_model(name, input_size=(3, 224, 224), timesteps=6, input_kind="image", family="ms_resnet")


@_register("ms_resnet18")
def ms_resnet18(**overrides) -> MSResNet:
    """MS-ResNet-18 (T=6, ImageNet); sma=True gives SMA-ResNet-18 (SMA in every block)."""
    return _build("ms_resnet18", overrides)


@_register("ms_resnet34")
def ms_resnet34(**overrides) -> MSResNet:
    """MS-ResNet-34 (T=6, ImageNet); sma=True inserts SMA in the first two blocks of every stage."""
    return _build("ms_resnet34", overrides)


@_register("ms_resnet104")
def ms_resnet104(**overrides) -> MSResNet:
    """MS-ResNet-104 (T=6, ImageNet, 3x3 stem, avg-pool shortcuts, dropout 0.2); sma=True, azo=True for SMA-AZO."""
    return _build("ms_resnet104", overrides)


@_register("ms_resnet104_sma")
def ms_resnet104_sma(**overrides) -> MSResNet:
    """SMA-AZO-MS-ResNet-104 (= ms_resnet104 with sma=True, azo=True; our placement, docs/papers.md#sma-resnet-placement)."""
    return _build("ms_resnet104_sma", overrides)

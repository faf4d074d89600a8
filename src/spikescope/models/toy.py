"""Toy convolutional stacks of the ST-ERF analyses (sterf.md §1.4, §1.6): depth L of 3x3 convs, one activation.

They are the oracles of the ERF engine (a linear stack of uniform 3x3 convs has a Gaussian ERF of sigma
sqrt(2L/3)) and the subject of the temporal-ERF experiments (a LIF after every conv).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from ..layers.time import TConv2d
from ..neurons import LIF, IntegerSpike
from .registry import apply_overrides, register_model

__all__ = ["ToyConvNetConfig", "ToyConvNet"]

Activation = Literal["none", "relu", "lif", "integer"]


@dataclass(frozen=True)
class ToyConvNetConfig:
    depth: int = 5
    channels: int = 1
    in_channels: int = 1
    kernel_size: int = 3
    activation: Activation = "lif"
    init: Literal["uniform", "xavier", "default"] = "default"
    tau: float = 2.0
    timesteps: int = 4


class ToyConvNet(nn.Module):
    """``depth`` x [Conv kxk (no bias) -> activation]; ``[T,B,C,H,W]`` (or ``[B,C,H,W]``, repeated) in and out.

    ``forward_features`` names each layer's output ``layer{i}`` (1-based).
    """

    def __init__(self, cfg: ToyConvNetConfig) -> None:
        super().__init__()
        if cfg.activation not in ("none", "relu", "lif", "integer"):
            raise ValueError(f"ToyConvNet: unknown activation {cfg.activation!r}; use none, relu, lif or integer")
        self.cfg = cfg
        self.convs = nn.ModuleList()
        self.acts = nn.ModuleList()
        for i in range(cfg.depth):
            c_in = cfg.in_channels if i == 0 else cfg.channels
            conv = TConv2d(c_in, cfg.channels, cfg.kernel_size, padding=cfg.kernel_size // 2, bias=False)
            if cfg.init == "uniform":
                nn.init.constant_(conv.weight, 1.0 / (c_in * cfg.kernel_size**2))
            elif cfg.init == "xavier":
                nn.init.xavier_normal_(conv.weight)
            self.convs.append(conv)
            self.acts.append(self._activation())

    def _activation(self) -> nn.Module:
        act = self.cfg.activation
        if act == "lif":
            return LIF(tau=self.cfg.tau, detach_reset=True)
        if act == "integer":
            return IntegerSpike(4)
        return nn.ReLU() if act == "relu" else nn.Identity()

    def forward_features(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        if x.dim() == 4:
            x = x.unsqueeze(0).repeat(self.cfg.timesteps, 1, 1, 1, 1)
        feats = {}
        for i, (conv, act) in enumerate(zip(self.convs, self.acts), start=1):
            x = act(conv(x))
            feats[f"layer{i}"] = x
        return feats

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_features(x)[f"layer{self.cfg.depth}"]


@register_model("toy_convnet", input_size=(1, 64, 64), timesteps=4, family="toy")
def toy_convnet(**overrides) -> ToyConvNet:
    """Toy stack of 3x3 convs with one activation per layer (ERF oracles and temporal-ERF experiments)."""
    return ToyConvNet(apply_overrides(ToyConvNetConfig(), overrides, "toy_convnet"))

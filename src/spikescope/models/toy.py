"""Toy convolutional stacks of the ST-ERF analyses: depth L of 3x3 convs, one activation after each.

They are the oracles of the ERF engine (a linear stack of uniform 3x3 convs has a Gaussian ERF of sigma
sqrt(2L/3)) and the subject of the spiking-CNN experiments of the authors' ``erf_scnn`` (``models/spikingcnn.py``:
``ConvNet`` and ``ConvNetDynamic``) and of ``erf_compute/temporal_erf_compute.py`` and ``izhikevich.py``.
Every layer gets its own activation instance (the authors' scripts share one across layers).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from ..layers.time import TConv2d
from ..neurons import LIF, IntegerSpike, Izhikevich, TemporalGradientLIF
from ..neurons.surrogate import get_surrogate
from .registry import apply_overrides, register_model

__all__ = ["ToyConvNetConfig", "ToyConvNet", "ACTIVATIONS", "INITS"]

Activation = Literal["none", "relu", "tanh", "sigmoid", "lif", "lif_tg", "integer", "izhikevich"]
ACTIVATIONS = ("none", "relu", "tanh", "sigmoid", "lif", "lif_tg", "integer", "izhikevich")
INITS = ("default", "uniform", "xavier", "random", "normal")


@dataclass(frozen=True)
class ToyConvNetConfig:
    """Options of :class:`ToyConvNet`.

    ``activation``: ``lif`` (our LIF: tau, v_threshold, detach_reset, surrogate ``atan``/``sigmoid``/``rectangle``
    with ``alpha``), ``lif_tg`` (:class:`~spikescope.neurons.TemporalGradientLIF`, surrogate ``triangle``/
    ``sigmoid``/``arctan``/``rectangle``), ``integer`` (clip-round to [0, ``integer_max``] divided by
    ``integer_norm``; ``None`` = ``integer_max``, the "norm D" variant; 1 = integer spikes), ``izhikevich`` (the
    authors' single-neuron experiment's parameters), or ``none``/``relu``/``tanh``/``sigmoid``.
    ``surrogate="auto"`` picks the neuron's default (atan, triangle, atan).
    ``init``: ``uniform`` (1/(C·k²)), ``xavier`` (Xavier-normal), ``random`` (Xavier-normal × elementwise N(0, 1),
    the authors' "random"), ``normal`` (N(0, init_std²)) or ``default`` (PyTorch's).
    """

    depth: int = 5
    channels: int = 1
    in_channels: int = 1
    kernel_size: int = 3
    activation: Activation = "lif"
    init: Literal["default", "uniform", "xavier", "random", "normal"] = "default"
    init_std: float = 0.05
    bias: bool = False
    tau: float = 2.0
    v_threshold: float = 1.0
    detach_reset: bool = True
    surrogate: str = "auto"
    alpha: float = 2.0
    integer_max: int = 4
    integer_norm: float | None = None
    timesteps: int = 4


class ToyConvNet(nn.Module):
    """``depth`` x [Conv kxk -> activation]; ``[T,B,C,H,W]`` (or ``[B,C,H,W]``, repeated) in and out.

    ``forward_features`` names each layer's output ``layer{i}`` (1-based).
    """

    def __init__(self, cfg: ToyConvNetConfig) -> None:
        super().__init__()
        if cfg.activation not in ACTIVATIONS:
            raise ValueError(f"ToyConvNet: unknown activation {cfg.activation!r}; use one of {', '.join(ACTIVATIONS)}")
        if cfg.init not in INITS:
            raise ValueError(f"ToyConvNet: unknown init {cfg.init!r}; use one of {', '.join(INITS)}")
        self.cfg = cfg
        self.convs = nn.ModuleList()
        self.acts = nn.ModuleList()
        for i in range(cfg.depth):
            c_in = cfg.in_channels if i == 0 else cfg.channels
            conv = TConv2d(c_in, cfg.channels, cfg.kernel_size, padding=cfg.kernel_size // 2, bias=cfg.bias)
            self._init(conv)
            self.convs.append(conv)
            self.acts.append(self._activation())

    def _init(self, conv: nn.Module) -> None:
        init, w = self.cfg.init, conv.weight
        if init == "uniform":
            nn.init.constant_(w, 1.0 / (w.shape[1] * self.cfg.kernel_size**2))
        elif init in ("xavier", "random"):
            nn.init.xavier_normal_(w)
            if init == "random":
                with torch.no_grad():
                    w.mul_(torch.randn_like(w))
        elif init == "normal":
            nn.init.normal_(w, 0.0, self.cfg.init_std)
        if init != "default" and conv.bias is not None:
            nn.init.zeros_(conv.bias)

    def _surrogate(self, default: str) -> str:
        return default if self.cfg.surrogate == "auto" else self.cfg.surrogate

    def _activation(self) -> nn.Module:
        cfg, act = self.cfg, self.cfg.activation
        if act == "lif":
            return LIF(tau=cfg.tau, v_threshold=cfg.v_threshold, detach_reset=cfg.detach_reset,
                       surrogate=get_surrogate(self._surrogate("atan"), cfg.alpha))
        if act == "lif_tg":
            return TemporalGradientLIF(tau=cfg.tau, v_threshold=cfg.v_threshold,
                                       surrogate=self._surrogate("triangle"), alpha=cfg.alpha,
                                       detach_reset=cfg.detach_reset)
        if act == "integer":
            return IntegerSpike(cfg.integer_max, norm=cfg.integer_norm)
        if act == "izhikevich":
            return Izhikevich(a=0.02, b=0.2, c=-65.0, d=6.0, tau_inv=0.002, v_threshold=2.3, reset="soft",
                              surrogate=get_surrogate(self._surrogate("atan"), cfg.alpha))
        return {"relu": nn.ReLU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid, "none": nn.Identity}[act]()

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
    """Toy stack of 3x3 convs with one activation per layer (ERF oracles, spiking-CNN and temporal-ERF experiments)."""
    return ToyConvNet(apply_overrides(ToyConvNetConfig(), overrides, "toy_convnet"))

"""Channel mixers of the SDT conv blocks: the 3x3 conv baseline, MLPixer and SRB (docs/papers.md#mlpixer-and-srb).

Every mixer maps ``[T, B, C, H, W] -> [T, B, C, H, W]`` and *starts* with a spike (the block adds its output to the
real-valued input: the "membrane shortcut"). It is built with a ``neuron`` factory, so the same classes serve
SDT-v3 (integer spikes) and Meta-SpikeFormer (LIF); an ``nn.Identity`` factory gives the linear operator (used by
the index tests).

Two layouts for MLPixer and SRB (``layout=``):

``"raster"`` (default; what the released code computes and what its checkpoints were trained with)
    ``nn.Linear`` applied to ``x.reshape(..., H*W, C)`` of the channel-first tensor, *without a permute*. Row ``n`` of
    that view holds the flat elements ``[n*C, (n+1)*C)`` of one sample's ``(C, H, W)`` block: C consecutive
    raster-order pixels of one channel (docs/papers.md#mlpixer-and-srb-raster-reshape). MLPixer is therefore a shared 2-layer MLP over 1-D raster
    windows of C pixels *within* a channel; SRB's hidden tensor scatters every input channel over the whole image
    (a 3x3 conv on it reads each input channel at ``ratio`` row bands spaced ``H*W/ratio`` apart).
``"pointwise"`` (the paper's formula)
    a per-pixel channel MLP with BN: 1x1 conv + BN layers. MLPixer: SN -> 1x1 (C->rC) + BN -> SN -> 1x1 (rC->C) + BN.
    SRB keeps the released order and kernel (§7.2): SN -> 1x1 (C->rC) + BN -> SN -> 3x3 (rC->C) + BN.

The conv mixer has one form (``layout`` does not apply to it). Dropout (``drop``) follows each linear layer of the
new mixers; the released MLPixer/SRB classes default to 0.2 and the conv baseline to 0.0 (§3.4).

State-dict keys: every mixer has ``fc1`` and ``fc2`` (a ``Linear`` or a :class:`ConvBN` with ``conv.*`` / ``bn.*``).
"""
from __future__ import annotations

from functools import partial

import torch
from torch import nn

from ..neurons import IntegerSpike
from .conv_bn import ConvBN, NeuronFactory

__all__ = [
    "MIXERS",
    "LAYOUTS",
    "RELEASED_DROP",
    "ConvMixer",
    "MLPixer",
    "SRB",
    "build_mixer",
    "raster_linear",
]

MIXERS = ("conv", "mlpixer", "srb")
LAYOUTS = ("raster", "pointwise")
#: Dropout inside the mixer in the released classes (docs/papers.md#mlpixer-and-srb).
RELEASED_DROP = {"conv": 0.0, "mlpixer": 0.2, "srb": 0.2}


def raster_linear(x: torch.Tensor, linear: nn.Linear) -> torch.Tensor:
    """The released "reshape without permute": ``[T, B, C, H, W]`` -> ``[T, B, out, H, W]``.

    ``x.reshape(T, B, H*W, C)`` (a view of the contiguous channel-first memory), ``linear`` on the last axis, and
    the ``[T, B, H*W, out]`` result reread as ``[T, B, out, H, W]``. No data is permuted or copied.
    """
    T, B, C, H, W = x.shape
    y = linear(x.reshape(T, B, H * W, C))
    return y.reshape(T, B, linear.out_features, H, W)


def _check_layout(layout: str) -> None:
    if layout not in LAYOUTS:
        raise ValueError(f"unknown mixer_layout {layout!r}; use one of {LAYOUTS}")


class ConvMixer(nn.Module):
    """Baseline channel mixer: SN -> Conv3x3 (C->rC) + BN -> SN -> Conv3x3 (rC->C) + BN; convs bias-free."""

    def __init__(self, dim: int, ratio: int, neuron: NeuronFactory, drop: float = 0.0) -> None:
        super().__init__()
        hidden = dim * ratio
        self.sn1 = neuron()
        self.fc1 = ConvBN(dim, hidden, 3, padding=1)
        self.sn2 = neuron()
        self.fc2 = ConvBN(hidden, dim, 3, padding=1)
        self.drop = nn.Dropout(drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.drop(self.fc1(self.sn1(x)))
        return self.drop(self.fc2(self.sn2(x)))


class MLPixer(nn.Module):
    """MLPixer ("ChannelMLP"): two bias-free linear layers C -> rC -> C, each after a spike, each followed by dropout.

    ``layout="raster"``: ``nn.Linear`` on the raster-reshaped view (no BN; the released model).
    ``layout="pointwise"``: 1x1 conv + BN per layer (the paper formula).
    """

    def __init__(self, dim: int, ratio: int, neuron: NeuronFactory, layout: str = "raster", drop: float = 0.2) -> None:
        super().__init__()
        _check_layout(layout)
        self.layout = layout
        hidden = dim * ratio
        self.sn1 = neuron()
        self.sn2 = neuron()
        if layout == "raster":
            self.fc1 = nn.Linear(dim, hidden, bias=False)
            self.fc2 = nn.Linear(hidden, dim, bias=False)
        else:
            self.fc1 = ConvBN(dim, hidden, 1)
            self.fc2 = ConvBN(hidden, dim, 1)
        self.drop = nn.Dropout(drop)

    def _layer(self, fc: nn.Module, x: torch.Tensor) -> torch.Tensor:
        return raster_linear(x, fc) if self.layout == "raster" else fc(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.drop(self._layer(self.fc1, self.sn1(x)))
        return self.drop(self._layer(self.fc2, self.sn2(h)))

    def extra_repr(self) -> str:
        return f"layout={self.layout!r}"


class SRB(nn.Module):
    """SRB ("splash"): SN -> linear C->rC ("splash", + dropout) -> SN -> Conv3x3 rC->C + BN ("reconstruct").

    ``layout="raster"``: the splash is ``nn.Linear`` on the raster-reshaped view, no BN (the released model).
    ``layout="pointwise"``: the splash is a 1x1 conv + BN.
    """

    def __init__(self, dim: int, ratio: int, neuron: NeuronFactory, layout: str = "raster", drop: float = 0.2) -> None:
        super().__init__()
        _check_layout(layout)
        self.layout = layout
        hidden = dim * ratio
        self.sn1 = neuron()
        self.fc1 = nn.Linear(dim, hidden, bias=False) if layout == "raster" else ConvBN(dim, hidden, 1)
        self.drop = nn.Dropout(drop)
        self.sn2 = neuron()
        self.fc2 = ConvBN(hidden, dim, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.sn1(x)
        h = raster_linear(x, self.fc1) if self.layout == "raster" else self.fc1(x)
        return self.fc2(self.sn2(self.drop(h)))

    def extra_repr(self) -> str:
        return f"layout={self.layout!r}"


def build_mixer(
    kind: str,
    dim: int,
    ratio: int = 4,
    layout: str = "raster",
    drop: float | None = None,
    neuron: NeuronFactory | None = None,
) -> nn.Module:
    """Build a channel mixer ``[T, B, dim, H, W] -> [T, B, dim, H, W]``.

    Args:
        kind: ``"conv"``, ``"mlpixer"`` or ``"srb"``.
        dim: channels C.
        ratio: hidden expansion r (4 everywhere in the release; MLPixer also 6).
        layout: ``"raster"`` or ``"pointwise"`` (MLPixer and SRB; the conv mixer ignores it).
        drop: dropout probability; ``None`` = the released default of ``kind`` (:data:`RELEASED_DROP`).
        neuron: spiking-neuron factory; ``None`` = SDT-v3 integer spikes with D = 4.
    """
    if kind not in MIXERS:
        raise ValueError(f"unknown mixer {kind!r}; use one of {MIXERS}")
    _check_layout(layout)
    if not (isinstance(ratio, int) and ratio >= 1):
        raise ValueError(f"mixer ratio must be a positive integer, got {ratio!r}")
    drop = RELEASED_DROP[kind] if drop is None else float(drop)
    if not 0.0 <= drop < 1.0:
        raise ValueError(f"mixer dropout must be in [0, 1), got {drop}")
    if neuron is None:
        neuron = partial(IntegerSpike, 4)
    if kind == "conv":
        return ConvMixer(dim, ratio, neuron, drop)
    cls = MLPixer if kind == "mlpixer" else SRB
    return cls(dim, ratio, neuron, layout, drop)

"""Synaptic operations and an energy estimate, in the SDT-family convention (docs/papers.md#energy-estimate; 45 nm CMOS).

Every convolution and linear layer is hooked. Its dense cost is its multiply-accumulates (MACs):
``output elements x (in_channels / groups x kernel area)`` for a conv, ``output elements x in_features`` for a
linear layer. What the hardware would spend depends on its input:

* **spikes** (the output of a neuron module, or any non-negative tensor whose values are integer multiples of
  one unit, at most ``max_levels`` of them): each spike of each input element triggers accumulates only, so the
  layer costs ``ACs = MACs x mean spike count per input element``. An integer spike s = k / norm counts as k
  binary spikes (D "virtual timesteps"), so SDT-v3's ``IntegerSpike`` is counted like T x D binary steps.
* **real values** (the image entering the stem): ``MACs``.

Energy = ``E_MAC x MACs + E_AC x ACs`` with E_MAC = 4.6 pJ and E_AC = 0.9 pJ (32-bit float, 45 nm).
This is the re-derivation the SDT papers use, not a paper number: say so when you report it.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import nn

from ..neurons import IntegerSpike

__all__ = ["E_MAC_PJ", "E_AC_PJ", "LayerOps", "EnergyMeter", "spike_unit"]

E_MAC_PJ = 4.6
E_AC_PJ = 0.9
_SYNAPTIC = (nn.Conv1d, nn.Conv2d, nn.Linear)


@dataclass
class LayerOps:
    """Accumulated operations of one synaptic layer over every forward inside the meter."""

    name: str
    macs: float = 0.0  # dense multiply-accumulates
    acs: float = 0.0  # accumulates triggered by spikes (spiking input only)
    spiking_input: bool = True

    @property
    def energy_pj(self) -> float:
        return E_AC_PJ * self.acs if self.spiking_input else E_MAC_PJ * self.macs


def _dense_macs(module: nn.Module, out: torch.Tensor) -> float:
    if isinstance(module, nn.Linear):
        return out.numel() * module.in_features
    return out.numel() * (module.in_channels // module.groups) * math.prod(module.kernel_size)


def _counts_in_units(x: torch.Tensor, unit: float, max_levels: int) -> bool:
    counts = x / unit
    return bool(x.min() >= 0 and counts.max() <= max_levels and torch.allclose(counts, counts.round(), atol=1e-4))


def spike_unit(x: torch.Tensor, max_levels: int = 16, hint: float | None = None) -> float | None:
    """The value of one spike if ``x`` holds spikes (non-negative multiples of a unit), else ``None``.

    ``hint`` (the unit of the neuron that produced ``x``, when known) is checked against the values first; without
    it the unit is the smallest positive value.
    """
    if x.numel() == 0:
        return None
    if hint is not None and _counts_in_units(x, hint, max_levels):
        return hint
    positive = x[x > 0]
    if positive.numel() == 0:
        return 1.0 if x.min() >= 0 else None
    unit = float(positive.min())
    return unit if _counts_in_units(x, unit, max_levels) else None


@dataclass
class EnergyMeter:
    """Context manager counting MACs / ACs of every conv and linear layer of ``model``::

        with EnergyMeter(model) as meter:
            model(x)
        meter.total_energy_mj() / x.shape[-4]   # per sample
    """

    model: nn.Module
    max_levels: int = 16
    layers: dict[str, LayerOps] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._handles: list = []
        self._units: dict[tuple, float] = {}  # (data_ptr, shape) of a neuron output -> value of one spike

    def _neuron_hook(self, module: nn.Module, inputs, output) -> None:
        out = output[0] if isinstance(output, tuple) else output
        unit = 1.0 / module.norm if isinstance(module, IntegerSpike) else 1.0
        self._units[(out.data_ptr(), tuple(out.shape))] = unit

    def _layer_hook(self, name: str):
        def hook(module: nn.Module, inputs, output) -> None:
            x = inputs[0].detach()
            unit = spike_unit(x, self.max_levels, hint=self._units.get((x.data_ptr(), tuple(x.shape))))
            ops = self.layers.setdefault(name, LayerOps(name))
            macs = _dense_macs(module, output)
            ops.macs += macs
            if unit is None:
                ops.spiking_input = False
            else:
                ops.acs += macs * float((x / unit).float().mean())

        return hook

    def __enter__(self) -> EnergyMeter:
        from .firing import NEURON_TYPES

        for name, module in self.model.named_modules():
            if isinstance(module, NEURON_TYPES):
                self._handles.append(module.register_forward_hook(self._neuron_hook))
            elif isinstance(module, _SYNAPTIC):
                self._handles.append(module.register_forward_hook(self._layer_hook(name)))
        return self

    def __exit__(self, *exc) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        self._units.clear()

    def total_energy_mj(self) -> float:
        """Energy of everything measured, in millijoules."""
        return sum(ops.energy_pj for ops in self.layers.values()) * 1e-9

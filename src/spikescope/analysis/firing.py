"""Firing rates of every spiking layer, recorded with forward hooks on the neuron modules.

The rate of a layer is the mean of its output over all elements it produced (timesteps, samples, channels,
positions): spikes per neuron per timestep for binary neurons; for integer spikes (``IntegerSpike``) the mean
emitted value.
"""
from __future__ import annotations

import warnings

from torch import nn

from ..neurons import LIF, PLIF, IntegerSpike

__all__ = ["FiringRateRecorder", "NEURON_TYPES", "SilentNetworkWarning", "warn_if_silent"]

NEURON_TYPES: tuple[type[nn.Module], ...] = (LIF, PLIF, IntegerSpike)


class SilentNetworkWarning(UserWarning):
    """Most spiking layers fired nothing: figures measured on such a network describe a dead network."""


def warn_if_silent(rates: dict[str, float], stacklevel: int = 2) -> bool:
    """Warn (:class:`SilentNetworkWarning`) when more than half of the layers in ``rates`` fired no spike.

    Returns whether it warned. Random weights without BN calibration are the usual cause.
    """
    silent = sum(1 for r in rates.values() if r == 0)
    if not rates or 2 * silent <= len(rates):
        return False
    warnings.warn(f"{silent} of {len(rates)} spiking layers fired no spike: the figures describe an almost silent "
                  "network; for random weights calibrate BN first (spikescope.models.calibrate_bn; the CLI does "
                  "unless --no-calibrate), or load trained weights", SilentNetworkWarning, stacklevel=stacklevel + 1)
    return True


class FiringRateRecorder:
    """Context manager accumulating per-layer firing rates over every forward call inside it::

        with FiringRateRecorder(model) as rec:
            model(x)
        rec.rates()   # {"features.2": 0.13, ...}

    On exit it warns (:func:`warn_if_silent`) when most recorded layers fired no spike.
    """

    def __init__(self, model: nn.Module, neuron_types: tuple[type[nn.Module], ...] = NEURON_TYPES) -> None:
        self.model = model
        self.neuron_types = neuron_types
        self._sums: dict[str, float] = {}
        self._counts: dict[str, int] = {}
        self._handles = []

    def _hook(self, name: str):
        def record(module, inputs, output):
            out = output[0] if isinstance(output, tuple) else output
            self._sums[name] = self._sums.get(name, 0.0) + float(out.detach().float().sum())
            self._counts[name] = self._counts.get(name, 0) + out.numel()

        return record

    def __enter__(self) -> FiringRateRecorder:
        for name, module in self.model.named_modules():
            if isinstance(module, self.neuron_types):
                self._handles.append(module.register_forward_hook(self._hook(name)))
        return self

    def __exit__(self, *exc) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        if exc[0] is None:
            warn_if_silent(self.rates())

    def rates(self) -> dict[str, float]:
        """Mean output per recorded layer, in module order."""
        return {name: self._sums[name] / max(self._counts[name], 1) for name in self._sums}

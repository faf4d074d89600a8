"""One call for the firing rates and energy of a model on one input, with BN calibration when it is needed.

``profile_model`` is what ``spikescope analyze`` runs: random weights whose BN layers still hold their initial
statistics are calibrated on noise first (:func:`spikescope.models.calibrate_bn`), so Python and the CLI report the
same figures; a model with loaded or calibrated statistics is measured as it is::

    prof = profile_model(create_model("sdt_v3_s", mixer="srb"), torch.randn(2, 3, 224, 224))
    prof.energy_mj, prof.mean_rate, prof.rates
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..models.calibrate import bn_is_default, calibrate_bn
from .energy import E_MAC_PJ, EnergyMeter, LayerOps
from .firing import FiringRateRecorder

__all__ = ["ModelProfile", "profile_model"]


@dataclass
class ModelProfile:
    """Per-sample figures of one forward pass."""

    layers: dict[str, LayerOps]  # conv / linear layers: MACs, ACs, spiking input (totals over the batch)
    rates: dict[str, float]  # firing rate per spiking layer
    energy_mj: float  # per sample, spiking inputs counted as ACs
    dense_energy_mj: float  # per sample, every operation a MAC
    batch: int
    calibrated: dict | None  # calibrate_bn's description, None when the model was measured as given

    @property
    def mean_rate(self) -> float:
        return sum(self.rates.values()) / max(len(self.rates), 1)


@torch.no_grad()
def profile_model(model: nn.Module, x: torch.Tensor, *, calibrate: bool | None = None, seed: int = 0,
                  calib_batches: int = 4, calib_batch_size: int = 8) -> ModelProfile:
    """Run ``model(x)`` in eval mode under :class:`EnergyMeter` and :class:`FiringRateRecorder`.

    ``x``: ``[B, C, H, W]`` or ``[T, B, C, H, W]``. ``calibrate=None`` (default) calibrates BN on N(0, 1) noise of
    ``x``'s sample shape only when every BN layer still holds its initial statistics (:func:`bn_is_default`);
    ``True`` / ``False`` force it. Warns when most spiking layers fired nothing.
    """
    model.eval()
    desc = None
    if calibrate or (calibrate is None and bn_is_default(model)):
        T = x.shape[0] if x.dim() == 5 else 1
        desc = calibrate_bn(model, tuple(x.shape[-3:]), timesteps=T, n_batches=calib_batches,
                            batch_size=calib_batch_size, seed=seed)
    with FiringRateRecorder(model) as rates, EnergyMeter(model) as meter:
        model(x)
    batch = x.shape[1] if x.dim() == 5 else x.shape[0]
    dense = sum(o.macs for o in meter.layers.values()) * E_MAC_PJ * 1e-9 / batch
    return ModelProfile(dict(meter.layers), rates.rates(), meter.total_energy_mj() / batch, dense, batch, desc)

"""Spiking heat maps (as in the SMA + AZO paper's heat-map figures): one layer's spikes for one sample, one PNG
per timestep.

For timestep t the map is the spike count summed over channels, ``spikes[t, b].sum(channels) -> [H, W]``,
shown min-max scaled per image (a constant map becomes one colour) with the ``jet`` colour map::

    paths = spike_heatmaps(model, x, "block2.lif", "runs/heatmaps")   # x: the model's input, batch 1
"""
from __future__ import annotations

import difflib
import os
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..neurons import LIF, PLIF

__all__ = ["spiking_layers", "record_spikes", "spike_counts", "heatmap_frames", "spike_heatmaps", "SilentLayerWarning"]


def spiking_layers(model: nn.Module) -> list[str]:
    """Names of the LIF / PLIF modules of ``model`` (the layers a heat map can be drawn for)."""
    return [name for name, m in model.named_modules() if isinstance(m, (LIF, PLIF))]


def _find_layer(model: nn.Module, layer: str) -> nn.Module:
    modules = dict(model.named_modules())
    if layer not in modules:
        names = spiking_layers(model)
        close = difflib.get_close_matches(layer, names, n=5, cutoff=0.3)
        hint = f"did you mean {', '.join(close)}?" if close else f"spiking layers: {', '.join(names[:30])}"
        raise ValueError(f"model has no layer named {layer!r}; {hint}")
    return modules[layer]


@torch.no_grad()
def record_spikes(model: nn.Module, x: torch.Tensor, layer: str) -> torch.Tensor:
    """Run ``model(x)`` and return the output of the module named ``layer`` (a forward hook), detached."""
    module = _find_layer(model, layer)
    store: list[torch.Tensor] = []

    def hook(_module, _inputs, output):
        store.append((output[0] if isinstance(output, tuple) else output).detach())

    handle = module.register_forward_hook(hook)
    try:
        model(x)
    finally:
        handle.remove()
    if not store:
        raise RuntimeError(f"layer {layer!r} did not run during the forward pass")
    return store[0]


def spike_counts(spikes: torch.Tensor, sample: int = 0) -> torch.Tensor:
    """``spikes [T, B, C, H, W]`` -> ``[T, H, W]``: spikes of one sample summed over channels."""
    if spikes.dim() != 5:
        raise ValueError(
            f"a heat map needs a spatial layer with output [T, B, C, H, W], got shape {tuple(spikes.shape)}; "
            "pick a convolutional LIF layer"
        )
    return spikes[:, sample].float().sum(1)


def heatmap_frames(spikes: torch.Tensor, sample: int = 0) -> np.ndarray:
    """``spikes [T, B, C, H, W]`` -> per-timestep maps ``[T, H, W]`` in [0, 1] (channel sum, min-max per map)."""
    maps = spike_counts(spikes, sample)
    lo = maps.amin((-2, -1), keepdim=True)
    span = maps.amax((-2, -1), keepdim=True) - lo
    maps = torch.where(span > 0, (maps - lo) / span.clamp_min(1e-12), torch.zeros_like(maps))
    return maps.cpu().numpy()


class SilentLayerWarning(UserWarning):
    """The layer of a heat map fired no spike on the given input: every map would be one flat colour."""


def spike_heatmaps(
    model: nn.Module,
    x: torch.Tensor,
    layer: str,
    out_dir: str | os.PathLike,
    sample: int = 0,
    cmap: str = "jet",
) -> list[Path]:
    """Write ``<out_dir>/<layer>_t{t:02d}.png`` for every timestep of ``layer``'s spikes on ``x``; returns the paths.

    Each figure shows the channel-summed spike count of one timestep with pixel axes, a colour bar in spike counts
    (its range is that map's min..max, as in the min-max scaling of :func:`heatmap_frames`) and the timestep.
    ``model`` runs in its current mode (call ``model.eval()`` first for test-time maps). A layer that fires no spike
    raises :class:`SilentLayerWarning` (random weights need BN calibration: ``spikescope.models.calibrate_bn``).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    counts = spike_counts(record_spikes(model, x, layer), sample).cpu().numpy()
    if not counts.any():
        warnings.warn(f"layer {layer!r} fired no spike on this input, so every heat map is blank; with random "
                      "weights calibrate BN first (the CLI does unless --no-calibrate), or load a checkpoint",
                      SilentLayerWarning, stacklevel=2)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    T, H, W = counts.shape
    paths = []
    for t, frame in enumerate(counts):
        lo, hi = float(frame.min()), float(frame.max())
        fig, ax = plt.subplots(figsize=(4.2, 3.6 * H / max(W, 1) + 0.4))
        im = ax.imshow(frame, cmap=cmap, vmin=lo, vmax=hi if hi > lo else lo + 1, interpolation="nearest")
        blank = "" if frame.any() else ": no spike"
        ax.set_title(f"{layer}, timestep t = {t} of {T} (0..{T - 1}){blank}", fontsize=9)
        ax.set_xlabel(f"x (feature-map column, W = {W})")
        ax.set_ylabel(f"y (row, H = {H})")
        fig.colorbar(im, ax=ax, label="spikes summed over channels")
        fig.tight_layout()
        path = out / f"{layer.replace('.', '_')}_t{t:02d}.png"
        fig.savefig(path, dpi=100)
        plt.close(fig)
        paths.append(path)
    return paths

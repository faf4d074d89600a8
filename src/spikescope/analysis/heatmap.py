"""Spiking heat maps (sma.md §9): one spiking layer's spikes for one sample, one PNG per timestep.

For timestep t the map is the spike count summed over channels, ``spikes[t, b].sum(channels) -> [H, W]``,
min-max normalised per image (a constant map becomes all zeros) and drawn with the ``jet`` colour map::

    paths = spike_heatmaps(model, x, "block2.lif", "runs/heatmaps")   # x: the model's input, batch 1
"""
from __future__ import annotations

import difflib
import os
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..neurons import LIF, PLIF

__all__ = ["spiking_layers", "record_spikes", "heatmap_frames", "spike_heatmaps"]


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


def heatmap_frames(spikes: torch.Tensor, sample: int = 0) -> np.ndarray:
    """``spikes [T, B, C, H, W]`` -> per-timestep maps ``[T, H, W]`` in [0, 1] (channel sum, min-max per map)."""
    if spikes.dim() != 5:
        raise ValueError(
            f"a heat map needs a spatial layer with output [T, B, C, H, W], got shape {tuple(spikes.shape)}; "
            "pick a convolutional LIF layer"
        )
    maps = spikes[:, sample].float().sum(1)  # [T, H, W]
    lo = maps.amin((-2, -1), keepdim=True)
    span = maps.amax((-2, -1), keepdim=True) - lo
    maps = torch.where(span > 0, (maps - lo) / span.clamp_min(1e-12), torch.zeros_like(maps))
    return maps.cpu().numpy()


def spike_heatmaps(
    model: nn.Module,
    x: torch.Tensor,
    layer: str,
    out_dir: str | os.PathLike,
    sample: int = 0,
    cmap: str = "jet",
    scale: int = 8,
) -> list[Path]:
    """Write ``<out_dir>/<layer>_t{t:02d}.png`` for every timestep of ``layer``'s spikes on ``x``; returns the paths.

    ``model`` runs in its current mode (call ``model.eval()`` first for test-time maps); ``scale`` enlarges each
    map by nearest-neighbour repetition so that small feature maps stay visible.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    frames = heatmap_frames(record_spikes(model, x, layer), sample)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for t, frame in enumerate(frames):
        big = np.kron(frame, np.ones((scale, scale), dtype=frame.dtype)) if scale > 1 else frame
        path = out / f"{layer.replace('.', '_')}_t{t:02d}.png"
        plt.imsave(path, big, cmap=cmap, vmin=0.0, vmax=1.0)
        paths.append(path)
    return paths

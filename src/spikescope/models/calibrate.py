"""BatchNorm calibration on noise, for ERFs and energy estimates of randomly initialised models (no checkpoint).

A fresh model's BN layers hold running statistics mean 0, variance 1, which do not match the activations the
layers actually see, so in eval mode the signal grows or dies with depth and spiking layers fall silent or
saturate. ``calibrate_bn`` resets every BN layer's running statistics and re-estimates them as a plain
(cumulative, ``momentum=None``) average over a few forward passes of N(0, 1) noise: the same distribution the
noise-input ERF then uses. Only the BN layers are switched to training mode (dropout stays off), no weight changes,
no gradients. ERFs and energy estimates are afterwards taken in eval mode with these statistics; outputs say so
("random weights + BN calibrated on noise"). :func:`bn_is_default` tells a model nobody calibrated or loaded.
"""
from __future__ import annotations

import itertools
from collections.abc import Sequence

import torch
from torch import nn

__all__ = ["calibrate_bn", "bn_is_default"]


def _bns(model: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    return [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


def bn_is_default(model: nn.Module) -> bool:
    """True when ``model`` has BN layers and all still hold their initial statistics (mean 0, variance 1, no batch
    seen): random weights that were neither calibrated nor loaded from a checkpoint."""
    bns = [m for m in _bns(model) if m.track_running_stats and m.running_mean is not None]
    return bool(bns) and all(
        int(m.num_batches_tracked) == 0 and not m.running_mean.any() and bool((m.running_var == 1).all())
        for m in bns)


def _forward(model: nn.Module, x: torch.Tensor) -> None:
    (model.forward_features if hasattr(model, "forward_features") else model)(x)


def _placement(model: nn.Module) -> tuple[torch.device, torch.dtype]:
    for t in itertools.chain(model.parameters(), model.buffers()):
        if t.is_floating_point():
            return t.device, t.dtype
    return torch.device("cpu"), torch.float32


def calibrate_bn(
    model: nn.Module,
    input_size: Sequence[int],
    *,
    timesteps: int = 1,
    n_batches: int = 4,
    batch_size: int = 8,
    seed: int = 0,
) -> dict:
    """Re-estimate every BatchNorm layer's running statistics on N(0, 1) noise ``[B, *input_size]``.

    The noise goes in as a static batch ``[B, C, H, W]``; a model that refuses it gets ``[T, B, C, H, W]``.
    Returns a description ``{"bn_layers", "batches", "batch_size", "seed", "input_size"}``; leaves the model in
    eval mode.
    """
    bns = _bns(model)
    desc = {"bn_layers": len(bns), "batches": n_batches, "batch_size": batch_size, "seed": seed,
            "input_size": list(input_size)}
    if not bns:
        return desc
    saved = [(m, m.momentum) for m in bns]
    model.eval()
    for m in bns:
        m.reset_running_stats()
        m.momentum = None
        m.train()
    g = torch.Generator().manual_seed(seed)
    device, dtype = _placement(model)
    try:
        with torch.no_grad():
            for _ in range(n_batches):
                x = torch.randn((batch_size, *input_size), generator=g).to(device=device, dtype=dtype)
                try:
                    _forward(model, x)
                except (RuntimeError, ValueError, TypeError):
                    _forward(model, x.unsqueeze(0).repeat(timesteps, 1, 1, 1, 1))
    finally:
        for m, momentum in saved:
            m.momentum = momentum
        model.eval()
    return desc

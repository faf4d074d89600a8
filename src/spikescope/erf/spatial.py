"""Spatial ERF (sterf.md §1.3): gradient of a centre stimulus of a layer's output w.r.t. the input pixels.

For sample k, layer y, stimulus s (1 at the exact centre (m, n) of y's map, all channels, output timesteps 𝒯):

    g^(k) = ∂ Σ_{t∈𝒯} Σ_c s · y^(k)_{c,(m,n)}[t] / ∂ x^(k)   ∈ R^{T_in × C_in × H × W}

and the map aggregates g per ``mode``:

* ``"official"`` (the authors' scripts): |Σ_{t'} g[t']| averaged over input channels, then over samples
  (signed sums over output channels and input timesteps first, |·| after).
* ``"abs"``: Σ_{t'} |g[t']| averaged over input channels, then over samples (no cancellation across timesteps).
* ``"replknet"`` (RepLKNet's tool): stimulus ReLU'd (1 only where the centre activation is > 0),
  ReLU(Σ_{t'} g[t']) summed over input channels, then averaged over samples.

Per-input-timestep maps use |g[t']| (``official``/``abs``) or ReLU(g[t']) (``replknet``) of each t' separately.
"""
from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from .inputs import make_source
from .metrics import bootstrap_metrics
from .result import ERFResult
from .session import (
    centre_of,
    check_finite_gradient,
    erf_mode,
    forward_layers,
    infer_timesteps,
    make_leaf,
    parse_t_out,
    probe_layers,
)

__all__ = ["spatial_erf", "spatial_erf_loop", "MODES"]

MODES = ("official", "abs", "replknet")


def _stimulus(y: torch.Tensor, t_idx: list[int], centre: tuple[int, int], mode: str) -> torch.Tensor:
    """Upstream gradient for ``y [T_out, B, C, H, W]``: ones at each sample's centre, all channels, times ``t_idx``."""
    stim = torch.zeros_like(y)
    cy, cx = centre
    if mode == "replknet":
        stim[t_idx, :, :, cy, cx] = (y[t_idx, :, :, cy, cx] > 0).to(y.dtype)
    else:
        stim[t_idx, :, :, cy, cx] = 1.0
    return stim


def _aggregate(g: torch.Tensor, mode: str) -> tuple[torch.Tensor, torch.Tensor]:
    """``g [T_in, B, C, H, W]`` -> (per-sample maps ``[B, H, W]``, per-timestep maps ``[T_in, B, H, W]``)."""
    if mode == "replknet":
        return g.sum(0).clamp(min=0).sum(1), g.clamp(min=0).sum(2)
    per_t = g.abs().mean(2)
    if mode == "abs":
        return per_t.sum(0), per_t
    return g.sum(0).abs().mean(1), per_t


class _Accumulator:
    """Collects per-sample maps and per-timestep sums for each layer."""

    def __init__(self, layers: Sequence[str], n: int) -> None:
        self.samples: dict[str, list[np.ndarray]] = {name: [] for name in layers}
        self.per_t: dict[str, np.ndarray] = {}
        self.n = n

    def add(self, name: str, g: torch.Tensor | None, leaf: torch.Tensor, mode: str) -> None:
        if g is None:  # the layer does not depend on the input at all
            g = torch.zeros_like(leaf)
        check_finite_gradient(g, name)
        per_sample, per_t = _aggregate(g.detach(), mode)
        self.samples[name].append(per_sample.double().cpu().numpy())
        acc = per_t.double().sum(1).cpu().numpy()
        self.per_t[name] = self.per_t.get(name, 0) + acc

    def finish(self) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
        samples = {k: np.concatenate(v, 0) for k, v in self.samples.items()}
        per_t = {k: v / self.n for k, v in self.per_t.items()}
        return samples, per_t


def _check_mode(mode: str) -> None:
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")


def _result(model, source, probe, T, samples, per_t, centres, t_sel, *, mode, offset, seed, n_boot, label, extra):
    maps = {k: v.mean(0) for k, v in samples.items()}
    metrics = {}
    for name, s in samples.items():
        H, W = s.shape[1:]
        # the map is measured on the input; its centre is the input pixel under the stimulated output pixel
        _, _, h, w = probe.shapes[name]
        centre_in = (min(H - 1, H // 2 + round(offset[0] * H / h)), min(W - 1, W // 2 + round(offset[1] * W / w)))
        metrics[name] = bootstrap_metrics(s, centre_in, n_boot=n_boot, seed=seed)
    meta = {
        "label": label,
        "model": type(model).__name__,
        "layers": [r.name for r in probe.refs],
        "layer_kinds": {r.name: r.kind for r in probe.refs},
        "layer_shapes": {k: list(v) for k, v in probe.shapes.items()},
        "centre": {k: list(v) for k, v in centres.items()},
        "t_out": {k: v for k, v in t_sel.items()},
        "offset": list(offset),
        "mode": mode,
        "inputs": source.description,
        "input_shape": list(source.sample(0).shape),
        "N": len(source),
        "seed": seed,
        "timesteps": T,
        "feed": probe.feed,
        "n_boot": n_boot,
        **extra,
    }
    return ERFResult("spatial", maps, metrics, meta, per_timestep=per_t, samples={k: v.astype(np.float32)
                                                                                  for k, v in samples.items()})


def _prepare(model, inputs, layers, *, t_out, offset, mode, timesteps, n_samples, seed, input_size, feed):
    _check_mode(mode)
    source = make_source(inputs, n_samples, input_size, seed)
    T = infer_timesteps(model, timesteps, source.sample(0))
    probe = probe_layers(model, source, layers, T, feed)
    centres = {n: centre_of(s, offset, n) for n, s in probe.shapes.items()}
    t_sel = {n: parse_t_out(t_out, s[0], n) for n, s in probe.shapes.items()}
    return source, T, probe, centres, t_sel


def spatial_erf(
    model: nn.Module,
    inputs="noise",
    layers: str | Sequence[str] | None = None,
    *,
    t_out: str | int | Sequence[int] = "all",
    offset: Sequence[int] = (0, 0),
    mode: str = "official",
    batch_size: int = 16,
    timesteps: int | None = None,
    n_samples: int | None = None,
    seed: int = 0,
    input_size: Sequence[int] | None = None,
    feed: str = "auto",
    n_boot: int = 200,
    progress: bool = True,
    label: str | None = None,
    extra_meta: dict | None = None,
) -> ERFResult:
    """Spatial ERF maps of several layers, batched: one forward per batch, one backward per layer per batch.

    Args:
        model: any ``nn.Module`` taking ``[T, B, C, H, W]`` (or ``[B, C, H, W]``, see ``feed``).
        inputs: ``"noise"`` (seeded N(0, 1), needs ``n_samples`` and ``input_size``), ``"noise-iid:T"``, an image
            folder, a tensor ``[N, C, H, W]`` / ``[T, N, C, H, W]``, or a dataset of such samples.
        layers: forward_features keys and/or module names, globs allowed; ``None`` = all forward_features keys.
        t_out: output timesteps that get the stimulus: ``"all"``, an index or a list.
        offset: (dy, dx) added to the exact centre (H'//2, W'//2) of every layer's map.
        mode: ``"official"``, ``"abs"`` or ``"replknet"`` (module docstring).
        batch_size: samples per forward pass.
        timesteps: T of the input leaf (default: the inputs' T, else ``model.timesteps``/``model.cfg.timesteps``).
        seed: seeds the noise and the bootstrap.
        feed: ``"sequence"`` passes ``[T, B, C, H, W]``, ``"frame"`` passes ``[B, C, H, W]``, ``"auto"`` probes.
        n_boot: bootstrap resamples for the metric intervals (0: none).

    Returns:
        :class:`ERFResult` with ``maps {layer: [H, W]}``, ``per_timestep {layer: [T_in, H, W]}``, per-sample maps
        and metrics.

    Independence assumption: every sample in a batch gets its own stimulus and the input gradient of sample k is
    taken to depend on sample k only. That holds in eval mode (BN running statistics, no dropout), which this
    function sets for its duration, for every model whose forward does not mix the batch (true of convolutions,
    BN in eval, attention within a sample, the raster reshapes of MLPixer/SRB). A model that mixes samples (BN in
    training mode, batch-level attention or normalisation) gives wrong maps here; use :func:`spatial_erf_loop`.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    with erf_mode(model):
        source, T, probe, centres, t_sel = _prepare(
            model, inputs, layers, t_out=t_out, offset=offset, mode=mode, timesteps=timesteps,
            n_samples=n_samples, seed=seed, input_size=input_size, feed=feed,
        )
        names = [r.name for r in probe.refs]
        acc = _Accumulator(names, len(source))
        start = time.perf_counter()
        from tqdm.auto import tqdm

        with tqdm(total=len(source), desc="spatial ERF", unit="img", disable=not progress) as bar:
            for lo in range(0, len(source), batch_size):
                idx = list(range(lo, min(lo + batch_size, len(source))))
                leaf = make_leaf(source.batch(idx), probe.leaf_T, model)
                with torch.enable_grad():
                    ys = forward_layers(model, leaf, probe.refs, probe.feed, T)
                    for i, name in enumerate(names):
                        y = ys[name]
                        stim = _stimulus(y, t_sel[name], centres[name], mode)
                        (g,) = torch.autograd.grad(
                            y, leaf, stim, retain_graph=i < len(names) - 1, allow_unused=True
                        ) if y.requires_grad else (None,)
                        acc.add(name, g, leaf, mode)
                del ys, leaf
                bar.update(len(idx))
        elapsed = time.perf_counter() - start
    samples, per_t = acc.finish()
    extra = {"method": "batched", "batch_size": batch_size, "seconds": elapsed, **(extra_meta or {})}
    return _result(model, source, probe, T, samples, per_t, centres, t_sel, mode=mode, offset=offset, seed=seed,
                   n_boot=n_boot, label=label or type(model).__name__, extra=extra)


def spatial_erf_loop(
    model: nn.Module,
    inputs="noise",
    layers: str | Sequence[str] | None = None,
    *,
    t_out: str | int | Sequence[int] = "all",
    offset: Sequence[int] = (0, 0),
    mode: str = "official",
    timesteps: int | None = None,
    n_samples: int | None = None,
    seed: int = 0,
    input_size: Sequence[int] | None = None,
    feed: str = "auto",
    n_boot: int = 0,
    param_grads: bool = True,
    progress: bool = False,
) -> ERFResult:
    """The authors' procedure: for every (layer, sample), a new forward at batch 1 and a backward.

    With ``param_grads`` (their scripts) the backward is ``y.backward(stimulus)``, which also fills the
    parameters' ``.grad``; otherwise only the input gradient is taken. The reference for :func:`spatial_erf`
    (same arguments, same maps) and the baseline of ``benchmarks/erf.py``.
    """
    with erf_mode(model, param_grads=param_grads):
        source, T, probe, centres, t_sel = _prepare(
            model, inputs, layers, t_out=t_out, offset=offset, mode=mode, timesteps=timesteps,
            n_samples=n_samples, seed=seed, input_size=input_size, feed=feed,
        )
        names = [r.name for r in probe.refs]
        acc = _Accumulator(names, len(source))
        start = time.perf_counter()
        from tqdm.auto import tqdm

        for ref in tqdm(probe.refs, desc="per-sample loop", disable=not progress):
            for k in range(len(source)):
                leaf = make_leaf(source.batch([k]), probe.leaf_T, model)
                with torch.enable_grad():
                    y = forward_layers(model, leaf, [ref], probe.feed, T)[ref.name]
                    stim = _stimulus(y, t_sel[ref.name], centres[ref.name], mode)
                    if param_grads:
                        y.backward(stim)
                        g = leaf.grad
                        model.zero_grad(set_to_none=True)
                    else:
                        (g,) = torch.autograd.grad(y, leaf, stim, allow_unused=True)
                acc.add(ref.name, g, leaf, mode)
        elapsed = time.perf_counter() - start
    samples, per_t = acc.finish()
    extra = {"method": "per-sample loop", "batch_size": 1, "seconds": elapsed}
    return _result(model, source, probe, T, samples, per_t, centres, t_sel, mode=mode, offset=offset, seed=seed,
                   n_boot=n_boot, label=type(model).__name__, extra=extra)

"""Spatial ERF (sterf.md §1.3): gradient of a centre stimulus of a layer's output w.r.t. the input pixels.

For sample k, layer y read as a map (:mod:`~spikescope.erf.layouts`), stimulus s at the exact centre (m, n) of
y's map and the output timesteps 𝒯 (``stimulus="sum"``: 1 on every channel, the authors' choice):

    g^(k) = ∂ Σ_{t∈𝒯} Σ_c s · y^(k)_{c,(m,n)}[t] / ∂ x^(k)   ∈ R^{T_in × C_in × H × W}

and the map aggregates g per ``mode``:

* ``"official"`` (the authors' scripts): |Σ_{t'} g[t']| averaged over input channels, then over samples
  (signed sums over output channels and input timesteps first, |·| after).
* ``"abs"``: Σ_{t'} |g[t']| averaged over input channels, then over samples (no cancellation across timesteps).
* ``"replknet"`` (RepLKNet's tool): stimulus ReLU'd (1 only where the centre activation is > 0),
  ReLU(Σ_{t'} g[t']) summed over input channels, then averaged over samples.

Per-input-timestep maps use |g[t']| (``official``/``abs``) or ReLU(g[t']) (``replknet``) of each t' separately.

``stimulus``: ``"sum"`` (Σ_c y_c), ``"channel:K"`` (y_K alone) or ``"sqnorm"`` (Σ_c y_c², upstream 2·y_c). Where the
channels cancel (a LayerNorm output sums to a constant) the sum has almost no input gradient: the first batch also
takes the gradient of channel 0, and a layer whose sum gives less than 1e-3 of it, or whose maps are zero for half
the samples or more, gets a :class:`SilentLayerWarning` (also in ``meta["warnings"]``) naming the other stimuli.
"""
from __future__ import annotations

import time
import warnings
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

__all__ = ["spatial_erf", "spatial_erf_loop", "MODES", "SilentLayerWarning", "parse_stimulus"]

MODES = ("official", "abs", "replknet")


class SilentLayerWarning(UserWarning):
    """A layer's stimulus has (almost) no input gradient: its map is ~0 for a reason other than a small ERF."""


def parse_stimulus(stimulus: str) -> tuple[str, int | None]:
    """``"sum"`` / ``"sqnorm"`` / ``"channel:K"`` -> (kind, K)."""
    kind, _, k = stimulus.partition(":")
    if kind in ("sum", "sqnorm") and not k:
        return kind, None
    if kind == "channel" and k.isdigit():
        return kind, int(k)
    raise ValueError(f"stimulus must be 'sum', 'sqnorm' or 'channel:K' (e.g. 'channel:0'), got {stimulus!r}")


def _stimulus(y: torch.Tensor, t_idx: list[int], centre: tuple[int, int], mode: str,
              stimulus: tuple[str, int | None] = ("sum", None)) -> torch.Tensor:
    """Upstream gradient for ``y [T_out, B, C, H, W]`` at each sample's centre and times ``t_idx`` (module docstring)."""
    kind, k = stimulus
    if kind == "channel" and not 0 <= k < y.shape[2]:
        raise ValueError(f"stimulus channel {k} is out of range for a layer with {y.shape[2]} channels")
    stim = torch.zeros_like(y)
    cy, cx = centre
    at = y[t_idx, :, :, cy, cx].detach()
    value = 2 * at if kind == "sqnorm" else torch.ones_like(at)
    if kind == "channel":
        value = torch.zeros_like(at)
        value[..., k] = 1.0
    if mode == "replknet":
        value = value * (at > 0).to(y.dtype)
    stim[t_idx, :, :, cy, cx] = value
    return stim


def _silent_note(name: str, g_sum: torch.Tensor | None, g_one: torch.Tensor | None) -> str | None:
    """A warning text when the channel-sum gradient is < 1e-3 of the channel-0 one (or both are zero)."""
    s = 0.0 if g_sum is None else float(g_sum.abs().mean())
    c = 0.0 if g_one is None else float(g_one.abs().mean())
    if s >= 1e-3 * c and s > 0:
        return None
    why = (f"its channel-sum stimulus has almost no input gradient ({s:.3g} vs {c:.3g} for channel 0 alone: the "
           "channels cancel, e.g. a LayerNorm output sums to a constant)") if c > 0 else \
        "no stimulus of it has any input gradient (a silent layer: no spikes, or cut from the input)"
    return f"layer {name!r}: {why}; try stimulus='channel:0' or 'sqnorm' (--stimulus)"


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


def _result(model, source, probe, T, samples, per_t, centres, t_sel, *, mode, offset, seed, n_boot, label, extra,
            notes=None):
    maps = {k: v.mean(0) for k, v in samples.items()}
    notes = dict(notes or {})
    for name, s in samples.items():
        dead = float((s.reshape(len(s), -1).max(1) <= 0).mean())
        if dead >= 0.5 and name not in notes:
            notes[name] = (f"layer {name!r}: the map is zero for {dead:.0%} of the samples; try stimulus='channel:0' "
                           "or 'sqnorm' (--stimulus), or calibrated / trained weights")
    for note in notes.values():
        warnings.warn(note, SilentLayerWarning, stacklevel=3)
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
        "layouts": {k: {"layout": str(v), "source": probe.layout_sources[k]} for k, v in probe.layouts.items()},
        "warnings": list(notes.values()),
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


def _prepare(model, inputs, layers, *, t_out, offset, mode, timesteps, n_samples, seed, input_size, feed, layout):
    _check_mode(mode)
    source = make_source(inputs, n_samples, input_size, seed)
    T = infer_timesteps(model, timesteps, source.sample(0))
    probe = probe_layers(model, source, layers, T, feed, layout=layout)
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
    layout=None,
    stimulus: str = "sum",
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
        layout: the layers' output layouts where they cannot be inferred (:mod:`~spikescope.erf.layouts`): one spec
            (``"BHWC"``, ``"BNC:14x14+1"``, ``"windows:56x56/7/3"``) for every layer or ``{layer or glob: spec}``.
        stimulus: ``"sum"`` (every channel), ``"channel:K"`` or ``"sqnorm"`` (module docstring).
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
    stim_kind = parse_stimulus(stimulus)
    notes: dict[str, str] = {}
    with erf_mode(model):
        source, T, probe, centres, t_sel = _prepare(
            model, inputs, layers, t_out=t_out, offset=offset, mode=mode, timesteps=timesteps,
            n_samples=n_samples, seed=seed, input_size=input_size, feed=feed, layout=layout,
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
                    ys = forward_layers(model, leaf, probe.refs, probe.feed, T, layouts=probe.layouts)
                    for name in names:
                        y = ys[name]
                        stim = _stimulus(y, t_sel[name], centres[name], mode, stim_kind)
                        (g,) = torch.autograd.grad(
                            y, leaf, stim, retain_graph=True, allow_unused=True
                        ) if y.requires_grad else (None,)
                        if lo == 0 and stim_kind[0] == "sum":  # the silent-layer check, first batch only
                            one = _stimulus(y, t_sel[name], centres[name], mode, ("channel", 0))
                            (g1,) = torch.autograd.grad(y, leaf, one, retain_graph=True, allow_unused=True) \
                                if y.requires_grad else (None,)
                            note = _silent_note(name, g, g1)
                            if note:
                                notes[name] = note
                        acc.add(name, g, leaf, mode)
                del ys, leaf
                bar.update(len(idx))
        elapsed = time.perf_counter() - start
    samples, per_t = acc.finish()
    extra = {"method": "batched", "batch_size": batch_size, "seconds": elapsed, "stimulus": stimulus,
             **(extra_meta or {})}
    return _result(model, source, probe, T, samples, per_t, centres, t_sel, mode=mode, offset=offset, seed=seed,
                   n_boot=n_boot, label=label or type(model).__name__, extra=extra, notes=notes)


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
    layout=None,
    stimulus: str = "sum",
    n_boot: int = 0,
    param_grads: bool = True,
    progress: bool = False,
) -> ERFResult:
    """The authors' procedure: for every (layer, sample), a new forward at batch 1 and a backward.

    With ``param_grads`` (their scripts) the backward is ``y.backward(stimulus)``, which also fills the
    parameters' ``.grad``; otherwise only the input gradient is taken. The reference for :func:`spatial_erf`
    (same arguments, same maps) and the baseline of ``benchmarks/erf.py``.
    """
    stim_kind = parse_stimulus(stimulus)
    with erf_mode(model, param_grads=param_grads):
        source, T, probe, centres, t_sel = _prepare(
            model, inputs, layers, t_out=t_out, offset=offset, mode=mode, timesteps=timesteps,
            n_samples=n_samples, seed=seed, input_size=input_size, feed=feed, layout=layout,
        )
        names = [r.name for r in probe.refs]
        acc = _Accumulator(names, len(source))
        start = time.perf_counter()
        from tqdm.auto import tqdm

        for ref in tqdm(probe.refs, desc="per-sample loop", disable=not progress):
            for k in range(len(source)):
                leaf = make_leaf(source.batch([k]), probe.leaf_T, model)
                with torch.enable_grad():
                    y = forward_layers(model, leaf, [ref], probe.feed, T, layouts=probe.layouts)[ref.name]
                    stim = _stimulus(y, t_sel[ref.name], centres[ref.name], mode, stim_kind)
                    if param_grads:
                        y.backward(stim)
                        g = leaf.grad
                        model.zero_grad(set_to_none=True)
                    else:
                        (g,) = torch.autograd.grad(y, leaf, stim, allow_unused=True)
                acc.add(ref.name, g, leaf, mode)
        elapsed = time.perf_counter() - start
    samples, per_t = acc.finish()
    extra = {"method": "per-sample loop", "batch_size": 1, "seconds": elapsed, "stimulus": stimulus}
    return _result(model, source, probe, T, samples, per_t, centres, t_sel, mode=mode, offset=offset, seed=seed,
                   n_boot=n_boot, label=type(model).__name__, extra=extra)

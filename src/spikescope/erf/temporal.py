"""Temporal ERF (sterf.md §1.4): how much the centre output at time t depends on the input at time t'.

For sample k and a layer output y (spikes, or the membrane potential of a neuron layer)::

    M^(k)[t, t'] = Σ_{c_in, i, j} | ∂ Σ_c y^(k)_{c,(m,n)}[t] / ∂ x^(k)_{c_in,(i,j)}[t'] |

M = mean_k M^(k) is lower-triangular for a causal network. One backward per output timestep t, batched over
samples (each sample gets its own stimulus; eval mode, the independence assumption of
:func:`~spikescope.erf.spatial.spatial_erf`). The temporal ERF curve is T-ERF(tau) = mean_t M[t, t - tau] and is
fitted with a * b**tau + c (b < 1: a geometric decay over the delay tau; the authors fit in input time t', where
the same curve reads b' = 1/b). Per-delay maps: mean over samples and t of |∂ Σ_c y_c,(m,n)[t] / ∂ x[t - tau]|,
averaged over input channels.

``output="membrane"`` reads the membrane potential of a neuron module (our ``LIF``/``PLIF``/``IntegerSpike``):
a forward hook re-runs the neuron with ``return_state=True`` on the same input, passes its spikes on, and records
its membrane trace (the post-reset potential V[t]; below threshold V[t] = H[t]).
"""
from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from .hooks import LayerError, check_neuron
from .inputs import make_source
from .metrics import fit_exp_decay
from .result import ERFResult, _clean
from .session import (
    centre_of,
    check_finite_gradient,
    erf_mode,
    forward_layers,
    infer_timesteps,
    make_leaf,
    probe_layers,
)

__all__ = ["temporal_erf", "terf_curve"]


def _membrane_hook(module: nn.Module, inputs: tuple, output: torch.Tensor):
    spikes, membrane = module.forward(inputs[0], return_state=True)  # .forward: no hook recursion
    return membrane, spikes


def terf_curve(matrix: np.ndarray) -> np.ndarray:
    """``[..., T, T]`` matrices -> ``[..., T]`` diagonal means: entry tau is mean_t M[t, t - tau]."""
    T = matrix.shape[-1]
    return np.stack([np.diagonal(matrix, offset=-tau, axis1=-2, axis2=-1).mean(-1) for tau in range(T)], -1)


def temporal_erf(
    model: nn.Module,
    inputs="noise",
    layer: str | None = None,
    *,
    output: str = "spikes",
    offset: Sequence[int] = (0, 0),
    batch_size: int = 16,
    timesteps: int | None = None,
    n_samples: int | None = None,
    seed: int = 0,
    input_size: Sequence[int] | None = None,
    n_boot: int = 200,
    progress: bool = True,
    label: str | None = None,
    extra_meta: dict | None = None,
) -> ERFResult:
    """The full T x T temporal ERF matrix of one layer, its per-delay maps and the exponential fit.

    Args:
        model: any ``nn.Module`` taking ``[T, B, C, H, W]``.
        inputs: as :func:`~spikescope.erf.spatial.spatial_erf`; ``"noise-iid:T"`` draws new noise per timestep.
        layer: one forward_features key or module name (a neuron module for ``output="membrane"``).
        output: ``"spikes"`` (the layer's output) or ``"membrane"`` (its membrane potential).
        offset: (dy, dx) from the exact centre of the layer's map.

    Returns:
        :class:`ERFResult` with ``matrix [T, T]``, ``matrix_samples [N, T, T]``, ``maps {"delay{k}": [H, W]}``,
        ``fit {"a", "b", "c", "rmse"}`` and metrics (fit parameters and T-ERF(tau) with bootstrap intervals).
    """
    if output not in ("spikes", "membrane"):
        raise ValueError(f"output must be 'spikes' or 'membrane', got {output!r}")
    if layer is None or not isinstance(layer, str):
        raise LayerError("temporal_erf takes exactly one layer name (a string)")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    replace = None
    with erf_mode(model):
        source = make_source(inputs, n_samples, input_size, seed)
        T = infer_timesteps(model, timesteps, source.sample(0))
        if output == "membrane":
            check_neuron(model, layer)
            replace = _membrane_hook
        probe = probe_layers(model, source, [layer], T, "sequence", replace)
        if len(probe.refs) != 1:
            raise LayerError(f"temporal_erf takes one layer; {layer!r} matches {[r.name for r in probe.refs]}")
        name = probe.refs[0].name
        T_out, _, h, w = probe.shapes[name]
        if T_out != T:
            raise LayerError(f"layer {name!r} has {T_out} output timesteps for {T} input timesteps; a temporal ERF "
                             "needs one output per input timestep")
        centre = centre_of(probe.shapes[name], offset, name)
        N = len(source)
        mats = np.zeros((N, T, T))
        delay_sum = None
        start = time.perf_counter()
        from tqdm.auto import tqdm

        with tqdm(total=N, desc="temporal ERF", unit="img", disable=not progress) as bar:
            for lo in range(0, N, batch_size):
                idx = list(range(lo, min(lo + batch_size, N)))
                leaf = make_leaf(source.batch(idx), T, model)
                with torch.enable_grad():
                    y = forward_layers(model, leaf, probe.refs, "sequence", T, replace, probe.layouts)[name]
                    for t in range(T):
                        stim = torch.zeros_like(y)
                        stim[t, :, :, centre[0], centre[1]] = 1.0
                        g = None
                        if y.requires_grad:
                            (g,) = torch.autograd.grad(y, leaf, stim, retain_graph=t < T - 1, allow_unused=True)
                        if g is None:
                            g = torch.zeros_like(leaf)
                        check_finite_gradient(g, name)
                        a = g.detach().abs()  # [T_in, B, C, H, W]
                        mats[idx, t, :] = a.sum((2, 3, 4)).double().T.cpu().numpy()
                        per_in = a.mean(2).double().sum(1).cpu().numpy()  # [T_in, H, W], summed over the batch
                        if delay_sum is None:
                            delay_sum = np.zeros((T,) + per_in.shape[1:])
                        for tp in range(t + 1):
                            delay_sum[t - tp] += per_in[tp]
                bar.update(len(idx))
        elapsed = time.perf_counter() - start
    counts = np.arange(T, 0, -1)  # delay tau occurs for T - tau output timesteps
    maps = {f"delay{tau}": delay_sum[tau] / (N * counts[tau]) for tau in range(T)}
    matrix = mats.mean(0)
    taus = np.arange(T)
    curve = terf_curve(matrix)
    a, b, c, rmse = (v[0] for v in fit_exp_decay(taus, curve[None]))
    fit = {"a": a, "b": b, "c": c, "rmse": rmse, "on": "T-ERF(tau) = mean_t M[t, t - tau], tau = 0..T-1"}
    metrics = {name: _temporal_metrics(mats, n_boot, seed, fit)}
    meta = {
        "label": label or type(model).__name__,
        "model": type(model).__name__,
        "layer": name,
        "layer_shape": list(probe.shapes[name]),
        "output": output,
        "centre": list(centre),
        "offset": list(offset),
        "inputs": source.description,
        "input_shape": list(source.sample(0).shape),
        "N": N,
        "seed": seed,
        "timesteps": T,
        "n_boot": n_boot,
        "upper_triangle_max": float(np.triu(matrix, 1).max()) if T > 1 else 0.0,
        "method": "batched",
        "batch_size": batch_size,
        "seconds": elapsed,
        **(extra_meta or {}),
    }
    return ERFResult("temporal", maps, metrics, meta, matrix=matrix, matrix_samples=mats, fit=_clean(fit))


def _temporal_metrics(mats: np.ndarray, n_boot: int, seed: int, fit: dict) -> dict:
    """Fit parameters, T-ERF(tau) values and the silent fraction, with 95% bootstrap intervals over samples."""
    N, T, _ = mats.shape
    curve = terf_curve(mats.mean(0))
    silent = ~(mats.reshape(N, -1) > 0).any(1)
    point = {"fit_a": fit["a"], "fit_b": fit["b"], "fit_c": fit["c"], "fit_rmse": fit["rmse"],
             "silent_fraction": silent.mean()}
    point.update({f"terf@{tau}": curve[tau] for tau in range(T)})
    out = {k: {"value": v, "ci95": None} for k, v in point.items()}
    if n_boot > 0 and N >= 2:
        rng = np.random.default_rng(seed)
        counts = rng.multinomial(N, np.full(N, 1.0 / N), size=n_boot) / N  # [B, N]
        boot_curves = terf_curve(np.einsum("bn,nij->bij", counts, mats))
        a, b, c, rmse = fit_exp_decay(np.arange(T), boot_curves)
        boot = {"fit_a": a, "fit_b": b, "fit_c": c, "fit_rmse": rmse, "silent_fraction": counts @ silent}
        boot.update({f"terf@{tau}": boot_curves[:, tau] for tau in range(T)})
        for k, v in boot.items():
            finite = v[np.isfinite(v)]
            if finite.size >= max(2, n_boot // 2):
                out[k]["ci95"] = [float(np.percentile(finite, 2.5)), float(np.percentile(finite, 97.5))]
    return _clean(out)

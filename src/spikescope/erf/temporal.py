"""Temporal ERF: how much a layer's output at time t depends on the input at time t'.

For sample k and a layer output y (spikes, or the membrane potential of a neuron layer)::

    M^(k)[t, t'] = Σ_{c_in, i, j} | ∂ Σ_c y^(k)_{c,(m,n)}[t] / ∂ x^(k)_{c_in,(i,j)}[t'] |

M = mean_k M^(k) is lower-triangular for a causal network. Each sample gets its own stimulus (eval mode; the
independence assumption of :func:`~spikescope.erf.spatial.spatial_erf`). Three named protocols read it:

* ``"matrix"`` (ours): all T rows; the curve is the diagonal mean T-ERF(τ) = mean_t M[t, t − τ], τ = 0..T−1,
  fitted with a·b^τ + c over the delay τ. Per-delay maps ``delay{τ}`` average over t.
* ``"last-row"`` (the authors' ``erf_scnn/functions/erf.py::compute_temporal_erf_2``): only the last row of the
  matrix (one backward, centre stimulus at t = T−1): T-ERF(τ) = M[T−1, T−1−τ], τ = 0..T−2 (that function's
  default range). It equals row T−1 of ``"matrix"`` and differs from the diagonal mean unless M is Toeplitz.
* ``"all-pixel"`` (the authors' ``erf_compute/temporal_erf_compute.py``): stimulus 1 at *every* output position and
  channel at t = T−1 (one backward). Per sample, G[t', i, j] = Σ_c |∂ Σ_{c,m,n} y[T−1] / ∂ x_c,(i,j)[t']| is
  divided by its own maximum over (t', i, j), and e[t'] = Σ_{i,j} G[t', i, j]; the curve is the mean (± std) over
  samples against the **input time** t' = 0..T−1. The fit a·b^(t'−t0) + c is made on the first longest strictly
  increasing run of the mean curve starting at t0 (as that script), so a rising curve gives b > 1 and the decay per
  step back in time is 1/b. Maps ``input{t'}``: mean G per input time.

The centre-stimulus protocols also store the authors' per-delay maps at the last output step
(``erf_scnn/functions/dynamic_erf.py::compute_st_erf``): ``last_delay{τ}`` = mean_k |∂ Σ_c y_c,(m,n)[T−1] /
∂ x[T−1−τ]|, averaged over input channels.

The fit is described, not just reported (:func:`~spikescope.erf.metrics.describe_fit`): ``fit["shape"]`` says
whether it is a decay, a growth, a curve moving the other way (a < 0) or no fit at all (R² < 0.9).

``output="membrane"`` reads the membrane potential of a neuron module (any module whose forward takes
``return_state``): a forward hook re-runs the neuron with ``return_state=True`` on the same input, passes its
spikes on, and records its membrane trace (the post-reset potential V[t]).
"""
from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from .hooks import LayerError, check_neuron
from .inputs import make_source
from .metrics import boot_interval, describe_fit, fit_exp_decay, longest_increasing_run
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

__all__ = ["PROTOCOLS", "temporal_erf", "terf_curve", "last_row_curve", "authors_fit", "curve_ratio"]

#: protocol -> (the quantity, the authors' function it reproduces or "ours")
PROTOCOLS = {
    "matrix": ("T-ERF(τ) = mean_t M[t, t−τ] over the delay τ (centre stimulus at every t)", "ours"),
    "last-row": ("T-ERF(τ) = M[T−1, T−1−τ], τ = 0..T−2 (centre stimulus at t = T−1)",
                 "erf_scnn/functions/erf.py::compute_temporal_erf_2"),
    "all-pixel": ("e[t'] = Σ_ij G[t',i,j] / max G over the input time t' (all-pixel stimulus at t = T−1)",
                  "erf_compute/temporal_erf_compute.py"),
}


def _membrane_hook(module: nn.Module, inputs: tuple, output: torch.Tensor):
    spikes, membrane = module.forward(inputs[0], return_state=True)  # .forward: no hook recursion
    return membrane, spikes


def terf_curve(matrix: np.ndarray) -> np.ndarray:
    """``[..., T, T]`` matrices -> ``[..., T]`` diagonal means: entry tau is mean_t M[t, t - tau]."""
    T = matrix.shape[-1]
    return np.stack([np.diagonal(matrix, offset=-tau, axis1=-2, axis2=-1).mean(-1) for tau in range(T)], -1)


def last_row_curve(matrix: np.ndarray) -> np.ndarray:
    """``[..., T, T]`` -> ``[..., T - 1]``: entry tau is M[T-1, T-1-tau], tau = 0..T-2 (``compute_temporal_erf_2``)."""
    T = matrix.shape[-1]
    return matrix[..., T - 1, ::-1][..., : max(T - 1, 0)]


def _row_curve(rows: np.ndarray) -> np.ndarray:
    """``[..., 1, T]`` (the row t = T-1 alone) -> ``[..., T - 1]`` by delay, as :func:`last_row_curve`."""
    T = rows.shape[-1]
    return rows[..., 0, ::-1][..., : max(T - 1, 0)]


def authors_fit(curve: np.ndarray) -> dict:
    """The fit of ``temporal_erf_compute.py``: a·b^(t'−t0) + c on the first longest strictly increasing run of
    ``curve`` (input time t'), b searched on (0, 10]. Returns ``{"a", "b", "c", "rmse", "window", "r2", "shape",
    "note"}``; ``window`` (start, stop) is ``None`` and the parameters NaN when no run has 3 points."""
    run = longest_increasing_run(curve)
    if run is None:
        return {"a": np.nan, "b": np.nan, "c": np.nan, "rmse": np.nan, "window": None, "r2": None, "shape": "no-fit",
                "note": "no strictly increasing run of 3 points: the authors' fit is not defined for this curve"}
    x = np.arange(run[1] - run[0], dtype=float)
    y = np.asarray(curve, float)[run[0]:run[1]]
    a, b, c, rmse = (float(v[0]) for v in fit_exp_decay(x, y[None], b_max=10.0))
    return {"a": a, "b": b, "c": c, "rmse": rmse, "window": list(run), **describe_fit(x, y, a, b, c)}


def curve_ratio(y: Sequence[float], num: int, den: int, rel_tol: float = 1e-3) -> tuple[float | None, str]:
    """``y[num] / y[den]`` and a note; ``None`` (and the reason) when |y[den]| < rel_tol · max|y|."""
    y = np.asarray(y, float)
    scale = float(np.abs(y).max()) if y.size else 0.0
    if scale == 0 or abs(y[den]) < rel_tol * scale:
        share = 0.0 if scale == 0 else abs(y[den]) / scale
        return None, (f"not computed: the reference entry {den} is ≈ 0 ({share:.1e} of the curve's max), "
                      "a ratio to it would be meaningless")
    return float(y[num] / y[den]), ""


def _fit_over(x: np.ndarray, y: np.ndarray, on: str) -> dict:
    a, b, c, rmse = (float(v[0]) for v in fit_exp_decay(x, y[None]))
    return {"a": a, "b": b, "c": c, "rmse": rmse, "on": on, **describe_fit(x, y, a, b, c)}


def temporal_erf(
    model: nn.Module,
    inputs="noise",
    layer: str | None = None,
    *,
    output: str = "spikes",
    protocol: str = "matrix",
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
    """The temporal ERF of one layer under one of :data:`PROTOCOLS` (see the module docstring).

    Args:
        model: any ``nn.Module`` taking ``[T, B, C, H, W]``.
        inputs: as :func:`~spikescope.erf.spatial.spatial_erf`; ``"noise-iid:T"`` draws new noise per timestep.
        layer: one forward_features key or module name (a neuron module for ``output="membrane"``).
        output: ``"spikes"`` (the layer's output) or ``"membrane"`` (its membrane potential).
        protocol: ``"matrix"``, ``"last-row"`` or ``"all-pixel"``.
        offset: (dy, dx) from the exact centre of the layer's map (centre-stimulus protocols).

    Returns:
        :class:`ERFResult` with ``matrix`` (``[T, T]``; ``[1, T]``, the row t = T−1, for ``"last-row"`` and
        ``"all-pixel"``), ``matrix_samples`` (``[N, T, T]`` / ``[N, 1, T]``), ``maps``, ``curve``, ``fit`` and
        metrics (fit parameters and curve values with bootstrap intervals).
    """
    if output not in ("spikes", "membrane"):
        raise ValueError(f"output must be 'spikes' or 'membrane', got {output!r}")
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol must be one of {list(PROTOCOLS)}, got {protocol!r}")
    if layer is None or not isinstance(layer, str):
        raise LayerError("temporal_erf takes exactly one layer name (a string)")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    replace = None
    all_pixel = protocol == "all-pixel"
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
        rows = list(range(T)) if protocol == "matrix" else [T - 1]
        mats = np.zeros((N, len(rows), T))
        e_norm = np.zeros((N, T))
        delay_sum, last_sum, input_sum = None, None, None
        start = time.perf_counter()
        from tqdm.auto import tqdm

        with tqdm(total=N, desc=f"temporal ERF ({protocol})", unit="img", disable=not progress) as bar:
            for lo in range(0, N, batch_size):
                idx = list(range(lo, min(lo + batch_size, N)))
                leaf = make_leaf(source.batch(idx), T, model)
                with torch.enable_grad():
                    y = forward_layers(model, leaf, probe.refs, "sequence", T, replace, probe.layouts)[name]
                    for r, t in enumerate(rows):
                        stim = torch.zeros_like(y)
                        if all_pixel:
                            stim[t] = 1.0
                        else:
                            stim[t, :, :, centre[0], centre[1]] = 1.0
                        g = None
                        if y.requires_grad:
                            (g,) = torch.autograd.grad(y, leaf, stim, retain_graph=r < len(rows) - 1,
                                                       allow_unused=True)
                        if g is None:
                            g = torch.zeros_like(leaf)
                        check_finite_gradient(g, name)
                        a = g.detach().abs()  # [T_in, B, C, H, W]
                        mats[idx, r, :] = a.sum((2, 3, 4)).double().T.cpu().numpy()
                        if all_pixel:
                            G = a.sum(2).double().transpose(0, 1).cpu().numpy()  # [B, T_in, H, W]
                            peak = G.reshape(len(idx), -1).max(1)
                            safe = np.where(peak > 0, peak, 1.0)
                            e_norm[idx] = G.sum((2, 3)) / safe[:, None]
                            input_sum = G.sum(0) if input_sum is None else input_sum + G.sum(0)
                            continue
                        per_in = a.mean(2).double().sum(1).cpu().numpy()  # [T_in, H, W], summed over the batch
                        if delay_sum is None:
                            delay_sum = np.zeros((T,) + per_in.shape[1:])
                            last_sum = np.zeros((T,) + per_in.shape[1:])
                        for tp in range(t + 1):
                            delay_sum[t - tp] += per_in[tp]
                        if t == T - 1:
                            last_sum += per_in[::-1]
                bar.update(len(idx))
        elapsed = time.perf_counter() - start
    if all_pixel:
        maps = {f"input{tp}": input_sum[tp] / N for tp in range(T)}
    else:
        counts = np.arange(T, 0, -1)  # delay tau occurs for T - tau output timesteps
        maps = {} if protocol != "matrix" else {f"delay{tau}": delay_sum[tau] / (N * counts[tau]) for tau in range(T)}
        maps.update({f"last_delay{tau}": last_sum[tau] / N for tau in range(T)})
    matrix = mats.mean(0)
    curve, fit = _protocol_curve(protocol, mats, e_norm)
    metrics = {name: _temporal_metrics(protocol, mats, e_norm, n_boot, seed, curve, fit)}
    meta = {
        "label": label or type(model).__name__,
        "model": type(model).__name__,
        "layer": name,
        "layer_shape": list(probe.shapes[name]),
        "output": output,
        "protocol": protocol,
        "quantity": PROTOCOLS[protocol][0],
        "authors_function": PROTOCOLS[protocol][1],
        "matrix_rows": rows,
        "centre": None if all_pixel else list(centre),
        "offset": list(offset),
        "inputs": source.description,
        "input_shape": list(source.sample(0).shape),
        "N": N,
        "seed": seed,
        "timesteps": T,
        "n_boot": n_boot,
        "upper_triangle_max": float(np.triu(matrix, 1).max()) if T > 1 and not all_pixel else 0.0,
        "method": "batched",
        "batch_size": batch_size,
        "seconds": elapsed,
        **(extra_meta or {}),
    }
    return ERFResult("temporal", maps, metrics, meta, matrix=matrix, matrix_samples=mats, fit=_clean(fit),
                     curve=_clean(curve))


def _protocol_curve(protocol: str, mats: np.ndarray, e_norm: np.ndarray) -> tuple[dict, dict]:
    """The headline curve ``{"protocol", "x", "x_name", "y", "std", "quantity"}`` and its fit."""
    quantity = PROTOCOLS[protocol][0]
    if protocol == "all-pixel":
        y = e_norm.mean(0)
        x = np.arange(y.size)
        curve = {"protocol": protocol, "x": x, "x_name": "input timestep t'", "y": y, "std": e_norm.std(0),
                 "quantity": quantity}
        fit = {**authors_fit(y), "on": "a·b^(t'−t0) + c on the longest strictly increasing run of the mean curve"}
        return curve, fit
    read = terf_curve if protocol == "matrix" else _row_curve
    y = read(mats.mean(0))
    x = np.arange(y.size)
    per_sample = read(mats)
    curve = {"protocol": protocol, "x": x, "x_name": "delay τ = t − t'", "y": y, "std": per_sample.std(0),
             "quantity": quantity}
    return curve, _fit_over(x.astype(float), y, f"a·b^τ + c over τ = 0..{y.size - 1}")


def _temporal_metrics(protocol: str, mats: np.ndarray, e_norm: np.ndarray, n_boot: int, seed: int, curve: dict,
                      fit: dict) -> dict:
    """Fit parameters, curve values (``terf@k``) and the silent fraction, with 95% bootstrap intervals over samples
    (:func:`~spikescope.erf.metrics.boot_interval`)."""
    N = mats.shape[0]
    y = np.asarray(curve["y"], float)
    silent = ~(mats.reshape(N, -1) > 0).any(1)
    point = {"fit_a": fit["a"], "fit_b": fit["b"], "fit_c": fit["c"], "fit_rmse": fit["rmse"],
             "silent_fraction": float(silent.mean())}
    point.update({f"terf@{k}": float(v) for k, v in enumerate(y)})
    if n_boot <= 0 or N < 2:
        return _clean({k: {"value": v, "ci95": None, "bias": None} for k, v in point.items()})
    rng = np.random.default_rng(seed)
    counts = rng.multinomial(N, np.full(N, 1.0 / N), size=n_boot) / N  # [B, N]
    if protocol == "all-pixel":
        boot_curves = counts @ e_norm
        boot_fit = [authors_fit(c) for c in boot_curves]
        a, b, c, rmse = (np.array([f[k] for f in boot_fit], float) for k in ("a", "b", "c", "rmse"))
    else:
        M = np.einsum("bn,nij->bij", counts, mats)
        boot_curves = terf_curve(M) if protocol == "matrix" else _row_curve(M)
        a, b, c, rmse = fit_exp_decay(np.arange(boot_curves.shape[1]), boot_curves)
    boot = {"fit_a": a, "fit_b": b, "fit_c": c, "fit_rmse": rmse, "silent_fraction": counts @ silent}
    boot.update({f"terf@{k}": boot_curves[:, k] for k in range(boot_curves.shape[1])})
    return _clean({k: boot_interval(float(point[k]), np.asarray(boot[k], float), n_boot // 2) for k in point})

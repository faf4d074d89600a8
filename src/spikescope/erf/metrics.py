"""Scalar ERF metrics, each vectorised over a stack of maps so bootstrap resamples cost one call.

* ``area_ratio`` / ``side`` at p in {0.2, 0.3, 0.5, 0.99} (RepLKNet, docs/papers.md#erf-metrics): the smallest centred square
  of side 2i+1 (i >= 1, clipped at the border) holding more than a fraction p of the map's mass; ratio = side^2/(H*W).
  Computed on the log-scaled map log10(1 + map) (RepLKNet) and on the raw map. NaN when p is never reached.
* ``area90``: the smallest share of pixels that holds 90% of the mass (pixels taken from the largest down).
* ``sigma_row`` / ``sigma_col``: sigma of a least-squares Gaussian A*exp(-(x-mu)^2/(2 sigma^2)) fitted to the centre
  row / column (Luo et al. 2016; docs/papers.md#erf-metrics).
* ``silent_fraction``: the share of samples whose map is exactly zero (no gradient reached the input).

A bootstrap over samples (:func:`bootstrap_metrics`) gives a 95% interval for each: the normal interval
value ± 1.96·sd of the resampled values, centred on the estimate, with the resamples' ``bias`` beside it. A
percentile interval is not used: a metric of the *mean* map is a nonlinear function of N samples, and a resample
(about 63% distinct samples) has a noisier mean map, so the resampled values sit systematically on one side of the
estimate (area90 of a noise floor shrinks) and their percentiles can exclude it. ``bias`` (mean of the resamples
minus the estimate) says how far that shift goes: when |bias| is comparable to the interval's half-width the
metric still moves with N. Area ratios are quantised (odd square sides): a zero-width interval means every
resample chose the same square.
None of these numbers is reported by the ST-ERF paper; they are extensions, not paper numbers.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

__all__ = [
    "P_LEVELS",
    "area_ratios",
    "area90",
    "gaussian_fit",
    "map_metrics",
    "bootstrap_metrics",
    "fit_exp_decay",
    "boot_interval",
    "describe_fit",
    "longest_increasing_run",
]

P_LEVELS = (0.2, 0.3, 0.5, 0.99)


def _as_stack(maps: np.ndarray) -> np.ndarray:
    maps = np.asarray(maps, dtype=np.float64)
    return maps[None] if maps.ndim == 2 else maps


def area_ratios(
    maps: np.ndarray, centre: tuple[int, int], p_levels: Sequence[float] = P_LEVELS, log: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """Sides and area ratios of the smallest centred squares holding > p of the mass.

    Args:
        maps: ``[K, H, W]`` (or ``[H, W]``) non-negative maps.
        centre: (row, col) of the squares' centre.
        log: apply log10(1 + map) first (RepLKNet); its max-normalisation does not change the fractions.
    Returns:
        ``(sides [K, P], ratios [K, P])``, NaN where p is not reached or the map is all zero.
    """
    m = _as_stack(maps)
    if log:
        m = np.log10(1.0 + m)
    K, H, W = m.shape
    cy, cx = centre
    integral = np.zeros((K, H + 1, W + 1))
    integral[:, 1:, 1:] = m.cumsum(1).cumsum(2)
    radii = np.arange(1, max(H, W) // 2)
    r0, r1 = np.clip(cy - radii, 0, H), np.clip(cy + radii + 1, 0, H)
    c0, c1 = np.clip(cx - radii, 0, W), np.clip(cx + radii + 1, 0, W)
    sums = integral[:, r1, c1] - integral[:, r0, c1] - integral[:, r1, c0] + integral[:, r0, c0]  # [K, I]
    total = integral[:, H, W]
    with np.errstate(invalid="ignore", divide="ignore"):
        frac = sums / total[:, None]
    sides = np.full((K, len(p_levels)), np.nan)
    for j, p in enumerate(p_levels):
        above = frac > p
        hit = above.any(1) & (total > 0)
        first = above.argmax(1)
        sides[hit, j] = 2 * radii[first[hit]] + 1
    return sides, sides**2 / (H * W)


def area90(maps: np.ndarray, mass: float = 0.9) -> np.ndarray:
    """``[K]`` share of pixels (largest first) needed to hold ``mass`` of each map's total; NaN for zero maps."""
    m = _as_stack(maps).reshape(_as_stack(maps).shape[0], -1)
    s = -np.sort(-m, axis=1)
    c = s.cumsum(1)
    total = c[:, -1]
    with np.errstate(invalid="ignore", divide="ignore"):
        k = (c >= mass * total[:, None]).argmax(1) + 1
    out = k / m.shape[1]
    out[~(total > 0)] = np.nan
    return out


def _best_gaussian(f: np.ndarray, mu: np.ndarray, sigma: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, ...]:
    """Score every (mu, sigma) candidate (``[K, M]``, ``[K, S]``): returns the best (mu, sigma, A) per profile."""
    g = np.exp(-((x[None, None, None, :] - mu[:, :, None, None]) ** 2) / (2 * sigma[:, None, :, None] ** 2))
    fg = np.einsum("kl,kmsl->kms", f, g)
    gg = (g**2).sum(-1)
    score = np.where(fg > 0, fg**2 / np.maximum(gg, 1e-300), -np.inf)  # SSE = ff - score; keep A > 0
    flat = score.reshape(score.shape[0], -1).argmax(1)
    im, js = np.unravel_index(flat, score.shape[1:])
    k = np.arange(f.shape[0])
    return mu[k, im], sigma[k, js], fg[k, im, js] / gg[k, im, js]


def gaussian_fit(profiles: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Least-squares Gaussian fit of each 1-D profile ``[K, L]``: returns ``(sigma, mu, amplitude)``, each ``[K]``.

    A coarse grid over (mu, log sigma) with the amplitude in closed form, then two finer grids around the best
    point (relative sigma step < 0.1%). Zero profiles give NaN.
    """
    f = np.atleast_2d(np.asarray(profiles, dtype=np.float64))
    K, L = f.shape
    x = np.arange(L, dtype=np.float64)
    total = f.sum(1)
    safe = np.where(total > 0, total, 1.0)
    centroid = (f * x).sum(1) / safe
    mu = centroid[:, None] + np.linspace(-3, 3, 13)[None]
    sig_grid = np.geomspace(0.3, max(L, 2), 80)
    sigma = np.broadcast_to(sig_grid, (K, sig_grid.size))
    best_mu, best_sigma, amp = np.zeros(K), np.zeros(K), np.zeros(K)
    for lo in range(0, K, 16):  # chunks bound the [K, M, S, L] candidate tensor
        sl = slice(lo, lo + 16)
        best_mu[sl], best_sigma[sl], amp[sl] = _best_gaussian(f[sl], mu[sl], sigma[sl], x)
    step_mu, step_log = 0.5, math.log(sig_grid[1] / sig_grid[0])
    for _ in range(3):
        mu = best_mu[:, None] + np.linspace(-step_mu, step_mu, 11)[None]
        sigma = best_sigma[:, None] * np.exp(np.linspace(-step_log, step_log, 21))[None]
        for lo in range(0, K, 16):
            sl = slice(lo, lo + 16)
            best_mu[sl], best_sigma[sl], amp[sl] = _best_gaussian(f[sl], mu[sl], sigma[sl], x)
        step_mu, step_log = step_mu / 5, step_log / 10
    bad = ~(total > 0)
    best_sigma[bad], best_mu[bad], amp[bad] = np.nan, np.nan, np.nan
    return best_sigma, best_mu, amp


def map_metrics(maps: np.ndarray, centre: tuple[int, int], p_levels: Sequence[float] = P_LEVELS) -> dict[str, np.ndarray]:
    """All map metrics of ``[K, H, W]`` maps as ``{name: [K]}`` (names like ``area_ratio_log@0.2``)."""
    m = _as_stack(maps)
    out: dict[str, np.ndarray] = {}
    for log in (True, False):
        sides, ratios = area_ratios(m, centre, p_levels, log=log)
        tag = "log" if log else "raw"
        for j, p in enumerate(p_levels):
            out[f"area_ratio_{tag}@{p:g}"] = ratios[:, j]
            out[f"side_{tag}@{p:g}"] = sides[:, j]
    out["area90"] = area90(m)
    cy, cx = centre
    out["sigma_row"] = gaussian_fit(m[:, cy, :])[0]
    out["sigma_col"] = gaussian_fit(m[:, :, cx])[0]
    out["peak"] = m.reshape(m.shape[0], -1).max(1)
    out["mass"] = m.reshape(m.shape[0], -1).sum(1)
    return out


def _json_float(v: float) -> float | None:
    return None if not np.isfinite(v) else float(v)


def boot_interval(value: float, resamples: np.ndarray, min_finite: int) -> dict:
    """``{"value", "ci95", "bias"}`` of one metric from its bootstrap resamples (see the module docstring).

    ``ci95 = value ± 1.96·sd(resamples)`` (always contains ``value``); ``None`` when the estimate is not finite or
    fewer than ``min_finite`` resamples are.
    """
    out = {"value": _json_float(value), "ci95": None, "bias": None}
    finite = resamples[np.isfinite(resamples)]
    if out["value"] is None or finite.size < max(2, min_finite):
        return out
    half = 1.96 * float(finite.std(ddof=1))
    out["ci95"] = [value - half, value + half]
    out["bias"] = float(finite.mean() - value)
    return out


def bootstrap_metrics(
    samples: np.ndarray,
    centre: tuple[int, int],
    n_boot: int = 200,
    seed: int = 0,
    p_levels: Sequence[float] = P_LEVELS,
) -> dict[str, dict]:
    """Metrics of the mean map of per-sample maps ``[N, H, W]`` with 95% bootstrap intervals over samples.

    Returns ``{name: {"value": v, "ci95": [lo, hi], "bias": b}}`` (:func:`boot_interval`); NaN values are written
    as ``None``. ``silent_fraction`` is the share of all-zero sample maps. With ``n_boot = 0`` (or N = 1) the
    intervals are ``None``.
    """
    s = np.asarray(samples, dtype=np.float64)
    N = s.shape[0]
    point = map_metrics(s.mean(0), centre, p_levels)
    silent = ~(s.reshape(N, -1) != 0).any(1)
    point["silent_fraction"] = np.array([silent.mean()])
    if n_boot <= 0 or N < 2:
        return {k: {"value": _json_float(v[0]), "ci95": None, "bias": None} for k, v in point.items()}
    rng = np.random.default_rng(seed)
    counts = rng.multinomial(N, np.full(N, 1.0 / N), size=n_boot).astype(np.float64)  # [B, N]
    boot_maps = (counts @ s.reshape(N, -1) / N).reshape(n_boot, *s.shape[1:])
    boot = map_metrics(boot_maps, centre, p_levels)
    boot["silent_fraction"] = counts @ silent / N
    return {k: boot_interval(float(point[k][0]), boot[k], n_boot // 2) for k in point}


def fit_exp_decay(
    tau: np.ndarray, y: np.ndarray, b_max: float = 1.5
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Least-squares fit of ``y = a * b**tau + c`` for each curve of ``y [K, n]`` (scipy-free).

    For each b on a grid over (0, b_max] the pair (a, c) is a closed-form linear least-squares solution; the best b
    is refined on two finer grids. Returns ``(a, b, c, rmse)``, each ``[K]``; NaN when n < 3.
    """
    y = np.atleast_2d(np.asarray(y, dtype=np.float64))
    t = np.asarray(tau, dtype=np.float64)
    K, n = y.shape
    if n < 3:
        nan = np.full(K, np.nan)
        return nan, nan.copy(), nan.copy(), nan.copy()

    def solve(b: np.ndarray):  # b [K, G] -> a, c, sse each [K, G]
        u = b[..., None] ** t  # [K, G, n]
        su, suu = u.sum(-1), (u * u).sum(-1)
        sy, suy = y.sum(-1)[:, None], np.einsum("kgn,kn->kg", u, y)
        det = suu * n - su * su
        ok = np.abs(det) > 1e-12 * np.maximum(suu * n, 1e-300)
        det = np.where(ok, det, 1.0)
        a = (suy * n - su * sy) / det
        c = (suu * sy - su * suy) / det
        resid = a[..., None] * u + c[..., None] - y[:, None, :]
        sse = np.where(ok, (resid**2).sum(-1), np.inf)
        return a, c, sse

    b = np.broadcast_to(np.linspace(1e-3, b_max, 300), (K, 300))
    step = b_max / 300
    for _ in range(3):
        a, c, sse = solve(b)
        j = sse.argmin(1)
        k = np.arange(K)
        best_b, best_a, best_c, best_sse = b[k, j], a[k, j], c[k, j], sse[k, j]
        b = np.clip(best_b[:, None] + np.linspace(-step, step, 41)[None], 1e-6, None)
        step /= 20
    return best_a, best_b, best_c, np.sqrt(best_sse / n)


def describe_fit(x: np.ndarray, y: np.ndarray, a: float, b: float, c: float, r2_min: float = 0.9) -> dict:
    """What a fit ``y ≈ a·b^x + c`` says: ``{"r2", "shape", "note"}``.

    ``shape`` is ``"decay"`` (a > 0, 0 < b < 1: falls geometrically towards c as x grows), ``"growth"``
    (a > 0, b > 1), ``"falling-growth"`` / ``"rising-decay"`` (a < 0: the curve moves the other way), ``"flat"``
    (b within 1e-3 of 1 or a = 0) or ``"no-fit"`` (R² < ``r2_min``, or the fit is undefined). ``note`` is one
    sentence for a report.
    """
    x, y = np.asarray(x, float), np.asarray(y, float)
    if not all(np.isfinite(v) for v in (a, b, c)) or y.size < 3:
        return {"r2": None, "shape": "no-fit", "note": "no fit (fewer than 3 points, or the fit is undefined)"}
    sst = float(((y - y.mean()) ** 2).sum())
    sse = float(((a * b**x + c - y) ** 2).sum())
    r2 = 1.0 - sse / sst if sst > 0 else (1.0 if sse == 0 else 0.0)
    if r2 < r2_min:
        return {"r2": r2, "shape": "no-fit",
                "note": f"a·b^x + c does not fit this curve (R² = {r2:.2f} < {r2_min}): read the points, not b"}
    if abs(b - 1) < 1e-3 or a == 0:
        shape = "flat"
    elif a > 0:
        shape = "decay" if b < 1 else "growth"
    else:
        shape = "rising-decay" if b < 1 else "falling-growth"
    notes = {
        "decay": f"a geometric decay: each step of x multiplies the excess over c by b = {b:.3g}",
        "growth": f"a geometric growth: each step of x multiplies the excess over c by b = {b:.3g}",
        "rising-decay": f"not a decay: a < 0, so the curve rises towards c (b = {b:.3g} is the rate it saturates)",
        "falling-growth": f"not a decay in x: a < 0 and b = {b:.3g} > 1, the curve falls ever faster",
        "flat": "flat: b ≈ 1 or a ≈ 0, no geometric trend",
    }
    note = notes[shape] + (" (3 points for 3 parameters: an exact fit, not evidence of the shape)"
                           if y.size == 3 else "")
    return {"r2": r2, "shape": shape, "note": note}


def longest_increasing_run(y: np.ndarray) -> tuple[int, int] | None:
    """``(start, stop)`` (stop exclusive) of the first longest run where ``y`` strictly increases, ``None`` when the
    longest run has fewer than 3 points (the authors' fit window in ``temporal_erf_compute.py``)."""
    y = np.asarray(y, float)
    best, start = (0, 0), None
    for i, up in enumerate(np.diff(y) > 0):
        if up and start is None:
            start = i
        if not up and start is not None:
            if i - start > best[1] - best[0]:
                best = (start, i)
            start = None
    if start is not None and len(y) - 1 - start > best[1] - best[0]:
        best = (start, len(y) - 1)
    return (best[0], best[1] + 1) if best[1] - best[0] >= 2 else None

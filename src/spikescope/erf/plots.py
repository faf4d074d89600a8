"""Figures (PNG and PDF): layer grids, per-timestep rows, the T x T matrix with its fitted decay.

Colour scale: every panel of one layer (a column of :func:`plot_layers`, across all compared models) is divided
by the largest value any of them reaches, so the same colour means the same gradient magnitude for every model.
``scale="log"`` then shows log10(1 + 999 d) / 3 (three decades below the shared maximum), ``"linear"`` shows d.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

__all__ = ["plot_layers", "plot_timesteps", "plot_temporal", "display"]


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def display(m: np.ndarray, vmax: float, scale: str = "log") -> np.ndarray:
    """Map values to [0, 1] against a shared ``vmax`` (see the module docstring)."""
    d = np.clip(m / vmax, 0, 1) if vmax > 0 else np.zeros_like(m)
    if scale == "log":
        return np.log10(1 + 999 * d) / 3
    if scale == "linear":
        return d
    raise ValueError(f"scale must be 'log' or 'linear', got {scale!r}")


def _save(fig, stem: Path) -> list[Path]:
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    paths = [stem.with_suffix(".png"), stem.with_suffix(".pdf")]
    fig.savefig(paths[0], dpi=120, bbox_inches="tight")
    fig.savefig(paths[1], bbox_inches="tight")
    _plt().close(fig)
    return paths


def _metric(result, layer: str, key: str) -> float | None:
    entry = result.metrics.get(layer, {}).get(key)
    return None if entry is None else entry.get("value")


def plot_layers(
    results: dict, stem: str | Path, scale: str = "log", layers: list[str] | dict[str, list[str]] | None = None
) -> list[Path]:
    """One row per result (model), one column per layer; shared colour scale per column across the rows.

    ``layers`` is one list for every row, or a dict ``{label: [layer, ...]}`` of equally long lists when the models
    name their layers differently (the paper's comparison): column j then shows each row's j-th layer.
    """
    plt = _plt()
    labels = list(results)
    if layers is None:
        layers = []
        for r in results.values():
            layers += [k for k in r.maps if k not in layers]
    rows = layers if isinstance(layers, dict) else {label: layers for label in labels}
    nc = max(len(v) for v in rows.values())
    titles = list(layers) if not isinstance(layers, dict) else [f"hook {j + 1}" for j in range(nc)]
    vmax = [max((float(results[lb].maps[rows[lb][j]].max()) for lb in labels
                 if j < len(rows[lb]) and rows[lb][j] in results[lb].maps), default=0.0) for j in range(nc)]
    nr = len(labels)
    fig, axes = plt.subplots(nr, nc, figsize=(2.1 * nc + 0.8, 2.3 * nr + 0.4), squeeze=False)
    for i, label in enumerate(labels):
        r = results[label]
        for j in range(nc):
            ax = axes[i, j]
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(titles[j], fontsize=9)
            if j == 0:
                ax.set_ylabel(label, fontsize=9)
            layer = rows[label][j] if j < len(rows[label]) else None
            if layer not in r.maps:
                ax.set_facecolor("0.85")
                continue
            im = ax.imshow(display(r.maps[layer], vmax[j], scale), cmap="magma", vmin=0, vmax=1)
            a50, sig = _metric(r, layer, "area_ratio_log@0.5"), _metric(r, layer, "sigma_row")
            text = " ".join(s for s in (f"r50={a50:.3f}" if a50 is not None else "",
                                        f"σ={sig:.1f}" if sig is not None else "") if s)
            ax.text(0.02, 0.02, text, color="w", fontsize=7, transform=ax.transAxes, va="bottom")
    fig.colorbar(im, ax=axes, shrink=0.6, label=f"ERF / layer max ({scale})")
    return _save(fig, Path(stem))


def plot_timesteps(result, stem: str | Path, scale: str = "log") -> list[Path]:
    """One row per layer, one column per input timestep t'; shared colour scale along each row."""
    plt = _plt()
    layers = list(result.per_timestep)
    T = max(v.shape[0] for v in result.per_timestep.values())
    fig, axes = plt.subplots(len(layers), T, figsize=(1.9 * T + 0.8, 2.0 * len(layers) + 0.4), squeeze=False)
    for i, layer in enumerate(layers):
        maps = result.per_timestep[layer]
        vmax = float(maps.max())
        for j in range(T):
            ax = axes[i, j]
            ax.set_xticks([])
            ax.set_yticks([])
            if j < maps.shape[0]:
                im = ax.imshow(display(maps[j], vmax, scale), cmap="magma", vmin=0, vmax=1)
            if i == 0:
                ax.set_title(f"input t'={j}", fontsize=9)
            if j == 0:
                ax.set_ylabel(layer, fontsize=9)
    fig.colorbar(im, ax=axes, shrink=0.6, label=f"ERF / row max ({scale})")
    return _save(fig, Path(stem))


def plot_temporal(results, stem: str | Path) -> list[Path]:
    """For each result: the T x T matrix (upper triangle masked) and T-ERF(tau) with the fit a*b^tau + c."""
    plt = _plt()
    if not isinstance(results, dict):
        results = {results.meta.get("label", "model"): results}
    n = len(results)
    fig, axes = plt.subplots(n, 2, figsize=(8, 3.4 * n), squeeze=False)
    for i, (label, r) in enumerate(results.items()):
        M = r.matrix
        T = M.shape[0]
        shown = np.ma.masked_where(np.triu(np.ones_like(M, dtype=bool), 1), M / max(M.max(), 1e-300))
        im = axes[i, 0].imshow(shown, cmap="viridis", vmin=0, vmax=1)
        axes[i, 0].set_xticks(range(T))
        axes[i, 0].set_yticks(range(T))
        axes[i, 0].set_xlabel("input timestep t'")
        axes[i, 0].set_ylabel("output timestep t")
        axes[i, 0].set_title(f"{label}: M[t, t'] / max", fontsize=9)
        fig.colorbar(im, ax=axes[i, 0], shrink=0.8)
        from .temporal import terf_curve

        tau = np.arange(T)
        curve = terf_curve(M)
        ax = axes[i, 1]
        ax.plot(tau, curve, "o", label="mean_t M[t, t-τ]")
        f = r.fit or {}
        if f.get("b") is not None:
            tt = np.linspace(0, T - 1, 200)
            ax.plot(tt, f["a"] * f["b"] ** tt + f["c"], "-",
                    label=f"{f['a']:.3g}·{f['b']:.3f}^τ + {f['c']:.3g}")
        ax.set_xlabel("delay τ = t - t'")
        ax.set_ylabel("T-ERF")
        ax.set_title(f"{label}: {r.meta.get('layer', '')} ({r.meta.get('output', '')})", fontsize=9)
        ax.legend(fontsize=8)
    fig.tight_layout()
    return _save(fig, Path(stem))

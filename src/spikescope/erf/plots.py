"""Figures (PNG and PDF): layer grids, per-timestep rows, the temporal curves, per-block maps with an FFT panel.

Colour scale: every panel of one layer (a column of :func:`plot_layers`, across all compared models) is divided
by the largest value any of them reaches, so the same colour means the same gradient magnitude for every model.
``scale="log"`` then shows log10(1 + 999 d) / 3 (three decades below the shared maximum), ``"linear"`` shows d.
Colour bars are labelled with the real fraction d of the maximum (1, 0.1, 0.01, 0.001 on the log display), not
with display units.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

__all__ = ["plot_layers", "plot_timesteps", "plot_temporal", "plot_block_maps", "plot_delay_maps", "display", "fft_magnitude",
           "colorbar_fraction"]

#: the in-figure abbreviations of :func:`plot_layers`, printed under the grid
LEGEND = ("r50: area ratio (side² / H·W) of the smallest centred square holding 50% of log10(1 + ERF); "
          "σ: std (pixels) of a Gaussian fitted to the centre row")


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


def colorbar_fraction(fig, im, ax, scale: str, what: str, **kw):
    """A colour bar whose ticks read the real fraction of the maximum (log display: 0.001 ... 1)."""
    cb = fig.colorbar(im, ax=ax, **kw)
    if scale == "log":
        fracs = [0.001, 0.01, 0.1, 0.5, 1.0]
        cb.set_ticks([float(display(np.array(f), 1.0, "log")) for f in fracs])
        cb.set_ticklabels([f"{f:g}" for f in fracs])
        cb.set_label(f"{what} (fraction of the max, log scale)")
    else:
        cb.set_label(f"{what} (fraction of the max)")
    return cb


def fft_magnitude(m: np.ndarray) -> np.ndarray:
    """``[H, W]`` map -> ``[H, W]`` centred magnitude |FFT2| (zero frequency at ``(H//2, W//2)``)."""
    return np.abs(np.fft.fftshift(np.fft.fft2(np.asarray(m, dtype=np.float64))))


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
    results: dict, stem: str | Path, scale: str = "log", layers: list[str] | dict[str, list[str]] | None = None,
    share: str = "column",
) -> list[Path]:
    """One row per result (model), one column per layer; shared colour scale per column across the rows
    (``share="panel"``: every panel on its own max, as the authors' per-map display).

    ``layers`` is one list for every row, or a dict ``{label: [layer, ...]}`` of equally long lists when the models
    name their layers differently (the paper's comparison): column j then shows each row's j-th layer.
    """
    plt = _plt()
    if share not in ("column", "panel"):
        raise ValueError(f"share must be 'column' or 'panel', got {share!r}")
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
            top = vmax[j] if share == "column" else float(r.maps[layer].max())
            im = ax.imshow(display(r.maps[layer], top, scale), cmap="magma", vmin=0, vmax=1)
            a50, sig = _metric(r, layer, "area_ratio_log@0.5"), _metric(r, layer, "sigma_row")
            text = " ".join(s for s in (f"r50={a50:.3f}" if a50 is not None else "",
                                        f"σ={sig:.1f}" if sig is not None else "") if s)
            ax.text(0.02, 0.02, text, color="w", fontsize=7, transform=ax.transAxes, va="bottom")
    colorbar_fraction(fig, im, axes, scale, "ERF / column max" if share == "column" else "ERF / panel max",
                      shrink=0.6)
    fig.text(0.01, 0.0, LEGEND, fontsize=7, va="top", wrap=True)
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
    colorbar_fraction(fig, im, axes, scale, "ERF / row max", shrink=0.6)
    return _save(fig, Path(stem))


def plot_temporal(results, stem: str | Path) -> list[Path]:
    """For each result: its matrix (upper triangle masked) and the protocol's curve (± std) with its fit."""
    plt = _plt()
    if not isinstance(results, dict):
        results = {results.meta.get("label", "model"): results}
    n = len(results)
    fig, axes = plt.subplots(n, 2, figsize=(8.5, 3.4 * n), squeeze=False)
    for i, (label, r) in enumerate(results.items()):
        M = r.matrix
        rows = r.meta.get("matrix_rows", list(range(M.shape[0])))
        T = M.shape[1]
        mask = np.zeros_like(M, dtype=bool)
        for k, t in enumerate(rows):
            mask[k, t + 1:] = True
        shown = np.ma.masked_where(mask, M / max(M.max(), 1e-300))
        im = axes[i, 0].imshow(shown, cmap="viridis", vmin=0, vmax=1, aspect="auto")
        axes[i, 0].set_xticks(range(T))
        axes[i, 0].set_yticks(range(len(rows)), [str(t) for t in rows])
        axes[i, 0].set_xlabel("input timestep t'")
        axes[i, 0].set_ylabel("output timestep t")
        axes[i, 0].set_title(f"{label}: M[t, t'] / max", fontsize=9)
        colorbar_fraction(fig, im, axes[i, 0], "linear", "M", shrink=0.8)
        c = r.curve or {}
        ax = axes[i, 1]
        x, y = np.asarray(c.get("x", []), float), np.asarray(c.get("y", []), float)
        ax.plot(x, y, "o", label=f"{c.get('protocol', '')} curve")
        if c.get("std") is not None and y.size:
            std = np.asarray(c["std"], float)
            ax.fill_between(x, y - std, y + std, alpha=0.2, label="± std over samples")
        f = r.fit or {}
        if f.get("b") is not None and f.get("shape") != "no-fit":
            x0 = f["window"][0] if f.get("window") else 0
            x1 = f["window"][1] - 1 if f.get("window") else (x[-1] if x.size else 0)
            tt = np.linspace(x0, x1, 200)
            ax.plot(tt, f["a"] * f["b"] ** (tt - x0) + f["c"], "-",
                    label=f"{f['a']:.3g}·{f['b']:.3f}^x + {f['c']:.3g} ({f['shape']}, R²={f['r2']:.2f})")
        elif f:
            ax.text(0.02, 0.02, "no fit: " + f.get("note", ""), transform=ax.transAxes, fontsize=7, wrap=True)
        ax.set_xlabel(c.get("x_name", ""))
        ax.set_ylabel("T-ERF")
        ax.set_title(f"{label}: {r.meta.get('layer', '')} ({r.meta.get('output', '')})", fontsize=9)
        ax.legend(fontsize=7)
    fig.tight_layout()
    return _save(fig, Path(stem))


def plot_block_maps(result, stem: str | Path, layers: list[str] | None = None, scale: str = "log",
                    fft: bool = True) -> list[Path]:
    """One panel per layer (each on its own max), their average map and, with ``fft``, the centred FFT magnitude
    of the average (log10(1 + |F|), the authors' ReLU-ViT figure). Layers must share one map size."""
    plt = _plt()
    layers = list(result.maps) if layers is None else list(layers)
    maps = [np.asarray(result.maps[k], float) for k in layers]
    shapes = {m.shape for m in maps}
    if len(shapes) != 1:
        raise ValueError(f"plot_block_maps needs maps of one size to average; got {sorted(shapes)} for {layers}")
    avg = np.mean([m / m.max() if m.max() > 0 else m for m in maps], axis=0)
    panels = [(k, m) for k, m in zip(layers, maps)] + [("average (max-normalised)", avg)]
    n = len(panels) + int(fft)
    nc = min(n, 6)
    nr = -(-n // nc)
    fig, axes = plt.subplots(nr, nc, figsize=(2.1 * nc + 0.8, 2.3 * nr + 0.4), squeeze=False)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_axis_off()
    for ax, (title, m) in zip(axes.flat, panels):
        ax.set_axis_on()
        im = ax.imshow(display(m, float(m.max()), scale), cmap="magma", vmin=0, vmax=1)
        ax.set_title(title, fontsize=7)
    colorbar_fraction(fig, im, axes[:, :].ravel().tolist(), scale, "ERF / panel max", shrink=0.6)
    if fft:
        ax = axes.flat[len(panels)]
        ax.set_axis_on()
        ax.imshow(np.log10(1 + fft_magnitude(avg)), cmap="viridis")
        ax.set_title("log10(1+|FFT(avg)|)", fontsize=7)
    return _save(fig, Path(stem))


def plot_delay_maps(results: dict, stem: str | Path, keys: list[str], scale: str = "linear") -> list[Path]:
    """One row per temporal result, one column per map key (``last_delay{n}``); each row divided by its own max
    over those maps (the authors' ``st_erf_compute.py`` normalisation)."""
    plt = _plt()
    nr, nc = len(results), len(keys)
    fig, axes = plt.subplots(nr, nc, figsize=(1.9 * nc + 1.6, 1.9 * nr + 0.4), squeeze=False)
    im = None
    for i, (label, r) in enumerate(results.items()):
        vmax = max(float(r.maps[k].max()) for k in keys)
        for j, k in enumerate(keys):
            ax = axes[i, j]
            ax.set_xticks([])
            ax.set_yticks([])
            im = ax.imshow(display(r.maps[k], vmax, scale), cmap="gray", vmin=0, vmax=1)
            if i == 0:
                ax.set_title(k.replace("last_delay", "delay n = "), fontsize=8)
            if j == 0:
                ax.set_ylabel(label, fontsize=7)
    colorbar_fraction(fig, im, axes, scale, "ERF / row max", shrink=0.6)
    return _save(fig, Path(stem))

"""``spikescope erf reproduce``: every ERF figure of the ST-ERF paper in one run, with a report.

Panels (each one writes its figure, its arrays under ``DIR/<panel>/`` and a section of ``DIR/report.md``):

* ``spatial``   the transformer SNNs of the paper's comparison at the layers the authors hooked, with per-block
                maps, their average and the FFT magnitude of the average (one figure per model);
* ``ann``       the ANN controls (timm), when this build provides them (``runner.ANN_CONTROLS``), else skipped
                with the reason;
* ``mixers``    SDT-v3-S with the conv / MLPixer / SRB mixers at every stage output;
* ``temporal``  5 × [3x3 conv → LIF] nets, τ_m ∈ {2, 4, 6, 8}, the all-pixel protocol of
                ``erf_compute/temporal_erf_compute.py`` with its fit, and ``compute_temporal_erf_2`` on the same nets;
* ``scnn``      the toy CNN of ``erf_scnn/erf_compute.py``: depth × activation grid, uniform and random init;
* ``izhikevich`` one Izhikevich neuron (``erf_compute/izhikevich.py``), |∂s[T−1]/∂I[t']| with the authors' fit;
* ``dynamic``   the 40-layer net with the temporal-gradient LIF, per-delay maps at t = T−1 (``st_erf_compute.py``).

Trained weights are found by file name in ``weights_dir`` (the names of the authors' released files); otherwise
a model keeps random weights with BN calibrated on noise, and each panel says which.
"""
from __future__ import annotations

import fnmatch
import importlib
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from ..models import model_info
from . import plots, runner
from .spatial import spatial_erf
from .temporal import PROTOCOLS, authors_fit, temporal_erf

__all__ = ["PANELS", "reproduce", "find_checkpoint"]

PANELS = ("spatial", "ann", "mixers", "temporal", "scnn", "izhikevich", "dynamic")

#: file-name patterns of the authors' released checkpoints, beyond a model family's ``ERF_PROTOCOL["checkpoint"]``
CHECKPOINT_NAMES = {
    "sdt_v3_s:mixer=conv": ("V3_5.1M_1x4*",),
    "sdt_v3_s:mixer=srb": ("*splash*checkpoint-199*", "sdtv3_s_splash*"),
    "sdt_v3_s:mixer=mlpixer": ("*mlpixer*",),
}
SDT_V3_OFFSET = (0, 5)  # the authors' compute_erf_sdt puts the "centre" 5 columns right of it


def _safe(label: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in label).strip("_")


def _protocol_of(name: str) -> dict:
    module = importlib.import_module(model_info(name).builder.__module__)
    return dict(getattr(module, "ERF_PROTOCOL", {}) or {})


def find_checkpoint(weights_dir: str | Path | None, spec_text: str) -> Path | None:
    """The first file under ``weights_dir`` (recursive) whose name or path matches one of the model's released
    checkpoint names (``ERF_PROTOCOL["checkpoint"]*`` of its family, :data:`CHECKPOINT_NAMES`, or
    ``<label>.pth*``); ``None`` when there is none."""
    if not weights_dir:
        return None
    root = Path(weights_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"--weights {str(root)!r} is not a folder; pass the folder holding the checkpoints")
    spec = runner.parse_model_spec(spec_text)
    patterns = list(CHECKPOINT_NAMES.get(spec_text, ()))
    released = _protocol_of(spec.name).get("checkpoint")
    if released and not patterns:
        patterns.append(f"{released}*")
    patterns.append(f"{_safe(spec.label)}.pth*")
    files = sorted(p for p in root.rglob("*") if p.is_file())
    for pat in patterns:
        for f in files:
            rel = f.relative_to(root).as_posix()
            if fnmatch.fnmatch(f.name, pat) or fnmatch.fnmatch(rel, pat) or fnmatch.fnmatch(rel, f"*/{pat}"):
                return f
    return None


def _fmt(entry: dict | None, digits: int = 3) -> str:
    if not entry or entry.get("value") is None:
        return "nan"
    v, ci = entry["value"], entry.get("ci95")
    return f"{v:.{digits}g}" + (f" [{ci[0]:.{digits}g}, {ci[1]:.{digits}g}]" if ci else "")


class _Run:
    """Shared settings and the report being written."""

    def __init__(self, out: Path, weights_dir, n: int, size: int, seed: int, progress: bool) -> None:
        self.out, self.weights_dir, self.n, self.size, self.seed = out, weights_dir, n, size, seed
        self.progress = progress
        self.boot = 50 if n >= 4 else 0
        self.lines: list[str] = []
        self.weights: dict[str, str] = {}

    def build(self, spec_text: str, size: Sequence[int] | None = None):
        spec = runner.parse_model_spec(spec_text)
        ckpt = find_checkpoint(self.weights_dir, spec_text)
        if ckpt is not None:
            spec = runner.ModelSpec(spec.name, spec.overrides, str(ckpt))
        model, size_, T, weights = runner.build_model(spec, input_size=size, seed=self.seed, calib_batches=2,
                                                      calib_batch_size=4)
        self.weights[spec_text] = weights
        return spec, model, size_, T, weights

    def say(self, *lines: str) -> None:
        self.lines += list(lines)

    def log(self, text: str) -> None:
        if self.progress:
            print(f"[erf reproduce] {text}", flush=True)


def _spatial_table(run: _Run, results: dict, columns: dict) -> None:
    run.say("| model | layer | r50 (log) | area90 | σ row | silent |", "|---|---|---|---|---|---|")
    for label, r in results.items():
        for layer in columns[label]:
            m = r.metrics[layer]
            run.say(f"| {label} | `{layer}` | {_fmt(m['area_ratio_log@0.5'])} | {_fmt(m['area90'])} | "
                    f"{_fmt(m['sigma_row'])} | {_fmt(m['silent_fraction'], 2)} |")
    run.say("")
    for label, r in results.items():
        silent = [k for k in columns[label] if (r.metrics[k]["silent_fraction"]["value"] or 0) >= 1]
        if silent:
            run.say(f"- {label}: {len(silent)} of {len(columns[label])} layers are silent (every sample's map is "
                    "exactly 0: no gradient reaches the input, the spikes feeding them are all 0 with these weights "
                    "and inputs); their metrics are nan, not small.")
    run.say("")


def _paper_spatial(run: _Run, specs: Sequence[str], folder: str) -> tuple:
    """Spatial ERFs of ``specs`` at the layers the authors hooked, with their output timesteps and offset."""
    results, columns, notes = {}, {}, []
    size = (3, run.size, run.size)
    for text in specs:
        run.log(f"{folder}: {text}")
        spec, model, size_, T, weights = run.build(text, size)
        proto = _protocol_of(spec.name)
        t_out = proto.get("t_out", "all")
        t_out = list(t_out) if isinstance(t_out, (tuple, list)) else t_out
        offset = SDT_V3_OFFSET if spec.name.startswith("sdt_v3") else (0, 0)
        layers = runner.paper_erf_layers(spec.name)
        kw = dict(n_samples=run.n, input_size=size_, batch_size=min(run.n, 8), timesteps=T, t_out=t_out,
                  seed=run.seed, n_boot=run.boot, progress=run.progress, label=spec.label,
                  extra_meta={"weights": weights})
        note = ""
        try:
            r = spatial_erf(model, "noise", layers, offset=offset, **kw)
        except ValueError as e:  # the +5 column offset leaves the small maps of a reduced input
            if offset == (0, 0) or "outside" not in str(e):
                raise
            r = spatial_erf(model, "noise", layers, offset=(0, 0), **kw)
            note = f" (the authors' offset {offset} falls outside the maps of a {run.size}x{run.size} input: exact centre)"
            offset = (0, 0)
        r.save(run.out / folder / _safe(spec.label), figures=False)
        results[spec.label], columns[spec.label] = r, layers
        notes.append(f"- {spec.label}: {weights}; t_out = {t_out}, offset = {offset}{note}.")
    return results, columns, notes


def _panel_spatial(run: _Run) -> None:
    results, columns, notes = _paper_spatial(run, runner.PAPER_COMPARISON, "spatial")
    paths = plots.plot_layers(results, run.out / "spatial" / "compare", layers=columns)
    run.say("## Spatial ERF of the transformer SNNs", "",
            f"The models of the paper's comparison at the layers the authors hooked (attention-branch outputs before "
            f"the residual add), mode `official` (|signed sum over channels and input timesteps|, mean over RGB). "
            f"Inputs: N = {run.n} images of N(0,1) noise, {run.size}x{run.size}, seed {run.seed}. Output timesteps "
            "stimulated and centre offset as in the authors' functions (`compute_erf_spikformerv1`/`_sdtv1`: t = 0 "
            "only; `compute_erf_qk`: all; `compute_erf_sdt`: +5 columns).", "", *notes, "",
            f"![comparison]({paths[0].relative_to(run.out)})", "")
    for label, r in results.items():
        p = plots.plot_block_maps(r, run.out / "spatial" / _safe(label) / "blocks", layers=columns[label])
        run.say(f"![{label}: each hooked layer, their average and the FFT of the average]"
                f"({p[0].relative_to(run.out)})", "")
    _spatial_table(run, results, columns)


def _panel_ann(run: _Run) -> None:
    controls = getattr(runner, "ANN_CONTROLS", None)
    run.say("## ANN controls", "")
    if not controls:
        run.say("Skipped: this build has no ANN-control specs (`spikescope.erf.runner.ANN_CONTROLS`, the timm "
                "models ViT-Tiny GELU/ReLU, 4-bit ViT, Swin-T, PVT-v2-b0, PoolFormer-S12 with their token and "
                "channels-last layouts).", "")
        return
    results, columns, notes = {}, {}, []
    for text, layers in dict(controls).items():
        run.log(f"ann: {text}")
        spec, model, size_, T, weights = run.build(text, (3, run.size, run.size))
        r = spatial_erf(model, "noise", list(layers), n_samples=run.n, input_size=size_, batch_size=min(run.n, 8),
                        timesteps=T, seed=run.seed, n_boot=run.boot, progress=run.progress, label=spec.label,
                        extra_meta={"weights": weights})
        r.save(run.out / "ann" / _safe(spec.label), figures=False)
        results[spec.label], columns[spec.label] = r, list(r.maps)
        notes.append(f"- {spec.label}: {weights}.")
        p = plots.plot_block_maps(r, run.out / "ann" / _safe(spec.label) / "blocks")
        notes.append(f"  ![{spec.label} per block, average, FFT]({p[0].relative_to(run.out)})")
    paths = plots.plot_layers(results, run.out / "ann" / "compare", layers=columns)
    run.say(*notes, "", f"![ANN controls]({paths[0].relative_to(run.out)})", "")
    _spatial_table(run, results, columns)


def _panel_mixers(run: _Run) -> None:
    specs = [s for s in runner.PAPER_COMPARISON if s.startswith("sdt_v3")]
    stages = ["stage1", "stage2", "stage3", "stage4"]
    staged, notes = {}, []
    for text in specs:
        run.log(f"mixers: {text}")
        spec, model, size_, T, weights = run.build(text, (3, run.size, run.size))
        staged[spec.label] = spatial_erf(model, "noise", stages, n_samples=run.n, input_size=size_,
                                         batch_size=min(run.n, 8), timesteps=T, seed=run.seed, n_boot=run.boot,
                                         progress=run.progress, label=spec.label, extra_meta={"weights": weights})
        staged[spec.label].save(run.out / "mixers" / _safe(spec.label), figures=False)
        notes.append(f"- {spec.label}: {weights}.")
    paths = plots.plot_layers(staged, run.out / "mixers" / "stages", layers=stages)
    run.say("## SDT-v3-S mixers per stage", "",
            "Stage outputs (block outputs after the residual) of SDT-v3-S with the conv, MLPixer and SRB channel "
            f"mixers; exact centre, all output timesteps; N = {run.n}, {run.size}x{run.size}.", "", *notes, "",
            f"![mixers per stage]({paths[0].relative_to(run.out)})", "")
    _spatial_table(run, staged, {k: stages for k in staged})


def _panel_temporal(run: _Run) -> None:
    T, nets, size = 16, max(2, min(run.n, 20)), (1, 64, 64)
    curves, rows = {}, []
    last_row = {}
    for tau in (2.0, 4.0, 6.0, 8.0):
        run.log(f"temporal: tau = {tau:g}")
        per_net, lr = [], []
        for k in range(nets):  # the script: one input through each of 20 random nets
            torch.manual_seed(run.seed + k)
            model = _toy(depth=5, activation="lif", tau=tau, timesteps=T, init="normal", init_std=0.05, bias=True,
                         detach_reset=False, surrogate="atan", alpha=0.01)
            x = torch.randn(1, *size, generator=torch.Generator().manual_seed(run.seed + k))
            r = temporal_erf(model, x, "layer5", protocol="all-pixel", n_boot=0, progress=False)
            per_net.append(np.asarray(r.curve["y"], float))
            r2 = temporal_erf(model, x, "acts.4", output="membrane", protocol="last-row", n_boot=0, progress=False)
            lr.append(np.asarray(r2.curve["y"], float))
        e = np.array(per_net)
        curves[tau] = (e.mean(0), e.std(0), authors_fit(e.mean(0)))
        last_row[tau] = np.mean(lr, 0)
    plt = plots._plt()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for j, (tau, (mean, std, fit)) in enumerate(curves.items()):
        x, colour = np.arange(T), f"C{j}"
        axes[0].plot(x, mean, "-", color=colour, label=f"τ_m = {tau:g}")
        axes[0].fill_between(x, mean - std, mean + std, color=colour, alpha=0.15)
        if fit["window"]:
            lo, hi = fit["window"]
            tt = np.linspace(lo, hi - 1, 100)
            axes[0].plot(tt, fit["a"] * fit["b"] ** (tt - lo) + fit["c"], "--", color=colour, lw=1)
        axes[1].semilogy(np.arange(T - 1), np.maximum(last_row[tau], 1e-300), "o-", color=colour,
                         label=f"τ_m = {tau:g}")
        b = fit["b"]
        rows.append(f"| {tau:g} | {fit['window']} | {fit['a']:.3g} | {b:.4g} | "
                    f"{(1 / b if b and np.isfinite(b) else float('nan')):.4g} | {1 - 1 / tau:.3f} | "
                    f"{fit['r2'] if fit['r2'] is None else round(fit['r2'], 3)} | {fit['shape']} |")
    axes[0].set_xlabel("input timestep t'")
    axes[0].set_ylabel("e[t'] (per-run max-normalised)")
    axes[0].set_title("all-pixel stimulus at t = T−1 (temporal_erf_compute.py)", fontsize=9)
    axes[1].set_xlabel("delay τ")
    axes[1].set_ylabel("Σ_ij |∂v[T−1]/∂x[T−1−τ]|")
    axes[1].set_title("membrane, centre stimulus (compute_temporal_erf_2)", fontsize=9)
    for ax in axes:
        ax.legend(fontsize=7)
    fig.tight_layout()
    paths = plots._save(fig, run.out / "temporal" / "curves")
    run.say("## Temporal ERF curves", "",
            f"5 × [3x3 conv 1→1 with bias, weights N(0, 0.05²)] → LIF (hard reset, reset not detached, ATan α = 0.01 "
            f"as the script), T = {T}, one 64x64 N(0,1) frame repeated over T through each of {nets} random nets per "
            "τ_m. Left: the authors' all-pixel protocol (`" + PROTOCOLS["all-pixel"][1] + "`): "
            + PROTOCOLS["all-pixel"][0] + "; mean ± std over nets, fitted a·b^(t'−t0) + c on the longest strictly "
            "increasing run. Unlike the script (which builds PLIF nodes and never passes τ, so its four curves are "
            "one model), τ_m is applied here. Right: `compute_temporal_erf_2` (membrane of the last LIF, centre "
            "stimulus at T−1) on the same nets. Random weights (no checkpoint exists for these nets).", "",
            f"![temporal curves]({paths[0].relative_to(run.out)})", "",
            "| τ_m | fit window [t0, t1) | a | b (input time) | 1/b (per step back) | 1 − 1/τ_m | R² | shape |",
            "|---|---|---|---|---|---|---|---|", *rows, "",
            "A rising curve in input time is a decay looking back: 1/b is the factor per step into the past. "
            "`shape` says whether a·b^x + c actually describes the curve (R² ≥ 0.9) and in which direction.", "")


def _toy(**kw):
    from ..models import create_model

    return create_model("toy_convnet", **kw).eval()


SCNN_ACTIVATIONS = (
    ("none", {"activation": "none"}),
    ("ReLU", {"activation": "relu"}),
    ("tanh", {"activation": "tanh"}),
    ("sigmoid", {"activation": "sigmoid"}),
    ("LIF ATan", {"activation": "lif", "surrogate": "atan"}),
    ("LIF Sigmoid", {"activation": "lif", "surrogate": "sigmoid"}),
    ("LIF Rect", {"activation": "lif", "surrogate": "rectangle"}),
    ("int-spike norm D", {"activation": "integer"}),
    ("int-spike norm 1", {"activation": "integer", "integer_norm": 1.0}),
)


def _panel_scnn(run: _Run) -> None:
    depths = (5, 10, 20)
    layers = [f"layer{d}" for d in depths]
    run.say("## Spiking-CNN toy (depth × activation)", "",
            f"1-channel 3x3 convs without bias (`erf_scnn/models/spikingcnn.py::ConvNet`), activation after every "
            f"conv (one instance per layer), T = 1 as in the authors' figure (their LIF nodes receive a 4-D input); "
            f"layer L of a {max(depths)}-layer net is the output of its first L layers. Input N(0,1) 32x32, "
            f"N = {run.n}, stimulus 1 at the centre, map = mean |∂y/∂x|. LIF: τ = 2, V_th = 1, α = 2.", "")
    for init in ("uniform", "random"):
        results = {}
        for label, kw in SCNN_ACTIVATIONS:
            run.log(f"scnn: {init} {label}")
            torch.manual_seed(run.seed)
            model = _toy(depth=max(depths), init=init, timesteps=1, alpha=2.0, detach_reset=False, **kw)
            results[label] = spatial_erf(model, "noise", layers, n_samples=run.n, input_size=(1, 32, 32),
                                         batch_size=min(run.n, 16), mode="abs", seed=run.seed, n_boot=run.boot,
                                         progress=False, label=label)
        paths = plots.plot_layers(results, run.out / "scnn" / f"grid_{init}", layers=layers, share="panel")
        run.say(f"### init = {init}" + (" (1/9)" if init == "uniform" else " (Xavier-normal × elementwise N(0,1))"),
                "", f"![scnn {init}]({paths[0].relative_to(run.out)})", "",
                "Each panel on its own max (the authors' display); the mass column gives the magnitudes.", "",
                "| activation | " + " | ".join(f"σ row @L={d}" for d in depths) + " | " +
                " | ".join(f"mass @L={d}" for d in depths) + " |", "|---|" + "---|" * (2 * len(depths)))
        for label, r in results.items():
            run.say(f"| {label} | " + " | ".join(_fmt(r.metrics[k]["sigma_row"]) for k in layers) + " | "
                    + " | ".join(_fmt(r.metrics[k]["mass"]) for k in layers) + " |")
        run.say("", "Oracle: a linear uniform L-layer stack has σ = √(2L/3) (3.65 at L = 20). A mass near 0 "
                "(integer spikes with norm D: a factor 1/D per layer) is a vanishing gradient, not a small ERF.", "")


def _panel_izhikevich(run: _Run) -> None:
    T, trials = 24, max(2, min(3 * run.n, 60))
    model = _toy(depth=1, kernel_size=1, init="uniform", activation="izhikevich", timesteps=T)
    x = torch.randn(T, trials, 1, 1, 1, generator=torch.Generator().manual_seed(run.seed))
    r = temporal_erf(model, x, "layer1", protocol="last-row", n_boot=0, progress=False,
                     label="Izhikevich neuron")
    g = r.matrix_samples[:, 0, :]  # [trials, t'] = |ds[T-1] / dI[t']| (the row t = T-1)
    mean, std = g.mean(0), g.std(0)
    fit = authors_fit(mean)
    plt = plots._plt()
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(np.arange(T), mean, "-", label="mean over trials")
    ax.fill_between(np.arange(T), mean - std, mean + std, alpha=0.2, label="± std")
    if fit["window"]:
        lo, hi = fit["window"]
        tt = np.linspace(lo, hi - 1, 100)
        ax.plot(tt, fit["a"] * fit["b"] ** (tt - lo) + fit["c"], "--",
                label=f"{fit['a']:.3g}·{fit['b']:.3f}^(t'−{lo}) + {fit['c']:.3g}")
    ax.set_xlabel("input timestep t'")
    ax.set_ylabel("|∂s[T−1] / ∂I[t']|")
    ax.legend(fontsize=7)
    fig.tight_layout()
    paths = plots._save(fig, run.out / "izhikevich" / "curve")
    run.say("## Izhikevich neuron", "",
            f"One neuron (`spikescope.neurons.Izhikevich`: a = 0.02, b = 0.2, c = −65, d = 6, κ = 0.002, V_th = 2.3, "
            f"soft reset, ATan α = 2, as `erf_compute/izhikevich.py`), input current I ~ N(0,1) over T = {T}, "
            f"{trials} trials, each from a fresh state (the script carries state over trials). Curve: "
            "|∂s[T−1]/∂I[t']| (stimulus on the last spike), mean ± std; fit as the script (longest increasing run).",
            "", f"![izhikevich]({paths[0].relative_to(run.out)})", "",
            f"- Fit: window {fit['window']}, a = {fit['a']:.3g}, b = {fit['b']:.4g}, c = {fit['c']:.3g}; "
            f"{fit['note']}.",
            f"- Spiking trials: {float((r.matrix_samples.sum((1, 2)) > 0).mean()):.2f} have a non-zero gradient.", "")


def _panel_dynamic(run: _Run) -> None:
    T, size, depth = 4, (1, 65, 65), 40
    taus = (1.0, 1.1, 2.0, 4.0)
    surrogates = ("triangle", "sigmoid", "arctan", "rectangle")
    results = {}
    for tau in taus:
        for sg in surrogates:
            run.log(f"dynamic: tau = {tau:g}, {sg}")
            torch.manual_seed(run.seed)
            model = _toy(depth=depth, activation="lif_tg", init="xavier", tau=tau, surrogate=sg, alpha=2.0,
                         timesteps=T)
            label = f"τ={tau:g} {sg}"
            results[label] = temporal_erf(model, f"noise-iid:{T}", f"layer{depth}", protocol="last-row",
                                          n_samples=run.n,
                                          input_size=size, batch_size=min(run.n, 8), seed=run.seed, n_boot=0,
                                          progress=False, label=label)
    delays = [f"last_delay{k}" for k in range(1, T)]
    paths = plots.plot_delay_maps(results, run.out / "dynamic" / "delays", delays)
    run.say("## Dynamic ERF of the 40-layer net per delay", "",
            f"40 × [3x3 conv 1→1, Xavier-normal] → temporal-gradient LIF (`erf_scnn/models/Qtrick.py::"
            f"LIF_with_Temporal_Gradient`, α = 2), T = {T}, input i.i.d. N(0,1) per timestep, 65x65, N = {run.n}. "
            "Map for delay n: mean |∂s_centre[T−1] / ∂x[T−1−n]| (`compute_st_erf`), each configuration divided by "
            "its max over the delays. Random weights.", "",
            f"![per-delay maps]({paths[0].relative_to(run.out)})", "",
            "| configuration | " + " | ".join(f"mass delay {k}" for k in range(1, T)) + " |",
            "|---|" + "---|" * (T - 1))
    for label, r in results.items():
        run.say(f"| {label} | " + " | ".join(f"{float(r.maps[d].sum()):.3g}" for d in delays) + " |")
    run.say("")


_RUNNERS = {"spatial": _panel_spatial, "ann": _panel_ann, "mixers": _panel_mixers, "temporal": _panel_temporal,
            "scnn": _panel_scnn, "izhikevich": _panel_izhikevich, "dynamic": _panel_dynamic}


def reproduce(out: str | Path, weights_dir: str | Path | None = None, n: int = 4, size: int = 64, seed: int = 0,
              panels: Sequence[str] = PANELS, progress: bool = True) -> Path:
    """Run ``panels`` (see the module docstring) into ``out`` and write ``out/report.md``; return its path.

    ``n`` is the number of noise samples (trials, nets) per measurement, ``size`` the input side of the spatial
    panels (the paper: 224, N = 20–300 per model).
    """
    unknown = [p for p in panels if p not in PANELS]
    if unknown:
        raise ValueError(f"unknown panel(s) {unknown}; choose from {list(PANELS)}")
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    run = _Run(out, weights_dir, n, size, seed, progress)
    start = time.perf_counter()
    timings = []
    for name in panels:
        t0 = time.perf_counter()
        _RUNNERS[name](run)
        timings.append(f"{name} {time.perf_counter() - t0:.0f} s")
    head = ["# ST-ERF paper figures (spikescope erf reproduce)", "",
            f"N = {n} samples per measurement, spatial inputs {size}x{size}, seed {seed}. Weights: "
            + (f"checkpoints found by name in `{weights_dir}` where listed below, random weights + BN calibration "
               "elsewhere." if weights_dir else "random weights + BN calibrated on N(0,1) noise for every model "
               "(no --weights folder)."), "",
            "Metrics (extensions, not paper numbers): r50 = area ratio of the smallest centred square holding 50% of "
            "log10(1 + ERF); area90 = smallest share of pixels holding 90% of the mass; σ row = Gaussian σ (pixels) "
            "of the centre row; intervals: value ± 1.96 bootstrap sd over samples. See docs/erf.md.", ""]
    run.lines = head + run.lines
    run.say(f"Time: {time.perf_counter() - start:.0f} s ({', '.join(timings)}), "
            f"{torch.get_num_threads()} CPU threads.")
    report = out / "report.md"
    tmp = report.with_suffix(".md.tmp")
    tmp.write_text("\n".join(run.lines) + "\n")
    tmp.replace(report)
    return report

"""``spikescope demo``: a CPU-only tour on built-in inputs (no download) that writes ``runs/demo/report.md``.

1. Spatial ERF of SDT-v3-S at the stage-1 and stage-2 outputs for the conv, MLPixer and SRB channel mixers
   (random weights, BN statistics calibrated on noise), side by side on one colour scale per stage.
2. Temporal ERF (T x T matrix and decay fit) of a LIF stack for two membrane time constants.
3. A small SMA-VGG trained on synthetic events (:func:`spikescope.demo.training.train_demo`), and its spatial ERF.
"""
from __future__ import annotations

import os
import time
from pathlib import Path

import torch

from ..erf import plots, spatial_erf, temporal_erf
from ..erf.runner import ModelSpec, build_model

__all__ = ["run_demo"]

MIXERS = ("conv", "mlpixer", "srb")


class _Say:
    """Progress lines ``[demo  12 s] ...`` on stdout (flushed), silent when ``quiet``."""

    def __init__(self, quiet: bool) -> None:
        self.quiet, self.start = quiet, time.perf_counter()

    def __call__(self, text: str) -> None:
        if not self.quiet:
            print(f"[demo {time.perf_counter() - self.start:4.0f} s] {text}", flush=True)


def _spatial_specs(quick: bool) -> tuple[list[ModelSpec], list[str], tuple[int, int, int], str]:
    size = (3, 64, 64) if quick else (3, 128, 128)
    specs = [ModelSpec("sdt_v3_s", {"mixer": m}, None) for m in MIXERS]
    return specs, ["stage1", "stage2"], size, "SDT-v3-S (mixer = conv / MLPixer / SRB)"


def _fmt(entry: dict | None, digits: int = 3) -> str:
    if not entry or entry.get("value") is None:
        return "nan"
    v, ci = entry["value"], entry.get("ci95")
    return f"{v:.{digits}g}" + (f" [{ci[0]:.{digits}g}, {ci[1]:.{digits}g}]" if ci else "")


def _spatial_part(out: Path, quick: bool, lines: list[str], say: _Say) -> None:
    specs, layers, size, what = _spatial_specs(quick)
    n, batch = (2, 2) if quick else (8, 4)
    calib_batches, calib_batch_size = (1, 2) if quick else (2, 4)
    results = {}
    weights = ""
    for i, spec in enumerate(specs, 1):
        say(f"1/3 spatial ERF, model {i}/{len(specs)} {spec.label}: BN calibration on {calib_batches}x"
            f"{calib_batch_size} noise images {size[1]}x{size[2]}")
        model, size_, T, weights = build_model(spec, input_size=size, seed=0, calib_batches=calib_batches,
                                               calib_batch_size=calib_batch_size)
        say(f"1/3 spatial ERF, model {i}/{len(specs)} {spec.label}: ERF of {', '.join(layers)} on {n} images")
        r = spatial_erf(model, "noise", layers, n_samples=n, input_size=size_, batch_size=batch, timesteps=T,
                        n_boot=0 if quick else 50, progress=not say.quiet, label=spec.label,
                        extra_meta={"weights": weights})
        r.save(out / "spatial" / spec.slug, figures=False)
        results[spec.label] = r
    plots.plot_layers(results, out / "spatial_compare")
    lines += [
        "## Spatial ERF", "",
        f"Models: {what}. Weights: {weights.split(' (')[0]} (each model; details in `spatial/*/metrics.json`).",
        f"Inputs: N = {n} images of N(0,1) noise, {size[1]}x{size[2]}, seed 0; stimulus 1 at the exact centre of "
        "the layer's map, all channels, all output timesteps; mode `official` (|signed sum|, mean over RGB).", "",
        "Figure: `spatial_compare.png` (one colour scale per layer across models, log display).", "",
        "| model | layer | area ratio @0.5 (log) | area90 | sigma row | sigma col | silent |",
        "|---|---|---|---|---|---|---|",
    ]
    for label, r in results.items():
        for layer in layers:
            m = r.metrics[layer]
            lines.append(f"| {label} | {layer} | {_fmt(m['area_ratio_log@0.5'])} | {_fmt(m['area90'])} | "
                         f"{_fmt(m['sigma_row'])} | {_fmt(m['sigma_col'])} | {_fmt(m['silent_fraction'], 2)} |")
    lines += [""]
    for layer in layers:
        ranked = sorted(results, key=lambda k: results[k].metrics[layer]["area90"]["value"] or 0, reverse=True)
        a90 = ", ".join(f"{k}: {results[k].metrics[layer]['area90']['value'] or float('nan'):.3g}" for k in ranked)
        lines.append(f"- At `{layer}`, the share of input pixels holding 90% of the gradient mass (area90) ranks "
                     f"{a90}.")
    lines += [
        "- Larger area90 / sigma = a wider ERF. These are random-weight models with BN calibrated on noise, not the "
        "trained checkpoints of the paper: they show what the *architecture* does (sterf.md §3.7: the raster "
        "reshape of MLPixer mixes C consecutive pixels of one channel, SRB scatters across the whole image), not "
        "what training learns. Area ratios and area90 are extensions, not paper numbers.",
        f"- With N = {n} the intervals (95% bootstrap over samples) are wide; use `spikescope erf compare` with "
        "`--n 60` or more for figures.", "",
    ]


def _temporal_part(out: Path, quick: bool, lines: list[str], say: _Say) -> None:
    T, n, size = (6, 4, (1, 32, 32)) if quick else (8, 16, (1, 32, 32))
    runs = []  # (label, tau, result)
    for tau in (2.0, 4.0):
        for depth, output, layer, init in ((1, "membrane", "acts.0", "uniform"), (5, "spikes", "layer5", "xavier")):
            spec = ModelSpec("toy_convnet", {"activation": "lif", "depth": depth, "tau": tau, "timesteps": T,
                                             "channels": 1 if depth == 1 else 4, "init": init}, None)
            model, _, _, weights = build_model(spec, input_size=size)
            label = f"{depth} LIF layer{'s' if depth > 1 else ''}, tau={tau:g}, {output}"
            say(f"2/3 temporal ERF {len(runs) + 1}/4: {label}")
            inputs = "noise" if depth > 1 else 0.05 * torch.randn(T, n, *size, generator=torch.Generator().manual_seed(0))
            r = temporal_erf(model, inputs, layer, output=output, n_samples=n, input_size=size, batch_size=n,
                             timesteps=T, n_boot=0 if quick else 100, progress=not say.quiet, label=label,
                             extra_meta={"weights": weights})
            r.save(out / "temporal" / f"lif{depth}_tau{tau:g}_{output}", figures=False)
            runs.append((label, tau, depth, r))
    plots.plot_temporal({label: r for label, _, _, r in runs}, out / "temporal_compare")
    lines += [
        "## Temporal ERF", "",
        f"T = {T}, N = {n}. (a) One uniform 3x3 conv -> LIF driven far below threshold (input 0.05·N(0,1), i.i.d. "
        "over T); output: its membrane potential. (b) A stack of 5 [3x3 conv (4 channels, Xavier) -> LIF] "
        f"(detach_reset, ATan), static N(0,1) noise {size[1]}x{size[2]} repeated over T; output: the last layer's "
        "spikes. M[t, t'] = sum over pixels of |d out[t] / dx[t']| at the centre, mean over samples; "
        "T-ERF(τ) = mean_t M[t, t-τ], fitted with a·b^τ + c. Figure: `temporal_compare.png`.", "",
        "| model | fit b | 1 - 1/tau | T-ERF(T-1) / T-ERF(0) | upper-triangle max | silent |",
        "|---|---|---|---|---|---|",
    ]
    memory = {}
    for label, tau, depth, r in runs:
        from ..erf import terf_curve

        curve = terf_curve(r.matrix)
        memory[(depth, tau)] = curve[-1] / curve[0] if curve[0] > 0 else float("nan")
        lines.append(f"| {label} | {r.fit['b']:.3f} | {1 - 1 / tau:.3f} | {memory[(depth, tau)]:.3g} | "
                     f"{r.meta['upper_triangle_max']:.1e} | {_fmt(r.metrics[r.meta['layer']]['silent_fraction'], 2)} |")
    b1 = {tau: r.fit["b"] for _, tau, depth, r in runs if depth == 1}
    lines += [
        "",
        "- Every matrix is lower-triangular: the upper triangle is exactly 0 (causality).",
        f"- One LIF below threshold: the fitted decay b = {b1[2.0]:.3f} (tau = 2) and {b1[4.0]:.3f} (tau = 4) "
        "against the analytic 1 - 1/tau = 0.500 and 0.750: the membrane forgets its input geometrically, "
        "(1/tau)(1 - 1/tau)^k after k steps.",
        f"- Five spiking layers: the input {T - 1} steps back weighs {memory[(5, 2.0)]:.3g}x (tau = 2) and "
        f"{memory[(5, 4.0)]:.3g}x (tau = 4) as much as the current input. "
        + ("The longer time constant keeps the longer memory." if memory[(5, 4.0)] > memory[(5, 2.0)]
           else "Here the longer time constant does not give the longer memory (spiking and resets dominate)."),
        "",
    ]


def _training_part(out: Path, quick: bool, lines: list[str], say: _Say) -> None:
    """Train the small SMA-VGG on synthetic events, then measure the spatial ERF of the trained model."""
    from ..train.data import build_datasets
    from .training import train_demo

    say("3/3 training the small SMA-VGG8 on synthetic events (one line per epoch; the first run writes the data)")
    summary = train_demo(out / "train", quick, progress=not say.quiet)
    model = summary["model"]
    _, test_set = build_datasets(summary["config"].data)
    n = min(len(test_set), 4 if quick else 16)
    frames = torch.stack([test_set[i][0] for i in range(n)], dim=1)  # [T, N, 2, H, W]
    layers = ["stage2", "stage3"]
    say(f"3/3 spatial ERF of the trained model on {n} test samples")
    r = spatial_erf(model, frames, layers, batch_size=8, n_boot=0 if quick else 50, progress=not say.quiet,
                    label="sma_vgg8 (trained demo)")
    r.save(out / "train" / "erf")
    curve = ", ".join(f"{v:.3f}" for v in summary["loss_curve"])
    lines += [
        "## Training", "",
        "A small SMA-VGG8 (`configs/demo.yaml`: widths 16-32-32-64-64, SMA with AZO in blocks 2-3, T = 8) trained "
        "on synthetic moving-shape events (4 motion classes, written as DVS128 Gesture AEDAT 3.1 files and read "
        "back through the real reader and framing).", "",
        f"- Test top-1 after the last epoch: **{summary['test_acc1']:.1f}%** (best {summary['best_acc1']:.1f}%, "
        f"chance {summary['chance']:.0f}%), in {summary['seconds']:.0f} s.",
        f"- Train loss per epoch (MSE to one-hot): {curve}. Figure: `train/loss_curve.png`.",
        f"- Checkpoints: `{summary['run_dir']}/best.pt` (best test top-1) and `last.pt`. Evaluate with "
        f"`.venv/bin/spikescope eval --checkpoint {summary['run_dir']}/best.pt`.",
        f"- Spatial ERF of the trained model on {n} test samples (`train/erf/`, mode `official`):",
        "",
        "| layer | area90 | sigma row | sigma col | silent |", "|---|---|---|---|---|",
    ]
    for layer in layers:
        m = r.metrics[layer]
        lines.append(f"| {layer} | {_fmt(m['area90'])} | {_fmt(m['sigma_row'])} | {_fmt(m['sigma_col'])} | "
                     f"{_fmt(m['silent_fraction'], 2)} |")
    a2, a3 = (r.metrics[layer]["area90"]["value"] or float("nan") for layer in layers)
    trend = "grows" if a3 > a2 else "does not grow"
    lines += ["", f"From stage2 to stage3 the area holding 90% of the gradient mass {trend} "
              f"({a2:.3g} -> {a3:.3g} of the sensor).", ""]


def run_demo(out: str | Path = "runs/demo", quick: bool = False, progress: bool = True) -> Path:
    """Run the demo (``quick``: a reduced run for the test suite) and return the path of its report.

    ``progress`` prints a line at the start of every phase, progress bars inside it and one line per epoch.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    say = _Say(quiet=not progress)
    start, cpu_start = time.perf_counter(), time.process_time()
    lines = ["# spikescope demo", "",
             "CPU only, built-in inputs, no download. Numbers are measured by this run; see docs/erf.md for the "
             "definitions.", ""]
    _spatial_part(out, quick, lines, say)
    _temporal_part(out, quick, lines, say)
    _training_part(out, quick, lines, say)
    lines.append(f"Total time: {time.perf_counter() - start:.1f} s wall, {time.process_time() - cpu_start:.1f} s CPU "
                 f"({'quick' if quick else 'full'} run, {torch.get_num_threads()} CPU threads, load average "
                 f"{os.getloadavg()[0]:.1f} at the end).")
    report = out / "report.md"
    report.write_text("\n".join(lines) + "\n")
    return report

"""The spikescope command line: spiking vision models, their ERFs, training and analysis (thin calls into the
library, one function per sub-command; --help on each)."""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path


def _natural_key(name: str) -> list:
    """``ms_resnet18`` before ``ms_resnet104``: digit runs compare as numbers."""
    import re

    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


def _cmd_models(args: argparse.Namespace) -> int:
    import fnmatch

    from .models import count_parameters, list_models, model_info

    pattern = args.pattern.lower()
    if not any(ch in pattern for ch in "*?["):
        pattern = f"*{pattern}*"  # a plain word matches anywhere in the name
    names = sorted((n for n in list_models() if fnmatch.fnmatchcase(n.lower(), pattern)), key=_natural_key)
    if not names:
        raise ValueError(f"no registered model matches {args.pattern!r}; run `spikescope models` to list them all")
    rows = []
    for name in names:
        info = model_info(name)
        for options in ({},) + info.variants:
            label = name if not options else "  " + ",".join(f"{k}={v}" for k, v in options.items())
            params = "-" if args.no_params else f"{count_parameters(name, **options) / 1e6:.3f}M"
            rows.append((label, info.family if not options else "", params, info.input_layout if not options else ""))
    widths = [max(len(r[i]) for r in rows + [("name", "family", "params", "input")]) for i in range(4)]
    for row in [("name", "family", "params", "input")] + rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())
    return 0


def _default_threads() -> int:
    """CPU threads that do not oversubscribe: ``OMP_NUM_THREADS`` if set, else the cores that the 1-minute load
    average leaves free (at least 1, at most 8)."""
    if os.environ.get("OMP_NUM_THREADS", "").isdigit():
        return max(1, int(os.environ["OMP_NUM_THREADS"]))
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    busy = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    return max(1, min(8, round(cores - busy)))


def _cmd_demo(args: argparse.Namespace) -> int:
    import torch

    from .demo import run_demo

    threads = args.threads or _default_threads()
    torch.set_num_threads(threads)
    print(f"spikescope demo: {threads} CPU thread(s) (--threads to change), writing to {args.out}/", flush=True)
    report = run_demo(args.out, quick=args.quick)
    print(f"demo report written to {report}; the trained model's checkpoint is {Path(args.out) / 'train' / 'best.pt'}")
    return 0


# --- train / eval (spikescope.train) ---
def register_tasks() -> None:
    """Register the dense package's training tasks (``task: detection`` ...) with the engine's task registry."""
    from .dense.tasks import TASKS
    from .train.tasks import register_task

    for name, task in TASKS.items():
        register_task(name, task)


def _cmd_train(args: argparse.Namespace) -> int:
    from .train import fit, load_config

    register_tasks()
    result = fit(load_config(args.config, args.set), resume=args.resume, overwrite=args.overwrite,
                 accept_changes=args.accept_changes)
    main_rank = int(os.environ.get("RANK", "0")) == 0  # under torchrun, one summary (rank 0)
    primary = getattr(result, "primary", "test_acc1")
    if result.history and main_rank and primary == "test_acc1":
        print(f"run {result.run_dir}: best test top-1 {result.best_acc1:.2f} %, last {result.last_acc1:.2f} %")
    elif result.history and main_rank:
        print(f"run {result.run_dir}: best {primary} {result.best_acc1:.4g}")
    return 0


def _cmd_eval(args: argparse.Namespace) -> int:
    from .train.evaluate import evaluate_checkpoint, format_report, write_json

    register_tasks()
    res = evaluate_checkpoint(args.checkpoint, args.config, args.set, device=args.device, ema=args.ema)
    print(format_report(res))
    if args.json:
        write_json(res, args.json)
    return 0


def _cmd_predict(args: argparse.Namespace) -> int:
    import torch

    from .models import CheckpointError
    from .train.evaluate import checkpoint_config
    from .train.tasks import get_task

    register_tasks()
    if not Path(args.checkpoint).is_file():
        raise CheckpointError(f"checkpoint file not found: {args.checkpoint}")
    cfg = checkpoint_config(args.checkpoint, args.config, args.set)
    task = get_task(cfg.task)
    if not hasattr(task, "predict"):
        raise ValueError(f"task {cfg.task!r} of {args.checkpoint} has no pictures to draw; predict serves the dense tasks")
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                          "cpu" if args.device == "auto" else args.device)
    for path in task.predict(Path(args.checkpoint), cfg, [Path(p) for p in args.images], Path(args.out), device,
                             args.score_thr):
        print(path)
    return 0


def _add_train_commands(sub) -> None:
    p = sub.add_parser("train", help="train a recipe: spikescope train --config configs/demo.yaml [--set k=v ...]")
    p.add_argument("--config", required=True, help="YAML recipe (see configs/)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. --set optim.lr=0.01 (repeatable)")
    p.add_argument("--resume", action="store_true", help="continue the run from <run_dir>/last.pt")
    p.add_argument("--overwrite", action="store_true",
                   help="replace the run already in <run_dir> (refused by default)")
    p.add_argument("--accept-changes", action="store_true",
                   help="with --resume: continue although the recipe changed (the changes are listed)")
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser("eval", help="top-1/top-5, per-class accuracy and firing rates of a checkpoint")
    p.add_argument("--checkpoint", required=True, help="last.pt / best.pt of a run (holds its config)")
    p.add_argument("--config", default=None, help="recipe to use instead of the one stored in the checkpoint")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config value")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--ema", action="store_true", help="evaluate the EMA weights of last.pt")
    p.add_argument("--json", default=None, help="also write the results to this JSON file")
    p.set_defaults(func=_cmd_eval)

    p = sub.add_parser("predict", help="draw a dense checkpoint's predictions on images as PNG (detection: boxes, "
                       "labels, masks; segmentation: colour label map and overlay)")
    p.add_argument("--checkpoint", required=True,
                   help="best.pt / last.pt of a detection or segmentation run (holds its config)")
    p.add_argument("images", nargs="+", help="image files")
    p.add_argument("--out", required=True,
                   help="output folder for <image stem>.png (segmentation: <stem>_labels.png, <stem>_overlay.png)")
    p.add_argument("--score-thr", type=float, default=0.5,
                   help="detection: draw detections scoring at least this (default 0.5)")
    p.add_argument("--config", default=None, help="recipe to use instead of the one stored in the checkpoint")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config value")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.set_defaults(func=_cmd_predict)
# --- end train / eval ---


def _print_warnings(command: str, caught: list) -> None:
    for w in caught:
        print(f"spikescope {command}: warning: {w.message}", file=sys.stderr)


def _cmd_analyze(args: argparse.Namespace) -> int:
    import json
    import warnings

    import torch

    from .analysis.profile import profile_model
    from .erf.runner import ModelSpec, build_model, resolve_device
    from .models import model_info, parse_overrides

    info = model_info(args.model)
    size = None if not args.size else (info.input_size[0], args.size[0], args.size[-1])
    spec = ModelSpec(args.model, parse_overrides(args.set), args.checkpoint)
    device = resolve_device(args.device)
    model, size, T, weights = build_model(spec, calibrate=not args.no_calibrate, input_size=size, seed=args.seed,
                                          device=device)
    torch.manual_seed(args.seed)
    x = torch.rand(T, args.batch, *size) if info.input_kind == "events" else torch.randn(args.batch, *size)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        prof = profile_model(model, x.to(device), calibrate=False)  # build_model calibrated it unless told not to
    per = 1.0 / args.batch
    print(f"{spec.label}: {weights}; random input {list(x.shape)} (per-sample figures below)")
    print(f"{'layer':48s} {'input':6s} {'MACs (M)':>10s} {'ACs (M)':>10s} {'energy (uJ)':>12s}")
    for ops in prof.layers.values():
        kind = "spikes" if ops.spiking_input else "real"
        print(f"{ops.name:48s} {kind:6s} {ops.macs * per / 1e6:10.3f} {ops.acs * per / 1e6:10.3f} "
              f"{ops.energy_pj * per * 1e-6:12.3f}")
    dense_mj, total_mj, fr = prof.dense_energy_mj, prof.energy_mj, prof.rates
    print(f"energy per sample: {total_mj:.4f} mJ (the same network with dense MACs: {dense_mj:.4f} mJ); "
          f"mean firing rate over {len(fr)} spiking layers: {prof.mean_rate:.4f}")
    _print_warnings("analyze", caught)
    print("(45 nm estimate: E_MAC 4.6 pJ, E_AC 0.9 pJ, as in the SDT papers; not a measured figure)")
    if args.json:
        report = {
            "model": spec.label, "weights": weights, "input": list(x.shape), "energy_mj_per_sample": total_mj,
            "dense_mac_energy_mj_per_sample": dense_mj, "firing_rates": fr,
            "layers": {o.name: {"spiking_input": o.spiking_input, "macs": o.macs * per, "acs": o.acs * per}
                       for o in prof.layers.values()},
        }
        with open(args.json, "w") as fh:
            json.dump(report, fh, indent=2)
    return 0


def _cmd_convert(args: argparse.Namespace) -> int:
    from .models import convert_checkpoint, parse_overrides
    from .models.checkpoints import CheckpointMismatchError

    try:
        report = convert_checkpoint(args.model, args.src, args.dst, parse_overrides(args.set),
                                    strict=not args.allow_partial)
    except CheckpointMismatchError as err:
        hint = "check --model and --set; --allow-partial writes the fitting tensors and lists the rest"
        raise CheckpointMismatchError(f"{err}\n{hint}", err.report) from None
    print(report)
    state = "complete" if report.complete else "PARTIAL (misfits recorded in the file's 'spikescope' entry)"
    print(f"{args.model}: {state}; written to {args.dst}")
    return 0


def _cmd_heatmap(args: argparse.Namespace) -> int:
    import warnings

    import numpy as np
    import torch

    from .analysis.heatmap import spike_heatmaps
    from .erf.runner import ModelSpec, build_model, resolve_device
    from .models import checkpoint_options, create_model, example_input, load_checkpoint, model_info, parse_overrides

    spec, info = ModelSpec(args.model, parse_overrides(args.set), args.checkpoint), model_info(args.model)
    device = resolve_device(args.device)
    if args.checkpoint:  # a training checkpoint rebuilds the model it was trained as
        model = create_model(args.model, **checkpoint_options(args.model, spec.overrides, args.checkpoint))
        print(load_checkpoint(model, args.checkpoint))
        model.eval().to(device)
    else:  # random weights: BN calibrated on noise unless --no-calibrate, as in analyze and erf
        size = (info.input_size[0], *spec.overrides["input_size"]) if "input_size" in spec.overrides else None
        model, _, _, weights = build_model(spec, calibrate=not args.no_calibrate, seed=args.seed, input_size=size,
                                           device=device)
        print(f"{spec.label}: {weights}")
    cfg = getattr(model, "cfg", None)
    if args.input:
        raw = np.load(args.input) if args.input.endswith(".npy") else torch.load(args.input, weights_only=True)
        x = torch.as_tensor(raw).float()
        if x.dim() == (4 if info.input_kind == "events" else 3):
            x = x.unsqueeze(1 if info.input_kind == "events" else 0)  # one sample -> batch of 1
    else:
        torch.manual_seed(args.seed)
        x = example_input(args.model, batch=1, timesteps=getattr(cfg, "timesteps", None))
        if cfg is not None and hasattr(cfg, "input_size") and hasattr(cfg, "in_channels"):
            x = torch.rand(*x.shape[:-3], cfg.in_channels, *cfg.input_size)
        print(f"no --input given: using a random input of shape {list(x.shape)} (the model's input layout)")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        paths = spike_heatmaps(model, x.to(device), args.layer, args.out)
    _print_warnings("heatmap", caught)
    print(f"wrote {len(paths)} heat maps of {args.layer} to {args.out}")
    return 0


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _add_device_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default="auto", help="'auto' (CUDA when available, else CPU), 'cpu', 'cuda:1', ...")


# --- erf (issue 6) ---------------------------------------------------------------------------------------------
def _erf_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--set", action="append", default=[], metavar="K=V", help="model option, repeatable")
    p.add_argument("--checkpoint", default=None, help="weights file; without it: random weights + BN calibration")
    p.add_argument("--no-calibrate", action="store_true", help="keep default BN statistics for random weights")
    p.add_argument("--inputs", default="noise", help="'noise', 'noise-iid:T' or an image folder (default: noise)")
    p.add_argument("--n", type=_positive_int, default=None,
                   help="number of input samples N (default 16; compare --paper: the authors' N per model)")
    p.add_argument("--batch", type=_positive_int, default=8, help="samples per forward pass (default 8)")
    p.add_argument("--size", type=int, nargs="+", default=None, help="input H [W] (default: the model's)")
    p.add_argument("--offset", type=int, nargs=2, default=None, metavar=("DY", "DX"),
                   help="move the stimulus DY rows, DX columns away from the centre of each map (default 0 0; "
                   "compare --paper: the authors' offset)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random weights, noise inputs and bootstrap")
    p.add_argument("--boot", type=int, default=200, help="bootstrap resamples for metric intervals")
    _add_device_arg(p)
    p.add_argument("--out", required=True, help="output folder")


def _erf_size(args, info_size):
    if not args.size:
        return None
    h = args.size[0]
    w = args.size[1] if len(args.size) > 1 else h
    return (info_size[0], h, w)


def _erf_t_out(value: str):
    if value == "all":
        return "all"
    return [int(v) for v in value.split(",")]


def _erf_build(spec, args, layers=None):
    from .erf.runner import build_model, default_input_size, resolve_device

    size = _erf_size(args, default_input_size(spec))
    return build_model(spec, calibrate=not args.no_calibrate, input_size=size, seed=args.seed,
                       device=resolve_device(args.device), layers=layers)


def _erf_layout(items):
    """``--layout SPEC`` (every layer) or ``--layout LAYER=SPEC`` (repeatable) -> the API's ``layout=``."""
    if not items:
        return None
    if len(items) == 1 and "=" not in items[0]:
        return items[0]
    pairs = [item.partition("=") for item in items]
    if any(not sep for _, sep, _ in pairs):
        raise ValueError(f"with several --layout values write each as LAYER=LAYOUT, got {items}")
    return {k: v for k, _, v in pairs}


def _erf_print(result, out) -> None:
    m = result.meta
    print(f"{m['label']}: {m['weights']}; inputs {m['inputs']}, N={m['N']}, {m['seconds']:.1f} s -> {out}")
    for layer, metrics in result.metrics.items():
        keys = ("area_ratio_log@0.5", "area90", "sigma_row", "silent_fraction") if result.kind == "spatial" else (
            "fit_b", "fit_a", "fit_c", "silent_fraction")
        vals = []
        for k in keys:
            v = metrics.get(k, {}).get("value")
            vals.append(f"{k}={v:.4g}" if v is not None else f"{k}=nan")
        lay = m.get("layouts", {}).get(layer)
        where = f" [{lay['layout']}, {lay['source']}]" if lay and lay["source"] not in ("model", "probe") else ""
        print(f"  {layer}{where}: " + "  ".join(vals))
    for note in m.get("warnings", []):
        print(f"  warning: {note}")
    if result.fit:
        print(f"  fit ({result.meta.get('protocol', 'matrix')}): {result.fit.get('note', '')}")


def _paper_plan(specs, args) -> list[dict]:
    """The authors' protocol per model of ``erf compare --paper``: layers, N (``--n`` overrides), t_out, offset."""
    from .erf.runner import paper_erf_layers, paper_protocol

    plan = []
    for spec in specs:
        proto = paper_protocol(spec.name, spec.overrides)
        spec.overrides = {**proto.get("overrides", {}), **spec.overrides}
        plan.append({"layers": paper_erf_layers(spec.name), "n": args.n or proto.get("runs", 16),
                     "t_out": proto.get("t_out", "all"),
                     "offset": tuple(args.offset or proto.get("offset", (0, 0)))})
    return plan


def _paper_estimate(model, size, T, step, args) -> float:
    """Seconds one model of the --paper run should take: one timed batch of 2 images, scaled to N."""
    import time

    from .erf import spatial_erf

    start = time.perf_counter()
    spatial_erf(model, "noise", step["layers"], n_samples=2, input_size=size, batch_size=2, timesteps=T,
                seed=args.seed, n_boot=0, progress=False, t_out=step["t_out"], offset=step["offset"],
                layout=_erf_layout(args.layout), stimulus=args.stimulus)
    return (time.perf_counter() - start) * step["n"] / 2


def _cmd_erf(args: argparse.Namespace) -> int:
    import warnings

    from .erf import SilentLayerWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SilentLayerWarning)  # _erf_print prints them with the layer's numbers
        return _run_erf(args)


def _run_erf(args: argparse.Namespace) -> int:
    from .erf import plots, spatial_erf, temporal_erf
    from .erf.runner import PAPER_COMPARISON, ModelSpec, paper_erf_layers, parse_model_spec
    from .models import parse_overrides

    plan = None
    if args.erf_cmd == "compare":
        names = args.models or (list(PAPER_COMPARISON) if args.paper else [])
        if not names:
            raise SystemExit("spikescope erf compare: name the models, or pass --paper for the paper's comparison")
        specs = [parse_model_spec(s) for s in names]
        if args.paper:
            plan = _paper_plan(specs, args)
    else:
        specs = [ModelSpec(args.model, parse_overrides(args.set), args.checkpoint)]
    paper = args.erf_cmd != "temporal" and (plan is not None or args.layers == ["paper"])
    layers_of = {s.label: (paper_erf_layers(s.name) if paper else getattr(args, "layers", None) or
                           ([args.layer] if args.erf_cmd == "temporal" else None)) for s in specs}
    built = {}
    if plan is not None:  # build everything first: names are checked and the time is known before the long part
        total = 0.0
        for spec, step in zip(specs, plan):
            built[spec.label] = _erf_build(spec, args, layers_of[spec.label])
            model, size, T, _ = built[spec.label]
            secs = _paper_estimate(model, size, T, step, args)
            total += secs
            print(f"{spec.label}: N={step['n']}, {len(step['layers'])} layer pattern(s), t_out={step['t_out']}, "
                  f"offset={step['offset']}: about {secs / 60:.1f} min")
        n_note = "" if args.n else " (the authors' N); --n 8 gives a reduced run"
        print(f"erf compare --paper: about {total / 60:.1f} min in all on this machine{n_note}; Ctrl-C stops",
              flush=True)
    results, columns = {}, {}
    for k, spec in enumerate(specs):
        step = plan[k] if plan is not None else {"n": args.n or 16, "t_out": _erf_t_out(args.t_out)
                                                  if args.erf_cmd != "temporal" else "all",
                                                  "offset": tuple(args.offset or (0, 0))}
        model, size, T, weights = built.pop(spec.label, None) or _erf_build(spec, args, layers_of[spec.label])
        meta = {"weights": weights, "model_spec": spec.label, "device": str(next(model.parameters()).device)}
        common = dict(n_samples=step["n"] if args.inputs.startswith("noise") else None, input_size=size,
                      batch_size=args.batch, timesteps=T, seed=args.seed, n_boot=args.boot, label=spec.label,
                      offset=step["offset"], extra_meta=meta)
        if args.erf_cmd == "temporal":
            if T < 2:
                raise ValueError(f"{spec.label} runs T = {T} timestep: a temporal ERF needs T >= 2 to have delays to "
                                 "fit; give the model more timesteps, e.g. --set timesteps=4")
            r = temporal_erf(model, args.inputs, args.layer, output=args.output, protocol=args.protocol, **common)
        else:
            r = spatial_erf(model, args.inputs, layers_of[spec.label], mode=args.mode, t_out=step["t_out"],
                            layout=_erf_layout(args.layout), stimulus=args.stimulus, **common)
            columns[spec.label] = r.layers
        out = r.save(Path(args.out) / spec.slug if args.erf_cmd == "compare" else args.out)
        _erf_print(r, out)
        results[spec.label] = r
    if args.erf_cmd == "compare":
        paths = plots.plot_layers(results, Path(args.out) / "compare", scale=args.scale,
                                  layers=columns if paper else None)
        print(f"comparison figure: {paths[0]} (+ pdf)")
    return 0


MODE_HELP = ("how gradients become a map: 'official' |sum over timesteps| as the authors' scripts (default), 'abs' "
             "sum of |gradient| over timesteps, 'replknet' RepLKNet's ReLU of the sum (docs/erf.md)")


def _erf_spatial_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--layout", action="append", default=[], metavar="[LAYER=]LAYOUT",
                   help="output layout where it cannot be inferred: TBCHW, BCHW, BHWC, BNC[:HxW+P], TBNC, BCN, TBCN, "
                   "windows:HxW/SIDE[/SHIFT] (repeatable as LAYER=LAYOUT; see docs/erf.md)")
    p.add_argument("--stimulus", default="sum",
                   help="'sum' (every channel, default), 'channel:K' or 'sqnorm' (for layers whose channels cancel)")


def _cmd_erf_reproduce(args: argparse.Namespace) -> int:
    from .erf.reproduce import reproduce

    report = reproduce(args.out, weights_dir=args.weights, n=args.n, size=args.size, seed=args.seed,
                       panels=args.panels)
    print(f"report: {report}")
    return 0


def _add_erf_parser(sub) -> None:
    p = sub.add_parser("erf", help="spatial / temporal effective receptive fields (ST-ERF)")
    erf_sub = p.add_subparsers(dest="erf_cmd", required=True)
    sp = erf_sub.add_parser("spatial", help="spatial ERF maps of one or more layers")
    sp.add_argument("--model", required=True, help="registered model name (spikescope models)")
    sp.add_argument("--layers", nargs="+", default=None,
                    help="names/globs (default: all forward_features keys); 'paper': the layers the ST-ERF paper hooked")
    sp.add_argument("--mode", default="official", choices=["official", "abs", "replknet"], help=MODE_HELP)
    sp.add_argument("--t-out", default="all", help="'all' or comma-separated output timesteps")
    _erf_spatial_options(sp)
    _erf_common(sp)
    tp = erf_sub.add_parser("temporal", help="T x T temporal ERF matrix of one layer, with the decay fit")
    tp.add_argument("--model", required=True, help="registered model name (spikescope models)")
    tp.add_argument("--layer", required=True, help="one layer name (a wrong name lists the close ones)")
    tp.add_argument("--output", default="spikes", choices=["spikes", "membrane"],
                    help="differentiate the layer's spikes (default) or, for a neuron, its membrane potential")
    _erf_common(tp)
    cp = erf_sub.add_parser("compare", help="several models side by side: NAME[:k=v,...][@checkpoint] ...")
    cp.add_argument("models", nargs="*", help="NAME[:k=v,...][@checkpoint]; none with --paper")
    cp.add_argument("--paper", action="store_true",
                    help="the authors' protocol: without model names their SNN comparison (Spikformer-8-512, "
                    "SDT-v1-8-384, QKFormer-10-384, SDT-v3-S conv / MLPixer / SRB), else the models named (e.g. "
                    "timm:vit_tiny_patch16_224); the layers they hooked, their N, t_out, offset (SDT-v3: +5 columns) "
                    "and SDT-v3 attention scale (attn_scale_factor=1); prints the expected time first")
    cp.add_argument("--layers", nargs="+", default=None, help="names/globs for every model, or 'paper'")
    cp.add_argument("--mode", default="official", choices=["official", "abs", "replknet"], help=MODE_HELP)
    cp.add_argument("--t-out", default="all", help="'all' or comma-separated output timesteps")
    cp.add_argument("--scale", default="log", choices=["log", "linear"], help="colour scale of the figure")
    _erf_spatial_options(cp)
    _erf_common(cp)
    tp.add_argument("--protocol", default="matrix", choices=["matrix", "last-row", "all-pixel"],
                    help="matrix: ours, mean_t M[t, t-tau]; last-row: the authors' compute_temporal_erf_2 (row T-1); "
                    "all-pixel: the authors' temporal_erf_compute.py (all-pixel stimulus at T-1, max-normalised)")
    for q in (sp, tp, cp):
        q.set_defaults(func=_cmd_erf)
    from .erf.reproduce import PANELS

    rp = erf_sub.add_parser("reproduce", help="every ERF figure of the ST-ERF paper, with report.md")
    rp.add_argument("--out", required=True, help="output folder (report.md, figures, arrays)")
    rp.add_argument("--weights", default=None, help="folder searched by file name for the released checkpoints; "
                    "models without one keep random weights + BN calibration")
    rp.add_argument("--n", type=int, default=4, help="samples per measurement (default 4, reduced; the paper 20-300)")
    rp.add_argument("--size", type=int, default=64, help="input side of the spatial panels (default 64; paper 224)")
    rp.add_argument("--seed", type=int, default=0)
    rp.add_argument("--panels", nargs="+", default=list(PANELS), choices=list(PANELS), metavar="PANEL",
                    help=f"subset of {', '.join(PANELS)} (default: all)")
    rp.set_defaults(func=_cmd_erf_reproduce)
# --- end erf ---------------------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="spikescope", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("models", help="list registered models with parameter counts and input layouts")
    p.add_argument("pattern", nargs="?", default="*",
                   help="glob on model names, case-insensitive, e.g. 'sdt_v3_*'; a plain word matches anywhere")
    p.add_argument("--no-params", action="store_true", help="skip building models to count parameters")
    p.set_defaults(func=_cmd_models)

    p = sub.add_parser("demo", help="run the built-in demo on the CPU (no download) and write a report")
    p.add_argument("--out", default="runs/demo", help="output folder (default: runs/demo)")
    p.add_argument("--quick", action="store_true", help="a reduced run (used by the test suite)")
    p.add_argument("--threads", type=int, default=None,
                   help="CPU threads (default: $OMP_NUM_THREADS, else the cores the load average leaves free)")
    p.set_defaults(func=_cmd_demo)
    _add_train_commands(sub)

    p = sub.add_parser("analyze", help="firing rates and a synaptic-operation energy estimate of a model")
    p.add_argument("--model", required=True, help="registered model name")
    p.add_argument("--set", default=[], action="append", metavar="K=V", help="model option (repeatable)")
    p.add_argument("--checkpoint", help="weights file; without it: random weights + BN calibrated on noise")
    p.add_argument("--no-calibrate", action="store_true", help="keep default BN statistics for random weights")
    p.add_argument("--batch", type=_positive_int, default=2, help="random samples in the forward pass (default 2)")
    p.add_argument("--size", type=int, nargs="+", default=None, help="input H [W] (default: the model's)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", help="also write the report to this file")
    _add_device_arg(p)
    p.set_defaults(func=_cmd_analyze)

    p = sub.add_parser("heatmap", help="spike heat maps (channel-summed spike counts, one PNG per timestep) of a layer")
    p.add_argument("--model", required=True, help="registered model name")
    p.add_argument("--checkpoint", help="weights to load (ours or the authors' released file)")
    p.add_argument("--layer", required=True, help="name of a LIF module, e.g. block2.lif (a wrong name lists them)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--input", help="one sample as .pt or .npy in the model's layout (default: a random input)")
    p.add_argument("--set", default=[], action="append", help="model override key=value (repeatable)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random weights, input and BN calibration")
    p.add_argument("--no-calibrate", action="store_true",
                   help="keep default BN statistics for random weights (layers then often fire no spike)")
    _add_device_arg(p)
    p.set_defaults(func=_cmd_heatmap)
    p = sub.add_parser("convert", help="rewrite a released checkpoint under spikescope's key names, with provenance")
    p.add_argument("src", help="checkpoint file (the authors' released .pth or one of ours)")
    p.add_argument("dst", help="output file")
    p.add_argument("--model", required=True, help="registered model name the weights belong to")
    p.add_argument("--set", default=[], action="append", metavar="K=V", help="model option (repeatable)")
    p.add_argument("--allow-partial", action="store_true",
                   help="write even if tensors are missing, unexpected or of another shape (they are listed)")
    p.set_defaults(func=_cmd_convert)
    _add_erf_parser(sub)
    return parser


def _is_user_error(err: BaseException) -> bool:
    """Errors raised on bad input (names, options, files, shapes), all with a message that says what to change."""
    from .models.checkpoints import CheckpointError

    return isinstance(err, (ValueError, TypeError, OSError, CheckpointError))


def _one_line(err: BaseException) -> str:
    """The message of ``err``; for an error re-raised from a DataLoader worker ("Caught ... Original Traceback ..."),
    the original exception's own last line, without the worker's traceback."""
    text = str(err)
    if "Original Traceback" in text:
        last = [line for line in text.splitlines() if line.strip()][-1]
        return last.split(": ", 1)[1] if ": " in last else last
    return text


def main(argv: list[str] | None = None) -> int:
    """Run one sub-command; bad input ends with a one-line error and exit code 2 instead of a traceback, Ctrl-C with
    a one-line stop and exit code 130.

    ``SPIKESCOPE_TRACEBACK=1`` re-raises such errors, for debugging.
    """
    args = build_parser().parse_args(argv)
    try:
        register_tasks()  # also registers the dense models (maskrcnn_*, semfpn_*) for `models`, `analyze`, ...
        return args.func(args)
    except KeyboardInterrupt:
        print(f"spikescope {args.command}: stopped (Ctrl-C)", file=sys.stderr)
        return 130
    except Exception as err:
        if not _is_user_error(err) or os.environ.get("SPIKESCOPE_TRACEBACK"):
            raise
        print(f"spikescope {args.command}: error: {_one_line(err)}", file=sys.stderr)
        print("(set SPIKESCOPE_TRACEBACK=1 to see where it was raised)", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())

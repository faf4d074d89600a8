"""The ``spikescope`` command line: thin calls into the library, one function per sub-command."""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path


def _cmd_models(args: argparse.Namespace) -> int:
    from .models import count_parameters, list_models, model_info

    names = list_models(args.pattern)
    if not names:
        print(f"no registered model matches {args.pattern!r}", file=sys.stderr)
        return 1
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


def _cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    report = run_demo(args.out, quick=args.quick)
    print(f"demo report written to {report}")
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
    result = fit(load_config(args.config, args.set), resume=args.resume)
    if result.history and result.primary == "test_acc1":
        print(f"run {result.run_dir}: best test top-1 {result.best_acc1:.2f} %, last {result.last_acc1:.2f} %")
    elif result.history:
        print(f"run {result.run_dir}: best {result.primary} {result.best_acc1:.4g}")
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


def _cmd_analyze(args: argparse.Namespace) -> int:
    import json

    import torch

    from .analysis.energy import E_MAC_PJ, EnergyMeter
    from .analysis.firing import FiringRateRecorder
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
    with torch.no_grad(), FiringRateRecorder(model) as rates, EnergyMeter(model) as meter:
        model(x.to(device))
    per = 1.0 / args.batch
    print(f"{spec.label}: {weights}; random input {list(x.shape)} (per-sample figures below)")
    print(f"{'layer':48s} {'input':6s} {'MACs (M)':>10s} {'ACs (M)':>10s} {'energy (uJ)':>12s}")
    for ops in meter.layers.values():
        kind = "spikes" if ops.spiking_input else "real"
        print(f"{ops.name:48s} {kind:6s} {ops.macs * per / 1e6:10.3f} {ops.acs * per / 1e6:10.3f} "
              f"{ops.energy_pj * per * 1e-6:12.3f}")
    dense_mj = sum(o.macs for o in meter.layers.values()) * per * E_MAC_PJ * 1e-9
    total_mj = meter.total_energy_mj() * per
    fr = rates.rates()
    mean_rate = sum(fr.values()) / max(len(fr), 1)
    print(f"energy per sample: {total_mj:.4f} mJ (the same network with dense MACs: {dense_mj:.4f} mJ); "
          f"mean firing rate over {len(fr)} spiking layers: {mean_rate:.4f}")
    print("(45 nm estimate: E_MAC 4.6 pJ, E_AC 0.9 pJ, as in the SDT papers; not a measured figure)")
    if args.json:
        report = {
            "model": spec.label, "weights": weights, "input": list(x.shape), "energy_mj_per_sample": total_mj,
            "dense_mac_energy_mj_per_sample": dense_mj, "firing_rates": fr,
            "layers": {o.name: {"spiking_input": o.spiking_input, "macs": o.macs * per, "acs": o.acs * per}
                       for o in meter.layers.values()},
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
    import numpy as np
    import torch

    from .analysis.heatmap import spike_heatmaps
    from .erf.runner import resolve_device
    from .models import create_model, example_input, load_checkpoint, model_info, parse_overrides

    device = resolve_device(args.device)
    model = create_model(args.model, **parse_overrides(args.set))
    if args.checkpoint:
        print(load_checkpoint(model, args.checkpoint))
    model.eval().to(device)
    info, cfg = model_info(args.model), getattr(model, "cfg", None)
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
    paths = spike_heatmaps(model, x.to(device), args.layer, args.out)
    print(f"wrote {len(paths)} heat maps of {args.layer} to {args.out}")
    return 0


def _add_device_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default="auto", help="'auto' (CUDA when available, else CPU), 'cpu', 'cuda:1', ...")


# --- erf (issue 6) ---------------------------------------------------------------------------------------------
def _erf_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--set", action="append", default=[], metavar="K=V", help="model option, repeatable")
    p.add_argument("--checkpoint", default=None, help="weights file; without it: random weights + BN calibration")
    p.add_argument("--no-calibrate", action="store_true", help="keep default BN statistics for random weights")
    p.add_argument("--inputs", default="noise", help="'noise', 'noise-iid:T' or an image folder (default: noise)")
    p.add_argument("--n", type=int, default=16, help="number of input samples N (default 16)")
    p.add_argument("--batch", type=int, default=8, help="samples per forward pass (default 8)")
    p.add_argument("--size", type=int, nargs="+", default=None, help="input H [W] (default: the model's)")
    p.add_argument("--offset", type=int, nargs=2, default=(0, 0), metavar=("DY", "DX"))
    p.add_argument("--seed", type=int, default=0)
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


def _erf_build(spec, args):
    from .erf.runner import build_model, resolve_device
    from .models import model_info

    size = _erf_size(args, model_info(spec.name).input_size)
    return build_model(spec, calibrate=not args.no_calibrate, input_size=size, seed=args.seed,
                       device=resolve_device(args.device))


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
        print(f"  {layer}: " + "  ".join(vals))


def _cmd_erf(args: argparse.Namespace) -> int:
    from .erf import plots, spatial_erf, temporal_erf
    from .erf.runner import PAPER_COMPARISON, ModelSpec, paper_erf_layers, parse_model_spec
    from .models import parse_overrides

    if args.erf_cmd == "compare":
        names = args.models or (list(PAPER_COMPARISON) if args.paper else [])
        if not names:
            raise SystemExit("spikescope erf compare: name the models, or pass --paper for the paper's comparison")
        specs = [parse_model_spec(s) for s in names]
        if args.paper and args.layers is None:
            args.layers = ["paper"]
    else:
        specs = [ModelSpec(args.model, parse_overrides(args.set), args.checkpoint)]
    paper = args.erf_cmd != "temporal" and args.layers == ["paper"]
    results, columns = {}, {}
    for spec in specs:
        model, size, T, weights = _erf_build(spec, args)
        meta = {"weights": weights, "model_spec": spec.label, "device": str(next(model.parameters()).device)}
        common = dict(n_samples=args.n if args.inputs.startswith("noise") else None, input_size=size,
                      batch_size=args.batch, timesteps=T, seed=args.seed, n_boot=args.boot, label=spec.label,
                      offset=tuple(args.offset), extra_meta=meta)
        if args.erf_cmd == "temporal":
            r = temporal_erf(model, args.inputs, args.layer, output=args.output, **common)
        else:
            layers = paper_erf_layers(spec.name) if paper else args.layers
            columns[spec.label] = layers
            r = spatial_erf(model, args.inputs, layers, mode=args.mode, t_out=_erf_t_out(args.t_out), **common)
        out = r.save(Path(args.out) / spec.label.replace("/", "_") if args.erf_cmd == "compare" else args.out)
        _erf_print(r, out)
        results[spec.label] = r
    if args.erf_cmd == "compare":
        paths = plots.plot_layers(results, Path(args.out) / "compare", scale=args.scale,
                                  layers=columns if paper else None)
        print(f"comparison figure: {paths[0]} (+ pdf)")
    return 0


def _add_erf_parser(sub) -> None:
    p = sub.add_parser("erf", help="spatial / temporal effective receptive fields (ST-ERF)")
    erf_sub = p.add_subparsers(dest="erf_cmd", required=True)
    sp = erf_sub.add_parser("spatial", help="spatial ERF maps of one or more layers")
    sp.add_argument("--model", required=True)
    sp.add_argument("--layers", nargs="+", default=None,
                    help="names/globs (default: all forward_features keys); 'paper': the layers the ST-ERF paper hooked")
    sp.add_argument("--mode", default="official", choices=["official", "abs", "replknet"])
    sp.add_argument("--t-out", default="all", help="'all' or comma-separated output timesteps")
    _erf_common(sp)
    tp = erf_sub.add_parser("temporal", help="T x T temporal ERF matrix of one layer, with the decay fit")
    tp.add_argument("--model", required=True)
    tp.add_argument("--layer", required=True)
    tp.add_argument("--output", default="spikes", choices=["spikes", "membrane"])
    _erf_common(tp)
    cp = erf_sub.add_parser("compare", help="several models side by side: NAME[:k=v,...][@checkpoint] ...")
    cp.add_argument("models", nargs="*", help="NAME[:k=v,...][@checkpoint]; none with --paper")
    cp.add_argument("--paper", action="store_true",
                    help="the paper's comparison: Spikformer-8-512, SDT-v1-8-384, QKFormer-10-384, SDT-v3-S with the "
                    "conv / MLPixer / SRB mixers, at the layers the paper hooked (figure columns = hook order)")
    cp.add_argument("--layers", nargs="+", default=None, help="names/globs for every model, or 'paper'")
    cp.add_argument("--mode", default="official", choices=["official", "abs", "replknet"])
    cp.add_argument("--t-out", default="all")
    cp.add_argument("--scale", default="log", choices=["log", "linear"])
    _erf_common(cp)
    for q in (sp, tp, cp):
        q.set_defaults(func=_cmd_erf)
# --- end erf ---------------------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="spikescope", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("models", help="list registered models with parameter counts and input layouts")
    p.add_argument("pattern", nargs="?", default="*", help="glob on model names, e.g. 'sdt_v3_*'")
    p.add_argument("--no-params", action="store_true", help="skip building models to count parameters")
    p.set_defaults(func=_cmd_models)

    p = sub.add_parser("demo", help="run the built-in demo on the CPU (no download) and write a report")
    p.add_argument("--out", default="runs/demo", help="output folder (default: runs/demo)")
    p.add_argument("--quick", action="store_true", help="a reduced run (used by the test suite)")
    p.set_defaults(func=_cmd_demo)
    _add_train_commands(sub)

    p = sub.add_parser("analyze", help="firing rates and a synaptic-operation energy estimate of a model")
    p.add_argument("--model", required=True, help="registered model name")
    p.add_argument("--set", default=[], action="append", metavar="K=V", help="model option (repeatable)")
    p.add_argument("--checkpoint", help="weights file; without it: random weights + BN calibrated on noise")
    p.add_argument("--no-calibrate", action="store_true", help="keep default BN statistics for random weights")
    p.add_argument("--batch", type=int, default=2, help="random samples in the forward pass (default 2)")
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
    p.add_argument("--seed", type=int, default=0, help="seed of the random input")
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


def main(argv: list[str] | None = None) -> int:
    """Run one sub-command; bad input ends with a one-line error and exit code 2 instead of a traceback.

    ``SPIKESCOPE_TRACEBACK=1`` re-raises such errors, for debugging.
    """
    args = build_parser().parse_args(argv)
    try:
        register_tasks()  # also registers the dense models (maskrcnn_*, semfpn_*) for `models`, `analyze`, ...
        return args.func(args)
    except Exception as err:
        if not _is_user_error(err) or os.environ.get("SPIKESCOPE_TRACEBACK"):
            raise
        print(f"spikescope {args.command}: error: {err}", file=sys.stderr)
        print("(set SPIKESCOPE_TRACEBACK=1 to see where it was raised)", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())

"""The ``spikescope`` command line: thin calls into the library, one function per sub-command."""
from __future__ import annotations

import argparse
import sys


def _cmd_models(args: argparse.Namespace) -> int:
    from .models import count_parameters, list_models, model_info

    names = list_models(args.pattern)
    if not names:
        print(f"no registered model matches {args.pattern!r}", file=sys.stderr)
        return 1
    rows = []
    for name in names:
        info = model_info(name)
        params = f"{count_parameters(name) / 1e6:.3f}M" if not args.no_params else "-"
        rows.append((name, info.family, params, info.input_layout))
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
def _cmd_train(args: argparse.Namespace) -> int:
    from .data import DatasetNotFoundError
    from .train import ConfigError, fit, load_config

    try:
        cfg = load_config(args.config, args.set)
        result = fit(cfg, resume=args.resume)
    except (ConfigError, DatasetNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if result.history:
        print(f"run {result.run_dir}: best test top-1 {result.best_acc1:.2f} %, last {result.last_acc1:.2f} %")
    return 0


def _cmd_eval(args: argparse.Namespace) -> int:
    from .data import DatasetNotFoundError
    from .train import ConfigError
    from .train.evaluate import evaluate_checkpoint, format_report, write_json

    try:
        res = evaluate_checkpoint(args.checkpoint, args.config, args.set, device=args.device, ema=args.ema)
    except (ConfigError, DatasetNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(format_report(res))
    if args.json:
        write_json(res, args.json)
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
# --- end train / eval ---


def _cmd_heatmap(args: argparse.Namespace) -> int:
    import numpy as np
    import torch
    import yaml

    from .analysis.heatmap import spike_heatmaps
    from .models import create_model, example_input, load_checkpoint, model_info

    overrides = {}
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep:
            print(f"--set expects key=value, got {item!r}", file=sys.stderr)
            return 2
        overrides[key] = yaml.safe_load(value)
    model = create_model(args.model, **overrides)
    if args.checkpoint:
        print(load_checkpoint(model, args.checkpoint))
    model.eval()
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
    try:
        paths = spike_heatmaps(model, x, args.layer, args.out)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"wrote {len(paths)} heat maps of {args.layer} to {args.out}")
    return 0


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

    p = sub.add_parser("heatmap", help="spike heat maps (channel-summed spike counts, one PNG per timestep) of a layer")
    p.add_argument("--model", required=True, help="registered model name")
    p.add_argument("--checkpoint", help="weights to load (ours or the authors' released file)")
    p.add_argument("--layer", required=True, help="name of a LIF module, e.g. block2.lif (a wrong name lists them)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--input", help="one sample as .pt or .npy in the model's layout (default: a random input)")
    p.add_argument("--set", default=[], action="append", help="model override key=value (repeatable)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random input")
    p.set_defaults(func=_cmd_heatmap)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    raise SystemExit(main())

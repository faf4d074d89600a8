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
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    raise SystemExit(main())

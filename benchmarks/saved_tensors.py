"""What the autograd graph of a registered model keeps for backward, computed on the meta device (no memory used).

    python benchmarks/saved_tensors.py --model sma_vgg8_dvs128 --batch 16 --set timesteps=16
    python benchmarks/saved_tensors.py --model sma_vgg8_dvs128 --batch 16 --set azo=false --dtype float16

Counts every tensor saved for backward during one training-mode forward (each storage once), grouped by
top-level module and dtype. This is an accounting of activation memory, not a device measurement: it leaves out
parameters, gradients, optimiser state and transient buffers. ``--dtype float16`` builds the model in half
precision, which approximates (not equals) fp16 autocast: under autocast the SMA weights and output stay float32.
"""
from __future__ import annotations

import argparse
import collections

import torch

from spikescope.models import create_model, example_input, parse_overrides


def saved_bytes(name: str, overrides: dict, batch: int, dtype: torch.dtype) -> dict[tuple[str, str], int]:
    """Bytes saved for backward per (top-level module, dtype) for one forward of ``batch`` samples."""
    with torch.device("meta"):
        model = create_model(name, **overrides).to(dtype).train()
        x = example_input(name, batch=batch, timesteps=overrides.get("timesteps"), dtype=dtype)
    current = ["input"]
    for top, module in model.named_children():
        module.register_forward_pre_hook(lambda m, a, top=top: current.__setitem__(0, top))
    seen: dict[int, tuple[torch.Tensor, str]] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        base = t._base if t._base is not None else t
        seen.setdefault(id(base), (base, current[0]))
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        model(x)
    totals: dict[tuple[str, str], int] = collections.Counter()
    for t, top in seen.values():
        totals[(top, str(t.dtype).replace("torch.", ""))] += t.numel() * t.element_size()
    return totals


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True)
    ap.add_argument("--set", default=[], action="append", help="builder override key=value (repeatable)")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--dtype", choices=["float32", "float16", "bfloat16"], default="float32")
    args = ap.parse_args()
    overrides = parse_overrides(args.set)
    totals = saved_bytes(args.model, overrides, args.batch, getattr(torch, args.dtype))
    for (top, dtype), size in sorted(totals.items(), key=lambda kv: -kv[1]):
        print(f"{top:12s} {dtype:9s} {size / 2**30:8.3f} GiB")
    print(f"total saved for backward: {sum(totals.values()) / 2**30:.3f} GiB "
          f"({args.model} {overrides or ''}, batch {args.batch}, {args.dtype}, meta device)")


if __name__ == "__main__":
    main()

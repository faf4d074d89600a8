"""Batched spatial ERF vs the authors' per-sample, per-layer loop, on the same model, layers and inputs.

The authors' procedure (``compute_erf_sdt`` in EricZhang1412/Spatial-temporal-ERF ``erf_sdt/erf_compute.py``; see
docs/papers.md#released-erf-scripts): for each of L hooked layers and each of N noise images, a new forward and
a backward at batch 1 (``y.backward(stimulus)``, parameter gradients included). Ours: one forward per batch shared
by all layers, one input-only backward per layer per batch. Both produce the same maps (checked here).

    python benchmarks/erf.py                       # SDT-v3-S-SRB at the 8 layers the paper hooked
    python benchmarks/erf.py --model sdt_v3_s --set mixer=srb --size 64 --n 60 --json benchmarks/results/erf_cpu.json

Reference point (issue 6): the authors' procedure on SDT-v3-S-SRB, 8 layers x 60 images at 224², took 26.1 s on
an H100; the target is <= 2.6 s there. Only the device this script ran on is written to the JSON.
"""
from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
import torch

from spikescope.erf import spatial_erf, spatial_erf_loop
from spikescope.erf.runner import ModelSpec, build_model, paper_erf_layers
from spikescope.models import model_info, parse_overrides


def _default_spec(args) -> tuple[ModelSpec, list[str]]:
    """The model and layers to time: ``--model``/``--layers``, by default SDT-v3-S-SRB at the layers the paper hooked."""
    if args.model:
        spec = ModelSpec(args.model, parse_overrides(args.set), None)
    else:
        spec = ModelSpec("sdt_v3_s", {"mixer": "srb"}, None)
    return spec, args.layers or paper_erf_layers(spec.name)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default=None)
    ap.add_argument("--set", action="append", default=[], metavar="K=V")
    ap.add_argument("--layers", nargs="+", default=None, help="names/globs (default: the layers the ST-ERF paper hooked)")
    ap.add_argument("--size", type=int, default=32, help="input H = W (CPU: a smaller input than 224)")
    ap.add_argument("--n", type=int, default=60)
    ap.add_argument("--batch", type=int, default=30)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    torch.manual_seed(0)
    spec, layers = _default_spec(args)
    channels = model_info(spec.name).input_size[0]
    size = (channels, args.size, args.size)  # BN calibration runs at the timed input size too
    model, size, T, weights = build_model(spec, input_size=size, seed=0, device=args.device)
    kw = dict(n_samples=args.n, input_size=size, timesteps=T, seed=0)
    # warm-up (first-call allocations, lazy inits) on a few samples, outside the timings
    spatial_erf(model, "noise", layers, **{**kw, "n_samples": 2}, batch_size=2, n_boot=0, progress=False)
    t0 = time.perf_counter()
    ours = spatial_erf(model, "noise", layers, **kw, batch_size=args.batch, n_boot=0, progress=False)
    t_ours = time.perf_counter() - t0
    t0 = time.perf_counter()
    loop = spatial_erf_loop(model, "noise", layers, **kw, param_grads=True)
    t_loop = time.perf_counter() - t0
    t0 = time.perf_counter()
    spatial_erf_loop(model, "noise", layers, **kw, param_grads=False)
    t_loop_input_only = time.perf_counter() - t0
    # Per-sample maps can differ where batch-size-dependent float rounding flips an integer spike (x near k + 0.5)
    # and so changes that sample's downstream gradients; the averaged map is what the tool reports.
    diff = max(float(np.abs(ours.maps[k] - loop.maps[k]).max() / np.abs(loop.maps[k]).max()) for k in ours.layers)
    per_sample = np.stack([
        np.abs(ours.samples[k] - loop.samples[k]).reshape(args.n, -1).max(1)
        / np.abs(loop.samples[k]).reshape(args.n, -1).max(1).clip(1e-30)
        for k in ours.layers
    ])
    flipped = float((per_sample > 1e-4).mean())
    res = {
        "model": spec.label,
        "weights": weights,
        "layers": ours.layers,
        "n_layers": len(ours.layers),
        "N": args.n,
        "input": list(size),
        "timesteps": T,
        "batch": args.batch,
        "device": args.device if args.device != "cpu" else f"cpu ({platform.processor() or platform.machine()}, "
        f"{torch.get_num_threads()} threads)",
        "torch": torch.__version__,
        "authors_loop_s": round(t_loop, 3),
        "loop_input_grad_only_s": round(t_loop_input_only, 3),
        "batched_s": round(t_ours, 3),
        "speedup_vs_authors_loop": round(t_loop / t_ours, 2),
        "speedup_vs_input_only_loop": round(t_loop_input_only / t_ours, 2),
        "max_rel_diff_of_mean_maps": diff,
        "share_of_sample_maps_differing_over_1e-4": flipped,
        "forward_backward_passes_authors": len(ours.layers) * args.n,
    }
    print(f"{spec.label}, {len(ours.layers)} layers x {args.n} images, input {size}, T={T}, {res['device']}")
    print(f"  authors' loop (batch 1, fwd+bwd per layer per image): {t_loop:8.2f} s")
    print(f"  per-sample loop, input gradient only:                 {t_loop_input_only:8.2f} s")
    print(f"  batched (batch {args.batch}, 1 fwd + {len(ours.layers)} bwd per batch):   {t_ours:8.2f} s")
    print(f"  speed-up vs authors' loop: {t_loop / t_ours:.1f}x   (mean maps differ by {diff:.1e} relative; "
          f"{flipped:.1%} of per-sample maps differ by > 1e-4, from integer-spike rounding flips)")
    if args.json:  # appends one run to {"runs": [...]}, so several input sizes can share one file
        path = Path(args.json)
        path.parent.mkdir(parents=True, exist_ok=True)
        runs = json.loads(path.read_text())["runs"] if path.exists() else []
        path.write_text(json.dumps({"runs": runs + [res]}, indent=2) + "\n")


if __name__ == "__main__":
    main()

"""Peak memory and time of one SMA training step (forward + backward): ours vs the released code's combination.

    python benchmarks/sma_memory.py --T 16 --batch 4 --channels 64 --size 32 --json benchmarks/results/sma_memory_cpu.json

Both variants share the branches and the attention (``SMA.branch_spikes`` / ``SMA.attention``); they differ in how
the weighted sum and AZO are formed:

* ``ours``: ``SMA.forward``: the N branch maps are kept once; AZO edits only the [N, T, B, C] coefficients and adds
  one weighted sum shifted by one step.
* ``released``: the strategy of the released code (the tensor version of Attention ZoneOut,
  docs/papers.md#attention-zoneout): stack the N maps, multiply by the weights, clone, replace the selected entries
  by advanced indexing per scale, sum over scales.

Each variant runs in a fresh process. Memory: what is held after the forward (the autograd graph's saved tensors
plus the output) and the peak over forward + backward, both relative to before the step; on the CPU from the
process RSS with ``MALLOC_MMAP_THRESHOLD_=65536`` (so freed tensors leave the RSS), on CUDA from the allocator.
"""
from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import resource
import time
from pathlib import Path

import torch

from spikescope.layers import SMA


def released_style(sma: SMA, x: torch.Tensor) -> torch.Tensor:
    """The released combination: stack, product, clone, per-scale index replacement, sum."""
    spikes = sma.branch_spikes(x)
    alpha_t, alpha_c = sma.attention(spikes)
    stacked = torch.stack(spikes)  # [N, T, B, C, H, W]
    out = alpha_t[..., None, None, None] * alpha_c[..., None, None] * stacked
    if not (sma.azo and sma.training):
        return out.sum(0)
    mask = sma.zoneout_mask(alpha_t, alpha_c)
    replaced = out.clone()
    if mask is not None:
        for n in range(mask.shape[0]):
            t_idx = mask[n].any(1).nonzero().flatten()
            c_idx = mask[n].any(0).nonzero().flatten()
            if len(t_idx):
                replaced[n, t_idx[:, None], :, c_idx[None, :]] = out[n, t_idx[:, None] - 1, :, c_idx[None, :]]
    return replaced.sum(0)


def _peak_mib(device: str) -> float:
    if device == "cuda":
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _current_mib(device: str) -> float:
    if device == "cuda":
        return torch.cuda.memory_allocated() / 2**20
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _run(variant: str, args: argparse.Namespace, azo: bool, queue) -> None:
    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    sma = SMA(args.channels, args.T, c_reduction=4, t_reduction=4, azo=azo, rcr=10, rtr=4).to(args.device).train()
    x = (torch.randn(args.T, args.batch, args.channels, args.size, args.size, device=args.device) * 2).requires_grad_()
    fn = sma if variant == "ours" else (lambda v: released_style(sma, v))
    if args.device == "cuda":
        fn(x).sum().backward()  # warm-up (kernels); on the CPU a warm-up would set the peak RSS before we measure
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    base_peak, base_now = _peak_mib(args.device), _current_mib(args.device)
    if args.device == "cuda":
        base_peak = base_now  # max_memory_allocated restarts from the current allocation
    t0 = time.perf_counter()
    loss = fn(x).sum()
    held = _current_mib(args.device) - base_now  # what the graph keeps for backward, plus the output
    loss.backward()
    if args.device == "cuda":
        torch.cuda.synchronize()
    queue.put({"variant": variant, "azo": azo, "ms": round((time.perf_counter() - t0) * 1e3, 1),
               "held_after_forward_mib": round(held, 1), "peak_mib": round(_peak_mib(args.device) - base_peak, 1)})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--T", type=int, default=16)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--channels", type=int, default=64)
    ap.add_argument("--size", type=int, default=32)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    # every large CPU allocation gets its own mapping, returned on free: RSS then follows the live tensors
    os.environ.setdefault("MALLOC_MMAP_THRESHOLD_", "65536")
    ctx = mp.get_context("spawn")
    results = []
    for azo in (False, True):
        for variant in ("released", "ours"):
            queue = ctx.Queue()
            proc = ctx.Process(target=_run, args=(variant, args, azo, queue))
            proc.start()
            results.append(queue.get())
            proc.join()
            r = results[-1]
            print(f"{variant:8s} azo={azo!s:5s}: {r['ms']} ms fwd+bwd, held after forward "
                  f"{r['held_after_forward_mib']} MiB, peak +{r['peak_mib']} MiB")
    map_mib = args.T * args.batch * args.channels * args.size**2 * 4 / 2**20
    print(f"(one [T,B,C,H,W] float32 map = {map_mib:.1f} MiB; N = 4 scales)")
    if args.json:
        meta = {"device": torch.cuda.get_device_name() if args.device == "cuda" else platform.processor() or "cpu",
                "torch": torch.__version__, "threads": args.threads,
                "shape": [args.T, args.batch, args.channels, args.size, args.size], "map_mib": round(map_mib, 1),
                "memory_kind": "cuda allocator" if args.device == "cuda" else "process RSS, MALLOC_MMAP_THRESHOLD_=65536"}
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"meta": meta, "results": results}, indent=2) + "\n")


if __name__ == "__main__":
    main()

"""One training iteration of the spiking Mask R-CNN (S and L): time and peak memory at a given batch and size.

Random images with two boxes and masks each; AdamW step included; the first iteration is a warm-up.
CPU (figures in results/dense_cpu.json)::

    OMP_NUM_THREADS=2 PYTHONPATH=src python benchmarks/dense.py --batch 2 --size 512 512 --json benchmarks/results/dense_cpu.json

One Semantic FPN (ADE20K) iteration on square crops instead: ``--task segmentation --size 512 512`` (figures in
results/dense_seg_cpu.json, written by ``benchmarks/dense_seg.py``).

GPU (the released setting: 4 images of 800 x 1216 per GPU)::

    PYTHONPATH=src python benchmarks/dense.py --device cuda --batch 4 --size 800 1216 --json benchmarks/results/dense_gpu.json

:func:`train_iteration` is the function a GPU script can call. CPU memory is the process's peak resident set
(``ru_maxrss``, the whole process), CUDA memory ``torch.cuda.max_memory_allocated``.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import time
from pathlib import Path

import torch

import spikescope.dense  # noqa: F401  (registers maskrcnn_*)
from spikescope.models import create_model


def _targets(batch: int, h: int, w: int, device: torch.device) -> list[dict]:
    out = []
    for i in range(batch):
        boxes = torch.tensor([[0.1 * w, 0.1 * h, 0.5 * w, 0.6 * h], [0.4 * w, 0.3 * h, 0.9 * w, 0.9 * h]], device=device)
        masks = torch.zeros(2, h, w, dtype=torch.bool, device=device)
        for j, (x1, y1, x2, y2) in enumerate(boxes.round().long().tolist()):
            masks[j, y1:y2, x1:x2] = True
        out.append({"boxes": boxes, "labels": torch.tensor([i % 80, (i + 7) % 80], device=device), "masks": masks})
    return out


def train_iteration(size: str = "s", mixer: str = "conv", batch: int = 2, hw: tuple[int, int] = (512, 512),
                    device: str = "cpu", iters: int = 1) -> dict:
    """Seconds per training iteration (mean of ``iters`` after one warm-up) and peak memory (MiB)."""
    dev = torch.device(device)
    torch.manual_seed(0)
    model = create_model(f"maskrcnn_sdt_v3_{size}", mixer=mixer).to(dev).train()
    opt = torch.optim.AdamW(model.parameters(), lr=2e-4, weight_decay=0.05)
    h, w = hw
    images = torch.randn(batch, 3, h, w, device=dev)
    targets = _targets(batch, h, w, dev)

    def step():
        losses = model(images, [(h, w)] * batch, targets)
        opt.zero_grad(set_to_none=True)
        sum(losses.values()).backward()
        opt.step()

    step()
    if dev.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    for _ in range(iters):
        step()
    if dev.type == "cuda":
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated() / 2**20
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"model": f"maskrcnn_sdt_v3_{size}", "mixer": mixer, "batch": batch, "size": list(hw),
            "s_per_iter": (time.perf_counter() - t0) / iters, "peak_mem_mib": peak}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", nargs="+", default=["s", "l"])
    parser.add_argument("--mixer", default="conv")
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--size", type=int, nargs=2, default=[512, 512], metavar=("H", "W"))
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--iters", type=int, default=1)
    parser.add_argument("--json", default=None)
    parser.add_argument("--task", choices=("detection", "segmentation"), default="detection",
                        help="segmentation: one Semantic FPN iteration on --size crops (benchmarks/dense_seg.py)")
    args = parser.parse_args()
    dev = torch.device(args.device)
    results = {"device": torch.cuda.get_device_name(dev) if dev.type == "cuda" else
               f"CPU ({platform.processor() or platform.machine()}), {torch.get_num_threads()} threads "
               f"(OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')})",
               "torch": torch.__version__, "runs": []}
    for size in args.sizes:  # CPU peak RSS is per process and only grows: S first, then L
        if args.task == "segmentation":
            from dense_seg import seg_iteration

            row = seg_iteration(size, {"mixer": args.mixer}, args.batch, args.size[0], args.device, 1, args.iters)
        else:
            row = train_iteration(size, args.mixer, args.batch, tuple(args.size), args.device, args.iters)
        print(f"{row['model']} {args.mixer} batch {args.batch} {args.size[0]}x{args.size[1]}: "
              f"{row['s_per_iter']:.2f} s/iter, peak {row['peak_mem_mib']:.0f} MiB", flush=True)
        results["runs"].append(row)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()

"""One training iteration of the spiking Mask R-CNN (S and L): time and peak memory at a given batch and size.

Random images with two boxes and masks each; AdamW step included; the first iteration is a warm-up.
CPU (figures in results/dense_cpu.json)::

    OMP_NUM_THREADS=2 PYTHONPATH=src python benchmarks/dense.py --batch 1 --size 384 384 --json benchmarks/results/dense_cpu.json

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
from pathlib import Path

import torch
from _timing import time_steps  # benchmarks/_timing.py, beside this script

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


#: ``--dry-run``: a tiny detector at 64 x 64 on the CPU, to check the script end to end in seconds.
TINY = {"backbone": "sdt_v3_t", "embed_dims": (16, 32, 64, 64), "neck_channels": 32, "fc": 64, "rpn_proposals": 50,
        "roi_batch": 32}
TINY_SEG = {"embed_dims": (16, 32, 64, 64), "neck_channels": 16}


def train_iteration(size: str = "s", mixer: str = "conv", batch: int = 2, hw: tuple[int, int] = (512, 512),
                    device: str = "cpu", iters: int = 1, **overrides) -> dict:
    """Seconds per training iteration (mean of ``iters`` after one warm-up) and peak memory (MiB); ``overrides``
    go to the model builder."""
    dev = torch.device(device)
    torch.manual_seed(0)
    model = create_model(f"maskrcnn_sdt_v3_{size}", mixer=mixer, **overrides).to(dev).train()
    opt = torch.optim.AdamW(model.parameters(), lr=2e-4, weight_decay=0.05)
    h, w = hw
    images = torch.randn(batch, 3, h, w, device=dev)
    targets = _targets(batch, h, w, dev)

    def step():
        losses = model(images, [(h, w)] * batch, targets)
        opt.zero_grad(set_to_none=True)
        sum(losses.values()).backward()
        opt.step()

    t = time_steps(step, device, 1, iters)
    peak = t["peak_mib"] if dev.type == "cuda" else t["process_peak_rss_mib"]  # CPU: the whole process
    return {"model": f"maskrcnn_sdt_v3_{size}", "mixer": mixer, "batch": batch, "size": list(hw),
            "s_per_iter": t["s_per_step"], "peak_mem_mib": peak}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", nargs="+", default=["s", "l"])
    parser.add_argument("--mixer", default="conv")
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--size", type=int, nargs=2, default=[512, 512], metavar=("H", "W"))
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--iters", type=int, default=1)
    parser.add_argument("--json", default=None)
    parser.add_argument("--dry-run", action="store_true", help="tiny S detector, batch 1, 64 x 64 (checks the script)")
    parser.add_argument("--task", choices=("detection", "segmentation", "all"), default="detection",
                        help="segmentation: one Semantic FPN iteration on --size crops (benchmarks/dense_seg.py); "
                        "all: both, detection first")
    args = parser.parse_args()
    if args.dry_run:
        args.sizes, args.batch, args.size = ["s"], 1, [64, 64]
    dev = torch.device(args.device)
    results = {"device": torch.cuda.get_device_name(dev) if dev.type == "cuda" else
               f"CPU ({platform.processor() or platform.machine()}), {torch.get_num_threads()} threads "
               f"(OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')})",
               "torch": torch.__version__, "detectors": [], "segmenters": []}
    tasks = ("detection", "segmentation") if args.task == "all" else (args.task,)
    for task in tasks:
        for size in args.sizes:  # CPU peak RSS is per process and only grows: S first, then L
            if task == "segmentation":
                from dense_seg import seg_iteration

                opts = {"mixer": args.mixer, **(TINY_SEG if args.dry_run else {})}
                row = seg_iteration(size, opts, args.batch, args.size[0], args.device, 1, args.iters)
            else:
                row = train_iteration(size, args.mixer, args.batch, tuple(args.size), args.device, args.iters,
                                      **(TINY if args.dry_run else {}))
            row["dry_run"] = args.dry_run
            print(f"{row['model']} {args.mixer} batch {args.batch} {args.size[0]}x{args.size[1]}: "
                  f"{row['s_per_iter']:.2f} s/iter, peak {row['peak_mem_mib']:.0f} MiB", flush=True)
            results["detectors" if task == "detection" else "segmenters"].append(row)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()

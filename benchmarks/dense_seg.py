"""One ADE20K Semantic FPN training iteration (512x512 crops): time and peak memory.

    python benchmarks/dense_seg.py --size s --set mixer=srb --batch 2 --json benchmarks/results/dense_seg_cpu.json
    python benchmarks/dense_seg.py --size l --set mixer=srb --batch 6 --device cuda

An iteration = forward of a random batch of 512x512 crops with random labels (10 % ignored), the released loss,
backward, AdamW update with the head at 2x lr. CUDA memory: ``max_memory_allocated``; CPU: the growth of the
process's peak RSS over the timed iterations. ``benchmarks/dense.py`` calls :func:`seg_iteration` too.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
from pathlib import Path

import torch
from _timing import time_steps  # benchmarks/_timing.py, beside this script

import spikescope.dense.seg  # noqa: F401  (registers semfpn_sdt_v3_*)
from spikescope.models import count_parameters, create_model, parse_overrides


def seg_iteration(size: str = "s", overrides: dict | None = None, batch: int = 2, crop: int = 512,
                  device: str = "cpu", warmup: int = 1, steps: int = 2) -> dict:
    """Time (s per iteration) and peak memory (MiB) of ``semfpn_sdt_v3_<size>`` training iterations."""
    overrides = dict(overrides or {})
    name = f"semfpn_sdt_v3_{size}"
    torch.manual_seed(0)
    model = create_model(name, **overrides).to(device).train()
    x = torch.randn(batch, 3, crop, crop, device=device)
    y = torch.randint(0, model.cfg.num_classes, (batch, crop, crop), device=device)
    y[torch.rand(y.shape, device=device) < 0.1] = 255
    head = {id(p) for p in model.head_parameters()}
    opt = torch.optim.AdamW([{"params": [p for p in model.parameters() if id(p) not in head]},
                             {"params": model.head_parameters(), "lr": 2e-3}], lr=1e-3, weight_decay=0.005)

    def step() -> None:
        loss = model.loss(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    t = time_steps(step, device, warmup, steps)
    dt = t["s_per_step"]
    row = {"model": name, "options": overrides, "params": count_parameters(name, **overrides), "batch": batch,
           "crop": crop, "device": device, "warmup": warmup, "steps": steps, "s_per_iter": round(dt, 3),
           "images_per_s": round(batch / dt, 4), "peak_mem_mib": round(t["peak_mib"], 1), "mem_kind": t["peak_kind"]}
    if not device.startswith("cuda"):
        row["process_peak_rss_mib"] = round(t["process_peak_rss_mib"], 1)
    return row


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--size", action="append", choices=("s", "m", "l"), help="repeatable (default: s and l)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="model option, e.g. mixer=srb")
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--crop", type=int, default=512)
    p.add_argument("--device", default="cpu")
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--steps", type=int, default=2)
    p.add_argument("--json", default=None, help="write the results here")
    args = p.parse_args()
    meta = {"cpu": _cpu_name(), "torch": torch.__version__, "threads": torch.get_num_threads(),
            "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"),
            "load_average_1min_at_start": round(os.getloadavg()[0], 2)}
    if args.device.startswith("cuda"):
        meta["gpu"] = torch.cuda.get_device_name()
    rows = []
    for size in args.size or ["s", "l"]:
        row = seg_iteration(size, parse_overrides(args.set), args.batch, args.crop, args.device, args.warmup,
                            args.steps)
        print(json.dumps(row), flush=True)
        rows.append(row)
        if args.json:  # after every row: a long run that is stopped keeps what it measured
            Path(args.json).write_text(json.dumps({"machine": meta, "results": rows}, indent=2) + "\n")


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


if __name__ == "__main__":
    main()

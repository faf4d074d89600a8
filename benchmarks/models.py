"""Training-step throughput and peak memory of any registered model.

    python benchmarks/models.py --model sdt_v3_s --set mixer=srb --batch 64 --amp bf16 --device cuda
    python benchmarks/models.py --model sma_vgg8_dvs128 --batch 16 --amp fp16 --json benchmarks/results/x.json
    python benchmarks/models.py --model sdt_v3_s --vary mixer=conv,mlpixer,srb --batch 64 --amp bf16
    python benchmarks/models.py --model sma_vgg8_dvs128 --vary azo=true,false --neuron-backend auto,torch --amp fp16

One step = forward, cross-entropy on the time-averaged (flattened) outputs, backward, AdamW update. Prints samples/s and peak
memory (CUDA: ``max_memory_allocated``; CPU: the growth of the process's peak RSS during the timed steps).
``--vary`` may be repeated (one run per combination); ``--neuron-backend`` sets the backend of every LIF / integer-spike
neuron after the model is built (``auto``: the fused/Triton kernels; ``torch``: the reference loop). A run that fails
(e.g. out of memory) is recorded with its error and the others go on.
"""
from __future__ import annotations

import argparse
import itertools
import json
import platform
from pathlib import Path

import torch
import torch.nn.functional as F
from _timing import time_steps  # benchmarks/_timing.py, beside this script

from spikescope.models import create_model, example_input, parse_overrides
from spikescope.neurons import LIF, PLIF, IntegerSpike

AMP = {"none": None, "fp16": torch.float16, "bf16": torch.bfloat16}



def set_neuron_backend(model: torch.nn.Module, backend: str) -> int:
    """Give every LIF / PLIF / IntegerSpike of ``model`` the ``backend``; returns how many neurons were changed."""
    neurons = [m for m in model.modules() if isinstance(m, (LIF, PLIF, IntegerSpike))]
    for m in neurons:
        m.backend = backend
    return len(neurons)


def benchmark(name: str, overrides: dict, batch: int, amp: str, device: str, warmup: int, steps: int,
              neuron_backend: str = "auto", size: int | None = None) -> dict:
    """One model's training-step time and peak memory; ``size`` replaces the input's H = W (smoke runs)."""
    torch.manual_seed(0)
    model = create_model(name, **overrides).to(device).train()
    n_neurons = set_neuron_backend(model, neuron_backend)
    x = example_input(name, batch=batch, timesteps=overrides.get("timesteps"))
    if size is not None:
        x = (torch.rand if x.dim() == 5 else torch.randn)(*x.shape[:-2], size, size)
    x = x.to(device)
    with torch.no_grad():
        num_classes = model(x).flatten(2).shape[-1]  # classifiers give [T, B, classes]
    y = torch.randint(0, num_classes, (batch,), device=device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    scaler = torch.amp.GradScaler(device, enabled=amp == "fp16")
    dtype = AMP[amp]

    def step() -> None:
        with torch.autocast(device_type=device, dtype=dtype or torch.float32, enabled=dtype is not None):
            logits = model(x).float().mean(0).flatten(1)
            loss = F.cross_entropy(logits, y)
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()

    t = time_steps(step, device, warmup, steps)
    dt = t["s_per_step"]
    return {
        "model": name,
        "overrides": overrides,
        "batch": batch,
        "input": list(x.shape),
        "amp": amp,
        "neuron_backend": neuron_backend,
        "neurons": n_neurons,
        "ms_per_step": round(dt * 1e3, 2),
        "samples_per_s": round(batch / dt, 2),
        "peak_mib": round(t["peak_mib"], 1),
        "peak_kind": t["peak_kind"],
        "process_peak_rss_mib": round(t["process_peak_rss_mib"], 1),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, action="append", help="registered name; repeat for several")
    ap.add_argument("--set", default=[], action="append", help="builder override key=value (repeatable)")
    ap.add_argument("--vary", default=[], action="append",
                    help="one run per value of an override, e.g. mixer=conv,mlpixer,srb (repeatable: all combinations)")
    ap.add_argument("--neuron-backend", default="auto", help="comma list of neuron backends, e.g. auto,torch")
    ap.add_argument("--size", type=int, default=None, help="input H = W instead of the model's (smoke runs)")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--amp", choices=list(AMP), default="none")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--json", type=Path, help="also write the results (with the device named) to this file")
    args = ap.parse_args()
    overrides = parse_overrides(args.set)
    axes = []
    for spec in args.vary:
        key, sep, values = spec.partition("=")
        if not sep or not values:
            ap.error(f"--vary {spec!r}: expected KEY=V1,V2,...")
        axes.append([parse_overrides([f"{key}={v}"]) for v in values.split(",")])
    variants = [{**overrides, **{k: v for d in combo for k, v in d.items()}} for combo in itertools.product(*axes)]
    device_name = torch.cuda.get_device_name() if args.device == "cuda" else platform.processor() or "cpu"
    results = []
    for name, ov, nb in itertools.product(args.model, variants, args.neuron_backend.split(",")):
        try:
            r = benchmark(name, ov, args.batch, args.amp, args.device, args.warmup, args.steps, nb, args.size)
        except Exception as e:  # e.g. out of memory: record it, free what it held, go on with the next run
            r = {"model": name, "overrides": ov, "batch": args.batch, "amp": args.amp, "neuron_backend": nb,
                 "error": f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"}
            print(f"{name} {ov or ''} neurons={nb}: {r['error']}")
            results.append(r)
            if args.device == "cuda":
                torch.cuda.empty_cache()
            continue
        if args.device != "cuda" and results:  # ru_maxrss never decreases: only the first run's growth is its own
            r["peak_mib"], r["peak_kind"] = None, "not measured (CPU peak RSS is per process; run one per process)"
        peak = "n/a (CPU: one model per process)" if r["peak_mib"] is None else f"{r['peak_mib']} MiB"
        print(f"{name} {ov or ''} neurons={nb} batch {args.batch} {args.amp}: {r['ms_per_step']} ms/step, "
              f"{r['samples_per_s']} samples/s, peak {peak} ({r['peak_kind']})")
        results.append(r)
        if args.device == "cuda":
            torch.cuda.empty_cache()
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        meta = {"device": device_name, "torch": torch.__version__, "threads": torch.get_num_threads()}
        args.json.write_text(json.dumps({"meta": meta, "results": results}, indent=2) + "\n")


if __name__ == "__main__":
    main()

"""GPU timings of the Triton neuron kernels: what the autotuner picks per N, and BN + integer spike fused or not.

For each case and neurons-per-step N it records the first call (which autotunes every kernel in a new N bucket:
the cost a model pays once per layer shape), the configuration (BLOCK, num_warps) each kernel chose with the
timings of every configuration the autotuner tried, and the median time of one call over interleaved repetitions
next to a same-run copy floor (``buffer.copy_(x)`` moves 2 passes over X: read and write), as the fraction of
the floor's bytes per second the kernel reaches. Fused BN + IntegerSpike inference is timed against the unfused
pair (eval BN, then the Triton IntegerSpike) in the same repetitions: median and 25-75 % spread of the ratio.

    python benchmarks/triton_kernels.py --device cuda --json triton_kernels.json
    TRITON_INTERPRET=1 python benchmarks/triton_kernels.py --device cpu --dry-run   # tiny shapes, the interpreter
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from spikescope.neurons import LIF, PLIF, IntegerSpike, Sigmoid
from spikescope.neurons.integer import BNIntegerSpike
from spikescope.neurons.kernels import triton_integer, triton_lif

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}
TUNERS = {"lif_fwd": triton_lif._lif_fwd_kernel, "lif_bwd": triton_lif._lif_bwd_kernel,
          "int_fwd": triton_integer._int_fwd_kernel, "int_bwd": triton_integer._int_bwd_kernel,
          "bn_int_fwd": triton_integer._bn_int_fwd_kernel}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _seconds(fn: Callable[[], None], device: torch.device) -> float:
    _sync(device)
    t0 = time.perf_counter()
    fn()
    _sync(device)
    return time.perf_counter() - t0


def _spread(values: list[float]) -> dict:
    q = statistics.quantiles(values, n=4) if len(values) > 1 else [values[0]] * 3
    return {"median": statistics.median(values), "p25": q[0], "p75": q[2]}


def _config(c) -> str:
    return f"{c.kwargs['BLOCK']}x{c.num_warps}"


def first_call(fn: Callable[[], None], device: torch.device) -> tuple[float, dict]:
    """Seconds of ``fn()`` (autotuning included when its N bucket is new) and, per kernel it launched, the
    configuration it ran with and the timings of that tuning (ms; empty when it was tuned before)."""
    for tuner in TUNERS.values():
        tuner.best_config, tuner.configs_timings = None, None
    seconds = _seconds(fn, device)
    out = {}
    for name, tuner in TUNERS.items():
        if tuner.best_config is not None:
            timings = tuner.configs_timings or {}
            out[name] = {"config": _config(tuner.best_config),
                         "tuned_ms": {_config(c): t[0] for c, t in timings.items()}}
    return seconds, out


def neuron_cases(dtype: torch.dtype) -> dict[str, tuple[Callable[[torch.Tensor, torch.Tensor], None], float]]:
    """Name -> (one call on x with the incoming gradient g, passes over X it moves at the floor)."""
    lif = LIF(tau=2.0, v_threshold=1.0, surrogate=Sigmoid(4.0), backend="triton")
    plif = PLIF(v_threshold=1.0, surrogate=Sigmoid(4.0), backend="triton")
    spike = IntegerSpike(4, backend="triton")

    def fwd_bwd(neuron):
        def run(x, g):
            neuron(x).backward(g)
        return run

    def infer(x, g):
        with torch.no_grad():
            spike(x)

    return {"LIF fwd+bwd": (fwd_bwd(lif), 6.0), "PLIF fwd+bwd": (fwd_bwd(plif), 7.0 if dtype == torch.float32 else 9.0),
            "IntegerSpike inference": (infer, 2.0)}


def bench_neurons(dname: str, T: int, sizes: list[int], device: torch.device, reps: int) -> list[dict]:
    dtype = DTYPES[dname]
    rows = []
    for n in sizes:
        x = (torch.randn(T, n, device=device) * 1.5).to(dtype)
        buf = torch.empty_like(x)
        cases = neuron_cases(dtype)
        g = torch.ones_like(x)
        for name, (run, passes) in cases.items():
            def call(run=run, xr=x.detach().requires_grad_(name.endswith("fwd+bwd")), g=g):
                xr.grad = None
                run(xr, g)

            first, choices = first_call(call, device)
            times, floors = [], []
            for _ in range(reps):
                floors.append(_seconds(lambda buf=buf, x=x: buf.copy_(x), device))
                times.append(_seconds(call, device))
            ratio = [passes / 2 * f / t for f, t in zip(floors, times)]  # the copy moves 2 passes
            rows.append({"case": name, "dtype": dname, "T": T, "neurons_per_step": n, "first_call_s": first,
                         "ms": _spread([t * 1e3 for t in times]), "fraction_of_copy_floor": _spread(ratio),
                         "kernels": choices})
    return rows


def bench_bn_fused(dname: str, shape: tuple[int, ...], device: torch.device, reps: int) -> dict:
    """Eval BN + IntegerSpike inference on ``[T, B, C, H, W]``: fused kernel vs the unfused pair, interleaved."""
    dtype = DTYPES[dname]
    bn = nn.BatchNorm2d(shape[2]).to(device).eval()
    with torch.no_grad():
        bn.running_var.uniform_(0.5, 2.0)
        bn.bias.uniform_(0.0, 2.0)
    spike = IntegerSpike(4, backend="triton")
    fused = BNIntegerSpike(bn, spike).to(device).eval()
    x = (torch.randn(shape, device=device) * 2).to(dtype)

    def unfused():
        with torch.no_grad():
            spike(bn(x.flatten(0, 1)).unflatten(0, x.shape[:2]))

    def one_pass():
        with torch.no_grad():
            fused(x)

    first, choices = first_call(one_pass, device)
    first = {"fused": first, "unfused": first_call(unfused, device)[0]}
    t_f, t_u = [], []
    for i in range(reps):
        for label, fn in ((("fused", one_pass), ("unfused", unfused)) if i % 2 == 0 else
                          (("unfused", unfused), ("fused", one_pass))):
            (t_f if label == "fused" else t_u).append(_seconds(fn, device))
    return {"case": "BN + IntegerSpike inference", "dtype": dname, "shape": list(shape), "first_call_s": first,
            "fused_ms": _spread([t * 1e3 for t in t_f]), "unfused_ms": _spread([t * 1e3 for t in t_u]),
            "speedup": _spread([u / f for u, f in zip(t_u, t_f)]), "kernels": choices}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda", help="cuda, or cpu with TRITON_INTERPRET=1 (slow: --dry-run)")
    parser.add_argument("--dry-run", action="store_true", help="tiny shapes, one repetition (proves the script)")
    parser.add_argument("--reps", type=int, default=20)
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("triton_kernels.py: error: --device cuda but no CUDA device; use --device cpu --dry-run")
    if device.type == "cpu" and not triton_lif.INTERPRETED:
        raise SystemExit("triton_kernels.py: error: --device cpu needs TRITON_INTERPRET=1 (the Triton interpreter)")
    if args.dry_run:
        T, sizes, bn_shape, reps = 2, [300], (2, 2, 3, 5, 5), 1
    else:  # 0.6 M: late-stage layers (a wave or less at BLOCK 1024); 3.2 M; 25.7 M: [64, 128, 56, 56]
        T, sizes, bn_shape, reps = 4, [602_112, 3_211_264, 25_690_112], (1, 64, 256, 14, 14), args.reps
    for tuner in TUNERS.values():
        tuner.cache_results = False  # time the tuning itself, not a pick read back from Triton's cache
    results = []
    for dname in DTYPES:
        results += bench_neurons(dname, T, sizes, device, reps)
        results.append(bench_bn_fused(dname, bn_shape, device, reps))
    env = {"device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu (Triton interpreter)",
           "torch": torch.__version__, "triton": __import__("triton").__version__,
           "configs": [_config(c) for c in triton_lif.launch_configs()]}
    payload = {"env": env, "results": results}
    for r in results:
        if "fused_ms" in r:
            print(f"{r['case']:28s} {r['dtype']} {r['shape']}: fused {r['fused_ms']['median']:.3f} ms, unfused "
                  f"{r['unfused_ms']['median']:.3f} ms, speedup {r['speedup']['median']:.2f}x")
        else:
            picked = ", ".join(f"{k} {v['config']}" for k, v in r["kernels"].items())
            print(f"{r['case']:28s} {r['dtype']} N={r['neurons_per_step']}: {r['ms']['median']:.3f} ms, "
                  f"{r['fraction_of_copy_floor']['median']:.0%} of the copy floor, first call "
                  f"{r['first_call_s']:.2f} s [{picked}]")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(payload, indent=2) + "\n")
    return payload


if __name__ == "__main__":
    main(sys.argv[1:])

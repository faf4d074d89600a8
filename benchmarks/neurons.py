"""Forward+backward benchmark of the multi-step LIF neuron per backend and dtype.

For each (backend, dtype) it reports the median fwd+bwd time over ``--reps`` runs, the peak memory of one fwd+bwd
(CUDA: the caching allocator's peak; CPU: the peak of the profiler's allocation trace, op by op, so approximate) above the input and the
incoming gradient, and the bytes saved for backward (``torch.autograd.graph.saved_tensors_hooks``, each storage
counted once). On CUDA it also reports GB/s and the fraction of the bandwidth floor: 6 passes over the ``[T, N]``
tensor (read X, write S, write and read what backward keeps, read dL/dS, write dL/dX) at the device-to-device copy
rate measured in the same run; and SpikingJelly 2.0 ``LIFNode(step_mode="m")`` side by side when it imports.

The neuron is SpikingJelly's ``LIFNode`` default: tau 2, V_th 1, hard reset to 0, decay_input, Sigmoid(4).

    python benchmarks/neurons.py --shape 4,32,64,32,32 --dtype fp32,bf16 --reps 7 --json out.json
    python benchmarks/neurons.py --shape 4,64,128,56,56 --dtype fp32,bf16 --backends torch,compile,fused,triton,spikingjelly
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from collections.abc import Callable

import torch

from spikescope.neurons import LIF, Sigmoid

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
PASSES = 6


def make_neuron(backend: str, device: torch.device) -> Callable[[torch.Tensor], torch.Tensor]:
    """A callable ``x [T, ...] -> spikes`` for a spikescope backend or ``"spikingjelly"``."""
    if backend != "spikingjelly":
        return LIF(tau=2.0, v_threshold=1.0, v_reset=0.0, surrogate=Sigmoid(4.0), backend=backend).to(device)
    from spikingjelly.activation_based import neuron, surrogate

    sj_backend = next(b for b in ("triton", "cupy", "torch") if b in neuron.LIFNode(step_mode="m").supported_backends)
    node = neuron.LIFNode(tau=2.0, surrogate_function=surrogate.Sigmoid(alpha=4.0), step_mode="m",
                          backend=sj_backend if device.type == "cuda" else "torch").to(device)

    def run(x: torch.Tensor) -> torch.Tensor:
        node.reset()
        return node(x)

    run.sj_backend = node.backend  # type: ignore[attr-defined]
    return run


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def fwd_bwd(fn, x: torch.Tensor, g: torch.Tensor) -> None:
    x.grad = None
    fn(x).backward(g)


def time_ms(fn, x, g, reps: int, warmup: int) -> list[float]:
    device = x.device
    for _ in range(warmup):
        fwd_bwd(fn, x, g)
    times = []
    for _ in range(reps):
        _sync(device)
        t0 = time.perf_counter()
        fwd_bwd(fn, x, g)
        _sync(device)
        times.append((time.perf_counter() - t0) * 1e3)
    return times


def saved_bytes(fn, x: torch.Tensor) -> int:
    """Bytes of the distinct storages autograd keeps for backward after one forward."""
    seen: dict[int, int] = {}

    def pack(t: torch.Tensor):
        seen[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = fn(x)
    del out
    return sum(seen.values())


def peak_bytes(fn, x: torch.Tensor, g: torch.Tensor) -> int | None:
    """Peak memory allocated during one fwd+bwd, above what was allocated before it (x and g)."""
    if x.device.type == "cuda":
        torch.cuda.synchronize()
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        fwd_bwd(fn, x, g)
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated() - base
    from torch.profiler import ProfilerActivity, profile

    x.grad = None
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fwd_bwd(fn, x, g)
    # allocations made inside an op are that op's "self" memory; "[memory]" events are those made outside any op
    events = sorted(prof.events(), key=lambda e: e.time_range.start)
    running = peak = 0
    for e in events:
        running += e.cpu_memory_usage if e.name == "[memory]" else e.self_cpu_memory_usage
        peak = max(peak, running)
    return peak


def copy_rate_gbs(x: torch.Tensor, reps: int) -> float:
    """Device-to-device copy bandwidth (read + write) in GB/s, median of ``reps``."""
    y = torch.empty_like(x)
    rates = []
    for _ in range(reps + 2):
        _sync(x.device)
        t0 = time.perf_counter()
        y.copy_(x)
        _sync(x.device)
        rates.append(2 * x.numel() * x.element_size() / (time.perf_counter() - t0) / 1e9)
    return statistics.median(rates[2:])


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            return next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()


def environment(device: torch.device) -> dict:
    try:
        import triton

        triton_version = triton.__version__
    except ImportError:
        triton_version = None
    env = {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "processor": cpu_name(),
        "torch": torch.__version__,
        "triton": triton_version,
        "threads": torch.get_num_threads(),
    }
    try:
        import spikingjelly

        env["spikingjelly"] = getattr(spikingjelly, "__version__", "unknown")
    except ImportError:
        pass
    return env


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shape", default="4,32,64,32,32", help="[T,B,C,H,W] as a comma list (T first)")
    ap.add_argument("--dtype", default="fp32", help="comma list of fp32, fp16, bf16")
    ap.add_argument("--backends", default=None,
                    help="comma list of torch, fused, compile, triton, spikingjelly "
                         "(default: torch,fused on CPU; torch,compile,fused,triton,spikingjelly on CUDA)")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--json", default=None, help="write the figures to this file")
    args = ap.parse_args(argv)

    device = torch.device(args.device)
    shape = tuple(int(s) for s in args.shape.split(","))
    default_backends = "torch,compile,fused,triton,spikingjelly" if device.type == "cuda" else "torch,fused"
    backends = (args.backends or default_backends).split(",")
    env = environment(device)
    print(" ".join(f"{k}={v}" for k, v in env.items()), f"shape={list(shape)}")
    results = []
    for dname in args.dtype.split(","):
        dtype = DTYPES[dname]
        gen = torch.Generator().manual_seed(0)
        x = (torch.randn(shape, generator=gen) * 1.5 + 0.5).to(device, dtype).requires_grad_(True)
        g = torch.randn(shape, generator=gen).to(device, dtype)
        nbytes = x.numel() * x.element_size()
        floor_ms = None
        if device.type == "cuda":
            rate = copy_rate_gbs(x.detach(), args.reps)
            floor_ms = PASSES * nbytes / (rate * 1e9) * 1e3
            print(f"[{dname}] device copy {rate:.0f} GB/s -> bandwidth floor ({PASSES} passes) {floor_ms:.3f} ms")
        for backend in backends:
            row = {"backend": backend, "dtype": dname}
            try:
                fn = make_neuron(backend, device)
                times = time_ms(fn, x, g, args.reps, args.warmup)
                row.update(
                    ms_median=statistics.median(times), ms_min=min(times), ms_all=[round(t, 3) for t in times],
                    peak_mib=(lambda b: None if b is None else b / 2**20)(peak_bytes(fn, x, g)),
                    saved_mib=saved_bytes(fn, x) / 2**20,
                )
                if hasattr(fn, "sj_backend"):
                    row["sj_backend"] = fn.sj_backend
                if floor_ms is not None:
                    row["gb_s"] = PASSES * nbytes / (row["ms_median"] * 1e-3) / 1e9
                    row["fraction_of_floor"] = floor_ms / row["ms_median"]
            except Exception as e:  # one backend failing (e.g. SpikingJelly missing) must not stop the others
                row["error"] = f"{type(e).__name__}: {e}"
            results.append(row)
            print(_format(row))
    command = "python benchmarks/neurons.py " + " ".join(sys.argv[1:] if argv is None else argv)
    out = {"env": env, "command": command, "shape": list(shape), "reps": args.reps, "passes": PASSES,
           "results": results}
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=2)
    return out


def _format(r: dict) -> str:
    if "error" in r:
        return f"  {r['backend']:>13s} {r['dtype']}: {r['error']}"
    peak = "n/a" if r["peak_mib"] is None else f"{r['peak_mib']:8.1f}"
    line = (f"  {r['backend']:>13s} {r['dtype']}: {r['ms_median']:9.3f} ms fwd+bwd (min {r['ms_min']:.3f}), "
            f"peak {peak} MiB, saved for backward {r['saved_mib']:7.1f} MiB")
    if "gb_s" in r:
        line += f", {r['gb_s']:.0f} GB/s, {100 * r['fraction_of_floor']:.1f}% of floor"
    return line


if __name__ == "__main__":
    main()

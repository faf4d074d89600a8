"""Forward+backward benchmark of the multi-step LIF neuron: backends side by side, interleaved, against a copy floor.

Every repetition times one fwd+bwd of each backend in turn (the order rotates from one repetition to the next) and,
in the same repetition, the copy floor: 3 copies of the ``[T, N]`` input into a buffer allocated once, i.e. 6 passes
over it (read X, write S, write and read what backward keeps, read dL/dS, write dL/dX) at the rate this device
copies right now. Because all of them run within one repetition, a load spike from other processes affects them
alike, so the per-repetition ratios (a backend's time over the baseline's, and the floor over a backend's time) are
what to read on a shared machine; each is reported as the median with the 25th-75th percentile spread. The load
average before and after the run is in the JSON.

Per backend it also reports the time of the first call (the cold start: ``compile`` compiles, ``cpu`` loads or
builds its kernels), the bytes saved for backward (``torch.autograd.graph.saved_tensors_hooks``, each storage
counted once) and the peak memory of one fwd+bwd (CUDA: the caching allocator's peak; CPU: the profiler's
allocation trace, op by op, so approximate). ``--t-scan`` times the same backends at several T for a fixed step
size and reports milliseconds per step. SpikingJelly 2.0 ``LIFNode(step_mode="m")`` runs as the ``spikingjelly``
backend when it imports (its torch path on the CPU, its CUDA kernels on a GPU; it is not a dependency).

The neuron is SpikingJelly's ``LIFNode`` default: tau 2, V_th 1, hard reset to 0, decay_input, Sigmoid(4);
``--surrogate atan`` swaps in ATan(2) on both sides (the surrogate of the SDT models), whose backward needs no exp.

    OMP_NUM_THREADS=1 python benchmarks/neurons.py --shape 4,32,64,32,32 --dtype fp32,bf16 --reps 15 \\
        --t-scan 4,64 --json benchmarks/results/neurons_cpu.json
    python benchmarks/neurons.py --device cuda --shape 4,64,128,56,56 --dtype fp32,bf16 --json neurons_gpu.json
"""
from __future__ import annotations

import argparse
import importlib.metadata
import json
import logging
import os
import platform
import statistics
import sys
import time
import types
import warnings
from collections.abc import Callable

os.environ.setdefault("KINETO_LOG_LEVEL", "5")  # the CPU profiler (peak memory) must not log GPU probing errors

import torch  # noqa: E402

from spikescope.neurons import LIF, ATan, Sigmoid  # noqa: E402
from spikescope.neurons.kernels import cpu as cpu_kernels  # noqa: E402

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
PASSES = 6
CPU_BACKENDS = "torch,fused,cpu,compile,spikingjelly"
CUDA_BACKENDS = "torch,compile,fused,triton,spikingjelly"


def _import_spikingjelly():
    """SpikingJelly 2.0's neuron modules; its logger needs ``loguru``, replaced by a stdlib logger if missing."""
    try:
        import loguru  # noqa: F401
    except ImportError:
        shim = types.ModuleType("loguru")
        shim.logger = types.SimpleNamespace(  # the calls SpikingJelly makes; all routed to a silent stdlib logger
            **{n: getattr(logging.getLogger("spikingjelly"), n) for n in ("debug", "info", "warning", "error")},
            disable=lambda *a: None, enable=lambda *a: None, opt=lambda *a, **k: logging.getLogger("spikingjelly"),
        )
        sys.modules["loguru"] = shim
    from spikingjelly.activation_based import neuron, surrogate

    return neuron, surrogate


SURROGATES = {"sigmoid": (Sigmoid, 4.0, "Sigmoid"), "atan": (ATan, 2.0, "ATan")}  # ours, alpha, SpikingJelly's name


def make_neuron(backend: str, device: torch.device, surrogate_name: str = "sigmoid"
                ) -> Callable[[torch.Tensor], torch.Tensor]:
    """A callable ``x [T, ...] -> spikes`` for a spikescope backend or ``"spikingjelly"``."""
    ours, alpha, sj_name = SURROGATES[surrogate_name]
    if backend != "spikingjelly":
        return LIF(tau=2.0, v_threshold=1.0, v_reset=0.0, surrogate=ours(alpha), backend=backend).to(device)
    neuron, surrogate = _import_spikingjelly()
    node = neuron.LIFNode(tau=2.0, surrogate_function=getattr(surrogate, sj_name)(alpha=alpha),
                          step_mode="m").to(device)

    def run(x: torch.Tensor) -> torch.Tensor:
        node.reset()
        return node(x)

    # SpikingJelly 2.0 picks its implementation per device: the torch ops on the CPU, CUDA kernels on a GPU
    run.sj_backend = ("cuda:" + os.environ.get("SJ_LIF_CUDA_IMPLEMENTATION", "auto")  # type: ignore[attr-defined]
                      if device.type == "cuda" else "torch")
    return run


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def fwd_bwd(fn, x: torch.Tensor, g: torch.Tensor) -> None:
    x.grad = None
    fn(x).backward(g)


def timed(fn, device: torch.device) -> float:
    """Milliseconds of one ``fn()``."""
    _sync(device)
    t0 = time.perf_counter()
    fn()
    _sync(device)
    return (time.perf_counter() - t0) * 1e3


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
    cpu_kernels.empty_cache()  # so that the cpu backend's buffers are allocated (and seen) again
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fwd_bwd(fn, x, g)
    # allocations made inside an op are that op's "self" memory; "[memory]" events are those made outside any op
    events = sorted(prof.events(), key=lambda e: e.time_range.start)
    running = peak = 0
    for e in events:
        running += e.cpu_memory_usage if e.name == "[memory]" else e.self_cpu_memory_usage
        peak = max(peak, running)
    return peak


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            return next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()


def load_average() -> list[float] | None:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return None


def environment(device: torch.device) -> dict:
    try:
        import triton

        triton_version = triton.__version__
    except ImportError:
        triton_version = None
    env = {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "processor": cpu_name(),
        "logical_cpus": os.cpu_count(),
        "torch": torch.__version__,
        "triton": triton_version,
        "threads": torch.get_num_threads(),
    }
    try:
        env["spikingjelly"] = importlib.metadata.version("spikingjelly")
    except importlib.metadata.PackageNotFoundError:
        pass
    return env


def spread(values: list[float]) -> dict:
    """Median and the 25th / 75th percentiles."""
    if len(values) == 1:
        return {"median": values[0], "p25": values[0], "p75": values[0]}
    q = statistics.quantiles(values, n=4, method="inclusive")
    return {"median": statistics.median(values), "p25": q[0], "p75": q[2]}


def bench_dtype(dname: str, shape: tuple[int, ...], backends: list[str], device: torch.device, reps: int,
                warmup: int, baselines: list[str], surrogate: str = "sigmoid") -> list[dict]:
    """All backends at one dtype, interleaved; returns one row per backend plus the copy floor row."""
    dtype = DTYPES[dname]
    gen = torch.Generator().manual_seed(0)
    x = (torch.randn(shape, generator=gen) * 1.5 + 0.5).to(device, dtype).requires_grad_(True)
    g = torch.randn(shape, generator=gen).to(device, dtype)
    xd, copy_dst = x.detach(), torch.empty_like(x, requires_grad=False)
    rows, fns = {}, {}
    for backend in backends:
        row = rows[backend] = {"backend": backend, "dtype": dname}
        try:
            fn = make_neuron(backend, device, surrogate)
            row["first_call_s"] = timed(lambda fn=fn: fwd_bwd(fn, x, g), device) / 1e3
            for _ in range(warmup):
                fwd_bwd(fn, x, g)
            fns[backend] = fn
            if hasattr(fn, "sj_backend"):
                row["sj_backend"] = fn.sj_backend
        except Exception as e:  # one backend failing (e.g. SpikingJelly missing) must not stop the others
            row["error"] = f"{type(e).__name__}: {e}"
    times: dict[str, list[float]] = {b: [] for b in fns}
    floor: list[float] = []
    order = list(fns)
    for rep in range(reps):
        floor.append(timed(lambda: [copy_dst.copy_(xd) for _ in range(PASSES // 2)], device))
        for backend in order[rep % len(order):] + order[:rep % len(order)]:
            times[backend].append(timed(lambda b=backend: fwd_bwd(fns[b], x, g), device))
    for backend, ts in times.items():
        row = rows[backend]
        row["ms"] = spread(ts)
        row["ms_all"] = [round(t, 3) for t in ts]
        row["fraction_of_floor"] = spread([f / t for f, t in zip(floor, ts)])
        for base in (b for b in baselines if b in times):
            row[f"speedup_vs_{base}"] = spread([b / t for b, t in zip(times[base], ts)])
        try:
            row["saved_mib"] = saved_bytes(fns[backend], x) / 2**20
            peak = peak_bytes(fns[backend], x, g)
            row["peak_mib"] = None if peak is None else peak / 2**20
        except Exception as e:
            row["error"] = f"{type(e).__name__}: {e}"
        if device.type == "cuda":
            row["gb_s"] = PASSES * x.numel() * x.element_size() / (row["ms"]["median"] * 1e-3) / 1e9
    floor_row = {"backend": "copy floor", "dtype": dname, "ms": spread(floor), "ms_all": [round(t, 3) for t in floor],
                 "gb_s": PASSES * x.numel() * x.element_size() / (statistics.median(floor) * 1e-3) / 1e9}
    return [floor_row, *rows.values()]


def t_scan(dname: str, steps: list[int], step_shape: tuple[int, ...], backends: list[str], device: torch.device,
           reps: int, surrogate: str = "sigmoid") -> list[dict]:
    """Milliseconds per step of one fwd+bwd at each T (fixed step shape), interleaved over T and backends."""
    dtype = DTYPES[dname]
    gen = torch.Generator().manual_seed(1)
    inputs = {}
    for T in steps:
        x = (torch.randn((T, *step_shape), generator=gen) * 1.5 + 0.5).to(device, dtype).requires_grad_(True)
        inputs[T] = (x, torch.randn(x.shape, generator=gen).to(device, dtype))
    fns = {b: make_neuron(b, device, surrogate) for b in backends}
    for fn in fns.values():
        for x, g in inputs.values():
            fwd_bwd(fn, x, g)
    per_step: dict[tuple[str, int], list[float]] = {(b, T): [] for b in fns for T in steps}
    for _ in range(reps):
        for b, fn in fns.items():
            for T, (x, g) in inputs.items():
                per_step[(b, T)].append(timed(lambda fn=fn, x=x, g=g: fwd_bwd(fn, x, g), device) / T)
    rows = []
    for b in fns:
        row = {"backend": b, "dtype": dname, "step_shape": list(step_shape),
               "ms_per_step": {str(T): spread(per_step[(b, T)]) for T in steps}}
        last, first = steps[-1], steps[0]
        row[f"per_step_ratio_T{last}_over_T{first}"] = spread(
            [a / c for a, c in zip(per_step[(b, last)], per_step[(b, first)])])
        rows.append(row)
    return rows


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shape", default="4,32,64,32,32", help="[T,B,C,H,W] as a comma list (T first)")
    ap.add_argument("--dtype", default="fp32", help="comma list of fp32, fp16, bf16")
    ap.add_argument("--backends", default=None,
                    help=f"comma list of torch, fused, cpu, compile, triton, spikingjelly (default: {CPU_BACKENDS} "
                         f"on the CPU, {CUDA_BACKENDS} on CUDA)")
    ap.add_argument("--device", default="auto", help="auto (cuda when a device is usable, else cpu), cpu or cuda[:i]")
    ap.add_argument("--reps", type=int, default=7, help="interleaved repetitions")
    ap.add_argument("--warmup", type=int, default=2, help="untimed calls per backend after the first")
    ap.add_argument("--baseline", default="spikingjelly,compile",
                    help="comma list of backends the per-repetition speedups are against")
    ap.add_argument("--t-scan", default=None, help="comma list of T for the per-step scan, e.g. 4,64")
    ap.add_argument("--t-scan-shape", default="8,64,32,32",
                    help="the step shape of --t-scan (large enough that no T fits in the caches)")
    ap.add_argument("--t-scan-backends", default="cpu,fused", help="backends of --t-scan")
    ap.add_argument("--surrogate", default="sigmoid", choices=sorted(SURROGATES),
                    help="sigmoid: Sigmoid(4), SpikingJelly's default; atan: ATan(2)")
    ap.add_argument("--json", default=None, help="write the figures to this file")
    args = ap.parse_args(argv)

    device = torch.device(_auto_device() if args.device == "auto" else args.device)
    if device.type == "cuda" and not _auto_device() == "cuda":
        ap.error(f"--device {args.device}: no CUDA device here; use --device cpu")
    shape = tuple(int(s) for s in args.shape.split(","))
    backends = (args.backends or (CUDA_BACKENDS if device.type == "cuda" else CPU_BACKENDS)).split(",")
    env = environment(device)
    env["load_average_before"] = load_average()
    print(" ".join(f"{k}={v}" for k, v in env.items()), f"shape={list(shape)} surrogate={args.surrogate}")
    results = []
    for dname in args.dtype.split(","):
        for row in bench_dtype(dname, shape, backends, device, args.reps, args.warmup, args.baseline.split(","),
                               args.surrogate):
            results.append(row)
            print(_format(row, args.baseline.split(",")))
    scan = []
    if args.t_scan:
        steps = [int(s) for s in args.t_scan.split(",")]
        step_shape = tuple(int(s) for s in args.t_scan_shape.split(","))
        for dname in args.dtype.split(","):
            for row in t_scan(dname, steps, step_shape, args.t_scan_backends.split(","), device, args.reps,
                              args.surrogate):
                scan.append(row)
                per = ", ".join(f"T={T}: {v['median']:.3f}" for T, v in row["ms_per_step"].items())
                print(f"  {row['backend']:>13s} {dname} ms per step {per}")
    env["load_average_after"] = load_average()
    command = "python benchmarks/neurons.py " + " ".join(sys.argv[1:] if argv is None else argv)
    out = {"env": env, "command": command, "shape": list(shape), "surrogate": args.surrogate, "reps": args.reps,
           "passes": PASSES,
           "baselines": args.baseline.split(","), "results": results, "t_scan": scan}
    if args.json:
        tmp = args.json + ".tmp"
        with open(tmp, "w") as f:
            json.dump(out, f, indent=2)
        os.replace(tmp, args.json)
    return out


def _auto_device() -> str:
    """"cuda" when a CUDA device is usable; asking a CPU-only machine prints no driver warning."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return "cuda" if torch.cuda.is_available() else "cpu"


def _format(r: dict, baselines: list[str]) -> str:
    if "error" in r and "ms" not in r:
        return f"  {r['backend']:>13s} {r['dtype']}: {r['error']}"
    ms = r["ms"]
    line = f"  {r['backend']:>13s} {r['dtype']}: {ms['median']:9.3f} ms fwd+bwd [{ms['p25']:.3f}, {ms['p75']:.3f}]"
    if r["backend"] == "copy floor":
        return line + f" ({PASSES} passes, {r['gb_s']:.1f} GB/s)"
    if "fraction_of_floor" in r:
        line += f", {100 * r['fraction_of_floor']['median']:.1f}% of floor"
    for base in baselines:
        if f"speedup_vs_{base}" in r:
            line += f", {r[f'speedup_vs_{base}']['median']:.2f}x vs {base}"
    if r.get("saved_mib") is not None:
        line += f", saved {r['saved_mib']:.1f} MiB"
    if r.get("peak_mib") is not None:
        line += f", peak {r['peak_mib']:.1f} MiB"
    return line + f", first call {r.get('first_call_s', float('nan')):.2f} s"


if __name__ == "__main__":
    main()

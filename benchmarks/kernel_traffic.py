"""Static memory traffic of the Triton neuron kernels on a GPU target, read from the compiled code: no GPU needed.

Every call below goes through the public modules (``LIF``, ``PLIF``, ``IntegerSpike`` with ``backend="triton"``) on
CPU tensors; each kernel launch is intercepted and compiled ahead of time for the target (default ``sm_90``, the
H100) with the specialisation the JIT would use for these arguments, instead of being run. From the PTX it counts
the global-memory bytes one thread moves per trip of the loop over T (the whole kernel for the loop-free
``IntegerSpike`` kernels) and divides by the elements a thread owns. That is the bytes per element and timestep, and
in units of the input's element size the number of passes over ``[T, N]``: the bandwidth floor of
``benchmarks/neurons.py`` assumes 6 for a fwd+bwd. Registers and local memory (spills) come from ``cuobjdump``.

The kernels are autotuned over ``triton_lif.GPU_CONFIGS`` (BLOCK x num_warps): every launch is compiled once per
configuration, so the table holds the traffic, registers and spills of every configuration the GPU may pick.

It also counts the launches of one forward and one backward through each neuron (``--launches``): Triton kernel
launches plus the ATen ops that would launch a CUDA kernel (views and uninitialised allocations excluded), inside
spikescope's custom ops too.

These are properties of the generated code, not timings: moving exactly the floor's bytes is necessary for reaching
the floor, and whether the GPU then streams them at its copy rate is what ``benchmarks/neurons.py`` measures.

    python benchmarks/kernel_traffic.py --json benchmarks/results/neurons_sm90_traffic.json
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

os.environ["TRITON_INTERPRET"] = "0"  # compiled kernels: the interpreter has no PTX

import torch  # noqa: E402
import triton  # noqa: E402
from torch._library.custom_ops import OPDEFS  # noqa: E402
from torch.utils._python_dispatch import TorchDispatchMode  # noqa: E402
from triton.backends.compiler import GPUTarget  # noqa: E402
from triton.compiler import ASTSource, make_backend  # noqa: E402
from triton.runtime.jit import create_function_from_signature  # noqa: E402

from spikescope.neurons import LIF, PLIF, IntegerSpike, Rectangle, Sigmoid  # noqa: E402
from spikescope.neurons.integer import BNIntegerSpike  # noqa: E402
from spikescope.neurons.kernels import triton_integer, triton_lif  # noqa: E402
from spikescope.neurons.params import LIFParams  # noqa: E402

KERNELS = (*triton_lif._KERNELS, *triton_integer.KERNELS)  # the autotuners
_MEM_OP = re.compile(r"\b(?:ld|st)\.global(?:\.[a-z]\w*)*?(?:\.v(\d))?\.[bfsu](\d+)\b")


@dataclass
class KernelFigures:
    """One compiled launch: bytes per element (and timestep), passes in input-element units, registers, spills."""

    case: str
    kernel: str
    block: int
    num_warps: int
    bytes_per_element: float
    passes: float
    registers: int
    local_bytes: int


def global_bytes_per_thread(ptx: str) -> int:
    """Global bytes one thread loads and stores in the kernel's loop body (the whole kernel when it has no loop)."""
    lines = ptx.splitlines()
    head = next((i for i, line in enumerate(lines) if "Inner Loop Header" in line), None)
    if head is not None:
        label = lines[head].split(":")[0].strip()
        end = next(i for i in range(head + 1, len(lines)) if re.search(rf"\bbra(?:\.uni)?\s+{re.escape(label)};", lines[i]))
        lines = lines[head:end]
    total = 0
    for line in lines:
        m = _MEM_OP.search(line)
        if m:
            total += int(m.group(1) or 1) * int(m.group(2)) // 8
    return total


def resource_usage(cubin: bytes) -> tuple[int, int]:
    """(registers per thread, local-memory bytes per thread) from ``cuobjdump --dump-resource-usage``."""
    tool = Path(triton.backends.nvidia.__file__).parent / "bin" / "cuobjdump"
    with tempfile.NamedTemporaryFile(suffix=".cubin") as fh:
        fh.write(cubin)
        fh.flush()
        out = subprocess.run([str(tool), "--dump-resource-usage", fh.name], capture_output=True, text=True,
                             check=True).stdout
    return int(re.search(r"REG:(\d+)", out).group(1)), int(re.search(r"LOCAL:(\d+)", out).group(1))


class AheadOfTimeLaunches:
    """Within ``with``: Triton kernel launches compile for ``target`` (once per autotuning configuration) and are
    recorded instead of run; ``launches`` counts the launches themselves."""

    def __init__(self, arch: int = 90):
        self.target = GPUTarget("cuda", arch, 32)
        self.backend = make_backend(self.target)
        self.compiled: list[tuple[str, triton.Config, object]] = []
        self.launches = 0

    def _recorder(self, tuner) -> Callable:
        fn = tuner.fn
        binder = create_function_from_signature(fn.signature, fn.params, self.backend)

        def run(*args, grid, warmup, **kwargs):
            self.launches += 1
            for config in tuner.configs:
                bound, specialization, options = binder(*args, **kwargs, **config.all_kwargs())
                options, signature, constexprs, attrs = fn._pack_args(self.backend, {**kwargs, **config.all_kwargs()},
                                                                      bound, specialization, options)
                kernel = triton.compile(ASTSource(fn, signature, constexprs, attrs), target=self.target,
                                        options=options.__dict__)
                self.compiled.append((fn.__name__, config, kernel))

        return run

    def __enter__(self) -> AheadOfTimeLaunches:
        if triton_lif.INTERPRETED:
            raise RuntimeError("the kernels were imported under TRITON_INTERPRET=1; run this in a fresh process")
        self._saved = [(m, m.check_device) for m in (triton_lif, triton_integer)]
        for module, _ in self._saved:
            module.check_device = lambda *args: None  # CPU tensors stand in for CUDA ones: nothing is launched
        for tuner in KERNELS:
            tuner.run = self._recorder(tuner)
        return self

    def __exit__(self, *exc) -> None:
        for module, check in self._saved:
            module.check_device = check
        for tuner in KERNELS:
            del tuner.run  # back to the class's launcher


class KernelOps(TorchDispatchMode):
    """Records the ATen ops that launch a kernel on a GPU: not views, not uninitialised allocations. Inside
    spikescope's custom ops too (their Python bodies run under this mode)."""

    def __init__(self) -> None:
        super().__init__()
        self.ops: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func.namespace == "spikescope":
            with self:
                return OPDEFS[func._schema.name]._init_fn(*args, **kwargs)
        schema = func._schema
        is_view = bool(schema.returns) and schema.returns[0].alias_info is not None and not schema.is_mutable
        if not (is_view or func.__name__.split(".")[0] in ("empty", "empty_like", "new_empty", "empty_strided")):
            self.ops.append(func.__name__)
        return func(*args, **kwargs)


def count_launches(forward: Callable[[], torch.Tensor], inputs: list[torch.Tensor]) -> dict[str, object]:
    """Kernel launches of ``forward()`` and of the backward to ``inputs`` (Triton launches + launching ATen ops)."""
    counts: dict[str, object] = {}
    with AheadOfTimeLaunches() as aot:
        with KernelOps() as mode:
            out = forward()
        counts["forward"], counts["forward_aten_ops"] = aot.launches + len(mode.ops), mode.ops
        grad, before = torch.ones_like(out), aot.launches
        with KernelOps() as mode:
            if inputs:
                torch.autograd.grad(out, inputs, grad)
        counts["backward"], counts["backward_aten_ops"] = aot.launches - before + len(mode.ops), mode.ops
    return counts


def launch_cases() -> dict[str, tuple[Callable[[], torch.Tensor], list[torch.Tensor]]]:
    """Name -> (forward through the neuron's kernel path, the inputs backward differentiates)."""
    p = LIFParams(1.0, 0.0, True, False, Sigmoid(4.0))
    table = {}
    for tag, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        x = torch.randn(4, 8192, dtype=dtype, requires_grad=True)
        k = torch.tensor(0.5, requires_grad=True)  # PLIF's sigmoid(w), a leaf here: its own backward is not counted
        table[f"LIF {tag}"] = ((lambda x=x: triton_lif.lif_triton(x, 0.5, p)[0]), [x])
        table[f"PLIF {tag}"] = ((lambda x=x, k=k: triton_lif.lif_triton(x, k, p)[0]), [x, k])
    x = torch.randn(4, 8192, requires_grad=True)
    table["IntegerSpike fp32"] = ((lambda: triton_integer.integer_spike_triton(x, 4.0, 4.0)), [x])
    x0 = torch.randn(4, 2, 16, 256)
    scale, shift = torch.rand(16) + 0.5, torch.randn(16)
    table["BNIntegerSpike fp32 (inference)"] = (
        (lambda: triton_integer.bn_integer_spike_triton(x0, scale, shift, 4.0, 4.0)), [])
    return table


def _lif_case(neuron, dtype: torch.dtype, return_state: bool = False) -> Callable[[], None]:
    def run() -> None:
        x = torch.randn(4, 8192, dtype=dtype, requires_grad=True)
        out = neuron(x, return_state=True) if return_state else neuron(x)
        loss = sum(o.float().sum() for o in out) if return_state else out.float().sum()
        loss.backward()

    return run


def cases() -> dict[str, tuple[Callable[[], None], torch.dtype]]:
    """Name -> (fwd+bwd through the public module, input dtype)."""
    sj_default = dict(tau=2.0, v_threshold=1.0, v_reset=0.0, surrogate=Sigmoid(4.0), backend="triton")
    table = {}
    for tag, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16), ("fp16", torch.float16)):
        table[f"LIF {tag} (benchmark neuron)"] = (_lif_case(LIF(**sj_default), dtype), dtype)
    table["LIF fp32 return_state"] = (_lif_case(LIF(**sj_default), torch.float32, return_state=True), torch.float32)
    rect = dict(sj_default, surrogate=Rectangle(1.0), detach_reset=True)
    table["LIF fp32 Rectangle detach_reset"] = (_lif_case(LIF(**rect), torch.float32), torch.float32)
    table["LIF bf16 Rectangle detach_reset"] = (_lif_case(LIF(**rect), torch.bfloat16), torch.bfloat16)
    plif = {k: v for k, v in sj_default.items() if k != "tau"}
    table["PLIF fp32"] = (_lif_case(PLIF(**plif), torch.float32), torch.float32)
    table["PLIF bf16"] = (_lif_case(PLIF(**plif), torch.bfloat16), torch.bfloat16)
    for tag, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        def run(dtype=dtype) -> None:
            x = (torch.randn(4, 8192) * 3).to(dtype).requires_grad_(True)
            IntegerSpike(max_value=4, backend="triton")(x).float().sum().backward()

        def infer(dtype=dtype) -> None:
            with torch.no_grad():
                IntegerSpike(max_value=4, backend="triton")((torch.randn(4, 8192) * 3).to(dtype))

        def bn_infer(dtype=dtype) -> None:
            bn = torch.nn.BatchNorm2d(16).eval()
            fused = BNIntegerSpike(bn, IntegerSpike(max_value=4, backend="triton")).eval()
            with torch.no_grad():
                fused(torch.randn(4, 2, 16, 16, 16).to(dtype))

        table[f"IntegerSpike {tag}"] = (run, dtype)
        table[f"IntegerSpike {tag} inference"] = (infer, dtype)
        table[f"BNIntegerSpike {tag} inference"] = (bn_infer, dtype)
    return table


def measure(arch: int = 90) -> list[KernelFigures]:
    """Compile every case's launches for ``sm_<arch>`` in every autotuning configuration; read traffic and resources."""
    rows = []
    for name, (run, dtype) in cases().items():
        with AheadOfTimeLaunches(arch) as aot:
            run()
        itemsize = torch.empty((), dtype=dtype).element_size()
        for kernel_name, config, kernel in aot.compiled:
            block, warps = config.kwargs["BLOCK"], config.num_warps
            per_element = global_bytes_per_thread(kernel.asm["ptx"]) / (block // (32 * warps))
            regs, local = resource_usage(kernel.asm["cubin"])
            rows.append(KernelFigures(name, kernel_name, block, warps, per_element, per_element / itemsize, regs,
                                      local))
    return rows


def passes_per_case(rows: list[KernelFigures]) -> dict[str, float]:
    """Case -> fwd+bwd passes over [T, N]; every configuration must move the same bytes (else an error)."""
    by_config: dict[str, dict[tuple[int, int], float]] = {}
    for r in rows:
        per = by_config.setdefault(r.case, {})
        per[(r.block, r.num_warps)] = per.get((r.block, r.num_warps), 0.0) + r.passes
    out = {}
    for case, per in by_config.items():
        if len(set(per.values())) != 1:
            raise RuntimeError(f"{case}: the configurations move different bytes: {per}")
        out[case] = next(iter(per.values()))
    return out


def _pick_configs(text: str) -> list[triton.Config]:
    known = {f"{c.kwargs['BLOCK']}x{c.num_warps}": c for c in triton_lif.GPU_CONFIGS}
    items = [item.strip() for item in text.split(",")]
    unknown = [item for item in items if item not in known]
    if unknown:
        raise SystemExit(f"kernel_traffic.py: error: --configs {', '.join(unknown)}: choose from {', '.join(known)}")
    return [known[item] for item in items]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--arch", type=int, default=90, help="CUDA compute capability x10 (90: H100/H200)")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--configs", help="compile only these of triton_lif.GPU_CONFIGS, e.g. 256x2,2048x4 "
                                          "(BLOCKxWARPS; default: all)")
    args = parser.parse_args(argv)
    if args.configs:
        triton_lif.set_launch_configs(_pick_configs(args.configs))
    rows = measure(args.arch)
    configs = [(c.kwargs["BLOCK"], c.num_warps) for c in triton_lif.launch_configs()]
    print(f"sm_{args.arch}, triton {triton.__version__}, autotuned configs (BLOCK, warps): {configs}")
    print(f"{'case':34s} {'kernel':18s} {'BLOCK':>5s} {'warps':>5s} {'B/elem/step':>11s} {'passes':>6s} {'regs':>4s} "
          f"{'spill B':>7s}")
    for r in rows:
        print(f"{r.case:34s} {r.kernel:18s} {r.block:5d} {r.num_warps:5d} {r.bytes_per_element:11.2f} {r.passes:6.2f} "
              f"{r.registers:4d} {r.local_bytes:7d}")
    by_case = passes_per_case(rows)
    print("\nfwd+bwd passes over [T, N] per case, the same in every config (the floor of benchmarks/neurons.py: 6):")
    for case, passes in by_case.items():
        print(f"  {case:34s} {passes:5.2f}")
    launches = {name: count_launches(*case) for name, case in launch_cases().items()}
    print("\nkernel launches (Triton + ATen ops that launch a kernel) of one forward / one backward:")
    for name, c in launches.items():
        extra = c["forward_aten_ops"] + c["backward_aten_ops"]
        print(f"  {name:34s} {c['forward']} / {c['backward']}" + (f"   ATen: {extra}" if extra else ""))
    if args.json:
        env = {"target": f"sm_{args.arch}", "triton": triton.__version__, "torch": torch.__version__,
               "configs": configs, "measured_on_gpu": False}
        payload = {"env": env, "kernels": [asdict(r) for r in rows], "fwd_bwd_passes": by_case, "launches": launches}
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(payload, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Static memory traffic of the Triton neuron kernels on a GPU target, read from the compiled code: no GPU needed.

Every call below goes through the public modules (``LIF``, ``PLIF``, ``IntegerSpike`` with ``backend="triton"``) on
CPU tensors; each kernel launch is intercepted and compiled ahead of time for the target (default ``sm_90``, the
H100) with the specialisation the JIT would use for these arguments, instead of being run. From the PTX it counts
the global-memory bytes one thread moves per trip of the loop over T (the whole kernel for the loop-free
``IntegerSpike`` kernels) and divides by the elements a thread owns. That is the bytes per element and timestep, and
in units of the input's element size the number of passes over ``[T, N]``: the bandwidth floor of
``benchmarks/neurons.py`` assumes 6 for a fwd+bwd. Registers and local memory (spills) come from ``cuobjdump``.

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
from triton.backends.compiler import GPUTarget  # noqa: E402
from triton.compiler import ASTSource, make_backend  # noqa: E402
from triton.runtime.jit import create_function_from_signature  # noqa: E402

from spikescope.neurons import LIF, PLIF, IntegerSpike, Rectangle, Sigmoid  # noqa: E402
from spikescope.neurons.kernels import triton_integer, triton_lif  # noqa: E402

KERNELS = (triton_lif._lif_fwd_kernel, triton_lif._lif_bwd_kernel,
           triton_integer._int_fwd_kernel, triton_integer._int_bwd_kernel)
_MEM_OP = re.compile(r"\b(?:ld|st)\.global(?:\.[a-z]\w*)*?(?:\.v(\d))?\.[bfsu](\d+)\b")


@dataclass
class KernelFigures:
    """One compiled launch: bytes per element (and timestep), passes in input-element units, registers, spills."""

    case: str
    kernel: str
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
    """Within ``with``: Triton kernel launches compile for ``target`` and are recorded instead of run."""

    def __init__(self, arch: int = 90):
        self.target = GPUTarget("cuda", arch, 32)
        self.backend = make_backend(self.target)
        self.compiled: list[tuple[str, object]] = []

    def _recorder(self, fn) -> Callable:
        binder = create_function_from_signature(fn.signature, fn.params, self.backend)

        def run(*args, grid, warmup, **kwargs):
            bound, specialization, options = binder(*args, **kwargs)
            options, signature, constexprs, attrs = fn._pack_args(self.backend, kwargs, bound, specialization, options)
            kernel = triton.compile(ASTSource(fn, signature, constexprs, attrs), target=self.target,
                                    options=options.__dict__)
            self.compiled.append((fn.__name__, kernel))

        return run

    def __enter__(self) -> AheadOfTimeLaunches:
        if triton_lif.INTERPRETED:
            raise RuntimeError("the kernels were imported under TRITON_INTERPRET=1; run this in a fresh process")
        self._saved = [(m, m.check_device) for m in (triton_lif, triton_integer)]
        for module, _ in self._saved:
            module.check_device = lambda *args: None  # CPU tensors stand in for CUDA ones: nothing is launched
        for fn in KERNELS:
            fn.run = self._recorder(fn)
        return self

    def __exit__(self, *exc) -> None:
        for module, check in self._saved:
            module.check_device = check
        for fn in KERNELS:
            del fn.run  # back to the class's launcher


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

        table[f"IntegerSpike {tag}"] = (run, dtype)
    return table


def measure(arch: int = 90) -> list[KernelFigures]:
    """Compile every case's launches for ``sm_<arch>`` and read their traffic and resources."""
    rows = []
    per_thread = triton_lif.BLOCK // (32 * triton_lif.NUM_WARPS)
    for name, (run, dtype) in cases().items():
        with AheadOfTimeLaunches(arch) as aot:
            run()
        itemsize = torch.empty((), dtype=dtype).element_size()
        for kernel_name, kernel in aot.compiled:
            per_element = global_bytes_per_thread(kernel.asm["ptx"]) / per_thread
            regs, local = resource_usage(kernel.asm["cubin"])
            rows.append(KernelFigures(name, kernel_name, per_element, per_element / itemsize, regs, local))
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--arch", type=int, default=90, help="CUDA compute capability x10 (90: H100/H200)")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    rows = measure(args.arch)
    print(f"sm_{args.arch}, triton {triton.__version__}, BLOCK {triton_lif.BLOCK}, {triton_lif.NUM_WARPS} warps")
    print(f"{'case':34s} {'kernel':16s} {'B/elem/step':>11s} {'passes':>6s} {'regs':>4s} {'spill B':>7s}")
    for r in rows:
        print(f"{r.case:34s} {r.kernel:16s} {r.bytes_per_element:11.2f} {r.passes:6.2f} {r.registers:4d} "
              f"{r.local_bytes:7d}")
    by_case: dict[str, float] = {}
    for r in rows:
        by_case[r.case] = by_case.get(r.case, 0.0) + r.passes
    print("\nfwd+bwd passes over [T, N] per case (the floor of benchmarks/neurons.py counts 6):")
    for case, passes in by_case.items():
        print(f"  {case:34s} {passes:5.2f}")
    if args.json:
        env = {"target": f"sm_{args.arch}", "triton": triton.__version__, "torch": torch.__version__,
               "block": triton_lif.BLOCK, "num_warps": triton_lif.NUM_WARPS, "measured_on_gpu": False}
        payload = {"env": env, "kernels": [asdict(r) for r in rows], "fwd_bwd_passes": by_case}
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(payload, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Backends for the multi-step LIF recurrence, chosen per call.

============ ==================================================================================
``torch``    the autograd reference loop (readable; the specification the tests compare against)
``fused``    one ``autograd.Function``: graph-free forward, hand-written BPTT, compact saved state
``cpu``      compiled C kernels (CPU tensors): one pass over ``[T, N]`` each way, same saved state as ``fused``
``compile``  ``torch.compile`` of the reference loop (opt-in: a cold compile takes 10-20 s on 2 cores)
``triton``   Triton forward/backward kernels (CUDA tensors; CPU tensors only under ``TRITON_INTERPRET=1``)
``auto``     the fastest available for the tensor's device: ``triton`` on CUDA when Triton imports, ``cpu`` on
             the CPU when a C compiler is found, else ``fused``
============ ==================================================================================

Every backend has the signature ``fn(x, k, params, return_state) -> (spikes, v_seq | None)``.
"""
from __future__ import annotations

from collections.abc import Callable

import torch

from ..params import LIFParams
from . import cpu
from .cpu import integer_spike_cpu, lif_cpu
from .fused import lif_fused
from .reference import lif_reference

try:
    from .triton_integer import integer_spike_triton
    from .triton_lif import lif_triton
except (ImportError, RuntimeError):  # no Triton (or no usable build of it): the torch backends remain
    integer_spike_triton = None
    lif_triton = None

__all__ = ["BACKENDS", "run_lif", "resolve_backend", "integer_spike_triton", "integer_spike_cpu"]

LIFBackend = Callable[[torch.Tensor, "torch.Tensor | float", LIFParams, bool], tuple]

_compiled: LIFBackend | None = None


def _lif_compiled(x, k, p, return_state=False):
    global _compiled
    if _compiled is None:
        _compiled = torch.compile(lif_reference, dynamic=False)
    return _compiled(x, k, p, return_state)


BACKENDS: dict[str, LIFBackend] = {"torch": lif_reference, "fused": lif_fused, "cpu": lif_cpu, "compile": _lif_compiled}
if lif_triton is not None:
    BACKENDS["triton"] = lif_triton


def resolve_backend(name: str, x: torch.Tensor) -> str:
    """Map ``"auto"`` to a concrete backend for ``x``'s device and check that ``name`` exists."""
    if name == "auto":
        if x.is_cuda:
            return "triton" if "triton" in BACKENDS else "fused"
        return "cpu" if x.device.type == "cpu" and cpu.compiler() is not None else "fused"
    if name not in BACKENDS:
        raise ValueError(f"unknown backend {name!r}; available here: {['auto', *BACKENDS]}")
    return name


def run_lif(
    x: torch.Tensor, k: torch.Tensor | float, p: LIFParams, backend: str = "auto", return_state: bool = False
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Run the LIF recurrence on ``x [T, ...]`` with the chosen backend."""
    return BACKENDS[resolve_backend(backend, x)](x, k, p, return_state)

"""Triton kernels for the multi-step LIF / PLIF recurrence: one forward and one backward launch per call.

Same semantics as :mod:`.reference` and :mod:`.fused` (charge expression, ``V[-1] = V_reset``, reset forms,
``detach_reset``, the four surrogates, the ``(spikes, membrane)`` output of ``return_state`` with a gradient through
the membrane). Every program owns ``BLOCK`` neurons of the flattened ``[T, N]`` input and walks over T in registers:
the forward loop reads ``X[t]`` once and writes the spikes (and ``V[t]`` if asked) once; the backward loop walks T in
reverse, reading the incoming gradients and the saved tensor once and writing ``dL/dX`` once. Arithmetic is float32
for float32, float16 and bfloat16 inputs (float64 inputs go to the fused torch path). Floating-point contraction
(FMA) is switched off so the charge rounds exactly like the torch reference and the spikes are bit-identical.

What backward keeps (per element and timestep, chosen per call; nothing else is kept):

* float32 input: ``H`` in float32 (4 bytes, as much as the input). Every surrogate needs ``H - V_th``; the spike is
  ``H >= V_th``; the hard reset's gradient needs ``V_reset - H``; PLIF rebuilds ``V[t-1]`` from ``H[t-1]``.
* float16 / bfloat16 input (LIF): ``U = H - V_th`` rounded to the input dtype (2 bytes, as much as the input), so
  a forward+backward moves 6 input-sized tensors, the bandwidth floor. The spike is the sign bit of ``U`` (rounding
  keeps the sign, so ``-0.0`` still reads "no spike"): spikes are exact; surrogate values are those of the
  half-precision ``U`` (relative error ~2^-8 for bfloat16, the precision of the returned bfloat16 gradient).
  PLIF keeps ``H`` in float32 even for half inputs: its decay gradient is one sum over all elements of
  ``dL/dH * (X - V[t-1])``, and ``V[t-1]`` rebuilt from a half-precision ``U`` biased that sum by a few percent.
* Rectangle surrogate with ``detach_reset`` or soft reset (LIF only): one uint8 code (bit 0 spike, bit 1 "inside
  the window"), because then the gradient needs nothing but these two bits.
* nothing at all when no gradient is needed (``torch.no_grad()`` or inputs without ``requires_grad``).
* PLIF with ``decay_input=True``: also a reference to the input ``X`` (no copy; ``dH/dk = X - (V[t-1] - V_reset)``).

PLIF's decay gradient is reduced inside the backward launch: each program sums its neurons in registers and stores
one partial; the last program to finish (an atomic ticket, reset by that program) adds the partials in program
order and writes ``dL/dk`` in ``k``'s dtype and shape. The sum is deterministic for a given launch configuration;
two configurations (another BLOCK) can differ in its last float32 bits.

Launch configuration: ``BLOCK`` (neurons per program) and ``num_warps`` are chosen by ``triton.autotune`` from
:data:`GPU_CONFIGS`, keyed on the power-of-two bucket of N (:func:`n_bucket`), the dtypes and what the kernel stores
(the first call in a new bucket times every configuration once, 25 ms each; later calls, and later processes through
Triton's cache, reuse the choice). Under the interpreter one configuration (:data:`INTERPRETER_CONFIG`) is used;
:func:`set_launch_configs` pins others (tests, reproducibility).
"""
from __future__ import annotations

import math

import torch
import triton
import triton.language as tl

from ..params import LIFParams
from ..surrogate import Surrogate
from .fused import lif_fused

__all__ = ["lif_triton", "INTERPRETED", "check_device", "GPU_CONFIGS", "INTERPRETER_CONFIG", "n_bucket",
           "set_launch_configs", "launch_configs"]

#: True when Triton runs kernels in its interpreter (``TRITON_INTERPRET=1`` at import): CPU tensors, slowly.
INTERPRETED = bool(triton.knobs.runtime.interpret)
#: The autotuned set for an H100/H200 (132 SMs): BLOCK x num_warps, at least 4 neurons per thread (128-bit fp32
#: loads). The small blocks fill the SMs for the 0.5-0.6 M neurons per step of late-stage layers.
GPU_CONFIGS = tuple(
    triton.Config({"BLOCK": block}, num_warps=warps)
    for block, warps in ((256, 2), (512, 2), (512, 4), (1024, 4), (1024, 8), (2048, 4), (2048, 8))
)
#: The one configuration used under the interpreter (nothing to time there).
INTERPRETER_CONFIG = triton.Config({"BLOCK": 1024}, num_warps=4)
SAVE_H32, SAVE_U16, SAVE_CODES, SAVE_NONE = 0, 1, 2, 3
_SURROGATE_IDS = {"atan": 0, "sigmoid": 1, "rectangle": 2, "triangle": 3}
_HALF = (torch.float16, torch.bfloat16)
_SAVE_DTYPES = {SAVE_H32: torch.float32, SAVE_CODES: torch.uint8}


@triton.jit
def _surrogate_grad(u, sg_a, sg_b, SURROGATE: tl.constexpr):
    """sg'(u) with u = H - V_th; the constants (sg_a, sg_b) come from :func:`_surrogate_constants`."""
    if SURROGATE == 0:  # ATan: (alpha / 2) / (1 + (pi / 2 * alpha * u)^2)
        z = sg_b * u
        g = sg_a / (1.0 + z * z)
    elif SURROGATE == 1:  # Sigmoid: alpha * sg * (1 - sg), sg = sigmoid(alpha * u)
        sg = tl.sigmoid(sg_b * u)
        g = sg_a * sg * (1.0 - sg)
    elif SURROGATE == 2:  # Rectangle: alpha * 1{|u| < 0.5 / alpha}
        g = tl.where(tl.abs(u) < sg_b, sg_a, 0.0)
    else:  # Triangle: max(0, alpha - alpha^2 |u|)
        g = tl.maximum(sg_a - sg_b * tl.abs(u), 0.0)
    return g


def n_bucket(n: int) -> int:
    """The autotuning key of ``n`` neurons per step: the next power of two (so a new shape rarely retunes)."""
    return 1 << max(n - 1, 0).bit_length()


_DEFAULT_CONFIGS = [INTERPRETER_CONFIG] if INTERPRETED else list(GPU_CONFIGS)


def _time_config(kernel_call, quantiles):
    """How the autotuner times one configuration: 5 ms of warm-up and 20 ms of repetitions (Triton's default is
    25 + 100 ms; a model pays this once per kernel and layer-shape bucket)."""
    import triton.testing

    return triton.testing.do_bench(kernel_call, warmup=5, rep=20, quantiles=quantiles)


#: The picks are also written to Triton's cache directory, so a later process on the same GPU reuses them (no
#: retuning, the same configuration and hence the same PLIF decay-gradient rounding).
_TUNING = {"do_bench": _time_config, "cache_results": True}


@triton.autotune(configs=_DEFAULT_CONFIGS, key=["n_bucket", "SAVE_MODE", "STORE_V"], **_TUNING)
@triton.jit
def _lif_fwd_kernel(
    x_ptr, s_ptr, v_ptr, save_ptr, k_ptr, k_val, N, T, n_bucket, v_th, v_reset, sg_b,
    K_FROM_PTR: tl.constexpr, DECAY_INPUT: tl.constexpr, HARD_RESET: tl.constexpr,
    STORE_V: tl.constexpr, SAVE_MODE: tl.constexpr, BLOCK: tl.constexpr,
):
    pid = tl.program_id(0)
    offs = pid * BLOCK + tl.arange(0, BLOCK)
    mask = offs < N
    if K_FROM_PTR:
        k = tl.load(k_ptr).to(tl.float32)
    else:
        k = k_val
    v = tl.zeros([BLOCK], dtype=tl.float32) + v_reset
    x_ptr += offs
    s_ptr += offs
    v_ptr += offs
    save_ptr += offs
    x_next = tl.load(x_ptr, mask=mask, other=0.0)
    for t in range(T):
        # prefetch X[t + 1] before the step's arithmetic and stores, so a load is always in flight
        x = x_next.to(tl.float32)
        x_next = tl.load(x_ptr + N, mask=mask & (t + 1 < T), other=0.0)
        if DECAY_INPUT:
            h = v + (x - (v - v_reset)) * k
        else:
            h = v - (v - v_reset) * k + x
        fired = h >= v_th
        s = fired.to(tl.float32)
        if HARD_RESET:
            v = h * (1.0 - s) + v_reset * s
        else:
            v = h - v_th * s
        tl.store(s_ptr, s.to(s_ptr.dtype.element_ty), mask=mask)
        if STORE_V:
            tl.store(v_ptr, v.to(v_ptr.dtype.element_ty), mask=mask)
        if SAVE_MODE == 0:
            tl.store(save_ptr, h, mask=mask)
        elif SAVE_MODE == 1:
            tl.store(save_ptr, (h - v_th).to(save_ptr.dtype.element_ty), mask=mask)
        elif SAVE_MODE == 2:
            inside = tl.abs(h - v_th) < sg_b
            code = fired.to(tl.uint8) | (inside.to(tl.uint8) << 1)
            tl.store(save_ptr, code, mask=mask)
        x_ptr += N
        s_ptr += N
        v_ptr += N
        save_ptr += N


@triton.jit
def _decode(saved, v_th, sg_a, sg_b, SAVE_MODE: tl.constexpr, SURROGATE: tl.constexpr):
    """Saved value -> (spike as float, H, sg'(H - V_th)); H is unused (0) for uint8 codes."""
    if SAVE_MODE == 0:
        h = saved
        u = h - v_th
        s = (h >= v_th).to(tl.float32)
        sg = _surrogate_grad(u, sg_a, sg_b, SURROGATE)
    elif SAVE_MODE == 1:
        u = saved.to(tl.float32)
        h = u + v_th
        s = (saved.to(tl.int16, bitcast=True) >= 0).to(tl.float32)
        sg = _surrogate_grad(u, sg_a, sg_b, SURROGATE)
    else:
        h = tl.zeros(saved.shape, dtype=tl.float32)
        s = (saved & 1).to(tl.float32)
        sg = tl.where((saved & 2) != 0, sg_a, 0.0)
    return s, h, sg


@triton.autotune(configs=_DEFAULT_CONFIGS, key=["n_bucket", "SAVE_MODE", "LEARN_DECAY", "HAS_GV"], **_TUNING)
@triton.jit
def _lif_bwd_kernel(
    gs_ptr, gv_ptr, save_ptr, x_ptr, k_ptr, k_val, gx_ptr, part_ptr, ticket_ptr, gk_ptr, N, T, n_bucket, last, v_th,
    v_reset, sg_a, sg_b,
    K_FROM_PTR: tl.constexpr, LEARN_DECAY: tl.constexpr, DECAY_INPUT: tl.constexpr, HARD_RESET: tl.constexpr,
    DETACH_RESET: tl.constexpr, HAS_GS: tl.constexpr, HAS_GV: tl.constexpr, SAVE_MODE: tl.constexpr,
    SURROGATE: tl.constexpr, BLOCK: tl.constexpr,
):
    pid = tl.program_id(0)
    offs = pid * BLOCK + tl.arange(0, BLOCK)
    mask = offs < N
    if K_FROM_PTR:
        k = tl.load(k_ptr).to(tl.float32)
    else:
        k = k_val
    if DECAY_INPUT:
        dx = k
    else:
        dx = 1.0
    # start at t = T - 1 (``last`` = (T - 1) * N, computed on the host so it never overflows int32)
    gs_ptr += last + offs
    gv_ptr += last + offs
    save_ptr += last + offs
    x_ptr += last + offs
    gx_ptr += last + offs
    gv_next = tl.zeros([BLOCK], dtype=tl.float32)
    gk_acc = tl.zeros([BLOCK], dtype=tl.float32)
    # every stream of step t is loaded one step ahead (prefetch), so the loads of t - 1 overlap step t's arithmetic
    saved = tl.load(save_ptr, mask=mask, other=0)
    if HAS_GS:
        gs_in = tl.load(gs_ptr, mask=mask, other=0.0)
    if HAS_GV:
        gv_in = tl.load(gv_ptr, mask=mask, other=0.0)
    for i in range(T):
        t = T - 1 - i
        more = mask & (t > 0)
        s, h, sg = _decode(saved, v_th, sg_a, sg_b, SAVE_MODE, SURROGATE)
        gv = gv_next
        if HAS_GV:
            gv += gv_in.to(tl.float32)
            gv_in = tl.load(gv_ptr - N, mask=more, other=0.0)
        if HARD_RESET:
            if DETACH_RESET:
                dvdh = 1.0 - s
            else:
                dvdh = 1.0 - s + (v_reset - h) * sg
        else:
            if DETACH_RESET:
                dvdh = 1.0
            else:
                dvdh = 1.0 - v_th * sg
        if HAS_GS:
            gh = gs_in.to(tl.float32) * sg + gv * dvdh
            gs_in = tl.load(gs_ptr - N, mask=more, other=0.0)
        else:
            gh = gv * dvdh
        tl.store(gx_ptr, (gh * dx).to(gx_ptr.dtype.element_ty), mask=mask)
        gv_next = gh * (1.0 - k)
        # the saved value of step t - 1: the next iteration's, and V[t-1] for the PLIF decay gradient
        saved = tl.load(save_ptr - N, mask=more, other=0)
        if LEARN_DECAY:
            s_prev, h_prev, _ = _decode(saved, v_th, sg_a, sg_b, SAVE_MODE, SURROGATE)
            if HARD_RESET:
                v_prev = h_prev * (1.0 - s_prev) + v_reset * s_prev
            else:
                v_prev = h_prev - v_th * s_prev
            v_prev = tl.where(t > 0, v_prev, v_reset)
            if DECAY_INPUT:
                dhdk = tl.load(x_ptr, mask=mask, other=0.0).to(tl.float32) - (v_prev - v_reset)
            else:
                dhdk = -(v_prev - v_reset)
            gk_acc += tl.where(mask, gh * dhdk, 0.0)
        gs_ptr -= N
        gv_ptr -= N
        save_ptr -= N
        x_ptr -= N
        gx_ptr -= N
    if LEARN_DECAY:
        _reduce_decay_grad(gk_acc, part_ptr, ticket_ptr, gk_ptr, BLOCK)


@triton.jit
def _reduce_decay_grad(gk_acc, part_ptr, ticket_ptr, gk_ptr, BLOCK: tl.constexpr):
    """Store this program's partial of dL/dk; the last program adds all partials in order and writes dL/dk."""
    pid = tl.program_id(0)
    programs = tl.num_programs(0)
    tl.store(part_ptr + pid, tl.sum(gk_acc, axis=0))
    tl.debug_barrier()  # the partial is stored before the ticket (release) is taken
    ticket = tl.atomic_add(ticket_ptr, 1, sem="acq_rel")
    if ticket == programs - 1:
        total = tl.zeros([BLOCK], dtype=tl.float32)
        for start in range(0, programs, BLOCK):
            idx = start + tl.arange(0, BLOCK)
            total += tl.load(part_ptr + idx, mask=idx < programs, other=0.0, cache_modifier=".cg")
        tl.store(gk_ptr, tl.sum(total, axis=0).to(gk_ptr.dtype.element_ty))
        tl.atomic_xchg(ticket_ptr, 0)  # ready for the next launch on this stream


_KERNELS = (_lif_fwd_kernel, _lif_bwd_kernel)
_LAUNCH = {} if INTERPRETED else {"enable_fp_fusion": False}
_min_block = min(c.kwargs["BLOCK"] for c in _DEFAULT_CONFIGS)


def launch_configs() -> list[triton.Config]:
    """The configurations the autotuner chooses from now."""
    return list(_lif_fwd_kernel.configs)


def set_launch_configs(configs: list[triton.Config] | None) -> None:
    """Autotune the LIF and IntegerSpike kernels over ``configs`` (one config pins it); ``None`` restores the default."""
    global _min_block
    configs = list(_DEFAULT_CONFIGS if configs is None else configs)
    if not configs or any(set(c.kwargs) != {"BLOCK"} for c in configs):
        raise ValueError(f"set_launch_configs: give triton.Config({{'BLOCK': ...}}, num_warps=...) items, got {configs}")
    from . import triton_integer  # the integer kernels share the set

    for kernel in (*_KERNELS, *triton_integer.KERNELS):
        kernel.configs = configs
        kernel.cache.clear()
    _min_block = min(c.kwargs["BLOCK"] for c in configs)


def check_device(x: torch.Tensor, who: str) -> None:
    """Raise a clear error unless ``x`` is on a CUDA device (or the kernels run in the Triton interpreter)."""
    if not (x.is_cuda or INTERPRETED):
        raise RuntimeError(
            f"{who}: backend='triton' needs a CUDA tensor, got one on {x.device}. Use backend='auto' or 'fused' on "
            "the CPU (or set TRITON_INTERPRET=1 before importing spikescope to run the kernels in the slow Triton "
            "interpreter, for tests)."
        )


_SURROGATE_CACHE: dict[Surrogate, tuple[int, float, float]] = {}


def _surrogate_constants(sur: Surrogate) -> tuple[int, float, float]:
    """(kernel id, sg_a, sg_b) reproducing the formulas of :mod:`..surrogate` (cached per surrogate)."""
    cached = _SURROGATE_CACHE.get(sur)
    if cached is not None:
        return cached
    a = sur.alpha
    consts = {
        "atan": (a / 2, math.pi / 2 * a),
        "sigmoid": (a, a),
        "rectangle": (a, 0.5 / a),
        "triangle": (a, a**2),
    }
    if sur.name not in consts:
        raise ValueError(f"backend='triton' has no kernel for surrogate {sur!r}; use backend='fused'")
    _SURROGATE_CACHE[sur] = (_SURROGATE_IDS[sur.name], *consts[sur.name])
    return _SURROGATE_CACHE[sur]


_TICKETS: dict[tuple, torch.Tensor] = {}


def _ticket(device: torch.device) -> torch.Tensor:
    """A zeroed int32 counter per device and stream, allocated once; the backward launch leaves it at zero."""
    stream = torch.cuda.current_stream(device).cuda_stream if device.type == "cuda" else 0
    key = (device, stream)
    if key not in _TICKETS:
        _TICKETS[key] = torch.zeros(1, dtype=torch.int32, device=device)
    return _TICKETS[key]


def _save_mode(p: LIFParams, dtype: torch.dtype, learn_decay: bool) -> int:
    if p.surrogate.piecewise_constant and not learn_decay and (p.detach_reset or not p.hard_reset):
        return SAVE_CODES
    return SAVE_U16 if dtype in _HALF and not learn_decay else SAVE_H32


def _save_dtype(mode: int, dtype: torch.dtype) -> torch.dtype:
    return dtype if mode in (SAVE_U16, SAVE_NONE) else _SAVE_DTYPES[mode]


def _grid(n: int):
    """The launch grid for ``n`` neurons, given the BLOCK the autotuner picked."""
    return lambda meta: (triton.cdiv(n, meta["BLOCK"]),)


# The kernels are registered as torch.library custom ops (forward with its autograd formula, backward as its own
# op), so torch.compile traces a model through them without a graph break and CUDA graphs can capture the launches.
# Every argument is a tensor or a scalar; the LIFParams are unpacked by :func:`lif_triton`.
@torch.library.custom_op("spikescope::lif_triton_fwd", mutates_args=())
def _lif_fwd_op(
    x: torch.Tensor, k: torch.Tensor | None, k_val: float, v_th: float, v_reset: float, sg_a: float, sg_b: float,
    decay_input: bool, hard_reset: bool, detach_reset: bool, store_v: bool, mode: int, surrogate: int,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """-> (spikes, V (empty unless ``store_v``), what backward keeps (empty for ``SAVE_NONE``))."""
    T, N = x.shape[0], x[0].numel()
    spikes = torch.empty_like(x)
    v_seq = torch.empty_like(x) if store_v else x.new_empty(0)
    saved = x.new_empty(0) if mode == SAVE_NONE else torch.empty(x.shape, dtype=_save_dtype(mode, x.dtype),
                                                                    device=x.device)
    _lif_fwd_kernel[_grid(N)](
        x, spikes, v_seq if store_v else spikes, saved if mode != SAVE_NONE else spikes, x if k is None else k,
        k_val, N, T, n_bucket(N), v_th, v_reset, sg_b,
        K_FROM_PTR=k is not None, DECAY_INPUT=decay_input, HARD_RESET=hard_reset,
        STORE_V=store_v, SAVE_MODE=mode, **_LAUNCH,
    )
    return spikes, v_seq, saved


@_lif_fwd_op.register_fake
def _(x, k, k_val, v_th, v_reset, sg_a, sg_b, decay_input, hard_reset, detach_reset, store_v, mode, surrogate):
    saved = x.new_empty(0) if mode == SAVE_NONE else x.new_empty(x.shape, dtype=_save_dtype(mode, x.dtype))
    return torch.empty_like(x), torch.empty_like(x) if store_v else x.new_empty(0), saved


@torch.library.custom_op("spikescope::lif_triton_bwd", mutates_args=())
def _lif_bwd_op(
    grad_s: torch.Tensor | None, grad_v: torch.Tensor | None, saved: torch.Tensor, x: torch.Tensor | None,
    k: torch.Tensor | None, k_val: float, v_th: float, v_reset: float, sg_a: float, sg_b: float, decay_input: bool,
    hard_reset: bool, detach_reset: bool, mode: int, surrogate: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """-> (dL/dX, dL/dk shaped and typed like ``k``; empty when k is a constant), both from the one launch."""
    ref = grad_s if grad_s is not None else grad_v
    T, N = saved.shape[0], saved[0].numel()
    grad_x = torch.empty(saved.shape, dtype=ref.dtype, device=saved.device)
    learn = k is not None
    # uninitialised buffers, no launch: one partial per program of the smallest BLOCK, and dL/dk itself
    parts = torch.empty(triton.cdiv(N, _min_block) if learn else 0, dtype=torch.float32, device=saved.device)
    grad_k = torch.empty_like(k) if learn else saved.new_empty(0)
    # a missing gradient is a constexpr flag, not a zero tensor; an unused pointer is any valid tensor
    gs = grad_s.contiguous() if grad_s is not None else ref.contiguous()
    gv = grad_v.contiguous() if grad_v is not None else gs
    _lif_bwd_kernel[_grid(N)](
        gs, gv, saved, x if x is not None else gs, k if learn else gs, k_val, grad_x, parts,
        _ticket(saved.device) if learn else gs, grad_k if learn else gs, N, T, n_bucket(N), (T - 1) * N, v_th,
        v_reset, sg_a, sg_b,
        K_FROM_PTR=learn, LEARN_DECAY=learn, DECAY_INPUT=decay_input, HARD_RESET=hard_reset,
        DETACH_RESET=detach_reset, HAS_GS=grad_s is not None, HAS_GV=grad_v is not None, SAVE_MODE=mode,
        SURROGATE=surrogate, **_LAUNCH,
    )
    return grad_x, grad_k


@_lif_bwd_op.register_fake
def _(grad_s, grad_v, saved, x, k, k_val, v_th, v_reset, sg_a, sg_b, decay_input, hard_reset, detach_reset, mode,
      surrogate):
    ref = grad_s if grad_s is not None else grad_v
    return saved.new_empty(saved.shape, dtype=ref.dtype), torch.empty_like(k) if k is not None else saved.new_empty(0)


_FWD_ARGS = ("k_val", "v_th", "v_reset", "sg_a", "sg_b", "decay_input", "hard_reset", "detach_reset", "store_v",
             "mode", "surrogate")


def _setup_context(ctx, inputs, output) -> None:
    x, k, *rest = inputs
    args = dict(zip(_FWD_ARGS, rest))
    keep_x = k is not None and args["decay_input"]
    ctx.save_for_backward(output[2], x if keep_x else None, k)
    ctx.args = args
    ctx.set_materialize_grads(False)


def _backward(ctx, grad_s, grad_v, _grad_saved):
    saved, x, k = ctx.saved_tensors
    a = ctx.args
    if grad_s is None and (grad_v is None or not a["store_v"]):
        return (None,) * 13
    grad_x, grad_k = _lif_bwd_op(
        grad_s, grad_v if a["store_v"] else None, saved, x, k.detach() if k is not None else None,
        a["k_val"], a["v_th"], a["v_reset"], a["sg_a"], a["sg_b"], a["decay_input"], a["hard_reset"],
        a["detach_reset"], a["mode"], a["surrogate"],
    )
    return (grad_x, grad_k if k is not None else None) + (None,) * 11


_lif_fwd_op.register_autograd(_backward, setup_context=_setup_context)


def lif_triton(
    x: torch.Tensor, k: torch.Tensor | float, p: LIFParams, return_state: bool = False
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Triton LIF on a CUDA tensor ``x [T, ...]`` (float32/16, bfloat16); ``k`` is a float 1/tau or sigmoid(w).

    float64 and empty inputs go to :func:`.fused.lif_fused` (the kernels compute in float32).
    """
    check_device(x, "LIF")
    if x.dtype not in (torch.float32, *_HALF) or x.numel() == 0:
        return lif_fused(x, k, p, return_state)
    learn_decay = isinstance(k, torch.Tensor)
    needs_grad = torch.is_grad_enabled() and (x.requires_grad or (learn_decay and k.requires_grad))
    sid, sg_a, sg_b = _surrogate_constants(p.surrogate)
    mode = _save_mode(p, x.dtype, learn_decay) if needs_grad else SAVE_NONE
    spikes, v_seq, _ = _lif_fwd_op(
        x.contiguous(), k if learn_decay else None, 0.0 if learn_decay else float(k),
        p.v_threshold, p.reset_value, sg_a, sg_b, p.decay_input, p.hard_reset, p.detach_reset, return_state, mode, sid,
    )
    return spikes, (v_seq if return_state else None)

"""Triton kernels for :class:`~spikescope.neurons.IntegerSpike`: ``round(clip(x, 0, D)) / norm`` and its STE.

One elementwise launch each way over the flattened input (any shape; the op is stateless, so T plays no role).
Backward keeps one uint8 per element, "0 <= x <= D" (the straight-through window), and nothing else: the gradient
is ``grad / norm`` inside the window and 0 outside. Rounding is half-to-even like :func:`torch.round`, done exactly
in float32 (floor plus the fractional part, no ``x + 0.5`` trick). The division by ``norm`` (forward and backward)
is a product with the float32 reciprocal ``1/norm``, as torch's CUDA kernels do for ``tensor / python_scalar``, so
the result is bit-identical to the torch path on CUDA; torch on the CPU divides exactly, which can differ in the
last bit when ``norm`` is not a power of two (1 and D = 4, the values SDT-v3 uses, are exact either way).
"""
from __future__ import annotations

import functools

import torch
import triton
import triton.language as tl

from .triton_lif import BLOCK, INTERPRETED, NUM_WARPS, check_device

__all__ = ["integer_spike_triton"]

_LAUNCH = {} if INTERPRETED else {"num_warps": NUM_WARPS, "enable_fp_fusion": False}


@triton.jit
def _int_fwd_kernel(x_ptr, s_ptr, inside_ptr, n, max_value, inv_norm, DIVIDE: tl.constexpr, BLOCK: tl.constexpr):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < n
    x = tl.load(x_ptr + offs, mask=mask, other=0.0).to(tl.float32)
    c = tl.minimum(tl.maximum(x, 0.0), max_value)
    q = tl.floor(c)
    frac = c - q
    odd = (q - 2.0 * tl.floor(q * 0.5)) == 1.0
    q = tl.where((frac > 0.5) | ((frac == 0.5) & odd), q + 1.0, q)
    if DIVIDE:
        q = q * inv_norm
    tl.store(s_ptr + offs, q.to(s_ptr.dtype.element_ty), mask=mask)
    tl.store(inside_ptr + offs, ((x >= 0.0) & (x <= max_value)).to(tl.uint8), mask=mask)


@triton.jit
def _int_bwd_kernel(g_ptr, inside_ptr, gx_ptr, n, inv_norm, DIVIDE: tl.constexpr, BLOCK: tl.constexpr):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < n
    g = tl.load(g_ptr + offs, mask=mask, other=0.0).to(tl.float32)
    if DIVIDE:
        g = g * inv_norm
    g = tl.where(tl.load(inside_ptr + offs, mask=mask, other=0) != 0, g, 0.0)
    tl.store(gx_ptr + offs, g.to(gx_ptr.dtype.element_ty), mask=mask)


@functools.lru_cache(maxsize=64)
def _inverse(norm: float) -> float:
    """1/norm computed in float32, as torch's CUDA division by a scalar does (cached: no tensors per call)."""
    return float(torch.tensor(1.0) / torch.tensor(float(norm)))


# torch.library custom ops (like the LIF kernels), so torch.compile and CUDA graphs take them whole
@torch.library.custom_op("spikescope::integer_spike_triton_fwd", mutates_args=())
def _int_fwd_op(x: torch.Tensor, max_value: float, norm: float) -> tuple[torch.Tensor, torch.Tensor]:
    """-> (spikes, the uint8 straight-through window)."""
    s = torch.empty_like(x)
    inside = torch.empty(x.shape, dtype=torch.uint8, device=x.device)
    n = x.numel()
    _int_fwd_kernel[(triton.cdiv(n, BLOCK),)](
        x, s, inside, n, float(max_value), _inverse(norm), DIVIDE=norm != 1.0, BLOCK=BLOCK, **_LAUNCH
    )
    return s, inside


@_int_fwd_op.register_fake
def _(x, max_value, norm):
    return torch.empty_like(x), torch.empty_like(x, dtype=torch.uint8)


@torch.library.custom_op("spikescope::integer_spike_triton_bwd", mutates_args=())
def _int_bwd_op(grad: torch.Tensor, inside: torch.Tensor, norm: float) -> torch.Tensor:
    grad = grad.contiguous()
    gx = torch.empty_like(grad)
    n = grad.numel()
    _int_bwd_kernel[(triton.cdiv(n, BLOCK),)](
        grad, inside, gx, n, _inverse(norm), DIVIDE=norm != 1.0, BLOCK=BLOCK, **_LAUNCH
    )
    return gx


@_int_bwd_op.register_fake
def _(grad, inside, norm):
    return torch.empty_like(grad)


def _setup_context(ctx, inputs, output) -> None:
    ctx.save_for_backward(output[1])
    ctx.norm = inputs[2]


def _backward(ctx, grad, _grad_inside):
    (inside,) = ctx.saved_tensors
    return _int_bwd_op(grad, inside, ctx.norm), None, None


_int_fwd_op.register_autograd(_backward, setup_context=_setup_context)


def integer_spike_triton(x: torch.Tensor, max_value: float, norm: float) -> torch.Tensor:
    """``round(clip(x, 0, max_value)) / norm`` on a CUDA tensor (float32/16, bfloat16) with the straight-through gradient."""
    check_device(x, "IntegerSpike")
    if x.dtype not in (torch.float32, torch.float16, torch.bfloat16):
        raise TypeError(f"IntegerSpike: backend='triton' takes float32/float16/bfloat16, got {x.dtype}; use backend='torch'")
    if x.numel() == 0:
        return x.clone()
    return _int_fwd_op(x.contiguous(), float(max_value), float(norm))[0]

"""Triton kernels for :class:`~spikescope.neurons.IntegerSpike`: ``round(clip(x, 0, D)) / norm`` and its STE.

One elementwise launch each way over the flattened input (any shape; the op is stateless, so T plays no role).
Backward keeps one uint8 per element, "0 <= x <= D" (the straight-through window), and nothing else: the gradient
is ``grad / norm`` inside the window and 0 outside; without autograd the window is not written (read X, write S). Rounding is half-to-even like :func:`torch.round`, done exactly
in float32 (floor plus the fractional part, no ``x + 0.5`` trick). The division by ``norm`` (forward and backward)
is a product with the float32 reciprocal ``1/norm``, as torch's CUDA kernels do for ``tensor / python_scalar``, so
the result is bit-identical to the torch path on CUDA; torch on the CPU divides exactly, which can differ in the
last bit when ``norm`` is not a power of two (1 and D = 4, the values SDT-v3 uses, are exact either way).

:func:`bn_integer_spike_triton` is the inference kernel of :class:`~spikescope.neurons.BNIntegerSpike`: an
eval-mode BatchNorm folded to a per-channel ``y = x * scale + shift`` (float32, two roundings, no FMA), ``y``
rounded to the input dtype as BN's output would be, then quantised, in one pass (read X, write S). The launch
configuration is autotuned like the LIF kernels (:func:`.triton_lif.set_launch_configs`).
"""
from __future__ import annotations

import functools

import torch
import triton
import triton.language as tl

from .triton_lif import _DEFAULT_CONFIGS, _LAUNCH, _TUNING, _grid, check_device, n_bucket

__all__ = ["integer_spike_triton", "bn_integer_spike_triton", "KERNELS"]

_DTYPES = (torch.float32, torch.float16, torch.bfloat16)


@triton.jit
def _quantise(x, max_value, inv_norm, DIVIDE: tl.constexpr):
    """round(clip(x, 0, D)) (half to even, exact in float32), times 1/norm if DIVIDE."""
    c = tl.minimum(tl.maximum(x, 0.0), max_value)
    q = tl.floor(c)
    frac = c - q
    odd = (q - 2.0 * tl.floor(q * 0.5)) == 1.0
    q = tl.where((frac > 0.5) | ((frac == 0.5) & odd), q + 1.0, q)
    if DIVIDE:
        q = q * inv_norm
    return q


@triton.autotune(configs=_DEFAULT_CONFIGS, key=["n_bucket", "STORE_INSIDE"], **_TUNING)
@triton.jit
def _int_fwd_kernel(x_ptr, s_ptr, inside_ptr, n, n_bucket, max_value, inv_norm, DIVIDE: tl.constexpr,
                    STORE_INSIDE: tl.constexpr, BLOCK: tl.constexpr):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < n
    x = tl.load(x_ptr + offs, mask=mask, other=0.0).to(tl.float32)
    tl.store(s_ptr + offs, _quantise(x, max_value, inv_norm, DIVIDE).to(s_ptr.dtype.element_ty), mask=mask)
    if STORE_INSIDE:
        tl.store(inside_ptr + offs, ((x >= 0.0) & (x <= max_value)).to(tl.uint8), mask=mask)


@triton.autotune(configs=_DEFAULT_CONFIGS, key=["n_bucket"], **_TUNING)
@triton.jit
def _int_bwd_kernel(g_ptr, inside_ptr, gx_ptr, n, n_bucket, inv_norm, DIVIDE: tl.constexpr, BLOCK: tl.constexpr):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < n
    g = tl.load(g_ptr + offs, mask=mask, other=0.0).to(tl.float32)
    if DIVIDE:
        g = g * inv_norm
    g = tl.where(tl.load(inside_ptr + offs, mask=mask, other=0) != 0, g, 0.0)
    tl.store(gx_ptr + offs, g.to(gx_ptr.dtype.element_ty), mask=mask)


@triton.autotune(configs=_DEFAULT_CONFIGS, key=["n_bucket"], **_TUNING)
@triton.jit
def _bn_int_fwd_kernel(x_ptr, scale_ptr, shift_ptr, s_ptr, n, inner, channels, n_bucket, max_value, inv_norm,
                       DIVIDE: tl.constexpr, BLOCK: tl.constexpr):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < n
    c = (offs // inner) % channels  # [T, B, C, *inner] contiguous
    x = tl.load(x_ptr + offs, mask=mask, other=0.0).to(tl.float32)
    y = x * tl.load(scale_ptr + c, mask=mask, other=0.0) + tl.load(shift_ptr + c, mask=mask, other=0.0)
    y = y.to(s_ptr.dtype.element_ty).to(tl.float32)  # BN's output in the input dtype, as the unfused pair sees it
    tl.store(s_ptr + offs, _quantise(y, max_value, inv_norm, DIVIDE).to(s_ptr.dtype.element_ty), mask=mask)


KERNELS = (_int_fwd_kernel, _int_bwd_kernel, _bn_int_fwd_kernel)


@functools.lru_cache(maxsize=64)
def _inverse(norm: float) -> float:
    """1/norm computed in float32, as torch's CUDA division by a scalar does (cached: no tensors per call)."""
    return float(torch.tensor(1.0) / torch.tensor(float(norm)))


# torch.library custom ops (like the LIF kernels), so torch.compile and CUDA graphs take them whole
@torch.library.custom_op("spikescope::integer_spike_triton_fwd", mutates_args=())
def _int_fwd_op(x: torch.Tensor, max_value: float, norm: float, store_inside: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """-> (spikes, the uint8 straight-through window (empty unless ``store_inside``))."""
    s = torch.empty_like(x)
    inside = torch.empty(x.shape if store_inside else 0, dtype=torch.uint8, device=x.device)
    n = x.numel()
    _int_fwd_kernel[_grid(n)](
        x, s, inside if store_inside else s, n, n_bucket(n), float(max_value), _inverse(norm), DIVIDE=norm != 1.0,
        STORE_INSIDE=store_inside, **_LAUNCH
    )
    return s, inside


@_int_fwd_op.register_fake
def _(x, max_value, norm, store_inside):
    return torch.empty_like(x), x.new_empty(x.shape if store_inside else 0, dtype=torch.uint8)


@torch.library.custom_op("spikescope::integer_spike_triton_bwd", mutates_args=())
def _int_bwd_op(grad: torch.Tensor, inside: torch.Tensor, norm: float) -> torch.Tensor:
    grad = grad.contiguous()
    gx = torch.empty_like(grad)
    n = grad.numel()
    _int_bwd_kernel[_grid(n)](grad, inside, gx, n, n_bucket(n), _inverse(norm), DIVIDE=norm != 1.0, **_LAUNCH)
    return gx


@_int_bwd_op.register_fake
def _(grad, inside, norm):
    return torch.empty_like(grad)


def _setup_context(ctx, inputs, output) -> None:
    ctx.save_for_backward(output[1])
    ctx.norm = inputs[2]
    ctx.set_materialize_grads(False)  # no zero gradient for the uint8 window


def _backward(ctx, grad, _grad_inside):
    (inside,) = ctx.saved_tensors
    return (_int_bwd_op(grad, inside, ctx.norm) if grad is not None else None), None, None, None


_int_fwd_op.register_autograd(_backward, setup_context=_setup_context)


def _check_dtype(x: torch.Tensor, who: str) -> None:
    if x.dtype not in _DTYPES:
        raise TypeError(f"{who}: backend='triton' takes float32/float16/bfloat16, got {x.dtype}; use backend='torch'")


def integer_spike_triton(x: torch.Tensor, max_value: float, norm: float) -> torch.Tensor:
    """``round(clip(x, 0, max_value)) / norm`` on a CUDA tensor (float32/16, bfloat16) with the straight-through gradient."""
    check_device(x, "IntegerSpike")
    _check_dtype(x, "IntegerSpike")
    if x.numel() == 0:
        return x.clone()
    store_inside = torch.is_grad_enabled() and x.requires_grad
    return _int_fwd_op(x.contiguous(), float(max_value), float(norm), store_inside)[0]


@torch.library.custom_op("spikescope::bn_integer_spike_triton", mutates_args=())
def _bn_int_op(x: torch.Tensor, scale: torch.Tensor, shift: torch.Tensor, max_value: float, norm: float) -> torch.Tensor:
    s = torch.empty_like(x)
    n = x.numel()
    channels = x.shape[2]
    _bn_int_fwd_kernel[_grid(n)](
        x, scale, shift, s, n, n // (x.shape[0] * x.shape[1] * channels), channels, n_bucket(n), float(max_value),
        _inverse(norm), DIVIDE=norm != 1.0, **_LAUNCH
    )
    return s


@_bn_int_op.register_fake
def _(x, scale, shift, max_value, norm):
    return torch.empty_like(x)


def bn_integer_spike_triton(
    x: torch.Tensor, scale: torch.Tensor, shift: torch.Tensor, max_value: float, norm: float
) -> torch.Tensor:
    """IntegerSpike(x * scale[c] + shift[c]) for ``x [T, B, C, ...]`` (CUDA; scale/shift float32 ``[C]``), no autograd."""
    check_device(x, "BNIntegerSpike")
    _check_dtype(x, "BNIntegerSpike")
    if x.numel() == 0:
        return x.clone()
    return _bn_int_op(x.contiguous(), scale, shift, float(max_value), float(norm))

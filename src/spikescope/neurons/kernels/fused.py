"""Fused multi-step LIF for any device: forward without an autograd graph, BPTT written by hand.

What backward keeps (per element and timestep):

* the pre-spike membrane ``H`` in float32 (4 bytes): spikes are ``H >= V_th`` and every surrogate needs ``H``;
* with a piecewise-constant surrogate (Rectangle) and a reset whose gradient does not need ``H``
  (``detach_reset=True`` or soft reset) only one uint8 code instead: bit 0 the spike, bit 1 "inside the window";
* for PLIF also the input ``X`` (the gradient of the decay needs ``X - V[t-1]``).

The autograd reference keeps three or more float tensors per step. The backward recurrence is::

    gV[t]  = dL/dV[t] (from ``v_seq``) + gH[t+1] * (1 - k)
    gH[t]  = gS[t] * sg'(H[t] - V_th) + gV[t] * dV[t]/dH[t]
    gX[t]  = gH[t] * (k if decay_input else 1)
    dL/dk += sum gH[t] * dH[t]/dk                      (PLIF only)
"""
from __future__ import annotations

import torch

from ..params import LIFParams
from .reference import charge, compute_dtype

__all__ = ["lif_fused"]

_SPIKE, _INSIDE = 1, 2


def _uses_codes(p: LIFParams, learn_decay: bool) -> bool:
    return p.surrogate.piecewise_constant and not learn_decay and (p.detach_reset or not p.hard_reset)


class _FusedLIF(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, k: torch.Tensor | float, p: LIFParams, return_state: bool):
        learn_decay = isinstance(k, torch.Tensor)
        xf = x.to(compute_dtype(x))
        kf = k.detach().to(xf.dtype) if learn_decay else k
        T = xf.shape[0]
        spikes = torch.empty_like(xf)
        h_seq = torch.empty_like(xf)
        v_seq = torch.empty_like(xf) if return_state else None
        v = torch.full_like(xf[0], p.reset_value)
        for t in range(T):
            h = charge(v, xf[t], kf, p)
            s = (h >= p.v_threshold).to(xf.dtype)
            v = h * (1 - s) + p.reset_value * s if p.hard_reset else h - p.v_threshold * s
            h_seq[t] = h
            spikes[t] = s
            if return_state:
                v_seq[t] = v
        if _uses_codes(p, learn_decay):
            inside = p.surrogate.inside(h_seq - p.v_threshold)
            saved = spikes.to(torch.uint8) | (inside.to(torch.uint8) << 1)
        else:
            saved = h_seq
        ctx.save_for_backward(saved, xf if learn_decay else None, k if learn_decay else None)
        ctx.p, ctx.k = p, (None if learn_decay else k)
        out = spikes.to(x.dtype)
        return (out, v_seq.to(x.dtype)) if return_state else out

    @staticmethod
    def backward(ctx, grad_s, grad_v=None):
        saved, xf, k = ctx.saved_tensors
        p: LIFParams = ctx.p
        learn_decay = k is not None
        kf = k.detach().to(compute_dtype(grad_s)) if learn_decay else ctx.k
        codes = saved.dtype == torch.uint8
        gs = grad_s.to(compute_dtype(grad_s))
        gv_seq = grad_v.to(gs.dtype) if grad_v is not None else None
        grad_x = torch.empty_like(gs)
        grad_k = torch.zeros((), dtype=gs.dtype, device=gs.device) if learn_decay else None
        gv_next = torch.zeros_like(gs[0])
        dx = kf if p.decay_input else 1.0
        alpha = p.surrogate.alpha
        for t in range(gs.shape[0] - 1, -1, -1):
            if codes:
                s = (saved[t] & _SPIKE).to(gs.dtype)
                inside = (saved[t] & _INSIDE).to(gs.dtype) * 0.5
                sg = inside * alpha
            else:
                h = saved[t]
                s = (h >= p.v_threshold).to(gs.dtype)
                sg = p.surrogate.derivative(h - p.v_threshold)
            gv = gv_next if gv_seq is None else gv_next + gv_seq[t]
            if p.hard_reset:
                dvdh = 1 - s if p.detach_reset else 1 - s + (p.reset_value - saved[t]) * sg
            else:
                dvdh = 1.0 if p.detach_reset else 1 - p.v_threshold * sg
            gh = gs[t] * sg + gv * dvdh
            grad_x[t] = gh * dx
            gv_next = gh * (1 - kf)
            if learn_decay:
                v_prev = _previous_v(saved, t, p)
                dhdk = xf[t] - (v_prev - p.reset_value) if p.decay_input else -(v_prev - p.reset_value)
                grad_k += (gh * dhdk).sum()
        grad_k = grad_k.reshape(k.shape).to(k.dtype) if learn_decay else None
        return grad_x.to(grad_s.dtype), grad_k, None, None


def _previous_v(h_seq: torch.Tensor, t: int, p: LIFParams) -> torch.Tensor | float:
    """V[t-1] rebuilt from the saved H[t-1] (exact: the spike is 0 or 1)."""
    if t == 0:
        return p.reset_value
    h = h_seq[t - 1]
    s = (h >= p.v_threshold).to(h.dtype)
    return h * (1 - s) + p.reset_value * s if p.hard_reset else h - p.v_threshold * s


def lif_fused(
    x: torch.Tensor, k: torch.Tensor | float, p: LIFParams, return_state: bool = False
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Fused LIF on ``x [T, ...]``; ``k`` is the decay: a float 1/tau (LIF) or a 0-d tensor sigmoid(w) (PLIF)."""
    if return_state:
        return _FusedLIF.apply(x, k, p, True)
    return _FusedLIF.apply(x, k, p, False), None

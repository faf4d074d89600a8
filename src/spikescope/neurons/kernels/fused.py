"""Fused multi-step LIF for any device: forward without an autograd graph, BPTT written by hand.

What backward keeps (per element and timestep):

* the pre-spike membrane ``H`` in float32 (4 bytes): spikes are ``H >= V_th`` and every surrogate needs ``H``;
* with a piecewise-constant surrogate (Rectangle) and a reset whose gradient does not need ``H``
  (``detach_reset=True`` or soft reset) only one uint8 code instead: bit 0 the spike, bit 1 "inside the window";
* for PLIF with ``decay_input`` also the input ``X`` itself (no copy; the decay gradient needs ``X - V[t-1]``).

The autograd reference keeps three or more float tensors per step. The backward recurrence is::

    gV[t]  = dL/dV[t] (from ``v_seq``) + gH[t+1] * (1 - k)
    gH[t]  = gS[t] * sg'(H[t] - V_th) + gV[t] * dV[t]/dH[t]
    gX[t]  = gH[t] * (k if decay_input else 1)
    dL/dk += sum gH[t] * dH[t]/dk                      (PLIF only)

Both loops write into buffers allocated once per call (in-place and ``out=`` ops); the forward runs the reference's
charge as the same sequence of elementwise ops, so spikes and membranes are bit-identical to :mod:`.reference`.
Half-precision inputs are cast to float32 one step at a time. On the CPU this makes the fused path faster than the
reference loop, whose per-op allocations dominate there (see ``benchmarks/results/neurons_cpu.json``).
"""
from __future__ import annotations

import torch

from ..params import LIFParams
from .reference import compute_dtype

__all__ = ["lif_fused"]

_SPIKE, _INSIDE = 1, 2


def _uses_codes(p: LIFParams, learn_decay: bool) -> bool:
    return p.surrogate.piecewise_constant and not learn_decay and (p.detach_reset or not p.hard_reset)


class _FusedLIF(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, k: torch.Tensor | float, p: LIFParams, return_state: bool):
        learn_decay = isinstance(k, torch.Tensor)
        cdt = compute_dtype(x)
        kf = k.detach().to(cdt) if learn_decay else k
        T = x.shape[0]
        # every step writes into preallocated buffers (in-place ops, the same op sequence as the reference, so the
        # same rounding): no allocation inside the loop, which on the CPU is what a fresh tensor per op costs most
        h_seq = torch.empty(x.shape, dtype=cdt, device=x.device)
        spikes = torch.empty_like(x)
        v_seq = torch.empty_like(x) if return_state else None
        v = torch.full(x.shape[1:], p.reset_value, dtype=cdt, device=x.device)
        tmp = torch.empty_like(v)
        xt = torch.empty_like(v) if x.dtype != cdt else None  # X[t] cast to the compute dtype, one step at a time
        fired = torch.empty(x.shape[1:], dtype=torch.bool, device=x.device)
        for t in range(T):
            h = h_seq[t]
            x_t = x[t] if xt is None else xt.copy_(x[t])
            torch.sub(v, p.reset_value, out=tmp)  # V[t-1] - V_reset
            if p.decay_input:  # H = V + (X - (V - V_reset)) * k
                torch.sub(x_t, tmp, out=tmp)
                tmp.mul_(kf)
                torch.add(v, tmp, out=h)
            else:  # H = V - (V - V_reset) * k + X
                tmp.mul_(kf)
                torch.sub(v, tmp, out=h)
                h.add_(x_t)
            torch.ge(h, p.v_threshold, out=fired)
            spikes[t].copy_(fired)
            if p.hard_reset:  # H * (1 - S) + V_reset * S, exactly (S is 0 or 1)
                v.copy_(h).masked_fill_(fired, p.reset_value)
            else:  # H - V_th * S
                torch.sub(h, fired.to(cdt), alpha=p.v_threshold, out=v)
            if return_state:
                v_seq[t].copy_(v)
        if _uses_codes(p, learn_decay):
            inside = p.surrogate.inside(h_seq - p.v_threshold)
            saved = spikes.to(torch.uint8) | (inside.to(torch.uint8) << 1)
        else:
            saved = h_seq
        keep_x = learn_decay and p.decay_input
        ctx.save_for_backward(saved, x if keep_x else None, k if learn_decay else None)
        ctx.p, ctx.k = p, (None if learn_decay else k)
        return (spikes, v_seq) if return_state else spikes

    @staticmethod
    def backward(ctx, grad_s, grad_v=None):
        saved, x, k = ctx.saved_tensors
        p: LIFParams = ctx.p
        learn_decay = k is not None
        cdt = compute_dtype(grad_s)
        kf = k.detach().to(cdt) if learn_decay else ctx.k
        codes = saved.dtype == torch.uint8
        grad_x = torch.empty_like(grad_s)
        grad_k = torch.zeros((), dtype=cdt, device=grad_s.device) if learn_decay else None
        step = grad_s.shape[1:]
        gv = torch.zeros(step, dtype=cdt, device=grad_s.device)  # dL/dV[t]: from V[t+1]'s charge (+ the v_seq grad)
        tmp = torch.empty_like(gv)
        fired = torch.empty(step, dtype=torch.bool, device=grad_s.device)
        dx = kf if p.decay_input else 1.0
        vr, vth = p.reset_value, p.v_threshold
        for t in range(grad_s.shape[0] - 1, -1, -1):
            if grad_v is not None:
                gv.add_(grad_v[t])
            if codes:
                torch.ne(saved[t] & _SPIKE, 0, out=fired)
                sg = (saved[t] & _INSIDE).to(cdt).mul_(0.5 * p.surrogate.alpha)
            else:
                h = saved[t]
                torch.ge(h, vth, out=fired)
                sg = p.surrogate.derivative(h - vth)
            # gv <- gv * dV[t]/dH[t]
            if p.hard_reset:
                if not p.detach_reset:  # + gv * (V_reset - H) * sg'
                    torch.sub(vr, h, out=tmp).mul_(sg).mul_(gv)
                gv.masked_fill_(fired, 0.0)  # gv * (1 - S)
                if not p.detach_reset:
                    gv.add_(tmp)
            elif not p.detach_reset:  # gv * (1 - V_th * sg')
                gv.addcmul_(gv, sg, value=-vth)
            gh = sg.mul_(grad_s[t]).add_(gv)  # dL/dH[t]
            if dx == 1.0:
                grad_x[t].copy_(gh)
            else:
                grad_x[t].copy_(torch.mul(gh, dx, out=tmp))
            if learn_decay:
                v_prev = _previous_v(saved, t, p)
                dhdk = x[t].to(cdt) - (v_prev - vr) if p.decay_input else -(v_prev - vr)
                grad_k += (gh * dhdk).sum()
            torch.mul(gh, 1 - kf, out=gv)
        grad_k = grad_k.reshape(k.shape).to(k.dtype) if learn_decay else None
        return grad_x, grad_k, None, None


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

"""Readable torch reference for multi-step LIF dynamics: a Python loop over T, differentiated by autograd.

This is the specification every other backend is tested against (ST-ERF paper, Sec. 2; docs/neurons.md)::

    H[t] = V[t-1] + (X[t] - (V[t-1] - V_reset)) * k        decay_input=True
    H[t] = V[t-1] - (V[t-1] - V_reset) * k + X[t]          decay_input=False
    S[t] = Heaviside(H[t] - V_th)                          surrogate gradient in backward
    V[t] = H[t] * (1 - S[t]) + V_reset * S[t]              hard reset (V_reset is a float)
    V[t] = H[t] - V_th * S[t]                              soft reset (V_reset is None; V_reset = 0 above)

with k = 1 / tau (LIF) or sigmoid(w) (PLIF), V[-1] = V_reset (0 for soft reset), and S detached in the
reset term when ``detach_reset`` is set.
"""
from __future__ import annotations

import torch

from ..params import LIFParams

__all__ = ["charge", "compute_dtype", "lif_reference"]


def compute_dtype(x: torch.Tensor) -> torch.dtype:
    """Membrane arithmetic runs in float32, or float64 for float64 inputs."""
    return torch.promote_types(x.dtype, torch.float32)


def charge(v: torch.Tensor, x: torch.Tensor, k: torch.Tensor | float, p: LIFParams) -> torch.Tensor:
    """One charge step H = f(V[t-1], X[t]); shared by every torch backend so they round identically."""
    vr = p.reset_value
    if p.decay_input:
        return v + (x - (v - vr)) * k
    return v - (v - vr) * k + x


def lif_reference(
    x: torch.Tensor, k: torch.Tensor | float, p: LIFParams, return_state: bool = False
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Run the LIF recurrence on ``x [T, ...]`` (float32 arithmetic; float64 stays float64). Returns ``(spikes, v_seq or None)``."""
    # unbind, not xf[t]: each indexing op's backward would scatter into a zero [T, ...] tensor (O(T^2) backward)
    steps = x.to(compute_dtype(x)).unbind(0)
    v = torch.full_like(steps[0], p.reset_value)
    spikes, v_seq = [], []
    for x_t in steps:
        h = charge(v, x_t, k, p)
        s = p.surrogate(h - p.v_threshold)
        s_reset = s.detach() if p.detach_reset else s
        if p.hard_reset:
            v = h * (1 - s_reset) + p.reset_value * s_reset
        else:
            v = h - p.v_threshold * s_reset
        spikes.append(s)
        if return_state:
            v_seq.append(v)
    out = torch.stack(spikes).to(x.dtype)
    return out, (torch.stack(v_seq).to(x.dtype) if return_state else None)

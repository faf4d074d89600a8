"""Stateless multi-step Izhikevich neuron: input current ``[T, ...]`` in, spikes ``[T, ...]`` out.

Per step (Izhikevich 2003, with the time step folded into ``tau_inv`` = κ as in the ST-ERF authors'
``erf_compute/izhikevich.py``)::

    v <- v + κ (sq·v² + mn·v + bias - u + I[t])
    u <- u + a (b·v - u)                      (with the updated v)
    s  = Θ(v - V_th)                          (surrogate gradient in the backward pass)
    v <- v - V_th·s   (soft reset)   or   v <- c·s + (1 - s)·v   (hard reset to c)
    u <- u + d·s

The state starts at v = ``v_init``, u = b·v_init on every call, so nothing carries over between samples.
"""
from __future__ import annotations

import torch
from torch import nn

from .lif import check_sequence
from .surrogate import ATan, Surrogate, get_surrogate

__all__ = ["Izhikevich"]


class Izhikevich(nn.Module):
    """Izhikevich neuron with a surrogate-gradient spike.

    Args:
        a, b, c, d: the Izhikevich parameters (recovery time scale, sensitivity, reset value, reset increment).
        tau_inv: κ, the step size of the v update.
        sq, mn, bias: the coefficients 0.04, 5 and 140 of the quadratic.
        v_threshold: spike when v >= V_th.
        reset: ``"soft"`` (v -= V_th; the authors' ERF experiment) or ``"hard"`` (v = c).
        v_init: initial v (u starts at b·v_init).
        detach_reset: stop the gradient through the reset terms (v and the u += d·s jump).
        surrogate: a :class:`~spikescope.neurons.surrogate.Surrogate` or its name.
    """

    def __init__(
        self,
        a: float = 0.02,
        b: float = 0.2,
        c: float = -65.0,
        d: float = 8.0,
        tau_inv: float = 1.0,
        sq: float = 0.04,
        mn: float = 5.0,
        bias: float = 140.0,
        v_threshold: float = 30.0,
        reset: str = "hard",
        v_init: float = 0.0,
        detach_reset: bool = False,
        surrogate: Surrogate | str = ATan(2.0),
    ) -> None:
        super().__init__()
        if reset not in ("soft", "hard"):
            raise ValueError(f"Izhikevich: reset must be 'soft' or 'hard', got {reset!r}")
        if not tau_inv > 0:
            raise ValueError(f"Izhikevich: tau_inv must be > 0, got {tau_inv}")
        self.a, self.b, self.c, self.d = float(a), float(b), float(c), float(d)
        self.tau_inv, self.sq, self.mn, self.bias = float(tau_inv), float(sq), float(mn), float(bias)
        self.v_threshold, self.reset, self.v_init = float(v_threshold), reset, float(v_init)
        self.detach_reset = bool(detach_reset)
        self.surrogate = get_surrogate(surrogate)

    def forward(
        self, x: torch.Tensor, return_state: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """``x [T, ...]`` -> spikes ``[T, ...]`` (and the post-reset v ``[T, ...]`` if ``return_state``)."""
        check_sequence(x, "Izhikevich")
        v = torch.full_like(x[0], self.v_init)
        u = self.b * v
        spikes, vs = [], []
        for t in range(x.shape[0]):
            v = v + self.tau_inv * (self.sq * v * v + self.mn * v + self.bias - u + x[t])
            u = u + self.a * (self.b * v - u)
            s = self.surrogate(v - self.v_threshold)
            sr = s.detach() if self.detach_reset else s
            v = v - self.v_threshold * sr if self.reset == "soft" else self.c * sr + (1 - sr) * v
            u = u + self.d * sr
            spikes.append(s)
            vs.append(v)
        out = torch.stack(spikes)
        return (out, torch.stack(vs)) if return_state else out

    def extra_repr(self) -> str:
        return (f"a={self.a:g}, b={self.b:g}, c={self.c:g}, d={self.d:g}, tau_inv={self.tau_inv:g}, "
                f"v_threshold={self.v_threshold:g}, reset={self.reset}, surrogate={self.surrogate}")

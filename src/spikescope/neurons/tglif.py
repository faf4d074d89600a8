"""The toy LIF of the ST-ERF spiking-CNN experiments, with a gradient path through time.

The authors' ``erf_scnn/models/Qtrick.py::LIF_with_Temporal_Gradient``, per step::

    m <- m / tau + x[t]                 (leak factor 1/tau, not 1 - 1/tau)
    s  = round(clip(m / V_th, 0, 1))    (fires at m/V_th >= 0.5)
    m <- m - (s·V_th).detach()          (detach_reset; the membrane keeps its gradient through time)

The backward of the spike is a surrogate evaluated at u = m/V_th (centred at 0, not at the threshold):

=========  ==========================================
triangle   alpha·(1 - |u|) on |u| <= 1
sigmoid    sg(alpha·u)·(1 - sg(alpha·u))
arctan     alpha / (1 + (pi/2·alpha·u)²)
rectangle  1{|u| <= alpha}
=========  ==========================================

Unlike the original, T comes from the input (not fixed at 4) and no state survives a call.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from .lif import check_sequence

__all__ = ["TemporalGradientLIF", "QTRICK_SURROGATES"]


def _triangle(u: torch.Tensor, alpha: float) -> torch.Tensor:
    return torch.where(u.abs() <= 1.0, alpha * (1.0 - u.abs()), torch.zeros_like(u))


def _sigmoid(u: torch.Tensor, alpha: float) -> torch.Tensor:
    sg = torch.sigmoid(alpha * u)
    return sg * (1 - sg)


def _arctan(u: torch.Tensor, alpha: float) -> torch.Tensor:
    return alpha / (1.0 + (math.pi / 2 * alpha * u) ** 2)


def _rectangle(u: torch.Tensor, alpha: float) -> torch.Tensor:
    return (u.abs() <= alpha).to(u.dtype)


QTRICK_SURROGATES = {"triangle": _triangle, "sigmoid": _sigmoid, "arctan": _arctan, "rectangle": _rectangle}


class _RoundClipSurrogate(torch.autograd.Function):
    @staticmethod
    def forward(ctx, u: torch.Tensor, mode: str, alpha: float) -> torch.Tensor:
        ctx.save_for_backward(u)
        ctx.mode, ctx.alpha = mode, alpha
        return torch.round(torch.clamp(u, 0.0, 1.0))

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (u,) = ctx.saved_tensors
        return grad * QTRICK_SURROGATES[ctx.mode](u, ctx.alpha), None, None


class TemporalGradientLIF(nn.Module):
    """``x [T, ...]`` -> spikes ``[T, ...]`` in {0, 1} (see the module docstring).

    Args:
        tau: the membrane is divided by tau every step (> 0).
        v_threshold: V_th.
        surrogate: ``"triangle"``, ``"sigmoid"``, ``"arctan"`` or ``"rectangle"``.
        alpha: the surrogate's parameter.
        detach_reset: stop the gradient through the reset (the authors' default).
    """

    def __init__(self, tau: float = 2.0, v_threshold: float = 1.0, surrogate: str = "triangle", alpha: float = 2.0,
                 detach_reset: bool = True) -> None:
        super().__init__()
        if surrogate not in QTRICK_SURROGATES:
            raise ValueError(f"TemporalGradientLIF: unknown surrogate {surrogate!r}; choose one of "
                             f"{sorted(QTRICK_SURROGATES)}")
        if not tau > 0 or not v_threshold > 0:
            raise ValueError(f"TemporalGradientLIF: tau and v_threshold must be > 0, got {tau}, {v_threshold}")
        self.tau, self.v_threshold, self.surrogate = float(tau), float(v_threshold), surrogate
        self.alpha, self.detach_reset = float(alpha), bool(detach_reset)

    def forward(
        self, x: torch.Tensor, return_state: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Spikes ``[T, ...]`` (and the post-reset membrane ``[T, ...]`` if ``return_state``)."""
        check_sequence(x, "TemporalGradientLIF")
        m = torch.zeros_like(x[0])
        spikes, ms = [], []
        for t in range(x.shape[0]):
            m = m / self.tau + x[t]
            s = _RoundClipSurrogate.apply(m / self.v_threshold, self.surrogate, self.alpha)
            r = s * self.v_threshold
            m = m - (r.detach() if self.detach_reset else r)
            spikes.append(s)
            ms.append(m)
        out = torch.stack(spikes)
        return (out, torch.stack(ms)) if return_state else out

    def extra_repr(self) -> str:
        return (f"tau={self.tau:g}, v_threshold={self.v_threshold:g}, surrogate={self.surrogate}, "
                f"alpha={self.alpha:g}, detach_reset={self.detach_reset}")

"""Stateless multi-step LIF and PLIF neurons: ``[T, ...]`` in, spikes ``[T, ...]`` out.

No membrane state survives a call, so there is nothing to reset between samples. The dynamics are
SpikingJelly's ``LIFNode`` / ``ParametricLIFNode`` in multi-step mode (see :mod:`.kernels.reference`).
"""
from __future__ import annotations

import math

import torch
from torch import nn

from .kernels import run_lif
from .params import LIFParams
from .surrogate import ATan, Surrogate, get_surrogate

__all__ = ["LIF", "PLIF", "check_sequence"]


def check_sequence(x: torch.Tensor, who: str) -> None:
    """Raise a clear error unless ``x`` is a floating tensor shaped ``[T, ...]`` with at least 2 dims."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{who}: expected a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"{who}: expected a floating-point tensor, got {x.dtype}; cast the input with .float()")
    if x.dim() < 2:
        raise ValueError(
            f"{who}: expected a time-first tensor [T, ...] with at least 2 dims, got shape {tuple(x.shape)}; "
            "add the time axis with x.unsqueeze(0) for a single step"
        )


class _LIFBase(nn.Module):
    def __init__(
        self,
        v_threshold: float,
        v_reset: float | None,
        decay_input: bool,
        detach_reset: bool,
        surrogate: Surrogate | str,
        backend: str,
    ) -> None:
        super().__init__()
        self.params = LIFParams(
            v_threshold=float(v_threshold),
            v_reset=None if v_reset is None else float(v_reset),
            decay_input=bool(decay_input),
            detach_reset=bool(detach_reset),
            surrogate=get_surrogate(surrogate),
        )
        self.backend = backend

    def decay(self) -> torch.Tensor | float:
        """The factor k = 1/tau applied in the charge equation."""
        raise NotImplementedError

    def forward(
        self, x: torch.Tensor, return_state: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """``x [T, ...]`` -> spikes ``[T, ...]`` (and the post-reset membrane ``[T, ...]`` if ``return_state``)."""
        check_sequence(x, type(self).__name__)
        spikes, v_seq = run_lif(x, self.decay(), self.params, self.backend, return_state)
        return (spikes, v_seq) if return_state else spikes

    def extra_repr(self) -> str:
        p = self.params
        reset = "soft" if p.v_reset is None else f"v_reset={p.v_reset:g}"
        return (
            f"{self._tau_repr()}, v_threshold={p.v_threshold:g}, {reset}, decay_input={p.decay_input}, "
            f"detach_reset={p.detach_reset}, surrogate={p.surrogate}, backend={self.backend!r}"
        )

    def _tau_repr(self) -> str:
        raise NotImplementedError


class LIF(_LIFBase):
    """Leaky integrate-and-fire neuron with a fixed time constant.

    Args:
        tau: membrane time constant, > 1.
        v_threshold: firing threshold V_th.
        v_reset: hard-reset potential; ``None`` selects the soft reset V -= V_th.
        decay_input: ``True`` for H = V + (X - (V - V_reset)) / tau, ``False`` for H = V - (V - V_reset) / tau + X.
        detach_reset: stop the gradient through the reset term.
        surrogate: a :class:`~spikescope.neurons.surrogate.Surrogate` or its name.
        backend: ``"auto"``, ``"fused"``, ``"torch"`` (reference loop), ``"compile"`` or ``"triton"`` (CUDA).
    """

    def __init__(
        self,
        tau: float = 2.0,
        v_threshold: float = 1.0,
        v_reset: float | None = 0.0,
        decay_input: bool = True,
        detach_reset: bool = False,
        surrogate: Surrogate | str = ATan(2.0),
        backend: str = "auto",
    ) -> None:
        if not tau > 1:
            raise ValueError(f"LIF: tau must be > 1 (the decay 1 - 1/tau must lie in (0, 1)), got {tau}")
        super().__init__(v_threshold, v_reset, decay_input, detach_reset, surrogate, backend)
        self.tau = float(tau)

    def decay(self) -> float:
        return 1.0 / self.tau

    def _tau_repr(self) -> str:
        return f"tau={self.tau:g}"


class PLIF(_LIFBase):
    """Parametric LIF: the decay 1/tau = sigmoid(w) is learned (SpikingJelly ``ParametricLIFNode``).

    Takes the arguments of :class:`LIF`, with ``init_tau`` (> 1) setting ``w = -log(init_tau - 1)``.
    """

    def __init__(
        self,
        init_tau: float = 2.0,
        v_threshold: float = 1.0,
        v_reset: float | None = 0.0,
        decay_input: bool = True,
        detach_reset: bool = False,
        surrogate: Surrogate | str = ATan(2.0),
        backend: str = "auto",
    ) -> None:
        if not init_tau > 1:
            raise ValueError(f"PLIF: init_tau must be > 1, got {init_tau}")
        super().__init__(v_threshold, v_reset, decay_input, detach_reset, surrogate, backend)
        self.w = nn.Parameter(torch.tensor(-math.log(init_tau - 1.0)))

    def decay(self) -> torch.Tensor:
        return self.w.sigmoid()

    @property
    def tau(self) -> float:
        return float(1.0 / self.w.detach().sigmoid())

    def _tau_repr(self) -> str:
        return f"tau={self.tau:.4g} (learned)"

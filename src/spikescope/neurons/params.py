"""The static configuration of a LIF-type neuron, shared by the modules and every backend."""
from __future__ import annotations

from dataclasses import dataclass

from .surrogate import Surrogate

__all__ = ["LIFParams"]


@dataclass(frozen=True)
class LIFParams:
    """Everything but the decay constant (which PLIF learns): threshold, reset, input decay, surrogate."""

    v_threshold: float
    v_reset: float | None
    decay_input: bool
    detach_reset: bool
    surrogate: Surrogate

    @property
    def hard_reset(self) -> bool:
        return self.v_reset is not None

    @property
    def reset_value(self) -> float:
        """V_reset for hard reset; 0 for soft reset (the resting and initial potential)."""
        return 0.0 if self.v_reset is None else float(self.v_reset)

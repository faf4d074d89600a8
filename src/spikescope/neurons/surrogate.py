"""Surrogate gradients for the Heaviside spike function.

Each surrogate is a callable object: ``ATan(alpha=2.0)(x)`` returns ``(x >= 0)`` as ``x.dtype`` in the forward
pass and ``derivative(x) * grad`` in the backward pass. The formulas (docs/papers.md#neurons-lif-and-surrogates, SpikingJelly conventions):

========== ==============================================================
ATan       g'(x) = (alpha / 2) / (1 + (pi / 2 * alpha * x)^2)
Sigmoid    g'(x) = alpha * sg(alpha x) * (1 - sg(alpha x))
Rectangle  g'(x) = alpha * 1{|x| < 0.5 / alpha}
Triangle   g'(x) = max(0, alpha - alpha^2 |x|)   (support |x| <= 1 / alpha)
========== ==============================================================
"""
from __future__ import annotations

import math

import torch

__all__ = ["Surrogate", "ATan", "Sigmoid", "Rectangle", "Triangle", "get_surrogate", "SURROGATES"]


class _Heaviside(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, surrogate: Surrogate) -> torch.Tensor:
        ctx.save_for_backward(x)
        ctx.surrogate = surrogate
        return (x >= 0).to(x.dtype)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (x,) = ctx.saved_tensors
        return grad * ctx.surrogate.derivative(x), None


class Surrogate:
    """Base class: Heaviside forward, ``derivative`` backward. Subclasses define ``derivative``."""

    name = "surrogate"
    #: True when the derivative is zero outside a finite window, so a 1-bit "inside" flag plus the
    #: constant value is enough to reproduce it (the fused backends use this to save uint8 instead of floats).
    piecewise_constant = False

    def __init__(self, alpha: float) -> None:
        if not alpha > 0:
            raise ValueError(f"{type(self).__name__}: alpha must be > 0, got {alpha}")
        self.alpha = float(alpha)

    def derivative(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return _Heaviside.apply(x, self)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(alpha={self.alpha:g})"

    def __eq__(self, other: object) -> bool:
        return type(self) is type(other) and self.alpha == other.alpha  # type: ignore[attr-defined]

    def __hash__(self) -> int:
        return hash((type(self).__name__, self.alpha))


class ATan(Surrogate):
    """Arc-tangent surrogate (SpikingJelly ``surrogate.ATan``), default alpha 2."""

    name = "atan"

    def __init__(self, alpha: float = 2.0) -> None:
        super().__init__(alpha)

    def derivative(self, x: torch.Tensor) -> torch.Tensor:
        return (self.alpha / 2) / (1 + (math.pi / 2 * self.alpha * x).square())


class Sigmoid(Surrogate):
    """Sigmoid surrogate (SpikingJelly ``surrogate.Sigmoid``), default alpha 4."""

    name = "sigmoid"

    def __init__(self, alpha: float = 4.0) -> None:
        super().__init__(alpha)

    def derivative(self, x: torch.Tensor) -> torch.Tensor:
        sg = torch.sigmoid(self.alpha * x)
        return self.alpha * sg * (1 - sg)


class Rectangle(Surrogate):
    """Rectangular window of width 1/alpha and height alpha (MS-ResNet uses alpha 1)."""

    name = "rectangle"
    piecewise_constant = True

    def __init__(self, alpha: float = 1.0) -> None:
        super().__init__(alpha)

    def inside(self, x: torch.Tensor) -> torch.Tensor:
        return x.abs() < 0.5 / self.alpha

    def derivative(self, x: torch.Tensor) -> torch.Tensor:
        return self.inside(x).to(x.dtype) * self.alpha


class Triangle(Surrogate):
    """Triangular ("polynomial") surrogate, peak alpha at 0, zero beyond |x| = 1/alpha."""

    name = "triangle"

    def __init__(self, alpha: float = 1.0) -> None:
        super().__init__(alpha)

    def derivative(self, x: torch.Tensor) -> torch.Tensor:
        return (self.alpha - self.alpha**2 * x.abs()).clamp_min(0)


SURROGATES: dict[str, type[Surrogate]] = {cls.name: cls for cls in (ATan, Sigmoid, Rectangle, Triangle)}


def get_surrogate(spec: Surrogate | str, alpha: float | None = None) -> Surrogate:
    """Return a surrogate from an instance or a name (``"atan"``, ``"sigmoid"``, ``"rectangle"``, ``"triangle"``)."""
    if isinstance(spec, Surrogate):
        return spec
    if isinstance(spec, str) and spec.lower() in SURROGATES:
        cls = SURROGATES[spec.lower()]
        return cls() if alpha is None else cls(alpha)
    raise ValueError(f"unknown surrogate {spec!r}; choose one of {sorted(SURROGATES)} or pass a Surrogate instance")

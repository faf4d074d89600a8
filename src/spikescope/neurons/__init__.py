"""The spiking core: stateless multi-step neurons (``[T, ...]`` in, ``[T, ...]`` out) and surrogate gradients."""
from . import surrogate
from .integer import IntegerSpike
from .izhikevich import Izhikevich
from .lif import LIF, PLIF, check_sequence
from .params import LIFParams
from .surrogate import ATan, Rectangle, Sigmoid, Surrogate, Triangle
from .tglif import TemporalGradientLIF

__all__ = [
    "LIF",
    "PLIF",
    "IntegerSpike",
    "Izhikevich",
    "TemporalGradientLIF",
    "LIFParams",
    "Surrogate",
    "ATan",
    "Sigmoid",
    "Rectangle",
    "Triangle",
    "surrogate",
    "check_sequence",
]

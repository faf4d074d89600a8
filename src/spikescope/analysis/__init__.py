"""Analyses of trained spiking models (firing rates, ...)."""
from .firing import FiringRateRecorder  # noqa: F401

"""Analyses of spiking models: firing rates (:mod:`.firing`), spike heat maps (:mod:`.heatmap`)."""
from .firing import FiringRateRecorder  # noqa: F401

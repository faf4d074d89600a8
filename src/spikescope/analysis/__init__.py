"""Analyses of spiking models: firing rates (:mod:`.firing`), synaptic operations and energy (:mod:`.energy`),
spike heat maps (:mod:`.heatmap`)."""
from .energy import EnergyMeter  # noqa: F401
from .firing import FiringRateRecorder, SilentNetworkWarning, warn_if_silent  # noqa: F401
from .profile import ModelProfile, profile_model  # noqa: F401

"""spikescope: spatio-temporal spiking neural networks for vision, and the tools to measure them."""
from . import layers, models, neurons

__version__ = "0.1.0"
__all__ = ["layers", "models", "neurons", "__version__"]

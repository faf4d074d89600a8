"""Training and evaluation: YAML recipes validated into dataclasses, the engine (AMP, DDP, exact resume), eval."""
from .config import Config, ConfigError, config_to_dict, load_config
from .engine import FitResult, evaluate, fit
from .losses import readout_loss

__all__ = ["Config", "ConfigError", "FitResult", "config_to_dict", "evaluate", "fit", "load_config", "readout_loss"]

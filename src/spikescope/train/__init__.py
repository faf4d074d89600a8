"""Training and evaluation: YAML recipes validated into dataclasses, the engine (AMP, DDP, exact resume), eval."""
from .config import Config, ConfigError, config_to_dict, load_config
from .engine import FitResult, evaluate, fit
from .losses import readout_loss
from .tasks import get_task, list_tasks, register_task

__all__ = ["Config", "ConfigError", "FitResult", "config_to_dict", "evaluate", "fit", "get_task", "list_tasks",
           "load_config", "readout_loss", "register_task"]

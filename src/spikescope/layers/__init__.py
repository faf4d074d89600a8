"""Reusable blocks built from the neurons; every layer maps time-first tensors ``[T, B, ...]``."""
from . import time
from .sma import SMA
from .time import SeqToBatch, TimeSharedDropout

__all__ = ["time", "SeqToBatch", "TimeSharedDropout", "SMA"]

"""Reusable blocks built from the neurons; every layer maps time-first tensors ``[T, B, ...]``."""
from . import time
from .time import SeqToBatch, TimeSharedDropout

__all__ = ["time", "SeqToBatch", "TimeSharedDropout"]

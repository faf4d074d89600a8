"""Reusable blocks built from the neurons; every layer maps time-first tensors ``[T, B, ...]``."""
from . import meta_attention, mixers, time  # noqa: F401  (meta_attention, mixers: SDT blocks, channel mixers)
from .sma import SMA
from .time import SeqToBatch, TimeSharedDropout

__all__ = ["time", "SeqToBatch", "TimeSharedDropout", "SMA"]

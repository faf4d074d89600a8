"""Reusable blocks built from the neurons; every layer maps time-first tensors ``[T, B, ...]``."""
from . import time
from .attention import LIFSpec, QKChannelAttention, QKTokenAttention, SpikeDrivenSelfAttention, SpikingSelfAttention
from .time import SeqToBatch, TimeSharedDropout

__all__ = ["time", "SeqToBatch", "TimeSharedDropout"]
__all__ += ["LIFSpec", "SpikingSelfAttention", "SpikeDrivenSelfAttention", "QKTokenAttention", "QKChannelAttention"]

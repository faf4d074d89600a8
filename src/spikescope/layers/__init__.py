"""Reusable blocks built from the neurons; every layer maps time-first tensors ``[T, B, ...]``.

``attention``: Spikformer / SDT-v1 / QKFormer attention; ``meta_attention``: the SDT-v2/v3 blocks;
``mixers``: the conv / MLPixer / SRB channel mixers; ``sma``: Spiking Multiscale Attention; ``time``: T-folding.
"""
from . import meta_attention, mixers, time  # noqa: F401
from .attention import LIFSpec, QKChannelAttention, QKTokenAttention, SpikeDrivenSelfAttention, SpikingSelfAttention
from .sma import SMA
from .time import SeqToBatch, TimeSharedDropout

__all__ = ["time", "SeqToBatch", "TimeSharedDropout", "SMA"]
__all__ += ["LIFSpec", "SpikingSelfAttention", "SpikeDrivenSelfAttention", "QKTokenAttention", "QKChannelAttention"]

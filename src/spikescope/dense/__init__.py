"""Dense prediction on spiking backbones: backbone taps, neck/head integer spikes, COCO detection.

The training tasks (``task: detection`` in a recipe) are plain classes here; the CLI registers them with the
engine of :mod:`spikescope.train` (the two packages do not import each other).
"""
from . import det  # noqa: F401  (registers the maskrcnn_sdt_v3_* models)
from .backbone import DET_TAPS, MIXER_PRESETS, SEG_TAPS, DenseBackbone, backbone_options, build_backbone
from .spikes import DenseSpike, fpn_spike, head_spike

__all__ = [
    "DET_TAPS",
    "SEG_TAPS",
    "MIXER_PRESETS",
    "DenseBackbone",
    "DenseSpike",
    "backbone_options",
    "build_backbone",
    "fpn_spike",
    "head_spike",
]

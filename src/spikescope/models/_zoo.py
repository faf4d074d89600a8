"""Imports every model file so that its builders register themselves."""
from . import meta_spikeformer, ms_resnet, qkformer, sdt_v1, sdt_v3, spikformer, toy, vgg  # noqa: F401

"""COCO instance segmentation with the spiking Mask R-CNN of the ST-ERF paper (Mask R-CNN 1x, SDT-v3 backbones)."""
from .model import MaskRCNNConfig, SpikeMaskRCNN

__all__ = ["MaskRCNNConfig", "SpikeMaskRCNN"]

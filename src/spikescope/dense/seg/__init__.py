"""ADE20K semantic segmentation: Semantic FPN (QFPN + QFPNHead) on the SDT-v3 backbones, mIoU metric."""
from .head import QFPNHead
from .miou import SegMetric, format_seg_report
from .model import SemanticFPN, SemFPNConfig, seg_loss
from .neck import QFPN

__all__ = ["QFPN", "QFPNHead", "SegMetric", "SemFPNConfig", "SemanticFPN", "format_seg_report", "seg_loss"]

"""ST-ERF engine: spatial ERF maps, temporal T x T matrices, metrics, figures and reports (docs/erf.md)."""
from ..models.calibrate import calibrate_bn
from .hooks import LayerError
from .inputs import make_source
from .layouts import Layout, LayoutError, parse_layout
from .metrics import area90, area_ratios, bootstrap_metrics, fit_exp_decay, gaussian_fit
from .result import ERFResult
from .session import NonFiniteGradientError
from .spatial import MODES, SilentLayerWarning, spatial_erf, spatial_erf_loop
from .temporal import temporal_erf, terf_curve

__all__ = [
    "ERFResult",
    "LayerError",
    "Layout",
    "LayoutError",
    "MODES",
    "NonFiniteGradientError",
    "SilentLayerWarning",
    "area90",
    "area_ratios",
    "bootstrap_metrics",
    "calibrate_bn",
    "fit_exp_decay",
    "gaussian_fit",
    "make_source",
    "parse_layout",
    "spatial_erf",
    "spatial_erf_loop",
    "temporal_erf",
    "terf_curve",
]

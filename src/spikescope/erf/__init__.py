"""ST-ERF engine: spatial ERF maps, temporal T x T matrices, metrics, figures and reports (sterf.md §1)."""
from .calibrate import calibrate_bn
from .hooks import LayerError
from .inputs import make_source
from .metrics import area90, area_ratios, bootstrap_metrics, fit_exp_decay, gaussian_fit
from .result import ERFResult
from .session import NonFiniteGradientError
from .spatial import MODES, spatial_erf, spatial_erf_loop
from .temporal import PROTOCOLS, temporal_erf, terf_curve

__all__ = [
    "ERFResult",
    "LayerError",
    "MODES",
    "NonFiniteGradientError",
    "PROTOCOLS",
    "area90",
    "area_ratios",
    "bootstrap_metrics",
    "calibrate_bn",
    "fit_exp_decay",
    "gaussian_fit",
    "make_source",
    "spatial_erf",
    "spatial_erf_loop",
    "temporal_erf",
    "terf_curve",
]

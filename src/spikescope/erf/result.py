"""``ERFResult``: the arrays, metrics and provenance of one ERF measurement, and how they are written to disk."""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

__all__ = ["ERFResult"]


def _clean(obj):
    """JSON-safe copy: NaN/inf -> None, numpy scalars and arrays -> Python values, tuples -> lists."""
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _clean(obj.tolist())
    if isinstance(obj, (np.floating, float)):
        return float(obj) if math.isfinite(obj) else None
    if isinstance(obj, np.integer):
        return int(obj)
    return obj



def _versions() -> dict[str, str]:
    import torch

    from .. import __version__

    return {"spikescope": __version__, "torch": torch.__version__, "numpy": np.__version__}

@dataclass
class ERFResult:
    """One spatial or temporal ERF measurement.

    Attributes:
        kind: ``"spatial"`` or ``"temporal"``.
        maps: spatial: ``{layer: [H, W]}`` mean map over samples (mode-dependent aggregation); temporal:
            ``{"delay{k}": [H, W]}`` mean |gradient| at input time t - k for output time t.
        per_timestep: spatial: ``{layer: [T_in, H, W]}`` map of each input timestep (``abs`` aggregation per t').
        samples: spatial: ``{layer: [N, H, W]}`` per-sample maps (the bootstrap draws from them).
        matrix: temporal: ``[T_out, T_in]`` mean over samples of M[t, t'] (lower-triangular by causality).
        matrix_samples: temporal: ``[N, T_out, T_in]`` per-sample matrices.
        fit: temporal: ``{"a", "b", "c", "rmse"}`` of T-ERF(tau) = a * b**tau + c over delays tau.
        metrics: ``{layer: {name: {"value", "ci95"}}}`` (temporal: the single key ``layer``).
        meta: provenance (model, weights, layers, inputs, seed, N, mode, T, centre, ...).
    """

    kind: str
    maps: dict[str, np.ndarray]
    metrics: dict[str, dict]
    meta: dict
    per_timestep: dict[str, np.ndarray] = field(default_factory=dict)
    samples: dict[str, np.ndarray] = field(default_factory=dict)
    matrix: np.ndarray | None = None
    matrix_samples: np.ndarray | None = None
    fit: dict | None = None

    @property
    def layers(self) -> list[str]:
        return list(self.maps)

    def to_json(self) -> dict:
        return _clean({"kind": self.kind, "meta": self.meta, "metrics": self.metrics, "fit": self.fit})

    def save(self, out_dir: str | Path, figures: bool = True, save_samples: bool = False) -> Path:
        """Write ``erf.npz`` (raw arrays), ``metrics.json`` and (PNG + PDF) figures into ``out_dir``; return it.

        npz keys: ``map/<layer>``, ``per_t/<layer>``, ``matrix``, ``matrix_samples``, with ``save_samples``
        ``samples/<layer>``, and ``meta``: a JSON string of :attr:`meta` plus ``kind``, ``layers`` and the versions of
        spikescope, torch and numpy, so the file describes itself (``json.loads(str(np.load(f)["meta"]))``).
        """
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        arrays = {f"map/{k}": v for k, v in self.maps.items()}
        arrays.update({f"per_t/{k}": v for k, v in self.per_timestep.items()})
        if save_samples:
            arrays.update({f"samples/{k}": v for k, v in self.samples.items()})
        if self.matrix is not None:
            arrays["matrix"] = self.matrix
            arrays["matrix_samples"] = self.matrix_samples
        arrays["meta"] = np.array(json.dumps(_clean({**self.meta, "kind": self.kind, "layers": self.layers,
                                                     "versions": _versions()})))
        np.savez_compressed(out / "erf.npz", **arrays)
        (out / "metrics.json").write_text(json.dumps(self.to_json(), indent=2) + "\n")
        if figures:
            from . import plots

            if self.kind == "spatial":
                plots.plot_layers({self.meta.get("label", "model"): self}, out / "layers")
                if any(v.shape[0] > 1 for v in self.per_timestep.values()):
                    plots.plot_timesteps(self, out / "timesteps")
            else:
                plots.plot_temporal(self, out / "temporal")
        return out

    @classmethod
    def load(cls, out_dir: str | Path) -> ERFResult:
        """Read back what :meth:`save` wrote (per-sample maps only if they were saved)."""
        out = Path(out_dir)
        info = json.loads((out / "metrics.json").read_text())
        data = np.load(out / "erf.npz")
        pick = {prefix: {k[len(prefix) + 1:]: data[k] for k in data.files if k.startswith(prefix + "/")}
                for prefix in ("map", "per_t", "samples")}
        return cls(
            kind=info["kind"],
            maps=pick["map"],
            metrics=info["metrics"],
            meta=info["meta"],
            per_timestep=pick["per_t"],
            samples=pick["samples"],
            matrix=data["matrix"] if "matrix" in data.files else None,
            matrix_samples=data["matrix_samples"] if "matrix_samples" in data.files else None,
            fit=info.get("fit"),
        )

"""Build a registered model for an ERF run from a spec string ``name[:k=v,...][@checkpoint]``.

Without a checkpoint the model keeps its random weights and its BN statistics are calibrated on noise
(:func:`~spikescope.models.calibrate.calibrate_bn`); the returned ``weights`` string says which was used.
"""
from __future__ import annotations

import importlib
import re
from dataclasses import dataclass

import torch
from torch import nn

from ..models import checkpoint_options, create_model, model_info, parse_overrides
from ..models.calibrate import calibrate_bn

__all__ = ["ModelSpec", "PAPER_COMPARISON", "parse_model_spec", "paper_erf_layers", "build_model", "resolve_device"]

#: The ST-ERF paper's SNN comparison (sterf.md §1.3, §4.5): the models and sizes its figures show.
PAPER_COMPARISON = (
    "spikformer_8_512",
    "sdt_v1_8_384",
    "qkformer_10_384",
    "sdt_v3_s:mixer=conv",
    "sdt_v3_s:mixer=mlpixer",
    "sdt_v3_s:mixer=srb",
)


@dataclass
class ModelSpec:
    name: str
    overrides: dict
    checkpoint: str | None

    @property
    def label(self) -> str:
        opts = ",".join(f"{k}={v}" for k, v in self.overrides.items())
        return self.name + (f"[{opts}]" if opts else "")

    @property
    def slug(self) -> str:
        """A folder name without shell glob characters: ``sdt_v3_s[mixer=conv]`` -> ``sdt_v3_s__mixer-conv``."""
        opts = "".join(f"__{k}-{v}" for k, v in self.overrides.items())
        return re.sub(r"[^A-Za-z0-9._=+-]+", "_", self.name + opts).strip("_") or "model"


def parse_model_spec(spec: str) -> ModelSpec:
    """``"sdt_v3_s:mixer=srb,widths=[16,32]@ckpt.pth"`` -> ModelSpec (options split on top-level commas only)."""
    body, _, ckpt = spec.partition("@")
    name, _, opts = body.partition(":")
    return ModelSpec(name, parse_overrides(opts), ckpt or None)


def paper_erf_layers(name: str) -> list[str]:
    """The layers the ST-ERF paper hooked for a registered model (its family module's ``ERF_LAYERS``)."""
    module = importlib.import_module(model_info(name).builder.__module__)
    layers = getattr(module, "ERF_LAYERS", {}).get(name)
    if not layers:
        raise ValueError(f"the ST-ERF paper hooked no layers of {name!r}; pass --layers names or globs instead")
    return list(layers)


def resolve_device(name: str = "auto") -> torch.device:
    """``"auto"``: the current CUDA device when there is one, else the CPU; any other name as ``torch.device``."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} asked for, but torch sees no CUDA device here; use --device cpu")
    return device


def build_model(spec: ModelSpec, *, calibrate: bool = True, input_size=None, seed: int = 0,
                calib_batches: int = 4, calib_batch_size: int = 8,
                device: str | torch.device = "cpu") -> tuple[nn.Module, tuple, int, str]:
    """Returns ``(model in eval mode on device, input_size (C, H, W), timesteps, weights description)``.

    Random weights are drawn on the CPU from ``seed`` (the same on every device), then moved; BN calibration runs
    on ``device``.
    """
    info = model_info(spec.name)
    torch.manual_seed(seed)  # random weights are reproducible from the seed
    # a training checkpoint rebuilds the model it was trained as (its recorded options, then --set)
    overrides = checkpoint_options(spec.name, spec.overrides, spec.checkpoint) if spec.checkpoint else spec.overrides
    model = create_model(spec.name, pretrained=spec.checkpoint, **overrides).to(device)
    cfg = getattr(model, "cfg", None)
    size = tuple(input_size) if input_size else info.input_size
    size = (int(getattr(cfg, "in_channels", size[0])), *size[1:])  # an in_channels override changes C
    T = int(overrides.get("timesteps", getattr(cfg, "timesteps", getattr(cfg, "T", info.timesteps))))
    if spec.checkpoint:
        weights = f"checkpoint {spec.checkpoint}"
    elif calibrate:
        d = calibrate_bn(model, size, timesteps=T, n_batches=calib_batches, batch_size=calib_batch_size, seed=seed)
        weights = (f"random weights + BN calibrated on N(0,1) noise ({d['bn_layers']} BN layers, "
                   f"{d['batches']}x{d['batch_size']} images {size[1]}x{size[2]}, seed {seed})" if d["bn_layers"] else
                   f"random weights (seed {seed}; no BN layer to calibrate)")
    else:
        weights = "random weights, default BN statistics (not calibrated)"
    return model.eval(), size, T, weights

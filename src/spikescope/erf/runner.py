"""Build a model for an ERF run from a spec string ``name[:k=v,...][@checkpoint]``.

``name`` is a registered model or ``timm:<timm name>`` (the ANN controls, :mod:`spikescope.models.timm_controls`).
Without a checkpoint the model keeps its random weights and its BN statistics are calibrated on noise
(:func:`~spikescope.models.calibrate.calibrate_bn`; timm models: also the steps of ``act_bits`` quantisers); the
returned ``weights`` string says which was used. Layer names are checked before any calibration.
"""
from __future__ import annotations

import importlib
import re
from dataclasses import dataclass

import torch
from torch import nn

from ..models import checkpoint_options, create_model, model_info, parse_overrides
from ..models.calibrate import calibrate_bn
from .hooks import resolve_layers, run_model
from .session import placement

__all__ = ["ModelSpec", "PAPER_COMPARISON", "parse_model_spec", "paper_erf_layers", "paper_protocol", "build_model",
           "resolve_device", "default_input_size", "check_layers"]

TIMM = "timm:"

#: The ST-ERF paper's SNN comparison (its spatial-ERF figures): the models and sizes they show.
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
    """``"sdt_v3_s:mixer=srb,widths=[16,32]@ckpt.pth"`` or ``"timm:vit_tiny_patch16_224:act_layer=relu"`` -> ModelSpec
    (options split on top-level commas only)."""
    body, _, ckpt = spec.partition("@")
    prefix = TIMM if body.startswith(TIMM) else ""
    name, _, opts = body[len(prefix):].partition(":")
    return ModelSpec(prefix + name, parse_overrides(opts), ckpt or None)


def paper_erf_layers(name: str) -> list[str]:
    """The layers the ST-ERF paper hooked: a registered model's family ``ERF_LAYERS``, or a timm family's glob."""
    if name.startswith(TIMM):
        from ..models.timm_controls import timm_erf_layers

        return timm_erf_layers(name[len(TIMM):])
    module = importlib.import_module(model_info(name).builder.__module__)
    layers = getattr(module, "ERF_LAYERS", {}).get(name)
    if not layers:
        raise ValueError(f"the ST-ERF paper hooked no layers of {name!r}; pass --layers names or globs instead")
    return list(layers)


def paper_protocol(name: str, overrides: dict | None = None) -> dict:
    """How the authors' ERF script ran this model (its family's ``ERF_PROTOCOL``: runs N, ``t_out``, ``offset``,
    model ``overrides``), ``{}`` where it has none. timm controls: the runs of their functions (ReLU-ViT 60 runs,
    the quantised ViT 40)."""
    if name.startswith(TIMM):
        overrides = overrides or {}
        runs = {"vit_": 20, "deit_": 40, "swin_": 20, "pvt_v2_": 20, "poolformer": 60}
        n = next((n for p, n in runs.items() if name[len(TIMM):].startswith(p)), 20)
        if name[len(TIMM):].startswith("vit_"):
            n = 40 if overrides.get("act_bits") else 60 if overrides.get("act_layer") == "relu" else n
        return {"runs": n, "t_out": "all"}
    return dict(getattr(importlib.import_module(model_info(name).builder.__module__), "ERF_PROTOCOL", {}))


def default_input_size(spec: ModelSpec) -> tuple[int, int, int]:
    """(C, H, W) a model is built for: the registry's, or (3, 224, 224) / ``img_size`` for timm models."""
    if spec.name.startswith(TIMM):
        size = spec.overrides.get("img_size", 224)
        h, w = (size, size) if isinstance(size, int) else tuple(size)
        return (int(spec.overrides.get("in_chans", 3)), h, w)
    return model_info(spec.name).input_size


def check_layers(model: nn.Module, layers, input_size, T: int) -> None:
    """Raise :class:`~spikescope.erf.hooks.LayerError` (with the closest names) unless every layer pattern matches;
    a forward of one noise image gives the forward_features keys when a pattern is not a module name."""
    if layers is None:
        return
    modules = {n for n, _ in model.named_modules() if n}
    patterns = [layers] if isinstance(layers, str) else list(layers)
    if all(p in modules for p in patterns):
        return
    device, dtype = placement(model)
    x = torch.randn(1, *input_size).to(device=device, dtype=dtype)
    with torch.no_grad():
        try:
            keys = list(run_model(model, x))
        except (RuntimeError, ValueError, TypeError):
            keys = list(run_model(model, x.unsqueeze(0).repeat(T, 1, 1, 1, 1)))
    resolve_layers(model, patterns, keys)


def resolve_device(name: str = "auto") -> torch.device:
    """``"auto"``: the current CUDA device when there is one, else the CPU; any other name as ``torch.device``."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} asked for, but torch sees no CUDA device here; use --device cpu")
    return device


def _create(spec: ModelSpec, input_size) -> tuple[nn.Module, tuple, int]:
    """(model, input size (C, H, W), T) of a registered or a timm spec, on the CPU."""
    if spec.name.startswith(TIMM):
        from ..models.timm_controls import build_timm

        size = tuple(input_size) if input_size else default_input_size(spec)
        opts = {k: v for k, v in spec.overrides.items() if k != "img_size"}
        return build_timm(spec.name[len(TIMM):], img_size=size[1:], checkpoint=spec.checkpoint, **opts), size, 1
    info = model_info(spec.name)
    # a training checkpoint rebuilds the model it was trained as (its recorded options, then --set)
    overrides = checkpoint_options(spec.name, spec.overrides, spec.checkpoint) if spec.checkpoint else spec.overrides
    model = create_model(spec.name, pretrained=spec.checkpoint, **overrides)
    cfg = getattr(model, "cfg", None)
    size = tuple(input_size) if input_size else info.input_size
    size = (int(getattr(cfg, "in_channels", size[0])), *size[1:])  # an in_channels override changes C
    T = int(overrides.get("timesteps", getattr(cfg, "timesteps", getattr(cfg, "T", info.timesteps))))
    return model, size, T


def build_model(spec: ModelSpec, *, calibrate: bool = True, input_size=None, seed: int = 0,
                calib_batches: int = 4, calib_batch_size: int = 8,
                device: str | torch.device = "cpu", layers=None) -> tuple[nn.Module, tuple, int, str]:
    """Returns ``(model in eval mode on device, input_size (C, H, W), timesteps, weights description)``.

    Random weights are drawn on the CPU from ``seed`` (the same on every device), then moved; ``layers`` (names or
    globs) are checked (:func:`check_layers`) before the calibration, which runs on ``device``.
    """
    torch.manual_seed(seed)  # random weights are reproducible from the seed
    model, size, T = _create(spec, input_size)
    model = model.to(device).eval()
    steps = ""
    if spec.name.startswith(TIMM) and not spec.checkpoint:  # quantiser steps are part of the model: always set
        from ..models.timm_controls import calibrate_act_quant

        n = calibrate_act_quant(model, size, n_batches=calib_batches, batch_size=calib_batch_size, seed=seed)
        steps = f"; {n} activation quantiser steps set on N(0,1) noise (seed {seed})" if n else ""
    check_layers(model, layers, size, T)
    kind = "timm random init (pretrained=False)" if spec.name.startswith(TIMM) else "random weights"
    bns = sum(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())
    if spec.checkpoint:
        weights = f"checkpoint {spec.checkpoint}"
    elif not bns:
        weights = f"{kind}, no BN layer to calibrate{steps}"
    elif calibrate:
        d = calibrate_bn(model, size, timesteps=T, n_batches=calib_batches, batch_size=calib_batch_size, seed=seed)
        weights = (f"{kind} + BN calibrated on N(0,1) noise ({d['bn_layers']} BN layers, "
                   f"{d['batches']}x{d['batch_size']} images {size[1]}x{size[2]}, seed {seed}){steps}")
    else:
        weights = f"{kind}, default BN statistics (not calibrated){steps}"
    return model.eval(), size, T, weights

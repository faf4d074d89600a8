"""Training configuration: dataclasses filled from YAML, checked before anything is built.

A recipe file has the sections ``model``, ``data``, ``optim``, ``schedule`` and ``train`` (fields below). Unknown
keys, values of the wrong type and a missing data directory raise :class:`ConfigError` naming the dotted key.
``--set key=value`` overrides are parsed as YAML scalars (``--set optim.lr=0.01 --set data.resize=[64,64]``).
"""
from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from ..data.static import ImageRecipe
from ..data.synthetic import SyntheticConfig

__all__ = [
    "ConfigError",
    "ModelSection",
    "DataSection",
    "OptimSection",
    "ScheduleSection",
    "TrainSection",
    "Config",
    "load_config",
    "config_from_dict",
    "config_to_dict",
    "apply_set",
    "check_paths",
    "EVENT_DATASETS",
]

EVENT_DATASETS = ("synthetic", "dvs128_gesture", "cifar10_dvs", "ncaltech101")
STATIC_DATASETS = ("cifar10", "cifar100", "imagenet")


class ConfigError(ValueError):
    """A configuration value that is unknown, of the wrong type or inconsistent; the message names the key."""


@dataclass
class ModelSection:
    name: str = ""  # a registered model name (`spikescope models`)
    options: dict[str, Any] = field(default_factory=dict)  # keyword overrides of the builder
    pretrained: str | None = None  # checkpoint to start from


@dataclass
class DataSection:
    name: Literal[
        "synthetic", "dvs128_gesture", "cifar10_dvs", "ncaltech101", "cifar10", "cifar100", "imagenet", "coco", "ade20k"
    ] = "synthetic"  # coco / ade20k: the dense tasks
    root: str = "data/synthetic"
    num_frames: int = 16  # T of event frames
    split_by: Literal["number", "time"] = "number"
    sensor_size: tuple[int, int] | None = None  # None: the dataset's own (128x128, 180x240; synthetic: its size)
    resize: tuple[int, int] | None = None
    cache_dir: str | None = None  # None: <root>/frames_cache
    augment: bool = False  # event flip + translate (the CIFAR10-DVS recipe)
    split_seed: int | None = None  # None: the paper's (3404 CIFAR10-DVS, 3402 N-Caltech101)
    batch_size: int = 16  # per process
    eval_batch_size: int | None = None
    num_workers: int = 0
    synthetic: SyntheticConfig = field(default_factory=SyntheticConfig)
    image: ImageRecipe = field(default_factory=ImageRecipe)


@dataclass
class OptimSection:
    name: Literal["sgd", "adam", "adamw", "nadam", "lamb"] = "adamw"
    lr: float = 1e-3
    lr_base_batch: int | None = None  # set: lr scales by global_batch / lr_base_batch
    weight_decay: float = 0.0
    momentum: float = 0.9  # SGD
    nesterov: bool = False  # SGD
    betas: tuple[float, float] | None = None
    eps: float | None = None
    momentum_decay: float | None = None  # NAdam
    no_decay_bias_norm: bool = False  # exclude biases and norm weights from weight decay (timm)
    clip_grad: float | None = None  # max global grad norm


@dataclass
class ScheduleSection:
    name: Literal["cosine", "step", "none", "multistep", "poly"] = "cosine"  # cosine/step: per epoch; others per update
    warmup_epochs: int = 0
    warmup_lr: float = 0.0
    min_lr: float = 0.0
    decay_epochs: int = 30  # step
    decay_rate: float = 0.1  # step, multistep
    milestones: list[int] = field(default_factory=list)  # multistep: epochs at whose start lr *= decay_rate
    warmup_iters: int = 0  # multistep, poly: linear warm-up over this many updates
    warmup_factor: float = 0.001  # multistep, poly: lr factor at update 0
    power: float = 1.0  # poly


@dataclass
class TrainSection:
    epochs: int = 10
    seed: int = 0
    amp: Literal["none", "fp16", "bf16"] = "none"
    readout: Literal["ce_mean", "mse_onehot", "tet"] = "ce_mean"
    label_smoothing: float = 0.0
    tet_lambda: float = 0.0  # TET's MSE regulariser weight (0: mean over t of CE only)
    ema: bool = False
    ema_decay: float = 0.9998
    out_dir: str = "runs"
    run_name: str = ""  # empty: the config file's stem
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    deterministic: bool = False
    sync_bn: bool = False
    eval_every: int = 1
    progress: bool = True
    iters_per_epoch: int | None = None  # dense tasks: updates per epoch (the loader is cycled); None: one pass


@dataclass
class Config:
    task: str = "classification"  # a registered training task (spikescope.train.tasks)
    task_options: dict[str, Any] = field(default_factory=dict)  # the task's own settings
    model: ModelSection = field(default_factory=ModelSection)
    data: DataSection = field(default_factory=DataSection)
    optim: OptimSection = field(default_factory=OptimSection)
    schedule: ScheduleSection = field(default_factory=ScheduleSection)
    train: TrainSection = field(default_factory=TrainSection)

    @property
    def run_dir(self) -> Path:
        return Path(self.train.out_dir) / (self.train.run_name or "run")


def _type_name(tp) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _convert(value, tp, key: str):
    """``value`` checked against the annotation ``tp``; lists become tuples for tuple fields."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _convert(value, arg, key)
            except ConfigError as err:
                errors.append(str(err))
        raise ConfigError(errors[0] if len(errors) == 1 else f"{key}: expected {_type_name(tp)}, got {value!r}")
    if origin is Literal:
        choices = typing.get_args(tp)
        if value not in choices:
            raise ConfigError(f"{key}: {value!r} is not one of {list(choices)}")
        return value
    if origin is tuple:
        args = typing.get_args(tp)
        if not isinstance(value, list | tuple) or len(value) != len(args):
            raise ConfigError(f"{key}: expected a list of {len(args)} values, got {value!r}")
        return tuple(_convert(v, a, f"{key}[{i}]") for i, (v, a) in enumerate(zip(value, args)))
    if origin is list:
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        (arg,) = typing.get_args(tp)
        return [_convert(v, arg, f"{key}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}")
        return {k: tuple(v) if isinstance(v, list) else v for k, v in value.items()}
    if tp is Any:
        return value
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping of {[f.name for f in dataclasses.fields(tp)]}, got {value!r}")
        return _build(tp, value, key)
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: expected true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key}: expected a string, got {value!r}")
        return value
    raise ConfigError(f"{key}: unsupported annotation {tp}")


def _build(cls, values: dict, prefix: str):
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = [k for k in values if k not in names]
    if unknown:
        where = f"{prefix}.{unknown[0]}" if prefix else unknown[0]
        raise ConfigError(f"unknown key {where!r}; {prefix or 'the top level'} accepts {names}")
    kwargs = {k: _convert(v, hints[k], f"{prefix}.{k}" if prefix else k) for k, v in values.items()}
    return cls(**kwargs)


def config_from_dict(values: dict) -> Config:
    """A :class:`Config` from nested dicts (missing keys take the defaults); raises :class:`ConfigError`."""
    cfg = _build(Config, values or {}, "")
    _check_values(cfg)
    return cfg


def _check_values(cfg: Config) -> None:
    positive = {"data.num_frames": cfg.data.num_frames, "data.batch_size": cfg.data.batch_size,
                "train.epochs": cfg.train.epochs, "train.eval_every": cfg.train.eval_every}
    for key, value in positive.items():
        if value < 1:
            raise ConfigError(f"{key}: must be >= 1, got {value}")
    if cfg.optim.lr <= 0:
        raise ConfigError(f"optim.lr: must be > 0, got {cfg.optim.lr}")
    timesteps = cfg.model.options.get("timesteps")
    if cfg.data.name in EVENT_DATASETS and isinstance(timesteps, int) and timesteps != cfg.data.num_frames:
        raise ConfigError(
            f"data.num_frames: {cfg.data.num_frames} frames per sample but model.options.timesteps is {timesteps}; "
            "make them equal"
        )
    if not cfg.model.name:
        raise ConfigError("model.name: missing; give a registered model name (`spikescope models` lists them)")


def config_to_dict(cfg) -> dict:
    """Plain nested dicts and lists (YAML-safe) of a config dataclass."""

    def plain(v):
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        if isinstance(v, list | tuple):
            return [plain(x) for x in v]
        return v

    return plain(dataclasses.asdict(cfg))


def apply_set(values: dict, assignment: str) -> None:
    """Apply one ``key.sub=value`` override (value parsed as YAML) to nested dicts in place."""
    if "=" not in assignment:
        raise ConfigError(f"--set {assignment!r}: expected key=value, e.g. optim.lr=0.01")
    key, raw = assignment.split("=", 1)
    parts = key.strip().split(".")
    node = values
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"--set {key}: {part!r} is not a section")
    node[parts[-1]] = yaml.safe_load(raw)


def load_config(path: str | Path | None = None, overrides: list[str] = (), values: dict | None = None) -> Config:
    """Read a YAML recipe (or start from ``values``), apply ``--set`` overrides and validate it.

    ``train.run_name`` defaults to the file's stem.
    """
    values = dict(values or {})
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file not found: {path}")
        loaded = yaml.safe_load(path.read_text()) or {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"{path}: the top level must be a mapping of sections")
        values = loaded
    for assignment in overrides:
        apply_set(values, assignment)
    cfg = config_from_dict(values)
    if not cfg.train.run_name and path is not None:
        cfg.train.run_name = path.stem
    return cfg


def check_paths(cfg: Config) -> None:
    """Fail before training when a data directory or the pretrained file is missing (synthetic data is generated)."""
    if cfg.data.name != "synthetic" and not Path(cfg.data.root).is_dir():
        raise ConfigError(
            f"data.root: directory {cfg.data.root!r} does not exist; put the {cfg.data.name} files there "
            "(docs/data.md says where to get them) or pass --set data.root=PATH"
        )
    if cfg.model.pretrained and not Path(cfg.model.pretrained).is_file():
        raise ConfigError(f"model.pretrained: file {cfg.model.pretrained!r} does not exist")

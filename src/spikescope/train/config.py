"""Training configuration: dataclasses filled from YAML, checked before anything is built.

A recipe file has the sections ``model``, ``data``, ``optim``, ``schedule`` and ``train`` (fields below). Unknown
keys, values of the wrong type and a missing data directory raise :class:`ConfigError` naming the dotted key.
``--set key=value`` overrides are parsed as YAML scalars (``--set optim.lr=0.01 --set data.resize=[64,64]``).
"""
from __future__ import annotations

import dataclasses
import math
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from ..data.static import ImageRecipe
from ..data.synthetic import SyntheticConfig
from ..models.registry import parse_value

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
    "resume_changes",
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
    check_inputs: bool = True  # refuse NaN/inf model inputs (one isfinite pass per batch); false turns it off


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
    allow_missing_classes: bool = False  # a missing/empty class folder: warn and train on the rest (labels unchanged)
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
    _check_ranges(cfg)
    timesteps = cfg.model.options.get("timesteps")
    if cfg.data.name in EVENT_DATASETS and isinstance(timesteps, int) and timesteps != cfg.data.num_frames:
        raise ConfigError(
            f"data.num_frames: {cfg.data.num_frames} frames per sample but model.options.timesteps is {timesteps}; "
            "make them equal"
        )
    if not cfg.model.name:
        raise ConfigError("model.name: missing; give a registered model name (`spikescope models` lists them)")


def _check_ranges(cfg: Config) -> None:
    """Numbers outside the range where they mean anything (NaN and inf included) raise naming the key."""
    o, t = cfg.optim, cfg.train
    ranges = [  # key, value, low, high, low inclusive, high inclusive
        ("optim.lr", o.lr, 0.0, math.inf, False, False),
        ("optim.weight_decay", o.weight_decay, 0.0, math.inf, True, False),
        ("optim.momentum", o.momentum, 0.0, 1.0, True, True),
        ("optim.eps", o.eps, 0.0, math.inf, False, False),
        ("optim.momentum_decay", o.momentum_decay, 0.0, math.inf, True, False),
        ("optim.clip_grad", o.clip_grad, 0.0, math.inf, False, False),
        ("schedule.warmup_epochs", cfg.schedule.warmup_epochs, 0, math.inf, True, False),
        ("schedule.warmup_lr", cfg.schedule.warmup_lr, 0.0, math.inf, True, False),
        ("schedule.min_lr", cfg.schedule.min_lr, 0.0, math.inf, True, False),
        ("schedule.decay_epochs", cfg.schedule.decay_epochs, 1, math.inf, True, False),
        ("schedule.decay_rate", cfg.schedule.decay_rate, 0.0, math.inf, False, False),
        ("train.label_smoothing", t.label_smoothing, 0.0, 1.0, True, False),
        ("train.tet_lambda", t.tet_lambda, 0.0, 1.0, True, True),
        ("train.ema_decay", t.ema_decay, 0.0, 1.0, True, True),
        ("data.num_workers", cfg.data.num_workers, 0, math.inf, True, False),
    ]
    if o.betas is not None:
        ranges += [(f"optim.betas[{i}]", b, 0.0, 1.0, True, False) for i, b in enumerate(o.betas)]
    for i, side in enumerate(cfg.data.resize or ()):
        ranges.append((f"data.resize[{i}]", side, 1, math.inf, True, False))
    for key, value, low, high, low_in, high_in in ranges:
        if value is None:
            continue
        above = value >= low if low_in else value > low
        below = value <= high if high_in else value < high
        if not (above and below):  # NaN fails both
            interval = f"{'[' if low_in else '('}{low}, {high}{']' if high_in else ')'}"
            raise ConfigError(f"{key}: {value!r} is outside {interval}")
    if not re.fullmatch(r"auto|cpu|cuda(:\d+)?|mps", t.device):
        raise ConfigError(f"train.device: {t.device!r} is not one of auto, cpu, cuda, cuda:N")


def resume_changes(stored: dict, new: dict) -> tuple[list[str], list[str]]:
    """``(cannot resume, can resume)``: the keys whose value differs between the config a ``last.pt`` was written
    with and the new one, each as ``"key: old -> new"``. The model and optimiser type and EMA decide what the
    checkpoint's tensors fit; paths, workers, device and progress bars never matter."""
    old_flat, new_flat = _flatten(stored), _flatten(new)
    refused, changed = [], []
    for key in sorted(set(old_flat) | set(new_flat)):
        one_sided = key not in old_flat or key not in new_flat  # a field added or removed since: its default
        if key.startswith(_RESUME_IGNORED) or (one_sided and not key.startswith("model.options.")):
            continue
        old, cur = old_flat.get(key, "<unset>"), new_flat.get(key, "<unset>")
        if old != cur:
            (refused if key.startswith(_RESUME_REFUSED) else changed).append(f"{key}: {old!r} -> {cur!r}")
    return refused, changed


_RESUME_REFUSED = ("model.name", "model.options", "optim.name", "train.ema")
_RESUME_IGNORED = ("model.pretrained", "model.check_inputs", "data.root", "data.cache_dir", "data.num_workers",
                   "data.eval_batch_size", "train.out_dir", "train.run_name", "train.device", "train.progress")


def _flatten(values: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and not name.startswith("model.options"):
            out.update(_flatten(value, f"{name}."))
        elif isinstance(value, dict):
            out.update({f"{name}.{k}": _plain(v) for k, v in value.items()})
        else:
            out[name] = _plain(value)
    return out


def _plain(value):
    return [_plain(v) for v in value] if isinstance(value, list | tuple) else value


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
    try:
        node[parts[-1]] = parse_value(raw)
    except yaml.YAMLError as err:
        raise ConfigError(f"--set {key}: cannot parse {raw!r} ({_yaml_reason(err)})") from None


def _yaml_reason(err: yaml.YAMLError) -> str:
    mark = getattr(err, "problem_mark", None)
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    return f"{getattr(err, 'problem', None) or type(err).__name__}{where}"


def load_config(path: str | Path | None = None, overrides: list[str] = (), values: dict | None = None) -> Config:
    """Read a YAML recipe (or start from ``values``), apply ``--set`` overrides and validate it.

    ``train.run_name`` defaults to the file's stem.
    """
    values = dict(values or {})
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file not found: {path}")
        try:
            loaded = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as err:
            raise ConfigError(f"{path}: not valid YAML ({_yaml_reason(err)})") from None
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

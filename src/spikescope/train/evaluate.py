"""``spikescope eval``: top-1/top-5, per-class accuracy and per-layer firing rates of a trained checkpoint."""
from __future__ import annotations

import json
from pathlib import Path

import torch

from ..analysis.firing import FiringRateRecorder
from ..models import CheckpointError, create_model, load_checkpoint
from .config import Config, ConfigError, config_from_dict, load_config
from .data import build_datasets, build_loaders
from .distributed import DistInfo
from .engine import evaluate
from .tasks import get_task

__all__ = ["evaluate_checkpoint", "format_report", "checkpoint_config"]


def _config_for(checkpoint: Path, config: str | None, overrides: list[str]) -> Config:
    if config is not None:
        return load_config(config, overrides)
    try:
        stored = torch.load(checkpoint, map_location="cpu", weights_only=True).get("config")
    except Exception as err:
        raise ConfigError(f"cannot read the config stored in {checkpoint} ({err}); pass --config") from err
    if stored is None:
        raise ConfigError(f"{checkpoint} holds no config (not written by `spikescope train`); pass --config")
    if not overrides:
        return config_from_dict(stored)
    return load_config(values=stored, overrides=overrides)


def checkpoint_config(checkpoint: str | Path, config: str | None = None, overrides: list[str] = ()) -> Config:
    """The recipe of a checkpoint written by ``spikescope train`` (or ``config`` instead), with ``--set`` overrides."""
    return _config_for(Path(checkpoint), config, list(overrides))


def evaluate_checkpoint(checkpoint: str | Path, config: str | None = None, overrides: list[str] = (),
                        device: str = "auto", ema: bool = False) -> dict:
    """Evaluate ``checkpoint`` on the test split of its recipe (the config stored in it, or ``config``).

    Returns ``{"acc1", "acc5", "loss", "samples", "per_class_acc": {class: %}, "firing_rates": {layer: rate}}``.
    ``ema=True`` evaluates the EMA weights of a ``last.pt``.
    """
    checkpoint = Path(checkpoint)
    if not checkpoint.is_file():
        raise CheckpointError(f"checkpoint file not found: {checkpoint}")
    cfg = _config_for(checkpoint, config, list(overrides))
    cfg.train.progress = False
    dev = torch.device("cuda" if device == "auto" and torch.cuda.is_available() else ("cpu" if device == "auto" else device))
    if cfg.task != "classification":  # dense tasks evaluate themselves (COCO stats, mIoU)
        return {"task": cfg.task, **get_task(cfg.task).evaluate_checkpoint(checkpoint, cfg, dev)}
    dist = DistInfo(device=dev)
    model = create_model(cfg.model.name, **cfg.model.options)
    if ema:
        state = torch.load(checkpoint, map_location="cpu", weights_only=True).get("ema")
        if state is None:
            raise ValueError(f"{checkpoint} holds no EMA weights (train with train.ema: true)")
        model.load_state_dict({k.removeprefix("module."): v for k, v in state.items()})
    else:
        load_checkpoint(model, checkpoint)
    model = model.to(dev)
    train_set, test_set = build_datasets(cfg.data)
    _, loader = build_loaders(train_set, test_set, cfg.data, dist, cfg.train.seed)
    classes = getattr(test_set, "classes", None)
    with FiringRateRecorder(model) as rec:
        res = evaluate(model, loader, cfg, dist, len(classes) if classes else None)
    names = classes or [str(i) for i in range(len(res["per_class_acc"]))]
    res["per_class_acc"] = dict(zip(names, res["per_class_acc"]))
    res["firing_rates"] = rec.rates()
    res["checkpoint"] = str(checkpoint)
    res["model"] = cfg.model.name
    return res


def format_report(res: dict) -> str:
    if res.get("task", "classification") != "classification":
        return get_task(res["task"]).format_report(res)
    lines = [f"{res['model']}  {res['checkpoint']}",
             f"top-1 {res['acc1']:.2f} %  top-5 {res['acc5']:.2f} %  loss {res['loss']:.4f}  ({res['samples']} samples)",
             "", "per-class accuracy (%):"]
    lines += [f"  {name}: {acc:.2f}" for name, acc in res["per_class_acc"].items()]
    lines += ["", "firing rates (mean output per neuron and timestep):"]
    lines += [f"  {name}: {rate:.4f}" for name, rate in res["firing_rates"].items()]
    return "\n".join(lines)


def write_json(res: dict, path: str | Path) -> None:
    Path(path).write_text(json.dumps(res, indent=2))

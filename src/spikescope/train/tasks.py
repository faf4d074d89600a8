"""Training tasks: what the engine asks of classification, detection, segmentation (one engine, a task switch).

A recipe's top-level ``task:`` (default ``classification``) names a registered task. The engine
(:func:`spikescope.train.fit`) keeps the run directory, optimizer, schedule, AMP, EMA, DDP, atomic checkpoints and
exact resume; the task supplies::

    check(cfg)                                        raise ConfigError on settings it cannot use
    build_datasets(cfg) -> (train, test)
    build_model(cfg) -> nn.Module
    build_loaders(train, test, cfg, dist) -> (train_loader, test_loader)   (engine.set_epoch(train_loader, e))
    evaluate(model, loader, cfg, dist) -> dict        flat scalar metrics, prefixed test_, including ``primary``
    primary: str                                      the metric that selects best.pt (higher is better)

and either ``train_epoch(model, loader, optimizer, scaler, ema, scheduler, cfg, dist, epoch) -> dict`` (its own
loop, as classification) or ``losses(model, batch, device) -> {name: scalar tensor}``, which the engine's
iteration loop (:func:`spikescope.train.engine.train_iterations`) sums, back-propagates and logs.

Tasks outside :mod:`spikescope.train` (``spikescope.dense``) do not import it; the CLI registers them
(:func:`register_task`).
"""
from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

from torch import nn

from .config import Config, ConfigError

__all__ = ["Task", "register_task", "get_task", "list_tasks", "ClassificationTask"]


@runtime_checkable
class Task(Protocol):
    primary: str

    def check(self, cfg: Config) -> None: ...

    def build_datasets(self, cfg: Config) -> tuple[Any, Any]: ...

    def build_model(self, cfg: Config) -> nn.Module: ...

    def build_loaders(self, train_set, test_set, cfg: Config, dist) -> tuple[Any, Any]: ...

    def evaluate(self, model: nn.Module, loader, cfg: Config, dist) -> dict: ...


_TASKS: dict[str, Task] = {}


def register_task(name: str, task: Task) -> None:
    """Register ``task`` (an object with the methods above) under ``name``; re-registering replaces it."""
    missing = [m for m in ("check", "build_datasets", "build_model", "build_loaders", "evaluate") if
               not callable(getattr(task, m, None))]
    if not hasattr(task, "train_epoch") and not hasattr(task, "losses"):
        missing.append("train_epoch or losses")
    if missing or not isinstance(getattr(task, "primary", None), str):
        raise TypeError(f"register_task({name!r}): the task lacks {missing or ['primary']}")
    _TASKS[name] = task


def get_task(name: str) -> Task:
    """The registered task ``name``; unknown names raise :class:`ConfigError` listing the registered ones."""
    if name not in _TASKS:
        raise ConfigError(
            f"task: {name!r} is not registered; choose from {list_tasks()} (the dense tasks are registered when "
            "spikescope.cli is imported)"
        )
    return _TASKS[name]


def list_tasks() -> list[str]:
    return sorted(_TASKS)


class ClassificationTask:
    """Image / event-stream classification: the engine's original behaviour (cross-entropy readouts, top-1/top-5)."""

    primary = "test_acc1"

    def check(self, cfg: Config) -> None:
        if cfg.data.name in ("coco", "ade20k"):
            raise ConfigError(f"data.name: {cfg.data.name!r} is a dense dataset; set task: detection / segmentation")
        if cfg.schedule.name in ("multistep", "poly"):
            raise ConfigError(f"schedule.name: {cfg.schedule.name!r} is stepped per update, which only the dense "
                              "tasks do; use cosine or step")
        if cfg.train.iters_per_epoch is not None:
            raise ConfigError("train.iters_per_epoch: classification runs one pass per epoch; remove it")

    def build_datasets(self, cfg: Config):
        from .data import build_datasets

        return build_datasets(cfg.data)

    def build_model(self, cfg: Config) -> nn.Module:
        from ..models import create_model

        return create_model(cfg.model.name, pretrained=cfg.model.pretrained, check_inputs=cfg.model.check_inputs,
                            **cfg.model.options)

    def build_loaders(self, train_set, test_set, cfg: Config, dist):
        from .data import build_loaders, check_num_classes, num_classes_of

        loaders = build_loaders(train_set, test_set, cfg.data, dist, cfg.train.seed)
        self._num_classes = num_classes_of(test_set)
        check_num_classes(cfg, self._num_classes)
        return loaders

    def train_epoch(self, model, loader, optimizer, scaler, ema, scheduler, cfg: Config, dist, epoch: int) -> dict:
        from .engine import _train_epoch

        return _train_epoch(model, loader, optimizer, scaler, ema, cfg, dist, epoch)

    def evaluate(self, model: nn.Module, loader, cfg: Config, dist) -> dict:
        from .engine import evaluate

        res = evaluate(model, loader, cfg, dist, getattr(self, "_num_classes", None))
        return {"test_loss": res["loss"], "test_acc1": res["acc1"], "test_acc5": res["acc5"]}


register_task("classification", ClassificationTask())

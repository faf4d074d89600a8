"""The dense package's training tasks by name (``task:`` in a recipe); the CLI registers them with the engine.

Each value is an object with the methods the engine's task protocol lists (:mod:`spikescope.train.tasks`):
``check, build_datasets, build_model, build_loaders, losses, evaluate, primary``, and for ``spikescope eval`` /
``predict``: ``evaluate_checkpoint(checkpoint, cfg, device) -> dict``, ``format_report(res) -> str``,
``predict(checkpoint, cfg, images, out_dir, device) -> list[Path]``. ``cfg`` is the engine's config object (read
by attribute; this package does not import the engine).
"""
from __future__ import annotations

from .det.task import DetectionTask
from .seg.task import SEGMENTATION

__all__ = ["TASKS"]

TASKS: dict[str, object] = {"detection": DetectionTask(), "segmentation": SEGMENTATION}

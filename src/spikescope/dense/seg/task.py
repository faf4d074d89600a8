"""The ``segmentation`` training task (ADE20K Semantic FPN) for the shared training engine.

It does not import :mod:`spikescope.train`: the CLI registers :data:`SEGMENTATION` with ``register_task``. A recipe
sets ``task: segmentation``, ``data.name: ade20k``, a ``semfpn_sdt_v3_*`` model and, under ``task_options``
(defaults = the released 512x512 recipe)::

    crop_size [512, 512]    scale [2048, 512]    ratio_range [0.5, 2.0]    cat_max_ratio 0.75    flip 0.5
    photometric true        test_scale [2048, 512]    head_lr_scale 2.0    backbone_pretrained null

``backbone_pretrained`` is an ImageNet SDT-v3 checkpoint loaded non-strictly into the backbone (its classifier is
reported unused). The decode head's ``lr_scale`` is applied by the per-update schedule (``poly``/``multistep``).
Evaluation is whole-image at batch 1, the mIoU accumulated over the split (all ranks). ``spikescope eval`` /
``predict`` call :meth:`SegmentationTask.evaluate_checkpoint`, :meth:`~SegmentationTask.format_report` and
:meth:`~SegmentationTask.predict`.
"""
from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from types import SimpleNamespace

import torch
import torch.distributed as torch_dist
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from ...data.ade20k import ADE20K, ADE20K_CLASSES, EpochTaggedSampler
from ...data.seg_transforms import SegTrainPipeline
from ...models import create_model, load_checkpoint
from .miou import SegMetric, format_seg_report
from .predict import logits_at, predict_images

__all__ = ["SegmentationTask", "SEGMENTATION", "OPTIONS"]

OPTIONS = {
    "crop_size": (512, 512),
    "scale": (2048, 512),
    "ratio_range": (0.5, 2.0),
    "cat_max_ratio": 0.75,
    "flip": 0.5,
    "photometric": True,
    "test_scale": (2048, 512),
    "head_lr_scale": 2.0,
    "backbone_pretrained": None,
}
_AMP = {"fp16": torch.float16, "bf16": torch.bfloat16}


def _unwrap(model: nn.Module) -> nn.Module:
    return getattr(model, "module", model)


class SegmentationTask:
    """Semantic segmentation: released CE loss, mIoU / aAcc / mAcc (``test_mIoU`` selects ``best.pt``)."""

    primary = "test_mIoU"

    def options(self, cfg) -> dict:
        """``task_options`` over the defaults, lists as tuples."""
        unknown = sorted(set(cfg.task_options) - set(OPTIONS))
        if unknown:
            raise ValueError(f"task_options: unknown key(s) {unknown} for task segmentation; use {sorted(OPTIONS)}")
        opts = {**OPTIONS, **cfg.task_options}
        return {k: tuple(v) if isinstance(v, list) else v for k, v in opts.items()}

    def check(self, cfg) -> None:
        if cfg.data.name != "ade20k":
            raise ValueError(f"data.name: task segmentation reads ADE20K; set data.name: ade20k (got {cfg.data.name!r})")
        if not cfg.model.name.startswith("semfpn_"):
            raise ValueError(f"model.name: task segmentation needs a semfpn_* model, got {cfg.model.name!r}")
        opts = self.options(cfg)
        for key in ("crop_size", "scale", "test_scale", "ratio_range"):
            if not (isinstance(opts[key], tuple) and len(opts[key]) == 2):
                raise ValueError(f"task_options.{key}: expected two numbers, got {opts[key]!r}")
        if opts["head_lr_scale"] != 1.0 and cfg.schedule.name not in ("poly", "multistep"):
            raise ValueError(f"task_options.head_lr_scale: applied by the per-update schedules; set schedule.name: "
                             f"poly (got {cfg.schedule.name!r}) or head_lr_scale: 1.0")

    def build_datasets(self, cfg):
        opts = self.options(cfg)
        pipeline = SegTrainPipeline(scale=opts["scale"], ratio_range=opts["ratio_range"], crop=opts["crop_size"],
                                    cat_max_ratio=opts["cat_max_ratio"], flip=opts["flip"],
                                    photometric=opts["photometric"])
        train = ADE20K(cfg.data.root, "training", train=True, pipeline=pipeline, seed=cfg.train.seed)
        test = ADE20K(cfg.data.root, "validation", train=False, test_scale=opts["test_scale"])
        return train, test

    def build_model(self, cfg) -> nn.Module:
        model = create_model(cfg.model.name, pretrained=cfg.model.pretrained, **cfg.model.options)
        path = self.options(cfg)["backbone_pretrained"]
        if path is not None:
            report = load_checkpoint(model.backbone.body, path, strict=False)
            print(f"backbone from {path}: {report}", file=sys.stderr)
        return model

    def param_groups(self, model: nn.Module, cfg) -> list[dict]:
        """Backbone + neck at the base lr, the decode head at ``head_lr_scale`` x (timm's ``lr_scale``)."""
        head = {id(p) for p in _unwrap(model).head_parameters()}
        rest = [p for p in model.parameters() if id(p) not in head]
        return [{"params": rest}, {"params": [p for p in model.parameters() if id(p) in head],
                                   "lr_scale": float(self.options(cfg)["head_lr_scale"])}]

    def build_loaders(self, train_set, test_set, cfg, dist):
        sampler = EpochTaggedSampler(train_set, num_replicas=dist.world_size, rank=dist.rank, shuffle=True,
                                     seed=cfg.train.seed, drop_last=True)
        train = DataLoader(train_set, batch_size=cfg.data.batch_size, sampler=sampler, drop_last=True,
                           num_workers=cfg.data.num_workers, persistent_workers=cfg.data.num_workers > 0)
        test = DataLoader(test_set, batch_size=1, sampler=range(dist.rank, len(test_set), dist.world_size),
                          num_workers=cfg.data.num_workers)
        return train, test

    def losses(self, model: nn.Module, batch, device) -> dict[str, torch.Tensor]:
        x, y = (t.to(device, non_blocking=True) for t in batch)
        return {"ce": _unwrap(model).loss(model(x), y)}

    def evaluate_full(self, model: nn.Module, loader, cfg, dist) -> dict:
        """:meth:`SegMetric.compute` over the loader (summed over ranks), plus ``images``."""
        model.eval()
        metric = SegMetric(_unwrap(model).cfg.num_classes)
        dtype = _AMP.get(cfg.train.amp)
        show = cfg.train.progress and dist.is_main
        with torch.no_grad():
            for x, y in tqdm(loader, desc="eval", leave=False, disable=not show):
                with torch.autocast(dist.device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
                    logits = logits_at(model, x.to(dist.device), y.shape[-2:])
                metric.update(logits.float().argmax(1), y)
        state = metric.state.to(dist.device)
        if dist.world_size > 1:
            torch_dist.all_reduce(state)
        metric.state = state.cpu()
        images = torch.tensor([len(loader.sampler)], device=dist.device)
        if dist.world_size > 1:
            torch_dist.all_reduce(images)
        return {**metric.compute(), "images": int(images.item())}

    def evaluate(self, model: nn.Module, loader, cfg, dist) -> dict:
        res = self.evaluate_full(model, loader, cfg, dist)
        return {f"test_{k}": res[k] for k in ("mIoU", "aAcc", "mAcc")}

    def _trained_model(self, checkpoint: str | Path, cfg, device: torch.device) -> nn.Module:
        model = create_model(cfg.model.name, **cfg.model.options)
        load_checkpoint(model, checkpoint)
        return model.to(device).eval()

    def evaluate_checkpoint(self, checkpoint: str | Path, cfg, device: torch.device) -> dict:
        """mIoU / aAcc / mAcc and per-class IoU / Acc of ``checkpoint`` on the validation split of ``cfg``."""
        self.check(cfg)
        model = self._trained_model(checkpoint, cfg, device)
        test = ADE20K(cfg.data.root, "validation", train=False, test_scale=self.options(cfg)["test_scale"])
        loader = DataLoader(test, batch_size=1, num_workers=cfg.data.num_workers)
        local = SimpleNamespace(rank=0, world_size=1, device=device, is_main=True)
        res = self.evaluate_full(model, loader, cfg, local)
        return {"model": cfg.model.name, "checkpoint": str(checkpoint),
                "classes": _class_names(model.cfg.num_classes), **res}

    def format_report(self, res: dict) -> str:
        """The per-class table, then ``mIoU aAcc mAcc``."""
        head = f"{res['model']}  {res['checkpoint']}  ({res['images']} images)"
        return head + "\n" + format_seg_report(res, res["classes"])

    def predict(self, checkpoint: str | Path, cfg, images: Sequence[str | Path], out_dir: str | Path,
                device: torch.device, score_thr: float | None = None) -> list[Path]:
        """Colour label map and overlay PNGs of each image (:func:`~.predict.predict_images`); ``score_thr`` is
        the detection task's and unused here."""
        missing = [str(p) for p in images if not Path(p).is_file()]
        if missing:
            raise FileNotFoundError(f"predict: image file(s) not found: {', '.join(missing)}")
        model = self._trained_model(checkpoint, cfg, device)
        return predict_images(model, images, out_dir, _class_names(model.cfg.num_classes),
                              self.options(cfg)["test_scale"], device, progress=cfg.train.progress)


def _class_names(num_classes: int) -> list[str]:
    """ADE20K's names for the first ``num_classes`` classes (indices beyond 150 by number)."""
    return [ADE20K_CLASSES[i] if i < len(ADE20K_CLASSES) else str(i) for i in range(num_classes)]


SEGMENTATION = SegmentationTask()

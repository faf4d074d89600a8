"""The ``detection`` training task: COCO data, the spiking Mask R-CNN's losses, COCO bbox / segm evaluation.

Recipe keys it reads: ``data.root`` (the COCO folder), ``data.batch_size`` (images per process),
``data.eval_batch_size`` (default 1, as released), ``data.num_workers``; ``model.name`` / ``model.options`` (a
``maskrcnn_sdt_v3_*`` model), ``model.pretrained`` (an ImageNet backbone checkpoint, loaded non-strictly into the
backbone); ``task_options``: the :class:`~.data.DetTransforms` sizes (``first_scale, multiscale, crop_scales,
crop_range, long_max, test_scale, flip, crop``), ``max_eval_images`` (evaluate on the first N validation images) and
``group_by_aspect_ratio`` (default ``true``: training batches of one orientation,
:class:`~.data.AspectRatioBatchSampler`, as released; ``false``: any images share a batch, the last short batch of
each rank is dropped). Evaluation batches are never grouped.
The primary metric is ``test_bbox_AP`` (COCO AP@[.5:.95] of the boxes).
"""
from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch
import torch.distributed as torch_dist
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler, Subset
from tqdm import tqdm

from ...models import create_model, load_checkpoint
from .coco_eval import STAT_NAMES, detections_to_records, evaluate_coco, to_original
from .data import MEAN, STD, AspectRatioBatchSampler, CocoDetection, DetTransforms, collate

__all__ = ["DetectionTask"]

_TRANSFORM_KEYS = ("first_scale", "multiscale", "crop_scales", "crop_range", "long_max", "test_scale", "flip",
                   "crop")
_OPTION_KEYS = (*_TRANSFORM_KEYS, "max_eval_images", "group_by_aspect_ratio")


def _transforms(cfg, train: bool) -> DetTransforms:
    opts = {k: (tuple(v) if isinstance(v, list | tuple) and k not in ("multiscale", "crop_scales") else
                list(v) if isinstance(v, list | tuple) else v)
            for k, v in cfg.task_options.items() if k in _TRANSFORM_KEYS}
    return DetTransforms(train=train, **opts)


def _eval_subset(dataset, cfg):
    n = cfg.task_options.get("max_eval_images")
    return Subset(dataset, range(min(n, len(dataset)))) if n else dataset


def _class_names(cfg, num_classes: int) -> list[str]:
    """Category names from the recipe's COCO annotations when present, else ``class <i>``."""
    ann = Path(cfg.data.root) / "annotations" / "instances_val2017.json"
    if ann.is_file():
        cats = sorted(json.loads(ann.read_text())["categories"], key=lambda c: c["id"])
        if len(cats) == num_classes:
            return [c["name"] for c in cats]
    return [f"class {i}" for i in range(num_classes)]


def _base(dataset):
    return dataset.dataset if isinstance(dataset, Subset) else dataset


class DetectionTask:
    primary = "test_bbox_AP"

    def check(self, cfg) -> None:
        if cfg.data.name != "coco":
            raise ValueError(f"data.name: task detection reads COCO; set data.name: coco (got {cfg.data.name!r})")
        unknown = [k for k in cfg.task_options if k not in _OPTION_KEYS]
        if unknown:
            raise ValueError(f"task_options.{unknown[0]}: unknown for task detection; it accepts {list(_OPTION_KEYS)}")
        group = cfg.task_options.get("group_by_aspect_ratio", True)
        if not isinstance(group, bool):
            raise ValueError(f"task_options.group_by_aspect_ratio: expected true or false, got {group!r}")
        if not cfg.model.name.startswith("maskrcnn_"):
            raise ValueError(f"model.name: task detection needs a maskrcnn_* model, got {cfg.model.name!r}")

    def build_datasets(self, cfg):
        root = cfg.data.root
        return (CocoDetection(root, "train", _transforms(cfg, True)),
                _eval_subset(CocoDetection(root, "val", _transforms(cfg, False)), cfg))

    def build_model(self, cfg) -> nn.Module:
        model = create_model(cfg.model.name, **cfg.model.options)
        if cfg.model.pretrained:
            load_checkpoint(model.backbone.body, cfg.model.pretrained, strict=False)
        return model

    def build_loaders(self, train_set, test_set, cfg, dist):
        sampler = DistributedSampler(train_set, num_replicas=dist.world_size, rank=dist.rank, shuffle=True,
                                     seed=cfg.train.seed)
        if cfg.task_options.get("group_by_aspect_ratio", True):
            if not callable(getattr(train_set, "aspect_flags", None)):
                raise ValueError(f"task_options.group_by_aspect_ratio: the training set ({type(train_set).__name__}) "
                                 "has no aspect_flags() to group by; set it to false")
            batches = AspectRatioBatchSampler(sampler, train_set.aspect_flags(), cfg.data.batch_size)
            train = DataLoader(train_set, batch_sampler=batches, collate_fn=collate, num_workers=cfg.data.num_workers)
        else:
            train = DataLoader(train_set, batch_size=cfg.data.batch_size, sampler=sampler, drop_last=True,
                               collate_fn=collate, num_workers=cfg.data.num_workers)
        if len(train) == 0:
            raise ValueError(f"data.batch_size {cfg.data.batch_size} exceeds this rank's {len(sampler)} training images")
        test = DataLoader(test_set, batch_size=cfg.data.eval_batch_size or 1, collate_fn=collate,
                          sampler=list(range(dist.rank, len(test_set), dist.world_size)),
                          num_workers=cfg.data.num_workers)
        return train, test

    def losses(self, model: nn.Module, batch, device: torch.device) -> dict[str, torch.Tensor]:
        images, sizes, targets = batch
        targets = [{k: targets[i][k].to(device) for k in ("boxes", "labels", "masks")} for i in range(len(targets))]
        return model(images.to(device), sizes, targets)

    def evaluate(self, model: nn.Module, loader, cfg, dist) -> dict:
        stats = self._coco_stats(model, loader, cfg, dist, Path(cfg.run_dir) / "eval")
        return {f"test_{t}_{n}": v for t, vals in stats.items() for n, v in zip(STAT_NAMES, vals)}

    def _coco_stats(self, model, loader, cfg, dist, out_dir: Path) -> dict[str, list[float]]:
        dataset = _base(loader.dataset)
        model.eval()
        results = {"bbox": [], "segm": []}
        ids = []
        amp = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(cfg.train.amp)
        with torch.no_grad():
            for images, sizes, targets in tqdm(loader, desc="eval", leave=False,
                                               disable=not (cfg.train.progress and dist.is_main)):
                with torch.autocast(dist.device.type, dtype=amp or torch.float32, enabled=amp is not None):
                    dets = model(images.to(dist.device), sizes)
                for det, t in zip(dets, targets):
                    det = {k: v.float() if v.is_floating_point() else v for k, v in det.items()}
                    det = to_original(det, t["scale"], t["orig_size"])
                    bbox, segm = detections_to_records(t["image_id"], det, dataset.cat_ids)
                    results["bbox"] += bbox
                    results["segm"] += segm
                    ids.append(t["image_id"])
        if dist.enabled:
            gathered = [None] * dist.world_size
            torch_dist.all_gather_object(gathered, (results, ids))
            results = {k: [r for g in gathered for r in g[0][k]] for k in results}
            ids = [i for g in gathered for i in g[1]]
        stats = [evaluate_coco(dataset.ann_file, results, out_dir, ids) if dist.is_main else None]
        if dist.enabled:
            torch_dist.broadcast_object_list(stats, src=0)
        return stats[0]

    def evaluate_checkpoint(self, checkpoint: Path, cfg, device: torch.device) -> dict:
        model = create_model(cfg.model.name, **cfg.model.options)
        load_checkpoint(model, checkpoint)
        model.to(device)
        test = _eval_subset(CocoDetection(cfg.data.root, "val", _transforms(cfg, False)), cfg)
        dist = SimpleNamespace(rank=0, world_size=1, device=device, enabled=False, is_main=True)
        cfg.data.eval_batch_size = cfg.data.eval_batch_size or 1
        loader = DataLoader(test, batch_size=cfg.data.eval_batch_size, collate_fn=collate,
                            num_workers=cfg.data.num_workers)
        out_dir = Path(checkpoint).parent / "eval"
        stats = self._coco_stats(model, loader, cfg, dist, out_dir)
        res = {"model": cfg.model.name, "checkpoint": str(checkpoint), "images": len(test),
               "results_dir": str(out_dir), **{t: dict(zip(STAT_NAMES, v)) for t, v in stats.items()}}
        (out_dir / "stats.json").write_text(json.dumps(res, indent=2))
        return res

    def predict(self, checkpoint: Path, cfg, images: list[Path], out_dir: Path, device: torch.device,
                score_thr: float = 0.5) -> list[Path]:
        """Draw boxes, class names with scores and masks of each image's detections; ``<out_dir>/<stem>.png``."""
        from torchvision.utils import draw_bounding_boxes, draw_segmentation_masks

        model = create_model(cfg.model.name, **cfg.model.options)
        load_checkpoint(model, checkpoint)
        model.to(device).eval()
        names = _class_names(cfg, model.cfg.num_classes)
        transforms = _transforms(cfg, False)
        out_dir.mkdir(parents=True, exist_ok=True)
        written = []
        for path in tqdm(images, desc="predict", disable=len(images) < 2):
            if not path.is_file():
                raise FileNotFoundError(f"image not found: {path}")
            with Image.open(path) as im:
                raw = torch.from_numpy(np.asarray(im.convert("RGB"), dtype=np.uint8).copy()).permute(2, 0, 1)
            img, _, _, _, scale = transforms(raw.float(), torch.zeros(0, 4), torch.zeros(0, dtype=torch.long),
                                             torch.zeros(0, *raw.shape[-2:], dtype=torch.bool))
            img = (img - torch.tensor(MEAN)[:, None, None]) / torch.tensor(STD)[:, None, None]
            images_t, sizes, _ = collate([(img, None)])
            with torch.no_grad():
                det = model(images_t.to(device), sizes)[0]
            keep = det["scores"] >= score_thr
            det = to_original({k: v[keep].float() if v.is_floating_point() else v[keep] for k, v in det.items()},
                              scale, tuple(raw.shape[-2:]))
            canvas = raw
            if len(det["boxes"]):
                canvas = draw_segmentation_masks(canvas, det["masks"].cpu(), alpha=0.45)
                labels = [f"{names[int(c)]} {s:.2f}" for c, s in zip(det["labels"], det["scores"].tolist())]
                canvas = draw_bounding_boxes(canvas, det["boxes"].cpu(), labels=labels, width=2)
            target = out_dir / f"{path.stem}.png"
            Image.fromarray(canvas.permute(1, 2, 0).numpy()).save(target)
            written.append(target)
        return written

    def format_report(self, res: dict) -> str:
        lines = [f"{res['model']}  {res['checkpoint']}  ({res['images']} images)"]
        for t in ("bbox", "segm"):
            lines.append(f"{t}: " + "  ".join(f"{n} {res[t][n]:.3f}" for n in STAT_NAMES))
        lines.append(f"raw results: {res['results_dir']}/{{bbox,segm}}_results.json")
        return "\n".join(lines)

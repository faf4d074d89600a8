"""COCO bbox / segm evaluation with pycocotools: detections -> result records -> JSON -> ``COCOeval`` stats.

Records follow the COCO results format: ``{image_id, category_id (the dataset's own id), bbox [x, y, w, h] in
original-image pixels, score}``, plus ``segmentation`` (an RLE of the binary mask at the original size, counts as
str) for segm. :func:`evaluate_coco` writes ``<out>/{bbox,segm}_results.json``, reads them back with ``loadRes``
and returns the 12 standard stats of each type (pycocotools' defaults: maxDets 1 / 10 / 100).
"""
from __future__ import annotations

import contextlib
import io
import json
import os
import tempfile
from pathlib import Path

import numpy as np
import torch

from .data import require_pycocotools
from .roi_heads import paste_masks

__all__ = ["STAT_NAMES", "to_original", "detections_to_records", "evaluate_coco", "write_json_atomic"]

STAT_NAMES = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl")


def to_original(det: dict[str, torch.Tensor], scale: tuple[float, float], orig_size: tuple[int, int],
                masks: bool = True) -> dict[str, torch.Tensor]:
    """One image's model output (input pixels, ``mask_probs [n, 28, 28]``) -> boxes in original pixels (divided by
    the per-axis resize factors, clipped) and, with ``masks``, ``masks [n, H, W]`` pasted at the original size."""
    sx, sy = scale
    H, W = orig_size
    boxes = det["boxes"] / det["boxes"].new_tensor([sx, sy, sx, sy])
    boxes[:, 0::2] = boxes[:, 0::2].clamp(0, W)
    boxes[:, 1::2] = boxes[:, 1::2].clamp(0, H)
    out = {"boxes": boxes, "scores": det["scores"], "labels": det["labels"]}
    if masks:
        out["masks"] = paste_masks(det["mask_probs"], boxes, (H, W))
    return out


def detections_to_records(image_id: int, det: dict[str, torch.Tensor], cat_ids: list[int]) -> tuple[list, list]:
    """``(bbox records, segm records)`` of one image's detections in original pixels (``masks`` optional)."""
    _, _, mask_api = require_pycocotools()
    boxes, scores, labels = det["boxes"].tolist(), det["scores"].tolist(), det["labels"].tolist()
    bbox = [{"image_id": int(image_id), "category_id": int(cat_ids[lab]), "score": float(s),
             "bbox": [x1, y1, x2 - x1, y2 - y1]} for (x1, y1, x2, y2), s, lab in zip(boxes, scores, labels)]
    segm = []
    if "masks" in det and len(boxes):
        rles = mask_api.encode(np.asfortranarray(det["masks"].permute(1, 2, 0).cpu().numpy().astype(np.uint8)))
        for rec, rle in zip(bbox, rles):
            rle["counts"] = rle["counts"].decode("ascii")
            segm.append({**{k: rec[k] for k in ("image_id", "category_id", "score")}, "segmentation": rle})
    return bbox, segm


def write_json_atomic(obj, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        json.dump(obj, f)
    os.replace(tmp, path)


def evaluate_coco(ann_file: str | Path, results: dict[str, list], out_dir: str | Path,
                  image_ids: list[int] | None = None) -> dict[str, list[float]]:
    """``results = {"bbox": records, "segm": records}`` -> ``{"bbox": 12 stats, "segm": 12 stats}``.

    Each list is written to ``<out_dir>/<type>_results.json`` and read back; ``image_ids`` restricts the evaluation
    (default: every image of the annotation file). A type with no detection scores 0 everywhere.
    """
    coco_mod, cocoeval, _ = require_pycocotools()
    out_dir = Path(out_dir)
    with contextlib.redirect_stdout(io.StringIO()):
        gt = coco_mod.COCO(str(ann_file))
    stats = {}
    for iou_type, records in results.items():
        path = out_dir / f"{iou_type}_results.json"
        write_json_atomic(records, path)
        if not records:
            stats[iou_type] = [0.0] * len(STAT_NAMES)
            continue
        with contextlib.redirect_stdout(io.StringIO()):
            dt = gt.loadRes(str(path))
            ev = cocoeval.COCOeval(gt, dt, iou_type)
            if image_ids is not None:
                ev.params.imgIds = sorted(image_ids)
            ev.evaluate()
            ev.accumulate()
            ev.summarize()
        stats[iou_type] = [float(v) for v in ev.stats]
    return stats

"""A tiny COCO-format data set written by the tests (real layout, non-contiguous category ids, edge cases)."""
import json
from pathlib import Path

import numpy as np
from PIL import Image

CATEGORIES = [{"id": 1, "name": "square", "supercategory": "shape"},
              {"id": 3, "name": "disc", "supercategory": "shape"},
              {"id": 7, "name": "bar", "supercategory": "shape"}]
COLOURS = {1: (230, 40, 40), 3: (40, 230, 40), 7: (40, 40, 230)}


def _rect(x, y, w, h):
    return [[x, y, x + w, y, x + w, y + h, x, y + h]]


def _ellipse(cx, cy, rx, ry, n=24):
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    return [np.stack([cx + rx * np.cos(t), cy + ry * np.sin(t)], 1).round(2).ravel().tolist()]


def write_coco(root: Path, n_images: int = 6, size=(96, 128), seed: int = 0) -> Path:
    """Images ``size = (H, W)`` with 1-2 shapes each; extras: a crowd RLE, an image without annotation, a 24x24
    image and an annotation narrower than 1 px. Both splits hold the same images."""
    rng = np.random.default_rng(seed)
    H, W = size
    images, anns = [], []
    for i in range(n_images):
        img = rng.integers(0, 60, (H, W, 3), dtype=np.uint8)
        for j in range(1 + i % 2):
            cat = [1, 3, 7][(i + j) % 3]
            x, y = int(rng.integers(4, W // 2)), int(rng.integers(4, H // 2))
            w, h = int(rng.integers(24, W // 2 - 4)), int(rng.integers(24, H // 2 - 4))
            if cat == 3:
                seg = _ellipse(x + w / 2, y + h / 2, w / 2, h / 2)
                yy, xx = np.mgrid[:H, :W]
                inside = ((xx + 0.5 - x - w / 2) / (w / 2)) ** 2 + ((yy + 0.5 - y - h / 2) / (h / 2)) ** 2 <= 1
            else:
                seg = _rect(x, y, w, h)
                inside = np.zeros((H, W), bool)
                inside[y:y + h, x:x + w] = True
            img[inside] = COLOURS[cat]
            anns.append({"id": len(anns) + 1, "image_id": i + 1, "category_id": cat, "bbox": [x, y, w, h],
                         "area": float(w * h), "iscrowd": 0, "segmentation": seg})
        images.append({"id": i + 1, "file_name": f"{i + 1:012d}.jpg", "width": W, "height": H, "img": img})
    # edge cases: an image with no annotation, a 24 x 24 image, a crowd region, a sub-pixel-wide box
    images.append({"id": 100, "file_name": "000000000100.jpg", "width": W, "height": H,
                   "img": rng.integers(0, 60, (H, W, 3), dtype=np.uint8)})
    images.append({"id": 101, "file_name": "000000000101.jpg", "width": 24, "height": 24,
                   "img": rng.integers(0, 60, (24, 24, 3), dtype=np.uint8)})
    anns.append({"id": len(anns) + 1, "image_id": 101, "category_id": 1, "bbox": [2, 2, 10, 10], "area": 100.0,
                 "iscrowd": 0, "segmentation": _rect(2, 2, 10, 10)})
    from pycocotools import mask as mask_api

    crowd = np.zeros((H, W), np.uint8, order="F")
    crowd[60:80, 90:120] = 1
    rle = mask_api.encode(np.asfortranarray(crowd))
    anns.append({"id": len(anns) + 1, "image_id": 1, "category_id": 3, "bbox": [90, 60, 30, 20], "area": 600.0,
                 "iscrowd": 1, "segmentation": {"size": [H, W], "counts": rle["counts"].decode("ascii")}})
    anns.append({"id": len(anns) + 1, "image_id": 2, "category_id": 7, "bbox": [5, 5, 0.5, 20], "area": 10.0,
                 "iscrowd": 0, "segmentation": _rect(5, 5, 0.5, 20)})
    (root / "annotations").mkdir(parents=True, exist_ok=True)
    for split in ("train", "val"):
        (root / f"{split}2017").mkdir(exist_ok=True)
        for im in images:
            Image.fromarray(im["img"]).save(root / f"{split}2017" / im["file_name"], quality=95)
        meta = [{k: v for k, v in im.items() if k != "img"} for im in images]
        (root / "annotations" / f"instances_{split}2017.json").write_text(
            json.dumps({"images": meta, "annotations": anns, "categories": CATEGORIES}))
    return root

"""COCO AP through our evaluation path (records -> JSON -> pycocotools) on hand-made cases with known values."""
import json

import numpy as np
import pytest
import torch
from pycocotools.coco import COCO

from spikescope.dense.det.coco_eval import STAT_NAMES, detections_to_records, evaluate_coco

GT = [(1, [10, 10, 40, 30], 1), (2, [50, 20, 40, 40], 3)]  # image, box xywh, category (both "medium")


def _gt_file(tmp_path):
    anns = [{"id": i + 1, "image_id": img, "category_id": cat, "bbox": box, "area": box[2] * box[3], "iscrowd": 0,
             "segmentation": [[box[0], box[1], box[0] + box[2], box[1], box[0] + box[2], box[1] + box[3], box[0],
                               box[1] + box[3]]]} for i, (img, box, cat) in enumerate(GT)]
    data = {"images": [{"id": i, "file_name": f"{i}.jpg", "width": 120, "height": 100} for i in (1, 2)],
            "annotations": anns, "categories": [{"id": 1, "name": "a"}, {"id": 3, "name": "b"}]}
    path = tmp_path / "instances_val2017.json"
    path.write_text(json.dumps(data))
    return path


def _run(tmp_path, dets_per_image, with_masks=False):
    ann = _gt_file(tmp_path)
    coco = COCO(str(ann))
    results = {"bbox": [], "segm": []}
    for image_id, dets in dets_per_image.items():
        boxes = torch.tensor([[x, y, x + w, y + h] for (x, y, w, h), _, _ in dets], dtype=torch.float32)
        det = {"boxes": boxes, "scores": torch.tensor([s for _, s, _ in dets]),
               "labels": torch.tensor([lab for _, _, lab in dets])}
        if with_masks:
            anns = coco.imgToAnns[image_id]
            det["masks"] = torch.from_numpy(np.stack([coco.annToMask(a) for a in anns])).bool()
        bbox, segm = detections_to_records(image_id, det, [1, 3])
        results["bbox"] += bbox
        results["segm"] += segm
    if not with_masks:
        del results["segm"]
    stats = evaluate_coco(ann, results, tmp_path / "out")
    assert (tmp_path / "out" / "bbox_results.json").is_file()
    return {t: dict(zip(STAT_NAMES, v)) for t, v in stats.items()}


def test_perfect_detections_bbox_and_segm(tmp_path):
    dets = {1: [([10, 10, 40, 30], 1.0, 0)], 2: [([50, 20, 40, 40], 1.0, 1)]}
    stats = _run(tmp_path, dets, with_masks=True)
    for t in ("bbox", "segm"):
        s = stats[t]
        assert (s["AP"], s["AP50"], s["AP75"], s["APm"], s["APs"], s["APl"]) == pytest.approx((1, 1, 1, 1, -1, -1))


def test_shifted_box_iou_0625(tmp_path):
    shift = 40 * 0.375 / 1.625
    dets = {1: [([10 + shift, 10, 40, 30], 1.0, 0)], 2: [([50, 20, 40, 40], 1.0, 1)]}
    s = _run(tmp_path, dets)["bbox"]
    assert (s["AP"], s["AP50"], s["AP75"]) == pytest.approx((0.65, 1.0, 0.5))


def test_small_false_positive_above_a_true_positive(tmp_path):
    dets = {1: [([80, 60, 20, 20], 0.95, 0), ([10, 10, 40, 30], 0.9, 0)], 2: [([50, 20, 40, 40], 1.0, 1)]}
    s = _run(tmp_path, dets)["bbox"]
    assert (s["AP"], s["AP50"], s["AP75"], s["APm"]) == pytest.approx((0.75, 0.75, 0.75, 1.0))


def test_no_detections_scores_zero(tmp_path):
    stats = evaluate_coco(_gt_file(tmp_path), {"bbox": []}, tmp_path / "out")
    assert stats["bbox"] == [0.0] * 12
    assert json.loads((tmp_path / "out" / "bbox_results.json").read_text()) == []

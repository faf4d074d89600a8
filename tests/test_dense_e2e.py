"""Detection end to end on a synthetic COCO set: dataset rules, 2 training iterations and eval via the CLI."""
import json

import pytest
import torch
import yaml
from _coco_synth import write_coco
from PIL import Image

from spikescope.cli import main
from spikescope.dense.det.data import CocoDetection, DetTransforms, collate

TINY_MODEL = {"name": "maskrcnn_sdt_v3_s", "options": {"backbone": "sdt_v3_t", "embed_dims": [16, 32, 64, 64],
                                                        "neck_channels": 64, "fc": 128, "num_classes": 3,
                                                        "rpn_proposals": 100, "roi_batch": 64}}
SMALL_SIZES = {"first_scale": [128, 96], "multiscale": [96, 128], "crop_scales": [96], "crop_range": [64, 96],
               "long_max": 160, "test_scale": [128, 96]}


@pytest.fixture(scope="module")
def coco_root(tmp_path_factory):
    return write_coco(tmp_path_factory.mktemp("coco"))


def test_dataset_rules(coco_root):
    train = CocoDetection(coco_root, "train", DetTransforms(train=False, test_scale=(128, 96)))
    val = CocoDetection(coco_root, "val", DetTransforms(train=False, test_scale=(128, 96)))
    assert 100 not in train.ids and 101 not in train.ids and len(train) == 6  # empty and 24x24 images dropped
    assert len(val) == 8 and val.cat_ids == [1, 3, 7] and val.classes == ["square", "disc", "bar"]
    _, t = val[val.ids.index(2)]
    raw = [a for a in val.coco.imgToAnns[2]]
    assert len(raw) == 3 and len(t["boxes"]) == 2  # the 0.5 px wide box is skipped
    _, t1 = val[0]
    assert len(val.coco.imgToAnns[1]) == 2 and len(t1["boxes"]) == 1  # the crowd region is ignored
    assert t1["labels"].tolist() == [val.label_of[val.coco.imgToAnns[1][0]["category_id"]]]
    assert t1["masks"].shape == (1, 96, 128) and t1["masks"].any()
    images, sizes, targets = collate([val[0], val[val.ids.index(101)]])
    assert images.shape == (2, 3, 96, 128) and sizes == [(96, 128), (96, 96)]
    assert (images[1, :, :, 96:] == 0).all()


def test_missing_coco_folder_says_where_files_go(tmp_path, capsys):
    cfg = {"task": "detection", "model": TINY_MODEL, "data": {"name": "coco", "root": str(tmp_path / "nowhere")}}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    assert main(["train", "--config", str(tmp_path / "c.yaml")]) == 2
    assert "docs/data.md" in capsys.readouterr().err


def test_two_iterations_then_eval_writes_coco_stats(coco_root, tmp_path, capsys):
    cfg = {"task": "detection", "task_options": {**SMALL_SIZES, "max_eval_images": 1}, "model": TINY_MODEL,
           "data": {"name": "coco", "root": str(coco_root), "batch_size": 2},
           "optim": {"name": "adamw", "lr": 2e-4, "weight_decay": 0.05},
           "schedule": {"name": "multistep", "warmup_iters": 1, "milestones": [8]},
           "train": {"epochs": 1, "iters_per_epoch": 2, "out_dir": str(tmp_path), "run_name": "det",
                     "progress": False}}
    (tmp_path / "det.yaml").write_text(yaml.safe_dump(cfg))
    torch.manual_seed(0)
    assert main(["train", "--config", str(tmp_path / "det.yaml")]) == 0
    log = (tmp_path / "det" / "log.csv").read_text().splitlines()
    header, row = log[0].split(","), dict(zip(log[0].split(","), log[1].split(",")))
    for name in ("loss_rpn_cls", "loss_rpn_bbox", "loss_cls", "loss_bbox", "loss_mask"):
        assert f"train_{name}" in header and float(row[f"train_{name}"]) >= 0
    assert "test_bbox_AP" in header and "test_segm_AP" in header
    capsys.readouterr()
    assert main(["eval", "--checkpoint", str(tmp_path / "det" / "best.pt"), "--json", str(tmp_path / "r.json")]) == 0
    out = capsys.readouterr().out
    assert "bbox: AP" in out and "segm: AP" in out
    res = json.loads((tmp_path / "r.json").read_text())
    assert set(res["bbox"]) >= {"AP", "AP50", "APl"} and res["images"] == 1
    assert (tmp_path / "det" / "eval" / "segm_results.json").is_file()
    image = coco_root / "val2017" / "000000000001.jpg"
    assert main(["predict", "--checkpoint", str(tmp_path / "det" / "best.pt"), str(image), "--out",
                 str(tmp_path / "pics"), "--score-thr", "0"]) == 0
    with Image.open(tmp_path / "pics" / "000000000001.png") as im:
        assert im.size == (128, 96) and im.mode == "RGB"


def test_erf_of_the_detector_backbone_and_fpn(tmp_path, capsys):
    sets = ["backbone=sdt_v3_t", "embed_dims=[16,32,64,64]", "neck_channels=32", "fc=64", "num_classes=3"]
    args = ["erf", "spatial", "--model", "maskrcnn_sdt_v3_s", "--size", "64", "96", "--n", "2", "--batch", "2",
            "--boot", "10", "--layers", "stage4", "p5", "--out", str(tmp_path / "erf")]
    for item in sets:
        args += ["--set", item]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "stage4" in out and "p5" in out

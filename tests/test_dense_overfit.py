"""Slow tier: the tiny spiking Mask R-CNN overfits 4 synthetic COCO images (bbox AP50 >= 0.5, loss down >= 50 %).

CPU, 1 thread, fixed seeds, 300 updates from random weights (140-185 s on a shared 2-core VM). Measured: bbox AP50
0.888 with train.seed 0, 1 and 2 (the ceiling is 0.889: the sub-pixel-wide annotation is skipped in training but is
a GT for COCOeval), AP 0.788 / 0.728 / 0.747, loss 2.09 -> 0.35 (seed 0). The optimiser is SGD with momentum and
gradient clipping, not the recipe's AdamW: with AdamW (lr 1e-3, 2e-4 or 5e-5) the units feeding the RPN's 1x1 convs
and the box head's second FC leave the integer spikes' [0, 4] window for every input (zero straight-through gradient
there, so they never return: all of them by update 30 at lr 1e-3, 88-98 % of the second FC's after 300 updates at
5e-5 to 2e-4); the classifier then sees one input for every RoI, keeps the background prior and nothing scores above
0.05 (AP50 0.0) although the loss falls 1.49 -> 0.34. See docs/dense_prediction.md, "Known limits".
"""
import pytest
from _coco_synth import write_coco

from spikescope.cli import register_tasks
from spikescope.train import fit, load_config


@pytest.mark.slow
def test_tiny_detector_overfits_four_images(tmp_path):
    root = write_coco(tmp_path / "coco", n_images=4, size=(64, 96))
    register_tasks()
    cfg = load_config(values={
        "task": "detection",
        "task_options": {"first_scale": [96, 64], "multiscale": [64], "long_max": 96, "test_scale": [96, 64],
                         "flip": 0.0, "crop": 0.0, "max_eval_images": 4},
        "model": {"name": "maskrcnn_sdt_v3_s", "options": {
            "backbone": "sdt_v3_t", "embed_dims": [16, 32, 64, 64], "neck_channels": 64, "fc": 128, "num_classes": 3,
            "rpn_proposals": 100, "roi_batch": 64, "mixer_drop": 0.0,
            "fpn_eval_clamp": False}},  # the released {0, 1} eval clamp of the FPN is a train/test mismatch
        "data": {"name": "coco", "root": str(root), "batch_size": 2},
        "optim": {"name": "sgd", "lr": 0.02, "momentum": 0.9, "nesterov": False, "weight_decay": 0.0,
                  "clip_grad": 10.0},  # without the clip, seed 2 diverges (box-head loss 1e5)
        "schedule": {"name": "multistep", "warmup_iters": 20, "milestones": [8]},
        "train": {"epochs": 10, "iters_per_epoch": 30, "eval_every": 10, "seed": 0, "out_dir": str(tmp_path),
                  "run_name": "o", "progress": False},
    })
    hist = fit(cfg).history
    first, last = hist[0], hist[-1]
    assert last["train_loss"] <= 0.5 * first["train_loss"], (first["train_loss"], last["train_loss"])
    assert all(v >= 0 for k, v in last.items() if k.startswith("train_loss"))
    assert last["test_bbox_AP50"] >= 0.5, last["test_bbox_AP50"]
    assert (tmp_path / "o" / "eval" / "bbox_results.json").is_file()

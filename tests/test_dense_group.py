"""Aspect-ratio grouped training batches of the detection task (the released mmdet 3.x AspectRatioBatchSampler)."""
import json
import math

import numpy as np
import pytest
import torch
import yaml
from PIL import Image
from torch.utils.data import DistributedSampler

from spikescope.cli import main, register_tasks
from spikescope.dense.det.data import AspectRatioBatchSampler, CocoDetection, DetTransforms
from spikescope.dense.det.task import DetectionTask
from spikescope.train import fit, load_config
from spikescope.train.distributed import DistInfo
from spikescope.train.engine import set_epoch

# (width, height): landscape, portrait and square images (a square one goes with the landscape ones)
SIZES = [(48, 32), (32, 48), (40, 40), (48, 36), (36, 48), (56, 32)]


def _write_coco(root, sizes, images=True):
    """A COCO layout (the same images in both splits) of one box per image; ``images=False``: annotations only."""
    (root / "annotations").mkdir(parents=True)
    meta, anns = [], []
    for i, (w, h) in enumerate(sizes, 1):
        meta.append({"id": i, "file_name": f"{i:012d}.jpg", "width": w, "height": h})
        anns.append({"id": i, "image_id": i, "category_id": 1, "bbox": [4, 4, 20, 20], "area": 400.0, "iscrowd": 0,
                     "segmentation": [[4, 4, 24, 4, 24, 24, 4, 24]]})
    cats = [{"id": 1, "name": "box", "supercategory": "shape"}]
    for split in ("train", "val"):
        (root / f"{split}2017").mkdir()
        for (w, h), m in zip(sizes, meta):
            if images:
                Image.fromarray(np.full((h, w, 3), 40 + 30 * m["id"], np.uint8)).save(
                    root / f"{split}2017" / m["file_name"])
        (root / "annotations" / f"instances_{split}2017.json").write_text(
            json.dumps({"images": meta, "annotations": anns, "categories": cats}))
    return root


def _cfg(root, batch_size=2, options=None):
    return load_config(values={
        "task": "detection", "model": {"name": "maskrcnn_sdt_v3_s"},
        "task_options": {"first_scale": [64, 32], "multiscale": [32], "long_max": 64, "crop": 0.0,
                         **(options or {})},
        "data": {"name": "coco", "root": str(root), "batch_size": batch_size},
        "train": {"seed": 3}})


def _batches(flags, batch_size, epoch=0, seed=0, rank=0, world=1):
    sampler = AspectRatioBatchSampler(DistributedSampler(range(len(flags)), world, rank, seed=seed), flags,
                                      batch_size)
    sampler.set_epoch(epoch)
    return list(sampler), len(sampler)


def test_flags_come_from_the_annotation_sizes_without_decoding(tmp_path):
    root = _write_coco(tmp_path / "coco", SIZES, images=False)
    assert CocoDetection(root, "train").aspect_flags() == [1, 0, 1, 1, 0, 1]


def test_hand_worked_orders():
    # buckets fill in the sampler's order; the rest, portrait first, is yielded at the end
    assert list(AspectRatioBatchSampler(range(10), [0, 1, 1, 0, 1, 1, 1, 0, 0, 1], 3)) == [
        [1, 2, 4], [0, 3, 7], [5, 6, 9], [8]]
    # two rests that do not fill a batch each: one full mixed batch, then a short one
    sampler = AspectRatioBatchSampler(range(4), [0, 1, 0, 1], 3)
    assert list(sampler) == [[0, 2, 1], [3]] and len(sampler) == 2


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_one_orientation_per_batch_and_the_epoch_covered_once(seed):
    flags = np.random.default_rng(seed).integers(0, 2, 37).tolist()
    batches, n = _batches(flags, 4, seed=seed)
    assert n == len(batches) == math.ceil(37 / 4)
    assert sorted(i for b in batches for i in b) == list(range(37))  # one process: no padding, nothing dropped
    mixed = [k for k, b in enumerate(batches) if len({flags[i] for i in b}) > 1]
    assert len(mixed) <= 1 and all(k >= len(batches) - 2 for k in mixed)  # only the epoch's rest can mix
    assert all(len(b) == 4 for b in batches[:-1]) and 1 <= len(batches[-1]) <= 4
    for flag in (0, 1):  # no bucket is padded: it fills count // 4 batches, its count % 4 rest joins the other's
        assert sum(len(b) == 4 and {flags[i] for i in b} == {flag} for b in batches) == flags.count(flag) // 4


def test_epochs_differ_and_the_same_seed_and_epoch_repeat():
    flags = [i % 3 == 0 for i in range(30)]
    flags = [int(f) for f in flags]
    e0, _ = _batches(flags, 4, epoch=0, seed=5)
    assert _batches(flags, 4, epoch=0, seed=5)[0] == e0  # a fresh sampler (a resumed run) sees the same batches
    assert _batches(flags, 4, epoch=1, seed=5)[0] != e0
    assert _batches(flags, 4, epoch=0, seed=6)[0] != e0


@pytest.mark.parametrize("n", [23, 24, 9])
def test_two_ranks_split_the_epoch(n):
    flags = np.random.default_rng(n).integers(0, 2, n).tolist()
    (b0, n0), (b1, n1) = (_batches(flags, 4, epoch=2, seed=1, rank=r, world=2) for r in (0, 1))
    assert n0 == n1 == len(b0) == len(b1) == math.ceil(math.ceil(n / 2) / 4)
    seen = sorted(i for b in b0 + b1 for i in b)
    # padding as torch's DistributedSampler: the first (2 * ceil(n / 2) - n) indices of the epoch's permutation again
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(1 + 2)).tolist()
    assert seen == sorted(list(range(n)) + perm[:2 * math.ceil(n / 2) - n])
    for batches in (b0, b1):
        assert sum(len({flags[i] for i in b}) > 1 for b in batches) <= 1


def test_task_loader_groups_real_batches_and_resumes(tmp_path):
    root = _write_coco(tmp_path / "coco", SIZES)
    cfg = _cfg(root)
    assert "group_by_aspect_ratio" not in cfg.task_options
    task = DetectionTask()
    task.check(cfg)  # grouping is the default
    train_set = CocoDetection(root, "train", DetTransforms(first_scale=(64, 32), multiscale=[32], long_max=64, crop=0.0))
    loader, _ = task.build_loaders(train_set, train_set, cfg, DistInfo())
    assert len(loader) == 3  # 4 landscape / square and 2 portrait images, 2 per batch
    epochs = []
    for epoch in (0, 1, 0):
        set_epoch(loader, epoch)  # what the engine calls each epoch
        ids = []
        for images, sizes, targets in loader:
            assert images.shape[0] == 2 and images.shape[-2] % 32 == 0 and images.shape[-1] % 32 == 0
            assert len({w >= h for h, w in sizes}) == 1  # one orientation per batch, after the resizes
            ids.append([t["image_id"] for t in targets])
        epochs.append(ids)
    assert sorted(i for b in epochs[0] for i in b) == list(range(1, 7))
    assert epochs[2] == epochs[0] != epochs[1]


def test_grouping_off_keeps_the_plain_loader(tmp_path):
    root = _write_coco(tmp_path / "coco", SIZES, images=False)
    cfg = _cfg(root, batch_size=4, options={"group_by_aspect_ratio": False})
    DetectionTask().check(cfg)
    loader, _ = DetectionTask().build_loaders(CocoDetection(root, "train"), [], cfg, DistInfo())
    assert isinstance(loader.sampler, DistributedSampler) and loader.drop_last and len(loader) == 1
    with pytest.raises(ValueError, match=r"the training set \(list\) has no aspect_flags\(\) to group by; set it"):
        DetectionTask().build_loaders(list(range(6)), [], _cfg(root), DistInfo())


@pytest.mark.parametrize("value", ["yes", 1, None])
def test_a_wrong_option_value_is_refused(tmp_path, value):
    cfg = _cfg(tmp_path, options={"group_by_aspect_ratio": value})
    with pytest.raises(ValueError, match=r"task_options.group_by_aspect_ratio: expected true or false, got"):
        DetectionTask().check(cfg)


def test_cli_names_the_bad_value(tmp_path, capsys):
    cfg = {"task": "detection", "model": {"name": "maskrcnn_sdt_v3_s"}, "train": {"out_dir": str(tmp_path / "runs")},
           "data": {"name": "coco", "root": str(tmp_path), "batch_size": 2}}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    assert main(["train", "--config", str(tmp_path / "c.yaml"), "--set", "task_options.group_by_aspect_ratio=maybe"]) == 2
    assert "error: task_options.group_by_aspect_ratio: expected true or false, got 'maybe'" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()


def test_bad_flags_and_batch_size_are_refused():
    with pytest.raises(ValueError, match="flags must be 0 .portrait. or 1 .landscape., got 2"):
        AspectRatioBatchSampler(range(2), [0, 2], 1)
    with pytest.raises(ValueError, match="data.batch_size: expected a positive integer, got 0"):
        AspectRatioBatchSampler(range(2), [0, 1], 0)


@pytest.mark.slow
def test_resume_with_grouped_batches_is_bit_exact(tmp_path):
    root = _write_coco(tmp_path / "coco", SIZES)
    register_tasks()

    def recipe(name):
        return load_config(values={
            "task": "detection", "task_options": {"first_scale": [64, 32], "multiscale": [32], "long_max": 64,
                                                  "test_scale": [64, 32], "max_eval_images": 1},
            "model": {"name": "maskrcnn_sdt_v3_s", "options": {
                "backbone": "sdt_v3_t", "embed_dims": [16, 32, 64, 64], "neck_channels": 32, "fc": 64,
                "num_classes": 1, "rpn_proposals": 50, "roi_batch": 32}},
            "data": {"name": "coco", "root": str(root), "batch_size": 2},
            "optim": {"name": "adamw", "lr": 2e-4, "weight_decay": 0.05},
            "schedule": {"name": "multistep", "warmup_iters": 2, "milestones": [8]},
            "train": {"epochs": 2, "eval_every": 2, "out_dir": str(tmp_path), "run_name": name, "progress": False}})

    full = fit(recipe("full"))
    split = recipe("split")
    fit(split, stop_after=1)
    resumed = fit(split, resume=True)
    a, b = full.model.state_dict(), resumed.model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert [r["train_loss"] for r in full.history] == [r["train_loss"] for r in resumed.history]

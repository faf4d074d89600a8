"""ADE20K segmentation end to end on a synthetic ADE-format set: train (shared engine), eval, head lr, overfit."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml
from _ade_helpers import write_ade20k

from spikescope.cli import main, register_tasks
from spikescope.data.ade20k import ADE20K, EpochTaggedSampler
from spikescope.dense.seg.task import SEGMENTATION
from spikescope.train import fit, load_config
from spikescope.train.optim import build_optimizer, build_scheduler

TINY = {"embed_dims": [16, 32, 64, 64], "neck_channels": 16, "num_classes": 3}


def _recipe(tmp_path: Path, root: Path, **train) -> dict:
    return {
        "task": "segmentation",
        "task_options": {"crop_size": [64, 64], "scale": [80, 64], "ratio_range": [0.5, 2.0], "test_scale": [80, 64]},
        "model": {"name": "semfpn_sdt_v3_s", "options": dict(TINY)},
        "data": {"name": "ade20k", "root": str(root), "batch_size": 2},
        "optim": {"name": "adamw", "lr": 1e-3, "weight_decay": 0.005},
        "schedule": {"name": "poly", "warmup_iters": 1, "warmup_factor": 1e-6, "power": 1.0},
        "train": {"epochs": 1, "iters_per_epoch": 2, "out_dir": str(tmp_path / "runs"), "run_name": "seg",
                  "progress": False, **train},
    }


def test_train_two_iterations_then_eval_prints_miou(tmp_path, capsys):
    root = write_ade20k(tmp_path / "ade")
    path = tmp_path / "seg.yaml"
    path.write_text(yaml.safe_dump(_recipe(tmp_path, root)))
    assert main(["train", "--config", str(path)]) == 0
    run = tmp_path / "runs" / "seg"
    row = yaml.safe_load((run / "config.yaml").read_text())
    assert row["task"] == "segmentation"
    assert main(["eval", "--checkpoint", str(run / "last.pt"), "--json", str(tmp_path / "res.json")]) == 0
    out = capsys.readouterr().out
    assert "mIoU" in out and "aAcc" in out and "mAcc" in out
    for name in ("wall", "building", "sky"):  # the per-class table (ADE20K names of classes 0..2)
        assert any(line.startswith(name) for line in out.splitlines()), name
    import json

    res = json.loads((tmp_path / "res.json").read_text())
    assert res["images"] == 2 and len(res["IoU"]) == 3 and 0 <= res["mIoU"] <= 100
    val = root / "ADEChallengeData2016" / "images" / "validation"
    images = [str(p) for p in sorted(val.glob("*.jpg"))]
    assert main(["predict", "--checkpoint", str(run / "last.pt"), "--out", str(tmp_path / "pics"), *images]) == 0
    assert sorted(p.name for p in (tmp_path / "pics").iterdir()) == [
        "ADE_val_00000001_labels.png", "ADE_val_00000001_overlay.png",
        "ADE_val_00000002_labels.png", "ADE_val_00000002_overlay.png"]
    assert main(["predict", "--checkpoint", str(run / "last.pt"), "--out", str(tmp_path), str(tmp_path / "x.jpg")]) == 2


def test_head_runs_at_twice_the_scheduled_lr(tmp_path):
    register_tasks()
    cfg = load_config(values=_recipe(tmp_path, tmp_path))
    model = SEGMENTATION.build_model(cfg)
    opt = build_optimizer(SEGMENTATION.param_groups(model, cfg), cfg.optim, 2)
    sched = build_scheduler(opt, cfg.schedule, 1, 10)
    sched.step_update(1)  # after the warm-up
    base, head = (g["lr"] for g in opt.param_groups)
    assert base == pytest.approx(1e-3) and head == pytest.approx(2e-3)
    assert sum(len(g["params"]) for g in opt.param_groups) == len(list(model.parameters()))
    assert all(g["weight_decay"] == 0.005 for g in opt.param_groups)  # decay on every parameter


def test_training_items_are_seeded_by_epoch_and_padded(tmp_path):
    root = write_ade20k(tmp_path / "ade", n_train=2, n_val=1)
    from spikescope.data.seg_transforms import SegTrainPipeline

    ds = ADE20K(root, "training", pipeline=SegTrainPipeline(scale=(80, 64), crop=(96, 96)), seed=1)
    x, y = ds[(0, 3)]
    assert x.shape == (3, 96, 96) and y.shape == (96, 96)
    assert (y[-1] == 255).all() and (x[:, -1] == 0).all()  # padded beyond the resized image
    assert torch.equal(ds[(0, 3)][0], x) and not torch.equal(ds[(0, 4)][0], x)
    sampler = EpochTaggedSampler(ds, num_replicas=1, rank=0, shuffle=True, seed=0)
    sampler.set_epoch(7)
    assert sorted(sampler) == [(0, 7), (1, 7)]
    val = ADE20K(root, "validation", train=False, test_scale=(40, 32))
    img, label = val[0]
    assert img.shape == (3, 32, 40) and label.shape == (64, 80)  # image resized, label at the original size
    assert set(label.unique().tolist()) <= {0, 1, 2, 255}


def test_segmentation_config_errors(tmp_path):
    register_tasks()
    bad = _recipe(tmp_path, tmp_path)
    bad["task_options"]["crop"] = [1, 2]
    with pytest.raises(ValueError, match="unknown key"):
        SEGMENTATION.check(load_config(values=bad))
    bad = _recipe(tmp_path, tmp_path)
    bad["schedule"] = {"name": "none"}
    with pytest.raises(ValueError, match="head_lr_scale"):
        SEGMENTATION.check(load_config(values=bad))
    with pytest.raises(Exception, match="ADEChallengeData2016"):
        ADE20K(tmp_path, "training")


@pytest.mark.slow
def test_overfit_two_images_to_miou_80(tmp_path):
    root = write_ade20k(tmp_path / "ade", n_train=2, n_val=2, same=True)
    recipe = _recipe(tmp_path, root, epochs=5, iters_per_epoch=20, eval_every=5, seed=0)
    recipe["task_options"].update(ratio_range=[1.0, 1.0], photometric=False)
    recipe["optim"]["lr"] = 3e-3
    recipe["model"]["options"]["neck_channels"] = 32
    recipe["schedule"] = {"name": "none"}
    recipe["task_options"]["head_lr_scale"] = 1.0
    register_tasks()
    result = fit(load_config(values=recipe))
    assert result.history[-1]["test_mIoU"] >= 80, result.history


CONFIG_PARAMS = {
    "s_conv": 6_597_750, "s_srb": 6_293_238, "s_mlpixer": 5_989_782, "s_mlpixer6": 6_722_710,
    "m_srb": 10_796_470, "l_conv": 20_347_486, "l_srb": 19_132_254, "l_srb_c256": 24_097_118,
    "l_mlpixer": 17_919_134, "l_mlpixer6": 20_693_886,
}


@pytest.mark.parametrize("row", sorted(CONFIG_PARAMS))
def test_configs_load_and_build_the_table_rows(row):
    from spikescope.models import count_parameters

    register_tasks()
    path = Path(__file__).resolve().parents[1] / "configs" / f"ade20k_semfpn_sdt_v3_{row}.yaml"
    cfg = load_config(path)
    SEGMENTATION.check(cfg)
    assert cfg.train.epochs * cfg.train.iters_per_epoch == 160_000
    assert (cfg.schedule.name, cfg.schedule.warmup_iters, cfg.optim.lr, cfg.optim.weight_decay) == (
        "poly", 1500, 1e-3, 0.005)
    assert count_parameters(cfg.model.name, **cfg.model.options) == CONFIG_PARAMS[row]


@pytest.mark.slow
def test_resume_continues_bit_exactly(tmp_path):
    root = write_ade20k(tmp_path / "ade", n_train=2, n_val=1)
    register_tasks()
    full = fit(load_config(values=_recipe(tmp_path, root, epochs=2, iters_per_epoch=1, run_name="full")))
    cfg = load_config(values=_recipe(tmp_path, root, epochs=2, iters_per_epoch=1, run_name="split"))
    fit(cfg, stop_after=1)
    resumed = fit(cfg, resume=True)
    a, b = full.model.state_dict(), resumed.model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert full.history[-1]["train_loss"] == resumed.history[-1]["train_loss"]

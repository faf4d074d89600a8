"""Reliability of a training run: non-finite values stop it, a crash between end-of-epoch writes resumes to the
straight run's files, runs are not overwritten, --resume checks the recipe, bad values are refused."""
import csv
import errno
import os

import pytest
import torch
from _train_helpers import TinySNN, tiny_config, tiny_datasets

import spikescope.train.engine as engine
from spikescope.train import ConfigError, fit, load_config
from spikescope.train.guards import NonFiniteError
from spikescope.train.state import RunExistsError


def _load(path):
    return torch.load(path, map_location="cpu", weights_only=True)


def _rows(path):
    with open(path) as fh:
        return [{k: v for k, v in r.items() if k != "epoch_time_s"} for r in csv.DictReader(fh)]


def test_huge_lr_stops_with_epoch_and_step(tmp_path):
    cfg = tiny_config(tmp_path, epochs=3)
    cfg.optim.lr, cfg.optim.clip_grad = 1e9, None
    with pytest.raises(NonFiniteError, match=r"epoch \d+, step \d+"):
        fit(cfg, model_fn=TinySNN, datasets=tiny_datasets())
    for name in ("best.pt", "last.pt"):
        if (cfg.run_dir / name).is_file():
            assert all(torch.isfinite(t).all() for t in _load(cfg.run_dir / name)["model"].values())


def _nan_datasets():
    train, test = tiny_datasets()
    train.tensors[0][5, 0, 0, 0, 0] = float("nan")  # one pixel of one sample
    return train, test


def test_one_nan_pixel_stops_the_run(tmp_path):
    with pytest.raises(NonFiniteError, match="epoch 0, step"):
        fit(tiny_config(tmp_path, epochs=1), model_fn=TinySNN, datasets=_nan_datasets())


def test_fp16_scaler_skips_and_counts_non_finite_steps(tmp_path):
    res = fit(tiny_config(tmp_path, epochs=1, amp="fp16"), model_fn=TinySNN, datasets=_nan_datasets())
    assert res.history[0]["skipped_steps"] >= 1
    assert all(torch.isfinite(t).all() for t in _load(res.run_dir / "best.pt")["model"].values())


class _Killed(BaseException):
    """Stands for SIGKILL: nothing after it runs (not caught by ``except Exception``)."""


def _kill_before(monkeypatch, target: str, epoch: int):
    """Make the engine die just before writing ``target`` (last.pt, best.pt or log.csv) at ``epoch``."""
    real_save, real_csv = engine.save_checkpoint_atomic, engine.write_csv

    def save(obj, path):
        if path.name == target and obj["epoch"] == epoch:
            raise _Killed
        real_save(obj, path)

    def write_csv(path, history):
        if path.name == target and history and history[-1]["epoch"] == epoch:
            raise _Killed
        real_csv(path, history)

    monkeypatch.setattr(engine, "save_checkpoint_atomic", save)
    monkeypatch.setattr(engine, "write_csv", write_csv)


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    cfg = tiny_config(tmp_path_factory.mktemp("straight"), epochs=3)
    fit(cfg, model_fn=TinySNN, datasets=tiny_datasets())
    return cfg.run_dir


@pytest.mark.parametrize("target,epoch", [("best.pt", 1), ("last.pt", 1), ("log.csv", 1), ("log.csv", 2),
                                          ("last.pt", 2)])
def test_kill_before_each_write_then_resume_equals_straight_run(tmp_path, monkeypatch, straight, target, epoch):
    best_epoch = _load(straight / "best.pt")["epoch"]
    assert _load(straight / "last.pt")["history"][1]["test_acc1"] > _load(straight / "last.pt")["history"][0][
        "test_acc1"], "the test needs epoch 1 to improve"
    cfg = tiny_config(tmp_path, epochs=3)
    with monkeypatch.context() as m:
        _kill_before(m, target, epoch)
        with pytest.raises(_Killed):
            fit(cfg, model_fn=TinySNN, datasets=tiny_datasets())
    fit(cfg, resume=True, model_fn=TinySNN, datasets=tiny_datasets())
    a, b = _load(straight / "last.pt"), _load(cfg.run_dir / "last.pt")
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    best = _load(cfg.run_dir / "best.pt")
    assert best["epoch"] == best_epoch
    assert all(torch.equal(best["model"][k], _load(straight / "best.pt")["model"][k]) for k in best["model"])
    assert _rows(cfg.run_dir / "log.csv") == _rows(straight / "log.csv")


def test_stale_tmp_removed_on_resume(tmp_path):
    cfg = tiny_config(tmp_path, epochs=2)
    fit(cfg, stop_after=1, model_fn=TinySNN, datasets=tiny_datasets())
    stale = cfg.run_dir / ".last.pt.tmp4194999"  # above any Linux pid_max: a dead writer
    stale.write_bytes(b"half")
    fit(cfg, resume=True, model_fn=TinySNN, datasets=tiny_datasets())
    assert not stale.exists()


def test_full_disk_is_one_line_and_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    cfg = tiny_config(tmp_path, epochs=2)
    real = engine.save_checkpoint_atomic

    def full(obj, path):
        if obj["epoch"] == 1:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real(obj, path)

    monkeypatch.setattr(engine, "save_checkpoint_atomic", full)
    with pytest.raises(OSError, match="no space left on the device writing .*the previous .* is intact") as err:
        fit(cfg, model_fn=TinySNN, datasets=tiny_datasets())
    assert "\n" not in str(err.value)
    assert _load(cfg.run_dir / "last.pt")["epoch"] == 0


def test_second_run_refused_without_overwrite(tmp_path):
    cfg = tiny_config(tmp_path, epochs=1)
    fit(cfg, model_fn=TinySNN, datasets=tiny_datasets())
    with pytest.raises(RunExistsError, match="--overwrite"):
        fit(cfg, model_fn=TinySNN, datasets=tiny_datasets())
    foreign = tiny_config(tmp_path / "f", epochs=1)
    foreign.run_dir.mkdir(parents=True)
    (foreign.run_dir / "report.md").write_text("not a run")
    with pytest.raises(RunExistsError, match="report.md"):
        fit(foreign, model_fn=TinySNN, datasets=tiny_datasets())
    cfg.train.epochs = 2
    res = fit(cfg, model_fn=TinySNN, datasets=tiny_datasets(), overwrite=True)
    assert len(res.history) == 2 and _load(cfg.run_dir / "last.pt")["epoch"] == 1


def test_resume_refuses_a_changed_recipe(tmp_path):
    cfg = tiny_config(tmp_path, epochs=2)
    fit(cfg, stop_after=1, model_fn=TinySNN, datasets=tiny_datasets())
    cfg.optim.lr, cfg.train.epochs = 0.1, 3
    with pytest.raises(ConfigError, match=r"optim\.lr: 0\.05 -> 0\.1.*train\.epochs: 2 -> 3.*--accept-changes"):
        fit(cfg, resume=True, model_fn=TinySNN, datasets=tiny_datasets())
    other = tiny_config(tmp_path, epochs=2)
    other.optim.name = "adamw"
    with pytest.raises(ConfigError, match=r"optim\.name: 'sgd' -> 'adamw'"):
        fit(other, resume=True, model_fn=TinySNN, datasets=tiny_datasets(), accept_changes=True)
    other = tiny_config(tmp_path, epochs=2)
    other.model.options = {"widths": [4]}
    with pytest.raises(ConfigError, match=r"model\.options\.widths"):
        fit(other, resume=True, model_fn=TinySNN, datasets=tiny_datasets(), accept_changes=True)
    res = fit(cfg, resume=True, model_fn=TinySNN, datasets=tiny_datasets(), accept_changes=True)
    assert len(res.history) == 3


def test_truncated_last_pt_is_one_clear_error(tmp_path):
    from spikescope.models import CheckpointError

    cfg = tiny_config(tmp_path, epochs=2)
    fit(cfg, stop_after=1, model_fn=TinySNN, datasets=tiny_datasets())
    data = (cfg.run_dir / "last.pt").read_bytes()
    for cut in (0, len(data) // 2):
        (cfg.run_dir / "last.pt").write_bytes(data[:cut])
        with pytest.raises(CheckpointError, match="truncated"):
            fit(cfg, resume=True, model_fn=TinySNN, datasets=tiny_datasets())


@pytest.mark.parametrize("key,value", [
    ("optim.clip_grad", -1), ("optim.lr", float("inf")), ("optim.lr", float("nan")), ("optim.weight_decay", -0.1),
    ("optim.momentum", 1.5), ("train.ema_decay", 1.01), ("train.tet_lambda", 2), ("train.tet_lambda", -0.5),
    ("schedule.warmup_epochs", -1), ("train.label_smoothing", 5), ("data.resize", [0, 0]),
    ("train.device", "gpu"),
])
def test_out_of_range_values_refused(key, value):
    section, name = key.split(".")
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        load_config(values={"model": {"name": "tiny"}, section: {name: value}})


def test_set_accepts_every_number(tmp_path):
    assert load_config(values={"model": {"name": "tiny"}}, overrides=["optim.lr=1e-3"]).optim.lr == 1e-3
    assert load_config(values={"model": {"name": "tiny"}}, overrides=["optim.lr=1e9"]).optim.lr == 1e9
    with pytest.raises(ConfigError, match="optim.lr"):
        load_config(values={"model": {"name": "tiny"}}, overrides=["optim.lr=inf"])


def test_malformed_yaml_is_a_config_error(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("model: {name: tiny\noptim: [\n")
    with pytest.raises(ConfigError, match="not valid YAML.*line"):
        load_config(path)


def test_cuda_without_gpu_is_refused(tmp_path):
    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present")
    with pytest.raises(ValueError, match="train.device.*no CUDA device"):
        fit(tiny_config(tmp_path, device="cuda"), model_fn=TinySNN, datasets=tiny_datasets())


def test_fewer_model_outputs_than_classes_refused(tmp_path):
    from torch.utils.data import TensorDataset

    class Named(TensorDataset):
        classes = ["a", "b", "c"]

    train, test = tiny_datasets()
    cfg = tiny_config(tmp_path, epochs=1)
    cfg.model.options = {"num_classes": 2}
    with pytest.raises(ConfigError, match="num_classes.*3 classes"):
        fit(cfg, model_fn=TinySNN, datasets=(Named(*train.tensors), Named(*test.tensors)))


def test_resume_ignores_fields_another_version_lacks():
    from spikescope.train.config import config_to_dict, resume_changes

    new = config_to_dict(load_config(values={"model": {"name": "tiny", "options": {"widths": [4]}}}))
    old = {k: dict(v) if isinstance(v, dict) else v for k, v in new.items()}  # sections, and the top-level task
    del old["data"]["allow_missing_classes"]
    assert resume_changes(old, new) == ([], [])
    old["model"]["options"] = {}
    assert resume_changes(old, new)[0] == ["model.options.widths: '<unset>' -> [4]"]

"""The engine's task switch: a task with ``losses`` trains through the iteration loop, per-update schedules, resume."""
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler, TensorDataset

from spikescope.train import fit, load_config
from spikescope.train.config import ConfigError
from spikescope.train.guards import NonFiniteError
from spikescope.train.schedules import IterationScheduler
from spikescope.train.tasks import get_task, register_task


class _RegressionTask:
    """y = x @ w on random data; the metric is 1 / (1 + test MSE) (higher is better)."""

    primary = "test_inv_mse"

    def check(self, cfg):
        pass

    def build_datasets(self, cfg):
        g = torch.Generator().manual_seed(0)
        x = torch.randn(40, 5, generator=g)
        y = x @ torch.arange(5.0)
        return TensorDataset(x[:30], y[:30]), TensorDataset(x[30:], y[30:])

    def build_model(self, cfg):
        return nn.Sequential(nn.Linear(5, 8), nn.Dropout(0.2), nn.Linear(8, 1))

    def build_loaders(self, train_set, test_set, cfg, dist):
        sampler = DistributedSampler(train_set, num_replicas=1, rank=0, shuffle=True, seed=cfg.train.seed)
        return DataLoader(train_set, batch_size=cfg.data.batch_size, sampler=sampler, drop_last=True), \
            DataLoader(test_set, batch_size=5)

    def losses(self, model, batch, device):
        x, y = batch
        err = model(x).squeeze(-1) - y
        return {"mse": err.pow(2).mean(), "l1": 0.1 * err.abs().mean()}

    def evaluate(self, model, loader, cfg, dist):
        model.eval()
        with torch.no_grad():
            mse = torch.stack([(model(x).squeeze(-1) - y).pow(2).mean() for x, y in loader]).mean()
        return {"test_inv_mse": 1 / (1 + mse.item())}


register_task("toy_regression", _RegressionTask())


class _ExplodingTask(_RegressionTask):
    """The regression task whose loss turns NaN at the run's 5th update."""

    def __init__(self):
        self.calls = 0

    def losses(self, model, batch, device):
        self.calls += 1
        terms = super().losses(model, batch, device)
        return {k: v * float("nan") for k, v in terms.items()} if self.calls == 5 else terms


register_task("toy_exploding", _ExplodingTask())


def _config(tmp_path, **schedule):
    return load_config(values={
        "task": "toy_regression",
        "model": {"name": "unused"},
        "data": {"batch_size": 4},
        "optim": {"name": "adamw", "lr": 0.01},
        "schedule": {"name": "multistep", "milestones": [2], "warmup_iters": 4, **schedule},
        "train": {"epochs": 3, "iters_per_epoch": 9, "out_dir": str(tmp_path), "run_name": "r", "progress": False},
    })


def test_losses_task_trains_logs_terms_and_resumes_exactly(tmp_path):
    straight = fit(_config(tmp_path / "a"))
    assert [set(r) >= {"train_loss", "train_mse", "train_l1", "test_inv_mse"} for r in straight.history] == [True] * 3
    first = straight.history[0]
    assert first["train_loss"] == pytest.approx(first["train_mse"] + first["train_l1"])
    # 9 updates per epoch over 7 batches: the loader is cycled; the lr at epoch 2's start is decayed (milestone 2)
    assert straight.history[2]["lr"] == pytest.approx(0.001)
    fit(_config(tmp_path / "b"), stop_after=1)
    resumed = fit(_config(tmp_path / "b"), resume=True)
    a = straight.model.state_dict()
    b = resumed.model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert [r["train_loss"] for r in resumed.history] == [r["train_loss"] for r in straight.history]
    assert (tmp_path / "a" / "r" / "best.pt").is_file()


def test_iteration_schedules_follow_their_formulas():
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=2.0)
    s = IterationScheduler(opt, "multistep", total=120, warmup=10, warmup_factor=0.001, milestones=[80, 110])
    assert s.factor(0) == pytest.approx(0.001) and s.factor(5) == pytest.approx(0.001 + 0.999 / 2)
    assert [s.factor(i) for i in (10, 79, 80, 109, 110, 119)] == pytest.approx([1, 1, 0.1, 0.1, 0.01, 0.01])
    s.step_update(80)
    assert opt.param_groups[0]["lr"] == pytest.approx(0.2)
    p = IterationScheduler(opt, "poly", total=110, warmup=10, warmup_factor=1e-6, power=1.0, min_lr=0.0)
    assert p.factor(0) == pytest.approx(1e-6)
    assert [p.factor(i) for i in (10, 60, 110)] == pytest.approx([1.0, 0.5, 0.0])
    p.step_update(35)
    assert opt.param_groups[0]["lr"] == pytest.approx(2.0 * 0.75)
    with pytest.raises(ValueError, match="warm-up"):
        IterationScheduler(opt, "poly", total=5, warmup=5)


def test_task_errors(tmp_path):
    with pytest.raises(ConfigError, match="'nope' is not registered"):
        get_task("nope")
    cfg = _config(tmp_path)
    cfg.task = "classification"
    with pytest.raises(ConfigError, match="stepped per update"):
        get_task("classification").check(cfg)
    with pytest.raises(ConfigError, match=r"schedule.milestones\[1\]"):
        load_config(values={"model": {"name": "x"}, "schedule": {"milestones": [8, "a"]}})
    with pytest.raises(TypeError, match="lacks"):
        register_task("broken", object())


def test_losses_task_stops_on_a_non_finite_loss_before_the_step(tmp_path):
    cfg = _config(tmp_path)
    cfg.task = "toy_exploding"
    with pytest.raises(NonFiniteError, match="epoch 0, step 4: loss is nan"):
        fit(cfg)
    assert not (tmp_path / "r" / "best.pt").exists()

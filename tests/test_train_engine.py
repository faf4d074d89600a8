"""Engine: exact resume, atomic checkpoints, readouts, config validation."""
import os
import subprocess
import sys
import textwrap

import pytest
import torch
import torch.nn.functional as F
from _train_helpers import TinySNN, tiny_config, tiny_datasets

from spikescope.models import save_checkpoint_atomic
from spikescope.train import ConfigError, fit, load_config, readout_loss


def _weights(path):
    return torch.load(path, map_location="cpu", weights_only=True)["model"]


@pytest.mark.parametrize("extra", [{}, {"ema": True}])
def test_resume_equals_straight_run(tmp_path, extra):
    """2 epochs, stop, resume 2 more == 4 epochs straight (dropout, warm-up + cosine, clipping, EMA)."""
    make = lambda: TinySNN(dropout=0.3)  # noqa: E731
    straight = fit(tiny_config(tmp_path / "a", **extra), model_fn=make, datasets=tiny_datasets())
    cfg_b = tiny_config(tmp_path / "b", **extra)
    fit(cfg_b, stop_after=2, model_fn=make, datasets=tiny_datasets())
    assert _weights(cfg_b.run_dir / "last.pt") is not None
    assert torch.load(cfg_b.run_dir / "last.pt", weights_only=True)["epoch"] == 1
    resumed = fit(cfg_b, resume=True, model_fn=make, datasets=tiny_datasets())
    a, b = _weights(straight.run_dir / "last.pt"), _weights(resumed.run_dir / "last.pt")
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    assert [r["train_loss"] for r in straight.history] == [r["train_loss"] for r in resumed.history]
    if extra:
        ea = torch.load(straight.run_dir / "last.pt", weights_only=True)["ema"]
        eb = torch.load(resumed.run_dir / "last.pt", weights_only=True)["ema"]
        assert all(torch.equal(ea[k], eb[k]) for k in ea)
    log = (cfg_b.run_dir / "log.csv").read_text().strip().splitlines()
    assert len(log) == 5  # header + 4 epochs, no duplicated rows after the resume
    assert (cfg_b.run_dir / "config.yaml").is_file() and (cfg_b.run_dir / "best.pt").is_file()


def test_resume_without_checkpoint_fails(tmp_path):
    with pytest.raises(FileNotFoundError, match="last.pt"):
        fit(tiny_config(tmp_path), resume=True, model_fn=TinySNN, datasets=tiny_datasets())


def test_killed_write_keeps_previous_checkpoint(tmp_path):
    """A process killed in the middle of torch.save leaves the old file readable and unchanged."""
    path = tmp_path / "last.pt"
    save_checkpoint_atomic({"model": {"w": torch.ones(3)}, "epoch": 1}, path)
    script = textwrap.dedent(f"""
        import os, torch
        import spikescope.models.checkpoints as ck
        real = torch.save
        def dying_save(obj, f, *a, **k):
            real(obj, f, *a, **k)
            with open(f, "r+b") as fh:
                fh.truncate(10)  # half-written
            os._exit(9)  # killed before the rename
        ck.torch.save = dying_save
        ck.save_checkpoint_atomic({{"model": {{"w": torch.zeros(3)}}, "epoch": 2}}, {str(path)!r})
    """)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.run([sys.executable, "-c", script], env=env)
    assert proc.returncode == 9
    old = torch.load(path, weights_only=True)
    assert old["epoch"] == 1 and torch.equal(old["model"]["w"], torch.ones(3))


def test_readouts_against_formulas():
    torch.manual_seed(0)
    out, y = torch.randn(4, 5, 3), torch.tensor([0, 2, 1, 1, 0])
    assert torch.allclose(readout_loss(out, y, "ce_mean"), F.cross_entropy(out.mean(0), y))
    onehot = F.one_hot(y, 3).float()
    assert torch.allclose(readout_loss(out, y, "mse_onehot"), ((out.mean(0) - onehot) ** 2).mean())
    tet = sum(F.cross_entropy(out[t], y) for t in range(4)) / 4
    assert torch.allclose(readout_loss(out, y, "tet"), tet)
    reg = 0.5 * tet + 0.5 * ((out - 1) ** 2).mean()
    assert torch.allclose(readout_loss(out, y, "tet", tet_lambda=0.5), reg)
    assert torch.allclose(readout_loss(out[0], y, "ce_mean"), F.cross_entropy(out[0], y))


@pytest.mark.parametrize("amp", ["bf16", "fp16"])
def test_amp_runs(tmp_path, amp):
    res = fit(tiny_config(tmp_path, amp=amp, epochs=2), model_fn=TinySNN, datasets=tiny_datasets())
    assert all(r["train_loss"] == r["train_loss"] for r in res.history)  # not NaN


@pytest.mark.parametrize("name,cls", [("sgd", "SGD"), ("adam", "Adam"), ("adamw", "AdamW"), ("nadam", "NAdam"),
                                      ("lamb", "Lamb")])
def test_optimizers(name, cls):
    from spikescope.train.config import OptimSection
    from spikescope.train.optim import build_optimizer

    extra = {"momentum_decay": 1e-3} if name == "nadam" else {}
    opt = build_optimizer(TinySNN(), OptimSection(name=name, lr=0.1, lr_base_batch=256, weight_decay=1e-4, **extra), 512)
    assert type(opt).__name__ == cls and opt.param_groups[0]["lr"] == pytest.approx(0.2)
    assert all(g["weight_decay"] == 1e-4 for g in opt.param_groups)  # on all parameters unless asked otherwise
    if name == "sgd":
        assert opt.param_groups[0]["momentum"] == 0.9 and not opt.param_groups[0]["nesterov"]
    if name == "nadam":
        assert opt.param_groups[0]["momentum_decay"] == 1e-3


def test_schedules_follow_their_formulas():
    import math

    from spikescope.train.config import ScheduleSection
    from spikescope.train.optim import build_scheduler

    def lrs(cfg, epochs=10):
        opt = torch.optim.SGD(TinySNN().parameters(), lr=0.1)
        sched = build_scheduler(opt, cfg, epochs)
        out = []
        for e in range(epochs):
            sched.step(e)
            out.append(opt.param_groups[0]["lr"])
        return out

    cos = lrs(ScheduleSection(name="cosine"))
    assert cos == pytest.approx([0.05 * (1 + math.cos(math.pi * e / 10)) for e in range(10)])
    warm = lrs(ScheduleSection(name="cosine", warmup_epochs=2, warmup_lr=0.0))
    assert warm[0] == 0.0 and warm[1] == pytest.approx(0.05)
    step = lrs(ScheduleSection(name="step", decay_epochs=3, decay_rate=0.5))
    assert step == pytest.approx([0.1 * 0.5 ** (e // 3) for e in range(10)])


@pytest.mark.parametrize("bad,key", [
    ({"optim": {"lrr": 0.1}}, "optim.lrr"),
    ({"optim": {"lr": "fast"}}, "optim.lr"),
    ({"train": {"epochs": 2.5}}, "train.epochs"),
    ({"train": {"amp": "fp8"}}, "train.amp"),
    ({"data": {"resize": [64]}}, "data.resize"),
    ({"data": {"synthetic": {"colour": 1}}}, "data.synthetic.colour"),
    ({"schedul": {}}, "schedul"),
    ({"model": {"name": ""}}, "model.name"),
    ({"model": {"options": {"timesteps": 8}}, "data": {"num_frames": 16}}, "data.num_frames"),
])
def test_bad_config_names_the_key(bad, key):
    values = {"model": {"name": "tiny"}}
    for section, fields in bad.items():
        values.setdefault(section, {}).update(fields)
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        load_config(values=values)


def test_set_overrides_and_missing_data_dir(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text("model: {name: tiny}\ndata: {name: cifar10_dvs, root: /nonexistent/c10dvs}\n")
    cfg = load_config(path, ["optim.lr=0.5", "data.resize=[64, 64]", "train.amp=bf16"])
    assert cfg.optim.lr == 0.5 and cfg.data.resize == (64, 64) and cfg.train.run_name == "r"
    with pytest.raises(ConfigError, match="train.epochs"):
        load_config(path, ["train.epochs=many"])
    with pytest.raises(ConfigError, match="data.root"):
        fit(cfg, model_fn=TinySNN)  # fails before building anything

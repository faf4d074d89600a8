"""Recipes in configs/ validate; the CLI trains, resumes and evaluates; firing rates; the demo's training part."""
from pathlib import Path

import pytest
import torch
import yaml
from _train_helpers import TinySNN, tiny_demo_recipe

from spikescope.analysis import FiringRateRecorder
from spikescope.cli import main
from spikescope.demo import DEMO_RECIPE, train_demo
from spikescope.models import count_parameters, list_models
from spikescope.train import load_config

CONFIGS = sorted((Path(__file__).parent.parent / "configs").glob("*.yaml"))
FAMILIES = ("sma_vgg8_", "ms_resnet", "sdt_v3_", "maskrcnn_sdt_v3_", "semfpn_sdt_v3_")


def test_every_recipe_validates():
    assert len(CONFIGS) >= 26
    for path in CONFIGS:
        cfg = load_config(path)
        assert cfg.model.name.startswith(FAMILIES), path
        assert cfg.train.run_name == path.stem
        if cfg.model.name in list_models():
            count_parameters(cfg.model.name, **cfg.model.options)  # option names accepted by the real model


def test_demo_yaml_is_the_demo_recipe():
    text = (Path(__file__).parent.parent / "configs" / "demo.yaml").read_text()
    assert yaml.safe_load(text) == DEMO_RECIPE


def test_firing_rates_equal_mean_spikes():
    model = TinySNN().eval()
    x = torch.rand(3, 5, 2, 8, 8) * 3
    with FiringRateRecorder(model) as rec:
        model(x)
        model(x[:, :2])
    spikes = torch.cat([model.lif(model.conv(x)).flatten(), model.lif(model.conv(x[:, :2])).flatten()])
    assert rec.rates() == pytest.approx({"lif": spikes.mean().item()})
    assert not model.lif._forward_hooks  # hooks removed on exit


def test_cli_train_resume_eval(tmp_path, capsys):
    recipe = tiny_demo_recipe(tmp_path)
    assert main(["train", "--config", str(recipe), "--set", "train.epochs=1"]) == 0
    run = tmp_path / "runs" / "tiny"
    assert (run / "config.yaml").is_file() and (run / "log.csv").is_file()
    assert main(["train", "--config", str(recipe), "--resume"]) == 2  # train.epochs changed: 1 -> 2
    assert "train.epochs: 1 -> 2" in capsys.readouterr().err
    assert main(["train", "--config", str(recipe), "--resume", "--accept-changes"]) == 0
    assert len((run / "log.csv").read_text().strip().splitlines()) == 3
    assert main(["eval", "--checkpoint", str(run / "last.pt"), "--json", str(tmp_path / "e.json")]) == 0
    out = capsys.readouterr().out
    assert "top-1" in out and "firing rates" in out
    res = yaml.safe_load((tmp_path / "e.json").read_text())
    assert set(res["per_class_acc"]) == {"0", "1"} and len(res["firing_rates"]) >= 7
    assert all(0 <= r <= 1 for r in res["firing_rates"].values())


def test_cli_bad_config_exit_code(tmp_path, capsys):
    path = tmp_path / "bad.yaml"
    path.write_text("model: {name: x}\noptim: {learning_rate: 0.1}\n")
    assert main(["train", "--config", str(path)]) == 2
    assert "optim.learning_rate" in capsys.readouterr().err


def test_demo_training_quick(tmp_path):
    res = train_demo(tmp_path, quick=True)
    assert Path(res["plot"]).is_file() and res["chance"] == 25.0
    assert len(res["loss_curve"]) == 3 and 0 <= res["test_acc1"] <= 100
    assert isinstance(res["model"], torch.nn.Module) and not res["model"].training


@pytest.mark.slow
def test_demo_training_beats_chance(tmp_path):
    res = train_demo(tmp_path)
    assert res["test_acc1"] > 70.0, res

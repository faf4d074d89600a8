"""Small things a new user meets on the command line: help texts, `models` listing, wording, output names."""
import json

import numpy as np
import pytest

import spikescope.train
from spikescope.cli import build_parser, main
from spikescope.train.evaluate import format_report


def _subparser(parser, *path):
    for name in path:
        action = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
        parser = action.choices[name]
    return parser


def test_help_has_no_raw_rst_and_every_erf_option_is_explained():
    parser = build_parser()
    assert "``" not in parser.format_help()
    for cmd in ("spatial", "temporal", "compare"):
        sub = _subparser(parser, "erf", cmd)
        missing = [a.dest for a in sub._actions if a.dest != "help" and not a.help]
        assert not missing, (cmd, missing)


def test_models_sorts_naturally_and_ignores_case(capsys):
    assert main(["models", "MS_RESNET*", "--no-params"]) == 0
    rows = [line.split()[0] for line in capsys.readouterr().out.splitlines()[1:] if not line.startswith(" ")]
    assert rows[:3] == ["ms_resnet18", "ms_resnet34", "ms_resnet104"]


def test_models_without_a_match_exits_2(capsys):
    assert main(["models", "no_such_family*"]) == 2
    assert "no registered model matches 'no_such_family*'" in capsys.readouterr().err


def test_top5_is_not_reported_for_five_classes_or_fewer():
    res = {"model": "m", "checkpoint": "c", "acc1": 50.0, "acc5": 100.0, "loss": 1.0, "samples": 8,
           "per_class_acc": {str(i): 50.0 for i in range(4)}, "firing_rates": {}}
    assert "top-5" not in format_report(res)
    res["per_class_acc"] = {str(i): 50.0 for i in range(10)}
    assert "top-5 100.00 %" in format_report(res)


def test_train_summary_only_on_rank_0(monkeypatch, capsys):
    class Result:
        history, run_dir, best_acc1, last_acc1 = [{"epoch": 0}], "runs/x", 50.0, 40.0

    monkeypatch.setattr(spikescope.train, "fit", lambda cfg, **kwargs: Result())
    monkeypatch.setenv("RANK", "1")
    assert main(["train", "--config", "configs/demo.yaml"]) == 0
    assert capsys.readouterr().out == ""
    monkeypatch.setenv("RANK", "0")
    assert main(["train", "--config", "configs/demo.yaml"]) == 0
    assert capsys.readouterr().out.count("best test top-1") == 1


def test_temporal_erf_with_one_timestep_says_it_cannot_fit(tmp_path, capsys):
    assert main(["erf", "temporal", "--model", "toy_convnet", "--set", "timesteps=1", "--layer", "layer1",
                 "--size", "8", "--n", "2", "--out", str(tmp_path)]) == 2
    assert "needs T >= 2" in capsys.readouterr().err


def test_compare_folders_are_glob_free_and_npz_describes_itself(tmp_path):
    common = ["--size", "16", "--n", "2", "--batch", "2", "--boot", "0", "--layers", "layer1"]
    assert main(["erf", "compare", "toy_convnet:depth=2,channels=2", "--out", str(tmp_path), *common]) == 0
    (folder,) = [p for p in tmp_path.iterdir() if p.is_dir()]
    assert folder.name == "toy_convnet__depth-2__channels-2"
    meta = json.loads(str(np.load(folder / "erf.npz")["meta"]))
    assert meta["model_spec"] == "toy_convnet[depth=2,channels=2]" and meta["N"] == 2 and meta["seed"] == 0
    assert meta["layers"] == ["layer1"] and meta["kind"] == "spatial" and meta["mode"] == "official"
    assert {"spikescope", "torch", "numpy"} <= set(meta["versions"])


@pytest.mark.parametrize("spec", ["a", "sdt_v3_s"])
def test_slug_of_a_spec_without_options_is_its_name(spec):
    from spikescope.erf.runner import ModelSpec

    assert ModelSpec(spec, {}, None).slug == spec

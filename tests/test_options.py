"""Model options with list values (``widths=[16,32]``) parse the same in ``NAME:k=v,...`` specs and in ``--set``."""
import pytest

from spikescope.cli import main
from spikescope.erf.runner import parse_model_spec
from spikescope.models import parse_overrides, split_options
from spikescope.train import load_config

DEMO_SPEC = "sma_vgg8_dvs128:timesteps=8,num_classes=4,widths=[16,32,32,64,64],hidden=[128,64]@runs/x/best.pt"


def test_model_spec_with_list_options():
    spec = parse_model_spec(DEMO_SPEC)
    assert spec.name == "sma_vgg8_dvs128" and spec.checkpoint == "runs/x/best.pt"
    assert spec.overrides == {"timesteps": 8, "num_classes": 4, "widths": [16, 32, 32, 64, 64], "hidden": [128, 64]}


def test_split_on_top_level_commas_only():
    assert split_options("a=1, b={x: [1, 2], y: 3},c=(1,2)") == ["a=1", "b={x: [1, 2], y: 3}", "c=(1,2)"]
    assert parse_overrides("a=1,b=[2,3]") == parse_overrides(["a=1", "b=[2,3]"]) == {"a": 1, "b": [2, 3]}


@pytest.mark.parametrize("bad", ["a=[1", "a=1]", "a=[1}", "a=(1"])
def test_unbalanced_brackets_name_the_text(bad):
    with pytest.raises(ValueError, match="options"):
        split_options(bad)


def test_unparsable_value_is_a_one_line_value_error():
    with pytest.raises(ValueError, match=r"'depth=\[1'") as info:
        parse_overrides(["depth=[1"])
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("argv", [
    ["analyze", "--model", "toy_convnet", "--set", "depth=[1"],
    ["erf", "spatial", "--model", "toy_convnet", "--set", "depth=[1", "--out", "unused"],
    ["erf", "compare", "toy_convnet:depth=[1", "--out", "unused"],
    ["train", "--config", "configs/demo.yaml", "--set", "train.epochs=[1"],
])
def test_cli_bad_list_is_one_line_exit_2(argv, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "[1" in err.splitlines()[0]


def test_train_set_uses_the_same_parser():
    cfg = load_config("configs/demo.yaml", ["model.options.widths=[8,8,8,8,8]", "data.resize=[16,16]"])
    assert list(cfg.model.options["widths"]) == [8, 8, 8, 8, 8] and cfg.data.resize == (16, 16)

"""The authors' spatial protocol as options; layer names checked before calibration; --paper's estimate; Ctrl-C."""
import argparse
import math

import pytest

from spikescope import cli
from spikescope.erf import LayerError, runner
from spikescope.erf.runner import PAPER_COMPARISON, build_model, paper_protocol, parse_model_spec
from spikescope.models import create_model


def test_sdt_v3_attention_scale_option():
    trained = create_model("sdt_v3_s")
    script = create_model("sdt_v3_s", attn_scale_factor=1.0)
    for stage, dim in ((trained.stage3, 128), (trained.stage4, 192)):
        assert math.isclose(stage.blocks[0].attn.scale, 2 / math.sqrt(dim / 8))
    assert math.isclose(script.stage3.blocks[0].attn.scale, 1 / math.sqrt(128 / 8))
    assert math.isclose(script.stage4.blocks[1].attn.scale, 1 / math.sqrt(192 / 8))


def test_paper_plan_uses_the_authors_protocol():
    args = argparse.Namespace(n=None, offset=None)
    specs = [parse_model_spec(s) for s in PAPER_COMPARISON]
    steps = cli._paper_plan(specs, args)  # also sets each model's protocol options (labels name them)
    plan = dict(zip([s.label for s in specs], steps))
    sdt = [s for s in specs if s.name == "sdt_v3_s"]
    assert all(s.overrides["attn_scale_factor"] == 1.0 for s in sdt) and len(sdt) == 3
    v3 = plan[sdt[2].label]
    assert v3["offset"] == (0, 5) and v3["n"] == 60 and len(v3["layers"]) == 8
    spikformer = plan["spikformer_8_512"]
    assert spikformer["t_out"] == (0,) and spikformer["n"] == 300 and spikformer["offset"] == (0, 0)
    assert plan["qkformer_10_384"]["t_out"] == "all" and plan["qkformer_10_384"]["n"] == 50
    assert cli._paper_plan([parse_model_spec("sdt_v1_8_384")], argparse.Namespace(n=4, offset=None))[0]["n"] == 4
    given = cli._paper_plan([parse_model_spec("sdt_v3_s")], argparse.Namespace(n=None, offset=[0, 0]))[0]
    assert given["offset"] == (0, 0)  # an explicit --offset wins
    assert paper_protocol("timm:swin_tiny_patch4_window7_224")["runs"] == 20
    assert paper_protocol("timm:vit_tiny_patch16_224", {"act_layer": "relu"})["runs"] == 60
    assert paper_protocol("timm:vit_tiny_patch16_224", {"act_bits": 4})["runs"] == 40


def test_layer_typo_is_reported_before_calibration(monkeypatch):
    def no_calibration(*a, **k):
        raise AssertionError("BN calibration ran before the layer names were checked")

    monkeypatch.setattr(runner, "calibrate_bn", no_calibration)
    with pytest.raises(LayerError) as e:
        build_model(parse_model_spec("sdt_v3_s"), input_size=(3, 32, 32), layers=["stage3.blocks.0.atn.proj"])
    msg = str(e.value)
    assert "did you mean stage3.blocks.0.attn.proj" in msg and len(msg) < 400


def test_cli_layer_typo_one_line(capsys):
    assert cli.main(["erf", "spatial", "--model", "sdt_v3_s", "--layers", "stage3.blocks.0.atn.proj", "--size", "32",
                     "--n", "1", "--out", "/nonexistent/never-written"]) == 2
    err = capsys.readouterr().err
    assert "did you mean stage3.blocks.0.attn.proj" in err and len(err) < 600


def test_paper_says_its_time_first_and_ctrl_c_stops_in_one_line(tmp_path, capsys, monkeypatch):
    import spikescope.erf as erf

    real = erf.spatial_erf
    calls = []

    def interrupted(*a, **k):
        calls.append(1)
        if len(calls) > 1:  # the timing run passes, the measurement is interrupted
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(erf, "spatial_erf", interrupted)
    code = cli.main(["erf", "compare", "--paper", "timm:vit_tiny_patch16_224", "--size", "32", "--boot", "0",
                     "--out", str(tmp_path)])
    out, err = capsys.readouterr()
    assert code == 130 and err.strip() == "spikescope erf: stopped (Ctrl-C)"
    assert "N=20" in out and "min in all on this machine (the authors' N); --n 8 gives a reduced run" in out

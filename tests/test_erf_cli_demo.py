"""The `spikescope erf` commands and the reduced demo write what they promise."""
import json

import pytest

from spikescope.cli import build_parser, main
from spikescope.demo import run_demo


def test_reduced_demo_writes_report(tmp_path, capsys):
    report = run_demo(tmp_path / "demo", quick=True)
    text = report.read_text()
    out = capsys.readouterr().out
    for phase in ("model 3/3 sdt_v3_s[mixer=srb]: BN calibration", "temporal ERF 4/4", "3/3 training",
                  "epoch=2 ", "spatial ERF of the trained model"):
        assert phase in out, phase  # a line per phase, BN calibration and epoch
    checkpoint = tmp_path / "demo" / "train" / "best.pt"
    assert checkpoint.is_file() and f"eval --checkpoint {checkpoint}" in text
    assert report.name == "report.md" and "## Spatial ERF" in text and "## Temporal ERF" in text
    assert "## Training" in text and "Test top-1 after the last epoch" in text
    for mixer in ("conv", "mlpixer", "srb"):
        assert f"sdt_v3_s[mixer={mixer}]" in text
    assert (tmp_path / "demo" / "spatial_compare.png").exists()
    assert (tmp_path / "demo" / "temporal_compare.pdf").exists()
    assert (tmp_path / "demo" / "train" / "loss_curve.png").exists()
    assert (tmp_path / "demo" / "train" / "erf" / "metrics.json").exists()


def test_cli_spatial_temporal_compare(tmp_path, capsys):
    common = ["--size", "24", "--n", "3", "--batch", "2", "--boot", "10"]
    assert main(["erf", "spatial", "--model", "toy_convnet", "--set", "depth=3", "--layers", "layer*",
                 "--out", str(tmp_path / "s"), *common]) == 0
    meta = json.loads((tmp_path / "s" / "metrics.json").read_text())["meta"]
    assert meta["N"] == 3 and meta["layers"] == ["layer1", "layer2", "layer3"]
    assert meta["weights"] == "random weights, no BN layer to calibrate"  # toy_convnet has none
    assert main(["erf", "temporal", "--model", "toy_convnet", "--layer", "acts.1", "--output", "membrane",
                 "--out", str(tmp_path / "t"), *common]) == 0
    assert (tmp_path / "t" / "temporal.png").exists()
    assert main(["erf", "compare", "toy_convnet:activation=lif", "toy_convnet:activation=relu,init=xavier",
                 "--layers", "layer2", "--out", str(tmp_path / "c"), *common]) == 0
    assert (tmp_path / "c" / "compare.png").exists() and (tmp_path / "c" / "compare.pdf").exists()
    assert "random weights" in capsys.readouterr().out


def test_paper_erf_layers_name_real_hook_points():
    import torch

    from spikescope.erf.hooks import resolve_layers, run_model
    from spikescope.erf.runner import PAPER_COMPARISON, paper_erf_layers
    from spikescope.models import create_model

    for name in sorted({spec.split(":")[0] for spec in PAPER_COMPARISON}):
        layers = paper_erf_layers(name)
        assert len(layers) == (10 if name.startswith("qkformer") else 8)
        model = create_model(name).eval()
        with torch.no_grad():
            keys = list(run_model(model, torch.randn(1, 3, 32, 32)))
        refs = resolve_layers(model, layers, keys)  # raises LayerError for a name that is neither
        assert [r.name for r in refs] == layers
    assert paper_erf_layers("sdt_v3_s")[0] == "stage3.blocks.0.attn.proj"
    with pytest.raises(ValueError, match="hooked no layers"):
        paper_erf_layers("toy_convnet")


@pytest.mark.slow
def test_cli_compare_paper(tmp_path, capsys):
    # at 32x32 the SDT-v3 maps are 2x2: the authors' +5 column offset does not fit, so it is set to 0 here
    assert main(["erf", "compare", "--paper", "--size", "32", "--n", "1", "--batch", "1", "--boot", "0",
                 "--offset", "0", "0", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert out.count("random weights + BN calibrated") == 6
    assert (tmp_path / "compare.png").exists()


def test_demo_and_the_demo_recipe_write_to_different_folders():
    from pathlib import Path

    from spikescope.train import load_config

    run_dir = load_config(Path(__file__).parent.parent / "configs" / "demo.yaml").run_dir
    demo = Path(build_parser().parse_args(["demo"]).out)
    assert run_dir == Path("runs/train/demo") and demo == Path("runs/demo")
    assert demo not in run_dir.parents and run_dir not in demo.parents


def test_demo_threads_follow_omp_num_threads_and_never_exceed_the_cores(monkeypatch):
    import os

    from spikescope.cli import _default_threads

    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert _default_threads() == 3
    monkeypatch.delenv("OMP_NUM_THREADS")
    assert 1 <= _default_threads() <= max(1, len(os.sched_getaffinity(0)))

"""`spikescope heatmap` calibrates BN like `analyze`, warns on a silent layer, and draws labelled figures."""
import warnings

import matplotlib.image as mpimg
import numpy as np
import pytest
import torch

from spikescope.analysis.heatmap import SilentLayerWarning, spike_heatmaps
from spikescope.cli import main
from spikescope.models import create_model

TINY = ["--set", "timesteps=4", "--set", "widths=[8,8,8,8,8]", "--set", "hidden=[8,8]", "--set",
        "input_size=[32,32]"]


def _heatmap(tmp_path, *extra):
    out = tmp_path / "maps"
    rc = main(["heatmap", "--model", "sma_vgg8_dvs128", "--layer", "block2.lif", "--out", str(out), *TINY, *extra])
    return rc, sorted(out.glob("*.png"))


def test_default_calibrates_bn_and_the_maps_are_not_blank(tmp_path, capsys):
    rc, paths = _heatmap(tmp_path)
    io = capsys.readouterr()
    assert rc == 0 and len(paths) == 4
    assert "BN calibrated" in io.out and "warning" not in io.err
    img = mpimg.imread(paths[0])[..., :3]
    assert len(np.unique(img.reshape(-1, 3), axis=0)) > 50  # a map, axes and a colour bar, not one flat colour


def test_silent_layer_is_reported(tmp_path, capsys):
    """Without calibration the random network is silent at block2: the command says so instead of keeping quiet."""
    rc, paths = _heatmap(tmp_path, "--no-calibrate")
    assert rc == 0 and paths
    assert "fired no spike" in capsys.readouterr().err


def test_library_warns_on_a_layer_without_spikes(tmp_path):
    model = create_model("sma_vgg8_dvs128", sma=False, timesteps=2, widths=(8,) * 5, hidden=(8, 8)).eval()
    with pytest.warns(SilentLayerWarning, match="block1.lif"):
        spike_heatmaps(model, torch.zeros(2, 1, 2, 32, 32), "block1.lif", tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("error", SilentLayerWarning)
        paths = spike_heatmaps(model, torch.rand(2, 1, 2, 32, 32) * 5, "block1.lif", tmp_path / "b")
    assert [p.name for p in paths] == ["block1_lif_t00.png", "block1_lif_t01.png"]

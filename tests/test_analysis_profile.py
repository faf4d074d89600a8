"""`profile_model` (Python) and `spikescope analyze` (CLI) agree by default; a mostly silent network is reported."""
import json

import pytest
import torch

from spikescope.analysis import FiringRateRecorder, SilentNetworkWarning, profile_model
from spikescope.cli import main
from spikescope.models import bn_is_default, create_model


def _model(name="sdt_v3_t", **opts):
    torch.manual_seed(0)
    return create_model(name, **opts)


def test_python_api_matches_the_cli_by_default(tmp_path):
    """sdt_v3_t at 32x32: the same seed gives the same weights, calibration and input in both."""
    assert main(["analyze", "--model", "sdt_v3_t", "--size", "32", "--json", str(tmp_path / "a.json")]) == 0
    cli = json.loads((tmp_path / "a.json").read_text())
    model = _model()
    assert bn_is_default(model)
    torch.manual_seed(0)
    prof = profile_model(model, torch.randn(2, 3, 32, 32))
    assert prof.calibrated is not None and not bn_is_default(model)
    assert prof.energy_mj == pytest.approx(cli["energy_mj_per_sample"], rel=1e-5)
    assert prof.rates == pytest.approx(cli["firing_rates"], abs=1e-6)
    assert sum(r > 0 for r in prof.rates.values()) > len(prof.rates) / 2


@pytest.mark.filterwarnings("ignore::spikescope.analysis.SilentNetworkWarning")  # tiny random model, as loaded
def test_loaded_statistics_are_not_recalibrated():
    model = _model("sma_vgg8_dvs128", timesteps=4, widths=[8] * 5, hidden=[8, 8])
    bn = next(m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d))
    bn.running_mean.fill_(0.5)  # as after loading a checkpoint
    assert not bn_is_default(model)
    assert profile_model(model, torch.rand(4, 1, 2, 32, 32)).calibrated is None
    assert bn.running_mean.eq(0.5).all()


def test_a_mostly_silent_network_warns(capsys):
    """Random weights with default BN statistics: almost every layer of sdt_v3_t is silent, in Python and the CLI."""
    model = _model().eval()
    with pytest.warns(SilentNetworkWarning, match=r"\d+ of 105 spiking layers fired no spike"):
        with torch.no_grad(), FiringRateRecorder(model):
            model(torch.randn(1, 3, 32, 32))
    assert main(["analyze", "--model", "sdt_v3_t", "--size", "32", "--batch", "1", "--no-calibrate"]) == 0
    assert "spiking layers fired no spike" in capsys.readouterr().err

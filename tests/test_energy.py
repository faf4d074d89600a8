"""Synaptic-operation counting and the energy estimate against counts written out by hand."""
import pytest
import torch
from torch import nn

from spikescope.analysis.energy import E_AC_PJ, E_MAC_PJ, EnergyMeter, spike_unit
from spikescope.cli import main
from spikescope.layers.time import TConv2d
from spikescope.neurons import LIF, IntegerSpike


class _Net(nn.Module):
    def __init__(self, neuron: nn.Module) -> None:
        super().__init__()
        self.stem = TConv2d(2, 4, 3, padding=1, bias=False)
        self.sn = neuron
        self.conv = TConv2d(4, 3, 3, padding=1, groups=1, bias=False)
        self.fc = nn.Linear(3, 5)

    def forward(self, x):
        s = self.sn(self.stem(x))
        return self.fc(self.conv(s).mean(dim=(3, 4)))


@pytest.mark.parametrize("neuron,unit", [(LIF(tau=2.0, v_threshold=0.3), 1.0), (IntegerSpike(4), 0.25)])
def test_counts_match_hand_computation(neuron, unit):
    T, B, H, W = 3, 2, 6, 5
    net = _Net(neuron)
    x = torch.randn(T, B, 2, H, W) * 2
    with torch.no_grad():
        with EnergyMeter(net) as meter:
            net(x)
        s = net.sn(net.stem(x))
    stem, conv, fc = meter.layers["stem"], meter.layers["conv"], meter.layers["fc"]
    assert not stem.spiking_input and stem.macs == T * B * 4 * H * W * (2 * 9)
    assert conv.spiking_input and conv.macs == T * B * 3 * H * W * (4 * 9)
    assert conv.acs == pytest.approx(conv.macs * (s / unit).mean().item(), rel=1e-6)
    assert s.sum() > 0
    assert not fc.spiking_input and fc.macs == T * B * 5 * 3  # a mean of spikes is not a spike train
    expected_pj = E_MAC_PJ * (stem.macs + fc.macs) + E_AC_PJ * conv.acs
    assert meter.total_energy_mj() == pytest.approx(expected_pj * 1e-9)
    assert not net.sn._forward_hooks and not net.conv._forward_hooks  # hooks removed on exit


def test_spike_unit_detection():
    assert spike_unit(torch.tensor([0.0, 1.0, 1.0])) == 1.0
    assert spike_unit(torch.tensor([0.0, 0.25, 0.75, 1.0])) == 0.25
    assert spike_unit(torch.tensor([0.0, 0.5, 1.0]), hint=0.25) == 0.25
    assert spike_unit(torch.tensor([0.0, 0.3, 0.71])) is None
    assert spike_unit(torch.tensor([-1.0, 1.0])) is None
    assert spike_unit(torch.zeros(4)) == 1.0


def test_cli_analyze(tmp_path, capsys):
    out = tmp_path / "report.json"
    assert main(["analyze", "--model", "toy_convnet", "--set", "depth=3", "--set", "channels=2", "--size", "16",
                 "--batch", "1", "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert "energy per sample" in text and "convs.0" in text
    import json

    report = json.loads(out.read_text())
    assert report["layers"]["convs.0"]["spiking_input"] is False
    assert report["layers"]["convs.1"]["spiking_input"] is True

"""The spiking-CNN toy of the ST-ERF experiments: activations, inits, and per-block maps with the FFT panel."""
import numpy as np
import pytest
import torch

from spikescope.erf import plots, spatial_erf
from spikescope.erf.metrics import bootstrap_metrics
from spikescope.models import create_model
from spikescope.models.toy import ACTIVATIONS
from spikescope.neurons import LIF, IntegerSpike, Izhikevich, TemporalGradientLIF


@pytest.mark.parametrize("act", ACTIVATIONS)
def test_every_activation_runs_and_has_its_own_instance(act):
    m = create_model("toy_convnet", depth=3, activation=act, init="random", timesteps=3)
    y = m(torch.randn(3, 2, 1, 12, 12))
    assert y.shape == (3, 2, 1, 12, 12)
    assert len({id(a) for a in m.acts}) == 3


def test_activation_options():
    m = create_model("toy_convnet", depth=1, activation="lif", surrogate="rectangle", alpha=1.0, tau=4.0)
    assert isinstance(m.acts[0], LIF) and type(m.acts[0].params.surrogate).__name__ == "Rectangle"
    assert isinstance(create_model("toy_convnet", depth=1, activation="lif_tg", surrogate="arctan").acts[0],
                      TemporalGradientLIF)
    izh = create_model("toy_convnet", depth=1, activation="izhikevich").acts[0]
    assert isinstance(izh, Izhikevich) and izh.tau_inv == 0.002 and izh.v_threshold == 2.3 and izh.reset == "soft"
    x = torch.rand(1, 1, 1, 8, 8) * 6 - 1
    d = create_model("toy_convnet", depth=1, activation="integer", init="uniform")
    one = create_model("toy_convnet", depth=1, activation="integer", integer_norm=1, init="uniform")
    assert isinstance(d.acts[0], IntegerSpike)
    torch.testing.assert_close(one(x), 4 * d(x))  # norm 1 = integers 0..D, norm D = integers / D
    with pytest.raises(ValueError, match="activation"):
        create_model("toy_convnet", activation="gelu")


def test_random_init_is_xavier_times_gaussian():
    torch.manual_seed(5)
    m = create_model("toy_convnet", depth=1, init="random", activation="none")
    torch.manual_seed(5)
    w = torch.empty(1, 1, 3, 3)
    torch.nn.init.kaiming_uniform_(w, a=5 ** 0.5)  # the default init the constructor draws first
    torch.nn.init.xavier_normal_(w)
    w = w * torch.randn_like(w)
    torch.testing.assert_close(m.convs[0].weight, w)
    u = create_model("toy_convnet", depth=2, init="uniform", activation="none")
    assert torch.allclose(u.convs[1].weight, torch.full((1, 1, 3, 3), 1 / 9))


def test_fft_magnitude_of_known_maps():
    H = W = 16
    delta = np.zeros((H, W))
    delta[3, 7] = 2.0
    np.testing.assert_allclose(plots.fft_magnitude(delta), 2.0)  # a delta has a flat spectrum
    x = np.arange(W)
    cos = np.tile(np.cos(2 * np.pi * 3 * x / W), (H, 1)) + 1.0
    F = plots.fft_magnitude(cos)
    assert F[H // 2, W // 2] == pytest.approx(H * W)  # the mean at zero frequency, centred
    assert F[H // 2, W // 2 + 3] == pytest.approx(H * W / 2) and F[H // 2, W // 2 - 3] == pytest.approx(H * W / 2)
    F[H // 2, [W // 2 - 3, W // 2, W // 2 + 3]] = 0
    assert F.max() < 1e-9


def test_plot_block_maps_writes_layers_average_and_fft(tmp_path):
    m = create_model("toy_convnet", depth=3, activation="relu", init="uniform")
    r = spatial_erf(m, "noise", ["layer1", "layer2", "layer3"], n_samples=2, input_size=(1, 16, 16), n_boot=0,
                    progress=False)
    paths = plots.plot_block_maps(r, tmp_path / "blocks")
    assert all(p.exists() and p.stat().st_size > 0 for p in paths)


def test_bootstrap_interval_contains_estimate_and_shrinks_like_one_over_sqrt_n():
    rng = np.random.default_rng(1)
    H = 21
    y, x = np.mgrid[:H, :H]
    blob = np.exp(-((y - 10) ** 2 + (x - 10) ** 2) / (2 * 3.0**2))
    keys = ("mass", "area90", "sigma_row")
    widths = {N: dict.fromkeys(keys, 0.0) for N in (40, 160)}
    for _ in range(3):  # average the widths of 3 independent synthetic data sets
        for N in (40, 160):
            s = blob[None] * rng.exponential(1, (N, 1, 1)) + 0.3 * rng.exponential(1, (N, H, H))
            out = bootstrap_metrics(s, (10, 10), n_boot=100, seed=2)
            for k, e in out.items():
                if e["ci95"] is not None:
                    assert e["ci95"][0] <= e["value"] <= e["ci95"][1], k
            for k in keys:
                widths[N][k] += out[k]["ci95"][1] - out[k]["ci95"][0]
    for k in keys:
        assert 1.5 < widths[40][k] / widths[160][k] < 2.7, (k, widths)  # sqrt(160/40) = 2


def test_colour_bar_reads_real_fractions_of_the_max():
    plt = plots._plt()
    fig, ax = plt.subplots()
    im = ax.imshow(plots.display(np.linspace(0, 1, 16).reshape(4, 4), 1.0), vmin=0, vmax=1)
    cb = plots.colorbar_fraction(fig, im, ax, "log", "ERF")
    labels = [t.get_text() for t in cb.ax.get_yticklabels()]
    assert labels == ["0.001", "0.01", "0.1", "0.5", "1"]
    # the tick at "0.01" sits where a pixel of 1% of the max is drawn (not at display value 0.01)
    np.testing.assert_allclose(cb.get_ticks()[1], np.log10(1 + 999 * 0.01) / 3)
    assert "fraction of the max" in cb.ax.get_ylabel()
    assert "r50" in plots.LEGEND and "σ" in plots.LEGEND
    plt.close(fig)

"""Batched engine == the authors' per-sample, per-layer loop; clear errors on bad input."""
import numpy as np
import pytest
import torch
from torch import nn

from spikescope.erf import LayerError, spatial_erf, spatial_erf_loop, temporal_erf
from spikescope.models import create_model


def _lif_net():
    return create_model("toy_convnet", depth=3, activation="lif", channels=4, in_channels=3, init="xavier")


def _close(a, b):
    scale = max(np.abs(a).max(), np.abs(b).max(), 1e-30)
    np.testing.assert_allclose(a / scale, b / scale, atol=1e-5, rtol=0)


@pytest.mark.parametrize("mode", ["official", "abs", "replknet"])
def test_batched_equals_per_sample_loop(mode):
    model = _lif_net()
    kw = dict(n_samples=5, input_size=(3, 24, 24), mode=mode, t_out=[1, 3], offset=(1, -2))
    layers = ["layer*", "convs.1"]
    batched = spatial_erf(model, "noise", layers, batch_size=2, n_boot=0, progress=False, **kw)
    loop = spatial_erf_loop(model, "noise", layers, **kw)
    assert batched.layers == loop.layers == ["layer1", "layer2", "layer3", "convs.1"]
    for name in batched.layers:
        assert batched.samples[name].shape == (5, 24, 24)
        if mode != "replknet" or name == "convs.1":  # ReLU of a 0 spike has zero gradient (docs/papers.md#erf-metrics)
            assert batched.samples[name].max() > 0
        _close(batched.samples[name], loop.samples[name])
        _close(batched.per_timestep[name], loop.per_timestep[name])
    assert all(p.grad is None for p in model.parameters())
    assert model.training  # the mode is restored


def test_per_timestep_maps_and_official_aggregation():
    """A linear stack with T=3: official = |sum_t' g| = 3 x the per-timestep map; per-t maps exist."""
    model = create_model("toy_convnet", depth=2, activation="none", init="uniform", timesteps=3)
    r = spatial_erf(model, "noise", "layer2", n_samples=2, input_size=(1, 16, 16), n_boot=0, progress=False)
    assert r.per_timestep["layer2"].shape == (3, 16, 16)
    np.testing.assert_allclose(r.maps["layer2"], 3 * r.per_timestep["layer2"][0], rtol=1e-6)
    r1 = spatial_erf(model, "noise", "layer2", n_samples=2, input_size=(1, 16, 16), t_out=0, n_boot=0,
                     progress=False)
    np.testing.assert_allclose(r1.per_timestep["layer2"][1:], 0)  # y[0] sees only x[0]


class _FrameOnly(nn.Module):
    """Takes [B, C, H, W] only, like a conventional CNN."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.flat = nn.Flatten(2)

    def forward(self, x):
        if x.dim() != 4:
            raise ValueError("expected [B, C, H, W]")
        y = self.bn(self.conv(x))
        self.flat(y)
        return y


def test_frame_feed_fallback_and_loop_match():
    model = _FrameOnly()
    kw = dict(n_samples=3, input_size=(3, 12, 12))
    r = spatial_erf(model, "noise", "bn", n_boot=0, progress=False, **kw)
    assert r.meta["feed"] == "frame"
    _close(r.samples["bn"], spatial_erf_loop(model, "noise", "bn", **kw).samples["bn"])


def test_tensor_and_dataset_inputs():
    model = _lif_net()
    x = torch.randn(4, 3, 16, 16)
    a = spatial_erf(model, x, "layer2", n_boot=0, progress=False)
    b = spatial_erf(model, [(x[k], 0) for k in range(4)], "layer2", n_boot=0, progress=False)
    assert a.meta["N"] == b.meta["N"] == 4
    _close(a.maps["layer2"], b.maps["layer2"])


def test_unknown_layer_lists_available():
    with pytest.raises(LayerError) as e:
        spatial_erf(_lif_net(), "noise", ["stage9"], n_samples=2, input_size=(3, 16, 16), progress=False)
    msg = str(e.value)
    assert "stage9" in msg and "layer1" in msg and "convs.0" in msg


def test_layer_without_spatial_map():
    with pytest.raises(LayerError, match="no spatial map"):
        spatial_erf(_FrameOnly(), "noise", "flat", n_samples=2, input_size=(3, 12, 12), progress=False)


def test_bad_inputs():
    model = _lif_net()
    with pytest.raises(ValueError, match=r"\[N, C, H, W\]"):
        spatial_erf(model, torch.randn(3, 16, 16), "layer1", progress=False)
    with pytest.raises(ValueError, match="N = 0"):
        spatial_erf(model, "noise", "layer1", n_samples=0, input_size=(3, 16, 16), progress=False)
    with pytest.raises(ValueError, match="no input samples"):
        spatial_erf(model, torch.randn(0, 3, 16, 16), "layer1", progress=False)
    with pytest.raises(ValueError, match="rejected the input"):
        spatial_erf(model, "noise", "layer1", n_samples=2, input_size=(5, 16, 16), progress=False)
    with pytest.raises(ValueError, match="mode"):
        spatial_erf(model, "noise", "layer1", n_samples=2, input_size=(3, 16, 16), mode="max", progress=False)
    with pytest.raises(ValueError, match="outside"):
        spatial_erf(model, "noise", "layer1", n_samples=2, input_size=(3, 16, 16), offset=(9, 0), progress=False)
    with pytest.raises(ValueError, match="t_out"):
        spatial_erf(model, "noise", "layer1", n_samples=2, input_size=(3, 16, 16), t_out=7, progress=False)
    with pytest.raises(LayerError, match="Neuron modules"):
        temporal_erf(model, "noise", "convs.0", output="membrane", n_samples=2, input_size=(3, 16, 16),
                     progress=False)


def test_save_and_load_roundtrip(tmp_path):
    model = _lif_net()
    r = spatial_erf(model, "noise", ["layer1", "layer3"], n_samples=4, input_size=(3, 16, 16), n_boot=20,
                    progress=False)
    out = r.save(tmp_path / "s")
    for f in ("erf.npz", "metrics.json", "layers.png", "layers.pdf", "timesteps.png", "timesteps.pdf"):
        assert (out / f).exists(), f
    back = type(r).load(out)
    np.testing.assert_allclose(back.maps["layer3"], r.maps["layer3"])
    assert back.meta["N"] == 4 and back.meta["mode"] == "official" and back.meta["seed"] == 0
    t = temporal_erf(model, "noise-iid:4", "layer2", n_samples=3, input_size=(3, 16, 16), n_boot=20,
                     progress=False)
    out = t.save(tmp_path / "t")
    assert (out / "temporal.png").exists() and (out / "temporal.pdf").exists()
    assert type(t).load(out).matrix.shape == (4, 4)


class _AmplifySecondSample(nn.Module):
    def forward(self, y):  # [T, B, C, H, W]; 1e30 * 1e30 overflows float32 for sample 1 only
        scale = torch.ones(1, y.shape[1], 1, 1, 1)
        scale[:, 1:2] = 1e30
        return y * scale * scale


class _Overflow(nn.Module):
    """A conv, then a layer whose output (and so its input gradient) overflows for the second sample."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 1, 3, padding=1)
        self.amp = _AmplifySecondSample()
        self.timesteps = 2

    def forward(self, x):  # [T, B, 1, H, W]
        T, B = x.shape[:2]
        return self.amp(self.conv(x.flatten(0, 1)).unflatten(0, (T, B)))


def test_non_finite_gradients_are_refused_with_the_layer_and_sample_count():
    from spikescope.erf import NonFiniteGradientError

    kw = dict(input_size=(1, 8, 8), n_boot=0, progress=False)
    with pytest.raises(NonFiniteGradientError, match=r"layer 'amp'.*1 of 3 sample\(s\) is not finite"):
        spatial_erf(_Overflow(), "noise", "amp", batch_size=3, n_samples=3, feed="sequence", **kw)
    with pytest.raises(NonFiniteGradientError, match="1 of 3"):
        temporal_erf(_Overflow(), "noise", "amp", batch_size=3, n_samples=3, **kw)
    ok = spatial_erf(_Overflow(), "noise", ["conv", "amp"], batch_size=1, n_samples=1, feed="sequence", **kw)
    assert all(np.isfinite(m).all() for m in ok.maps.values())  # a batch of sample 0 alone is finite


def test_leaf_and_calibration_follow_the_model_dtype():
    """A float64 model gets a float64 leaf and float64 calibration noise; its maps match float32's."""
    from spikescope.erf import calibrate_bn

    kw = dict(n_samples=4, input_size=(3, 16, 16), n_boot=0, progress=False)
    maps32 = spatial_erf(_lif_net().eval(), "noise", "layer*", **kw).maps
    torch.manual_seed(0)
    maps64 = spatial_erf(_lif_net().double().eval(), "noise", "layer*", **kw).maps
    for name in maps32:
        _close(maps32[name], maps64[name])
    model = create_model("sdt_v3_t", num_classes=0).double()
    calibrate_bn(model, (3, 32, 32), n_batches=1, batch_size=1)
    bn = next(m for m in model.modules() if isinstance(m, nn.BatchNorm2d))
    assert bn.running_mean.dtype == torch.float64 and bn.running_mean.abs().sum() > 0


@pytest.mark.gpu
def test_cuda_model_maps_equal_cpu_maps():
    kw = dict(n_samples=4, input_size=(3, 16, 16), n_boot=0, progress=False, batch_size=2)
    torch.manual_seed(0)
    cpu = spatial_erf(_lif_net().eval(), "noise", "layer*", **kw)
    torch.manual_seed(0)
    gpu = spatial_erf(_lif_net().cuda().eval(), "noise", "layer*", **kw)
    for name in cpu.layers:
        _close(cpu.maps[name], gpu.maps[name])

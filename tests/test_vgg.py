"""SMA-VGG8 (docs/papers.md#sma-vgg8): parameter counts, shapes, causality, released-checkpoint loading, heat maps."""
import json
from pathlib import Path

import pytest
import torch

from spikescope.cli import main as cli_main
from spikescope.layers import TimeSharedDropout
from spikescope.models import count_parameters, create_model, load_checkpoint

# Key names, shapes and parameter counts of the authors' released files (copied from the design specs).
SPEC = Path(__file__).resolve().parent / "data" / "official_state_dicts" / "sma_vgg8_dvs128.json"
SMALL = dict(widths=(8, 16, 16, 16, 16), hidden=(16, 16))


@pytest.mark.parametrize(
    "name, with_sma, plain",
    [
        ("sma_vgg8_dvs128", 22_452_531, 15_461_835),
        ("sma_vgg8_cifar10dvs", 22_451_014, 15_460_810),
        ("sma_vgg8_ncaltech101", 22_544_543, 15_554_085),
    ],
)
def test_parameter_counts(name, with_sma, plain):
    assert count_parameters(name) == with_sma
    assert count_parameters(name, sma=False) == plain


def test_demo_configuration_trains_on_small_inputs():
    model = create_model("sma_vgg8_dvs128", timesteps=8, num_classes=4, widths=(16, 32, 32, 64, 64), hidden=(128, 64))
    x = torch.rand(8, 2, 2, 32, 32)
    y = model(x)
    assert y.shape == (8, 2, 4)
    y.mean(0).sum().backward()
    assert all(p.grad is not None for p in model.parameters())
    feats = model.forward_features(x)
    assert list(feats) == [f"stage{i}" for i in range(1, 6)]
    assert feats["stage2"].shape == (8, 2, 32, 8, 8)
    assert isinstance(model.head.drop1, TimeSharedDropout) and model.head.drop1.p == 0.5


def test_options_reach_the_sma_modules():
    model = create_model("sma_vgg8_ncaltech101", variant="light", azo=False, rtr=2, **SMALL)
    sma = model.block2.sma
    assert (sma.variant, sma.azo, sma.rcr, sma.rtr, sma.timesteps) == ("light", False, 24, 2, 14)
    assert model.block1.sma is None and model.block4.sma is None
    with pytest.raises(TypeError, match="unknown option"):
        create_model("sma_vgg8_dvs128", sma_everywhere=True)


def test_input_errors():
    model = create_model("sma_vgg8_dvs128", timesteps=4, **SMALL)
    with pytest.raises(ValueError, match="built for T=4"):
        model(torch.rand(6, 1, 2, 32, 32))
    with pytest.raises(ValueError, match="at least 32x32"):
        model(torch.rand(4, 1, 2, 16, 16))
    with pytest.raises(ValueError, match=r"\[T, B, 2, H, W\]"):
        model(torch.rand(4, 1, 3, 32, 32))


def _two_runs(model, t0, T=6, hook=None):
    """Outputs (or the output of the module ``hook``) for an input and for a copy changed after timestep t0."""
    x = torch.rand(T, 2, 2, 32, 32) * 2
    x2 = x.clone()
    x2[t0 + 1 :] = torch.rand_like(x2[t0 + 1 :]) * 4
    seen = []
    handle = hook.register_forward_hook(lambda m, i, o: seen.append(o)) if hook is not None else None
    with torch.no_grad():
        outs = [model(x), model(x2)]
    if handle is not None:
        handle.remove()
        outs = seen
    return outs


def _make_fire(model):
    """Strong BN gains and head weights so that every layer of a random-init model fires in eval mode."""
    with torch.no_grad():
        for i in range(1, 6):
            block = getattr(model, f"block{i}")
            block.bn.weight.fill_(4.0 * i)
            if block.sma is not None:  # its output is a convex-like mix of spikes, around 1/N
                block.bn.weight.fill_(40.0 * i)
                for branch in block.sma.S_Convs:
                    branch.bn.weight.fill_(4.0)
                block.sma.T_before_attention_conv.bias.fill_(1.0)  # keep the ReLU of the temporal attention active
        model.head.fc1.weight.mul_(20)
        model.head.fc2.weight.mul_(20)
    return model


def test_plain_vgg8_is_causal_and_sma_is_not():
    plain = _make_fire(create_model("sma_vgg8_dvs128", sma=False, timesteps=6, **SMALL).eval())
    a, b = _two_runs(plain, 2)
    torch.testing.assert_close(a[:3], b[:3], rtol=0, atol=0)
    assert not torch.allclose(a[3:], b[3:])
    sma = _make_fire(create_model("sma_vgg8_dvs128", timesteps=6, **SMALL).eval())
    a, b = _two_runs(sma, 2, hook=sma.block2.sma)
    assert not torch.allclose(a[:3], b[:3]), "the SMA temporal attention sees every timestep: not causal"
    a, b = _two_runs(sma, 2)
    assert not torch.allclose(a[:3], b[:3]), "so the SMA-VGG8 output at t depends on inputs after t"


def _released_state(keys: dict, offset: int = 0) -> dict:
    """A state dict with the released names and shapes; every tensor holds its own distinct value."""
    state = {}
    for i, (key, shape) in enumerate(keys.items()):
        if key.endswith("num_batches_tracked"):
            state[key] = torch.tensor(1000 + i + offset)
        else:
            state[key] = torch.full(shape, float(i + offset) + 0.25)
    return state


def _check_loaded(model, state: dict, anchors: dict) -> None:
    own = model.state_dict()
    by_value = {}
    for key, value in own.items():
        by_value.setdefault(float(value.flatten()[0]) if value.numel() else None, []).append(key)
    for key, value in state.items():
        (ours,) = by_value[float(value.flatten()[0])]  # every released tensor lands in exactly one of ours
        assert torch.equal(own[ours], value.to(own[ours].dtype)), key
    for released, ours in anchors.items():
        assert torch.equal(own[ours], state[released].to(own[ours].dtype)), (released, ours)


def test_loads_released_dvs128_checkpoint_with_ddp_prefix(tmp_path):
    spec = json.loads(SPEC.read_text())
    state = _released_state(spec["keys"])
    torch.save({"model": {f"module.{k}": v for k, v in state.items()}}, tmp_path / "dvs128.pth")
    model = create_model("sma_vgg8_dvs128")
    assert sum(p.numel() for p in model.parameters()) == spec["num_params"]
    report = load_checkpoint(model, tmp_path / "dvs128.pth")
    assert report.complete and len(report.loaded) == len(state)
    _check_loaded(model, state, {
        "block1.0.0.weight": "block1.conv.weight",
        "block1.1.0.running_var": "block1.bn.running_var",
        "block2.1.S_Convs.3.bn.running_mean": "block2.sma.S_Convs.3.bn.running_mean",
        "block3.1.T_after_attention_convs.2.weight": "block3.sma.T_after_attention_convs.2.weight",
        "block2.2.0.weight": "block2.bn.weight",
        "others.2.weight": "head.fc1.weight",
        "others.5.bias": "head.fc2.bias",
        "others.8.weight": "head.fc3.weight",
    })


def test_loads_ncaltech101_block1_layout(tmp_path):
    # the N-Caltech101 script keeps block 1's conv and BN in one container: block1.0.0 / block1.0.1
    model = create_model("sma_vgg8_ncaltech101")
    own = model.state_dict()
    spec = json.loads(SPEC.read_text())["keys"]
    keys = {}
    for key in spec:
        new = key.replace("block1.1.0.", "block1.0.1.")
        ours = model.remap_checkpoint({key: None}).popitem()[0]
        keys[new] = list(own[ours].shape)
    state = _released_state(keys, offset=7)
    torch.save({f"module.{k}": v for k, v in state.items()}, tmp_path / "ncaltech.pth")
    report = load_checkpoint(model, tmp_path / "ncaltech.pth")
    assert report.complete
    _check_loaded(model, state, {"block1.0.1.weight": "block1.bn.weight", "block1.0.0.bias": "block1.conv.bias"})


def test_heatmap_cli_writes_one_png_per_timestep(tmp_path, capsys):
    out = tmp_path / "maps"
    rc = cli_main([
        "heatmap", "--model", "sma_vgg8_dvs128", "--layer", "block1.lif", "--out", str(out),
        "--set", "timesteps=4", "--set", "widths=[8,16,16,16,16]", "--set", "hidden=[16,16]",
        "--set", "input_size=[32,32]",
    ])
    assert rc == 0
    assert "random input" in capsys.readouterr().out
    assert sorted(p.name for p in out.iterdir()) == [f"block1_lif_t{t:02d}.png" for t in range(4)]


def test_heatmap_frames_are_channel_sums_min_max_normalised():
    from spikescope.analysis.heatmap import heatmap_frames, record_spikes

    model = create_model("sma_vgg8_dvs128", sma=False, timesteps=3, **SMALL).eval()
    x = torch.rand(3, 1, 2, 32, 32) * 3
    spikes = record_spikes(model, x, "block1.lif")
    assert spikes.shape == (3, 1, 8, 32, 32)
    frames = heatmap_frames(spikes)
    counts = spikes[:, 0].sum(1)
    for t in range(3):
        lo, hi = counts[t].min(), counts[t].max()
        expect = (counts[t] - lo) / (hi - lo) if hi > lo else torch.zeros_like(counts[t])
        torch.testing.assert_close(torch.from_numpy(frames[t]), expect)
    with pytest.raises(ValueError, match=r"\[T, B, C, H, W\]"):
        heatmap_frames(record_spikes(model, x, "head.lif1"))

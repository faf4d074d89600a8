"""MS-ResNet / SMA-ResNet (docs/papers.md#sma-neurons, §6): neuron, parameter counts, causality, released-checkpoint loading."""
import json
from pathlib import Path

import pytest
import torch

from spikescope.layers.tdbn import TDBatchNorm
from spikescope.models import count_parameters, create_model, load_checkpoint
from spikescope.models.ms_resnet import ms_neuron

# Key names, shapes and parameter counts of the authors' released files (copied from the design specs).
SPECS = Path(__file__).resolve().parent / "data" / "official_state_dicts"
SMALL = dict(widths=(8, 16, 16, 16), num_classes=5)


class _RectSpike(torch.autograd.Function):
    """s = 1{u > 0.5}; ds/du = 1{|u - 0.5| < 0.5} / (2 * 0.5)  (the released "rectangular" surrogate, lens 0.5)."""

    @staticmethod
    def forward(ctx, u):
        ctx.save_for_backward(u)
        return (u > 0.5).to(u.dtype)

    @staticmethod
    def backward(ctx, grad):
        (u,) = ctx.saved_tensors
        return grad * ((u - 0.5).abs() < 0.5).to(u.dtype) / (2 * 0.5)


def mem_update(x: torch.Tensor) -> torch.Tensor:
    """u[0] = x[0]; u[t] = 0.25 u[t-1] (1 - s[t-1]) + x[t] with s[t-1] detached; s[t] = spike(u[t])."""
    spikes, u, s = [], None, None
    for t in range(x.shape[0]):
        u = x[t] if t == 0 else 0.25 * u * (1 - s.detach()) + x[t]
        s = _RectSpike.apply(u)
        spikes.append(s)
    return torch.stack(spikes)


@pytest.mark.parametrize("backend", ["torch", "fused"])
def test_neuron_equals_mem_update(backend):
    x = (torch.randn(6, 4, 50, dtype=torch.float64) * 0.6 + 0.2).requires_grad_(True)
    g = torch.randn(6, 4, 50, dtype=torch.float64)
    ref = mem_update(x)
    (gx_ref,) = torch.autograd.grad((ref * g).sum(), x)
    neuron = ms_neuron()
    neuron.backend = backend
    ours = neuron(x)
    (gx,) = torch.autograd.grad((ours * g).sum(), x)
    assert 0.05 < ref.mean() < 0.95
    torch.testing.assert_close(ours, ref, rtol=0, atol=0)
    torch.testing.assert_close(gx, gx_ref, rtol=1e-12, atol=1e-12)
    assert gx.abs().sum() > 0


@pytest.mark.parametrize(
    "name, overrides, expected",
    [
        ("ms_resnet18", {}, 11_693_736),
        ("ms_resnet34", {}, 21_801_896),
        ("ms_resnet104", {}, 77_350_504),
        ("ms_resnet18", {"sma": True}, 71_087_400),
    ],
)
def test_parameter_counts(name, overrides, expected):
    assert count_parameters(name, **overrides) == expected


def test_sma_placement_and_variants():
    m = create_model("ms_resnet34", sma=True, **SMALL)
    for s in range(2, 6):
        stage = getattr(m, f"conv{s}_x")
        for i, block in enumerate(stage):
            names = [type(layer).__name__ for layer in block.residual_function]
            assert names[2] == ("SMA" if i < 2 else "TDBatchNorm"), (s, i, names)
    sma = m.conv3_x[0].residual_function[2]
    assert (sma.branch, sma.timesteps, sma.azo, sma.rcr, sma.rtr) == ("relu", 6, False, 4, 2)
    assert sma.T_before_attention_conv.weight.shape[0] == 4  # 6 // 1.5
    assert create_model("ms_resnet104_sma", **SMALL).conv2_x[0].residual_function[2].azo
    assert create_model("ms_resnet104", sma=True, azo=True, **SMALL).conv5_x[1].residual_function[2].azo


def test_shapes_and_static_image_repetition():
    m = create_model("ms_resnet18", **SMALL).eval()
    img = torch.rand(2, 3, 64, 64)
    y = m(img)
    assert y.shape == (6, 2, 5)
    torch.testing.assert_close(y, m(img.unsqueeze(0).repeat(6, 1, 1, 1, 1)))
    feats = m.forward_features(img)
    assert list(feats) == ["stage1", "stage2", "stage3", "stage4"]
    assert feats["stage1"].shape == (6, 2, 8, 16, 16) and feats["stage4"].shape == (6, 2, 16, 2, 2)
    m.train()(img).mean(0).sum().backward()
    with pytest.raises(ValueError, match=r"\[B, 3, H, W\]"):
        m(torch.rand(2, 1, 64, 64))


def test_init_follows_tdbn():
    m = create_model("ms_resnet18", **SMALL)
    rf = m.conv2_x[0].residual_function
    assert torch.all(rf[2].bn.weight == 0.5) and torch.all(rf[5].bn.weight == 0)
    assert torch.all(m.conv2_x[0].shortcut[1].bn.weight == 0.5)


def _two_runs(model, t0, hook=None, T=6):
    x = torch.rand(T, 2, 3, 32, 32)
    x2 = x.clone()
    x2[t0 + 1 :] = torch.rand_like(x2[t0 + 1 :]) * 3
    seen = []
    handle = hook.register_forward_hook(lambda m, i, o: seen.append(o)) if hook is not None else None
    with torch.no_grad():
        outs = [model(x), model(x2)]
    if handle is not None:
        handle.remove()
        outs = seen
    return outs


def _make_fire(model):
    """Unit BN gains (the zero-initialised residual BNs would make a fresh model a linear shortcut chain)."""
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, TDBatchNorm):
                module.bn.weight.fill_(1.5)
    return model


def test_ms_resnet_is_causal_and_sma_resnet_is_not():
    plain = _make_fire(create_model("ms_resnet18", **SMALL).eval())
    a, b = _two_runs(plain, 2)
    torch.testing.assert_close(a[:3], b[:3], rtol=0, atol=0)
    assert not torch.allclose(a[3:], b[3:])
    sma_model = _make_fire(create_model("ms_resnet18", sma=True, **SMALL).eval())
    sma = sma_model.conv2_x[0].residual_function[2]
    with torch.no_grad():
        sma.T_before_attention_conv.bias.fill_(1.0)  # an active ReLU: alpha^T depends on every timestep
        sma_model.conv2_x[0].residual_function[3].bn.weight.fill_(40.0)  # the SMA output is ~1/N of a ReLU map
    a, b = _two_runs(sma_model, 2, hook=sma)
    assert not torch.allclose(a[:3], b[:3])
    a, b = _two_runs(sma_model, 2, hook=sma_model.conv5_x)  # the last stage's output at t <= 2 changes too
    assert not torch.allclose(a[:3], b[:3])


def _released_state(keys: dict) -> dict:
    state = {}
    for i, (key, shape) in enumerate(keys.items()):
        state[key] = torch.tensor(10_000 + i) if key.endswith("num_batches_tracked") else torch.full(shape, i + 0.5)
    return state


@pytest.mark.parametrize("size", [18, 34, 104])
def test_loads_released_checkpoint(size, tmp_path):
    spec = json.loads((SPECS / f"sma_ms_resnet{size}.json").read_text())
    state = _released_state(spec["keys"])
    torch.save({"state_dict": {f"module.{k}": v for k, v in state.items()}}, tmp_path / "w.pth")
    model = create_model(f"ms_resnet{size}")
    assert sum(p.numel() for p in model.parameters()) == spec["num_params"]
    report = load_checkpoint(model, tmp_path / "w.pth")
    assert report.complete and len(report.loaded) == len(state)
    own = model.state_dict()
    for key, value in state.items():  # the released names are ours: every value reads back under its own key
        assert torch.equal(own[key], value), key
    (tmp_path / "w.pth").unlink()


def test_sma_resnet18_keys_are_the_released_insert_layout():
    # the training script does residual_function.insert(2, SMA(...)): later branch indices shift by one
    spec = json.loads((SPECS / "sma_ms_resnet18.json").read_text())["keys"]
    with torch.device("meta"):
        own = create_model("ms_resnet18", sma=True).state_dict()
    shifted = set()
    for key in spec:
        parts = key.split(".")
        if len(parts) > 3 and parts[2] == "residual_function" and int(parts[3]) >= 2:
            parts[3] = str(int(parts[3]) + 1)
        shifted.add(".".join(parts))
    sma_keys = set(own) - shifted
    assert shifted <= set(own)
    assert "conv5_x.1.residual_function.2.S_Convs.3.bn.bn.running_var" in sma_keys
    assert all(".residual_function.2." in k for k in sma_keys)

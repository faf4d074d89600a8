"""SDT-v3: parameter counts vs the released state dicts, checkpoint loading, features, attention, input errors."""
import json
from pathlib import Path

import pytest
import torch
from torch import nn

from spikescope.cli import main
from spikescope.layers.meta_attention import MetaSpikeDrivenSelfAttention
from spikescope.models import CheckpointError, count_parameters, create_model, list_models, load_checkpoint, model_info
from spikescope.models.sdt_v3 import remap_sdt_v3_keys

# Key names, shapes and parameter counts of the authors' released files (copied from the design specs).
DESIGN = Path(__file__).resolve().parent / "data" / "official_state_dicts"

# released file -> our registered name and options
RELEASED = {
    "sterf_sdtv3_t": ("sdt_v3_t", {}),
    "sterf_sdtv3_s": ("sdt_v3_s", {}),
    "sterf_sdtv3_m": ("sdt_v3_m", {}),
    "sterf_sdtv3_l": ("sdt_v3_l", {}),
    "sterf_sdtv3_s_channelmlp": ("sdt_v3_s", {"mixer": "mlpixer"}),
    "sterf_sdtv3_s_splash": ("sdt_v3_s", {"mixer": "srb"}),
    "sterf_sdtv3_m_splash": ("sdt_v3_m", {"mixer": "srb"}),
}
needs_json = pytest.mark.skipif(not DESIGN.is_dir(), reason="design folder with the released key lists not found")


def _released(stem: str) -> dict:
    return json.loads((DESIGN / f"{stem}.json").read_text())


@needs_json
@pytest.mark.parametrize("stem", sorted(RELEASED))
def test_parameter_count_equals_released_model(stem):
    name, options = RELEASED[stem]
    assert count_parameters(name, **options) == _released(stem)["num_params"]


# docs/papers.md#sdt-v3-parameter-counts, in millions to 3 decimals; "bb" = backbone only (num_classes=0)
TABLE = [
    ("sdt_v3_s", {"mixer": "mlpixer", "mixer_ratio": 6}, 4.536),
    ("sdt_v3_s", {"mixer": "mlpixer", "mixer_layout": "pointwise"}, 4.499),
    ("sdt_v3_s", {"num_classes": 0}, 4.913),
    ("sdt_v3_s", {"mixer": "mlpixer", "num_classes": 0}, 4.305),
    ("sdt_v3_s", {"mixer": "mlpixer", "mixer_ratio": 6, "num_classes": 0}, 4.343),
    ("sdt_v3_s", {"mixer": "srb", "num_classes": 0}, 4.608),
    ("sdt_v3_m", {"mixer": "mlpixer"}, 8.657),
    ("sdt_v3_m", {"mixer": "mlpixer", "mixer_ratio": 6}, 8.742),
    ("sdt_v3_m", {"mixer": "mlpixer", "mixer_layout": "pointwise"}, 8.659),
    ("sdt_v3_m", {"num_classes": 0}, 9.782),
    ("sdt_v3_m", {"mixer": "srb", "num_classes": 0}, 9.098),
    ("sdt_v3_l", {"mixer": "mlpixer"}, 16.559),
    ("sdt_v3_l", {"mixer": "mlpixer", "mixer_ratio": 6}, 16.711),
    ("sdt_v3_l", {"mixer": "srb"}, 17.772),
    ("sdt_v3_l", {"mixer": "mlpixer", "mixer_layout": "pointwise"}, 16.563),
    ("sdt_v3_l", {"num_classes": 0}, 18.627),
    ("sdt_v3_l", {"mixer": "mlpixer", "num_classes": 0}, 16.198),
    ("sdt_v3_l", {"mixer": "mlpixer", "mixer_ratio": 6, "num_classes": 0}, 16.350),
    ("sdt_v3_l", {"mixer": "srb", "num_classes": 0}, 17.411),
]


@pytest.mark.parametrize("name, options, millions", TABLE)
def test_parameter_count_matches_spec_table(name, options, millions):
    assert round(count_parameters(name, **options) / 1e6, 3) == millions


def _distinct_state(keys: dict) -> dict:
    """A tensor per released key, every tensor filled with its own index (num_batches_tracked: int64)."""
    state = {}
    for i, (key, shape) in enumerate(keys.items()):
        dtype = torch.int64 if key.endswith("num_batches_tracked") else torch.float32
        state[key] = torch.full(shape, i + 1, dtype=dtype)
    return state


# spot checks through our module attributes: released key -> accessor on our model
SPOTS = {
    "downsample1_1.encode_conv.weight": lambda m: m.stage1.downsamples[0].conv.weight,
    "downsample1_2.encode_bn.running_var": lambda m: m.stage1.downsamples[1].bn.running_var,
    "downsample4.encode_conv.bias": lambda m: m.stage4.downsamples[0].conv.bias,
    "ConvBlock1_1.0.Conv.dwconv.0.weight": lambda m: m.stage1.blocks[0].token_mixer.dw.conv.weight,
    "ConvBlock2_2.0.Conv.pwconv2.1.bias": lambda m: m.stage2.blocks[1].token_mixer.pw2.bn.bias,
    "block3.5.conv.pwconv1.1.num_batches_tracked": lambda m: m.stage3.blocks[5].token_mixer.pw1.bn.num_batches_tracked,
    "block3.0.attn.v_conv.0.weight": lambda m: m.stage3.blocks[0].attn.v.conv.weight,
    "block4.1.attn.proj_conv.1.running_mean": lambda m: m.stage4.blocks[1].attn.proj.bn.running_mean,
    "block4.0.mlp.fc2_conv.bias": lambda m: m.stage4.blocks[0].mlp.fc2.conv.bias,
    "block3.2.mlp.fc1_bn.weight": lambda m: m.stage3.blocks[2].mlp.fc1.bn.weight,
    "head.weight": lambda m: m.head.weight,
}
MIXER_SPOTS = {
    "conv": {
        "ConvBlock1_2.0.conv1.weight": lambda m: m.stage1.blocks[1].channel_mixer.fc1.conv.weight,
        "ConvBlock2_1.0.bn2.bias": lambda m: m.stage2.blocks[0].channel_mixer.fc2.bn.bias,
    },
    "mlpixer": {
        "ConvBlock1_1.0.fc1.weight": lambda m: m.stage1.blocks[0].channel_mixer.fc1.weight,
        "ConvBlock2_2.0.fc2.weight": lambda m: m.stage2.blocks[1].channel_mixer.fc2.weight,
    },
    "srb": {
        "ConvBlock1_1.0.fc1.weight": lambda m: m.stage1.blocks[0].channel_mixer.fc1.weight,
        "ConvBlock2_2.0.conv2.weight": lambda m: m.stage2.blocks[1].channel_mixer.fc2.conv.weight,
        "ConvBlock1_2.0.bn2.running_mean": lambda m: m.stage1.blocks[1].channel_mixer.fc2.bn.running_mean,
    },
}


@needs_json
@pytest.mark.parametrize("stem", sorted(RELEASED))
def test_released_state_dict_loads_every_tensor_in_place(stem, tmp_path):
    name, options = RELEASED[stem]
    keys = _released(stem)["keys"]
    state = _distinct_state(keys)
    path = tmp_path / "released.pth"
    torch.save({"model": {f"module.{k}": v for k, v in state.items()}}, path)
    model = create_model(name, **options)
    report = load_checkpoint(model, path)
    assert report.complete and len(report.loaded) == len(keys)
    ours = model.state_dict()
    assert len(ours) == len(keys)
    for key, value in state.items():  # every released tensor is found under its mapped name
        assert torch.equal(ours[remap_sdt_v3_keys(key)], value), key
    assert sorted(int(v.flatten()[0]) if v.numel() else int(v) for v in ours.values()) == list(range(1, len(keys) + 1))
    spots = {**SPOTS, **MIXER_SPOTS[options.get("mixer", "conv")]}
    for key, get in spots.items():
        assert torch.equal(get(model), state[key]), key


def test_own_checkpoint_round_trip_and_partial_file_is_refused(tmp_path):
    src = create_model("sdt_v3_t", mixer="srb", num_classes=10)
    path = tmp_path / "ours.pth"
    torch.save({"state_dict": src.state_dict()}, path)
    dst = create_model("sdt_v3_t", mixer="srb", num_classes=10)
    assert load_checkpoint(dst, path).complete
    for (k, a), b in zip(src.state_dict().items(), dst.state_dict().values()):
        assert torch.equal(a, b), k
    state = src.state_dict()
    del state["stage3.blocks.0.attn.q.bn.weight"]
    torch.save(state, path)
    with pytest.raises(CheckpointError, match=r"stage3\.blocks\.0\.attn\.q\.bn\.weight"):
        load_checkpoint(create_model("sdt_v3_t", mixer="srb", num_classes=10), path)


def test_wrong_mixer_checkpoint_is_reported_by_name(tmp_path):
    path = tmp_path / "srb.pth"
    torch.save(create_model("sdt_v3_t", mixer="srb").state_dict(), path)
    with pytest.raises(CheckpointError, match=r"missing in the file \(4\): stage1\.blocks\.0\.channel_mixer\.fc2\.weight"):
        load_checkpoint(create_model("sdt_v3_t", mixer="mlpixer"), path)


@pytest.mark.parametrize("mixer", ["conv", "mlpixer", "srb"])
@pytest.mark.parametrize("layout", ["raster", "pointwise"])
def test_remap_leaves_our_own_names_unchanged(mixer, layout):
    with torch.device("meta"):
        keys = list(create_model("sdt_v3_t", mixer=mixer, mixer_layout=layout).state_dict())
    assert [remap_sdt_v3_keys(k) for k in keys] == keys


@pytest.mark.parametrize("mixer", ["conv", "mlpixer", "srb"])
def test_sdt_v3_s_forward_backward_224(mixer):
    model = create_model("sdt_v3_s", mixer=mixer)
    x = torch.randn(1, 3, 224, 224, requires_grad=True)
    y = model(x)
    assert y.shape == (1, 1, 1000) and torch.isfinite(y).all()
    y.sum().backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    assert all(p.grad is not None for n, p in model.named_parameters() if "head" in n or "stage1" in n)


@pytest.mark.slow
@pytest.mark.parametrize("size", ["t", "m", "l"])
@pytest.mark.parametrize("mixer", ["conv", "mlpixer", "srb"])
def test_sdt_v3_other_sizes_forward_backward_224(size, mixer):
    model = create_model(f"sdt_v3_{size}", mixer=mixer)
    x = torch.randn(1, 3, 224, 224, requires_grad=True)
    y = model(x)
    assert y.shape == (1, 1, 1000)
    y.sum().backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def test_forward_features_names_shapes_and_blocks():
    model = create_model("sdt_v3_t", mixer="srb").eval()
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        feats = model.forward_features(x)
        everything = model.forward_features(x, blocks=True)
    assert list(feats) == ["stage1", "stage2", "stage3", "stage4"]
    assert [tuple(v.shape) for v in feats.values()] == [
        (1, 2, 24, 56, 56),
        (1, 2, 48, 28, 28),
        (1, 2, 96, 14, 14),
        (1, 2, 128, 14, 14),
    ]
    expected = (
        ["stage1.block0", "stage1.block1", "stage1", "stage2.block0", "stage2.block1", "stage2"]
        + [f"stage3.block{i}" for i in range(6)] + ["stage3", "stage4.block0", "stage4.block1", "stage4"]
    )
    assert list(everything) == expected
    assert everything["stage1.block0"].shape == (1, 2, 12, 112, 112)
    for s in range(1, 5):
        torch.testing.assert_close(everything[f"stage{s}"], feats[f"stage{s}"])
    assert list(everything) == model.feature_names(blocks=True) and list(feats) == model.feature_names()
    with torch.no_grad():
        torch.testing.assert_close(model(x), model.forward_head(feats["stage4"]))
        early = model.forward_features(x, up_to="stage2")
        one = model.forward_features(x, up_to="stage3.block1")
    assert list(early) == ["stage1", "stage2"] and list(one) == ["stage1", "stage2", "stage3.block1"]
    torch.testing.assert_close(early["stage2"], feats["stage2"])
    torch.testing.assert_close(one["stage3.block1"], everything["stage3.block1"])
    with pytest.raises(ValueError, match="unknown feature 'stage5'"):
        model.forward_features(x, up_to="stage5")


def test_time_first_input_and_any_multiple_of_16():
    model = create_model("sdt_v3_t", num_classes=7, T=2).eval()
    with torch.no_grad():
        assert model(torch.randn(3, 1, 3, 64, 96)).shape == (3, 1, 7)  # T from the input
        assert model(torch.randn(1, 3, 48, 32)).shape == (2, 1, 7)  # T from the config
        assert model.forward_features(torch.randn(1, 3, 48, 32))["stage4"].shape == (2, 1, 128, 3, 2)


@pytest.mark.parametrize(
    "shape, match",
    [
        ((1, 3, 100, 224), r"multiples of 16, got 100x224; resize or pad to e.g. 112x224"),
        ((1, 1, 224, 224), r"expected \[B, 3, H, W\] or \[T, B, 3, H, W\]"),
        ((3, 224, 224), r"expected \[B, 3, H, W\]"),
    ],
)
def test_wrong_input_is_a_clear_error(shape, match):
    model = create_model("sdt_v3_t")
    with pytest.raises(ValueError, match=match):
        model(torch.randn(*shape))


def test_options_and_their_errors():
    with pytest.raises(ValueError, match="unknown mixer 'mlp'"):
        create_model("sdt_v3_t", mixer="mlp")
    with pytest.raises(ValueError, match="unknown mixer_layout"):
        create_model("sdt_v3_t", mixer="srb", mixer_layout="rows")
    with pytest.raises(TypeError, match="unknown option.*'mixers'.*mixer_layout"):
        create_model("sdt_v3_t", mixers="srb")
    model = create_model("sdt_v3_t", mixer="mlpixer", mixer_ratio=6, mixer_drop=0.1, mixer_layout="pointwise")
    mixer = model.stage2.blocks[1].channel_mixer
    assert mixer.layout == "pointwise" and mixer.drop.p == 0.1 and mixer.fc1.conv.out_channels == 6 * 48
    released = create_model("sdt_v3_t", mixer="srb").stage1.blocks[0].channel_mixer
    assert released.layout == "raster" and released.drop.p == 0.2


def test_integer_spikes_have_D_4_levels():
    model = create_model("sdt_v3_t").eval()
    seen = {}
    model.stage2.blocks[0].token_mixer.sn1.register_forward_hook(lambda m, i, o: seen.setdefault("mid", o))
    model.head_sn.register_forward_hook(lambda m, i, o: seen.setdefault("head", o))
    with torch.no_grad():
        model(torch.randn(2, 3, 64, 64) * 3)
    assert set(seen["mid"].unique().tolist()) <= {0.0, 0.25, 0.5, 0.75, 1.0}
    assert set(seen["head"].unique().tolist()) <= {0.0, 1.0, 2.0, 3.0, 4.0}  # the head spike has norm 1


def test_sdsa_equals_the_released_token_layout_computation():
    """Q (K^T V) on channel-first heads == the released (Q K^T) V on [N, d] tokens, heads split channel-major."""
    torch.manual_seed(2)
    dim, heads, T, B, H, W = 16, 8, 2, 3, 4, 5
    attn = MetaSpikeDrivenSelfAttention(dim, nn.Identity, heads=heads, v_ratio=4).double().eval()
    x = torch.randn(T, B, dim, H, W, dtype=torch.float64)
    N = H * W

    def tokens(t, width):  # [T,B,width,H,W] -> [T,B,heads,N,width/heads]
        return t.flatten(3).transpose(-1, -2).reshape(T, B, N, heads, width // heads).permute(0, 1, 3, 2, 4)

    q, k, v = tokens(attn.q(x), dim), tokens(attn.k(x), dim), tokens(attn.v(x), 4 * dim)
    a = (q @ k.transpose(-1, -2)) @ v * (2 * (dim // heads) ** -0.5)
    a = a.transpose(3, 4).reshape(T, B, 4 * dim, H, W)
    torch.testing.assert_close(attn(x), attn.proj(a))


def test_registry_lists_sizes_and_says_mixers_are_options(capsys):
    assert list_models("sdt_v3_*") == ["sdt_v3_l", "sdt_v3_m", "sdt_v3_s", "sdt_v3_t"]
    assert [v["mixer"] for v in model_info("sdt_v3_s").variants] == ["conv", "mlpixer", "srb"]
    assert main(["models", "sdt_v3_*"]) == 0
    out = capsys.readouterr().out
    assert "sdt_v3_s" in out and "5.106M" in out and "mixer=srb" in out and "17.772M" in out


def _area90(grad_map: torch.Tensor) -> float:
    v = grad_map.flatten().sort(descending=True).values
    return (int((v.cumsum(0) / v.sum() < 0.9).sum()) + 1) / v.numel()


@pytest.mark.slow
def test_srb_raster_erf_is_near_global_after_one_block():
    """docs/papers.md#mlpixer-and-srb-raster-reshape empirical check, reduced: BN calibrated on noise, eval mode, ERF of the ConvBlock1_1 centre."""
    areas = {}
    for mixer in ("conv", "mlpixer", "srb"):
        model = create_model("sdt_v3_s", mixer=mixer)
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.momentum = None  # cumulative average
        with torch.no_grad():
            for _ in range(6):
                model.forward_features(torch.randn(16, 3, 224, 224), up_to="stage1.block0")
        model.eval()
        x = torch.randn(16, 3, 224, 224, requires_grad=True)
        f = model.forward_features(x, up_to="stage1.block0")["stage1.block0"]
        f[..., 56, 56].sum().backward()
        areas[mixer] = _area90(x.grad.abs().mean((0, 1)))
    assert 0.004 <= areas["conv"] <= 0.012  # reference 0.008
    assert areas["mlpixer"] <= areas["conv"]  # reference 0.006
    assert areas["srb"] > 10 * areas["conv"]  # reference 0.147


@needs_json
def test_convert_writes_our_key_names_with_provenance(tmp_path, capsys):
    keys = _released("sterf_sdtv3_s_splash")["keys"]
    state = _distinct_state(keys)
    src, dst = tmp_path / "released.pth", tmp_path / "converted.pt"
    torch.save({"model": {f"module.{k}": v for k, v in state.items()}, "epoch": 299}, src)
    assert main(["convert", str(src), str(dst), "--model", "sdt_v3_s", "--set", "mixer=srb"]) == 0
    assert "complete" in capsys.readouterr().out
    saved = torch.load(dst, weights_only=True)
    meta = saved["spikescope"]
    assert meta["model"] == "sdt_v3_s" and meta["overrides"] == {"mixer": "srb"}
    assert meta["missing"] == meta["unexpected"] == meta["mismatched"] == []
    import hashlib
    assert meta["source_sha256"] == hashlib.sha256(src.read_bytes()).hexdigest()
    model = create_model("sdt_v3_s", mixer="srb")
    assert list(saved["model"]) == list(model.state_dict())  # our names, our order: no remap needed to load
    for key, value in state.items():
        assert torch.equal(saved["model"][remap_sdt_v3_keys(key)], value), key
    loaded = create_model("sdt_v3_s", mixer="srb", pretrained=str(dst))
    assert torch.equal(loaded.stage2.blocks[1].channel_mixer.fc2.conv.weight, state["ConvBlock2_2.0.conv2.weight"])


@needs_json
def test_convert_refuses_a_file_of_another_model_and_writes_nothing(tmp_path, capsys):
    state = _distinct_state(_released("sterf_sdtv3_s_splash")["keys"])
    src, dst = tmp_path / "released.pth", tmp_path / "converted.pt"
    torch.save(state, src)
    assert main(["convert", str(src), str(dst), "--model", "sdt_v3_s"]) == 2  # conv mixer: SRB keys do not fit
    err = capsys.readouterr().err
    assert "does not fit" in err and "unexpected" in err and "--allow-partial writes" in err
    assert not dst.exists()
    assert main(["convert", str(src), str(dst), "--model", "sdt_v3_s", "--allow-partial"]) == 0
    meta = torch.load(dst, weights_only=True)["spikescope"]
    assert meta["unexpected"] and meta["missing"]
    assert "PARTIAL" in capsys.readouterr().out


def test_convert_errors_name_the_problem(tmp_path, capsys):
    src = tmp_path / "x.pth"
    src.write_bytes(b"not a checkpoint")
    assert main(["convert", str(src), str(tmp_path / "o.pt"), "--model", "sdt_v3_s"]) == 2
    err = capsys.readouterr().err
    assert "cannot read" in err and "--allow-partial" not in err  # the hint is for misfits only
    assert main(["convert", str(src), str(tmp_path / "o.pt"), "--model", "no_such_net"]) == 2
    assert "unknown model" in capsys.readouterr().err
    assert main(["convert", str(src), str(tmp_path / "o.pt"), "--model", "sdt_v3_s", "--set", "mixr=srb"]) == 2
    assert "mixr" in capsys.readouterr().err
    assert main(["convert", str(src), str(src), "--model", "sdt_v3_s"]) == 2
    assert "overwrite its source" in capsys.readouterr().err


def test_converted_file_warns_when_loaded_into_a_model_with_other_options(tmp_path):
    import warnings

    src, dst = tmp_path / "ours.pth", tmp_path / "converted.pt"
    torch.save(create_model("sdt_v3_t", mixer="srb").state_dict(), src)
    assert main(["convert", str(src), str(dst), "--model", "sdt_v3_t", "--set", "mixer=srb"]) == 0
    assert torch.load(dst, weights_only=True)["spikescope"]["config"]["spike_max"] == 4
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # same options: silent
        report = load_checkpoint(create_model("sdt_v3_t", mixer="srb"), dst)
    assert report.complete and report.options == []
    other = create_model("sdt_v3_t", mixer="srb", spike_max=2)  # same tensors, other integer-spike range
    with pytest.warns(UserWarning, match=r"spike_max=4 \(model: 2\)"):
        report = load_checkpoint(other, dst)
    assert report.options == [("spike_max", 4, 2)] and "option spike_max: file 4 vs model 2" in str(report)

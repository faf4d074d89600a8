"""Meta-SpikeFormer (SDT-v2): published sizes, LIF settings, RepConv, forward/backward, mixers as options."""
import pytest
import torch
import torch.nn.functional as F

from spikescope.layers.meta_attention import RepConv
from spikescope.models import count_parameters, create_model, list_models, load_checkpoint, model_info
from spikescope.neurons import LIF, IntegerSpike, Sigmoid


@pytest.mark.parametrize(
    "name, exact, published",
    [
        ("meta_spikeformer_15m", 15_112_208, 15.1),
        ("meta_spikeformer_31m", 31_333_864, 31.3),
        ("meta_spikeformer_55m", 55_350_248, 55.4),
    ],
)
def test_parameter_counts_match_published_sizes(name, exact, published):
    n = count_parameters(name)
    assert n == exact
    assert abs(n / 1e6 - published) <= 0.05


def test_neurons_are_the_released_lif():
    model = create_model("meta_spikeformer_15m")
    lifs = [m for m in model.modules() if isinstance(m, LIF)]
    assert lifs and not any(isinstance(m, IntegerSpike) for m in model.modules())
    for m in lifs:
        p = m.params
        assert m.tau == 2.0 and p.v_reset == 0.0 and p.detach_reset and p.surrogate == Sigmoid(4.0)
    attn = model.stage3.blocks[0].attn
    assert attn.sn_attn.params.v_threshold == 0.5 and attn.sn_q.params.v_threshold == 1.0
    assert attn.scale == 0.125 and attn.v.conv.pw_out.out_channels == 256  # V has width C in v2
    assert model.stage3.blocks[0].token_mixer is None  # v2 transformer blocks: attention + MLP only
    assert model.stage1.blocks[0].token_mixer.dw.bn is None  # v2 SepConv: no BN after the depthwise conv
    assert model.cfg.T == 4 and model_info("meta_spikeformer_15m").timesteps == 4


def test_repconv_is_a_padded_conv_chain_in_eval():
    torch.manual_seed(3)
    rep = RepConv(4, 6).double()
    with torch.no_grad():  # non-trivial BN statistics
        for bn in (rep.pad_bn, rep.bn):
            bn.running_mean.uniform_(-1, 1)
            bn.running_var.uniform_(0.5, 2)
            bn.weight.uniform_(0.5, 2)
            bn.bias.uniform_(-1, 1)
    rep.eval()
    x = torch.randn(2, 3, 4, 5, 7, dtype=torch.float64)
    y = rep(x)
    assert y.shape == (2, 3, 6, 5, 7)
    # eval BN-and-pad == BN applied to the zero-padded 1x1 output
    z = F.batch_norm(
        F.pad(rep.pw_in(x.flatten(0, 1)), [1, 1, 1, 1]),
        rep.pad_bn.running_mean, rep.pad_bn.running_var, rep.pad_bn.weight, rep.pad_bn.bias, eps=rep.pad_bn.eps,
    )
    ref = rep.bn(rep.pw_out(rep.dw(z))).unflatten(0, (2, 3))
    torch.testing.assert_close(y, ref)


@pytest.mark.parametrize("mixer", ["conv", "mlpixer", "srb"])
def test_forward_backward_224_T1(mixer):
    # 224^2, not a tiny input: with few tokens the untrained attention emits no spike, and train-mode BN on the
    # constant projection input scales gradients by 1/sqrt(eps) per BN (three in RepConv + BN) until they overflow.
    model = create_model("meta_spikeformer_15m", mixer=mixer, T=1, num_classes=10)
    x = torch.randn(1, 3, 224, 224, requires_grad=True)
    y = model(x)
    assert y.shape == (1, 1, 10)
    y.sum().backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    if mixer != "conv":
        assert model.stage1.blocks[0].channel_mixer.layout == "raster"


def test_features_and_time_first_input():
    model = create_model("meta_spikeformer_15m", num_classes=5).eval()
    with torch.no_grad():
        feats = model.forward_features(torch.randn(3, 2, 3, 32, 48), blocks=True)
    assert feats["stage1.block0"].shape == (3, 2, 32, 16, 24)
    assert feats["stage4"].shape == (3, 2, 360, 2, 3)
    with pytest.raises(ValueError, match="multiples of 16"):
        model(torch.randn(1, 3, 40, 48))


@pytest.mark.slow
@pytest.mark.parametrize("mixer", ["conv", "mlpixer", "srb"])
def test_forward_backward_224_T4(mixer):
    model = create_model("meta_spikeformer_15m", mixer=mixer)
    x = torch.randn(1, 3, 224, 224, requires_grad=True)
    y = model(x)
    assert y.shape == (4, 1, 1000)
    y.sum().backward()
    assert torch.isfinite(x.grad).all()


def test_listing():
    assert list_models("meta_spikeformer_*") == [
        "meta_spikeformer_15m",
        "meta_spikeformer_31m",
        "meta_spikeformer_55m",
    ]
    assert [v["mixer"] for v in model_info("meta_spikeformer_31m").variants] == ["conv", "mlpixer", "srb"]


def _bn(prefix: str, c: int) -> dict:
    return {f"{prefix}.weight": [c], f"{prefix}.bias": [c], f"{prefix}.running_mean": [c],
            f"{prefix}.running_var": [c], f"{prefix}.num_batches_tracked": []}


def _released_v2_keys(dims: tuple[int, int, int, int], classes: int = 1000) -> dict:
    """Key names and shapes of the authors' Meta-SpikeFormer classifier, written from its module structure."""
    c0, c1, c2, c3 = dims
    keys = {}

    def down(name, c_in, c_out, k):
        keys.update({f"{name}.encode_conv.weight": [c_out, c_in, k, k], f"{name}.encode_conv.bias": [c_out]})
        keys.update(_bn(f"{name}.encode_bn", c_out))

    def conv_block(name, c):
        keys[f"{name}.Conv.pwconv1.weight"] = [2 * c, c, 1, 1]
        keys.update(_bn(f"{name}.Conv.bn1", 2 * c))
        keys[f"{name}.Conv.dwconv.weight"] = [2 * c, 1, 7, 7]
        keys[f"{name}.Conv.pwconv2.weight"] = [c, 2 * c, 1, 1]
        keys.update(_bn(f"{name}.Conv.bn2", c))
        keys[f"{name}.conv1.weight"] = [4 * c, c, 3, 3]
        keys.update(_bn(f"{name}.bn1", 4 * c))
        keys[f"{name}.conv2.weight"] = [c, 4 * c, 3, 3]
        keys.update(_bn(f"{name}.bn2", c))

    def block(name, c):
        for p in ("q", "k", "v", "proj"):
            r = f"{name}.attn.{p}_conv"
            keys[f"{r}.0.body.0.weight"] = [c, c, 1, 1]
            keys.update(_bn(f"{r}.0.body.1.bn", c))
            keys[f"{r}.0.body.2.0.weight"] = [c, 1, 3, 3]
            keys[f"{r}.0.body.2.1.weight"] = [c, c, 1, 1]
            keys.update(_bn(f"{r}.0.body.2.2", c))
            keys.update(_bn(f"{r}.1", c))
        keys.update({f"{name}.mlp.fc1_conv.weight": [4 * c, c, 1], f"{name}.mlp.fc1_conv.bias": [4 * c]})
        keys.update(_bn(f"{name}.mlp.fc1_bn", 4 * c))
        keys.update({f"{name}.mlp.fc2_conv.weight": [c, 4 * c, 1], f"{name}.mlp.fc2_conv.bias": [c]})
        keys.update(_bn(f"{name}.mlp.fc2_bn", c))

    down("downsample1_1", 3, c0 // 2, 7)
    conv_block("ConvBlock1_1.0", c0 // 2)
    down("downsample1_2", c0 // 2, c0, 3)
    conv_block("ConvBlock1_2.0", c0)
    down("downsample2", c0, c1, 3)
    conv_block("ConvBlock2_1.0", c1)
    conv_block("ConvBlock2_2.0", c1)
    down("downsample3", c1, c2, 3)
    for j in range(6):
        block(f"block3.{j}", c2)
    down("downsample4", c2, c3, 3)
    for j in range(2):
        block(f"block4.{j}", c3)
    keys.update({"head.weight": [classes, c3], "head.bias": [classes]})
    return keys


def test_released_v2_state_dict_loads_every_tensor_in_place(tmp_path):
    keys = _released_v2_keys((64, 128, 256, 360))
    n_params = sum(torch.Size(s).numel() for k, s in keys.items() if not k.endswith(("running_mean", "running_var", "num_batches_tracked")))
    assert n_params == count_parameters("meta_spikeformer_15m")
    state = {k: torch.full(s, i + 1, dtype=torch.int64 if k.endswith("tracked") else torch.float32)
             for i, (k, s) in enumerate(keys.items())}
    path = tmp_path / "v2.pth"
    torch.save({"model": state}, path)
    model = create_model("meta_spikeformer_15m")
    assert load_checkpoint(model, path).complete
    ours = model.state_dict()
    assert sorted(int(v.flatten()[0]) if v.numel() else int(v) for v in ours.values()) == list(range(1, len(keys) + 1))
    spots = {
        "downsample1_1.encode_bn.bias": model.stage1.downsamples[0].bn.bias,
        "ConvBlock1_2.0.Conv.bn1.running_mean": model.stage1.blocks[1].token_mixer.pw1.bn.running_mean,
        "ConvBlock2_2.0.Conv.dwconv.weight": model.stage2.blocks[1].token_mixer.dw.conv.weight,
        "ConvBlock2_1.0.conv2.weight": model.stage2.blocks[0].channel_mixer.fc2.conv.weight,
        "block3.4.attn.k_conv.0.body.0.weight": model.stage3.blocks[4].attn.k.conv.pw_in.weight,
        "block3.0.attn.q_conv.0.body.1.bn.running_var": model.stage3.blocks[0].attn.q.conv.pad_bn.running_var,
        "block4.1.attn.proj_conv.0.body.2.0.weight": model.stage4.blocks[1].attn.proj.conv.dw.weight,
        "block4.1.attn.v_conv.0.body.2.1.weight": model.stage4.blocks[1].attn.v.conv.pw_out.weight,
        "block3.5.attn.v_conv.0.body.2.2.bias": model.stage3.blocks[5].attn.v.conv.bn.bias,
        "block3.2.attn.proj_conv.1.weight": model.stage3.blocks[2].attn.proj.bn.weight,
        "block4.0.mlp.fc1_bn.weight": model.stage4.blocks[0].mlp.fc1.bn.weight,
        "head.bias": model.head.bias,
    }
    for key, tensor in spots.items():
        assert torch.equal(tensor, state[key]), key


def test_head_reads_the_real_mean_unless_head_spike():
    assert isinstance(create_model("meta_spikeformer_15m").head_sn, torch.nn.Identity)
    assert isinstance(create_model("meta_spikeformer_15m", head_spike=True).head_sn, LIF)

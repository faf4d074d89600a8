"""Meta-SpikeFormer (SDT-v2): published sizes, LIF settings, RepConv, forward/backward, mixers as options."""
import pytest
import torch
import torch.nn.functional as F

from spikescope.layers.meta_attention import RepConv
from spikescope.models import count_parameters, create_model, list_models, model_info
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
    assert "mixer=conv|mlpixer|srb" in model_info("meta_spikeformer_31m").family

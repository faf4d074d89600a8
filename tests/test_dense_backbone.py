"""Dense backbone taps (shapes at odd and detection sizes, presets, parameter counts) and neck/head spikes."""
import pytest
import torch

from spikescope.dense import (
    DET_TAPS,
    SEG_TAPS,
    DenseBackbone,
    DenseSpike,
    backbone_options,
    build_backbone,
    fpn_spike,
    head_spike,
)
from spikescope.models import create_model


def _shapes(feats):
    return {k: tuple(v.shape) for k, v in feats.items()}


def test_seg_and_det_taps_on_an_odd_input():
    torch.manual_seed(0)
    bb = build_backbone("sdt_v3_s", SEG_TAPS).eval()
    x = torch.randn(1, 3, 171, 227)
    with torch.no_grad():
        seg = bb(x)
    assert list(seg) == list(SEG_TAPS)
    assert _shapes(seg) == {"stage1.block0": (1, 1, 16, 86, 114), "stage1": (1, 1, 32, 43, 57),
                            "stage2": (1, 1, 64, 22, 29), "stage4": (1, 1, 192, 11, 15)}
    assert bb.channels == [16, 32, 64, 192] and bb.strides == [2, 4, 8, 16]
    det = DenseBackbone(bb.body, DET_TAPS)
    with torch.no_grad():
        out = det(x)
    assert _shapes(out) == {"stage1": (1, 1, 32, 43, 57), "stage2": (1, 1, 64, 22, 29),
                            "stage3": (1, 1, 128, 11, 15), "stage4": (1, 1, 192, 11, 15)}
    assert torch.equal(out["stage4"], seg["stage4"])  # same network, same values
    assert det.channels == [32, 64, 128, 192] and det.strides == [4, 8, 16, 16]


def test_det_taps_at_800x1216_on_the_meta_device():
    with torch.device("meta"):
        bb = build_backbone("sdt_v3_l", DET_TAPS, mixer="srb")
        out = bb(torch.empty(2, 3, 800, 1216))
    assert _shapes(out) == {"stage1": (1, 2, 64, 200, 304), "stage2": (1, 2, 128, 100, 152),
                            "stage3": (1, 2, 256, 50, 76), "stage4": (1, 2, 360, 50, 76)}


def test_meta_spikeformer_taps_and_classifier_still_checks_size():
    with torch.device("meta"):
        out = DenseBackbone(create_model("meta_spikeformer_15m", num_classes=0), SEG_TAPS)(torch.empty(1, 3, 65, 97))
    assert tuple(out["stage1.block0"].shape[-2:]) == (33, 49) and tuple(out["stage4"].shape[-2:]) == (5, 7)
    with pytest.raises(ValueError, match="multiples of 16"):
        create_model("sdt_v3_t").forward(torch.zeros(1, 3, 65, 97))


@pytest.mark.parametrize(("mixer", "size", "count"), [
    ("conv", "s", 4_912_608), ("mlpixer", "s", 4_304_640), ("mlpixer6", "s", 5_037_568), ("srb", "s", 4_608_096),
    ("conv", "l", 18_626_504), ("mlpixer6", "l", 18_972_904), ("srb", "l", 17_411_272),
])
def test_backbone_parameter_counts(mixer, size, count):
    with torch.device("meta"):
        bb = build_backbone(f"sdt_v3_{size}", DET_TAPS, mixer=mixer)
    assert sum(p.numel() for p in bb.parameters()) == count


def test_mlpixer6_preset_and_conflicts():
    assert backbone_options("mlpixer6") == {"mixer": "mlpixer", "mixer_ratio": 6, "mlp_ratio": 6}
    assert backbone_options("srb", mixer_ratio=4) == {"mixer": "srb", "mixer_ratio": 4}
    with pytest.raises(ValueError, match="mlp_ratio=6"):
        backbone_options("mlpixer6", mlp_ratio=4)


def test_bad_taps_and_models():
    with pytest.raises(ValueError, match="unknown taps"):
        build_backbone("sdt_v3_t", ["stage5"])
    with pytest.raises(TypeError, match="SDT-v3"):
        DenseBackbone(torch.nn.Linear(2, 2))


def test_dense_spikes_values_eval_clamp_and_ste():
    x = torch.tensor([[-1.0, 0.5, 1.5, 2.5, 3.5, 3.6, 5.0]], requires_grad=True)
    train_vals = [0.0, 0.0, 2.0, 2.0, 4.0, 4.0, 4.0]  # half-to-even, integers (norm 1)
    for sn in (head_spike(), fpn_spike(released=True), fpn_spike(released=False)):
        assert sn(x).tolist() == [train_vals]
    assert fpn_spike(released=True).eval()(x).tolist() == [[0.0, 0.0, 1.0, 1.0, 1.0, 1.0, 1.0]]
    assert fpn_spike(released=False).eval()(x).tolist() == [train_vals]
    assert head_spike().eval()(x).tolist() == [train_vals]
    head_spike()(x).sum().backward()
    assert x.grad.tolist() == [[0.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.0]]
    with pytest.raises(ValueError, match="eval_max_value"):
        DenseSpike(4, eval_max_value=5)

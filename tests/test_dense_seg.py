"""ADE20K Semantic FPN: parameter counts, mIoU values, transforms, loss normalisation, released key names."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

import spikescope.dense.seg  # noqa: F401  (registers semfpn_sdt_v3_*)
from spikescope.data.ade20k import ADE20K_CLASSES, reduce_zero_label
from spikescope.data.seg_transforms import (
    cat_max_ratio_crop,
    crop_box,
    hsv_to_rgb_u8,
    photometric_distortion,
    random_resize_scale,
    rescale_size,
    resize_pair,
    rgb_to_hsv_u8,
)
from spikescope.dense.seg import SegMetric, seg_loss
from spikescope.dense.seg.model import remap_semfpn_key
from spikescope.models import count_parameters, create_model, load_checkpoint

E6 = {"mixer": "mlpixer", "mixer_ratio": 6, "mlp_ratio": 6}


@pytest.mark.parametrize("size,options,expected", [
    ("s", {}, 6_597_750),
    ("s", {"mixer": "srb"}, 6_293_238),
    ("s", {"mixer": "mlpixer"}, 5_989_782),
    ("s", E6, 6_722_710),
    ("s", {"neck_channels": 256}, 11_526_774),
    ("s", {"mixer": "srb", "neck_channels": 256}, 11_222_262),
    ("m", {"mixer": "srb"}, 10_796_470),
    ("l", {}, 20_347_486),
    ("l", {"mixer": "srb"}, 19_132_254),
    ("l", {"mixer": "srb", "neck_channels": 256}, 24_097_118),
    ("l", {"neck_channels": 256}, 25_312_350),
    ("l", {"mixer": "mlpixer"}, 17_919_134),
    ("l", E6, 20_693_886),
])
def test_parameter_counts_equal_the_released_models(size, options, expected):
    assert count_parameters(f"semfpn_sdt_v3_{size}", **options) == expected


def test_neck_and_head_counts():
    with torch.device("meta"):
        m = create_model("semfpn_sdt_v3_s")
        big = create_model("semfpn_sdt_v3_l", neck_channels=256)
    n = lambda mod: sum(p.numel() for p in mod.parameters())  # noqa: E731
    assert (n(m.neck), n(m.head)) == (631_808, 1_053_334)
    assert (n(big.neck), n(big.head)) == (2_514_944, 4_170_902)


# --- mIoU ---
def _reduced(raw):
    return torch.from_numpy(reduce_zero_label(np.array(raw, dtype=np.uint8)).astype(np.int64))


def test_miou_hand_made_values():
    gt = _reduced([[1, 2], [3, 0]])
    assert gt.tolist() == [[0, 1], [2, 255]]
    pred = torch.tensor([[0, 1], [1, 2]])
    metric = SegMetric(3)
    metric.update(pred, gt)
    res = metric.compute()
    assert res["IoU"] == [100.0, 50.0, 0.0]
    assert (res["mIoU"], res["aAcc"], res["mAcc"]) == (50.0, 66.67, 66.67)
    four = SegMetric(4)
    four.update(pred, gt)
    res4 = four.compute()
    assert math.isnan(res4["IoU"][3]) and math.isnan(res4["Acc"][3])
    assert res4["mIoU"] == 50.0


def test_miou_sums_over_images_not_a_mean_of_image_scores():
    metric = SegMetric(2)
    metric.update(torch.tensor([0, 0, 0, 1]), torch.tensor([0, 0, 0, 0]))  # class 0: I 3, U 4
    metric.update(torch.tensor([1]), torch.tensor([1]))  # class 1: I 1, U 2 overall
    res = metric.compute()
    assert res["IoU"] == [75.0, 50.0]  # per-image means would give class 1: (0 + 100) / 2
    assert res["aAcc"] == 80.0
    with pytest.raises(ValueError, match="outside 0..1"):
        metric.update(torch.tensor([0]), torch.tensor([7]))


# --- transforms ---
def test_keep_ratio_sizes():
    assert rescale_size(640, 480, (853, 512)) == (683, 512)
    assert rescale_size(683, 512, (1333, 800)) == (1067, 800)
    assert rescale_size(640, 480, (2048, 512)) == (683, 512)  # the ADE20K test size
    img = np.zeros((480, 640, 3), np.uint8)
    out, lab = resize_pair(img, np.zeros((480, 640), np.uint8), (2048, 512))
    assert out.shape == (512, 683, 3) and lab.shape == (512, 683)


def test_random_resize_scale_range():
    rng = np.random.default_rng(0)
    for _ in range(50):
        long, short = random_resize_scale(rng, (2048, 512), (0.5, 2.0))
        assert 1024 <= long <= 4096 and 256 <= short <= 1024 and long == pytest.approx(4 * short, abs=4)


def test_crop_box_keeps_small_sides_whole():
    rng = np.random.default_rng(1)
    for _ in range(20):
        y0, y1, x0, x1 = crop_box(300, 700, (512, 512), rng)
        assert (y0, y1) == (0, 300) and x1 - x0 == 512 and 0 <= x0 <= 188


def _replay(label, crop, seed, n):
    rng = np.random.default_rng(seed)
    return [crop_box(*label.shape, crop, rng) for _ in range(n)]


def _accepted(label, box, ratio=0.75):
    y0, y1, x0, x1 = box
    vals, cnt = np.unique(label[y0:y1, x0:x1], return_counts=True)
    cnt = cnt[vals != 255]
    return len(cnt) > 1 and cnt.max() / cnt.sum() < ratio


def test_cat_max_ratio_retry_with_a_fixed_seed():
    label = np.zeros((100, 100), np.uint8)
    label[:25, :25] = 1  # only crops near the top-left corner hold enough of class 1
    box = cat_max_ratio_crop(label, (30, 30), np.random.default_rng(3))
    draws = _replay(label, (30, 30), 3, 11)
    first_ok = next(i for i, b in enumerate(draws) if _accepted(label, b))
    assert box == draws[first_ok] and first_ok > 0  # at least one rejected draw before
    single = np.full((100, 100), 5, np.uint8)  # never acceptable: the 11th draw is used unchecked
    assert cat_max_ratio_crop(single, (30, 30), np.random.default_rng(3)) == _replay(single, (30, 30), 3, 11)[-1]
    assert cat_max_ratio_crop(single, (30, 30), np.random.default_rng(3), cat_max_ratio=1.0) == draws[0]


def test_opencv_hsv_convention():
    rgb = np.array([[[255, 0, 0], [0, 255, 0], [0, 0, 255], [128, 64, 32], [10, 10, 10], [0, 0, 0]]], np.uint8)
    hsv = rgb_to_hsv_u8(rgb)
    assert hsv[0].tolist() == [[0, 255, 255], [60, 255, 255], [120, 255, 255], [10, 191, 128], [0, 0, 10],
                               [0, 0, 0]]
    assert np.array_equal(hsv_to_rgb_u8(hsv)[0, :3], rgb[0, :3])
    img = np.random.default_rng(0).integers(0, 256, (40, 40, 3)).astype(np.uint8)
    assert np.abs(hsv_to_rgb_u8(rgb_to_hsv_u8(img)).astype(int) - img).max() <= 4  # 8-bit hue quantisation


def test_photometric_distortion_brightness_range():
    img = np.full((8, 8, 3), 100, np.uint8)
    shifts = set()
    for seed in range(60):
        out = photometric_distortion(img, np.random.default_rng(seed))
        assert out.dtype == np.uint8 and out.shape == img.shape
        if seed < 60:
            shifts.add(int(out[0, 0, 0]) - 100)
    assert len(shifts) > 5  # the draws differ between seeds
    grey = photometric_distortion(img, np.random.default_rng(5))
    assert np.array_equal(grey, photometric_distortion(img, np.random.default_rng(5)))  # seeded


def test_photometric_steps_stay_in_their_ranges():
    class Fixed:  # every coin says "apply", uniform draws at the bounds
        def __init__(self, pick):
            self.pick = pick

        def integers(self, lo, hi=None):
            return 1 if hi is None else (lo if self.pick == "low" else hi - 1)

        def uniform(self, lo, hi):
            return lo if self.pick == "low" else hi

    img = np.full((2, 2, 3), 100, np.uint8)
    # brightness -32 then contrast x0.5 last (grey: saturation and hue change nothing)
    assert photometric_distortion(img, Fixed("low")).max() == int((100 - 32) * 0.5)
    assert photometric_distortion(img, Fixed("high")).max() == int(np.clip((100 + 32) * 1.5, 0, 255))


def test_reduce_zero_label():
    raw = np.array([0, 1, 150, 255], np.uint8)
    assert reduce_zero_label(raw).tolist() == [255, 0, 149, 255]
    assert len(ADE20K_CLASSES) == 150 and ADE20K_CLASSES[:3] == ("wall", "building", "sky")


# --- loss ---
def test_loss_released_divides_by_all_pixels():
    K = 5
    logits = torch.zeros(1, K, 2, 2)  # uniform: CE = log K per pixel
    labels = torch.tensor([[[0, 1], [255, 255]]])
    assert seg_loss(logits, labels).item() == pytest.approx(2 * math.log(K) / 4)
    assert seg_loss(logits, labels, avg_non_ignore=True).item() == pytest.approx(math.log(K))
    up = seg_loss(torch.zeros(1, K, 1, 1), torch.zeros(1, 4, 4, dtype=torch.long))  # logits resized to the label
    assert up.item() == pytest.approx(math.log(K))


# --- model ---
def test_forward_shape_and_quirk_flags():
    torch.manual_seed(0)
    m = create_model("semfpn_sdt_v3_s", num_classes=7).eval()
    assert m(torch.randn(1, 3, 64, 80)).shape == (1, 7, 32, 40)
    assert m.neck.lateral[0].spike.norm == 1.0 and m.neck.lateral[0].spike.max_value == 4
    assert isinstance(m.head.dropout, torch.nn.Identity)
    clean = create_model("semfpn_sdt_v3_s", spike_norm=4.0, head_dropout=0.1, avg_non_ignore=True)
    assert clean.head.dropout.p == 0.1 and clean.head.classifier_spike.norm == 4.0
    assert {id(p) for p in m.head_parameters()} == {id(p) for p in m.head.parameters()}
    with pytest.raises(TypeError, match="unknown option"):
        create_model("semfpn_sdt_v3_s", neck_channel=3)


def test_neck_spikes_are_integers_zero_to_four():
    m = create_model("semfpn_sdt_v3_s").eval()
    seen = []
    m.neck.output[0].spike.register_forward_hook(lambda mod, i, o: seen.append(o))
    with torch.no_grad():
        m(torch.randn(1, 3, 32, 32) * 3)
    vals = torch.unique(seen[0])
    assert set(vals.tolist()) <= {0.0, 1.0, 2.0, 3.0, 4.0} and vals.max() > 1


OFFICIAL_KEYS = Path(__file__).resolve().parent / "data" / "official_state_dicts" / "sterf_sdtv3_s.json"


def _official_seg_state(model) -> dict:
    """A released-layout state dict: ``backbone.<released classification keys>`` (no head), mmseg neck/head names."""
    keys = json.loads(OFFICIAL_KEYS.read_text())["keys"]
    state = {f"backbone.{k}": torch.full(shape, float(i)) for i, (k, shape) in enumerate(keys.items())
             if not k.startswith("head.")}
    ours = model.state_dict()
    bn = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
    for i in range(4):
        for mm, we in (("lateral_convs", "lateral"), ("fpn_convs", "output")):
            for p in ("weight", "bias"):
                state[f"neck.{mm}.{i}.0.{p}"] = torch.randn_like(ours[f"neck.{we}.{i}.conv.{p}"])
            for p in bn:
                state[f"neck.{mm}.{i}.1.{p}"] = ours[f"neck.{we}.{i}.bn.{p}"].clone() + 1
        for j in range((1, 1, 2, 3)[i]):
            state[f"decode_head.scale_heads.{i}.{2 * j}.1.weight"] = torch.randn_like(
                ours[f"head.branches.{i}.{j}.conv.weight"])
            for p in bn:
                state[f"decode_head.scale_heads.{i}.{2 * j}.2.{p}"] = ours[f"head.branches.{i}.{j}.bn.{p}"].clone() + 1
    for p in ("weight", "bias"):
        state[f"decode_head.conv_seg.{p}"] = torch.randn_like(ours[f"head.classifier.{p}"])
    for k, v in state.items():
        if k.endswith("num_batches_tracked"):
            state[k] = v.long()
    return state


@pytest.mark.skipif(not OFFICIAL_KEYS.is_file(), reason="released key list not found")
def test_released_checkpoint_keys_load_strictly(tmp_path):
    model = create_model("semfpn_sdt_v3_s")
    state = _official_seg_state(model)
    path = tmp_path / "iter_160000.pth"
    torch.save({"meta": {}, "state_dict": state}, path)
    report = load_checkpoint(model, path)
    assert report.complete and len(report.loaded) == len(model.state_dict())
    ours = model.state_dict()
    assert torch.equal(ours["head.branches.3.2.conv.weight"], state["decode_head.scale_heads.3.4.1.weight"])
    assert torch.equal(ours["neck.lateral.2.bn.running_var"], state["neck.lateral_convs.2.1.running_var"])
    assert torch.equal(ours["head.classifier.bias"], state["decode_head.conv_seg.bias"])
    assert remap_semfpn_key("head.classifier.bias") == "head.classifier.bias"


def test_odd_input_taps_and_logits():
    m = create_model("semfpn_sdt_v3_s", embed_dims=(16, 32, 64, 64), neck_channels=16, num_classes=5).eval()
    with torch.no_grad():
        taps = m.backbone(torch.randn(1, 3, 171, 227))
        shapes = [tuple(t.shape) for t in taps.values()]
        assert shapes == [(1, 1, 8, 86, 114), (1, 1, 16, 43, 57), (1, 1, 32, 22, 29), (1, 1, 64, 11, 15)]
        assert m(torch.randn(1, 3, 171, 227)).shape == (1, 5, 86, 114)


def test_mlpixer6_preset_is_ratio_6_everywhere():
    assert count_parameters("semfpn_sdt_v3_s", mixer="mlpixer6") == 6_722_710
    assert count_parameters("semfpn_sdt_v3_l", mixer="mlpixer6") == 20_693_886


def test_predict_writes_label_map_and_overlay(tmp_path):
    from PIL import Image

    from spikescope.dense.seg.predict import colorize, palette, predict_images, segment_image

    m = create_model("semfpn_sdt_v3_s", embed_dims=(16, 32, 64, 64), neck_channels=16, num_classes=3).eval()
    img = np.random.default_rng(0).integers(0, 255, (50, 70, 3)).astype(np.uint8)
    Image.fromarray(img).save(tmp_path / "a.jpg")
    files = predict_images(m, [tmp_path / "a.jpg"], tmp_path / "out", ["wall", "building", "sky"],
                           test_scale=(64, 48), progress=False)
    assert [f.name for f in files] == ["a_labels.png", "a_overlay.png"]
    labels = np.asarray(Image.open(files[0]))
    pred = segment_image(m, np.asarray(Image.open(tmp_path / "a.jpg").convert("RGB")), (64, 48))
    assert labels.shape == (50, 70, 3) and np.array_equal(labels, colorize(pred, 3))
    overlay = Image.open(files[1])
    assert overlay.size[0] > 70 and overlay.size[1] >= 50  # image + legend panel
    assert len({tuple(c) for c in palette(150)}) == 150
    assert colorize(np.array([[255]]), 3).tolist() == [[[0, 0, 0]]]

"""Spiking Mask R-CNN: parameter counts, anchors, RoI levels, assigner, losses, coder, masks, transforms, keys."""
import json
import math
from pathlib import Path

import pytest
import torch
from torchvision.models.detection._utils import Matcher
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.image_list import ImageList
from torchvision.ops import roi_align
from torchvision.ops.poolers import LevelMapper

import spikescope.dense  # noqa: F401  (registers maskrcnn_*)
from spikescope.dense.det.anchors import base_anchors, grid_anchors, valid_flags
from spikescope.dense.det.boxes import DeltaCoder, max_iou_assign
from spikescope.dense.det.data import DetTransforms, keep_ratio_size
from spikescope.dense.det.model import PARAMS
from spikescope.dense.det.roi_heads import RoIPooler, paste_masks, roi_levels
from spikescope.dense.det.rpn import RPN
from spikescope.models import count_parameters, create_model, load_checkpoint

OFFICIAL = Path(__file__).resolve().parent / "data" / "official_state_dicts"


@pytest.mark.parametrize(("size", "mixer"), sorted(PARAMS))
def test_detector_parameter_counts(size, mixer):
    assert count_parameters(f"maskrcnn_sdt_v3_{size}", mixer=mixer) == PARAMS[(size, mixer)]


def test_paper_rows_and_head_counts():
    assert PARAMS[("s", "conv")] == 24_924_368 and PARAMS[("s", "srb")] == 24_619_856
    assert PARAMS[("l", "conv")] == 38_738_616 and PARAMS[("l", "srb")] == 37_523_384
    with torch.device("meta"):
        m = create_model("maskrcnn_sdt_v3_s")
    n = {k: sum(p.numel() for p in getattr(m, k).parameters()) for k in ("neck", "rpn")}
    assert n == {"neck": 2_467_840, "rpn": 593_935}
    assert sum(p.numel() for p in m.roi_head.bbox_head.parameters()) == 14_306_705
    assert sum(p.numel() for p in m.roi_head.mask_head.parameters()) == 2_643_280


def test_fpn_eval_clamp_follows_the_layout():
    with torch.device("meta"):
        official, corrected = create_model("maskrcnn_sdt_v3_s"), create_model("maskrcnn_sdt_v3_s", layout="corrected")
        fixed = create_model("maskrcnn_sdt_v3_s", fpn_eval_clamp=False)
    assert {c.sn.eval_max_value for c in official.neck.fpn_convs} == {1}
    assert {c.sn.eval_max_value for c in corrected.neck.lateral_convs} == {None}
    assert {c.sn.eval_max_value for c in fixed.neck.fpn_convs} == {None}
    assert official.rpn.head.sn.eval_max_value is None  # heads are consistent
    with pytest.raises(ValueError, match="layout"):
        create_model("maskrcnn_sdt_v3_s", layout="mmdet")


def test_base_anchors_unrounded():
    r = 2 ** 0.5
    expect = [[-16 * r, -8 * r, 16 * r, 8 * r], [-16, -16, 16, 16], [-8 * r, -16 * r, 8 * r, 16 * r]]
    assert torch.allclose(base_anchors(32), torch.tensor(expect), atol=1e-4)
    a = grid_anchors(32, 4, (2, 3))
    assert a.shape == (18, 4)
    assert torch.allclose(a[3 * 4 + 1], torch.tensor([-16.0 + 4, -16 + 4, 16 + 4, 16 + 4]))  # row 1, col 1, ratio 1


def test_p5_anchor_grid_steps_and_valid_positions_at_800x1216():
    grid = (50, 76)  # P5 of an 800 x 1216 input is a stride-16 map
    official = grid_anchors(256, 32, grid).view(50, 76, 3, 4)
    corrected = grid_anchors(256, 16, grid).view(50, 76, 3, 4)
    assert official[0, 1, 1, 0] - official[0, 0, 1, 0] == 32 and corrected[0, 1, 1, 0] - corrected[0, 0, 1, 0] == 16
    valid = valid_flags(grid, 32, (800, 1216)).view(50, 76, 3)
    assert valid.sum() == 25 * 38 * 3 and valid[:25, :38].all()
    # torchvision's generator infers the true strides (4, 8, 16, 16, 32) from the same maps
    gen = AnchorGenerator(((32,), (64,), (128,), (256,), (512,)), ((0.5, 1.0, 2.0),) * 5)
    sizes = [(200, 304), (100, 152), (50, 76), (50, 76), (25, 38)]
    feats = [torch.zeros(1, 1, *s) for s in sizes]
    anchors = gen(ImageList(torch.zeros(1, 3, 800, 1216), [(800, 1216)]), feats)[0]
    start, steps = 0, []
    for h, w in sizes:
        lvl = anchors[start:start + h * w * 3].view(h, w, 3, 4)
        steps.append(int(lvl[0, 1, 0, 0] - lvl[0, 0, 0, 0]))
        start += h * w * 3
    assert steps == [4, 8, 16, 16, 32]


def test_roi_levels_and_pooler_scale():
    sides = torch.tensor([50.0, 120, 230, 460, 794])
    boxes = torch.stack([torch.zeros(5), torch.zeros(5), sides, sides], 1)
    assert roi_levels(boxes).tolist() == [0, 1, 2, 3, 3]
    # torchvision's pooler infers scales 1/4, 1/8, 1/16, 1/16 -> levels 2..4 (its P5 is never read)
    assert LevelMapper(2, 4)([boxes]).tolist() == [0, 1, 2, 2, 2]
    feats = [torch.randn(1, 1, 4, s, s) for s in (64, 32, 16, 16)]
    rois = torch.tensor([[0.0, 10, 20, 470, 500]])
    out = RoIPooler(7, "official")(feats, rois)
    ref = roi_align(feats[3][0], rois, 7, 1 / 32, sampling_ratio=0, aligned=True)
    assert torch.allclose(out[0], ref)
    out_c = RoIPooler(7, "corrected")(feats, rois)
    assert torch.allclose(out_c[0], roi_align(feats[3][0], rois, 7, 1 / 16, sampling_ratio=0, aligned=True))


def test_assigner_min_pos_iou_and_ties():
    gt = torch.tensor([[0.0, 0, 10, 10]])
    boxes = torch.tensor([[0.0, 0, 20, 20], [30.0, 30, 40, 40]])  # IoU 0.25 and 0
    a = max_iou_assign(gt, boxes, 0.7, 0.3, 0.3)
    assert a.tolist() == [0, 0]  # no positive: best IoU 0.25 < 0.3
    iou = torch.tensor([[0.25, 0.0]])
    assert (Matcher(0.7, 0.3, allow_low_quality_matches=True)(iou) == 0).tolist() == [True, False]
    ties = torch.tensor([[0.0, 0, 10, 20], [0.0, 0, 20, 10], [5.0, 5, 15, 15]])
    gt2 = torch.tensor([[0.0, 0, 10, 10]])
    assert max_iou_assign(gt2, ties, 0.7, 0.3, 0.3).tolist() == [1, 1, 0]  # both IoU 0.5 anchors positive
    valid = torch.tensor([False, True, True])
    assert max_iou_assign(gt2, ties, 0.7, 0.3, 0.3, valid).tolist() == [-1, 1, 0]
    assert max_iou_assign(torch.zeros(0, 4), ties, 0.7, 0.3, 0.3).tolist() == [0, 0, 0]


def test_rpn_loss_normalisation():
    rpn = RPN(8)
    grids = [(2, 2)]
    anchors = rpn.anchors(grids, None)  # 12 anchors of size 32 at stride 4
    gt = [anchors[0][4:5].clone()]  # exactly one anchor
    scores = torch.zeros(1, 12)
    deltas = torch.ones(1, 12, 4)
    rpn.strides = (4,)
    losses = rpn.loss(anchors, grids, scores, deltas, [(32, 32)], gt)
    assigned = max_iou_assign(gt[0], anchors[0], 0.7, 0.3, 0.3)
    n_pos, n = int((assigned > 0).sum()), int((assigned >= 0).sum())
    assert losses["loss_rpn_cls"].item() == pytest.approx(math.log(2))
    assert losses["loss_rpn_bbox"].item() == pytest.approx(4 * n_pos / n)


def test_box_coder_round_trip_with_stds():
    coder = DeltaCoder((0.1, 0.1, 0.2, 0.2))
    ref = torch.tensor([[10.0, 20, 50, 80], [0, 0, 4, 4]])
    boxes = torch.tensor([[12.0, 18, 60, 70], [1, -1, 3, 6]])
    d = coder.encode(boxes, ref)
    assert d[0, 0].item() == pytest.approx(((36 - 30) / 40) / 0.1)
    assert torch.allclose(coder.decode(d, ref), boxes, atol=1e-5)
    huge = coder.decode(torch.tensor([[0.0, 0, 100, -100]]), ref[:1])
    assert huge[0, 2] - huge[0, 0] == pytest.approx(40 * 1000 / 16, rel=1e-4)
    assert huge[0, 3] - huge[0, 1] == pytest.approx(60 * 16 / 1000, rel=1e-4)


def test_mask_paste_and_targets():
    box = torch.tensor([[2.3, 1.6, 7.4, 5.2]])
    m = paste_masks(torch.ones(1, 28, 28), box, (8, 10))[0]
    ys, xs = torch.meshgrid(torch.arange(8) + 0.5, torch.arange(10) + 0.5, indexing="ij")
    inside = (xs >= 2.3) & (xs <= 7.4) & (ys >= 1.6) & (ys <= 5.2)
    assert torch.equal(m, inside)
    # mask targets: RoI-aligned bitmap binarised at 0.5 (a half-covered RoI row becomes 0 or 1, never 0.5)
    bitmap = torch.zeros(1, 1, 20, 20)
    bitmap[..., :, :10] = 1
    t = roi_align(bitmap, torch.tensor([[0.0, 0, 0, 20, 20]]), 28, 1.0, sampling_ratio=0, aligned=True)[0, 0]
    assert ((t >= 0.5).float()[0] == (torch.arange(28) < 14).float()).all()


def test_keep_ratio_sizes_and_crop_range():
    assert keep_ratio_size(640, 480, (853, 512)) == (683, 512)
    assert keep_ratio_size(683, 512, (1333, 800)) == (1067, 800)
    torch.manual_seed(0)
    t = DetTransforms(train=True, multiscale=[800], crop_scales=[600], long_max=1333)
    img = torch.zeros(3, 480, 640)
    boxes = torch.tensor([[10.0, 10, 600, 400]])
    for _ in range(8):
        out, b, lab, m, _ = t(img, boxes, torch.tensor([2]), torch.ones(1, 480, 640, dtype=torch.bool))
        assert max(out.shape[-2:]) <= 1333 and min(out.shape[-2:]) == 800
        assert len(b) == len(lab) == len(m) and m.shape[-2:] == out.shape[-2:]
    test = DetTransforms(train=False)
    out, _, _, _, scale = test(img, boxes, torch.tensor([2]), torch.ones(1, 480, 640, dtype=torch.bool))
    assert tuple(out.shape[-2:]) == (800, 1067) and scale == pytest.approx((1067 / 640, 800 / 480))


def _official_head_key(key: str) -> str:
    rules = [("neck.lateral_convs.{}.layer.", "neck.lateral_convs.{}.1.module.conv."),
             ("neck.fpn_convs.{}.layer.", "neck.fpn_convs.{}.1.module.conv."),
             ("roi_head.mask_head.convs.{}.layer.", "roi_head.mask_head.convs.{}.1.module.conv."),
             ("roi_head.bbox_head.shared_fcs.{}.layer.", "roi_head.bbox_head.shared_fcs.{}.1.module.")]
    for ours, theirs in rules:
        for i in range(4):
            if key.startswith(ours.format(i)):
                return theirs.format(i) + key[len(ours.format(i)):]
    for ours, theirs in [("rpn.head.rpn_conv.layer.", "rpn_head.rpn_conv.1.module."),
                         ("rpn.head.rpn_cls.", "rpn_head.rpn_cls.1.module."),
                         ("rpn.head.rpn_reg.", "rpn_head.rpn_reg.1.module."),
                         ("roi_head.mask_head.upsample.layer.", "roi_head.mask_head.upsample.1.module."),
                         ("roi_head.mask_head.conv_logits.layer.", "roi_head.mask_head.conv_logits.1.module.")]:
        if key.startswith(ours):
            return theirs + key[len(ours):]
    return key


@pytest.mark.skipif(not OFFICIAL.is_dir(), reason="released key lists not found")
def test_released_detector_key_names_load_strictly(tmp_path):
    model = create_model("maskrcnn_sdt_v3_s")
    backbone = json.loads((OFFICIAL / "sterf_sdtv3_s.json").read_text())["keys"]
    state = {f"backbone.{k}": torch.zeros(v) for k, v in backbone.items() if not k.startswith("head.")}
    ours = model.state_dict()
    state.update({_official_head_key(k): torch.zeros_like(v) for k, v in ours.items() if not k.startswith("backbone.")})
    assert any(".1.module.conv." in k for k in state) and not any(k.startswith("rpn.") for k in state)
    torch.save({"state_dict": state}, tmp_path / "det.pth")
    report = load_checkpoint(model, tmp_path / "det.pth")
    assert report.complete


@pytest.mark.parametrize("path", sorted(Path(__file__).resolve().parents[1].glob("configs/coco_maskrcnn_*.yaml")))
def test_coco_recipes_load_and_count(path):
    from spikescope.train import load_config

    cfg = load_config(path)
    assert cfg.task == "detection" and cfg.schedule.milestones == [8, 11] and cfg.train.epochs == 12
    size = cfg.model.name[-1]
    assert count_parameters(cfg.model.name, **cfg.model.options) == PARAMS[(size, cfg.model.options["mixer"])]


def test_tiny_detector_losses_with_an_all_negative_image_and_predictions():
    torch.manual_seed(0)
    model = create_model("maskrcnn_sdt_v3_s", backbone="sdt_v3_t", embed_dims=(16, 32, 64, 64), neck_channels=32,
                         fc=64, num_classes=3, rpn_proposals=50, roi_batch=32)
    images = torch.randn(2, 3, 64, 96)
    masks = torch.zeros(1, 64, 90, dtype=torch.bool)
    masks[0, 10:40, 20:60] = True
    targets = [{"boxes": torch.tensor([[20.0, 10, 60, 40]]), "labels": torch.tensor([2]), "masks": masks},
               {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.long),
                "masks": torch.zeros(0, 50, 70, dtype=torch.bool)}]
    losses = model.train()(images, [(64, 90), (50, 70)], targets)
    assert set(losses) == {"loss_rpn_cls", "loss_rpn_bbox", "loss_cls", "loss_bbox", "loss_mask"}
    assert all(torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()
    assert model.roi_head.mask_head.conv_logits.layer.weight.grad is not None
    empty = [targets[1], targets[1]]
    zero = model(images, [(64, 90), (50, 70)], empty)
    assert zero["loss_mask"].item() == 0 and zero["loss_bbox"].item() == 0 and zero["loss_rpn_bbox"].item() == 0
    with torch.no_grad():
        dets = model.eval()(images, [(64, 90), (50, 70)])
    assert len(dets) == 2
    for d, (h, w) in zip(dets, [(64, 90), (50, 70)]):
        assert d["boxes"].shape[1] == 4 and d["mask_probs"].shape[1:] == (28, 28) and len(d["boxes"]) <= 100
        assert (d["boxes"][:, 2] <= w).all() and (d["boxes"][:, 3] <= h).all() and (d["scores"] > 0.05).all()

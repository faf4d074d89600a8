"""The paper's ANN controls (timm, random init, small input): layouts inferred, maps peak at the stimulus."""
import json

import numpy as np
import pytest
import torch

from spikescope.cli import main
from spikescope.erf import spatial_erf
from spikescope.erf.runner import build_model, paper_erf_layers, parse_model_spec
from spikescope.models.timm_controls import ActQuant, build_timm

SIZE = 64


def _peak_at_stimulus(result, layer):
    """The map's peak lies in the input patch under the stimulated output pixel, widened by half a stride."""
    m = result.maps[layer]
    _, _, h, w = result.meta["layer_shapes"][layer]
    cy, cx = result.meta["centre"][layer]
    py, px = np.unravel_index(m.argmax(), m.shape)
    sy, sx = SIZE // h, SIZE // w
    assert cy * sy - sy // 2 <= py < (cy + 1) * sy + sy // 2, (layer, py, cy, sy)
    assert cx * sx - sx // 2 <= px < (cx + 1) * sx + sx // 2, (layer, px, cx, sx)


CASES = {
    "vit_tiny_patch16_224": ({"img_size": SIZE}, {"blocks.0": "BNC:4x4+1", "blocks.11": "BNC:4x4+1"}, "sum"),
    "swin_tiny_patch4_window7_224": ({"img_size": SIZE}, {"layers.1": "BHWC", "layers.0.blocks.1.mlp": "BNC:16x16"},
                                     "sum"),
    "pvt_v2_b0": ({}, {"stages.0.blocks.0": "BNC:16x16", "stages.1": "BCHW"}, "channel:0"),
    "poolformerv2_s12": ({}, {"stages.1": "BCHW", "stages.1.blocks.0.norm2": "BCHW"}, "sum"),
}


@pytest.mark.parametrize("name", list(CASES))
def test_timm_controls_centred_maps(name):
    kw, layouts, stimulus = CASES[name]
    torch.manual_seed(0)
    model = build_timm(name, **kw)
    layers = list(layouts)
    r = spatial_erf(model, "noise", layers, n_samples=3, input_size=(3, SIZE, SIZE), n_boot=0, progress=False,
                    stimulus=stimulus if name != "pvt_v2_b0" else "sum")
    for layer, want in layouts.items():
        assert r.meta["layouts"][layer]["layout"] == want
        if name == "pvt_v2_b0" and layer == "stages.1":  # its LayerNorm output sums to 0 over the channels
            assert any("stages.1" in w for w in r.meta["warnings"]) and r.maps[layer].max() < 1e-3
            continue
        assert r.maps[layer].max() > 0
        _peak_at_stimulus(r, layer)
    if name == "pvt_v2_b0":
        one = spatial_erf(model, "noise", "stages.1", n_samples=3, input_size=(3, SIZE, SIZE), n_boot=0,
                          progress=False, stimulus="channel:0")
        _peak_at_stimulus(one, "stages.1")


def test_swin_windows_are_read_back_in_image_order():
    """Stage 0 of Swin-T at 64x64: 16x16 tokens of 4x4 pixels, windows of 7 (tokens 0-6, 7-13, 14-15 + padding).

    Block 0 (no shift): the centre token (8, 8) attends within tokens 7..13, so its map covers pixels 28..55 exactly.
    Block 1 (shift 3): after the shift the centre shares a window with tokens 3..9, whose block-0 inputs span
    tokens 0..13: pixels 0..55, with mass left of pixel 28 that an unshifted reading would not have.
    """
    torch.manual_seed(0)
    model = build_timm("swin_tiny_patch4_window7_224", img_size=SIZE)
    layers = ["layers.0.blocks.0.attn.proj", "layers.0.blocks.1.attn.proj"]
    r = spatial_erf(model, "noise", layers, n_samples=2, input_size=(3, SIZE, SIZE), n_boot=0, progress=False)
    assert r.meta["layouts"][layers[0]] == {"layout": "windows:16x16/7", "source": "timm"}
    assert r.meta["layouts"][layers[1]] == {"layout": "windows:16x16/7/3", "source": "timm"}
    m0, m1 = r.maps[layers[0]], r.maps[layers[1]]
    inside = np.zeros_like(m0, dtype=bool)
    inside[28:56, 28:56] = True
    assert m0[inside].min() > 0 and m0[~inside].max() == 0
    assert m1[56:].max() == 0 and m1[:, 56:].max() == 0
    assert m1[:28, :28].sum() > 0.01 * m1.sum()


def test_relu_and_quantised_vit_controls():
    spec = parse_model_spec("timm:vit_tiny_patch16_224:act_layer=relu,act_bits=4,weight_bits=4")
    assert spec.name == "timm:vit_tiny_patch16_224" and spec.overrides["act_layer"] == "relu"
    model, size, T, weights = build_model(spec, input_size=(3, SIZE, SIZE))
    assert type(model.blocks[0].mlp.act).__name__ == "ReLU" and (size, T) == ((3, SIZE, SIZE), 1)
    quants = [m for m in model.modules() if isinstance(m, ActQuant)]
    assert len(quants) == 12 * 4 and all(float(q.step) > 0 for q in quants) and "48 activation quantiser" in weights
    fc2 = model.blocks[0].mlp.fc2.act_quant  # after a ReLU: never negative, so unsigned levels 0..15
    assert bool(model.blocks[0].attn.qkv.act_quant.signed) and not bool(fc2.signed) and fc2.levels() == (0, 15)
    assert len(torch.unique(model.blocks[0].attn.qkv.weight)) <= 16  # 4-bit weights
    x = torch.randn(8, 192) * 3
    q = quants[0](x)
    step = float(quants[0].step)
    levels = torch.round(q / step)
    assert torch.allclose(levels * step, q) and levels.min() >= -8 and levels.max() <= 7  # 4-bit signed
    x.requires_grad_(True)
    quants[0](x).sum().backward()
    inside = (x.detach() >= -8 * step) & (x.detach() <= 7 * step)
    assert torch.equal(x.grad, inside.float())  # straight through inside the range, 0 outside
    assert paper_erf_layers("timm:vit_tiny_patch16_224") == ["blocks.*.attn.proj"]


@pytest.mark.slow
def test_cli_compares_timm_controls(tmp_path, capsys):
    assert main(["erf", "compare", "timm:vit_tiny_patch16_224", "timm:pvt_v2_b0", "--layers", "paper", "--n", "2",
                 "--size", str(SIZE), "--boot", "0", "--out", str(tmp_path)]) == 0
    meta = json.loads((tmp_path / "timm:vit_tiny_patch16_224" / "metrics.json").read_text())["meta"]
    assert meta["layers"] == [f"blocks.{i}.attn.proj" for i in range(12)]
    assert meta["weights"].startswith("timm random init (pretrained=False)")
    assert (tmp_path / "compare.png").exists()
    out = capsys.readouterr().out
    assert "[BNC:8x8, timm]" in out  # PVT-v2 stage-1 attention tokens on their grid

"""Channel mixers: the raster-layout index facts of docs/papers.md#mlpixer-and-srb-raster-reshape, the point-wise layout, defaults and errors."""
import pytest
import torch
from torch import nn

from spikescope.layers.mixers import MLPixer, build_mixer, raster_linear


def _support(kind: str, C: int, H: int, layout: str = "raster"):
    """Input elements the centre output (channel 0, pixel (H//2, H//2)) of the linear mixer depends on (autograd)."""
    mixer = build_mixer(kind, C, 4, layout, neuron=nn.Identity).double().eval()
    x = torch.randn(1, 1, C, H, H, dtype=torch.float64, requires_grad=True)
    (g,) = torch.autograd.grad(mixer(x)[0, 0, 0, H // 2, H // 2], x)
    nz = g[0, 0].nonzero()
    channels, rows, cols = (sorted(set(nz[:, i].tolist())) for i in range(3))
    return channels, rows, cols


# (C, H) of the blocks of docs/papers.md#mlpixer-and-srb-raster-reshape: S 1_1, S 1_2, S 2_x, L 1_1, L 2_x
@pytest.mark.parametrize(
    "C, H, rows, cols",
    [
        (16, 112, [56], list(range(48, 64))),  # S block 1_1
        (32, 56, [28], list(range(0, 32))),  # S block 1_2
        (64, 28, [13, 14, 15], list(range(28))),  # S blocks 2_x
        (32, 112, [56], list(range(32, 64))),  # L block 1_1
        (128, 28, list(range(13, 19)), list(range(28))),  # L blocks 2_x
    ],
)
def test_mlpixer_raster_centre_depends_on_one_channel_raster_window(C, H, rows, cols):
    channels, got_rows, got_cols = _support("mlpixer", C, H)
    assert channels == [0]
    assert got_rows == rows
    assert got_cols == cols


def test_mlpixer_raster_window_is_exactly_C_consecutive_pixels():
    # S 1_1: flat index of the centre is 56*112+56 = 6328, window 6328 // 16 = 395 covers [6320, 6336)
    mixer = build_mixer("mlpixer", 16, 4, neuron=nn.Identity).double().eval()
    x = torch.randn(1, 1, 16, 112, 112, dtype=torch.float64, requires_grad=True)
    (g,) = torch.autograd.grad(mixer(x)[0, 0, 0, 56, 56], x)
    assert g.flatten().nonzero().flatten().tolist() == list(range(6320, 6336))


@pytest.mark.parametrize(
    "C, H, rows, n_cols",
    [
        (16, 112, [13, 14, 41, 42, 69, 70, 97, 98], 48),  # S 1_1: 4 band pairs spread over the full height
        (32, 56, [6, 7, 20, 21, 34, 35, 48, 49], 56),  # S 1_2
        (64, 28, [1, 2, 3, 4, 5, 8, 9, 10, 11, 12, 13, 15, 16, 17, 18, 19, 22, 23, 24, 25, 26], 28),  # S 2_x: 21 rows
        (32, 112, [13, 14, 41, 42, 69, 70, 97, 98], 96),  # L 1_1
        (128, 28, list(range(28)), 28),  # L 2_x: all 28 rows
    ],
)
def test_srb_raster_centre_depends_on_all_channels_at_row_bands(C, H, rows, n_cols):
    channels, got_rows, got_cols = _support("srb", C, H)
    assert channels == list(range(C))
    assert got_rows == rows
    assert len(got_cols) == n_cols and got_cols[0] == 0 and got_cols[-1] == H - 1  # spread over the full width


@pytest.mark.parametrize(
    "kind, layout, radius",
    [("conv", "raster", 2), ("mlpixer", "pointwise", 0), ("srb", "pointwise", 1)],
)
def test_local_mixers_have_a_square_all_channel_support(kind, layout, radius):
    C, H = 8, 16
    channels, rows, cols = _support(kind, C, H, layout)
    window = list(range(H // 2 - radius, H // 2 + radius + 1))
    assert channels == list(range(C)) and rows == window and cols == window


def test_raster_mlpixer_matches_an_explicit_window_mlp():
    torch.manual_seed(1)
    C, H, W = 4, 6, 5  # H*W = 30 is not a multiple of C: windows straddle channel boundaries
    mixer = MLPixer(C, 3, nn.Identity, "raster", drop=0.0).double()
    x = torch.randn(2, 3, C, H, W, dtype=torch.float64)
    y = mixer(x)
    w1, w2 = mixer.fc1.weight, mixer.fc2.weight
    for t in range(2):
        for b in range(3):
            flat = x[t, b].flatten()
            expected = torch.cat([w2 @ (w1 @ flat[n * C : (n + 1) * C]) for n in range(H * W)])
            torch.testing.assert_close(y[t, b].flatten(), expected)


def test_raster_linear_is_a_view_of_channel_first_memory():
    lin = nn.Linear(3, 5, bias=False)
    x = torch.randn(2, 1, 3, 4, 4)
    y = raster_linear(x, lin)
    assert y.shape == (2, 1, 5, 4, 4)
    torch.testing.assert_close(y.reshape(2, 1, 16, 5), lin(x.reshape(2, 1, 16, 3)))


def test_pointwise_mlpixer_equals_a_per_pixel_channel_mlp():
    mixer = build_mixer("mlpixer", 6, 4, "pointwise", drop=0.0, neuron=nn.Identity).double().eval()
    x = torch.randn(1, 2, 6, 5, 7, dtype=torch.float64)
    ref = mixer.fc2(mixer.fc1(x))
    torch.testing.assert_close(mixer(x), ref)
    # a pixel's output depends on that pixel only
    x2 = x.clone()
    x2[..., 0, 0] += 1.0
    diff = (mixer(x2) - mixer(x)).abs().sum(2)
    assert diff[..., 0, 0].min() > 0 and diff.flatten(2)[..., 1:].abs().max() == 0


@pytest.mark.parametrize(
    "kind, layout, n_params",
    [
        ("conv", "raster", 2 * 9 * 4 * 8 * 8 + 2 * 32 + 2 * 8),  # 18rC^2 + 2rC + 2C
        ("mlpixer", "raster", 2 * 4 * 8 * 8),  # 2rC^2
        ("mlpixer", "pointwise", 2 * 4 * 8 * 8 + 2 * 32 + 2 * 8),
        ("srb", "raster", 4 * 64 + 9 * 4 * 64 + 2 * 8),  # rC^2 + 9rC^2 + 2C
        ("srb", "pointwise", 4 * 64 + 9 * 4 * 64 + 2 * 32 + 2 * 8),
    ],
)
def test_mixer_parameter_formulas(kind, layout, n_params):
    mixer = build_mixer(kind, 8, 4, layout)
    assert sum(p.numel() for p in mixer.parameters()) == n_params


def test_released_dropout_defaults_and_override():
    assert build_mixer("mlpixer", 8).drop.p == 0.2
    assert build_mixer("srb", 8).drop.p == 0.2
    assert build_mixer("conv", 8).drop.p == 0.0
    assert build_mixer("srb", 8, drop=0.0).drop.p == 0.0


@pytest.mark.parametrize("kind", ["conv", "mlpixer", "srb"])
@pytest.mark.parametrize("layout", ["raster", "pointwise"])
def test_integer_spike_mixers_run_forward_backward(kind, layout):
    mixer = build_mixer(kind, 8, 6 if kind == "mlpixer" else 4, layout)
    x = (torch.rand(1, 2, 8, 12, 12) * 4).requires_grad_()
    y = mixer(x)
    assert y.shape == x.shape
    y.square().sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"kind": "mlp"}, "unknown mixer 'mlp'"),
        ({"kind": "srb", "layout": "raster_reshape"}, "unknown mixer_layout"),
        ({"kind": "srb", "ratio": 0}, "positive integer"),
        ({"kind": "srb", "drop": 1.0}, r"\[0, 1\)"),
    ],
)
def test_build_mixer_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        build_mixer(dim=8, **kwargs)


def test_raster_layout_follows_logical_order_not_memory_format():
    """A channels-last (non-contiguous) input gives the same raster windows as the contiguous tensor."""
    mixer = build_mixer("srb", 8, 4, neuron=nn.Identity).eval()
    x = torch.randn(2, 3, 8, 6, 10)
    strided = x.permute(0, 1, 3, 4, 2).contiguous().permute(0, 1, 4, 2, 3)
    assert not strided.is_contiguous()
    torch.testing.assert_close(mixer(strided), mixer(x))

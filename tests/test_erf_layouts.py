"""Layer-output layouts: every layout of one tensor gives the same map; ambiguous outputs are refused; timm models."""
import numpy as np
import pytest
import torch
from timm.models.swin_transformer import window_partition
from torch import nn

from spikescope.erf import LayoutError, SilentLayerWarning, parse_layout, spatial_erf
from spikescope.erf.layouts import Layout


class _Tap(nn.Module):
    """Passes its input on; a module of no known type, so its layout comes from the shape or the user."""

    def forward(self, x):
        return x


TAPS = ("tbchw", "folded", "nhwc", "tokens_cls", "tbnc", "tbcn", "windows")


class _Twin(nn.Module):
    """One map y [T*B, 6, 12, 12] of a [T, B, 3, 12, 12] input, exposed by a tap in every layout."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv1 = nn.Conv2d(3, 6, 3, padding=1)
        self.conv2 = nn.Conv2d(6, 6, 3, padding=1)
        self.taps = nn.ModuleDict({k: _Tap() for k in TAPS})

    def forward(self, x):
        T, B = x.shape[:2]
        y = self.conv2(torch.tanh(self.conv1(x.flatten(0, 1))))
        t = self.taps
        t["tbchw"](y.unflatten(0, (T, B)))
        t["folded"](y)
        t["nhwc"](y.permute(0, 2, 3, 1))
        tok = y.flatten(2).transpose(1, 2)
        t["tokens_cls"](torch.cat([y.mean((2, 3)).unsqueeze(1), tok], 1))  # a class token, then the 12x12 grid
        t["tbnc"](tok.unflatten(0, (T, B)))
        t["tbcn"](y.flatten(2).unflatten(0, (T, B)))
        shifted = torch.roll(y.permute(0, 2, 3, 1), shifts=(-2, -2), dims=(1, 2))  # Swin's shifted windows
        t["windows"](window_partition(shifted, (4, 4)).flatten(1, 2))  # [T*B*9, 16, 6]
        return y


def test_every_layout_gives_the_same_map():
    model = _Twin()
    layout = {"taps.tokens_cls": "BNC", "taps.tbnc": "TBNC:12x12", "taps.tbcn": "TBCN", "taps.windows": "windows:12x12/4/2"}
    r = spatial_erf(model, "noise", [f"taps.{k}" for k in TAPS], n_samples=3, input_size=(3, 12, 12), timesteps=2,
                    offset=(1, -2), layout=layout, n_boot=0, progress=False)
    ref = r.maps["taps.tbchw"]
    assert ref.max() > 0 and r.meta["centre"]["taps.tbchw"] == [7, 4]
    for k in TAPS:
        np.testing.assert_allclose(r.maps[f"taps.{k}"], ref, rtol=1e-5, atol=1e-7 * ref.max())
        np.testing.assert_allclose(r.per_timestep[f"taps.{k}"], r.per_timestep["taps.tbchw"], rtol=1e-5, atol=1e-9)
    lay = r.meta["layouts"]
    assert lay["taps.nhwc"] == {"layout": "BHWC", "source": "shape"}  # the only reading that fits 12x12
    assert lay["taps.tokens_cls"] == {"layout": "BNC:12x12+1", "source": "given"}  # grid and class token fitted
    assert lay["taps.windows"]["layout"] == "windows:12x12/4/2"


class _Cube(nn.Module):
    """An [B, 8, 8, 8] output on an 8x8 input: channels first and channels last both fit."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.tap = _Tap()

    def forward(self, x):
        return self.tap(self.conv(x))


def test_ambiguous_output_is_refused_naming_layout():
    kw = dict(n_samples=2, input_size=(3, 8, 8), n_boot=0, progress=False)
    cube = _Cube()
    with pytest.raises(LayoutError, match=r"--layout tap=LAYOUT.*BCHW or BHWC"):
        spatial_erf(cube, "noise", "tap", **kw)
    given = spatial_erf(cube, "noise", "tap", layout="BCHW", **kw)
    typed = spatial_erf(cube, "noise", "conv", **kw)  # a Conv2d output is channels first by its type
    assert typed.meta["layouts"]["conv"]["source"] == "module"
    np.testing.assert_allclose(given.maps["tap"], typed.maps["conv"], rtol=1e-6)


def test_token_and_window_errors():
    model = _Twin()
    kw = dict(n_samples=1, input_size=(3, 12, 12), timesteps=2, n_boot=0, progress=False)
    with pytest.raises(LayoutError, match=r"--layout taps.windows=LAYOUT .*LAYOUT being window"):
        spatial_erf(model, "noise", "taps.windows", **kw)
    with pytest.raises(LayoutError, match="tokens"):
        spatial_erf(model, "noise", "taps.tbnc", **kw)
    with pytest.raises(LayoutError, match="needs 150 tokens"):
        spatial_erf(model, "noise", "taps.tokens_cls", layout="BNC:12x12+6", **kw)
    with pytest.raises(LayoutError, match="unknown layout"):
        parse_layout("NCHW")
    assert parse_layout("windows:56x56/7/3") == Layout("windows", (56, 56), 0, 7, 3)
    assert str(parse_layout("bnc:14x14+1")) == "BNC:14x14+1"


class _LayerNormOut(nn.Module):
    """A LayerNorm over the channels of a conv map: its channel sum is 0 for every input."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.norm = nn.LayerNorm(8)

    def forward(self, x):
        return self.norm(self.conv(x).permute(0, 2, 3, 1))


def test_silent_channel_sum_warns_and_channel_stimulus_works():
    kw = dict(n_samples=2, input_size=(3, 10, 10), n_boot=0, progress=False)
    with pytest.warns(SilentLayerWarning, match="channel-sum stimulus has almost no input gradient"):
        r = spatial_erf(_LayerNormOut(), "noise", "norm", **kw)
    assert r.meta["warnings"] and r.meta["layouts"]["norm"] == {"layout": "BHWC", "source": "module"}
    one = spatial_erf(_LayerNormOut(), "noise", "norm", stimulus="channel:0", **kw)
    assert one.maps["norm"].max() > 1e3 * r.maps["norm"].max() and not one.meta["warnings"]
    assert np.unravel_index(one.maps["norm"].argmax(), (10, 10)) in [(a, b) for a in (4, 5, 6) for b in (4, 5, 6)]
    with pytest.raises(ValueError, match="stimulus"):
        spatial_erf(_LayerNormOut(), "noise", "norm", stimulus="chan", **kw)

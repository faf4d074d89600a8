"""Izhikevich and temporal-gradient LIF neurons against hand-integrated references."""
import math

import numpy as np
import pytest
import torch

from spikescope.neurons import ATan, Izhikevich, TemporalGradientLIF


def _izh_reference(current, a, b, c, d, k, vth, reset):
    """Scalar loop over the Izhikevich equations, float64, plain Python."""
    v, u, spikes, vs = 0.0, 0.0, [], []
    for x in current:
        v = v + k * (0.04 * v * v + 5 * v + 140 - u + x)
        u = u + a * (b * v - u)
        s = 1.0 if v >= vth else 0.0
        v = v - vth * s if reset == "soft" else (c if s else v)
        u = u + d * s
        spikes.append(s)
        vs.append(v)
    return np.array(spikes), np.array(vs)


@pytest.mark.parametrize("reset,k,vth,d", [("soft", 0.002, 2.3, 6.0), ("hard", 0.5, 30.0, 8.0)])
def test_izhikevich_matches_hand_integration(reset, k, vth, d):
    current = torch.randn(60, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0)) * 4 + 3
    n = Izhikevich(a=0.02, b=0.2, c=-65.0, d=d, tau_inv=k, v_threshold=vth, reset=reset)
    s, v = n(current, return_state=True)
    for j in range(3):
        rs, rv = _izh_reference(current[:, j].tolist(), 0.02, 0.2, -65.0, d, k, vth, reset)
        np.testing.assert_array_equal(s[:, j].numpy(), rs)
        np.testing.assert_allclose(v[:, j].numpy(), rv, rtol=1e-12, atol=1e-12)
    assert s.sum() > 0  # the traces include spikes and resets


def test_izhikevich_surrogate_gradient_first_step():
    """At t = 0 (v0 = u0 = 0): v1 = k(140 + current), so ds/dI = k · ATan'(v1 - V_th)."""
    k, vth = 0.002, 2.3
    current = torch.tensor([[0.7]], dtype=torch.float64, requires_grad=True)
    s = Izhikevich(tau_inv=k, v_threshold=vth, reset="soft", d=6.0)(current)
    (g,) = torch.autograd.grad(s[0].sum(), current)
    x = k * (140 + 0.7) - vth
    expected = k * (2.0 / 2) / (1 + (math.pi / 2 * 2.0 * x) ** 2)
    assert g.item() == pytest.approx(expected, rel=1e-10)
    assert isinstance(Izhikevich().surrogate, ATan)


def test_izhikevich_errors():
    with pytest.raises(ValueError, match="reset"):
        Izhikevich(reset="none")
    with pytest.raises(ValueError, match="tau_inv"):
        Izhikevich(tau_inv=0)


def test_temporal_gradient_lif_forward_and_gradient_path():
    x = torch.randn(6, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    n = TemporalGradientLIF(tau=2.0, v_threshold=1.0, surrogate="triangle", alpha=2.0)
    s, m = n(x, return_state=True)
    mem = np.zeros(4)
    for t in range(6):  # m <- m/tau + x; s = round(clip(m, 0, 1)); m <- m - s
        mem = mem / 2.0 + x[t].numpy()
        st = np.round(np.clip(mem, 0, 1))
        mem = mem - st
        np.testing.assert_array_equal(s[t].numpy(), st)
        np.testing.assert_allclose(m[t].numpy(), mem, rtol=1e-12)
    # gradient through time: ds[1]/dx[0] = sg(u1) * (1/tau) with the reset detached (triangle surrogate)
    x0 = torch.tensor([[0.2], [0.1]], dtype=torch.float64, requires_grad=True)  # no spike at t = 0
    s = n(x0)
    (g,) = torch.autograd.grad(s[1].sum(), x0)
    u1 = 0.2 / 2 + 0.1
    assert g[0].item() == pytest.approx(2.0 * (1 - u1) / 2.0, rel=1e-10)
    assert g[1].item() == pytest.approx(2.0 * (1 - u1), rel=1e-10)


@pytest.mark.parametrize("mode,expected", [
    ("sigmoid", lambda u, a: 1 / (1 + math.exp(-a * u)) * (1 - 1 / (1 + math.exp(-a * u)))),
    ("arctan", lambda u, a: a / (1 + (math.pi / 2 * a * u) ** 2)),
    ("rectangle", lambda u, a: float(abs(u) <= a)),
])
def test_temporal_gradient_lif_surrogates(mode, expected):
    x = torch.tensor([[0.3]], dtype=torch.float64, requires_grad=True)
    (g,) = torch.autograd.grad(TemporalGradientLIF(surrogate=mode, alpha=2.0)(x).sum(), x)
    assert g.item() == pytest.approx(expected(0.3, 2.0), rel=1e-10)
    with pytest.raises(ValueError, match="triangle"):
        TemporalGradientLIF(surrogate="atan")

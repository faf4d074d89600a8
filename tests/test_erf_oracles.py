"""ERF oracles: numbers the engine must reproduce from first principles (docs/papers.md#temporal-erf-and-the-t-x-t-matrix, §1.5)."""
import math

import numpy as np
import pytest
import torch

from spikescope.erf import spatial_erf, temporal_erf
from spikescope.models import create_model


@pytest.mark.parametrize("L", [10, 20])
def test_linear_uniform_cnn_sigma(L):
    """L uniform 3x3 convs: the ERF is the L-fold box filter, variance 2L/3 per axis (Luo et al. 2016)."""
    model = create_model("toy_convnet", depth=L, activation="none", init="uniform", timesteps=1)
    r = spatial_erf(model, "noise", f"layer{L}", n_samples=2, input_size=(1, 64, 64), n_boot=0, progress=False)
    expected = math.sqrt(2 * L / 3)
    m = r.metrics[f"layer{L}"]
    assert m["sigma_row"]["value"] == pytest.approx(expected, rel=0.05)
    assert m["sigma_col"]["value"] == pytest.approx(expected, rel=0.05)
    # the map itself is the product of two L-fold box filters, normalised to the stimulus mass
    profile = np.array([1.0])
    for _ in range(L):
        profile = np.convolve(profile, np.ones(3) / 3)
    expected_map = np.zeros((64, 64))
    expected_map[32 - L : 33 + L, 32 - L : 33 + L] = np.outer(profile, profile)
    np.testing.assert_allclose(r.maps[f"layer{L}"], expected_map, atol=1e-6)


def _single_lif(tau: float, T: int):
    model = create_model("toy_convnet", depth=1, activation="lif", init="uniform", tau=tau, timesteps=T)
    x = 0.05 * torch.randn(T, 6, 1, 16, 16)  # i.i.d. per timestep, far below threshold
    return model, x


@pytest.mark.parametrize("tau", [2.0, 4.0])
def test_single_lif_membrane_decay(tau):
    """Below threshold dV[t]/dX[t-k] = (1/tau)(1-1/tau)^k; the uniform 3x3 kernel sums to 1 over pixels."""
    T = 8
    model, x = _single_lif(tau, T)
    r = temporal_erf(model, x, "acts.0", output="membrane", n_boot=0, progress=False)
    lam = 1 - 1 / tau
    expected = np.array([[(1 / tau) * lam ** (t - tp) if tp <= t else 0.0 for tp in range(T)] for t in range(T)])
    np.testing.assert_allclose(r.matrix, expected, rtol=1e-5, atol=1e-7)
    assert r.fit["b"] == pytest.approx(lam, abs=1e-3)
    assert r.fit["c"] == pytest.approx(0.0, abs=1e-4)


def test_single_lif_spike_rows_decay_geometrically():
    """Spike output: each row is the surrogate slope at t times the membrane kernel, so M[t,t-k]/M[t,t] = lam^k."""
    T, tau = 6, 2.0
    model, x = _single_lif(tau, T)
    r = temporal_erf(model, x, "layer1", output="spikes", n_boot=0, progress=False)
    assert (model(x) == 0).all(), "the drive must stay below threshold"
    lam = 1 - 1 / tau
    for t in range(T):
        ratios = r.matrix[t, : t + 1][::-1] / r.matrix[t, t]
        np.testing.assert_allclose(ratios, lam ** np.arange(t + 1), rtol=1e-4)
    assert np.triu(r.matrix, 1).max() == 0


def test_feedforward_non_spiking_stack_is_diagonal():
    """Without neuron state, y[t] depends on x[t] only: M is diagonal; a LIF stack is not."""
    for act in ("none", "relu"):
        net = create_model("toy_convnet", depth=3, activation=act, channels=8, init="xavier", timesteps=4)
        r = temporal_erf(net, "noise-iid:4", "layer3", n_samples=8, input_size=(1, 16, 16), n_boot=0,
                         progress=False)
        M = r.matrix
        assert np.all(np.diag(M) > 0), act
        assert np.abs(M - np.diag(np.diag(M))).max() == 0, act
    lif = create_model("toy_convnet", depth=3, activation="lif", init="xavier", timesteps=4)
    r2 = temporal_erf(lif, "noise", "layer3", n_samples=4, input_size=(1, 16, 16), n_boot=0, progress=False)
    assert np.tril(r2.matrix, -1).max() > 0

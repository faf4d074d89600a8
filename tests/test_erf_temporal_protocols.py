"""The authors' temporal-ERF protocols against re-implementations written here from their description."""
import numpy as np
import pytest
import torch

from spikescope.erf import temporal_erf
from spikescope.erf.metrics import describe_fit, longest_increasing_run
from spikescope.erf.temporal import authors_fit, curve_ratio, last_row_curve, terf_curve
from spikescope.models import create_model

T, N, S = 5, 3, 12


def _net(depth=2, activation="lif", **kw):
    torch.manual_seed(0)
    return create_model("toy_convnet", depth=depth, activation=activation, init="xavier", channels=2,
                        timesteps=T, tau=2.0, v_threshold=0.3, **kw).double().eval()


def _inputs():
    return torch.randn(T, N, 1, S, S, generator=torch.Generator().manual_seed(3), dtype=torch.float64)


def test_last_row_equals_compute_temporal_erf_2():
    """compute_temporal_erf_2: membrane v at the centre at t = T-1; T-ERF(tau) = mean_k sum_ij |dv/dx[T-1-tau]|."""
    model, x = _net(), _inputs()
    r = temporal_erf(model, x, "acts.1", output="membrane", protocol="last-row", n_boot=0, progress=False)
    c = S // 2
    ref = np.zeros(T - 1)
    for k in range(N):  # one sample at a time, no engine
        xk = x[:, k:k + 1].clone().requires_grad_(True)
        h = model.acts[0](model.convs[0](xk))
        _, v = model.acts[1](model.convs[1](h), return_state=True)
        (g,) = torch.autograd.grad(v[T - 1, 0, :, c, c].sum(), xk)
        for tau in range(T - 1):
            ref[tau] += g[T - 1 - tau].abs().sum().item() / N
    assert ref.max() > 0
    np.testing.assert_allclose(r.curve["y"], ref, rtol=1e-6, atol=1e-12)
    assert r.meta["authors_function"].endswith("compute_temporal_erf_2")
    # it is row T-1 of our full matrix
    full = temporal_erf(model, x, "acts.1", output="membrane", protocol="matrix", n_boot=0, progress=False)
    np.testing.assert_allclose(last_row_curve(full.matrix), ref, rtol=1e-6, atol=1e-12)
    assert r.matrix.shape == (1, T) and not np.allclose(terf_curve(full.matrix)[:T - 1], ref)


def test_last_delay_maps_equal_compute_st_erf():
    """compute_st_erf: map_n = mean_k |d s_centre[T-1] / dx[T-1-n]| (mean over the input channel)."""
    model, x = _net(), _inputs()
    r = temporal_erf(model, x, "layer2", protocol="matrix", n_boot=0, progress=False)
    c = S // 2
    ref = np.zeros((T, S, S))
    for k in range(N):
        xk = x[:, k:k + 1].clone().requires_grad_(True)
        (g,) = torch.autograd.grad(model(xk)[T - 1, 0, :, c, c].sum(), xk)
        for n in range(T):
            ref[n] += g[T - 1 - n, 0].abs().mean(0).numpy() / N
    assert ref[1].max() > 0
    for n in range(T):
        np.testing.assert_allclose(r.maps[f"last_delay{n}"], ref[n], rtol=1e-6, atol=1e-12)


def test_all_pixel_equals_temporal_erf_compute():
    """temporal_erf_compute.py: ones on every output position at t = T-1; per run |grad| summed over channels,
    divided by its global max, summed over pixels; mean and std over runs."""
    model, x = _net(depth=3), _inputs()
    r = temporal_erf(model, x, "layer3", protocol="all-pixel", n_boot=0, progress=False)
    curves = []
    for k in range(N):
        xk = x[:, k:k + 1].clone().requires_grad_(True)
        (g,) = torch.autograd.grad(model(xk)[T - 1].sum(), xk)
        G = g[:, 0].abs().sum(1).numpy()  # [T, H, W]
        curves.append(G.sum((1, 2)) / G.max())
    curves = np.array(curves)
    assert curves.max() > 0
    np.testing.assert_allclose(r.curve["y"], curves.mean(0), rtol=1e-6)
    np.testing.assert_allclose(r.curve["std"], curves.std(0), rtol=1e-6, atol=1e-12)
    assert r.curve["x_name"].startswith("input") and r.matrix.shape == (1, T)
    assert r.meta["matrix_rows"] == [T - 1]


def test_longest_increasing_run_and_authors_fit():
    assert longest_increasing_run([3, 2, 1, 0]) is None
    assert longest_increasing_run([0, 1, 2, 1, 2, 3, 4]) == (3, 7)  # the longer, later run
    assert longest_increasing_run([0, 1, 2, 0, 1, 2]) == (0, 3)  # ties: the first
    x = np.arange(8.0)
    y = np.r_[5.0, 4.0, 0.3 * 1.4 ** x[:6] + 0.1]  # falls, then rises geometrically from index 2
    f = authors_fit(y)
    assert f["window"] == [2, 8]  # time relative to the run's start, as the script
    assert f["b"] == pytest.approx(1.4, rel=1e-3) and f["a"] == pytest.approx(0.3, rel=1e-2)
    assert f["c"] == pytest.approx(0.1, abs=1e-2) and f["shape"] == "growth"
    assert authors_fit(np.array([3.0, 2.0, 1.0]))["shape"] == "no-fit"


def test_describe_fit_says_what_the_curve_does():
    x = np.arange(8.0)
    assert describe_fit(x, 2 * 0.6**x + 0.1, 2, 0.6, 0.1)["shape"] == "decay"
    rising = -1.23e-5 * 0.182**x + 1.82e-5  # the "decay" that rises
    d = describe_fit(x, rising, -1.23e-5, 0.182, 1.82e-5)
    assert d["shape"] == "rising-decay" and "not a decay" in d["note"]
    noise = np.random.default_rng(0).normal(size=8)
    assert describe_fit(x, noise, 1.0, 0.5, 0.0)["shape"] == "no-fit"
    assert describe_fit(x[:2], x[:2], 1, 0.5, 0)["shape"] == "no-fit"


def test_temporal_fit_shape_reported_and_T1_says_no_fit():
    model = _net()
    r = temporal_erf(model, _inputs(), "layer2", n_boot=5, progress=False)
    assert r.fit["shape"] in ("decay", "growth", "rising-decay", "falling-growth", "flat", "no-fit")
    assert r.fit["r2"] is None or r.fit["r2"] <= 1.0
    m1 = create_model("toy_convnet", depth=1, activation="relu", timesteps=1)
    r1 = temporal_erf(m1, "noise", "layer1", n_samples=2, input_size=(1, 8, 8), n_boot=0, progress=False)
    assert r1.fit["shape"] == "no-fit" and "fewer than 3" in r1.fit["note"]


def test_curve_ratio_refuses_a_near_zero_reference():
    v, note = curve_ratio([1e-9, 0.5, 1.0], 2, 0)
    assert v is None and "≈ 0" in note
    v, note = curve_ratio([0.5, 1.0], 1, 0)
    assert v == 2.0 and note == ""


def test_bad_protocol_names_the_choices():
    with pytest.raises(ValueError, match="all-pixel"):
        temporal_erf(_net(), _inputs(), "layer2", protocol="row")


def test_terf_curve_diagonal_means():
    M = np.tril(np.arange(16.0).reshape(4, 4))
    assert terf_curve(M)[1] == pytest.approx(np.mean([M[1, 0], M[2, 1], M[3, 2]]))

"""ERF metrics against hand computations."""
import math

import numpy as np
import pytest

from spikescope.erf.metrics import area90, area_ratios, bootstrap_metrics, fit_exp_decay, gaussian_fit


def test_area_ratio_of_a_box_and_nan_when_unreached():
    m = np.zeros((31, 31))
    m[13:18, 13:18] = 1.0  # a 5x5 box: the 3x3 square holds 9/25 = 0.36 of it, the 5x5 square all
    sides, ratios = area_ratios(m, (15, 15), log=False)
    np.testing.assert_array_equal(sides[0], [3, 3, 5, 5])
    assert ratios[0, 2] == pytest.approx(25 / 31**2)
    sides, _ = area_ratios(np.ones((64, 64)), (32, 32), log=True)
    assert math.isnan(sides[0, 3])  # 99% of a flat even-sized map never fits in a centred odd square
    assert np.isnan(area_ratios(np.zeros((8, 8)), (4, 4))[0]).all()


def test_area90():
    assert area90(np.ones((10, 10)))[0] == pytest.approx(0.9)
    m = np.zeros((10, 10))
    m[0, 0] = 1
    assert area90(m)[0] == pytest.approx(0.01)


def test_gaussian_fit_recovers_sigma():
    x = np.arange(101)
    prof = 3.0 * np.exp(-((x - 48.3) ** 2) / (2 * 7.5**2))
    sigma, mu, amp = gaussian_fit(prof[None])
    assert sigma[0] == pytest.approx(7.5, rel=1e-3)
    assert mu[0] == pytest.approx(48.3, abs=0.01)
    assert amp[0] == pytest.approx(3.0, rel=1e-3)
    assert np.isnan(gaussian_fit(np.zeros((1, 10)))[0][0])


def test_exp_fit():
    tau = np.arange(8)
    a, b, c, rmse = fit_exp_decay(tau, (1.5 * 0.7**tau + 0.2)[None])
    assert (a[0], b[0], c[0]) == pytest.approx((1.5, 0.7, 0.2), abs=1e-3)
    assert np.isnan(fit_exp_decay(np.arange(2), np.ones((1, 2)))[1][0])


def test_bootstrap_interval_and_silent_fraction():
    rng = np.random.default_rng(0)
    s = rng.random((20, 16, 16))
    s[:5] = 0
    out = bootstrap_metrics(s, (8, 8), n_boot=50)
    assert out["silent_fraction"]["value"] == pytest.approx(0.25)
    lo, hi = out["silent_fraction"]["ci95"]
    assert lo <= 0.25 <= hi
    assert out["area90"]["ci95"] is not None

"""The significance tests of brainenc.inference against closed forms and null data.

Calibration here is of the test itself: fixed, smooth predictions against pure
AR(1) noise, where the null holds by construction. The end-to-end calibration of
the transfer analysis (fitted models, all four directions, transfer maps) is in
test_calibration.py.
"""
from __future__ import annotations

import numpy as np
import pytest
from scipy import linalg, signal
from scipy import stats as scipy_stats

import itertools

from brainenc.inference import (
    NoiseAutocovariance,
    alignment_zscores,
    conjunction_pvalues,
    default_max_lag,
    one_sided_pvalues,
    prediction_zscores,
    stouffer,
)

LEVELS = (0.05, 0.01, 0.001)


def ar1(rng, n, v, rho):
    """Stationary AR(1) columns with unit variance."""
    x = rng.standard_normal((n, v))
    x[0] = rng.standard_normal(v)
    for t in range(1, n):
        x[t] = rho * x[t - 1] + np.sqrt(1 - rho**2) * x[t]
    return x


def smooth_predictions(rng, n, v):
    """Columns of white noise through an HRF-like filter: as autocorrelated as predictions."""
    kernel = scipy_stats.gamma.pdf(np.arange(0, 16.0), 3.0)
    return signal.lfilter(kernel, 1, rng.standard_normal((n + 30, v)), axis=0)[30:]


def binomial_interval(p, n, level=0.99):
    """The central ``level`` interval of the fraction of ``n`` Bernoulli(p) draws."""
    low, high = scipy_stats.binom.interval(level, n, p)
    return low / n, high / n


def stacked(rng, lengths, v, make):
    return np.concatenate([make(rng, n, v) for n in lengths])


def test_default_max_lag_covers_20_seconds():
    assert default_max_lag(2.0) == 10
    assert default_max_lag(1.5) == 14
    assert default_max_lag(0.72) == 28
    assert default_max_lag(30.0) == 1
    with pytest.raises(ValueError):
        default_max_lag(0.0)


def test_dot_variance_equals_the_quadratic_form_of_the_toeplitz_covariance():
    """With the true autocovariance, the null variance is g' Σ g for each run (Σ Toeplitz)."""
    rng = np.random.default_rng(0)
    lengths, max_lag, rho = [50, 70], 6, 0.5
    g = rng.standard_normal((sum(lengths), 4))
    gamma = rho ** np.arange(max_lag + 1)
    noise = NoiseAutocovariance((np.tile(gamma[:, None], (1, 4)),) * 2, tuple(lengths), max_lag)
    expected = np.zeros(4)
    start = 0
    for n in lengths:
        column = np.zeros(n)
        column[:max_lag + 1] = gamma
        sigma = linalg.toeplitz(column)
        part = g[start:start + n] - g[start:start + n].mean(axis=0)
        expected += np.einsum("tv,ts,sv->v", part, sigma, part)
        start += n
    np.testing.assert_allclose(noise.dot_variance(g), expected, rtol=1e-12)


def test_autocovariance_estimate_is_unbiased_for_ar1_noise():
    rng = np.random.default_rng(1)
    rho, n = 0.4, 300
    y = ar1(rng, n, 20000, rho)
    y = y - y.mean(axis=0)          # what the pipeline hands over: centred runs
    gamma = NoiseAutocovariance.estimate(y, [n], 10).gamma[0].mean(axis=1)
    # The plain estimator (divide by n, no mean correction) is low by several percent at lag 0
    # and more at higher lags; the corrected one recovers rho**k.
    np.testing.assert_allclose(gamma, rho ** np.arange(11), atol=0.004)
    plain = np.array([(y[: n - k] * y[k:]).sum(0).mean() / n for k in range(11)])
    assert plain[0] < 1 - 0.006 and plain[3] < rho**3 - 0.005


@pytest.mark.parametrize("rho", [0.0, 0.4, 0.7])
def test_zscores_of_a_fixed_prediction_against_ar1_noise_are_calibrated(rho):
    """The fraction of p < .05, .01, .001 lies in the 99% binomial interval of its level."""
    rng = np.random.default_rng(int(rho * 10) + 2)
    lengths, v = [300, 360], 20000
    pred = stacked(rng, lengths, v, smooth_predictions)
    y = stacked(rng, lengths, v, lambda r, n, m: ar1(r, n, m, rho))
    z = prediction_zscores(pred, y, NoiseAutocovariance.estimate(y, lengths, 10))
    p = one_sided_pvalues(z)
    assert np.all(np.isfinite(p))
    for level in LEVELS:
        low, high = binomial_interval(level, v)
        assert low <= np.mean(p < level) <= high, (rho, level, np.mean(p < level))


def test_ignoring_autocorrelation_would_be_anti_conservative():
    """The same kind of data tested with too few lags: smooth predictions against AR(1) noise
    give too many small p-values, which is what the lags are for."""
    rng = np.random.default_rng(5)
    lengths, v = [300], 20000
    pred = stacked(rng, lengths, v, smooth_predictions)
    y = stacked(rng, lengths, v, lambda r, n, m: ar1(r, n, m, 0.6))
    white = NoiseAutocovariance.estimate(y, lengths, 0)
    assert np.mean(one_sided_pvalues(prediction_zscores(pred, y, white)) < 0.05) > 0.15
    one_lag = NoiseAutocovariance.estimate(y, lengths, 1)
    assert np.mean(one_sided_pvalues(prediction_zscores(pred, y, one_lag)) < 0.05) > 0.065


def test_zscores_grow_with_a_planted_signal_and_carry_its_sign():
    rng = np.random.default_rng(6)
    lengths, v = [300, 300], 200
    pred = stacked(rng, lengths, v, smooth_predictions)
    pred /= pred.std(axis=0)
    noise = stacked(rng, lengths, v, lambda r, n, m: ar1(r, n, m, 0.4))
    y = 0.3 * pred + noise
    z = prediction_zscores(pred, y, NoiseAutocovariance.estimate(y, lengths, 10))
    assert np.median(z) > 3.0
    assert np.median(prediction_zscores(-pred, y, NoiseAutocovariance.estimate(y, lengths, 10))) < -3.0
    # p-values resolve far below any permutation count: FDR over 100 000 voxels works
    assert one_sided_pvalues(z).min() < 1e-6


def test_constant_columns_give_nan():
    rng = np.random.default_rng(7)
    y = ar1(rng, 100, 3, 0.3)
    pred = rng.standard_normal((100, 3))
    y[:, 1] = 0.0
    pred[:, 2] = 5.0
    z = prediction_zscores(pred, y, NoiseAutocovariance.estimate(y, [100], 5))
    assert np.isfinite(z[0]) and np.isnan(z[1]) and np.isnan(z[2])


def test_runs_must_be_longer_than_twice_the_lags():
    y = np.zeros((30, 2))
    with pytest.raises(ValueError, match="longer than"):
        NoiseAutocovariance.estimate(y, [10, 20], 5)
    with pytest.raises(ValueError, match="sum"):
        NoiseAutocovariance.estimate(y, [10, 10], 2)


def test_stouffer_by_hand_and_independent_zscores_stay_standard_normal():
    z = np.array([[1.0, 2.0], [3.0, -1.0]])
    np.testing.assert_allclose(stouffer(z, [1.0, 2.0]), [(1 + 6) / np.sqrt(5), (2 - 2) / np.sqrt(5)])
    np.testing.assert_allclose(stouffer(z), z.sum(axis=0) / np.sqrt(2))
    combined = stouffer(np.random.default_rng(8).standard_normal((4, 200000)), [1, 2, 3, 4])
    assert combined.std() == pytest.approx(1.0, abs=0.01)
    with pytest.raises(ValueError):
        stouffer(z, [1.0, 0.0])


def test_conjunction_is_the_larger_pvalue_and_keeps_nan():
    a = np.array([0.01, 0.2, np.nan])
    b = np.array([0.03, 0.001, 0.5])
    np.testing.assert_array_equal(conjunction_pvalues(a, b)[:2], [0.03, 0.2])
    assert np.isnan(conjunction_pvalues(a, b)[2])


def test_alignment_moments_equal_those_of_every_feature_permutation():
    """The closed-form mean and variance of T over random pairings equal the moments of the
    720 pairings of 6 features, enumerated (the same permutation at every delay)."""
    rng = np.random.default_rng(9)
    n_delays, n_features, n_voxels = 3, 6, 4
    a = rng.standard_normal((n_delays * n_features, n_voxels))
    w = rng.standard_normal((n_delays * n_features, n_voxels))
    a3, w3 = a.reshape(n_delays, n_features, -1), w.reshape(n_delays, n_features, -1)
    values = np.array([np.einsum("dfv,dfv->v", a3[:, list(perm)], w3)
                       for perm in itertools.permutations(range(n_features))])
    observed = np.einsum("dfv,dfv->v", a3, w3)
    expected = (observed - values.mean(axis=0)) / values.std(axis=0)
    np.testing.assert_allclose(alignment_zscores(a, w, n_delays), expected, rtol=1e-10)
    before = a.copy()
    alignment_zscores(a, w, n_delays)
    np.testing.assert_array_equal(a, before)        # the inputs are left as they were


def test_alignment_is_calibrated_when_the_pairing_does_not_matter_and_finds_it_when_it_does():
    """Independent weights and cross products (no correspondence) give uniform p-values;
    cross products that follow the weights' coordinates give large z."""
    rng = np.random.default_rng(10)
    n_delays, n_features, n_voxels = 4, 48, 40000
    latent = rng.standard_normal((n_features, n_voxels))
    delay_gain = np.array([0.4, 1.0, 0.7, 0.3])[:, None, None]
    w = (delay_gain * latent + 0.3 * rng.standard_normal((n_delays, n_features, n_voxels)))
    unrelated = delay_gain * rng.standard_normal((n_features, n_voxels)) + 0.3 * rng.standard_normal(
        (n_delays, n_features, n_voxels))
    p = one_sided_pvalues(alignment_zscores(unrelated.reshape(-1, n_voxels),
                                            w.reshape(-1, n_voxels), n_delays))
    for level in LEVELS:
        low, high = binomial_interval(level, n_voxels)
        assert low <= np.mean(p < level) <= high, (level, np.mean(p < level))
    related = w + unrelated
    z = alignment_zscores(related.reshape(-1, n_voxels), w.reshape(-1, n_voxels), n_delays)
    assert np.median(z) > 3.0


def test_alignment_needs_two_features():
    assert np.isnan(alignment_zscores(np.ones((4, 3)), np.ones((4, 3)), 4)).all()
    with pytest.raises(ValueError, match="multiple"):
        alignment_zscores(np.ones((5, 3)), np.ones((5, 3)), 2)

"""Scores, FDR and summaries against plain references."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
from sklearn.metrics import r2_score as sklearn_r2

from brainenc import stats
from brainenc.results import DirectionSummary


def _noise(shape, seed):
    return np.random.default_rng(seed).normal(size=shape)


# -- scores -------------------------------------------------------------------------


def test_pearson_r_matches_corrcoef_and_constant_columns_are_nan():
    pred = _noise((40, 6), 0)
    y = 0.5 * pred + _noise((40, 6), 1)
    y[:, 2] = 3.7  # constant response
    pred[:, 4] = 0.1  # constant prediction (not exactly representable: rounding residue)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        r = stats.pearson_r(pred, y)
    for v in range(6):
        if v in (2, 4):
            assert np.isnan(r[v])
        else:
            assert r[v] == pytest.approx(np.corrcoef(pred[:, v], y[:, v])[0, 1], abs=1e-12)


def test_pearson_r_one_dimensional_and_shape_mismatch():
    a, b = _noise(30, 2), _noise(30, 3)
    assert stats.pearson_r(a, b)[0] == pytest.approx(np.corrcoef(a, b)[0, 1], abs=1e-12)
    with pytest.raises(ValueError, match="shape"):
        stats.pearson_r(a, b[:20])


def test_r2_matches_sklearn_and_constant_response_is_nan():
    y = _noise((35, 5), 4)
    pred = 0.8 * y + 0.3 * _noise((35, 5), 5)
    pred[:, 1] = -pred[:, 1]  # a bad prediction: negative R2
    y[:, 3] = 2.0
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        r2 = stats.r2_score(pred, y)
    expected = sklearn_r2(y, pred, multioutput="raw_values")
    keep = [0, 1, 2, 4]
    np.testing.assert_allclose(r2[keep], expected[keep], atol=1e-12)
    assert r2[1] < 0
    assert np.isnan(r2[3])


# -- FDR -----------------------------------------------------------------------------


def test_fdr_bh_hand_example_is_step_up_and_ignores_nan():
    # m = 6, q = 0.1: thresholds k*q/m = .0167 .0333 .05 .0667 .0833 .1.
    # Sorted p: .002 ok, .04 > .0333, .045 ok, .06 ok, .3 no, .9 no -> the largest
    # passing rank is 4, so .04 is significant too (step-up).
    p = np.array([0.06, 0.9, 0.002, 0.045, 0.3, 0.04])
    expected = np.array([True, False, True, True, False, True])
    np.testing.assert_array_equal(stats.fdr_bh(p, q=0.1), expected)
    # NaN are not tests: with m = 7 only .002 would pass.
    with_nan = np.append(p, np.nan)
    np.testing.assert_array_equal(stats.fdr_bh(with_nan, q=0.1), np.append(expected, False))


def _reference_bh(p, q):
    m = len(p)
    order = np.argsort(p)
    passing = np.nonzero(p[order] <= q * np.arange(1, m + 1) / m)[0]
    significant = np.zeros(m, dtype=bool)
    if len(passing):
        significant[order[: passing[-1] + 1]] = True
    return significant


def test_fdr_bh_matches_reference_step_up_on_mixed_pvalues():
    rng = np.random.default_rng(5)
    p = np.concatenate([rng.uniform(size=400), rng.uniform(0, 0.002, size=60)])
    for q in (0.01, 0.05, 0.2):
        got = stats.fdr_bh(p, q=q)
        np.testing.assert_array_equal(got, _reference_bh(p, q))
        assert 0 < got.sum() < len(p)


def test_summarize_direction_counts_defined_voxels():
    r = np.array([0.5, 0.1, np.nan, -0.2, 0.3])
    significant = np.array([True, False, True, False, True])
    s = stats.summarize_direction("story_to_movie", r, significant, q=0.05)
    assert s == DirectionSummary(
        direction="story_to_movie",
        n_voxels=4,
        n_significant=2,
        fraction_significant=0.5,
        mean_r=pytest.approx(0.175),
        mean_r_significant=pytest.approx(0.4),
        max_r=0.5,
        fdr_q=0.05,
    )
    none = stats.summarize_direction("movie_to_story", r, np.zeros(5, bool), q=0.05)
    assert none.n_significant == 0 and np.isnan(none.mean_r_significant)

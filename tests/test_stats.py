"""Scores, block-permutation p-values, FDR and summaries against plain references."""
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


# -- block permutations -----------------------------------------------------------------


def test_block_permutations_move_whole_blocks_and_keep_partial_blocks():
    runs = [23, 17]  # blocks of 5: 4 full + 3 fixed, 3 full + 2 fixed
    order = stats.block_permutations(40, block_length=5, n_permutations=50, seed=3, run_lengths=runs)
    assert order.shape == (50, 40)
    starts = [0, 5, 10, 15, 23, 28, 33]
    fixed = [20, 21, 22, 38, 39]
    moved_across_runs = False
    for row in order:
        assert sorted(row) == list(range(40))
        np.testing.assert_array_equal(row[fixed], fixed)
        for s in starts:
            source = row[s]
            assert source in starts  # a block starts where a block started
            np.testing.assert_array_equal(row[s : s + 5], np.arange(source, source + 5))
            moved_across_runs |= (s < 23) != (source < 23)
    assert moved_across_runs
    again = stats.block_permutations(40, block_length=5, n_permutations=50, seed=3, run_lengths=runs)
    np.testing.assert_array_equal(order, again)
    other = stats.block_permutations(40, block_length=5, n_permutations=50, seed=4, run_lengths=runs)
    assert not np.array_equal(order, other)


def test_block_permutations_within_runs_stay_in_their_run():
    order = stats.block_permutations(
        40, block_length=5, n_permutations=30, seed=1, run_lengths=[23, 17], within_runs=True
    )
    assert (order[:, :23] < 23).all() and (order[:, 23:] >= 23).all()
    assert not (order == np.arange(40)).all(axis=1).all()


def test_block_permutations_reject_bad_layouts():
    with pytest.raises(ValueError, match="sum to"):
        stats.block_permutations(40, 5, 10, run_lengths=[20, 19])
    with pytest.raises(ValueError, match="fewer than 2 full blocks"):
        stats.block_permutations(9, 5, 10)


def _reference_pvalues(pred, y, order):
    """Permute the prediction for real and recompute np.corrcoef each time."""
    n_perm = order.shape[0]
    p = np.full(y.shape[1], np.nan)
    for v in range(y.shape[1]):
        if np.ptp(y[:, v]) == 0 or np.ptp(pred[:, v]) == 0:
            continue
        observed = np.corrcoef(pred[:, v], y[:, v])[0, 1]
        null = np.array([np.corrcoef(pred[order[k], v], y[:, v])[0, 1] for k in range(n_perm)])
        p[v] = (1 + np.sum(null >= observed - stats.TIE_TOLERANCE)) / (1 + n_perm)
    return p


@pytest.mark.parametrize(
    "run_lengths, within_runs", [(None, False), ([29, 24], False), ([29, 24], True)]
)
def test_block_permutation_pvalues_equal_literal_permutation(run_lengths, within_runs):
    n_trs, n_vox, n_perm, block = 53, 9, 150, 5
    pred = _noise((n_trs, n_vox), 10)
    # Graded signal strength so that p-values spread over (0, 1].
    y = pred * np.linspace(0.0, 0.6, n_vox) + _noise((n_trs, n_vox), 11)
    y[:, 4] = 1.0
    kwargs = dict(block_length=block, seed=7, run_lengths=run_lengths, within_runs=within_runs)
    order = stats.block_permutations(n_trs, n_permutations=n_perm, **kwargs)
    expected = _reference_pvalues(pred, y, order)
    # A small voxel batch exercises the batching as well.
    got = stats.block_permutation_pvalues(pred, y, n_permutations=n_perm, n_voxels_batch=4, **kwargs)
    assert np.isnan(got[4]) and np.isnan(expected[4])
    np.testing.assert_array_equal(got, expected)
    assert len(np.unique(got[np.isfinite(got)])) > 4


def test_block_permutation_pvalues_of_column_batches_equal_the_whole():
    """Callers may test voxels batch by batch: a voxel's p-value ignores its neighbours."""
    n_trs, n_vox, n_perm = 120, 23, 400
    pred = _noise((n_trs, n_vox), 12).astype(np.float32)
    y = (pred * np.linspace(0.0, 0.5, n_vox) + _noise((n_trs, n_vox), 13)).astype(np.float32)
    kwargs = dict(n_permutations=n_perm, block_length=10, seed=3, run_lengths=[50, 70])
    whole = stats.block_permutation_pvalues(pred, y, **kwargs)
    batches = [slice(0, 7), slice(7, 14), slice(14, 21), slice(21, 23)]
    batched = np.concatenate([stats.block_permutation_pvalues(pred[:, b], y[:, b], **kwargs) for b in batches])
    np.testing.assert_array_equal(batched, whole)
    order = stats.block_permutations(n_trs, n_permutations=n_perm, block_length=10, seed=3, run_lengths=[50, 70])
    np.testing.assert_array_equal(whole, _reference_pvalues(pred.astype(np.float64), y.astype(np.float64), order))
    assert len(np.unique(whole)) > 5


def test_block_permutation_pvalues_are_uniform_under_the_null():
    n_perm = 200
    pred = _noise((100, 2000), 20)
    y = _noise((100, 2000), 21)
    p = stats.block_permutation_pvalues(pred, y, n_permutations=n_perm, block_length=5, seed=0)
    # P(p <= 0.05) is exactly 10/201 for a discrete uniform p on {1..201}/201.
    assert np.mean(p <= 0.05) == pytest.approx(10 / 201, abs=0.02)
    assert np.mean(p) == pytest.approx(0.5, abs=0.03)
    assert p.min() >= 1 / (n_perm + 1) and p.max() <= 1.0


def test_strong_signal_reaches_the_smallest_pvalue():
    n_perm = 300
    pred = _noise((120, 5), 30)
    y = pred + 0.1 * _noise((120, 5), 31)
    p = stats.block_permutation_pvalues(pred, y, n_permutations=n_perm, block_length=10, seed=2)
    np.testing.assert_array_equal(p, np.full(5, 1 / (n_perm + 1)))
    # Anti-correlated: every null value exceeds the observed one.
    p_neg = stats.block_permutation_pvalues(-pred, y, n_permutations=n_perm, block_length=10, seed=2)
    np.testing.assert_array_equal(p_neg, np.ones(5))


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

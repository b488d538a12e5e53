"""Paired comparison of two feature spaces: the test on null data, and on the simulated subject."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
from scipy import signal
from scipy import stats as scipy_stats

from brainenc.analyses.comparison import ModelComparison, _unit_columns, compare_feature_spaces
from brainenc.errors import BrainencInputError
from brainenc.inference import NoiseAutocovariance, prediction_zscores
from brainenc.io.layouts import load_dataset
from brainenc.results import CROSS, DIRECTIONS
from brainenc.transfer import run_transfer
from tests.test_inference import ar1


def _smooth(rng, n, v):
    kernel = scipy_stats.gamma.pdf(np.arange(0, 16.0), 3.0)
    x = signal.lfilter(kernel, 1, rng.standard_normal((n + 30, v)), axis=0)[30:]
    return x / x.std(axis=0)


def _paired_p(pred_a, pred_b, y, lengths):
    difference = _unit_columns(pred_a, lengths) - _unit_columns(pred_b, lengths)
    z = prediction_zscores(difference, y, NoiseAutocovariance.estimate(y, lengths, 10))
    return z, 2 * scipy_stats.norm.sf(np.abs(z))


@pytest.mark.parametrize("signal_gain", [0.0, 0.5])
def test_equally_good_predictions_give_calibrated_or_conservative_pvalues(signal_gain):
    """Two predictions that share the voxel's signal equally (or carry none) against AR(1)
    noise: the two-sided p-values are uniform without signal, and no more often small than
    their level with it (the response's autocovariance then includes the signal)."""
    rng = np.random.default_rng(int(signal_gain * 10))
    lengths, v = [300, 340], 20000
    truth = np.concatenate([_smooth(rng, n, v) for n in lengths])
    pred_a = truth + np.concatenate([_smooth(rng, n, v) for n in lengths])
    pred_b = truth + np.concatenate([_smooth(rng, n, v) for n in lengths])
    y = signal_gain * truth + np.concatenate([ar1(rng, n, v, 0.4) for n in lengths])
    _, p = _paired_p(pred_a, pred_b, y, lengths)
    for level in (0.05, 0.01, 0.001):
        low, high = scipy_stats.binom.interval(0.99, v, level)
        fraction = np.mean(p < level)
        assert fraction <= high / v, (signal_gain, level, fraction)
        if signal_gain == 0.0:
            assert fraction >= low / v, (level, fraction)


def test_the_better_prediction_wins_and_identical_ones_are_not_tested():
    rng = np.random.default_rng(3)
    lengths, v = [300, 300], 300
    truth = np.concatenate([_smooth(rng, n, v) for n in lengths])
    good = truth + 0.5 * np.concatenate([_smooth(rng, n, v) for n in lengths])
    poor = truth + 4.0 * np.concatenate([_smooth(rng, n, v) for n in lengths])
    y = 0.5 * truth + np.concatenate([ar1(rng, n, v, 0.4) for n in lengths])
    z, _ = _paired_p(good, poor, y, lengths)
    assert np.median(z) > 3
    z_swapped, _ = _paired_p(poor, good, y, lengths)
    np.testing.assert_allclose(z_swapped, -z)
    z_same, p_same = _paired_p(good, good, y, lengths)
    assert np.isnan(z_same).all() and np.isnan(p_same).all()


def test_results_equal_those_of_each_space_alone_and_round_trip(manifest_dataset, tmp_path):
    import shutil

    shutil.copytree(manifest_dataset / "features" / "feats", manifest_dataset / "features" / "copy")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        data = load_dataset(manifest_dataset)
        results, (compared,) = compare_feature_spaces(data, "s1", ["feats", "copy"],
                                                      [("feats", "copy")], progress=False)
        alone = run_transfer(data, "s1", "feats", progress=False)
    for direction in DIRECTIONS:
        np.testing.assert_array_equal(results[0].r[direction], alone.r[direction])
        np.testing.assert_array_equal(results[0].z[direction], alone.z[direction])
        # the same features in both spaces: nothing to compare
        assert np.isnan(compared.z[direction]).all() and not compared.a_better[direction].any()
        np.testing.assert_array_equal(compared.delta_r[direction], 0.0)
    back = ModelComparison.load(compared.save(tmp_path / "comparison.npz"))
    np.testing.assert_equal([vars(s) for s in back.summaries], [vars(s) for s in compared.summaries])
    assert back.label == "feats vs copy"
    with pytest.raises(BrainencInputError, match="pair"):
        compare_feature_spaces(data, "s1", ["feats"], [("feats", "nope")], progress=False)
    with pytest.raises(BrainencInputError, match="significance"):
        compare_feature_spaces(data, "s1", ["feats", "copy"], [("feats", "copy")],
                               significance=False, progress=False)


@pytest.mark.slow
def test_multimodal_beats_unimodal_on_shared_vertices_and_nowhere_else(simulated_analysis):
    """The simulated subject: the multimodal space transfers better than its unaligned
    baseline on the shared-concept vertices; within each modality the two spaces predict
    equally well, so nothing is flagged there; false discoveries stay within q."""
    truth, compared = simulated_analysis.comparison(0)
    for direction in CROSS:
        shared = truth.component("shared") & (truth.max_r[direction] > 0)
        flagged = compared.a_better[direction]
        assert flagged.sum() > 200
        assert (flagged & ~shared).sum() <= 0.05 * flagged.sum()
        assert flagged[shared & (truth.max_r[direction] > 0.2)].mean() > 0.8
        assert not compared.b_better[direction].any()
        assert compared.summary(direction).mean_delta_r_a_better > 0.2
    for direction in ("story_to_story", "movie_to_movie"):
        assert compared.a_better[direction].sum() + compared.b_better[direction].sum() <= 5
        p = compared.pvalues[direction]
        assert 0.03 < np.mean(p < 0.05) < 0.07

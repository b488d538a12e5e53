"""Calibration of every map of the transfer analysis, on data where the null holds.

Pure-noise subjects (the simulation's AR(1) noise, no signal anywhere) with
spatially independent noise, so that vertices are independent draws and the
fraction of small p-values has a binomial distribution. Default analysis settings
throughout: leave-one-run-out splits, the sequential within test, lags of 20 s,
q = 0.05. The false discoveries of the maps of simulated subjects are tested in
``test_calibration_fdr.py``.
"""
from __future__ import annotations

import numpy as np
import pytest
from scipy import stats as scipy_stats

from brainenc.results import CROSS, DIRECTIONS

pytestmark = pytest.mark.slow

LEVELS = (0.05, 0.01, 0.001)
NOISE_SEEDS = (1, 2)


@pytest.fixture(scope="module")
def pure_noise(simulated_analysis):
    return [simulated_analysis(seed, pure_noise=True, noise_smoothing=0) for seed in NOISE_SEEDS]


@pytest.mark.parametrize("direction", DIRECTIONS)
def test_pure_noise_pvalues_fall_in_the_binomial_interval_of_each_level(pure_noise, direction):
    """Every direction, .05 / .01 / .001: the fraction of 40 968 noise vertices (two subjects)
    lies in the 99 % binomial interval of the level. The pooled leave-one-run-out test this
    replaced gave 0.094 / 0.030 / 0.0068 within, outside every interval."""
    p = np.concatenate([result.pvalues[direction] for _, result in pure_noise])
    assert np.isfinite(p).all()
    for level in LEVELS:
        low, high = scipy_stats.binom.interval(0.99, p.size, level)
        assert low / p.size <= np.mean(p < level) <= high / p.size, (direction, level)


@pytest.mark.parametrize("direction", DIRECTIONS)
def test_named_test_runs_are_calibrated_too(simulated_analysis, direction):
    """The other split: one model per modality tested on a held-out run of each modality
    (20 484 noise vertices of one subject, the 99 % binomial interval of each level)."""
    _, result = simulated_analysis(NOISE_SEEDS[0], test_runs={"story": ["story05"], "movie": ["movie05"]},
                                   pure_noise=True, noise_smoothing=0)
    assert result.settings["within_test"]["story"] == "held-out test runs"
    p = result.pvalues[direction]
    for level in LEVELS:
        low, high = scipy_stats.binom.interval(0.99, p.size, level)
        assert low / p.size <= np.mean(p < level) <= high / p.size, (direction, level)


def test_pure_noise_maps_are_empty(pure_noise):
    """Under the global null BH keeps the chance of any discovery below q per map; the
    transfer maps, needing three tests at once, are conservative by construction."""
    for _, result in pure_noise:
        assert sum(int(result.significant[d].sum()) for d in DIRECTIONS) <= 2
        for direction in CROSS:
            assert not result.transfer_significant[direction].any()
            assert np.mean(result.transfer_pvalues[direction] < 0.05) < 0.01

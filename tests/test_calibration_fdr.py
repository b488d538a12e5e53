"""False discoveries of every map of the transfer analysis on simulated subjects.

Simulated subjects (default simulation, spatially smooth noise) whose FDR maps
must not hold more than q false discoveries, pooled over three subjects. Default
analysis settings: leave-one-run-out splits, the sequential within test, lags of
20 s, q = 0.05. The null vertices of each map are those of
:mod:`brainenc.simulate.recovery`.
"""
from __future__ import annotations

import numpy as np
import pytest

from brainenc.simulate.recovery import MAPS, map_recovery

pytestmark = pytest.mark.slow

SUBJECT_SEEDS = (0, 1, 2)
Q = 0.05


@pytest.fixture(scope="module")
def subjects(simulated_analysis):
    return [simulated_analysis(seed) for seed in SUBJECT_SEEDS]


@pytest.mark.parametrize("name", MAPS)
def test_false_discoveries_of_every_map_stay_below_q(subjects, name):
    """Pooled over three simulated subjects, the proportion of false discoveries of the map is
    at most q plus its Monte-Carlo error (2.6 standard errors, one-sided 99.5 %). The noise is
    spatially smooth, so false discoveries come in clumps of neighbouring vertices: the
    binomial variance is inflated by their measured clump size (``false_clump_size``)."""
    scores = [map_recovery(result, truth, name) for truth, result in subjects]
    n_sig = sum(s.n_significant for s in scores)
    n_false = sum(s.n_false for s in scores)
    assert n_sig > 200, name
    clump = max(1.0, max(s.false_clump_size for s in scores))
    bound = Q + 2.6 * np.sqrt(Q * (1 - Q) * clump / n_sig)
    assert n_false / n_sig <= bound, (name, n_false, n_sig, bound)
    if name.startswith("transfer_"):
        # transfer maps are conservative by construction: hardly any false discovery at all
        assert n_false / n_sig < Q / 2, (name, n_false, n_sig)

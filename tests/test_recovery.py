"""The transfer analysis recovers the simulated subject's ground truth, and fails where it should.

Scored continuously by the noise-free ceilings of the simulation (the correlation a
perfect model reaches at each vertex, ``GroundTruth.max_r``), per map, with
:mod:`brainenc.simulate.recovery`.
"""
from __future__ import annotations

import numpy as np
import pytest

from brainenc.results import CROSS
from brainenc.simulate.recovery import map_recovery, to_find

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def multimodal(simulated_analysis):
    return simulated_analysis(0, "multimodal")


@pytest.fixture(scope="module")
def unimodal(simulated_analysis):
    return simulated_analysis(0, "unimodal")


@pytest.mark.parametrize("direction", ["story_to_story", "movie_to_movie", *CROSS])
def test_r_follows_the_noise_free_ceiling(multimodal, direction):
    truth, result = multimodal
    signal = truth.max_r[direction] > 0
    r = result.r[direction]
    assert np.corrcoef(truth.max_r[direction][signal], r[signal])[0, 1] > 0.9
    # well above the detection limit, r tells the vertices from the null ones almost perfectly
    scores = map_recovery(result, truth, direction)
    assert scores.auc["0.20-0.40"] > 0.99 and scores.auc["0.40-1.00"] > 0.99


@pytest.mark.parametrize("direction", ["story_to_story", "movie_to_movie"])
def test_within_maps_find_what_is_above_the_detection_limit(multimodal, direction):
    truth, result = multimodal
    scores = map_recovery(result, truth, direction)
    assert scores.recall["0.20-0.40"] > 0.85 and scores.recall["0.40-1.00"] == 1.0
    # near the limit recall falls: the simulation leaves room to fail
    assert scores.recall["0.00-0.05"] < 0.5


@pytest.mark.parametrize("direction", CROSS)
def test_transfer_maps_find_most_shared_vertices_and_nothing_else(multimodal, direction):
    truth, result = multimodal
    scores = map_recovery(result, truth, f"transfer_{direction}")
    reachable = to_find(truth, f"transfer_{direction}") & (truth.max_r[direction] > 0.1)
    recall = result.transfer_significant[direction][reachable].mean()
    assert recall > 0.65, recall
    assert scores.n_false == 0
    # modality-specific vertices whose cross-modal prediction correlates by chance are not
    # transfer: language+vision vertices carry two models that learned different things
    for category in ("language", "vision", "language+vision"):
        assert scores.by_category[category][1] < 0.05, category


@pytest.mark.parametrize("direction", CROSS)
def test_unaligned_features_do_not_transfer(multimodal, unimodal, direction):
    """The unimodal space pairs independent concept bases: within maps as good as the
    multimodal space's, transfer maps empty."""
    truth, multi = multimodal
    _, uni = unimodal
    train = direction.split("_to_")[0]
    within = f"{train}_to_{train}"
    assert abs(int(uni.significant[within].sum()) - int(multi.significant[within].sum())) < 0.05 * int(
        multi.significant[within].sum())
    assert multi.transfer_significant[direction].sum() > 200
    assert uni.transfer_significant[direction].sum() <= 0.02 * multi.transfer_significant[direction].sum()
    shared = truth.component("shared") & (truth.max_r[direction] > 0.1)
    assert np.mean(multi.r[direction][shared]) > np.mean(uni.r[direction][shared]) + 0.1

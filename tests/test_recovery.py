"""The transfer analysis recovers the simulated subject's ground truth."""
from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from brainenc.io.layouts import load_dataset
from brainenc.simulate import load_ground_truth, simulate_dataset
from brainenc.transfer import run_transfer

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def analysis(tmp_path_factory):
    root = tmp_path_factory.mktemp("sim")
    info = simulate_dataset(root / "dataset", layout="huth", seed=0)
    data = load_dataset(info.root)
    truth = load_ground_truth(info.root)
    results = {
        name: run_transfer(data, info.subject, name, n_permutations=1000, progress=False)
        for name in ("multimodal", "unimodal")
    }
    return truth, results


@pytest.mark.parametrize("direction", ["story_to_movie", "movie_to_story"])
def test_cross_modal_r_separates_shared_vertices(analysis, direction):
    truth, results = analysis
    shared = truth.mask("shared")
    r = results["multimodal"].r[direction]
    assert roc_auc_score(shared, r) >= 0.95
    # and the FDR mask finds mostly shared vertices
    sig = results["multimodal"].significant[direction]
    assert sig[shared].mean() > 0.5
    assert sig[~shared].mean() < 0.05


def test_language_only_vertices_do_not_transfer(analysis):
    truth, results = analysis
    res = results["multimodal"]
    language = truth.mask("language")
    noise = truth.mask("noise")
    assert res.r["story_to_story"][language].mean() > 0.2
    assert abs(res.r["story_to_movie"][language].mean()) < 0.05
    assert abs(res.r["movie_to_story"][language].mean()) < 0.05
    # within stories they stand out from pure-noise vertices
    assert roc_auc_score(language[language | noise],
                         res.r["story_to_story"][language | noise]) > 0.95


def test_vision_only_vertices_do_not_transfer(analysis):
    truth, results = analysis
    res = results["multimodal"]
    vision = truth.mask("vision")
    assert res.r["movie_to_movie"][vision].mean() > 0.2
    assert abs(res.r["story_to_movie"][vision].mean()) < 0.05
    assert abs(res.r["movie_to_story"][vision].mean()) < 0.05


def test_multimodal_features_transfer_better_than_unimodal(analysis):
    truth, results = analysis
    shared = truth.mask("shared")
    for direction in ("story_to_movie", "movie_to_story"):
        multi = results["multimodal"].r[direction][shared].mean()
        uni = results["unimodal"].r[direction][shared].mean()
        assert multi > 0.15
        assert multi > uni + 0.1, (direction, multi, uni)
        assert (results["multimodal"].significant[direction][shared].mean()
                > 2 * results["unimodal"].significant[direction][shared].mean())
    # within-modality fits do not depend on cross-modal alignment
    for direction in ("story_to_story", "movie_to_movie"):
        multi = results["multimodal"].r[direction][shared].mean()
        uni = results["unimodal"].r[direction][shared].mean()
        assert abs(multi - uni) < 0.05

"""Transfer in voxel batches: same results whatever the batch, memory set by the batch.

Also the run-count check that every transfer fit needs (it runs before any data are loaded).
"""
from __future__ import annotations

import tracemalloc
import warnings

import numpy as np
import pytest
from scipy import linalg
from scipy import stats as scipy_stats

from brainenc import stats
from brainenc.design import get_preset
from brainenc.errors import BrainencInputError
from brainenc.io.features import find_feature_space
from brainenc.io.layouts import load_dataset
from brainenc.results import DIRECTIONS
from brainenc.stats import pearson_r
from brainenc.transfer import load_modality, run_transfer
from tests.conftest import make_manifest_dataset
from tests.test_encoding import closed_form, pearson

N_VOXELS = 30
CONSTANT = (4, 17)


def weaken_signal(root, n_voxels, constant, seed=0):
    """Mix each response file with noise, from well predicted voxels to pure noise."""
    rng = np.random.default_rng(seed)
    gain = np.linspace(0.6, 0.0, n_voxels)
    varying = [v for v in range(n_voxels) if v not in constant]
    for path in sorted(root.glob("*.npy")):
        Y = np.load(path)
        Y[:, varying] = gain[varying] * Y[:, varying] + rng.standard_normal((len(Y), len(varying)))
        np.save(path, Y.astype(np.float32))


@pytest.fixture(scope="module")
def batch_dataset(tmp_path_factory):
    root = make_manifest_dataset(tmp_path_factory.mktemp("batches") / "ds", n_runs=4, n_trs=90,
                                 n_voxels=N_VOXELS, n_features=6, constant_voxels=CONSTANT, seed=3)
    weaken_signal(root, N_VOXELS, CONSTANT)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return load_dataset(root)


def transfer(dataset, n_targets_batch, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # constant voxels, onset assumptions
        return run_transfer(dataset, "s1", "feats", progress=False,
                            n_targets_batch=n_targets_batch, **kwargs)


@pytest.mark.parametrize("test_runs", [None, {"story": ["story1"], "movie": ["movie3"]}])
def test_batch_of_7_matches_one_batch_of_all_voxels(batch_dataset, test_runs):
    small = transfer(batch_dataset, 7, test_runs=test_runs)
    whole = transfer(batch_dataset, N_VOXELS + 5, test_runs=test_runs)
    for direction in DIRECTIONS:
        np.testing.assert_allclose(small.r[direction], whole.r[direction], rtol=0, atol=1e-6)
        np.testing.assert_allclose(small.r2[direction], whole.r2[direction], rtol=0, atol=1e-6)
        # float32 fits agree to rounding across batch sizes, the tests to the same degree
        np.testing.assert_allclose(small.z[direction], whole.z[direction], rtol=0, atol=1e-4)
        np.testing.assert_allclose(small.pvalues[direction], whole.pvalues[direction], rtol=1e-3)
        np.testing.assert_array_equal(small.significant[direction], whole.significant[direction])
        assert np.isnan(small.r[direction][list(CONSTANT)]).all()
        # the p-values span a range, so equality is not that of saturated values
        assert len(np.unique(small.pvalues[direction][np.isfinite(small.pvalues[direction])])) > 3
    for modality in ("story", "movie"):
        np.testing.assert_array_equal(small.alphas[modality], whole.alphas[modality])
    assert [s.n_significant for s in small.summaries] == [s.n_significant for s in whole.summaries]
    assert 0 < sum(s.n_significant for s in small.summaries) < 4 * (N_VOXELS - len(CONSTANT))


def reference_zscore(pred, y, max_lag):
    """A plain implementation of the test of one column: the run's autocovariance from
    loops (bias-corrected as documented), its Toeplitz covariance, and g' Σ g."""
    n = len(y)
    y = y - y.mean()
    gamma = np.array([sum(y[t] * y[t + k] for t in range(n - k)) / (n - k)
                      for k in range(max_lag + 1)])
    gamma = gamma + (gamma[0] + 2 * gamma[1:].sum()) / n
    column = np.zeros(n)
    column[:max_lag + 1] = gamma
    g = pred - pred.mean()
    return float(g @ y / np.sqrt(g @ linalg.toeplitz(column) @ g))


def test_batched_scores_match_float64_ridge_and_a_plain_test(batch_dataset):
    """Named test runs: one model per modality, checked with a plain float64 ridge and a
    plain implementation of the cross-modal test on the single test run."""
    res = transfer(batch_dataset, 7, test_runs={"story": ["story1"], "movie": ["movie3"]})
    preset = get_preset(batch_dataset.preset)
    space = find_feature_space("feats", batch_dataset.feature_root)
    story = load_modality(batch_dataset.runs_for("s1", "story"), space, preset)
    movie = load_modality(batch_dataset.runs_for("s1", "movie"), space, preset)
    X_train, Y_train, _ = story.stack([0, 2, 3])
    X_test, Y_test, _ = movie.stack([3])
    keep = [v for v in range(N_VOXELS) if v not in CONSTANT]
    W = np.stack([closed_form(X_train.astype(np.float64), Y_train[:, v].astype(np.float64),
                              res.alphas["story"][v]) for v in keep], axis=1)
    pred = X_test @ W
    np.testing.assert_allclose(res.r["story_to_movie"][keep], pearson(pred, Y_test[:, keep]), atol=1e-4)

    expected = [reference_zscore(pred[:, i].astype(np.float64), Y_test[:, v].astype(np.float64), 10)
                for i, v in enumerate(keep)]
    np.testing.assert_allclose(res.z["story_to_movie"][keep], expected, rtol=1e-3, atol=1e-3)
    np.testing.assert_allclose(res.pvalues["story_to_movie"][keep],
                               scipy_stats.norm.sf(expected), rtol=1e-2, atol=1e-6)


def test_peak_memory_follows_the_batch_not_the_voxel_count(tmp_path):
    root = make_manifest_dataset(tmp_path / "ds", n_runs=3, n_trs=100, n_voxels=3000, n_features=4)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dataset = load_dataset(root)

    def peak_bytes(n_targets_batch):
        tracemalloc.start()
        try:
            transfer(dataset, n_targets_batch)
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    responses = 2 * 300 * 3000 * 4  # both modalities' float32 responses, held throughout
    small, whole = peak_bytes(100), peak_bytes(3000)
    # one batch of everything holds all directions' predictions and float64 copies;
    # batches of 100 add little to the responses themselves
    assert whole - responses > 4 * (small - responses)
    assert small < 3 * responses


def test_pearson_r_widens_float32_one_chunk_at_a_time(monkeypatch):
    rng = np.random.default_rng(0)
    pred = rng.standard_normal((500, 4000), dtype=np.float32)
    y = (0.3 * pred + rng.standard_normal((500, 4000))).astype(np.float32)
    monkeypatch.setattr(stats, "_SCORE_BYTES", 2**20)
    tracemalloc.start()
    try:
        r = pearson_r(pred, y)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 500 * 4000 * 8  # less than one float64 copy of either input
    np.testing.assert_allclose(r, pearson(pred.astype(np.float64), y.astype(np.float64)), atol=1e-12)


@pytest.mark.parametrize("n_runs, test_runs, expected", [
    (2, None, r"has 2 story run\(s\) \(story0, story1\); leave-one-run-out testing needs at least "
              r"3 story runs"),
    (3, {"story": ["story0", "story2"]},
     r"has 3 story run\(s\) \(story0, story1, story2\) and 2 of them are test runs \(story0, story2\), "
     r"leaving 1 for training \(story1\); at least 2 story training runs are needed"),
])
def test_too_few_runs_names_the_dataset_and_the_runs(tmp_path, n_runs, test_runs, expected):
    root = make_manifest_dataset(tmp_path / "ds", n_runs=n_runs, n_trs=40)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dataset = load_dataset(root)
    with pytest.raises(BrainencInputError, match=expected) as caught:
        run_transfer(dataset, "s1", "feats", test_runs=test_runs, progress=False)
    assert caught.value.path == dataset.root
    assert str(caught.value).startswith(str(dataset.root))

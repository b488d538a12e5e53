"""The weights file: written batch by batch, read lazily, equal to independent fits."""
from __future__ import annotations

import warnings

import h5py
import numpy as np
import pytest

from brainenc.cli import main
from brainenc.design import get_preset
from brainenc.errors import BrainencInputError
from brainenc.io.features import find_feature_space
from brainenc.io.layouts import load_dataset
from brainenc.io.weights import WeightsFile, WeightsWriter
from brainenc.results import TransferResult
from brainenc.stats import pearson_r
from brainenc.transfer import load_modality, run_transfer
from tests.test_encoding import closed_form


def _run(dataset, tmp_path, **options):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        data = load_dataset(dataset)
        return data, run_transfer(data, "s1", "feats", progress=False,
                                  weights_path=tmp_path / "weights.h5", **options)


def test_weights_of_named_test_runs_equal_a_plain_ridge_at_the_stored_alpha(manifest_dataset, tmp_path):
    data, result = _run(manifest_dataset, tmp_path, n_targets_batch=5,
                        test_runs={"story": ["story2"], "movie": ["movie0"]})
    weights = result.weights()
    preset = get_preset(data.preset)
    n_delays = len(preset.delays)
    assert weights.shape == (5, n_delays, 12)
    np.testing.assert_array_equal(weights.delays, preset.delays)
    np.testing.assert_array_equal(weights.voxels, np.arange(12))
    space = find_feature_space("feats", data.feature_root)
    story = load_modality(data.runs_for("s1", "story"), space, preset)
    X, Y, _ = story.stack([0, 1])
    alphas = weights.alphas("story")
    np.testing.assert_array_equal(alphas, result.alphas["story"])
    stored = weights.weights("story")
    for v in range(12):
        expected = closed_form(X.astype(np.float64), Y[:, v].astype(np.float64), alphas[v])
        # the design's columns are delay blocks of features; the file is features × delays
        np.testing.assert_allclose(stored[:, :, v], expected.reshape(n_delays, 5).T, rtol=1e-3,
                                   atol=1e-5)


def test_weights_reproduce_the_cross_modal_scores(manifest_dataset, tmp_path):
    """The stored (leave-one-run-out mean) story model, applied to the movie designs,
    gives the story → movie r of the result."""
    data, result = _run(manifest_dataset, tmp_path)
    weights = result.weights()
    preset = get_preset(data.preset)
    movie = load_modality(data.runs_for("s1", "movie"),
                          find_feature_space("feats", data.feature_root), preset)
    X, Y, _ = movie.stack([0, 1, 2])
    W = weights.weights("story").transpose(1, 0, 2).reshape(-1, 12)
    np.testing.assert_allclose(pearson_r(X @ W, Y), result.r["story_to_movie"], atol=1e-5)
    np.testing.assert_allclose(weights.delay_averaged("movie"),
                               weights.weights("movie").astype(np.float64).mean(axis=1))


def test_voxels_are_read_in_the_order_asked_for(manifest_dataset, tmp_path):
    _, result = _run(manifest_dataset, tmp_path)
    weights = result.weights()
    everything = weights.weights("movie")
    np.testing.assert_array_equal(weights.weights("movie", [7, 2, 2, 9]), everything[:, :, [7, 2, 2, 9]])
    mask = np.zeros(12, bool)
    mask[[1, 4]] = True
    np.testing.assert_array_equal(weights.weights("movie", mask), everything[:, :, [1, 4]])
    blocks = list(weights.batches("movie", n_voxels=5))
    assert [columns for columns, _ in blocks] == [slice(0, 5), slice(5, 10), slice(10, 12)]
    np.testing.assert_array_equal(np.concatenate([b for _, b in blocks], axis=2), everything)
    with pytest.raises(ValueError, match="modality"):
        weights.weights("audio")


def test_a_failed_write_leaves_no_file(tmp_path):
    path = tmp_path / "weights.h5"
    with pytest.raises(RuntimeError):
        with WeightsWriter(path, 3, [1, 2], 10, {}) as out:
            out.write("story", slice(0, 4), np.ones((6, 4)), np.ones(4))
            raise RuntimeError("interrupted")
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(BrainencInputError, match="not found"):
        WeightsFile(path)
    (tmp_path / "other.h5").write_bytes(b"not hdf5")
    with pytest.raises(BrainencInputError, match="weights file"):
        WeightsFile(tmp_path / "other.h5")
    with h5py.File(tmp_path / "foreign.h5", "w") as f:
        f.create_dataset("delays", data=[1])
        f.create_dataset("features", data=[0])
        f.create_dataset("voxels", data=[0])
        f.create_dataset("story/weights", data=np.zeros((1, 1, 1)))
    with pytest.raises(BrainencInputError, match="format"):
        WeightsFile(tmp_path / "foreign.h5")


def test_cli_writes_weights_beside_each_scores_file(manifest_dataset, tmp_path):
    import shutil

    shutil.copytree(manifest_dataset / "features" / "feats", manifest_dataset / "features" / "copy")
    out = tmp_path / "out"
    assert main(["transfer", "--dataset", str(manifest_dataset), "--subject", "s1", "--features",
                 "feats", "copy", "--out", str(out), "--no-report", "--quiet"]) == 0
    for space in ("feats", "copy"):
        result = TransferResult.load(out / space / "scores.npz")
        assert result.weights_path == str(out / space / "weights.h5")
        assert result.weights().attrs["feature_space"] == space
    np.testing.assert_array_equal(TransferResult.load(out / "feats" / "scores.npz").weights().weights("story"),
                                  TransferResult.load(out / "copy" / "scores.npz").weights().weights("story"))

"""Transfer analysis: mechanics on a small planted dataset, bad input, outputs."""
from __future__ import annotations

import json

import numpy as np
import pytest

from brainenc.cli import main
from brainenc.errors import BrainencInputError
from brainenc.io.layouts import load_dataset
from brainenc.results import DIRECTIONS, TransferResult
from brainenc.transfer import run_transfer
from tests.conftest import make_manifest_dataset


def test_all_directions_predictable_on_planted_data(manifest_dataset):
    data = load_dataset(manifest_dataset)
    res = run_transfer(data, "s1", "feats", progress=False)
    assert set(res.r) == set(DIRECTIONS)
    for direction in DIRECTIONS:
        # the planted map is shared by both modalities: every direction works
        assert np.nanmean(res.r[direction]) > 0.6, direction
        assert res.significant[direction].mean() == 1.0
        # r2 and r agree in kind: a good prediction explains variance
        assert np.nanmean(res.r2[direction]) > 0.2
    assert res.settings["held_out"] == "leave-one-run-out"
    # the transfer maps need the training modality's within test, the cross-modal test and
    # the feature-correspondence test
    for direction in ("story_to_movie", "movie_to_story"):
        assert res.transfer_significant[direction].mean() == 1.0
        train = direction.split("_to_")[0]
        np.testing.assert_array_equal(
            res.transfer_pvalues[direction],
            np.maximum.reduce([res.pvalues[direction], res.pvalues[f"{train}_to_{train}"],
                               res.alignment_pvalues[direction]]))
    assert res.alphas["story"].shape == (12,)


def test_named_test_runs_share_test_data(manifest_dataset):
    data = load_dataset(manifest_dataset)
    res = run_transfer(data, "s1", "feats", test_runs={"story": ["story2"], "movie": ["movie0"]},
                       significance=False, progress=False)
    split = res.settings["split"]
    assert split["story"]["test_runs"] == [["story2"]]
    assert split["story"]["cross_test_runs"] == ["movie0"]
    assert split["movie"]["cross_test_runs"] == ["story2"]
    assert np.all(np.isnan(res.pvalues["story_to_movie"]))
    assert not res.significant["story_to_movie"].any()
    with pytest.raises(ValueError, match="story9"):
        run_transfer(data, "s1", "feats", test_runs={"story": ["story9"]}, progress=False)


def test_constant_voxels_warn_and_score_nan(tmp_path):
    root = make_manifest_dataset(tmp_path / "ds", constant_voxels=(3, 7))
    data = load_dataset(root)
    with pytest.warns(UserWarning, match="2 voxels"):
        res = run_transfer(data, "s1", "feats", progress=False)
    for direction in DIRECTIONS:
        assert np.isnan(res.r[direction][[3, 7]]).all()
        assert not res.significant[direction][[3, 7]].any()
        others = np.delete(res.r[direction], [3, 7])
        assert np.isfinite(others).all() and others.mean() > 0.6


def test_result_round_trip(manifest_dataset, tmp_path):
    data = load_dataset(manifest_dataset)
    res = run_transfer(data, "s1", "feats", progress=False)
    path = res.save(tmp_path / "scores.npz")
    back = TransferResult.load(path)
    for direction in DIRECTIONS:
        np.testing.assert_array_equal(back.r[direction], res.r[direction])
        np.testing.assert_array_equal(back.significant[direction], res.significant[direction])
        np.testing.assert_array_equal(back.z[direction], res.z[direction])
    for direction in ("story_to_movie", "movie_to_story"):
        np.testing.assert_array_equal(back.transfer_pvalues[direction], res.transfer_pvalues[direction])
        np.testing.assert_array_equal(back.alignment_pvalues[direction],
                                      res.alignment_pvalues[direction])
        np.testing.assert_array_equal(back.transfer_significant[direction],
                                      res.transfer_significant[direction])
    assert back.summaries == res.summaries
    assert back.transfer_summaries == res.transfer_summaries and len(back.transfer_summaries) == 2
    assert back.settings["alphas"] == res.settings["alphas"]


def test_cli_transfer_writes_outputs(manifest_dataset, tmp_path):
    out = tmp_path / "out"
    code = main(["transfer", "--dataset", str(manifest_dataset), "--subject", "s1",
                 "--features", "feats", "--out", str(out), "--quiet"])
    assert code == 0
    scores = np.load(out / "scores.npz")
    assert scores["r/story_to_movie"].shape == (12,)
    summary = json.loads((out / "summary.json").read_text())
    directions = summary["results"][0]["directions"]
    assert set(directions) == set(DIRECTIONS)
    assert directions["story_to_movie"]["fraction_significant"] == 1.0
    transfer = summary["results"][0]["transfer"]
    assert set(transfer) == {"story_to_movie", "movie_to_story"}
    assert transfer["movie_to_story"]["fraction_significant"] == 1.0
    assert scores["transfer_significant/story_to_movie"].all()
    assert (out / "report.html").is_file()
    assert any((out / "figures").glob("*.png"))


def test_cli_bad_feature_file_leaves_no_output(manifest_dataset, tmp_path, capsys):
    import h5py

    bad = manifest_dataset / "features" / "feats" / "movie1.hf5"
    with h5py.File(bad, "r+") as f:
        del f["times"]
        f["times"] = np.arange(3.0)  # wrong length for its data
    out = tmp_path / "out"
    code = main(["transfer", "--dataset", str(manifest_dataset), "--subject", "s1",
                 "--features", "feats", "--out", str(out), "--quiet"])
    assert code == 2
    err = capsys.readouterr().err
    assert "movie1.hf5" in err and "times" in err
    assert not out.exists()
    assert list(tmp_path.iterdir()) == [manifest_dataset] or not any(
        p.name.startswith(".out") for p in tmp_path.iterdir())


def test_feature_width_mismatch_names_file(manifest_dataset):
    from brainenc.io.features import write_stimulus_features

    path = manifest_dataset / "features" / "feats" / "movie2.hf5"
    write_stimulus_features(path, np.ones((10, 3), np.float32), np.arange(10.0))
    with pytest.raises(BrainencInputError, match="movie2.hf5"):
        run_transfer(load_dataset(manifest_dataset), "s1", "feats", progress=False)


def test_missing_feature_space_lists_available(manifest_dataset):
    with pytest.raises(BrainencInputError, match="feats"):
        run_transfer(load_dataset(manifest_dataset), "s1", "nope", progress=False)


def test_without_significance_nothing_reads_as_zero_significant(manifest_dataset, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["transfer", "--dataset", str(manifest_dataset), "--subject", "s1", "--features",
                 "feats", "--out", str(out), "--no-significance", "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "significance not tested" in printed and "0.000" not in printed.split("transfer")[1].split("\n")[1]
    result = json.loads((out / "summary.json").read_text())["results"][0]
    for summary in result["directions"].values():
        assert summary["n_significant"] is None and summary["fraction_significant"] is None
    assert result["transfer"] == {}
    assert result["settings"]["within_test"] == {"story": None, "movie": None}
    assert "not tested" in (out / "report.html").read_text()
    from brainenc.simulate.recovery import recovery

    with pytest.raises(BrainencInputError, match="without significance"):
        recovery(TransferResult.load(out / "scores.npz"), None)

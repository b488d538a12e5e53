"""Every argument and input is checked before the first fit; wrong answers are never silent."""
from __future__ import annotations

import h5py
import numpy as np
import pytest

import brainenc.transfer
from brainenc.cli import main
from brainenc.errors import BrainencInputError
from brainenc.io.features import find_feature_space, read_stimulus_features
from tests.conftest import make_manifest_dataset
from tests.safety import assert_refused, tree_state


@pytest.fixture
def dataset(tmp_path):
    return make_manifest_dataset(tmp_path / "ds", n_runs=3, n_trs=40, n_voxels=6)


@pytest.fixture
def no_fit(monkeypatch):
    """Make any fit fail the test: the error must come before it."""
    def never(*args, **kwargs):
        raise AssertionError("a model was fitted before the error was found")

    monkeypatch.setattr(brainenc.transfer.VoxelwiseRidge, "fit", never)


def _transfer(dataset, out, *extra):
    return main(["transfer", "--dataset", str(dataset), "--subject", "s1", "--out", str(out),
                 "--quiet", *extra])


def _check_refused(capsys, code, tmp_path, before, *fragments):
    err = assert_refused(capsys, code, *fragments)
    assert tree_state(tmp_path) == before
    return err


@pytest.mark.parametrize("option, value, fragment", [
    ("--fdr-q", "5", "--fdr-q must be a false discovery rate in (0, 1)"),
    ("--fdr-q", "0", "--fdr-q"),
    ("--max-lag", "0", "--max-lag must be a whole number of TRs >= 1"),
    ("--max-lag", "-3", "--max-lag"),
    ("--backend", "jax", "unknown backend 'jax'"),
])
def test_bad_options_fail_before_any_fit(dataset, tmp_path, capsys, no_fit, option, value,
                                         fragment):
    before = tree_state(tmp_path)
    code = _transfer(dataset, tmp_path / "out", "--features", "feats", option, value)
    _check_refused(capsys, code, tmp_path, before, fragment)


def test_bad_alphas_fail_before_any_fit(dataset, tmp_path, capsys, no_fit):
    before = tree_state(tmp_path)
    code = _transfer(dataset, tmp_path / "out", "--features", "feats", "--alphas", "10", "-1")
    _check_refused(capsys, code, tmp_path, before, "--alphas must be positive")


def test_missing_second_feature_space_fails_before_the_first_fit(dataset, tmp_path, capsys,
                                                                 no_fit):
    before = tree_state(tmp_path)
    code = _transfer(dataset, tmp_path / "out", "--features", "feats", "nosuchspace")
    _check_refused(capsys, code, tmp_path, before, "no feature space named 'nosuchspace'",
                   "available: ['feats']")


def test_a_missing_feature_file_of_the_second_space_fails_before_the_first_fit(
        dataset, tmp_path, capsys, no_fit):
    import shutil

    shutil.copytree(dataset / "features" / "feats", dataset / "features" / "other")
    (dataset / "features" / "other" / "movie2.hf5").unlink()
    before = tree_state(tmp_path)
    code = _transfer(dataset, tmp_path / "out", "--features", "feats", "other")
    _check_refused(capsys, code, tmp_path, before, "movie2.hf5", "no features for stimulus")


def test_feature_width_mismatch_names_both_files(dataset, tmp_path, capsys, no_fit):
    from brainenc.io.features import write_stimulus_features

    path = dataset / "features" / "feats" / "movie1.hf5"
    old = read_stimulus_features(path)
    write_stimulus_features(path, np.hstack([old.data, old.data[:, :1]]), old.times)
    before = tree_state(tmp_path)
    code = _transfer(dataset, tmp_path / "out", "--features", "feats")
    _check_refused(capsys, code, tmp_path, before, "movie1.hf5", "has 6 features", "has 5")


def test_unknown_subject_fails_before_the_output_is_touched(dataset, tmp_path, capsys, no_fit):
    before = tree_state(tmp_path)
    code = main(["transfer", "--dataset", str(dataset), "--subject", "s9", "--features", "feats",
                 "--out", str(tmp_path / "out"), "--quiet"])
    err = _check_refused(capsys, code, tmp_path, before, "'s9' not in dataset", "['s1']")
    assert not err.splitlines()[-1].startswith("brainenc transfer: error: \"")


def test_bare_name_resolves_inside_the_dataset_first(dataset, tmp_path, monkeypatch):
    decoy = tmp_path / "work" / "feats"
    decoy.mkdir(parents=True)
    monkeypatch.chdir(tmp_path / "work")
    space = find_feature_space("feats", dataset / "features")
    assert space.root == (dataset / "features" / "feats").resolve()
    assert space.root.is_absolute()
    assert find_feature_space("./feats", dataset / "features").root == decoy.resolve()
    with pytest.raises(BrainencInputError, match=r"pass \./other"):
        (tmp_path / "work" / "other").mkdir()
        find_feature_space("other", dataset / "features")


def test_settings_hold_the_absolute_feature_path(dataset, tmp_path, monkeypatch):
    import json

    monkeypatch.chdir(tmp_path)
    (tmp_path / "feats").mkdir()  # a decoy that must not be taken
    assert main(["transfer", "--dataset", "ds", "--subject", "s1", "--features", "feats",
                 "--out", "res", "--no-significance", "--no-report", "--quiet"]) == 0
    settings = json.loads((tmp_path / "res" / "summary.json").read_text())["results"][0]["settings"]
    assert settings["feature_space_path"] == str((dataset / "features" / "feats").resolve())
    assert settings["dataset"] == str(dataset.resolve())


def _rewrite(path, **datasets):
    with h5py.File(path, "w") as f:
        for name, value in datasets.items():
            if isinstance(value, str) and value == "group":
                f.create_group(name)
            else:
                f.create_dataset(name, data=value)


@pytest.mark.parametrize("data, times, fragment", [
    (np.ones((4, 2)), np.array([3.0, 2.0, 1.0, 0.5]), "'times' must be sorted"),
    (np.ones((4, 2)), np.array([0.0, 2.0, 1.0, 3.0]), "row 2 has time 1 after 2"),
    (np.array([[b"a", b"b"]] * 4), np.arange(4.0), "'data' holds |S1 values"),
    ("group", np.arange(4.0), "'data' is an HDF5 group"),
    (np.full((4, 2), 1e300), np.arange(4.0), "outside the float32 range"),
    (np.ones((4, 2)) * (1 + 1j), np.arange(4.0), "complex"),
    (np.ones((4, 2)), np.array([b"0", b"1", b"2", b"3"]), "'times' holds"),
])
def test_bad_feature_files_name_file_and_field(tmp_path, data, times, fragment):
    path = tmp_path / "stim.hf5"
    _rewrite(path, data=data, times=times)
    with pytest.raises(BrainencInputError, match="stim.hf5") as error:
        read_stimulus_features(path)
    assert fragment in str(error.value)


def test_reversed_feature_times_stop_the_cli(dataset, tmp_path, capsys, no_fit):
    path = dataset / "features" / "feats" / "story0.hf5"
    old = read_stimulus_features(path)
    _rewrite(path, data=old.data, times=old.times[::-1].copy())
    before = tree_state(tmp_path)
    code = _transfer(dataset, tmp_path / "out", "--features", "feats")
    _check_refused(capsys, code, tmp_path, before, "story0.hf5", "must be sorted")


def test_demo_passes_its_statistics_options_on(tmp_path, monkeypatch):
    import brainenc.analyses.comparison
    import brainenc.simulate
    import brainenc.workflows

    seen = []
    real = brainenc.simulate.simulate_dataset

    def small(out, **kwargs):
        return real(out, n_stories=3, n_movies=3, n_trs_per_run=40, **kwargs)

    def record(*args, **kwargs):
        seen.append(kwargs)
        raise BrainencInputError(None, "stop here")

    monkeypatch.setattr(brainenc.simulate, "simulate_dataset", small)
    monkeypatch.setattr(brainenc.transfer, "run_transfers", record)
    # with the tests, the demo analyses both spaces through their comparison
    monkeypatch.setattr(brainenc.analyses.comparison, "compare_feature_spaces", record)
    code = main(["demo", "--out", str(tmp_path / "demo"), "--fdr-q", "0.5",
                 "--max-lag", "3", "--quiet"])
    assert code == 2
    assert seen[0]["fdr_q"] == 0.5 and seen[0]["max_lag"] == 3
    assert seen[0]["significance"] is True
    assert list(tmp_path.iterdir()) == []


def test_run_transfer_checks_its_options_too(dataset):
    from brainenc.io.layouts import load_dataset

    with pytest.raises(BrainencInputError, match="--max-lag"):
        brainenc.transfer.run_transfer(load_dataset(dataset), "s1", "feats", max_lag=-5)


def test_lags_without_tests_and_twice_named_test_runs_are_refused(dataset, tmp_path, capsys, no_fit):
    before = tree_state(tmp_path)
    code = _transfer(dataset, tmp_path / "out", "--features", "feats", "--max-lag", "5",
                     "--no-significance")
    _check_refused(capsys, code, tmp_path, before, "--max-lag", "no effect with --no-significance")
    code = _transfer(dataset, tmp_path / "out", "--features", "feats", "--test-movie", "movie0",
                     "movie0")
    _check_refused(capsys, code, tmp_path, before, "--test-movie", "more than once")


def test_lags_longer_than_half_a_run_fail_before_any_fit(dataset, tmp_path, capsys, no_fit):
    before = tree_state(tmp_path)
    code = _transfer(dataset, tmp_path / "out", "--features", "feats", "--max-lag", "100000")
    _check_refused(capsys, code, tmp_path, before, "--max-lag 100000",
                   "too short to estimate the response autocorrelation")


def test_cuda_backend_without_a_gpu_is_a_clean_error(dataset, tmp_path, capsys, no_fit):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    before = tree_state(tmp_path)
    code = _transfer(dataset, tmp_path / "out", "--features", "feats", "--backend", "torch_cuda")
    _check_refused(capsys, code, tmp_path, before, "--backend torch_cuda")


@pytest.mark.parametrize("option, value, fragment", [
    ("--snr", "nan", "snr must be a finite number"),
    ("--snr", "inf", "snr must be a finite number"),
    ("--snr", "1e300", "--snr must be positive and at most"),
    ("--seed", "-5", "--seed"),
    ("--noise-rho", "1.5", "--noise-rho must be in [0, 1)"),
    ("--n-stories", "-1", "--n-stories must be a whole number from 1"),
    ("--n-trs-per-run", "1000000000", "--n-trs-per-run must be a whole number"),
    ("--regions-per-hemi", "1000000000", "--regions-per-hemi must be a whole number from 1 to 10"),
    ("--story-repeats", "3", "--story-repeats > 1 needs --layout"),
])
def test_simulate_refuses_impossible_parameters(tmp_path, capsys, option, value, fragment):
    code = main(["simulate", str(tmp_path / "sim"), option, value])
    assert_refused(capsys, code, fragment)
    assert list(tmp_path.iterdir()) == []

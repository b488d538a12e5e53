"""Confound regression of fMRIPrep runs equals a direct nilearn call on the same data."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from nilearn import signal
from nilearn.interfaces.fmriprep import load_confounds, load_confounds_strategy

from brainenc.errors import BrainencInputError
from brainenc.io.confounds import ResponseCleaning
from brainenc.io.layouts import load_dataset
from brainenc.io.responses import load_responses
from test_layouts import TEXTGRID, build_bids, write_json, write_nifti, write_text

MOTION = ["trans_x", "trans_y", "trans_z", "rot_x", "rot_y", "rot_z"]


def write_confounds(path, n_volumes: int, rng, outlier: int | None = None) -> pd.DataFrame:
    """An fMRIPrep confounds table with the columns nilearn's strategies read."""
    columns = {}
    for name in MOTION:
        base = np.cumsum(rng.standard_normal(n_volumes)) * 0.05
        columns[name] = base
        columns[f"{name}_derivative1"] = np.r_[np.nan, np.diff(base)]
        columns[f"{name}_power2"] = base ** 2
        columns[f"{name}_derivative1_power2"] = columns[f"{name}_derivative1"] ** 2
    for name in ("white_matter", "csf", "global_signal"):
        columns[name] = rng.standard_normal(n_volumes)
        columns[f"{name}_derivative1"] = np.r_[np.nan, np.diff(columns[name])]
        columns[f"{name}_power2"] = columns[name] ** 2
        columns[f"{name}_derivative1_power2"] = columns[f"{name}_derivative1"] ** 2
    times = np.arange(n_volumes)
    for k in range(2):
        columns[f"cosine{k:02d}"] = np.cos(np.pi * (k + 1) * (times + 0.5) / n_volumes)
    columns["framewise_displacement"] = np.r_[np.nan, np.abs(rng.standard_normal(n_volumes - 1)) * 0.1]
    columns["std_dvars"] = np.r_[np.nan, 1 + 0.1 * rng.standard_normal(n_volumes - 1)]
    if outlier is not None:
        flag = np.zeros(n_volumes)
        flag[outlier] = 1
        columns["non_steady_state_outlier00"] = flag
    table = pd.DataFrame(columns)
    table.to_csv(path, sep="\t", index=False, na_rep="n/a")
    return table


@pytest.fixture
def bids_with_confounds(tmp_path):
    rng = np.random.default_rng(5)
    fmriprep, truth = build_bids(tmp_path, rng)
    func = fmriprep / "sub-01" / "func"
    write_confounds(func / "sub-01_task-story_run-1_desc-confounds_timeseries.tsv", 20, rng)
    write_confounds(func / "sub-01_task-movie_desc-confounds_timeseries.tsv", 16, rng)
    volume_func = fmriprep / "sub-02" / "ses-1" / "func"
    write_confounds(volume_func / "sub-02_ses-1_task-story_run-1_desc-confounds_timeseries.tsv", 14, rng)
    return tmp_path, truth


def _direct(raw_rows: np.ndarray, image: str, run, strategy, **options) -> np.ndarray:
    """nilearn's own loader and cleaner on the analysed rows (trim 2 at the start, 1 at the end)."""
    if isinstance(strategy, str):
        table, _ = load_confounds_strategy(image, denoise_strategy=strategy)
    else:
        table, _ = load_confounds(image, strategy=strategy)
    stop = len(table) - run.trim_end
    return signal.clean(raw_rows.astype(np.float64), confounds=table.to_numpy()[run.trim_start:stop],
                        standardize=None, t_r=run.tr_grid.tr, **options)


@pytest.mark.parametrize("strategy", ["simple", ("motion", "wm_csf")])
def test_confound_regression_equals_nilearn_clean(bids_with_confounds, strategy):
    root, truth = bids_with_confounds
    cleaning = ResponseCleaning(strategy=strategy, detrend=True)
    dataset = load_dataset(root, cleaning=cleaning)
    story = next(r for r in dataset.runs if r.name == "task-story_run-1")
    expected = _direct(truth["story_surface"][2:19], str(story.response_paths[0]), story, strategy,
                       detrend=True, filter=False)
    cleaned = load_responses(story)
    np.testing.assert_allclose(cleaned, expected.astype(np.float32), rtol=1e-5, atol=1e-5)
    # and the cleaning did something: the raw rows are not the cleaned ones
    assert np.abs(cleaned - truth["story_surface"][2:19]).max() > 0.1

    volume_run = next(r for r in dataset.runs if r.subject == "02")
    expected = _direct(truth["volume"][2:13], str(volume_run.response_paths[0]), volume_run,
                       strategy, detrend=True, filter=False)
    np.testing.assert_allclose(load_responses(volume_run), expected.astype(np.float32),
                               rtol=1e-5, atol=1e-5)


def _long_volume_run(root, rng, n_volumes: int = 90) -> np.ndarray:
    """A BIDS dataset of one MNI volume run (TR 2 s) with its confounds; its voxel rows."""
    func = root / "derivatives" / "fmriprep" / "sub-01" / "func"
    prefix = "sub-01_task-story"
    drift = np.linspace(0, 3, n_volumes)[:, None, None, None].T
    volume = (rng.standard_normal((3, 3, 3, n_volumes)) + drift).astype(np.float32)
    mask = np.ones((3, 3, 3), dtype=np.uint8)
    write_nifti(func / f"{prefix}_space-MNI152NLin2009cAsym_desc-preproc_bold.nii.gz", volume, 2.0)
    write_nifti(func / f"{prefix}_space-MNI152NLin2009cAsym_desc-brain_mask.nii.gz", mask)
    write_confounds(func / f"{prefix}_desc-confounds_timeseries.tsv", n_volumes, rng)
    write_text(root / "sub-01" / "func" / f"{prefix}_events.tsv",
               "onset\tduration\tstim_file\n0.0\t30.0\tstory.TextGrid\n")
    write_text(root / "stimuli" / "story.TextGrid", TEXTGRID)
    write_json(root / "dataset_description.json", {"Name": "long", "BIDSVersion": "1.8.0"})
    return np.stack([volume[..., t].ravel() for t in range(n_volumes)])


@pytest.mark.parametrize("strategy", [None, "simple"])
def test_high_pass_and_detrend_equal_nilearn_clean(tmp_path, strategy):
    rows = _long_volume_run(tmp_path, np.random.default_rng(6))
    cleaning = ResponseCleaning(strategy=strategy, detrend=True, high_pass=0.02)
    run = load_dataset(tmp_path, cleaning=cleaning).runs[0]
    options = dict(detrend=True, filter="butterworth", high_pass=0.02)
    if strategy is None:
        expected = signal.clean(rows.astype(np.float64), standardize=None, t_r=2.0, **options)
    else:
        expected = _direct(rows, str(run.response_paths[0]), run, strategy, **options)
    cleaned = load_responses(run)
    np.testing.assert_allclose(cleaned, expected.astype(np.float32), rtol=1e-5, atol=1e-5)
    # the planted linear drift is gone
    assert abs(np.polyfit(np.arange(len(cleaned)), cleaned.mean(axis=1), 1)[0]) < 1e-3


def test_a_run_too_short_for_the_filter_is_named(tmp_path):
    _long_volume_run(tmp_path, np.random.default_rng(9), n_volumes=12)
    run = load_dataset(tmp_path, cleaning=ResponseCleaning(high_pass=0.02)).runs[0]
    with pytest.raises(BrainencInputError, match="too short for the high-pass filter"):
        load_responses(run)


def test_missing_confounds_file_fails_when_the_dataset_is_loaded(tmp_path):
    build_bids(tmp_path, np.random.default_rng(7))
    with pytest.raises(BrainencInputError, match="confounds for strategy 'simple'"):
        load_dataset(tmp_path, cleaning=ResponseCleaning(strategy="simple"))


def test_censoring_inside_the_analysed_rows_is_refused(bids_with_confounds):
    root, _ = bids_with_confounds
    func = root / "derivatives" / "fmriprep" / "sub-01" / "func"
    rng = np.random.default_rng(8)
    write_confounds(func / "sub-01_task-movie_desc-confounds_timeseries.tsv", 16, rng, outlier=5)
    with pytest.raises(BrainencInputError, match=r"volumes \[5\].*censored"):
        load_dataset(root, cleaning=ResponseCleaning(strategy=("motion",)))
    # an outlier among the trimmed volumes is fine
    write_confounds(func / "sub-01_task-movie_desc-confounds_timeseries.tsv", 16, rng, outlier=0)
    load_dataset(root, cleaning=ResponseCleaning(strategy=("motion",)))


@pytest.mark.parametrize("options, message", [
    (dict(strategy="scrubbing"), "censors high-motion volumes"),
    (dict(strategy=("motion", "scrub")), "censors high-motion volumes"),
    (dict(strategy="aggressive"), "unknown confound strategy"),
    (dict(strategy=("motion", "typo")), "unknown confound components"),
    (dict(high_pass=-0.01), "positive frequency in Hz"),
])
def test_bad_cleaning_settings(options, message):
    with pytest.raises(BrainencInputError, match=message):
        ResponseCleaning(**options)


def test_command_without_confounds_files_is_refused_before_any_fit(tmp_path, capsys):
    from brainenc.cli import main
    from brainenc.simulate import simulate_dataset
    from safety import assert_refused

    simulate_dataset(tmp_path / "ds", layout="bids", n_stories=3, n_movies=3, seed=2)
    code = main(["encode", "--dataset", str(tmp_path / "ds"), "--subject", "sim01", "--features",
                 "multimodal", "--out", str(tmp_path / "out"), "--confounds", "simple", "--quiet"])
    assert_refused(capsys, code, "_bold.func.gii", "confounds for strategy 'simple'")
    assert not (tmp_path / "out").exists()
    code = main(["encode", "--dataset", str(tmp_path / "ds"), "--subject", "sim01", "--features",
                 "multimodal", "--out", str(tmp_path / "out"), "--confounds", "motion", "scrub"])
    assert_refused(capsys, code, "censors high-motion volumes")

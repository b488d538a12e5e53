"""Noise ceilings: explainable variance from repeats, against closed forms and references."""
from __future__ import annotations

import itertools
import json
import statistics
import warnings

import h5py
import nibabel as nib
import numpy as np
import pytest
from scipy import stats
from scipy.special import gammaln, hyp2f1

from brainenc.analyses.ceilings import (
    bias_corrected,
    explainable_variance,
    noise_ceiling,
    normalised_correlation,
    repeated_stimuli,
)
from brainenc.errors import BrainencInputError, BrainencInputWarning
from brainenc.io.layouts import load_dataset

TEXTGRID = "\n".join([
    'File type = "ooTextFile"', 'Object class = "TextGrid"', "", "0", "2", "<exists>", "1",
    '"IntervalTier"', '"word"', "0", "2", "2", "0", "1", '"hello"', "1", "2", '"there"',
]) + "\n"


def expected_correlation(rho: float, n: int) -> float:
    """Exact mean of the sample correlation of ``n`` bivariate-normal pairs (Hotelling):
    ``rho * G(n/2)^2 / (G((n-1)/2) G((n+1)/2)) * 2F1(1/2, 1/2; (n+1)/2; rho^2)``."""
    log_ratio = 2 * gammaln(n / 2) - gammaln((n - 1) / 2) - gammaln((n + 1) / 2)
    return rho * np.exp(log_ratio) * hyp2f1(0.5, 0.5, (n + 1) / 2, rho**2)


def repeats_with_signal(rng, signal_variance, n_repeats, n_trs, n_voxels):
    """Each voxel: a white signal of the given variance plus unit white noise per repeat."""
    signal = np.sqrt(signal_variance) * rng.standard_normal((n_trs, n_voxels))
    return signal + rng.standard_normal((n_repeats, n_trs, n_voxels))


# --------------------------------------------------------------------------- #
# The estimator against closed forms
# --------------------------------------------------------------------------- #
@pytest.mark.parametrize("n_repeats", [2, 3, 5])
def test_estimate_matches_the_closed_form_expectation(n_repeats):
    """Signal variance s^2, noise variance 1: the population EV of one presentation is
    e = s^2 / (s^2 + 1). Rows are i.i.d. normal across repeats with correlation e, and
    EV_c is exactly the mean pairwise sample correlation, so E[EV_c] = E[r] (Hotelling's
    exact mean, e up to O(1/T)) and E[EV] = 1/R + (R - 1)/R E[r] = e + (1 - e)/R + O(1/T)."""
    rng = np.random.default_rng(n_repeats)
    n_trs, n_voxels = 100, 3000
    for signal_variance in (0.0, 0.25, 1.0, 4.0):
        e = signal_variance / (signal_variance + 1)
        repeats = repeats_with_signal(rng, signal_variance, n_repeats, n_trs, n_voxels)
        corrected = explainable_variance(repeats)
        plain = explainable_variance(repeats, bias_correction=False)
        exact_r = expected_correlation(e, n_trs)
        se_c = corrected.std() / np.sqrt(n_voxels)
        se = plain.std() / np.sqrt(n_voxels)

        # Corrected: unbiased for E[r], which is e up to a small-sample term below 0.002.
        assert abs(corrected.mean() - exact_r) < 4 * se_c
        assert abs(exact_r - e) < 0.002
        assert abs(corrected.mean() - e) < 4 * se_c + abs(exact_r - e)
        # Uncorrected: biased upwards by the noise left in the average, (1 - e)/R.
        assert abs(plain.mean() - (1 / n_repeats + (n_repeats - 1) / n_repeats * exact_r)) < 4 * se
        bias = plain.mean() - e
        assert bias == pytest.approx((1 - e) / n_repeats, abs=4 * se + 0.002)
        if e < 1:
            assert bias > 20 * se          # far beyond Monte-Carlo error


def test_bias_corrected_value_is_the_mean_pairwise_correlation():
    rng = np.random.default_rng(1)
    repeats = rng.gamma(2.0, size=(4, 30, 25)) + rng.standard_normal((30, 25))
    corrected = explainable_variance(repeats)
    for voxel in range(25):
        pairs = [np.corrcoef(repeats[a, :, voxel], repeats[b, :, voxel])[0, 1]
                 for a, b in itertools.combinations(range(4), 2)]
        assert corrected[voxel] == pytest.approx(np.mean(pairs), abs=1e-12)
    np.testing.assert_allclose(bias_corrected(explainable_variance(repeats, False), 4),
                               corrected, atol=1e-14)


def reference_explainable_variance(repeats, bias_correction=True):
    """Plain per-voxel loops: z-score each repeat (scipy), average, ratio of variances."""
    n_repeats, _, n_voxels = repeats.shape
    values = []
    for voxel in range(n_voxels):
        z = [stats.zscore(repeats[r, :, voxel]) for r in range(n_repeats)]
        average = [statistics.fmean(column) for column in zip(*z)]
        ev = statistics.variance(average) / statistics.fmean(statistics.variance(x) for x in z)
        values.append(ev - (1 - ev) / (n_repeats - 1) if bias_correction else ev)
    return np.array(values)


def test_matches_a_plain_reference_implementation():
    rng = np.random.default_rng(2)
    repeats = repeats_with_signal(rng, 0.7, 3, 40, 12) * rng.uniform(0.5, 5, 12) + 10.0
    for correction in (True, False):
        np.testing.assert_allclose(explainable_variance(repeats, correction),
                                   reference_explainable_variance(repeats, correction),
                                   atol=1e-12)
    # A list of (time, voxels) arrays, float32, is the same input.
    as_list = [r.astype(np.float32) for r in repeats]
    np.testing.assert_allclose(explainable_variance(as_list),
                               reference_explainable_variance(np.array(as_list, np.float64)),
                               atol=1e-6)


def test_constant_voxels_give_nan_and_others_are_untouched():
    rng = np.random.default_rng(3)
    repeats = repeats_with_signal(rng, 1.0, 3, 50, 6)
    repeats[1, :, 2] = 0.1              # constant in one repeat only
    repeats[:, :, 4] = 7.0              # constant everywhere
    ev = explainable_variance(repeats)
    assert np.isnan(ev[[2, 4]]).all() and np.isfinite(ev[[0, 1, 3, 5]]).all()
    np.testing.assert_allclose(ev[[0, 1, 3, 5]],
                               explainable_variance(repeats[:, :, [0, 1, 3, 5]]), atol=1e-12)


@pytest.mark.parametrize("repeats, fragment", [
    (np.zeros((1, 10, 3)), "at least 2 repeats"),
    (np.zeros((3, 1, 3)), "at least 2 time points"),
    (np.zeros((10, 3)), "shape (n_repeats, n_trs, n_voxels)"),
    ([np.zeros((10, 3)), np.zeros((9, 3))], "same shape"),
    (np.full((2, 10, 3), np.nan), "NaN or infinite"),
    (np.zeros((2, 10, 3), dtype=complex), "real numbers"),
])
def test_bad_repeats_are_refused_with_a_clear_message(repeats, fragment):
    with pytest.raises(ValueError) as error:
        explainable_variance(repeats)
    assert fragment in str(error.value)


# --------------------------------------------------------------------------- #
# Normalised correlations
# --------------------------------------------------------------------------- #
def test_normalised_correlation_divides_by_the_root_where_positive():
    r = np.array([0.3, 0.2, 0.5, np.nan, 0.4, -0.1])
    ev_c = np.array([0.36, 0.0, -0.2, 0.5, np.nan, 0.04])
    result = normalised_correlation(r, ev_c)
    np.testing.assert_allclose(result.values, [0.5, np.nan, np.nan, np.nan, np.nan, -0.5])
    assert result.n_kept == 2
    strict = normalised_correlation(r, ev_c, min_ev=0.05)
    assert strict.n_kept == 1 and np.isnan(strict.values[5])
    with pytest.raises(ValueError, match="shape"):
        normalised_correlation(r, ev_c[:3])
    with pytest.raises(ValueError, match="min_ev"):
        normalised_correlation(r, ev_c, min_ev=-0.1)


def test_a_perfect_model_reaches_one_after_normalisation():
    """corr(signal, one repeat) = sqrt(e) on average: divided by sqrt(EV_c) it is about 1."""
    rng = np.random.default_rng(4)
    signal = rng.standard_normal((200, 2000))
    repeats = signal + rng.standard_normal((4, 200, 2000))
    centred_s, centred_y = signal - signal.mean(0), repeats[0] - repeats[0].mean(0)
    r = (centred_s * centred_y).sum(0) / np.sqrt((centred_s**2).sum(0) * (centred_y**2).sum(0))
    result = normalised_correlation(r, explainable_variance(repeats))
    assert result.n_kept == 2000
    assert np.median(result.values) == pytest.approx(1.0, abs=0.02)


# --------------------------------------------------------------------------- #
# Repeats in the dataset layouts
# --------------------------------------------------------------------------- #
def write_gifti(path, vertices_by_trs):
    path.parent.mkdir(parents=True, exist_ok=True)
    image = nib.gifti.GiftiImage(darrays=[
        nib.gifti.GiftiDataArray(np.ascontiguousarray(column, dtype=np.float32))
        for column in vertices_by_trs.T])
    nib.save(image, str(path))


def write_text(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def build_bids_repeats(root, responses: dict, onsets: dict | None = None, events=True):
    """BIDS runs ``task-<task>[_run-<n>]`` of subject 01 with small surface pairs.

    ``responses``: ``{(task, run or None): (n_trs, n_vertices) array}``; the task is
    the stimulus (``story*`` a TextGrid, ``movie*`` a frame table).
    """
    func = root / "derivatives" / "fmriprep" / "sub-01" / "func"
    for (task, run), data in responses.items():
        stem = f"sub-01_task-{task}" + ("" if run is None else f"_run-{run}")
        half = data.shape[1] // 2
        for hemi, block in (("L", data[:, :half]), ("R", data[:, half:])):
            write_gifti(func / f"{stem}_hemi-{hemi}_space-fsnative_bold.func.gii", block.T)
        write_text(func / f"{stem}_hemi-L_space-fsnative_bold.json",
                   json.dumps({"RepetitionTime": 2.0}))
        stim_file = f"{task}.TextGrid" if task.startswith("story") else f"{task}_frames.tsv"
        onset = (onsets or {}).get((task, run), 0.0)
        if events:
            write_text(root / "sub-01" / "func" / f"{stem}_events.tsv",
                       f"onset\tduration\tstim_file\n{onset}\t60\t{stim_file}\n")
        write_text(root / "stimuli" / stim_file,
                   TEXTGRID if task.startswith("story") else "time\n0.0\n0.5\n")
    return root


def build_manifest_repeats(root, rows):
    """A manifest with ``.npy`` responses; ``rows``: (run, modality, stimulus, data, extras)."""
    header = ["subject", "run", "modality", "response", "stimulus", "tr", "stimulus_onset",
              "trim_start", "trim_end"]
    lines = ["\t".join(header)]
    root.mkdir(parents=True, exist_ok=True)
    for run, modality, stimulus, data, extras in rows:
        np.save(root / f"{run}.npy", data.astype(np.float32))
        values = {"subject": "s1", "run": run, "modality": modality, "response": f"{run}.npy",
                  "stimulus": stimulus, "tr": "2.0", "stimulus_onset": "0", "trim_start": "0",
                  "trim_end": "0", **extras}
        lines.append("\t".join(str(values[column]) for column in header))
    write_text(root / "brainenc_manifest.tsv", "\n".join(lines) + "\n")
    return root


def test_bids_runs_of_one_task_are_repeats_and_give_the_ceiling(tmp_path):
    rng = np.random.default_rng(5)
    story = repeats_with_signal(rng, 1.0, 3, 40, 8)
    movie = repeats_with_signal(rng, 0.3, 2, 30, 8)
    other = rng.standard_normal((40, 8))
    responses = {("storyA", 1): story[0], ("storyA", 2): story[1], ("storyA", 3): story[2],
                 ("storyB", None): other, ("movieA", 1): movie[0], ("movieA", 2): movie[1]}
    dataset = load_dataset(build_bids_repeats(tmp_path / "bids", responses))

    stories = repeated_stimuli(dataset.runs_for("01", "story"))
    assert {s: [run.name for run in runs] for s, runs in stories.items()} == {
        "storyA": ["task-storyA_run-1", "task-storyA_run-2", "task-storyA_run-3"]}
    movies = repeated_stimuli(dataset.runs_for("01", "movie"))
    assert [run.name for run in movies["movieA"]] == ["task-movieA_run-1", "task-movieA_run-2"]

    ceiling = noise_ceiling(dataset, "01", "story")
    assert (ceiling.stimuli, ceiling.n_repeats, ceiling.n_trs) == (("storyA",), (3,), (40,))
    assert ceiling.runs == (("task-storyA_run-1", "task-storyA_run-2", "task-storyA_run-3"),)
    np.testing.assert_allclose(ceiling.ev_corrected, explainable_variance(story.astype(np.float32)),
                               atol=1e-9)
    np.testing.assert_allclose(ceiling.ev, explainable_variance(story.astype(np.float32), False),
                               atol=1e-9)
    # A small voxel batch gives the same numbers.
    small = noise_ceiling(dataset, "01", "movie", voxel_batch=3)
    np.testing.assert_allclose(small.ev_corrected, explainable_variance(movie.astype(np.float32)),
                               atol=1e-9)


def test_bids_repeats_without_events_files_are_found_by_task(tmp_path):
    rng = np.random.default_rng(6)
    responses = {("storyA", 1): rng.standard_normal((20, 4)),
                 ("storyA", 2): rng.standard_normal((20, 4))}
    with pytest.warns(BrainencInputWarning, match="onset 0 s assumed"):
        dataset = load_dataset(build_bids_repeats(tmp_path / "b", responses, events=False))
    assert list(repeated_stimuli(dataset.runs_for("01", "story"))) == ["storyA"]


def test_manifest_rows_with_one_stimulus_pool_by_rows(tmp_path):
    rng = np.random.default_rng(7)
    first = repeats_with_signal(rng, 2.0, 2, 50, 6)
    second = repeats_with_signal(rng, 0.5, 4, 30, 6)
    rows = [(f"a{k}", "story", "alpha", first[k], {}) for k in range(2)]
    # The last repeat of beta has 2 volumes before the stimulus and 1 after, which its
    # trims drop: the same rows after trimming.
    rows += [(f"b{k}", "story", "beta", second[k], {}) for k in range(3)]
    padded = np.vstack([np.zeros((2, 6)), second[3], np.zeros((1, 6))])
    rows += [("b3", "story", "beta", padded,
              {"trim_start": 2, "trim_end": 1, "stimulus_onset": 4})]
    rows += [("c0", "story", "gamma", rng.standard_normal((30, 6)), {}),
             ("m0", "movie", "alpha", rng.standard_normal((30, 6)), {})]
    dataset = load_dataset(build_manifest_repeats(tmp_path / "m", rows))

    with warnings.catch_warnings():
        warnings.simplefilter("error", BrainencInputWarning)
        groups = repeated_stimuli(dataset.runs_for("s1", "story"))
    assert {s: [run.name for run in runs] for s, runs in groups.items()} == {
        "alpha": ["a0", "a1"], "beta": ["b0", "b1", "b2", "b3"]}
    assert repeated_stimuli(dataset.runs_for("s1", "movie")) == {}

    ceiling = noise_ceiling(dataset, "s1", "story")
    assert ceiling.stimuli == ("alpha", "beta") and ceiling.n_repeats == (2, 4)
    assert ceiling.n_trs == (50, 30)
    ev_a = explainable_variance(first.astype(np.float32))
    ev_b = explainable_variance(second.astype(np.float32))
    np.testing.assert_allclose(ceiling.ev_corrected, (50 * ev_a + 30 * ev_b) / 80, atol=1e-9)
    plain = (50 * explainable_variance(first.astype(np.float32), False)
             + 30 * explainable_variance(second.astype(np.float32), False)) / 80
    np.testing.assert_allclose(ceiling.ev, plain, atol=1e-9)
    with pytest.raises(BrainencInputError, match="no movie stimulus presented more than once"):
        noise_ceiling(dataset, "s1", "movie")


def test_repeats_of_different_lengths_are_an_error_naming_runs_and_lengths(tmp_path):
    rng = np.random.default_rng(8)
    rows = [("a0", "story", "alpha", rng.standard_normal((40, 3)), {}),
            ("a1", "story", "alpha", rng.standard_normal((40, 3)), {"trim_end": 2})]
    dataset = load_dataset(build_manifest_repeats(tmp_path / "m", rows))
    with pytest.raises(BrainencInputError) as error:
        repeated_stimuli(dataset.runs)
    message = str(error.value)
    for fragment in ("'alpha'", "a0: 40 rows", "a1: 38 rows", "a1.npy"):
        assert fragment in message


def test_repeats_with_different_onsets_warn(tmp_path):
    rng = np.random.default_rng(9)
    rows = [("a0", "story", "alpha", rng.standard_normal((40, 3)), {}),
            ("a1", "story", "alpha", rng.standard_normal((40, 3)), {"stimulus_onset": 2})]
    dataset = load_dataset(build_manifest_repeats(tmp_path / "m", rows))
    with pytest.warns(BrainencInputWarning, match="a0: 1 s, a1: -1 s"):
        repeated_stimuli(dataset.runs)


def test_runs_of_several_subjects_or_modalities_are_refused(tmp_path):
    rng = np.random.default_rng(10)
    rows = [("a0", "story", "alpha", rng.standard_normal((20, 3)), {}),
            ("m0", "movie", "alpha", rng.standard_normal((20, 3)), {})]
    dataset = load_dataset(build_manifest_repeats(tmp_path / "m", rows))
    with pytest.raises(ValueError, match="one modality"):
        repeated_stimuli(dataset.runs)
    with pytest.raises(ValueError, match="modality must be"):
        noise_ceiling(dataset, "s1", "audio")


def test_the_huth_layout_has_no_repeats(tmp_path):
    """One .hf5 per story, the story named by the file: no two runs share a stimulus."""
    responses = tmp_path / "derivative" / "preprocessed_data" / "S1"
    responses.mkdir(parents=True)
    for story in ("alpha", "beta"):
        with h5py.File(responses / f"{story}.hf5", "w") as handle:
            handle["data"] = np.random.default_rng(0).standard_normal((10, 4))
    write_text(tmp_path / "derivative" / "respdict.json", json.dumps({"alpha": 30, "beta": 30}))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", BrainencInputWarning)
        dataset = load_dataset(tmp_path)
    assert dataset.layout == "huth"
    assert repeated_stimuli(dataset.runs_for("S1", "story")) == {}
    with pytest.raises(BrainencInputError, match="no story stimulus presented more than once"):
        noise_ceiling(dataset, "S1", "story")


# --------------------------------------------------------------------------- #
# The simulated subject with repeats
# --------------------------------------------------------------------------- #
@pytest.fixture(scope="module")
def simulated(tmp_path_factory):
    from brainenc.simulate import load_ground_truth, simulate_dataset

    info = simulate_dataset(tmp_path_factory.mktemp("sim") / "bids", layout="bids",
                            n_stories=1, n_movies=1, n_trs_per_run=(80, 100), seed=3,
                            snr=(0.05, 2.0), story_repeats=4, movie_repeats=3)
    return load_dataset(info.root), load_ground_truth(info.root)


@pytest.mark.parametrize("modality, n_repeats", [("story", 4), ("movie", 3)])
def test_simulated_ceiling_matches_the_true_explainable_variance(simulated, modality,
                                                                  n_repeats):
    dataset, truth = simulated
    ceiling = noise_ceiling(dataset, "sim01", modality)
    assert ceiling.stimuli == (truth.ev_stimulus[modality],)
    assert ceiling.n_repeats == (n_repeats,)
    true_ev = truth.explainable_variance[modality].astype(np.float64)
    signal = true_ev > 0
    estimate = ceiling.ev_corrected
    assert signal.sum() > 500
    # About 100 rows per repeat: each vertex's estimate scatters by about 0.05-0.07 around
    # its true value (seed 3: correlation 0.85 stories, 0.91 movies; mean difference
    # -0.002 and +0.007), and the noise is smooth across vertices, so errors clump.
    assert np.corrcoef(estimate[signal], true_ev[signal])[0, 1] > 0.8
    assert abs(np.mean(estimate[signal] - true_ev[signal])) < 0.02
    # Pure-noise vertices: EV_c about 0, the uncorrected EV about 1/R.
    noise = truth.mask("noise")
    assert abs(estimate[noise].mean()) < 0.005
    assert ceiling.ev[noise].mean() == pytest.approx(1 / n_repeats, abs=0.005)

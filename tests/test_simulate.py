"""The simulated subject: layouts, timing, regions, HRF, noise, SNR and features."""
from __future__ import annotations

import json
import math
from pathlib import Path

import h5py
import nibabel as nib
import numpy as np
import pytest
from praatio import textgrid as praat_textgrid
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

import brainenc.simulate as simulate
from brainenc.errors import BrainencInputError
from brainenc.simulate import (
    CATEGORY_NAMES,
    N_VERTICES,
    canonical_hrf,
    load_ground_truth,
    simulate_dataset,
)

SMALL = dict(n_stories=2, n_movies=2, n_trs_per_run=40, seed=3, snr=0.4, noise_rho=0.4)
FILLERS = {"sentence_start", "sentence_end", "br", "lg", "ls", "ns", "sp"}
N_HEMI = N_VERTICES // 2


@pytest.fixture(scope="module")
def huth(tmp_path_factory):
    root = tmp_path_factory.mktemp("sim") / "huth"
    return simulate_dataset(root, layout="huth", save_signal=True, **SMALL)


@pytest.fixture(scope="module")
def bids(tmp_path_factory):
    root = tmp_path_factory.mktemp("sim") / "bids"
    return simulate_dataset(root, layout="bids", save_signal=True, **SMALL)


def read_hf5(path, name="data"):
    with h5py.File(path, "r") as f:
        return f[name][()]


def written_response(run) -> np.ndarray:
    """Rows × vertices from the file(s) of a run, read with plain h5py / nibabel."""
    if len(run.response_paths) == 1:
        return read_hf5(run.response_paths[0])
    return np.concatenate([nib.load(p).agg_data() for p in run.response_paths], axis=0).T


def word_intervals(path):
    grid = praat_textgrid.openTextgrid(str(path), includeEmptyIntervals=True)
    return grid, [
        (e.start, e.end, e.label.lower()) for e in grid.getTier("word").entries
        if e.label.strip("{} ").lower() not in FILLERS and e.label.strip()
    ]


def by_modality(info, modality):
    return [run for run in info.runs if run.modality == modality]


# --------------------------------------------------------------------------- #
# Layout and timing
# --------------------------------------------------------------------------- #
def test_huth_layout_files_and_timing(huth):
    deriv = huth.root / "derivative"
    respdict = json.loads((deriv / "respdict.json").read_text())
    config = json.loads((deriv / "brainenc.json").read_text())
    assert config["space"] == "fsaverage5"
    assert sorted(respdict) == ["story01", "story02"]
    assert sorted(config["movies"]) == ["movie01", "movie02"]
    rows = SMALL["n_trs_per_run"]
    for run in by_modality(huth, "story"):
        n = respdict[run.name]
        assert n == rows + 20
        data = read_hf5(deriv / "preprocessed_data" / "sim01" / f"{run.name}.hf5")
        assert data.shape == (n - 20, N_VERTICES) and data.dtype == np.float32
        # Grid of N - 5 volumes at 2k - 10 + 1 s, minus 10 at the start and 5 at the end.
        expected = np.array([2.0 * k - 10.0 + 1.0 for k in range(n - 5)][10:-5])
        np.testing.assert_array_equal(run.times, expected)
        grid, words = word_intervals(deriv / "TextGrids" / f"{run.name}.TextGrid")
        audio = 2.0 * n - 20.0          # 10 s of scan before and after the audio
        assert grid.maxTimestamp == pytest.approx(audio)
        assert words[-1][1] <= audio and run.times[-1] < audio
    for run in by_modality(huth, "movie"):
        entry = config["movies"][run.name]
        assert (entry["tr"], entry["start"], entry["trim_start"], entry["trim_end"]) == (
            2.0, 10.0, 10, 5)
        data = read_hf5(deriv / "preprocessed_data" / "sim01" / f"{run.name}.hf5")
        assert data.shape == (entry["n_trs"] - 15, N_VERTICES) == (rows, N_VERTICES)
        expected = 2.0 * np.arange(entry["n_trs"])[10:-5] - 10.0 + 1.0
        np.testing.assert_array_equal(run.times, expected)
        table = np.genfromtxt(deriv / entry["frames"], delimiter="\t", names=True)
        np.testing.assert_allclose(table["time"], np.arange(len(table)) / 15.0, atol=1e-12)
        np.testing.assert_array_equal(table["frame"], np.arange(len(table)))
        assert table["time"][-1] >= run.times[-1]


def test_story_transcripts_look_like_speech(huth):
    for run in by_modality(huth, "story"):
        grid, words = word_intervals(huth.root / "derivative" / "TextGrids"
                                     / f"{run.name}.TextGrid")
        assert grid.tierNames == ("phone", "word")
        tier = grid.getTier("word").entries
        # Intervals tile the transcript without gaps or overlaps.
        assert tier[0].start == 0 and tier[-1].end == pytest.approx(grid.maxTimestamp)
        assert all(a.end == pytest.approx(b.start) for a, b in zip(tier, tier[1:]))
        labels = {e.label for e in tier}
        assert {"sentence_start", "sentence_end", "sp"} <= labels
        durations = np.array([end - start for start, end, _ in words])
        assert durations.min() >= 0.15 - 1e-9 and durations.max() <= 0.6 + 1e-9
        assert 2.0 <= len(words) / grid.maxTimestamp <= 3.0
        assert {w for _, _, w in words} <= set(simulate.VOCABULARY)
        midpoints = np.array([(start + end) / 2 for start, end, _ in words])
        for space in ("multimodal", "unimodal"):
            path = huth.feature_root / space / f"{run.name}.hf5"
            np.testing.assert_allclose(read_hf5(path, "times"), midpoints, atol=1e-9)
            assert read_hf5(path).shape == (len(words), 48)


def test_bids_layout_files_and_timing(bids):
    root = bids.root
    assert json.loads((root / "dataset_description.json").read_text())["BIDSVersion"]
    prep = root / "derivatives" / "fmriprep"
    assert json.loads((prep / "dataset_description.json").read_text())["DatasetType"] == "derivative"
    signals = np.load(root / "signal.npz")
    for run in bids.runs:
        stem = f"sub-sim01_task-{run.name}"
        with open(root / "sub-sim01" / "func" / f"{stem}_events.tsv") as f:
            header, row = [line.rstrip("\n").split("\t") for line in f]
        event = dict(zip(header, row))
        assert event["modality"] == run.modality
        assert (root / "stimuli" / event["stim_file"]).is_file()
        onset, duration = float(event["onset"]), float(event["duration"])
        n_volumes = math.ceil((onset + duration + 10.0) / 2.0)
        assert run.n_rows == n_volumes
        np.testing.assert_allclose(run.times, 2.0 * np.arange(n_volumes) - onset + 1.0)
        for hemi, path in zip("LR", run.response_paths):
            assert path.name == f"{stem}_hemi-{hemi}_space-fsaverage5_bold.func.gii"
            image = nib.load(path)
            assert len(image.darrays) == n_volumes            # one data array per volume
            assert image.agg_data().shape == (N_HEMI, n_volumes)
            assert float(image.meta["TimeStep"]) == 2000.0
            sidecar = json.loads(path.with_name(path.name.replace(".func.gii", ".json")).read_text())
            assert sidecar["RepetitionTime"] == 2.0
        response = written_response(run)
        assert response.shape == signals[run.name].shape == (n_volumes, N_VERTICES)


def test_layouts_share_stimuli_and_features(huth, bids):
    for space in ("multimodal", "unimodal"):
        for name in ("story01", "story02", "movie01", "movie02"):
            a = huth.feature_root / space / f"{name}.hf5"
            b = bids.feature_root / space / f"{name}.hf5"
            np.testing.assert_array_equal(read_hf5(a), read_hf5(b))
    assert (huth.root / "derivative" / "TextGrids" / "story01.TextGrid").read_text() == (
        bids.root / "stimuli" / "story01.TextGrid").read_text()


# --------------------------------------------------------------------------- #
# Determinism
# --------------------------------------------------------------------------- #
def _all_arrays(root: Path) -> dict[str, np.ndarray]:
    arrays = {}
    for path in sorted(root.rglob("*.hf5")):
        with h5py.File(path, "r") as f:
            for key in f:
                arrays[f"{path.relative_to(root)}/{key}"] = f[key][()]
    with np.load(root / "ground_truth.npz") as f:
        arrays.update({f"gt/{k}": f[k] for k in f.files})
    return arrays


def test_same_seed_gives_same_dataset(huth, tmp_path):
    again = simulate_dataset(tmp_path / "again", layout="huth", **SMALL)
    first, second = _all_arrays(huth.root), _all_arrays(again.root)
    assert first.keys() == second.keys()
    for key in first:
        np.testing.assert_array_equal(first[key], second[key], err_msg=key)

    other = simulate_dataset(tmp_path / "other", layout="huth", **{**SMALL, "seed": 4})
    assert not np.array_equal(load_ground_truth(other.root).category,
                              load_ground_truth(huth.root).category)
    assert not np.array_equal(read_hf5(other.runs[0].response_paths[0]),
                              read_hf5(huth.runs[0].response_paths[0]))


def test_run_count_does_not_change_cortex_or_stimuli(huth, tmp_path):
    fewer = simulate_dataset(tmp_path / "fewer", layout="huth",
                             **{**SMALL, "n_stories": 1, "n_movies": 1})
    a, b = load_ground_truth(huth.root), load_ground_truth(fewer.root)
    np.testing.assert_array_equal(a.category, b.category)
    np.testing.assert_array_equal(a.weights["shared"], b.weights["shared"])
    for name in ("story01", "movie01"):
        np.testing.assert_array_equal(read_hf5(huth.feature_root / "multimodal" / f"{name}.hf5"),
                                      read_hf5(fewer.feature_root / "multimodal" / f"{name}.hf5"))


# --------------------------------------------------------------------------- #
# Ground truth: regions
# --------------------------------------------------------------------------- #
def test_regions_are_contiguous_caps(huth):
    from nilearn.datasets import load_fsaverage

    gt = load_ground_truth(huth.root)
    sphere = load_fsaverage("fsaverage5")["sphere"]
    assert gt.category.shape == gt.region.shape == (N_VERTICES,)
    assert gt.category_names == CATEGORY_NAMES
    for code in range(1, 4):
        assert np.sum(gt.region_category == code) == 4         # 2 per hemisphere
        fraction = np.mean(gt.category == code)
        assert 0.01 <= fraction <= 0.06, (CATEGORY_NAMES[code], fraction)
    in_region = gt.region >= 0
    np.testing.assert_array_equal(gt.category[in_region], gt.region_category[gt.region[in_region]])
    assert np.all(gt.category[~in_region] == 0)
    for h, hemi in enumerate(("left", "right")):
        coords = sphere.parts[hemi].coordinates
        faces = sphere.parts[hemi].faces
        region = gt.region[h * N_HEMI:(h + 1) * N_HEMI]
        edges = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
        same = (region[edges[:, 0]] == region[edges[:, 1]]) & (region[edges[:, 0]] >= 0)
        has_neighbour = np.zeros(len(region), dtype=bool)
        has_neighbour[edges[same, 0]] = True
        has_neighbour[edges[same, 1]] = True
        assert np.all(has_neighbour[region >= 0])
        for index in np.flatnonzero(np.array(gt.region_hemi) == hemi):
            members = np.flatnonzero(region == index)
            # One connected piece of mesh.
            sub = {v: i for i, v in enumerate(members)}
            inside = np.isin(edges, members).all(axis=1)
            pairs = np.array([[sub[a], sub[b]] for a, b in edges[inside]])
            graph = coo_matrix((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])),
                               shape=(len(members),) * 2)
            assert connected_components(graph, directed=False)[0] == 1
            # Exactly the vertices within the angular radius of the centre.
            centre = gt.region_center[index] / np.linalg.norm(gt.region_center[index])
            unit = coords / np.linalg.norm(coords, axis=1, keepdims=True)
            angle = np.degrees(np.arccos(np.clip(unit @ centre, -1, 1)))
            np.testing.assert_array_equal(members, np.flatnonzero(angle <= gt.region_radius_deg[index]))


def test_weights_live_only_in_their_regions(huth):
    gt = load_ground_truth(huth.root)
    for name in ("shared", "language", "vision"):
        w = gt.weights[name]
        assert w.shape == (N_VERTICES, 8)
        active = np.any(w != 0, axis=1)
        np.testing.assert_array_equal(active, gt.mask(name))


# --------------------------------------------------------------------------- #
# HRF and noise
# --------------------------------------------------------------------------- #
def _reference_hrf(t):
    """SPM double gamma written out with factorials: shapes 6 and 16, ratio 1/6."""
    def gamma_pdf(x, shape):
        return x ** (shape - 1) * np.exp(-x) / math.factorial(shape - 1)
    return gamma_pdf(t, 6) - gamma_pdf(t, 16) / 6.0


def test_canonical_hrf_shape_and_area():
    dt = 0.01
    h = canonical_hrf(dt=dt, length=32.0)
    t = np.arange(len(h)) * dt
    assert len(h) == 3200
    assert h.sum() * dt == pytest.approx(1.0, abs=1e-12)
    reference = _reference_hrf(t)
    np.testing.assert_allclose(h, reference / (reference.sum() * dt), atol=1e-10)
    assert 4.8 <= t[np.argmax(h)] <= 5.1           # peak near 5 s
    assert 14.0 <= t[np.argmin(h)] <= 17.0         # undershoot near 15 s
    assert h.min() < 0 and h[0] == 0.0


def test_noise_is_ar1_with_requested_rho(huth):
    signals = np.load(huth.root / "signal.npz")
    sums = np.zeros(3)
    counts = np.zeros(3)
    for run in huth.runs:
        noise = written_response(run).astype(np.float64) - signals[run.name]
        for lag in range(3):
            products = noise[lag:] * noise[: len(noise) - lag]
            sums[lag] += products.sum()
            counts[lag] += products.size
    # The noise mean is known to be zero, so lagged mean products estimate the
    # autocovariance without the bias of mean removal.
    autocov = sums / counts
    assert autocov[0] == pytest.approx(1.0, abs=0.01)
    assert autocov[1] / autocov[0] == pytest.approx(0.4, abs=0.02)
    assert autocov[2] / autocov[0] == pytest.approx(0.16, abs=0.02)


def test_written_responses_have_requested_snr(huth, bids):
    for info in (huth, bids):
        gt = load_ground_truth(info.root)
        signals = np.load(info.root / "signal.npz")
        for modality, readers, silent in (("story", "language", "vision"),
                                          ("movie", "vision", "language")):
            runs = by_modality(info, modality)
            sig = np.concatenate([signals[r.name] for r in runs]).astype(np.float64)
            resp = np.concatenate([written_response(r) for r in runs]).astype(np.float64)
            noise = resp - sig
            for name in ("shared", readers):
                mask = gt.mask(name)
                ratio = sig[:, mask].var(axis=0).mean() / noise[:, mask].var(axis=0).mean()
                assert ratio == pytest.approx(SMALL["snr"], rel=0.05), (modality, name)
                # The stored ceiling is the signal-response correlation.
                s = sig[:, mask] - sig[:, mask].mean(0)
                y = resp[:, mask] - resp[:, mask].mean(0)
                r = (s * y).sum(0) / np.sqrt((s**2).sum(0) * (y**2).sum(0))
                np.testing.assert_allclose(gt.max_r[modality][mask], r, atol=1e-4)
                expected = np.sqrt(SMALL["snr"] / (1 + SMALL["snr"]))
                assert r.mean() == pytest.approx(expected, abs=0.05)
            assert np.all(sig[:, gt.mask(silent) | gt.mask("noise")] == 0)
            assert np.all(gt.max_r[modality][gt.mask(silent)] == 0)


# --------------------------------------------------------------------------- #
# Features
# --------------------------------------------------------------------------- #
def _concept_matrix(root, space, names, other):
    """Least-squares mixing of [concept | other latent] into the features; concept part."""
    latents, features = [], []
    for name in names:
        with h5py.File(root / "latents" / f"{name}.hf5", "r") as f:
            latents.append(np.hstack([f["concept"][()], f[other][()]]))
            np.testing.assert_array_equal(
                f["times"][()], read_hf5(root / "features" / space / f"{name}.hf5", "times"))
        features.append(read_hf5(root / "features" / space / f"{name}.hf5"))
    z, x = np.concatenate(latents).astype(np.float64), np.concatenate(features)
    coef, *_ = np.linalg.lstsq(z, x, rcond=None)
    residual = x - z @ coef
    return coef[:8].T, residual.std()


def test_multimodal_features_share_the_concept_mixing(huth):
    gt = load_ground_truth(huth.root)
    stories, movies = ["story01", "story02"], ["movie01", "movie02"]

    def rel(a, b):
        return np.linalg.norm(a - b) / np.linalg.norm(b)

    a_story, noise_story = _concept_matrix(huth.root, "multimodal", stories, "language")
    a_movie, noise_movie = _concept_matrix(huth.root, "multimodal", movies, "vision")
    assert rel(a_story, a_movie) < 0.1
    assert rel(a_story, gt.feature_mixing["concept"]) < 0.1
    assert noise_story == pytest.approx(0.3, rel=0.1)
    assert noise_movie == pytest.approx(0.3, rel=0.1)

    u_story, _ = _concept_matrix(huth.root, "unimodal", stories, "language")
    u_movie, _ = _concept_matrix(huth.root, "unimodal", movies, "vision")
    assert rel(u_story, gt.feature_mixing["concept"]) < 0.1
    assert rel(u_movie, gt.feature_mixing["concept_unimodal_movie"]) < 0.1
    assert rel(u_story, u_movie) > 0.8              # independent matrices: about sqrt(2)
    for space in ("multimodal", "unimodal"):
        data = read_hf5(huth.feature_root / space / "movie01.hf5")
        assert data.dtype == np.float32 and data.shape[1] == 48


# --------------------------------------------------------------------------- #
# Readers, ground-truth file, bad input
# --------------------------------------------------------------------------- #
def test_readers_load_both_simulated_layouts(huth, bids):
    from brainenc.io.layouts import load_dataset
    from brainenc.io.responses import load_responses

    for info, layout in ((huth, "huth"), (bids, "bids")):
        dataset = load_dataset(info.root)
        assert dataset.layout == layout
        assert dataset.subjects == ["sim01"]
        assert Path(dataset.feature_root) == info.feature_root
        by_stimulus = {run.stimulus: run for run in dataset.runs}
        assert sorted(by_stimulus) == sorted(r.name for r in info.runs)
        for written in info.runs:
            run = by_stimulus[written.name]
            assert run.modality == written.modality and run.space == "fsaverage5"
            assert run.stimulus_path is not None and run.stimulus_path.is_file()
            np.testing.assert_allclose(run.response_grid.times, written.times)
            np.testing.assert_array_equal(load_responses(run), written_response(written))


def test_load_ground_truth(huth, tmp_path):
    gt = load_ground_truth(huth.ground_truth_path)
    assert gt.path == huth.ground_truth_path
    assert gt.params["snr"] == SMALL["snr"] and gt.params["noise_rho"] == SMALL["noise_rho"]
    assert gt.snr == SMALL["snr"]
    assert set(gt.feature_mixing) == {"concept", "concept_unimodal_movie", "language", "vision"}
    assert gt.region_center.shape == (12, 3) and len(gt.region_hemi) == 12
    with pytest.raises(KeyError):
        gt.mask("auditory")
    with pytest.raises(BrainencInputError, match="not found"):
        load_ground_truth(tmp_path / "nothing.npz")
    broken = tmp_path / "broken.npz"
    np.savez(broken, category=np.zeros(5))
    with pytest.raises(BrainencInputError, match="lacks"):
        load_ground_truth(broken)


def test_bad_parameters_write_nothing(tmp_path):
    with pytest.raises(BrainencInputError, match="layout"):
        simulate_dataset(tmp_path / "a", layout="nwb")
    with pytest.raises(BrainencInputError, match="2.0"):
        simulate_dataset(tmp_path / "b", layout="huth", tr=1.5)
    with pytest.raises(BrainencInputError, match="noise_rho"):
        simulate_dataset(tmp_path / "c", noise_rho=1.0)
    occupied = tmp_path / "occupied"
    occupied.mkdir()
    (occupied / "keep.txt").write_text("x")
    with pytest.raises(BrainencInputError, match="not empty"):
        simulate_dataset(occupied)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["occupied"]
    assert [p.name for p in occupied.iterdir()] == ["keep.txt"]


def test_failure_midway_leaves_nothing(tmp_path, monkeypatch):
    def fail(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(simulate, "write_stimulus_features", fail)
    with pytest.raises(OSError, match="disk full"):
        simulate_dataset(tmp_path / "sim", n_stories=1, n_movies=1, n_trs_per_run=20)
    assert list(tmp_path.iterdir()) == []

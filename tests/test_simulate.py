"""The simulated subject: layouts, timing, regions, components, HRFs, noise, ceilings, features."""
from __future__ import annotations

import itertools
import json
import math
from pathlib import Path

import h5py
import nibabel as nib
import numpy as np
import pytest
from praatio import textgrid as praat_textgrid
from scipy import sparse
from scipy.sparse.csgraph import connected_components

import brainenc.simulate.dataset as simulate_module
from brainenc.errors import BrainencInputError
from brainenc.simulate import (
    CATEGORY_NAMES,
    N_VERTICES,
    VOCABULARY,
    canonical_hrf,
    load_ground_truth,
    simulate_dataset,
)
from brainenc.simulate.cortex import fsaverage5_sphere, make_cortex, region_plan
from tests.safety import tree_state

SNR = (0.05, 0.8)
TRS = (36, 44)
SMALL = dict(n_stories=2, n_movies=2, n_trs_per_run=TRS, seed=3, snr=SNR, noise_rho=0.4)
FILLERS = {"sentence_start", "sentence_end", "br", "lg", "ls", "ns", "sp"}
N_HEMI = N_VERTICES // 2
COMPONENT_COLUMN = {"shared": 0, "language": 1, "vision": 2}


@pytest.fixture(scope="module")
def huth(tmp_path_factory):
    root = tmp_path_factory.mktemp("sim") / "huth"
    return simulate_dataset(root, layout="huth", save_signal=True, **SMALL)


@pytest.fixture(scope="module")
def bids(tmp_path_factory):
    root = tmp_path_factory.mktemp("sim") / "bids"
    return simulate_dataset(root, layout="bids", save_signal=True, **SMALL)


@pytest.fixture(scope="module")
def repeated(tmp_path_factory):
    root = tmp_path_factory.mktemp("sim") / "repeated"
    return simulate_dataset(root, layout="bids", save_signal=True, story_repeats=3,
                            movie_repeats=2, **SMALL)


@pytest.fixture(scope="module")
def pure(tmp_path_factory):
    root = tmp_path_factory.mktemp("sim") / "pure"
    return simulate_dataset(root, layout="huth", save_signal=True, pure_noise=True, **SMALL)


@pytest.fixture(scope="module")
def spheres():
    return fsaverage5_sphere()


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


def pooled(info, modality, key=""):
    """Signal (or one component, ``key``) and response of a modality's runs, rows pooled."""
    signals = np.load(info.root / "signal.npz")
    runs = by_modality(info, modality)
    sig = np.concatenate([signals[r.name + key] for r in runs]).astype(np.float64)
    resp = np.concatenate([written_response(r) for r in runs]).astype(np.float64)
    return sig, resp


def correlation(x, y):
    """Pearson correlation per column, 0 where ``x`` is constant."""
    x, y = x - x.mean(0), y - y.mean(0)
    den = np.sqrt((x**2).sum(0) * (y**2).sum(0))
    return np.divide((x * y).sum(0), den, out=np.zeros(x.shape[1]), where=den > 0)


def angles_deg(coords, centre):
    unit = coords / np.linalg.norm(coords, axis=1, keepdims=True)
    c = centre / np.linalg.norm(centre)
    return np.degrees(np.arccos(np.clip(unit @ c, -1, 1)))


# --------------------------------------------------------------------------- #
# Layout and timing
# --------------------------------------------------------------------------- #
def test_huth_layout_files_and_timing(huth):
    deriv = huth.root / "derivative"
    respdict = json.loads((deriv / "respdict.json").read_text())
    config = json.loads((deriv / "brainenc.json").read_text())
    gt = load_ground_truth(huth.root)
    assert config["space"] == "fsaverage5"
    assert sorted(respdict) == ["story01", "story02"]
    assert sorted(config["movies"]) == ["movie01", "movie02"]
    for run in by_modality(huth, "story"):
        n = respdict[run.name]
        assert TRS[0] <= n - 20 <= TRS[1]
        assert gt.n_trs[gt.stimuli.index(run.name)] == n - 20 == run.n_rows
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
        rows = entry["n_trs"] - 15
        assert TRS[0] <= rows <= TRS[1] and gt.n_trs[gt.stimuli.index(run.name)] == rows
        data = read_hf5(deriv / "preprocessed_data" / "sim01" / f"{run.name}.hf5")
        assert data.shape == (rows, N_VERTICES)
        expected = 2.0 * np.arange(entry["n_trs"])[10:-5] - 10.0 + 1.0
        np.testing.assert_array_equal(run.times, expected)
        table = np.genfromtxt(deriv / entry["frames"], delimiter="\t", names=True)
        np.testing.assert_allclose(table["time"], np.arange(len(table)) / 15.0, atol=1e-12)
        np.testing.assert_array_equal(table["frame"], np.arange(len(table)))
        assert table["time"][-1] >= run.times[-1]
    # Lengths are drawn per stimulus: with these seeds the four runs do not all agree.
    assert len({run.n_rows for run in huth.runs}) > 1
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
        assert {w for _, _, w in words} <= set(VOCABULARY)
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
def test_same_seed_gives_byte_identical_files(huth, tmp_path):
    again = simulate_dataset(tmp_path / "again", layout="huth", save_signal=True, **SMALL)
    first, second = tree_state(huth.root), tree_state(again.root)
    for state in (first, second):
        del state[".brainenc-output.json"]        # records when it was written
    assert first == second

    other = simulate_dataset(tmp_path / "other", layout="huth", **{**SMALL, "seed": 4})
    assert not np.array_equal(load_ground_truth(other.root).category,
                              load_ground_truth(huth.root).category)
    assert not np.array_equal(read_hf5(other.runs[0].response_paths[0]),
                              read_hf5(huth.runs[0].response_paths[0]))


def test_run_count_does_not_change_cortex_stimuli_or_lengths(huth, tmp_path):
    fewer = simulate_dataset(tmp_path / "fewer", layout="huth",
                             **{**SMALL, "n_stories": 1, "n_movies": 1})
    a, b = load_ground_truth(huth.root), load_ground_truth(fewer.root)
    np.testing.assert_array_equal(a.category, b.category)
    np.testing.assert_array_equal(a.hrf_shape, b.hrf_shape)
    np.testing.assert_array_equal(a.weights["shared"], b.weights["shared"])
    for name in ("story01", "movie01"):
        np.testing.assert_array_equal(read_hf5(huth.feature_root / "multimodal" / f"{name}.hf5"),
                                      read_hf5(fewer.feature_root / "multimodal" / f"{name}.hf5"))
        assert a.n_trs[a.stimuli.index(name)] == b.n_trs[b.stimuli.index(name)]
    assert [r.n_rows for r in fewer.runs] == [huth.runs[0].n_rows, huth.runs[2].n_rows]


# --------------------------------------------------------------------------- #
# Ground truth: regions, overlaps, amplitudes and SNRs
# --------------------------------------------------------------------------- #
def test_region_plan_pairs_components_in_turn():
    assert region_plan(1) == [("shared", "language"), ("vision",)]
    assert region_plan(2) == [("shared", "language"), ("vision", "shared"),
                              ("language", "vision")]
    assert region_plan(3) == region_plan(2) + [("shared", "language"), ("vision",)]


def test_overlapping_pairs_give_every_mixed_category(huth, spheres):
    gt = load_ground_truth(huth.root)
    assert gt.category_names == CATEGORY_NAMES
    counts = np.bincount(gt.category, minlength=len(CATEGORY_NAMES))
    assert np.all(counts[1:] > 0), dict(zip(CATEGORY_NAMES, counts))
    # Per hemisphere: pairs (shared, language), (vision, shared), (language, vision).
    for hemi in ("left", "right"):
        in_hemi = np.flatnonzero(np.array(gt.region_hemi) == hemi)
        assert gt.region_category[in_hemi].tolist() == [1, 2, 3, 1, 2, 3]
        groups = gt.region_group[in_hemi]
        assert groups[0::2].tolist() == groups[1::2].tolist()
        assert len(set(groups.tolist())) == 3
    for first, second in zip(range(0, 12, 2), range(1, 12, 2)):
        # Centres overlap_distance * (r1 + r2) / 2 apart (overlap_distance = 1).
        angle = angles_deg(gt.region_center[[first]], gt.region_center[second])[0]
        assert angle == pytest.approx(gt.region_radius_deg[[first, second]].mean(), abs=1e-6)
    present = gt.region_of >= 0
    bits = (present * np.array([1, 2, 4])).sum(axis=1)
    expected = {0: "noise", 1: "shared", 2: "language", 4: "vision", 3: "shared+language",
                5: "shared+vision", 6: "language+vision"}
    for bit, name in expected.items():
        np.testing.assert_array_equal(gt.mask(name), bits == bit)
    # A mixed vertex lies in the two caps of one pair, never in caps of two pairs.
    two = present.sum(axis=1) == 2
    regions = np.sort(np.where(present[two], gt.region_of[two], 10**6), axis=1)[:, :2]
    np.testing.assert_array_equal(gt.region_group[regions[:, 0]], gt.region_group[regions[:, 1]])
    for name in ("shared", "language", "vision"):
        with_it = [c for c in CATEGORY_NAMES if name in c.split("+")]
        np.testing.assert_array_equal(gt.component(name),
                                      np.any([gt.mask(c) for c in with_it], axis=0))


def test_regions_are_contiguous_caps(huth, spheres):
    gt = load_ground_truth(huth.root)
    assert gt.region_of.shape == (N_VERTICES, 3) and gt.region_of.dtype == np.int16
    for h, hemi in enumerate(("left", "right")):
        coords, faces = spheres[hemi]
        edges = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
        for index in np.flatnonzero(np.array(gt.region_hemi) == hemi):
            column = gt.region_category[index] - 1
            members = np.flatnonzero(gt.region_of[h * N_HEMI:(h + 1) * N_HEMI, column] == index)
            # One connected piece of mesh.
            sub = {v: i for i, v in enumerate(members)}
            inside = np.isin(edges, members).all(axis=1)
            pairs = np.array([[sub[a], sub[b]] for a, b in edges[inside]])
            graph = sparse.coo_matrix((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])),
                                      shape=(len(members),) * 2)
            assert connected_components(graph, directed=False)[0] == 1
            # Exactly the vertices within the angular radius of the centre.
            angle = angles_deg(coords, gt.region_center[index])
            np.testing.assert_array_equal(members,
                                          np.flatnonzero(angle <= gt.region_radius_deg[index]))


def test_weights_live_only_where_their_component_does(huth):
    gt = load_ground_truth(huth.root)
    for name in ("shared", "language", "vision"):
        w = gt.weights[name]
        assert w.shape == (N_VERTICES, 8)
        np.testing.assert_array_equal(np.any(w != 0, axis=1), gt.component(name))


def test_components_follow_the_amplitude_profile_and_region_snr(huth):
    gt = load_ground_truth(huth.root)
    coords = np.concatenate([c for c, _ in fsaverage5_sphere().values()])
    low, high = SNR
    assert np.all((gt.region_snr >= low) & (gt.region_snr <= high))
    assert np.ptp(np.log(gt.region_snr)) > 0.3 * np.log(high / low)
    edge = 0.3                                     # the default edge_amplitude
    for modality, keys in (("story", ("shared_story", "language")),
                           ("movie", ("shared_movie", "vision"))):
        for key in keys:
            name = key.split("_")[0]
            column = COMPONENT_COLUMN[name]
            carriers = np.flatnonzero(gt.region_of[:, column] >= 0)
            region = gt.region_of[carriers, column]
            theta = np.array([angles_deg(coords[[v]], gt.region_center[r])[0]
                              for v, r in zip(carriers, region)])
            amplitude = 1 - (1 - edge) * (theta / gt.region_radius_deg[region]) ** 2
            expected = gt.region_snr[region] * amplitude**2
            snr = gt.component_snr[key]
            np.testing.assert_allclose(snr[carriers], expected, rtol=1e-5)
            assert np.all(snr[~gt.component(name)] == 0)
            # The written component has exactly that variance over the modality's rows.
            component, _ = pooled(huth, modality, f"_{name}")
            np.testing.assert_allclose(component[:, carriers].var(axis=0), expected, rtol=1e-3)
            assert np.all(component[:, ~gt.component(name)] == 0)
            assert expected.max() / expected.min() > 10   # from far below to well above


def test_a_single_snr_gives_every_region_the_same(spheres):
    dims = {"shared": 4, "language": 4, "vision": 4}
    cortex = make_cortex(np.random.default_rng(0), spheres, dims, 1, (11.0, 15.0), 1.0, 1.0,
                         (0.3, 0.3))
    assert np.all(cortex.region_snr == 0.3)
    carriers = cortex.region_of >= 0
    np.testing.assert_array_equal(cortex.component_snr[carriers], 0.3)   # edge_amplitude = 1


@pytest.mark.parametrize("overlap_distance", [0.0, 0.5, 1.5, 2.0])
def test_overlap_distance_sets_how_much_a_pair_mixes(spheres, overlap_distance):
    dims = {"shared": 2, "language": 2, "vision": 2}
    cortex = make_cortex(np.random.default_rng(1), spheres, dims, 2, (11.0, 15.0),
                         overlap_distance, 0.3, (0.1, 0.5))
    centres, radii = cortex.region_center, cortex.region_radius_deg
    for first in range(0, len(radii), 2):
        angle = angles_deg(centres[[first]], centres[first + 1])[0]
        assert angle == pytest.approx(overlap_distance * radii[first:first + 2].mean(), abs=1e-6)
    mixed = np.isin(cortex.category, (4, 5, 6)).sum()
    if overlap_distance == 2.0:
        assert mixed == 0                            # the caps only touch
    else:
        # The smaller cap of a concentric pair is mixed throughout.
        assert mixed > 0
    if overlap_distance == 0.0:
        present = cortex.region_of >= 0
        for first in range(0, len(radii), 2):
            small = first + int(radii[first + 1] < radii[first])
            column = cortex.region_category[small] - 1
            inside = cortex.region_of[:, column] == small
            assert np.all(present[inside].sum(axis=1) == 2)


# --------------------------------------------------------------------------- #
# HRFs
# --------------------------------------------------------------------------- #
def _reference_hrf(t, shape=6.0):
    """SPM-style double gamma written out: shapes a and a + 10, ratio 1/6."""
    def gamma_pdf(x, a):
        return x ** (a - 1) * np.exp(-x) / math.gamma(a)
    return gamma_pdf(t, shape) - gamma_pdf(t, shape + 10) / 6.0


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


@pytest.mark.parametrize("shape", [4.5, 5.25, 7.5])
def test_hrf_peak_shape_moves_the_peak(shape):
    dt = 0.01
    h = canonical_hrf(dt=dt, peak_shape=shape)
    t = np.arange(len(h)) * dt
    reference = _reference_hrf(t, shape)
    np.testing.assert_allclose(h, reference / (reference.sum() * dt), atol=1e-10)
    assert t[np.argmax(h)] == pytest.approx(shape - 1.0, abs=0.05)
    with pytest.raises(ValueError, match="peak_shape"):
        canonical_hrf(peak_shape=1.0)


def test_vertex_hrf_shapes_are_quantised_fields(huth):
    gt = load_ground_truth(huth.root)
    inside = gt.category > 0
    assert np.all(np.isnan(gt.hrf_shape[~inside]))
    shapes = gt.hrf_shape[inside]
    assert np.all((shapes >= 4.5) & (shapes <= 7.5))
    np.testing.assert_array_equal(shapes * 4, np.round(shapes * 4))
    assert len(np.unique(shapes)) >= 5
    # A region's shapes lie within the gradient (0.5) and rounding (0.125) of its
    # centre's, and vary across it.
    one = (gt.region_of >= 0).sum(axis=1) == 1
    region = gt.region_of[one].max(axis=1)
    assert np.abs(gt.hrf_shape[one] - gt.region_hrf_shape[region]).max() <= 0.625 + 1e-6
    assert max(len(np.unique(gt.hrf_shape[one][region == r])) for r in np.unique(region)) >= 3


def _convolved_movie_latents(root, name, times, duration, shape, latent):
    """The movie's latent held frame by frame, convolved with the HRF of ``shape`` on a
    0.1 s grid from -32 s, and interpolated at ``times``."""
    with h5py.File(root / "latents" / f"{name}.hf5", "r") as f:
        frame_times, values = f["times"][()], f[latent][()].astype(np.float64)
    dt = 0.1
    fine = -32.0 + dt * np.arange(int(np.ceil((duration + 32.0 + dt) / dt)) + 1)
    showing = (fine >= 0) & (fine < duration)
    drive = np.zeros((len(fine), values.shape[1]))
    drive[showing] = values[np.searchsorted(frame_times, fine[showing], side="right") - 1]
    hrf = canonical_hrf(dt=dt, peak_shape=shape)
    convolved = np.stack([np.convolve(col, hrf)[: len(fine)] * dt for col in drive.T], axis=1)
    return np.stack([np.interp(times, fine, col) for col in convolved.T], axis=1)


def test_each_vertex_signal_uses_its_own_hrf(huth):
    """A vertex's vision component is an affine function of its weights applied to the
    vision latent convolved with the HRF of its shape, and fits worse with any other."""
    gt = load_ground_truth(huth.root)
    config = json.loads((huth.root / "derivative" / "brainenc.json").read_text())
    runs = by_modality(huth, "movie")
    component, _ = pooled(huth, "movie", "_vision")
    vertices = np.flatnonzero(gt.component("vision"))
    candidates = np.arange(4.5, 7.51, 0.25)
    fits = np.zeros((len(candidates), len(vertices)))
    for i, shape in enumerate(candidates):
        z = np.concatenate([
            _convolved_movie_latents(huth.root, run.name, run.times,
                                     2.0 * config["movies"][run.name]["n_trs"] - 20.0,
                                     shape, "vision")
            for run in runs])
        predicted = z @ gt.weights["vision"][vertices].T.astype(np.float64)
        fits[i] = correlation(predicted, component[:, vertices]) ** 2
    best = candidates[np.argmax(fits, axis=0)]
    np.testing.assert_array_equal(best, gt.hrf_shape[vertices])
    assert fits.max(axis=0).min() > 0.9999


# --------------------------------------------------------------------------- #
# Noise
# --------------------------------------------------------------------------- #
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


def test_noise_is_smooth_across_the_mesh_as_the_operator_predicts(huth, spheres):
    signals = np.load(huth.root / "signal.npz")
    noise = np.concatenate([written_response(run).astype(np.float64) - signals[run.name]
                            for run in huth.runs])[:, :N_HEMI]
    faces = spheres["left"][1]
    edges = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
    adjacency = sparse.coo_matrix((np.ones(len(edges)), (edges[:, 0], edges[:, 1])),
                                  shape=(N_HEMI, N_HEMI)).tocsr()
    adjacency = ((adjacency + adjacency.T) > 0).astype(float)
    with_self = adjacency + sparse.identity(N_HEMI)
    step = sparse.diags(1.0 / np.asarray(with_self.sum(axis=1)).ravel()) @ with_self
    operator = step @ step                                       # noise_smoothing = 2
    gram = (operator @ operator.T).tocsr()
    norm = np.sqrt(gram.diagonal())
    two_steps = ((adjacency @ adjacency) > 0).astype(float) - adjacency - sparse.identity(N_HEMI)
    power = (noise**2).mean(axis=0)
    for pairs in (sparse.triu(adjacency, 1), sparse.triu(two_steps > 0, 1)):
        u, v = pairs.tocoo().row, pairs.tocoo().col
        predicted = np.asarray(gram[u, v]).ravel() / (norm[u] * norm[v])
        measured = (noise[:, u] * noise[:, v]).mean(axis=0) / np.sqrt(power[u] * power[v])
        assert measured.mean() == pytest.approx(predicted.mean(), abs=0.02)
    assert predicted.mean() > 0.3               # vertices two edges apart still correlate
    # Random pairs are almost all far apart: no correlation on average.
    u, v = np.random.default_rng(0).integers(0, N_HEMI, size=(2, 5000))
    assert abs((noise[:, u[u != v]] * noise[:, v[u != v]]).mean()) < 0.02


# --------------------------------------------------------------------------- #
# Ceilings and the pure-noise subject
# --------------------------------------------------------------------------- #
def test_ceilings_are_the_correlations_of_the_components_with_the_response(huth, bids):
    for info in (huth, bids):
        gt = load_ground_truth(info.root)
        assert set(gt.max_r) == {"story_to_story", "movie_to_movie", "story_to_movie",
                                 "movie_to_story"}
        for modality, other in (("story", "movie"), ("movie", "story")):
            signal, response = pooled(info, modality)
            shared, _ = pooled(info, modality, "_shared")
            within = gt.max_r[f"{modality}_to_{modality}"]
            across = gt.max_r[f"{other}_to_{modality}"]
            np.testing.assert_allclose(within, correlation(signal, response), atol=1e-4)
            np.testing.assert_allclose(across, correlation(shared, response), atol=1e-4)
            assert np.all(across[~gt.component("shared")] == 0)
            only = "language" if modality == "story" else "vision"
            silent = gt.mask("noise") | gt.mask({"story": "vision", "movie": "language"}[modality])
            assert np.all(within[silent] == 0) and np.all(signal[:, silent] == 0)
            # Only the shared part transfers: less than the within ceiling where mixed.
            mixed = gt.mask(f"shared+{only}")
            assert across[mixed].mean() < within[mixed].mean() - 0.05
            np.testing.assert_allclose(across[gt.mask("shared")], within[gt.mask("shared")],
                                       atol=1e-6)
        ceiling = gt.max_r["story_to_story"][gt.component("language")]
        assert ceiling.min() < 0.2 and ceiling.max() > 0.5


def test_pure_noise_subject_has_no_signal_and_the_same_noise(pure, huth):
    gt = load_ground_truth(pure.root)
    assert gt.params["pure_noise"] is True
    assert np.all(gt.category == 0) and np.all(gt.region_of == -1)
    assert gt.region_center.shape == (0, 3) and len(gt.region_hemi) == 0
    assert np.all(np.isnan(gt.hrf_shape))
    for values in (*gt.max_r.values(), *gt.component_snr.values(), *gt.weights.values()):
        assert np.all(values == 0)
    signals = np.load(pure.root / "signal.npz")
    assert all(np.all(signals[key] == 0) for key in signals.files)
    huth_signals = np.load(huth.root / "signal.npz")
    for run, twin in zip(pure.runs, huth.runs):
        noise = written_response(twin).astype(np.float64) - huth_signals[twin.name]
        np.testing.assert_allclose(written_response(run), noise, atol=1e-5)
        np.testing.assert_array_equal(
            read_hf5(pure.feature_root / "multimodal" / f"{run.name}.hf5"),
            read_hf5(huth.feature_root / "multimodal" / f"{run.name}.hf5"))


# --------------------------------------------------------------------------- #
# Repeated presentations
# --------------------------------------------------------------------------- #
def test_repeats_are_bids_runs_of_one_task(repeated, bids):
    from brainenc.io.layouts import load_dataset

    assert [(r.name, r.stimulus, r.presentation) for r in repeated.runs] == [
        ("story01", "story01", 1), ("story02_run-1", "story02", 1),
        ("story02_run-2", "story02", 2), ("story02_run-3", "story02", 3),
        ("movie01", "movie01", 1), ("movie02_run-1", "movie02", 1),
        ("movie02_run-2", "movie02", 2)]
    func = repeated.root / "sub-sim01" / "func"
    for run in repeated.runs:
        entity = "" if run.presentation == 1 and run.name == run.stimulus else \
            f"_run-{run.presentation}"
        stem = f"sub-sim01_task-{run.stimulus}{entity}"
        assert [p.name for p in run.response_paths] == [
            f"{stem}_hemi-{h}_space-fsaverage5_bold.func.gii" for h in "LR"]
        assert (func / f"{stem}_events.tsv").is_file()
    assert sorted(p.name for p in (repeated.root / "stimuli").iterdir()) == [
        "movie01_frames.tsv", "movie02_frames.tsv", "story01.TextGrid", "story02.TextGrid"]

    dataset = load_dataset(repeated.root)
    assert [(r.name, r.stimulus) for r in dataset.runs_for("sim01", "story")] == [
        ("task-story01", "story01"), ("task-story02_run-1", "story02"),
        ("task-story02_run-2", "story02"), ("task-story02_run-3", "story02")]
    assert [r.stimulus for r in dataset.runs_for("sim01", "movie")] == [
        "movie01", "movie02", "movie02"]

    # Repeats leave everything else as it was: the first presentations, the other runs,
    # the features and the cortex.
    for run in repeated.runs:
        if run.presentation == 1:
            twin = next(r for r in bids.runs if r.name == run.stimulus)
            np.testing.assert_array_equal(written_response(run), written_response(twin))
    np.testing.assert_array_equal(load_ground_truth(repeated.root).category,
                                  load_ground_truth(bids.root).category)
    for name in ("story02", "movie02"):
        np.testing.assert_array_equal(
            read_hf5(repeated.feature_root / "multimodal" / f"{name}.hf5"),
            read_hf5(bids.feature_root / "multimodal" / f"{name}.hf5"))


def test_repeats_share_the_signal_and_get_independent_noise(repeated):
    signals = np.load(repeated.root / "signal.npz")
    assert not any("_run-" in key for key in signals.files)
    for stimulus in ("story02", "movie02"):
        runs = [r for r in repeated.runs if r.stimulus == stimulus]
        noises = [written_response(r).astype(np.float64) - signals[stimulus] for r in runs]
        for noise in noises:
            assert noise.var(axis=0).mean() == pytest.approx(1.0, abs=0.05)
        for a, b in itertools.combinations(noises, 2):
            # Independent streams: the mean correlation over vertices is about 0.
            assert abs(correlation(a, b).mean()) < 0.01


def test_ground_truth_holds_the_true_explainable_variance(repeated, huth):
    truth = load_ground_truth(repeated.root)
    signals = np.load(repeated.root / "signal.npz")
    assert truth.params["story_repeats"] == 3 and truth.params["movie_repeats"] == 2
    assert truth.ev_stimulus == {"story": "story02", "movie": "movie02"}
    for modality, silent in (("story", "vision"), ("movie", "language")):
        signal = signals[truth.ev_stimulus[modality]].astype(np.float64)
        variance = signal.var(axis=0, ddof=1)
        ev = truth.explainable_variance[modality]
        assert ev.dtype == np.float32 and ev.shape == (N_VERTICES,)
        np.testing.assert_allclose(ev, variance / (variance + 1), atol=1e-6)
        assert np.all(ev[truth.mask("noise") | truth.mask(silent)] == 0)
        assert np.all(ev[truth.component("shared")] > 0)
        assert 0.05 < ev.max() < 1
    # Without repeats the last stimulus' value is recorded all the same.
    plain = load_ground_truth(huth.root)
    assert plain.params["story_repeats"] == 1 and plain.ev_stimulus["movie"] == "movie02"
    assert set(plain.explainable_variance) == {"story", "movie"}


def test_the_huth_layout_refuses_repeats(tmp_path):
    with pytest.raises(BrainencInputError) as error:
        simulate_dataset(tmp_path / "sim", layout="huth", story_repeats=2, movie_repeats=3)
    assert "story_repeats and movie_repeats > 1 need layout='bids'" in str(error.value)
    assert "one response file per stimulus" in str(error.value)
    assert list(tmp_path.iterdir()) == []


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
    assert gt.params["snr"] == list(SNR) and gt.params["noise_rho"] == SMALL["noise_rho"]
    assert gt.params["n_trs_per_run"] == list(TRS) and gt.params["noise_smoothing"] == 2
    assert gt.snr_range == SNR
    assert gt.stimuli == ("story01", "story02", "movie01", "movie02")
    assert set(gt.feature_mixing) == {"concept", "concept_unimodal_movie", "language", "vision"}
    assert set(gt.component_snr) == {"shared_story", "shared_movie", "language", "vision"}
    np.testing.assert_array_equal(gt.component_snr["shared_story"],
                                  gt.component_snr["shared_movie"])
    assert gt.region_center.shape == (12, 3) and len(gt.region_hemi) == 12
    with pytest.raises(KeyError):
        gt.mask("auditory")
    with pytest.raises(KeyError):
        gt.component("shared+language")
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


@pytest.mark.parametrize("option, value, fragment", [
    ("snr", float("nan"), "snr must be a finite number"),
    ("snr", (0.1, float("inf")), "snr must be a finite number"),
    ("snr", (0.5, 0.1), "snr must be positive"),
    ("snr", (0.0, 0.5), "snr must be positive"),
    ("snr", (0.1, 0.2, 0.3), "(low, high) pair"),
    ("snr", "high", "snr must be"),
    ("n_trs_per_run", 19, "n_trs_per_run must be a whole number from 20 to"),
    ("n_trs_per_run", (300, 20000), "n_trs_per_run must be a whole number from 20 to"),
    ("snr", 1e300, "snr must be positive and at most"),
    ("n_stories", 5000, "n_stories must be a whole number from 1 to 1000"),
    ("n_trs_per_run", (300, 200), "n_trs_per_run"),
    ("n_trs_per_run", (30.5, 40), "n_trs_per_run"),
    ("n_trs_per_run", (10, 40), "n_trs_per_run"),
    ("noise_smoothing", -1, "noise_smoothing must be a whole number from 0 to 20"),
    ("noise_smoothing", 21, "noise_smoothing"),
    ("noise_smoothing", 1.5, "noise_smoothing"),
    ("noise_smoothing", True, "noise_smoothing"),
    ("overlap_distance", -0.1, "overlap_distance must be in [0, 2]"),
    ("overlap_distance", 2.5, "overlap_distance"),
    ("overlap_distance", float("nan"), "overlap_distance must be a finite number"),
    ("edge_amplitude", 0.0, "edge_amplitude must be in (0, 1]"),
    ("edge_amplitude", 1.2, "edge_amplitude"),
    ("pure_noise", "yes", "pure_noise must be True or False"),
    ("region_radius_deg", (15.0, 11.0), "region_radius_deg"),
    ("regions_per_hemi", 0, "regions_per_hemi"),
    ("regions_per_hemi", 30, "regions_per_hemi"),     # cannot be placed on the sphere
    ("story_repeats", 0, "story_repeats must be a whole number of at least 1"),
    ("movie_repeats", 1.5, "movie_repeats must be a whole number of at least 1"),
    ("story_repeats", True, "story_repeats must be a whole number"),
    ("movie_repeats", 2, "movie_repeats > 1 needs layout='bids'"),   # the default layout is huth
])
def test_bad_new_parameters_are_named_and_nothing_is_written(tmp_path, option, value, fragment):
    with pytest.raises(BrainencInputError) as error:
        simulate_dataset(tmp_path / "sim", **{option: value})
    assert fragment in str(error.value)
    assert list(tmp_path.iterdir()) == []


def test_problems_are_gathered(tmp_path):
    with pytest.raises(BrainencInputError) as error:
        simulate_dataset(tmp_path / "sim", n_trs_per_run=5, noise_smoothing=-2,
                         edge_amplitude=3.0, pure_noise=None)
    for name in ("n_trs_per_run", "noise_smoothing", "edge_amplitude", "pure_noise"):
        assert name in str(error.value)
    assert list(tmp_path.iterdir()) == []


def test_failure_midway_leaves_nothing(tmp_path, monkeypatch):
    def fail(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(simulate_module, "write_stimulus_features", fail)
    with pytest.raises(OSError, match="disk full"):
        simulate_dataset(tmp_path / "sim", n_stories=1, n_movies=1, n_trs_per_run=20)
    assert list(tmp_path.iterdir()) == []

"""Layout discovery: Huth, BIDS/fMRIPrep and manifest datasets built in tmp_path."""
from __future__ import annotations

import json

import h5py
import nibabel as nib
import numpy as np
import pytest

from brainenc.errors import BrainencInputError, BrainencInputWarning
from brainenc.io.layouts import load_dataset, read_bids, read_huth, read_manifest
from brainenc.io.responses import load_responses

TEXTGRID = "\n".join([
    'File type = "ooTextFile"', 'Object class = "TextGrid"', "", "0", "2", "<exists>", "1",
    '"IntervalTier"', '"word"', "0", "2", "2", "0", "1", '"hello"', "1", "2", '"there"',
]) + "\n"


def write_hf5(path, data):
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as handle:
        handle["data"] = data
    return path


def write_json(path, content):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(content), encoding="utf-8")
    return path


def write_text(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def write_gifti(path, vertices_by_trs, time_step_ms=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    image = nib.gifti.GiftiImage(darrays=[
        nib.gifti.GiftiDataArray(np.ascontiguousarray(column, dtype=np.float32))
        for column in vertices_by_trs.T])
    if time_step_ms is not None:
        image.meta["TimeStep"] = str(time_step_ms)
    nib.save(image, str(path))
    return path


def write_nifti(path, array, tr=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    image = nib.Nifti1Image(array, np.eye(4))
    if tr is not None:
        image.header.set_zooms((2.0, 2.0, 2.0, tr))
        image.header.set_xyzt_units("mm", "sec")
    nib.save(image, str(path))
    return path


#: Columns of fsaverage5 responses: 10 242 vertices per hemisphere.
FS5_HEMI = 10242


def centred_grid(tr, n, onset):
    """Plain reference: volume k at tr*k - onset + tr/2."""
    return np.array([tr * k - onset + tr / 2 for k in range(n)])


# -- Huth ---------------------------------------------------------------------

STORIES = {"alpha": 30, "beta": 33}
MOVIES = {
    "movie01": {"frames": "Movies/movie01_frames.tsv", "n_trs": 30, "tr": 1.5, "start": 4.0,
                "trim_start": 3, "trim_end": 2},
    "movie02": {"video": "Movies/movie02.mp4", "n_trs": 25},
}


def build_huth(root, derivative_name="derivative", rng=None):
    rng = rng or np.random.default_rng(1)
    derivative = root / derivative_name
    responses = {}
    for subject in ("UTS02", "UTS01"):
        for story, n in STORIES.items():
            data = rng.standard_normal((n - 20, 2 * FS5_HEMI))
            write_hf5(derivative / "preprocessed_data" / subject / f"{story}.hf5", data)
            responses[subject, story] = data
    movie_rows = {"movie01": 30 - 3 - 2, "movie02": 25 - 10 - 5}
    for movie, rows in movie_rows.items():
        data = rng.standard_normal((rows, 2 * FS5_HEMI))
        write_hf5(derivative / "preprocessed_data" / "UTS01" / f"{movie}.hf5", data)
        responses["UTS01", movie] = data
    write_json(derivative / "respdict.json", STORIES)
    write_json(derivative / "brainenc.json", {"space": "fsaverage5", "movies": MOVIES})
    write_text(derivative / "TextGrids" / "alpha.TextGrid", TEXTGRID)
    write_text(derivative / "Movies" / "movie01_frames.tsv", "frame\ttime\n0\t0.0\n1\t0.5\n")
    return derivative, responses


def test_huth_runs_grids_and_responses(tmp_path):
    derivative, responses = build_huth(tmp_path)
    with pytest.warns(BrainencInputWarning, match=r"subject UTS02: .*2 run\(s\): movie01, movie02"):
        dataset = load_dataset(tmp_path)

    assert (dataset.layout, dataset.preset) == ("huth", "huth")
    assert dataset.feature_root == tmp_path / "features"
    assert [(r.subject, r.name) for r in dataset.runs] == [
        ("UTS01", "alpha"), ("UTS01", "beta"), ("UTS01", "movie01"), ("UTS01", "movie02"),
        ("UTS02", "alpha"), ("UTS02", "beta")]
    runs = {(r.subject, r.name): r for r in dataset.runs}

    alpha = runs["UTS01", "alpha"]
    assert (alpha.modality, alpha.stimulus, alpha.space) == ("story", "alpha", "fsaverage5")
    assert alpha.stimulus_path == derivative / "TextGrids" / "alpha.TextGrid"
    # The expected TextGrid is kept even when it is missing.
    beta_textgrid = runs["UTS01", "beta"].stimulus_path
    assert beta_textgrid == derivative / "TextGrids" / "beta.TextGrid"
    assert not beta_textgrid.is_file()
    for story, n in STORIES.items():
        run = runs["UTS02", story]
        # N - 5 volumes at 2k - 10 + 1; 10 and 5 trimmed; N - 20 rows in the file.
        np.testing.assert_allclose(run.tr_grid.times, [2.0 * k - 10.0 + 1.0 for k in range(n - 5)])
        assert (run.trim_start, run.trim_end, run.n_trs) == (10, 5, n - 20)
        assert run.response_is_trimmed
        assert run.response_paths == (derivative / "preprocessed_data" / "UTS02" / f"{story}.hf5",)

    movie01 = runs["UTS01", "movie01"]
    assert (movie01.modality, movie01.stimulus) == ("movie", "movie01")
    assert movie01.stimulus_path == derivative / "Movies" / "movie01_frames.tsv"
    np.testing.assert_allclose(movie01.tr_grid.times, centred_grid(1.5, 30, 4.0))
    assert movie01.tr_grid.tr == 1.5
    assert (movie01.trim_start, movie01.trim_end, movie01.n_trs) == (3, 2, 25)
    movie02 = runs["UTS01", "movie02"]
    np.testing.assert_allclose(movie02.tr_grid.times, centred_grid(2.0, 25, 10.0))
    assert (movie02.trim_start, movie02.trim_end, movie02.n_trs) == (10, 5, 10)
    # the declared video is not shipped; its expected path is kept
    assert movie02.stimulus_path == derivative / "Movies" / "movie02.mp4"

    for key, run in runs.items():
        np.testing.assert_array_equal(load_responses(run), responses[key].astype(np.float32))


def test_huth_derivatives_spelling_and_derivative_folder(tmp_path):
    derivative, _ = build_huth(tmp_path, derivative_name="derivatives")
    from_root = load_dataset(tmp_path, feature_root=tmp_path / "elsewhere")
    assert from_root.feature_root == tmp_path / "elsewhere"
    from_derivative = read_huth(derivative)
    assert from_derivative.feature_root == derivative / "features"
    assert [(r.subject, r.name) for r in from_root.runs] == \
        [(r.subject, r.name) for r in from_derivative.runs]


def test_huth_default_space_and_unlisted_run(tmp_path):
    derivative = tmp_path / "derivative"
    write_hf5(derivative / "preprocessed_data" / "UTS01" / "alpha.hf5", np.zeros((10, 2)))
    write_json(derivative / "respdict.json", {"alpha": 30})
    assert read_huth(tmp_path).runs[0].space == "unknown"
    write_hf5(derivative / "preprocessed_data" / "UTS01" / "gamma.hf5", np.zeros((10, 2)))
    with pytest.raises(BrainencInputError, match="gamma.hf5: run 'gamma' is listed neither"):
        load_dataset(tmp_path)


def test_huth_tr_count_mismatch_on_load(tmp_path):
    derivative = tmp_path / "derivative"
    write_hf5(derivative / "preprocessed_data" / "UTS03" / "alpha.hf5", np.zeros((11, 2)))
    write_json(derivative / "respdict.json", {"alpha": 30})
    run = load_dataset(tmp_path).runs[0]
    with pytest.raises(BrainencInputError) as info:
        load_responses(run)
    message = str(info.value)
    assert "alpha.hf5" in message
    assert "has 11 rows (TRs) but the stimulus TR grid gives 10 (25 volumes" in message


# -- BIDS ---------------------------------------------------------------------

def build_bids(root, rng):
    fmriprep = root / "derivatives" / "fmriprep"
    write_json(root / "dataset_description.json", {"Name": "toy", "BIDSVersion": "1.8.0"})
    write_json(root / "brainenc.json", {"trim_start": 2, "trim_end": 1})
    truth = {}

    # sub-01 story: surface pair (TR from its sidecar) plus a volume and mask.
    func = fmriprep / "sub-01" / "func"
    prefix = "sub-01_task-story_run-1"
    left, right = rng.standard_normal((FS5_HEMI, 20)), rng.standard_normal((FS5_HEMI, 20))
    write_gifti(func / f"{prefix}_hemi-L_space-fsaverage5_bold.func.gii", left)
    write_gifti(func / f"{prefix}_hemi-R_space-fsaverage5_bold.func.gii", right)
    write_json(func / f"{prefix}_hemi-L_space-fsaverage5_bold.json", {"RepetitionTime": 1.5})
    volume = rng.standard_normal((3, 3, 3, 20)).astype(np.float32)
    mask = (rng.random((3, 3, 3)) > 0.4).astype(np.uint8)
    write_nifti(func / f"{prefix}_space-MNI152NLin2009cAsym_desc-preproc_bold.nii.gz", volume, 1.5)
    write_nifti(func / f"{prefix}_space-MNI152NLin2009cAsym_desc-brain_mask.nii.gz", mask)
    write_text(root / "sub-01" / "func" / f"{prefix}_events.tsv",
               "onset\tduration\tstim_file\n2.0\t30.0\tstory.TextGrid\n")
    truth["story_surface"] = np.concatenate([left.T, right.T], axis=1)
    truth["story_volume"] = np.stack([volume[..., t][mask.astype(bool)] for t in range(20)])

    # sub-01 movie: surface pair, TR from GIFTI TimeStep (ms), stimulus on the second row.
    left, right = rng.standard_normal((FS5_HEMI, 16)), rng.standard_normal((FS5_HEMI, 16))
    write_gifti(func / "sub-01_task-movie_hemi-L_space-fsaverage5_bold.func.gii", left, 2000)
    write_gifti(func / "sub-01_task-movie_hemi-R_space-fsaverage5_bold.func.gii", right, 2000)
    write_text(root / "sub-01" / "func" / "sub-01_task-movie_events.tsv",
               "onset\tduration\tstim_file\n0.0\t6.0\tn/a\n6.0\t20.0\tclip_frames.tsv\n")
    truth["movie"] = np.concatenate([left.T, right.T], axis=1)

    # sub-02 ses-1 story: volume only, TR from the NIfTI header, no events file.
    func = fmriprep / "sub-02" / "ses-1" / "func"
    prefix = "sub-02_ses-1_task-story_run-1"
    volume = rng.standard_normal((3, 3, 3, 14)).astype(np.float32)
    mask = np.zeros((3, 3, 3), dtype=np.uint8)
    mask[1, :, 1:] = 1
    write_nifti(func / f"{prefix}_space-T1w_desc-preproc_bold.nii.gz", volume, 2.5)
    write_nifti(func / f"{prefix}_space-T1w_desc-brain_mask.nii.gz", mask)
    truth["volume"] = np.stack([volume[..., t][mask.astype(bool)] for t in range(14)])

    write_text(root / "stimuli" / "story.TextGrid", TEXTGRID)
    write_text(root / "stimuli" / "clip_frames.tsv", "time\n0.0\n0.5\n")
    return fmriprep, truth


def test_bids_runs_grids_and_responses(tmp_path):
    fmriprep, truth = build_bids(tmp_path, np.random.default_rng(2))
    dataset = load_dataset(tmp_path)

    assert (dataset.layout, dataset.preset) == ("bids", "default")
    assert dataset.feature_root == tmp_path / "features"
    assert [(r.subject, r.name) for r in dataset.runs] == [
        ("01", "task-movie"), ("01", "task-story_run-1"), ("02", "ses-1_task-story_run-1")]
    movie, story, volume_run = dataset.runs
    func = fmriprep / "sub-01" / "func"

    assert (story.modality, story.stimulus, story.space) == ("story", "story", "fsaverage5")
    assert story.stimulus_path == tmp_path / "stimuli" / "story.TextGrid"
    assert story.response_paths == (
        func / "sub-01_task-story_run-1_hemi-L_space-fsaverage5_bold.func.gii",
        func / "sub-01_task-story_run-1_hemi-R_space-fsaverage5_bold.func.gii")
    assert story.tr_grid.tr == 1.5
    np.testing.assert_allclose(story.tr_grid.times, centred_grid(1.5, 20, 2.0))
    assert (story.trim_start, story.trim_end, story.n_trs) == (2, 1, 17)
    assert not story.response_is_trimmed
    np.testing.assert_allclose(load_responses(story), truth["story_surface"][2:19], rtol=1e-6)

    assert (movie.modality, movie.stimulus) == ("movie", "clip")
    assert movie.stimulus_path == tmp_path / "stimuli" / "clip_frames.tsv"
    np.testing.assert_allclose(movie.tr_grid.times, centred_grid(2.0, 16, 6.0))
    np.testing.assert_allclose(load_responses(movie), truth["movie"][2:15], rtol=1e-6)

    assert (volume_run.space, volume_run.stimulus, volume_run.modality) == \
        ("native_volume", "story", "story")  # space-T1w: not projected onto fsaverage
    assert volume_run.mask_path.name == "sub-02_ses-1_task-story_run-1_space-T1w_desc-brain_mask.nii.gz"
    np.testing.assert_allclose(volume_run.tr_grid.times, centred_grid(2.5, 14, 0.0))
    np.testing.assert_array_equal(load_responses(volume_run), truth["volume"][2:13])


def test_bids_prefer_volume(tmp_path):
    _, truth = build_bids(tmp_path, np.random.default_rng(3))
    write_json(tmp_path / "brainenc.json", {"prefer": "volume"})
    story = next(r for r in read_bids(tmp_path).runs if r.name == "task-story_run-1")
    assert story.space == "volume" and story.response_paths[0].name.endswith("preproc_bold.nii.gz")
    assert (story.trim_start, story.trim_end) == (0, 0)
    np.testing.assert_allclose(story.tr_grid.times, centred_grid(1.5, 20, 2.0))
    np.testing.assert_array_equal(load_responses(story), truth["story_volume"])


def test_bids_fsaverage6_surfaces_and_the_surface_space_setting(tmp_path):
    _, truth = build_bids(tmp_path, np.random.default_rng(4))
    func = tmp_path / "derivatives" / "fmriprep" / "sub-01" / "func"
    rng = np.random.default_rng(5)
    left, right = rng.standard_normal((40962, 20)), rng.standard_normal((40962, 20))
    for hemi, data in (("L", left), ("R", right)):
        write_gifti(func / f"sub-01_task-story_run-1_hemi-{hemi}_space-fsaverage6_bold.func.gii", data)
    story = next(r for r in read_bids(tmp_path).runs if r.name == "task-story_run-1")
    assert story.space == "fsaverage5"          # the smaller mesh first
    write_json(tmp_path / "brainenc.json", {"surface_space": "fsaverage6"})
    with pytest.raises(BrainencInputError, match="expected a space-fsaverage6 hemi-L/hemi-R pair"):
        read_bids(tmp_path)                     # the movie run has no fsaverage6 pair
    for hemi in "LR":
        write_gifti(func / f"sub-01_task-movie_hemi-{hemi}_space-fsaverage6_bold.func.gii",
                    np.zeros((40962, 16)))
    story = next(r for r in read_bids(tmp_path).runs if r.name == "task-story_run-1")
    assert story.space == "fsaverage6"
    assert story.response_paths[0].name.endswith("space-fsaverage6_bold.func.gii")
    np.testing.assert_allclose(load_responses(story), np.concatenate([left.T, right.T], axis=1),
                               rtol=1e-6)
    write_json(tmp_path / "brainenc.json", {"surface_space": "fsaverage7"})
    with pytest.raises(BrainencInputError, match="'surface_space' must be one of"):
        read_bids(tmp_path)


def test_bids_fsaverage6_name_with_fsaverage5_vertices_is_refused(tmp_path):
    build_bids(tmp_path, np.random.default_rng(4))
    func = tmp_path / "derivatives" / "fmriprep" / "sub-01" / "func"
    for hemi in "LR":
        write_gifti(func / f"sub-01_task-movie_hemi-{hemi}_space-fsaverage6_bold.func.gii",
                    np.zeros((FS5_HEMI, 16)))
    write_json(tmp_path / "brainenc.json", {"surface_space": "fsaverage6"})
    with pytest.raises(BrainencInputError, match="declares space fsaverage6 .81 924 vertices"):
        read_bids(tmp_path)


def test_bids_events_modality_column_and_unknown_stimulus_type(tmp_path):
    func = tmp_path / "derivatives" / "fmriprep" / "sub-07" / "func"
    write_gifti(func / "sub-07_task-talk_hemi-L_space-fsnative_bold.func.gii",
                np.ones((3, 9)), 1000)
    write_gifti(func / "sub-07_task-talk_hemi-R_space-fsnative_bold.func.gii",
                np.ones((2, 9)), 1000)
    events = write_text(tmp_path / "sub-07" / "func" / "sub-07_task-talk_events.tsv",
                        "onset\tstim_file\tmodality\n1.5\tnarration.wav\tstory\n")
    run = read_bids(tmp_path).runs[0]
    assert (run.modality, run.stimulus, run.stimulus_path) == \
        ("story", "narration", tmp_path / "stimuli" / "narration.wav")
    np.testing.assert_allclose(run.tr_grid.times, centred_grid(1.0, 9, 1.5))
    write_text(events, "onset\tstim_file\n1.5\tnarration.wav\n")
    with pytest.raises(BrainencInputError, match="sub-07_task-talk_events.tsv: cannot tell"):
        read_bids(tmp_path)


def test_bids_missing_stimulus_names_the_run(tmp_path):
    func = tmp_path / "derivatives" / "fmriprep" / "sub-01" / "func"
    write_gifti(func / "sub-01_task-odd_hemi-L_space-fsaverage5_bold.func.gii", np.ones((3, 9)), 1000)
    write_gifti(func / "sub-01_task-odd_hemi-R_space-fsaverage5_bold.func.gii", np.ones((2, 9)), 1000)
    with pytest.raises(BrainencInputError, match="sub-01_task-odd_hemi-L.*no stimulus found"):
        load_dataset(tmp_path)


# -- manifest -----------------------------------------------------------------

MANIFEST_HEADER = ["subject", "run", "modality", "response", "stimulus", "stimulus_file", "tr",
                   "trim_start", "trim_end", "stimulus_onset", "mask", "space"]


def write_manifest(path, rows, header=MANIFEST_HEADER):
    lines = ["\t".join(header)] + ["\t".join(str(row.get(c, "")) for c in header) for row in rows]
    return write_text(path, "\n".join(lines) + "\n")


def build_manifest_data(folder, rng):
    truth = {}
    truth["B", "s1"] = rng.standard_normal((12, 3))
    write_hf5(folder / "resp" / "b_s1.hf5", truth["B", "s1"])
    truth["A", "m1"] = rng.standard_normal((9, 4))
    np.save(folder / "resp" / "a_m1.npy", truth["A", "m1"])
    volume = rng.standard_normal((4, 4, 4, 10)).astype(np.float32)
    mask = np.zeros((4, 4, 4), dtype=np.uint8)
    mask[2, 1:3, :] = 1
    write_nifti(folder / "resp" / "a_s1.nii.gz", volume, 2.0)
    write_nifti(folder / "resp" / "a_mask.nii.gz", mask)
    truth["A", "s1"] = np.stack([volume[..., t][mask.astype(bool)] for t in range(10)])
    left, right = rng.standard_normal((5, 8)), rng.standard_normal((3, 8))
    write_gifti(folder / "resp" / "b_L.func.gii", left)
    write_gifti(folder / "resp" / "b_R.func.gii", right)
    truth["B", "m1"] = np.concatenate([left.T, right.T], axis=1)
    write_text(folder / "stim" / "s1.TextGrid", TEXTGRID)
    rows = [
        dict(subject="B", run="s1", modality="story", response="resp/b_s1.hf5", stimulus="s1",
             stimulus_file="stim/s1.TextGrid", tr=2.0, trim_start=2, trim_end=1,
             stimulus_onset=3.0),
        dict(subject="A", run="m1", modality="movie", response="resp/a_m1.npy", stimulus="m1",
             tr=1.0),
        dict(subject="B", run="m1", modality="movie",
             response="resp/b_L.func.gii;resp/b_R.func.gii", stimulus="m1", tr=1.5,
             stimulus_onset=-0.5, trim_end=2),
        dict(subject="A", run="s1", modality="story", response="resp/a_s1.nii.gz", stimulus="s1",
             tr=2.0, mask="resp/a_mask.nii.gz", trim_start=1),
    ]
    return rows, truth


def test_manifest_runs_grids_and_responses(tmp_path):
    rows, truth = build_manifest_data(tmp_path, np.random.default_rng(4))
    manifest = write_manifest(tmp_path / "brainenc_manifest.tsv", rows)
    (tmp_path / "derivative" / "preprocessed_data").mkdir(parents=True)  # manifest wins

    dataset = load_dataset(tmp_path)

    assert (dataset.layout, dataset.preset) == ("manifest", "default")
    assert dataset.root == tmp_path and dataset.feature_root == tmp_path / "features"
    assert [(r.subject, r.name) for r in dataset.runs] == \
        [("A", "m1"), ("A", "s1"), ("B", "m1"), ("B", "s1")]
    by_key = {(r.subject, r.name): r for r in dataset.runs}
    expected = {  # (tr, file rows, onset, trims, space)
        ("B", "s1"): (2.0, 12, 3.0, (2, 1), "unknown"),
        ("A", "m1"): (1.0, 9, 0.0, (0, 0), "unknown"),
        ("B", "m1"): (1.5, 8, -0.5, (0, 2), "unknown"),
        ("A", "s1"): (2.0, 10, 0.0, (1, 0), "volume"),
    }
    for key, (tr, n, onset, (start, end), space) in expected.items():
        run = by_key[key]
        np.testing.assert_allclose(run.tr_grid.times, centred_grid(tr, n, onset))
        assert (run.trim_start, run.trim_end, run.space) == (start, end, space)
        assert not run.response_is_trimmed
        np.testing.assert_allclose(load_responses(run), truth[key][start:n - end], rtol=1e-6)
    assert by_key["B", "s1"].stimulus_path == tmp_path / "stim" / "s1.TextGrid"
    assert by_key["A", "m1"].stimulus_path is None
    assert by_key["A", "s1"].mask_path == tmp_path / "resp" / "a_mask.nii.gz"
    assert by_key["B", "m1"].modality == "movie"
    # A .tsv given directly is read the same way.
    assert [(r.subject, r.name) for r in load_dataset(manifest).runs] == \
        [(r.subject, r.name) for r in dataset.runs]


def test_manifest_missing_response_names_line_and_file(tmp_path):
    rows, _ = build_manifest_data(tmp_path, np.random.default_rng(5))
    rows[1]["response"] = "resp/absent.npy"
    manifest = write_manifest(tmp_path / "runs.tsv", rows)
    with pytest.raises(BrainencInputError) as info:
        read_manifest(manifest)
    message = str(info.value)
    assert "runs.tsv" in message and "line 3" in message
    assert str(tmp_path / "resp" / "absent.npy") in message


def test_manifest_unknown_modality_and_missing_column(tmp_path):
    rows, _ = build_manifest_data(tmp_path, np.random.default_rng(6))
    rows[0]["modality"] = "podcast"
    with pytest.raises(BrainencInputError, match=r"runs.tsv: line 2: unknown modality 'podcast'"):
        read_manifest(write_manifest(tmp_path / "runs.tsv", rows))
    header = [c for c in MANIFEST_HEADER if c != "tr"]
    with pytest.raises(BrainencInputError, match=r"cols.tsv: missing required column\(s\) \['tr'\]"):
        read_manifest(write_manifest(tmp_path / "cols.tsv", rows, header))


# -- discovery ------------------------------------------------------------------

def test_unknown_layout_lists_what_was_looked_for(tmp_path):
    folder = tmp_path / "mystery"
    (folder / "data").mkdir(parents=True)
    with pytest.raises(BrainencInputError) as info:
        load_dataset(folder)
    message = str(info.value)
    assert "mystery" in message
    for looked_for in ("brainenc_manifest.tsv", "derivative/preprocessed_data",
                       "derivatives/preprocessed_data", "derivatives/fmriprep"):
        assert looked_for in message
    with pytest.raises(BrainencInputError, match="absent.*dataset not found"):
        load_dataset(tmp_path / "absent")

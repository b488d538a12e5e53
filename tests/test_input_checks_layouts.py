"""Layout inputs that would give a wrong answer: each is an error or a warning naming the file."""
from __future__ import annotations

import warnings
from contextlib import contextmanager

import nibabel as nib
import numpy as np
import pytest

from brainenc.errors import BrainencInputError, BrainencInputWarning
from brainenc.io.layouts import load_dataset, read_bids, read_huth, read_manifest
from brainenc.io.responses import check_run_responses, load_responses
from tests.test_layouts import (
    FS5_HEMI,
    MANIFEST_HEADER,
    TEXTGRID,
    build_manifest_data,
    write_gifti,
    write_hf5,
    write_json,
    write_manifest,
    write_nifti,
    write_text,
)


@contextmanager
def no_warnings():
    """A context in which any warning fails the test."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        yield


# -- BIDS builders --------------------------------------------------------------

def bids_run(root, sub="01", task="story", n_trs=12, tr_json=2.0, events=None,
             stimulus="story.TextGrid"):
    """One BIDS run with a small (non-fsaverage5) surface pair; returns the func folder."""
    func = root / "derivatives" / "fmriprep" / f"sub-{sub}" / "func"
    prefix = f"sub-{sub}_task-{task}"
    rng = np.random.default_rng(0)
    for hemi in ("L", "R"):
        write_gifti(func / f"{prefix}_hemi-{hemi}_space-fsnative_bold.func.gii",
                    rng.standard_normal((4, n_trs)))
    if tr_json is not None:
        write_json(func / f"{prefix}_hemi-L_space-fsnative_bold.json", {"RepetitionTime": tr_json})
    if events is not None:
        write_text(root / f"sub-{sub}" / "func" / f"{prefix}_events.tsv", events)
    if stimulus is not None:
        write_text(root / "stimuli" / stimulus, TEXTGRID)
    return func


EVENTS = "onset\tduration\tstim_file\n4.0\t20.0\tstory.TextGrid\n"


# -- 1. BIDS events and onsets --------------------------------------------------

def test_bids_events_read_without_warning(tmp_path):
    bids_run(tmp_path, events=EVENTS)
    with no_warnings():
        run = read_bids(tmp_path).runs[0]
    assert run.tr_grid.times[0] == pytest.approx(2.0 / 2 - 4.0)


def test_bids_without_events_warns_onset_zero_naming_each_run(tmp_path):
    bids_run(tmp_path, sub="01", events=None)
    bids_run(tmp_path, sub="02", events="onset\tduration\ttrial_type\n0.0\t20.0\tlisten\n")
    with pytest.warns(BrainencInputWarning) as record:
        dataset = read_bids(tmp_path)
    message = str(record[0].message)
    assert "onset 0 s assumed for 2 run(s)" in message
    # the events file looked for, and the one without a stim_file column
    assert str(tmp_path / "sub-01" / "func" / "sub-01_task-story_events.tsv") + ": not found" \
        in message
    assert str(tmp_path / "sub-02" / "func" / "sub-02_task-story_events.tsv") + \
        ": no 'stim_file' column" in message
    assert "'onset'" in message and "'stim_file'" in message
    assert all(run.tr_grid.times[0] == pytest.approx(1.0) for run in dataset.runs)


def test_bids_events_without_stim_file_value_warns(tmp_path):
    bids_run(tmp_path, events="onset\tduration\tstim_file\n0.0\t20.0\tn/a\n")
    with pytest.warns(BrainencInputWarning, match=r"sub-01_task-story_events.tsv: no row with a "
                                                  r"'stim_file' value"):
        read_bids(tmp_path)


def test_bids_ragged_events_row_is_an_error_naming_file_and_line(tmp_path):
    bids_run(tmp_path, events="onset\tduration\tstim_file\n4.0\tstory.TextGrid\n")
    with pytest.raises(BrainencInputError) as info:
        read_bids(tmp_path)
    message = str(info.value)
    assert "sub-01_task-story_events.tsv" in message and "line 2" in message
    assert "2 cells but the header has 3 columns" in message


def test_bids_several_stimuli_in_one_run_is_an_error(tmp_path):
    bids_run(tmp_path, events="onset\tstim_file\n4.0\tstory.TextGrid\n30.0\tother.TextGrid\n")
    with pytest.raises(BrainencInputError, match=r"_events.tsv: 'stim_file' names 2 different "
                                                 r"stimuli \['story.TextGrid', 'other.TextGrid'\]"):
        read_bids(tmp_path)


def test_bids_stim_file_without_onset_column_is_an_error(tmp_path):
    bids_run(tmp_path, events="duration\tstim_file\n20.0\tstory.TextGrid\n")
    with pytest.raises(BrainencInputError, match="_events.tsv: has a 'stim_file' column but no "
                                                 "'onset' column"):
        read_bids(tmp_path)


def test_bids_negative_onset_warns(tmp_path):
    bids_run(tmp_path, events="onset\tstim_file\n-4.0\tstory.TextGrid\n")
    with pytest.warns(BrainencInputWarning, match=r"(?s)negative stimulus onset .*_events.tsv line 2: "
                                                  r"onset -4 s"):
        read_bids(tmp_path)


# -- 2. TR sanity range -----------------------------------------------------------

def test_bids_sidecar_tr_in_milliseconds(tmp_path):
    func = bids_run(tmp_path, tr_json=2000, events=EVENTS)
    with pytest.raises(BrainencInputError) as info:
        read_bids(tmp_path)
    message = str(info.value)
    assert str(func / "sub-01_task-story_hemi-L_space-fsnative_bold.json") in message
    assert "RepetitionTime = 2000" in message and "looks like milliseconds" in message
    assert "0.1-10 s" in message


@pytest.mark.parametrize("value", [0.01, 42.0, "fast", -2.0])
def test_bids_sidecar_tr_out_of_range_or_not_a_number(tmp_path, value):
    bids_run(tmp_path, tr_json=value, events=EVENTS)
    with pytest.raises(BrainencInputError, match=r"_bold.json: RepetitionTime"):
        read_bids(tmp_path)


def test_gifti_time_step_in_seconds_is_named(tmp_path):
    func = bids_run(tmp_path, tr_json=None, events=EVENTS)
    left = func / "sub-01_task-story_hemi-L_space-fsnative_bold.func.gii"
    write_gifti(left, np.ones((4, 12)), time_step_ms=2)
    with pytest.raises(BrainencInputError) as info:
        read_bids(tmp_path)
    message = str(info.value)
    assert left.name in message and "TimeStep (milliseconds) = '2'" in message
    assert "looks like seconds" in message


def bids_volume_run(root, tr, unit="sec"):
    func = root / "derivatives" / "fmriprep" / "sub-01" / "func"
    bold = func / "sub-01_task-story_space-T1w_desc-preproc_bold.nii.gz"
    func.mkdir(parents=True, exist_ok=True)
    image = nib.Nifti1Image(np.random.default_rng(0).standard_normal((2, 2, 2, 12)).astype(
        np.float32), np.eye(4))
    image.header.set_zooms((2.0, 2.0, 2.0, tr))
    if unit is not None:
        image.header.set_xyzt_units("mm", unit)
    nib.save(image, str(bold))
    write_nifti(func / "sub-01_task-story_space-T1w_desc-brain_mask.nii.gz",
                np.ones((2, 2, 2), dtype=np.uint8))
    write_text(root / "sub-01" / "func" / "sub-01_task-story_events.tsv", EVENTS)
    write_text(root / "stimuli" / "story.TextGrid", TEXTGRID)
    return bold


def test_nifti_pixdim_in_milliseconds_with_unit_seconds(tmp_path):
    bold = bids_volume_run(tmp_path, 2000.0)
    with pytest.raises(BrainencInputError) as info:
        read_bids(tmp_path)
    message = str(info.value)
    assert str(bold) in message and "pixdim[4] (time unit 'sec') = 2000" in message
    assert "looks like milliseconds" in message


def test_nifti_pixdim_in_msec_unit_is_converted(tmp_path):
    bids_volume_run(tmp_path, 2000.0, unit="msec")
    assert read_bids(tmp_path).runs[0].tr_grid.tr == pytest.approx(2.0)


def test_nifti_without_time_unit_warns(tmp_path):
    bold = bids_volume_run(tmp_path, 1.5, unit=None)
    with pytest.warns(BrainencInputWarning, match=rf"{bold.name}: the NIfTI header gives "
                                                  r"pixdim\[4\] = 1.5 without a time unit"):
        run = read_bids(tmp_path).runs[0]
    assert run.tr_grid.tr == 1.5


def test_sidecar_and_nifti_header_disagree_warns(tmp_path):
    bold = bids_volume_run(tmp_path, 1.5)
    write_json(bold.with_name(bold.name.replace(".nii.gz", ".json")), {"RepetitionTime": 2.0})
    with pytest.warns(BrainencInputWarning, match=rf"_bold.json: RepetitionTime 2 s but the NIfTI "
                                                  rf"header of {bold.name} gives 1.5 s"):
        run = read_bids(tmp_path).runs[0]
    assert run.tr_grid.tr == 2.0


def test_manifest_tr_in_milliseconds(tmp_path):
    rows, _ = build_manifest_data(tmp_path, np.random.default_rng(0))
    rows[2]["tr"] = 1500
    with pytest.raises(BrainencInputError) as info:
        read_manifest(write_manifest(tmp_path / "runs.tsv", rows))
    message = str(info.value)
    assert "runs.tsv" in message and "line 4" in message and "'tr' = '1500'" in message
    assert "looks like milliseconds" in message


def test_huth_movie_tr_in_milliseconds(tmp_path):
    derivative = tmp_path / "derivative"
    write_hf5(derivative / "preprocessed_data" / "UTS01" / "film.hf5", np.ones((10, 2)))
    config = write_json(derivative / "brainenc.json", {"movies": {"film": {"n_trs": 25,
                                                                           "tr": 2000}}})
    with pytest.raises(BrainencInputError) as info:
        read_huth(tmp_path)
    message = str(info.value)
    assert str(config) in message and "movie 'film' 'tr' = 2000" in message
    assert "looks like milliseconds" in message


# -- 3. Huth response files ---------------------------------------------------------

def huth_tree(root, files, respdict=None):
    derivative = root / "derivative"
    for subject, name in files:
        write_hf5(derivative / "preprocessed_data" / subject / name, np.ones((10, 2)))
    write_json(derivative / "respdict.json", respdict or {"alpha": 30, "beta": 30})
    return derivative


@pytest.mark.parametrize("name", ["alpha.HF5", "alpha.H5", "alpha.Hf5"])
def test_huth_response_suffix_in_other_case_is_an_error(tmp_path, name):
    derivative = huth_tree(tmp_path, [("UTS01", "beta.hf5"), ("UTS01", name)])
    with pytest.raises(BrainencInputError) as info:
        read_huth(tmp_path)
    message = str(info.value)
    assert str(derivative / "preprocessed_data" / "UTS01" / name) in message
    assert "rename it to alpha" in message


def test_huth_h5_suffix_is_read(tmp_path):
    huth_tree(tmp_path, [("UTS01", "alpha.h5"), ("UTS01", "beta.hf5")])
    with no_warnings():
        runs = read_huth(tmp_path).runs
    assert [(r.name, r.response_paths[0].name) for r in runs] == [
        ("alpha", "alpha.h5"), ("beta", "beta.hf5")]


def test_huth_two_response_files_for_one_run(tmp_path):
    huth_tree(tmp_path, [("UTS01", "alpha.h5"), ("UTS01", "alpha.hf5"), ("UTS01", "beta.hf5")])
    with pytest.raises(BrainencInputError, match="alpha.hf5: run 'alpha' of subject UTS01 has two "
                                                 "response files: alpha.h5 and alpha.hf5"):
        read_huth(tmp_path)


def test_huth_story_without_response_warns_naming_subject_stories_and_path(tmp_path):
    derivative = huth_tree(tmp_path, [("UTS01", "alpha.hf5"), ("UTS01", "beta.hf5"),
                                      ("UTS02", "alpha.hf5")],
                           respdict={"alpha": 30, "beta": 30, "gamma": 30})
    with pytest.warns(BrainencInputWarning) as record:
        dataset = read_huth(tmp_path)
    message = str(record[0].message)
    assert "respdict.json" in message
    assert f"subject UTS01: no {derivative / 'preprocessed_data' / 'UTS01'}/<run>.hf5 for " \
           "1 run(s): gamma" in message
    assert "subject UTS02:" in message and "2 run(s): beta, gamma" in message
    assert len(dataset.runs) == 3


def test_huth_files_not_read_warn(tmp_path):
    derivative = huth_tree(tmp_path, [("UTS01", "alpha.hf5"), ("UTS01", "beta.hf5")])
    np.save(derivative / "preprocessed_data" / "UTS01" / "gamma.npy", np.ones((3, 2)))
    with pytest.warns(BrainencInputWarning, match=r"1 file\(s\) not read .*UTS01/gamma.npy"):
        read_huth(tmp_path)


def test_huth_unknown_config_keys_warn(tmp_path):
    derivative = huth_tree(tmp_path, [("UTS01", "alpha.hf5"), ("UTS01", "beta.hf5")])
    write_json(derivative / "brainenc.json", {"spaec": "fsaverage5", "movies": {
        "film": {"n_trs": 25, "trimstart": 3}}})
    with pytest.warns(BrainencInputWarning) as record:
        read_huth(tmp_path)
    messages = " | ".join(str(w.message) for w in record)
    assert "brainenc.json: unknown key(s) ['spaec']" in messages
    assert "brainenc.json: unknown key(s) of movie 'film' ['trimstart']" in messages


def test_huth_negative_movie_start_warns(tmp_path):
    derivative = tmp_path / "derivative"
    write_hf5(derivative / "preprocessed_data" / "UTS01" / "film.hf5", np.ones((10, 2)))
    write_json(derivative / "brainenc.json", {"movies": {"film": {"n_trs": 25, "start": -10}}})
    with pytest.warns(BrainencInputWarning, match=r"brainenc.json: movie 'film' 'start': stimulus "
                                                  r"onset -10 s is negative"):
        read_huth(tmp_path)


# -- 5. Declared response space -------------------------------------------------------

def test_huth_fsaverage5_with_wrong_column_count_names_brainenc_json(tmp_path):
    derivative = huth_tree(tmp_path, [("UTS01", "alpha.hf5")], respdict={"alpha": 30})
    config = write_json(derivative / "brainenc.json", {"space": "fsaverage5"})
    run = read_huth(tmp_path).runs[0]
    assert run.space_source == config
    for check in (load_responses, check_run_responses):
        with pytest.raises(BrainencInputError) as info:
            check(run)
        message = str(info.value)
        assert message.startswith(str(config))
        assert "declares space fsaverage5 (20 484 vertices: 10 242 per hemisphere) but " \
               "alpha.hf5 has 2 columns" in message


def test_check_run_responses_on_a_good_huth_run(tmp_path):
    derivative = tmp_path / "derivative"
    write_hf5(derivative / "preprocessed_data" / "UTS01" / "alpha.hf5",
              np.random.default_rng(0).standard_normal((10, 2 * FS5_HEMI)))
    write_json(derivative / "respdict.json", {"alpha": 30})
    write_json(derivative / "brainenc.json", {"space": "fsaverage5"})
    run = read_huth(tmp_path).runs[0]
    assert check_run_responses(run) == (10, 2 * FS5_HEMI)


def test_manifest_fsaverage5_with_wrong_column_count(tmp_path):
    rows, _ = build_manifest_data(tmp_path, np.random.default_rng(0))
    rows[2]["space"] = "fsaverage5"  # the GIFTI pair has 5 + 3 vertices
    with pytest.raises(BrainencInputError) as info:
        read_manifest(write_manifest(tmp_path / "runs.tsv", rows))
    message = str(info.value)
    assert "runs.tsv: line 4: declares space fsaverage5" in message
    assert "b_L.func.gii has 5 and b_R.func.gii has 3 columns" in message


def test_bids_fsaverage5_file_with_wrong_vertex_count(tmp_path):
    func = tmp_path / "derivatives" / "fmriprep" / "sub-01" / "func"
    for hemi in ("L", "R"):
        write_gifti(func / f"sub-01_task-story_hemi-{hemi}_space-fsaverage5_bold.func.gii",
                    np.ones((5, 12)), time_step_ms=2000)
    write_text(tmp_path / "sub-01" / "func" / "sub-01_task-story_events.tsv", EVENTS)
    write_text(tmp_path / "stimuli" / "story.TextGrid", TEXTGRID)
    with pytest.raises(BrainencInputError, match=r"hemi-L_space-fsaverage5_bold.func.gii: its name "
                                                 r"declares space fsaverage5 .* has 5 and .* has 5"):
        read_bids(tmp_path)


# -- 6. Manifest and BIDS silent fallbacks ------------------------------------------

def test_manifest_ragged_row(tmp_path):
    rows, _ = build_manifest_data(tmp_path, np.random.default_rng(0))
    manifest = write_manifest(tmp_path / "runs.tsv", rows)
    lines = manifest.read_text().splitlines()
    lines[2] = "\t".join(lines[2].split("\t")[:7])
    manifest.write_text("\n".join(lines) + "\n")
    with pytest.raises(BrainencInputError, match=r"runs.tsv: line 3: 7 cells but the header has "
                                                 r"12 columns"):
        read_manifest(manifest)


def test_manifest_unknown_column_and_missing_onset_warn(tmp_path):
    rows, _ = build_manifest_data(tmp_path, np.random.default_rng(0))
    header = [c for c in MANIFEST_HEADER if c != "stimulus_onset"] + ["onset"]
    with pytest.warns(BrainencInputWarning) as record:
        read_manifest(write_manifest(tmp_path / "runs.tsv", rows, header))
    messages = " | ".join(str(w.message) for w in record)
    assert "runs.tsv: column(s) ['onset'] are not read" in messages
    assert "runs.tsv: stimulus onset 0 s assumed for 4 run(s) (the manifest has no " \
           "'stimulus_onset' column)" in messages


def test_manifest_with_every_onset_reads_without_warning(tmp_path):
    rows, _ = build_manifest_data(tmp_path, np.random.default_rng(0))
    for row in rows:
        row["stimulus_onset"] = abs(row.get("stimulus_onset", 0.0))
    with no_warnings():
        read_manifest(write_manifest(tmp_path / "runs.tsv", rows))


def test_manifest_negative_onset_warns(tmp_path):
    rows, _ = build_manifest_data(tmp_path, np.random.default_rng(0))
    for row in rows:
        row.setdefault("stimulus_onset", 0.0)
    with pytest.warns(BrainencInputWarning, match=r"runs.tsv: negative stimulus_onset \(line 4: "
                                                  r"-0.5 s\)"):
        read_manifest(write_manifest(tmp_path / "runs.tsv", rows))


def test_manifest_stimulus_file_of_the_other_modality(tmp_path):
    rows, _ = build_manifest_data(tmp_path, np.random.default_rng(0))
    rows[0]["modality"] = "movie"  # its stimulus_file is a TextGrid
    with pytest.raises(BrainencInputError, match=r"runs.tsv: line 2: modality is 'movie' but "
                                                 r"stimulus_file 'stim/s1.TextGrid' is a story"):
        read_manifest(write_manifest(tmp_path / "runs.tsv", rows))


def test_manifest_duplicate_run(tmp_path):
    rows, _ = build_manifest_data(tmp_path, np.random.default_rng(0))
    rows.append(dict(rows[1]))
    with pytest.raises(BrainencInputError, match=r"runs.tsv: line 6: run 'm1' of subject 'A' is "
                                                 r"already listed on line 3"):
        read_manifest(write_manifest(tmp_path / "runs.tsv", rows))


def test_bids_two_files_for_one_run_output(tmp_path):
    bold = bids_volume_run(tmp_path, 2.0)
    nib.save(nib.load(str(bold)), str(bold.with_name(bold.name[:-3])))  # .nii beside .nii.gz
    with pytest.raises(BrainencInputError, match=r"preproc_bold.nii.gz: is a second file for the "
                                                 r"same run output as .*preproc_bold.nii"):
        read_bids(tmp_path)


def test_bids_unknown_config_key_warns(tmp_path):
    bids_run(tmp_path, events=EVENTS)
    write_json(tmp_path / "brainenc.json", {"trimstart": 2})
    with pytest.warns(BrainencInputWarning, match=r"brainenc.json: unknown key\(s\) \['trimstart'\]"):
        read_bids(tmp_path)


# -- 8. Expected stimulus paths are kept ---------------------------------------------

def test_missing_textgrid_extraction_names_the_expected_path(tmp_path):
    from feature_extractors.pipeline import dataset_stimuli

    derivative = huth_tree(tmp_path, [("UTS01", "alpha.hf5")], respdict={"alpha": 30})
    dataset = read_huth(tmp_path)
    expected = derivative / "TextGrids" / "alpha.TextGrid"
    assert dataset.runs[0].stimulus_path == expected
    with pytest.raises(BrainencInputError) as info:
        dataset_stimuli(dataset)
    assert str(info.value).startswith(str(expected))


def test_bids_missing_stim_file_keeps_the_path_looked_for(tmp_path):
    bids_run(tmp_path, events="onset\tstim_file\n4.0\tgone.TextGrid\n", stimulus=None)
    run = load_dataset(tmp_path).runs[0]
    assert run.stimulus_path == tmp_path / "stimuli" / "gone.TextGrid"
    assert (run.stimulus, run.modality) == ("gone", "story")

"""Bad input through ``brainenc transfer`` as a user meets it.

Each case asserts the exit status, that the message names the file (and the
field), that no traceback is printed, and that nothing that existed before
was changed or removed (checksums of the dataset and its surroundings).
A warning is printed as one line starting with ``WARNING:`` and the
analysis runs to the end.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import h5py
import nibabel as nib
import numpy as np
import pytest

from brainenc.cli import main
from tests.conftest import make_manifest_dataset
from tests.safety import assert_refused, tree_state

SMALL = dict(n_stories=3, n_movies=3, n_trs_per_run=30)


@pytest.fixture(scope="module")
def bases(tmp_path_factory):
    from brainenc.simulate import simulate_dataset

    root = tmp_path_factory.mktemp("bases")
    simulate_dataset(root / "huth", layout="huth", **SMALL)
    simulate_dataset(root / "bids", layout="bids", **SMALL)
    return root


@pytest.fixture
def copy_of(bases, tmp_path):
    def copy(layout: str) -> Path:
        target = tmp_path / layout
        shutil.copytree(bases / layout, target)
        return target
    return copy


def _run(dataset: Path, out: Path, subject: str = "sim01", features: str = "multimodal") -> int:
    return main(["transfer", "--dataset", str(dataset), "--subject", subject, "--features",
                 features, "--out", str(out), "--quiet"])


def _assert_refused(tmp_path, dataset, capsys, *fragments, subject="sim01"):
    before = tree_state(tmp_path)
    err = assert_refused(capsys, _run(dataset, tmp_path / "out", subject=subject), *fragments)
    assert tree_state(tmp_path) == before
    return err


def _assert_warned_then_ran(tmp_path, dataset, capsys, *fragments):
    before = tree_state(dataset)
    code = _run(dataset, tmp_path / "out")
    err = capsys.readouterr().err
    assert code == 0, err
    assert "Traceback" not in err and (tmp_path / "out" / "scores.npz").is_file()
    warned = [block for block in err.split("WARNING:")[1:]]
    assert warned, err
    for fragment in fragments:
        assert fragment in "\n".join(warned), err
    assert tree_state(dataset) == before


def _bids_events(dataset: Path, run: str) -> Path:
    return dataset / "sub-sim01" / "func" / f"sub-sim01_task-{run}_events.tsv"


def test_bids_run_without_events_warns_naming_the_run(copy_of, tmp_path, capsys):
    dataset = copy_of("bids")
    _bids_events(dataset, "story02").unlink()
    _assert_warned_then_ran(tmp_path, dataset, capsys, "task-story02", "onset 0")


def test_bids_events_without_stim_file_warns(copy_of, tmp_path, capsys):
    dataset = copy_of("bids")
    events = _bids_events(dataset, "story01")
    events.write_text("onset\tduration\ttrial_type\n10.0\t80.0\tstory\n")
    _assert_warned_then_ran(tmp_path, dataset, capsys, "task-story01", "stim_file")


def test_bids_ragged_events_row_is_an_error(copy_of, tmp_path, capsys):
    dataset = copy_of("bids")
    events = _bids_events(dataset, "story01")
    events.write_text("onset\tduration\ttrial_type\tstim_file\tmodality\n10.0\t80.0\n")
    _assert_refused(tmp_path, dataset, capsys, events.name, "line 2")


def test_repetition_time_in_milliseconds_is_an_error(copy_of, tmp_path, capsys):
    dataset = copy_of("bids")
    sidecars = sorted((dataset / "derivatives" / "fmriprep").rglob("*story01*hemi-L*bold.json"))
    sidecars[0].write_text(json.dumps({"RepetitionTime": 2000, "TaskName": "story01"}))
    _assert_refused(tmp_path, dataset, capsys, sidecars[0].name, "RepetitionTime",
                    "milliseconds")


def _huth_response(dataset: Path, run: str) -> Path:
    return dataset / "derivative" / "preprocessed_data" / "sim01" / f"{run}.hf5"


def test_huth_story_without_response_file_warns(copy_of, tmp_path, capsys):
    dataset = copy_of("huth")
    respdict = dataset / "derivative" / "respdict.json"
    stories = json.loads(respdict.read_text())
    stories["story99"] = 300
    respdict.write_text(json.dumps(stories))
    _assert_warned_then_ran(tmp_path, dataset, capsys, "story99", "sim01")


def test_huth_response_spelled_upper_case_is_an_error(copy_of, tmp_path, capsys):
    dataset = copy_of("huth")
    path = _huth_response(dataset, "story02")
    path.rename(path.with_suffix(".HF5"))
    _assert_refused(tmp_path, dataset, capsys, "story02.HF5", "story02.hf5")


def _rewrite_data(path: Path, value) -> None:
    with h5py.File(path, "r+") as f:
        del f["data"]
        if isinstance(value, str):
            f.create_group("data")
        else:
            f.create_dataset("data", data=value)


def test_constant_run_warns_naming_the_file(copy_of, tmp_path, capsys):
    dataset = copy_of("huth")
    path = _huth_response(dataset, "movie02")
    with h5py.File(path, "r") as f:
        shape = f["data"].shape
    _rewrite_data(path, np.zeros(shape, dtype=np.float32))
    _assert_warned_then_ran(tmp_path, dataset, capsys, "movie02.hf5", "constant")


@pytest.mark.parametrize("kind, fragment", [
    ("complex", "complex"),
    ("strings", "numeric"),
    ("group", "group"),
    ("huge", "float32 range"),
])
def test_bad_response_values_are_errors(copy_of, tmp_path, capsys, kind, fragment):
    dataset = copy_of("huth")
    path = _huth_response(dataset, "story03")
    with h5py.File(path, "r") as f:
        data = f["data"][()]
    value = {"complex": data * (1 + 1j), "strings": data.astype("S8"), "group": "group",
             "huge": data.astype(np.float64) * 1e300}[kind]
    _rewrite_data(path, value)
    _assert_refused(tmp_path, dataset, capsys, "story03.hf5", "'data'" if kind != "huge" else "",
                    fragment)


def test_declared_fsaverage5_with_wrong_columns_names_brainenc_json(copy_of, tmp_path, capsys):
    dataset = copy_of("huth")
    for path in sorted((dataset / "derivative" / "preprocessed_data" / "sim01").glob("*.hf5")):
        with h5py.File(path, "r") as f:
            data = f["data"][()]
        _rewrite_data(path, data[:, :20000])
    _assert_refused(tmp_path, dataset, capsys, "brainenc.json", "fsaverage5", "20000")


def test_truncated_nifti_is_an_error_naming_it(tmp_path, capsys):
    root = tmp_path / "vol"
    root.mkdir()
    rng = np.random.default_rng(0)
    mask = np.zeros((4, 4, 4), dtype=np.uint8)
    mask[1:3, 1:3, 1:3] = 1
    nib.save(nib.Nifti1Image(mask, np.eye(4)), root / "mask.nii.gz")
    rows = ["subject\trun\tmodality\tresponse\tstimulus\ttr\tstimulus_onset\tmask"]
    from brainenc.io.features import write_stimulus_features

    for modality in ("story", "movie"):
        for i in range(3):
            name = f"{modality}{i}"
            image = nib.Nifti1Image(rng.standard_normal((4, 4, 4, 40)).astype(np.float32),
                                    np.eye(4))
            image.header.set_xyzt_units("mm", "sec")
            nib.save(image, root / f"{name}.nii.gz")
            write_stimulus_features(root / "features" / "feats" / f"{name}.hf5",
                                    rng.standard_normal((40, 3)), 2.0 * np.arange(40) + 1)
            rows.append(f"s1\t{name}\t{modality}\t{name}.nii.gz\t{name}\t2.0\t0\tmask.nii.gz")
    (root / "brainenc_manifest.tsv").write_text("\n".join(rows) + "\n")
    broken = root / "movie1.nii.gz"
    content = broken.read_bytes()
    broken.write_bytes(content[: len(content) * 2 // 3])
    before = tree_state(tmp_path)
    code = main(["transfer", "--dataset", str(root), "--subject", "s1", "--features", "feats",
                 "--out", str(tmp_path / "out"), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and "movie1.nii.gz" in err and "Traceback" not in err, err
    assert tree_state(tmp_path) == before


def test_too_few_runs_names_the_dataset_and_the_minimum(tmp_path, capsys):
    dataset = make_manifest_dataset(tmp_path / "ds", n_runs=2, n_trs=40, n_voxels=6)
    before = tree_state(tmp_path)
    code = main(["transfer", "--dataset", str(dataset), "--subject", "s1", "--features", "feats",
                 "--out", str(tmp_path / "out"), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert str(dataset) in err and "3" in err, err
    assert tree_state(tmp_path) == before


def _sidecar(dataset: Path, run: str, hemi: str) -> Path:
    return (dataset / "derivatives" / "fmriprep" / "sub-sim01" / "func"
            / f"sub-sim01_task-{run}_hemi-{hemi}_space-fsaverage5_bold.json")


def test_hemisphere_sidecars_that_disagree_on_the_tr_are_an_error(copy_of, tmp_path, capsys):
    dataset = copy_of("bids")
    _sidecar(dataset, "story03", "L").write_text(json.dumps({"RepetitionTime": 2.5}))
    _assert_refused(tmp_path, dataset, capsys, "different RepetitionTime", "2.5 s", "2 s")


def test_a_broken_second_sidecar_is_an_error(copy_of, tmp_path, capsys):
    dataset = copy_of("bids")
    broken = _sidecar(dataset, "story01", "R")
    broken.write_text('{"RepetitionTime": 2.0,')
    _assert_refused(tmp_path, dataset, capsys, broken.name, "invalid JSON")


def test_gifti_time_step_that_disagrees_with_the_sidecar_warns(copy_of, tmp_path, capsys):
    dataset = copy_of("bids")
    surface = _sidecar(dataset, "movie01", "L").with_name(
        "sub-sim01_task-movie01_hemi-L_space-fsaverage5_bold.func.gii")
    image = nib.load(str(surface))
    image.meta["TimeStep"] = "1500"
    nib.save(image, str(surface))
    _assert_warned_then_ran(tmp_path, dataset, capsys, "GIFTI TimeStep", surface.name)


def test_swapped_hemisphere_files_are_an_error(copy_of, tmp_path, capsys):
    dataset = copy_of("bids")
    func = _sidecar(dataset, "story02", "L").parent
    for hemi, structure in (("L", "CortexLeft"), ("R", "CortexRight")):
        path = func / f"sub-sim01_task-story02_hemi-{hemi}_space-fsaverage5_bold.func.gii"
        image = nib.load(str(path))
        image.meta["AnatomicalStructurePrimary"] = structure
        nib.save(image, str(path))
    left, right = (func / f"sub-sim01_task-story02_hemi-{h}_space-fsaverage5_bold.func.gii"
                   for h in "LR")
    swap = left.with_suffix(".swap")
    left.rename(swap)
    right.rename(left)
    swap.rename(right)
    _assert_refused(tmp_path, dataset, capsys, left.name, "AnatomicalStructurePrimary=CortexRight",
                    "swapped")


def test_shifted_feature_times_warn(copy_of, tmp_path, capsys):
    dataset = copy_of("huth")
    path = dataset / "features" / "multimodal" / "story01.hf5"
    with h5py.File(path, "r+") as f:
        times = f["times"][()]
        del f["times"]
        f["times"] = times + 30.0
    _assert_warned_then_ran(tmp_path, dataset, capsys, "story01.hf5", "fall outside run 'story01'")

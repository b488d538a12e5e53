"""Response files that would give a wrong answer: errors or warnings naming the file and field."""
from __future__ import annotations

import warnings

import h5py
import nibabel as nib
import numpy as np
import pytest

from brainenc.errors import BrainencInputError, BrainencInputWarning
from brainenc.io.dataset import Run
from brainenc.io.responses import (
    check_response_space,
    check_run_responses,
    load_responses,
    read_response_shape,
)
from brainenc.timing import StimulusEvents, TRGrid
from tests.test_responses import N_GRID, make_run, write_gifti, write_hf5, write_nifti

KEPT_ROWS = N_GRID - 3 - 2  # make_run trims 3 and 2


def hf5_run(tmp_path, data, name="resp.hf5"):
    return make_run([write_hf5(tmp_path / name, data)], trimmed=True)


# -- 4. Values ------------------------------------------------------------------------

def test_constant_run_warns_naming_the_file(tmp_path):
    run = hf5_run(tmp_path, np.zeros((KEPT_ROWS, 4)), "zeros.hf5")
    with pytest.warns(BrainencInputWarning, match=r"zeros.hf5: every voxel is constant over the 7 "
                                                  r"analysed rows"):
        load_responses(run)


def test_some_constant_voxels_do_not_warn(tmp_path):
    data = np.random.default_rng(0).standard_normal((KEPT_ROWS, 4))
    data[:, 1] = 5.0
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_responses(hf5_run(tmp_path, data))


def test_constant_hemisphere_warns_naming_it(tmp_path):
    left = np.random.default_rng(0).standard_normal((5, N_GRID))
    paths = [write_gifti(tmp_path / "L.func.gii", left),
             write_gifti(tmp_path / "R.func.gii", np.zeros((5, N_GRID)))]
    with pytest.warns(BrainencInputWarning, match=r"R.func.gii: every voxel is constant"):
        load_responses(make_run(paths, trimmed=False))


def test_complex_hdf5_is_an_error(tmp_path):
    data = np.ones((KEPT_ROWS, 3)) * (1 + 2j)
    run = hf5_run(tmp_path, data, "complex.hf5")
    for check in (load_responses, check_run_responses):
        with pytest.raises(BrainencInputError, match=r"complex.hf5: dataset 'data' holds complex "
                                                     r"values \(dtype complex128\); expected real"):
            check(run)


def test_complex_npy_and_nifti_are_errors(tmp_path):
    path = tmp_path / "complex.npy"
    np.save(path, np.ones((N_GRID, 2), dtype=np.complex64))
    with pytest.raises(BrainencInputError, match=r"complex.npy: the array holds complex values"):
        load_responses(make_run([path], trimmed=False))
    bold = tmp_path / "complex.nii.gz"
    nib.save(nib.Nifti1Image(np.ones((2, 2, 2, N_GRID), dtype=np.complex64), np.eye(4)), str(bold))
    mask = write_nifti(tmp_path / "mask.nii.gz", np.ones((2, 2, 2), dtype=np.uint8))
    with pytest.raises(BrainencInputError, match=r"complex.nii.gz: the volume holds complex"):
        load_responses(make_run([bold], trimmed=False, mask=mask))


@pytest.mark.parametrize("strings", [
    np.array([["1.0", "2.0"]] * KEPT_ROWS).astype("S"),
    np.array([["1.0", "2.0"]] * KEPT_ROWS, dtype=object).astype(h5py.string_dtype()),
])
def test_hdf5_strings_are_an_error(tmp_path, strings):
    run = hf5_run(tmp_path, strings, "text.hf5")
    for check in (load_responses, check_run_responses):
        with pytest.raises(BrainencInputError) as info:
            check(run)
        message = str(info.value)
        assert "text.hf5" in message and "dataset 'data' has dtype" in message
        assert "expected a numeric array" in message


def test_npy_strings_are_an_error(tmp_path):
    path = tmp_path / "text.npy"
    np.save(path, np.array([["1.0", "2.0"]] * N_GRID))
    with pytest.raises(BrainencInputError, match=r"text.npy: the array has dtype <U3 \(strings\); "
                                                 r"expected a numeric array"):
        read_response_shape([path])


def test_hdf5_data_group_is_named_a_group(tmp_path):
    path = tmp_path / "grouped.hf5"
    with h5py.File(path, "w") as handle:
        handle.create_group("data")["values"] = np.ones((KEPT_ROWS, 2))
    with pytest.raises(BrainencInputError, match=r"grouped.hf5: 'data' is a group \(holding "
                                                 r"\['values'\]\), not a dataset"):
        load_responses(make_run([path], trimmed=True))


def test_nan_is_reported_before_overflow(tmp_path):
    data = np.ones((KEPT_ROWS, 3))
    data[1, 2] = 1e300
    data[2, 1] = np.nan
    with pytest.raises(BrainencInputError, match=r"mixed.hf5: 1 NaN or infinite values .* voxel "
                                                 r"column 1"):
        load_responses(hf5_run(tmp_path, data, "mixed.hf5"))
    data[2, 1] = 0.0
    with pytest.raises(BrainencInputError, match=r"mixed.hf5: 1 values outside the float32 range "
                                                 r"\(max \|x\| = 1e\+300.* voxel column 2"):
        load_responses(hf5_run(tmp_path, data, "mixed.hf5"))


# -- 4. Truncated files ------------------------------------------------------------------

def truncate(path, keep):
    content = path.read_bytes()
    path.write_bytes(content[: int(len(content) * keep)] if keep < 1 else content[:-int(keep)])
    return path


def test_truncated_nifti_gz_is_a_clean_error(tmp_path):
    bold = write_nifti(tmp_path / "bold.nii.gz",
                       np.random.default_rng(0).standard_normal((4, 4, 4, N_GRID)))
    truncate(bold, 200)
    mask = write_nifti(tmp_path / "mask.nii.gz", np.ones((4, 4, 4), dtype=np.uint8))
    run = make_run([bold], trimmed=False, mask=mask)
    assert check_run_responses(run) == (KEPT_ROWS, 64)  # the header is intact
    with pytest.raises(BrainencInputError, match=r"bold.nii.gz: cannot read the volume data: "
                                                 r"truncated or corrupt"):
        load_responses(run)


def test_truncated_mask_is_a_clean_error(tmp_path):
    bold = write_nifti(tmp_path / "bold.nii.gz", np.ones((4, 4, 4, N_GRID), dtype=np.float32))
    mask = write_nifti(tmp_path / "mask.nii.gz",
                       (np.random.default_rng(0).random((4, 4, 4)) > 0.5).astype(np.uint8))
    truncate(mask, 30)
    with pytest.raises(BrainencInputError, match=r"mask.nii.gz: .*truncated or corrupt"):
        read_response_shape([bold], mask)


def test_truncated_npy_is_a_clean_error(tmp_path):
    path = tmp_path / "short.npy"
    np.save(path, np.ones((N_GRID, 50)))
    truncate(path, 0.5)
    run = make_run([path], trimmed=False)
    with pytest.raises(BrainencInputError, match=r"short.npy: truncated or corrupt: the header "
                                                 r"announces \(12, 50\) float64 values"):
        read_response_shape([path])
    with pytest.raises(BrainencInputError, match=r"short.npy: cannot read the .npy file: truncated"):
        load_responses(run)
    truncate(path, 0.05)
    with pytest.raises(BrainencInputError, match=r"short.npy: cannot read the .npy header"):
        check_run_responses(run)


def test_truncated_gifti_and_hdf5_are_clean_errors(tmp_path):
    left = truncate(write_gifti(tmp_path / "L.func.gii", np.ones((5, N_GRID))), 0.5)
    right = write_gifti(tmp_path / "R.func.gii", np.ones((5, N_GRID)))
    with pytest.raises(BrainencInputError, match=r"L.func.gii: cannot read the GIFTI file: "
                                                 r"truncated or corrupt"):
        read_response_shape([left, right])
    hdf5 = truncate(write_hf5(tmp_path / "cut.hf5", np.ones((KEPT_ROWS, 500))), 0.5)
    with pytest.raises(BrainencInputError, match=r"cut.hf5: cannot read the HDF5 file: truncated"):
        load_responses(make_run([hdf5], trimmed=True))


# -- 5. Header-level checks before computing ------------------------------------------------

def test_check_run_responses_shape_and_row_count(tmp_path):
    run = hf5_run(tmp_path, np.ones((KEPT_ROWS, 6)))
    assert check_run_responses(run) == (KEPT_ROWS, 6)
    short = hf5_run(tmp_path, np.ones((KEPT_ROWS - 1, 6)), "short.hf5")
    with pytest.raises(BrainencInputError, match=r"short.hf5: has 6 rows \(TRs\) but the stimulus "
                                                 r"TR grid gives 7"):
        check_run_responses(short)


def fsaverage5_run(paths, source):
    return Run(subject="01", name="r1", modality="story", stimulus="s", stimulus_path=None,
               tr_grid=TRGrid.from_tr(2.0, N_GRID), trim_start=3, trim_end=2,
               response_paths=tuple(paths), space="fsaverage5", space_source=source,
               response_is_trimmed=False)


def test_check_response_space_names_the_declaring_file(tmp_path):
    path = write_hf5(tmp_path / "resp.hf5", np.ones((N_GRID, 20000)))
    run = fsaverage5_run([path], tmp_path / "brainenc.json")
    with pytest.raises(BrainencInputError) as info:
        check_response_space(run, 20000)
    assert str(info.value) == (
        f"{tmp_path / 'brainenc.json'}: declares space fsaverage5 (20 484 vertices: 10 242 per "
        "hemisphere) but resp.hf5 has 20000 columns")
    check_response_space(run, 20484)


def test_check_response_space_per_hemisphere(tmp_path):
    left, right = tmp_path / "L.func.gii", tmp_path / "R.func.gii"
    run = fsaverage5_run([left, right], None)
    with pytest.raises(BrainencInputError, match=r"L.func.gii: its name declares space fsaverage5 "
                                                 r".* L.func.gii has 10000 and R.func.gii has "
                                                 r"10484 columns"):
        check_response_space(run, 20484, [10000, 10484])


# -- 7. Time bases ----------------------------------------------------------------------

def test_unsorted_event_times_are_an_error():
    with pytest.raises(ValueError, match=r"event times must not decrease: element 2 is 1.0 s "
                                         r"after 3.0 s"):
        StimulusEvents(np.array([0.5, 3.0, 1.0]), ("a", "b", "c"))
    with pytest.raises(ValueError, match="event times must be finite"):
        StimulusEvents(np.array([0.5, np.nan]), ("a", "b"))
    StimulusEvents(np.array([0.5, 0.5, 1.0]), ("a", "b", "c"))  # ties are allowed
    with pytest.raises(ValueError, match="ends at 0.2 s, before its onset 0.4 s"):
        StimulusEvents(np.array([0.3]), ("a",), onsets=np.array([0.4]), offsets=np.array([0.2]))


def test_non_monotonic_tr_grid_is_an_error():
    with pytest.raises(ValueError, match="TR times must increase"):
        TRGrid(np.array([0.0, 2.0, 2.0, 4.0]), 2.0)
    with pytest.raises(ValueError, match="TR must be positive and finite"):
        TRGrid(np.array([0.0, 2.0]), float("nan"))


def test_ragged_frame_table_row(tmp_path):
    from brainenc.io.frames import read_frame_table

    table = tmp_path / "clip_frames.tsv"
    table.write_text("frame\ttime\n0\t0.0\n1\n2\t1.0\n", encoding="utf-8")
    with pytest.raises(BrainencInputError, match=r"clip_frames.tsv: line 3: 1 cells but the header "
                                                 r"has 2 columns"):
        read_frame_table(table)

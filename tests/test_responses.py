"""Loading responses in every supported format, with trimming and validation."""
from __future__ import annotations

import h5py
import nibabel as nib
import numpy as np
import pytest

from brainenc.errors import BrainencInputError
from brainenc.io.dataset import Run
from brainenc.io.responses import load_responses, response_shape
from brainenc.timing import TRGrid

N_GRID, TRIM_START, TRIM_END = 12, 3, 2
KEPT = slice(TRIM_START, N_GRID - TRIM_END)


def make_run(paths, trimmed, mask=None, n_grid=N_GRID):
    return Run(
        subject="01", name="r1", modality="story", stimulus="s", stimulus_path=None,
        tr_grid=TRGrid.from_tr(2.0, n_grid), trim_start=TRIM_START, trim_end=TRIM_END,
        response_paths=tuple(paths), mask_path=mask, response_is_trimmed=trimmed,
    )


def write_hf5(path, data):
    with h5py.File(path, "w") as handle:
        handle["data"] = data
    return path


def write_gifti(path, matrix_vertices_by_trs, one_array=False, time_step_ms=None):
    """A GIFTI time series: one array per TR (fMRIPrep) or one vertices × TRs array."""
    columns = [matrix_vertices_by_trs] if one_array else list(matrix_vertices_by_trs.T)
    darrays = [nib.gifti.GiftiDataArray(np.ascontiguousarray(c, dtype=np.float32),
                                        intent="NIFTI_INTENT_TIME_SERIES") for c in columns]
    image = nib.gifti.GiftiImage(darrays=darrays)
    if time_step_ms is not None:
        image.meta["TimeStep"] = str(time_step_ms)
    nib.save(image, str(path))
    return path


def write_nifti(path, volume, zoom_t=2.0):
    image = nib.Nifti1Image(volume, np.eye(4))
    if volume.ndim == 4:
        image.header.set_zooms((3.0, 3.0, 3.0, zoom_t))
        image.header.set_xyzt_units("mm", "sec")
    nib.save(image, str(path))
    return path


@pytest.fixture
def rng():
    return np.random.default_rng(0)


def test_hf5_already_trimmed(tmp_path, rng):
    data = rng.standard_normal((N_GRID - TRIM_START - TRIM_END, 5))
    run = make_run([write_hf5(tmp_path / "story.hf5", data)], trimmed=True)
    loaded = load_responses(run)
    assert loaded.dtype == np.float32 and loaded.shape == (7, 5)
    np.testing.assert_array_equal(loaded, data.astype(np.float32))
    assert response_shape(run) == (7, 5)
    np.testing.assert_array_equal(load_responses(run, dtype=np.float64), data)


def test_hf5_and_npy_trimmed_on_load(tmp_path, rng):
    data = rng.standard_normal((N_GRID, 4))
    data[:, 2] = 3.0  # a constant voxel is allowed
    for path in (write_hf5(tmp_path / "r.h5", data), tmp_path / "r.npy"):
        if path.suffix == ".npy":
            np.save(path, data)
        run = make_run([path], trimmed=False)
        np.testing.assert_array_equal(load_responses(run, dtype=np.float64), data[KEPT])
        assert response_shape(run) == (N_GRID, 4)


def test_nifti_masked_in_c_order(tmp_path, rng):
    volume = rng.standard_normal((4, 4, 4, N_GRID)).astype(np.float32)
    mask = np.zeros((4, 4, 4), dtype=np.uint8)
    mask[1:3, 0:4, 2] = 1
    mask[0, 3, 1] = 1
    bold = write_nifti(tmp_path / "bold.nii.gz", volume)
    mask_path = write_nifti(tmp_path / "mask.nii.gz", mask)
    run = make_run([bold], trimmed=False, mask=mask_path)

    loaded = load_responses(run)

    # Reference: voxels inside the mask in C order, one row per kept volume.
    reference = np.stack([volume[..., t][mask.astype(bool)] for t in range(N_GRID)])[KEPT]
    assert loaded.shape == (N_GRID - TRIM_START - TRIM_END, int(mask.sum()))
    np.testing.assert_array_equal(loaded, reference)
    assert response_shape(run) == (N_GRID, int(mask.sum()))


@pytest.mark.parametrize("one_array", [False, True])
def test_gifti_pair_left_then_right(tmp_path, rng, one_array):
    left = rng.standard_normal((6, N_GRID)).astype(np.float32)   # vertices × TRs
    right = rng.standard_normal((4, N_GRID)).astype(np.float32)
    paths = [write_gifti(tmp_path / "hemi-L.func.gii", left, one_array),
             write_gifti(tmp_path / "hemi-R.func.gii", right, one_array)]
    run = make_run(paths, trimmed=False)

    loaded = load_responses(run)

    expected = np.concatenate([left.T, right.T], axis=1)[KEPT]
    np.testing.assert_array_equal(loaded, expected)
    assert response_shape(run) == (N_GRID, 10)


def test_gifti_single_array_written_trs_by_fsaverage5_vertices(tmp_path, rng):
    # Only a 10 242-long second axis identifies a TRs × vertices array.
    n_trs = 7
    hemi = rng.standard_normal((n_trs, 10242)).astype(np.float32)
    paths = []
    for side in "LR":
        path = tmp_path / f"hemi-{side}.func.gii"
        image = nib.gifti.GiftiImage(darrays=[nib.gifti.GiftiDataArray(hemi)])
        nib.save(image, str(path))
        paths.append(path)
    run = make_run(paths, trimmed=True, n_grid=n_trs + TRIM_START + TRIM_END)
    loaded = load_responses(run)
    np.testing.assert_array_equal(loaded, np.concatenate([hemi, hemi], axis=1))


def test_missing_response_file(tmp_path):
    run = make_run([tmp_path / "nowhere.hf5"], trimmed=True)
    with pytest.raises(BrainencInputError, match="nowhere.hf5: response file not found"):
        load_responses(run)


def test_row_count_mismatch_trimmed(tmp_path):
    path = write_hf5(tmp_path / "short.hf5", np.zeros((8, 3)))
    with pytest.raises(BrainencInputError) as info:
        load_responses(make_run([path], trimmed=True))
    message = str(info.value)
    assert "short.hf5" in message
    assert "has 8 rows (TRs) but the stimulus TR grid gives 7 (12 volumes - 3 trim_start - " \
           "2 trim_end)" in message


def test_row_count_mismatch_untrimmed(tmp_path):
    path = tmp_path / "long.npy"
    np.save(path, np.zeros((7, 3)))
    with pytest.raises(BrainencInputError, match=r"long.npy: has 7 rows \(TRs\) but the stimulus "
                                                 r"TR grid gives 12 volumes"):
        load_responses(make_run([path], trimmed=False))


def test_nan_and_inf_counted_in_analysed_rows(tmp_path, rng):
    data = rng.standard_normal((N_GRID, 6))
    data[0, 0] = np.nan            # trimmed away: not an error
    data[4, 3] = np.nan
    data[5, 1] = np.inf
    data[8, 3] = -np.inf
    path = write_hf5(tmp_path / "bad.hf5", data)
    with pytest.raises(BrainencInputError) as info:
        load_responses(make_run([path], trimmed=False))
    message = str(info.value)
    assert "bad.hf5" in message
    assert "3 NaN or infinite values" in message and "voxel column 1" in message


def test_nan_in_right_hemisphere_names_it(tmp_path, rng):
    left = rng.standard_normal((5, N_GRID))
    right = rng.standard_normal((4, N_GRID))
    right[2, 6] = np.nan
    paths = [write_gifti(tmp_path / "L.func.gii", left), write_gifti(tmp_path / "R.func.gii", right)]
    with pytest.raises(BrainencInputError, match=r"R.func.gii: 1 NaN .* voxel column 7"):
        load_responses(make_run(paths, trimmed=False))


def test_float32_overflow_is_reported_apart_from_nan(tmp_path):
    data = np.ones((7, 2))
    data[3, 1] = 1e300
    path = write_hf5(tmp_path / "huge.hf5", data)
    with pytest.raises(BrainencInputError, match=r"huge.hf5: 1 values outside the float32 "
                                                 r"range \(max \|x\| = 1e\+300"):
        load_responses(make_run([path], trimmed=True))


def test_mask_of_another_shape(tmp_path, rng):
    bold = write_nifti(tmp_path / "bold.nii.gz", rng.standard_normal((4, 4, 4, N_GRID)))
    mask = write_nifti(tmp_path / "small_mask.nii.gz", np.ones((4, 4, 3), dtype=np.uint8))
    run = make_run([bold], trimmed=False, mask=mask)
    with pytest.raises(BrainencInputError, match=r"small_mask.nii.gz: .*shape \(4, 4, 3\)"):
        load_responses(run)
    with pytest.raises(BrainencInputError, match="small_mask.nii.gz"):
        response_shape(run)


def test_unreadable_files(tmp_path):
    garbage = tmp_path / "garbage.hf5"
    garbage.write_bytes(b"not an hdf5 file at all")
    with pytest.raises(BrainencInputError, match="garbage.hf5: cannot read"):
        load_responses(make_run([garbage], trimmed=True))
    no_data = tmp_path / "other.hf5"
    with h5py.File(no_data, "w") as handle:
        handle["responses"] = np.zeros((7, 2))
    with pytest.raises(BrainencInputError, match=r"other.hf5: no dataset 'data'.*responses"):
        load_responses(make_run([no_data], trimmed=True))
    bold = write_nifti(tmp_path / "bold.nii", np.zeros((2, 2, 2, N_GRID), dtype=np.float32))
    with pytest.raises(BrainencInputError, match="bold.nii: NIfTI responses need a brain mask"):
        load_responses(make_run([bold], trimmed=False))

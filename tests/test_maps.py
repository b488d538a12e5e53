"""Map files (GIFTI on fsaverage, NIfTI in volumes) read back by nibabel equal ``scores.npz``."""
from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest

from brainenc.io.maps import INDEX_FILE, SURFACE_VERTICES, read_maps, write_maps
from brainenc.results import CROSS, DIRECTIONS, TransferResult


def _result(n_voxels: int, space: str, mask_path: str | None = None, seed: int = 0) -> TransferResult:
    rng = np.random.default_rng(seed)

    def per(keys):
        return {key: rng.standard_normal(n_voxels) for key in keys}

    r = per(DIRECTIONS)
    r["story_to_story"][:3] = np.nan          # constant voxels
    pvalues = {key: rng.uniform(size=n_voxels) for key in DIRECTIONS}
    return TransferResult(
        subject="01", feature_space="feats", r=r, r2=per(DIRECTIONS), z=per(DIRECTIONS),
        pvalues=pvalues, significant={key: p < 0.05 for key, p in pvalues.items()},
        alphas={"story": rng.choice([1.0, 10.0, 100.0], n_voxels),
                "movie": rng.choice([1.0, 10.0, 100.0], n_voxels)},
        alignment_pvalues={key: rng.uniform(size=n_voxels) for key in CROSS},
        transfer_pvalues={key: rng.uniform(size=n_voxels) for key in CROSS},
        transfer_significant={key: rng.uniform(size=n_voxels) < 0.1 for key in CROSS},
        space=space, mask_path=mask_path)


@pytest.mark.parametrize("space", ["fsaverage5", "fsaverage6"])
def test_gifti_maps_read_back_equal_the_scores(tmp_path, space):
    n_hemi = SURFACE_VERTICES[space]
    result = _result(2 * n_hemi, space)
    saved = TransferResult.load(result.save(tmp_path / "scores.npz"))
    written = write_maps(saved, tmp_path)
    assert len(written) == 2 * 9
    left = nib.load(str(tmp_path / "maps" / "r_hemi-L.func.gii"))
    right = nib.load(str(tmp_path / "maps" / "r_hemi-R.func.gii"))
    assert left.meta["AnatomicalStructurePrimary"] == "CortexLeft"
    assert right.meta["AnatomicalStructurePrimary"] == "CortexRight"
    assert [d.meta["Name"] for d in left.darrays] == list(DIRECTIONS)
    for k, direction in enumerate(DIRECTIONS):
        joined = np.concatenate([left.darrays[k].data, right.darrays[k].data])
        np.testing.assert_array_equal(joined, saved.r[direction].astype(np.float32))
    # nilearn reads a hemisphere as (vertices, maps)
    from nilearn.surface import load_surf_data

    z_left = load_surf_data(str(tmp_path / "maps" / "z_hemi-L.func.gii"))
    np.testing.assert_array_equal(z_left[:, 2], saved.z[DIRECTIONS[2]][:n_hemi].astype(np.float32))
    back = read_maps(tmp_path)
    for quantity in ("significant", "transfer_significant"):
        for key, values in getattr(saved, quantity).items():
            np.testing.assert_array_equal(back[quantity][key].astype(bool), values)
    for modality in ("story", "movie"):
        np.testing.assert_array_equal(back["alphas"][modality], saved.alphas[modality].astype(np.float32))
    index = json.loads((tmp_path / "maps" / INDEX_FILE).read_text())
    assert index["files"]["transfer_pvalues_hemi-R.func.gii"] == list(CROSS)


def test_nifti_maps_put_voxels_back_through_the_mask(tmp_path):
    rng = np.random.default_rng(1)
    inside = rng.uniform(size=(6, 7, 5)) < 0.4
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    mask_path = tmp_path / "mask.nii.gz"
    nib.save(nib.Nifti1Image(inside.astype(np.uint8), affine), str(mask_path))
    result = _result(int(inside.sum()), "volume", str(mask_path))
    write_maps(result, tmp_path)
    image = nib.load(str(tmp_path / "maps" / "pvalues.nii.gz"))
    assert image.shape == (*inside.shape, 4)
    np.testing.assert_array_equal(image.affine, affine)
    data = image.get_fdata(dtype=np.float32)
    for k, direction in enumerate(DIRECTIONS):
        np.testing.assert_array_equal(data[..., k][inside], result.pvalues[direction].astype(np.float32))
        assert np.isnan(data[..., k][~inside]).all()
    # the voxel order is nilearn's apply_mask order
    from nilearn.masking import apply_mask

    masked = apply_mask(str(tmp_path / "maps" / "r.nii.gz"), nib.Nifti1Image(inside.astype(np.uint8), affine))
    np.testing.assert_array_equal(masked[1], result.r[DIRECTIONS[1]].astype(np.float32))


def test_unknown_space_writes_no_maps(tmp_path):
    assert write_maps(_result(50, "unknown"), tmp_path) == []
    assert not (tmp_path / "maps").exists()


def test_fsaverage6_maps_are_drawn_at_the_fsaverage5_vertices():
    from brainenc.plotting.surface import surface_values

    result = _result(2 * SURFACE_VERTICES["fsaverage6"], "fsaverage6")
    drawn, note = surface_values(result, result.r["story_to_movie"])
    assert note is None and drawn.shape == (20484,)
    values = result.r["story_to_movie"]
    np.testing.assert_array_equal(drawn[:10242], values[:10242])
    np.testing.assert_array_equal(drawn[10242:], values[40962:40962 + 10242])


def test_native_volume_results_get_nifti_maps_and_no_surface(tmp_path):
    from brainenc.plotting.surface import surface_values

    inside = np.zeros((4, 4, 4), dtype=bool)
    inside[1:3, 1:3, 1:3] = True
    nib.save(nib.Nifti1Image(inside.astype(np.uint8), np.eye(4)), str(tmp_path / "mask.nii.gz"))
    result = _result(int(inside.sum()), "native_volume", str(tmp_path / "mask.nii.gz"))
    drawn, note = surface_values(result, result.r["story_to_story"])
    assert drawn is None and "subject's own space" in note
    assert (tmp_path / "maps" / "r.nii.gz") in write_maps(result, tmp_path)

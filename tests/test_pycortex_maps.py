"""pycortex flatmaps on the example subject pycortex ships (S1), through a mask built here."""
from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import matplotlib.image as mpimg
import nibabel as nib
import numpy as np
import pytest

cortex = pytest.importorskip("cortex", reason="pycortex flatmaps are the 'pycortex' extra")

from brainenc.plotting.pycortex_maps import (  # noqa: E402
    find_pycortex_subject,
    huth_pycortex_subject,
    shadow_filestore,
)
from brainenc.plotting.report import write_report  # noqa: E402
from safety import tree_state  # noqa: E402
from test_maps import _result  # noqa: E402


@pytest.fixture(scope="module")
def huth_with_pycortex_db(tmp_path_factory) -> Iterator[tuple[Path, np.ndarray]]:
    """A Huth-layout dataset folder whose pycortex database is S1 with a thick cortical mask
    of its 'fullhead' transform, built here with pycortex; the mask in pycortex's order."""
    root = tmp_path_factory.mktemp("pycortex")
    source = Path(cortex.database.default_filestore) / "S1"
    database = root / "ds" / "derivative" / "pycortex-db"
    shutil.copytree(source, database / "S1")
    (root / "ds" / "derivative" / "preprocessed_data").mkdir(parents=True)
    builder = cortex.database.Database(str(root / "build"))
    shutil.copytree(source, root / "build" / "S1")
    mask = builder.get_mask("S1", "fullhead", "thick")
    affine = nib.load(str(database / "S1" / "transforms" / "fullhead" / "reference.nii.gz")).affine
    nib.save(nib.Nifti1Image(mask.T.astype(np.uint8), affine),
             str(database / "S1" / "transforms" / "fullhead" / "mask_thick.nii.gz"))
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("BRAINENC_CACHE_DIR", str(root / "cache"))
        yield root / "ds", mask


def test_the_subject_and_mask_are_found_by_voxel_count(huth_with_pycortex_db):
    dataset, mask = huth_with_pycortex_db
    database = dataset / "derivative" / "pycortex-db"
    found = find_pycortex_subject(database, "S1", int(mask.sum()))
    assert (found.subject, found.transform, found.mask_path.name) == ("S1", "fullhead", "mask_thick.nii.gz")
    np.testing.assert_array_equal(found.mask(), mask)
    assert find_pycortex_subject(database, "S1", int(mask.sum()) + 1) is None
    assert find_pycortex_subject(database, "UTS01", int(mask.sum())) is None


def test_maps_of_a_huth_subject_are_nifti_in_the_pycortex_reference_space(huth_with_pycortex_db,
                                                                          tmp_path):
    from brainenc.io.maps import write_maps

    dataset, mask = huth_with_pycortex_db
    result = _result(int(mask.sum()), "unknown")
    result.subject = "S1"
    result.settings = {"layout": "huth", "dataset": str(dataset)}
    write_maps(result, tmp_path)
    image = nib.load(str(tmp_path / "maps" / "r.nii.gz"))
    reference = nib.load(str(dataset / "derivative" / "pycortex-db" / "S1" / "transforms" /
                             "fullhead" / "reference.nii.gz"))
    assert image.shape[:3] == reference.shape[:3]
    np.testing.assert_array_equal(image.affine, reference.affine)
    # pycortex's own reading: the (z, y, x) volume at the mask holds the values in order
    volume = image.get_fdata(dtype=np.float32)[..., 2].T
    np.testing.assert_array_equal(volume[mask], result.r["story_to_movie"].astype(np.float32))
    assert np.isnan(volume[~mask]).all()


@pytest.mark.slow
def test_report_draws_pycortex_flatmaps_and_leaves_the_dataset_alone(huth_with_pycortex_db, tmp_path):
    dataset, mask = huth_with_pycortex_db
    before = tree_state(dataset)
    n_voxels = int(mask.sum())
    result = _result(n_voxels, "unknown")
    result.subject = "S1"
    result.settings = {"layout": "huth", "dataset": str(dataset), "fdr_q": 0.05}
    # a planted posterior slab of the volume (last rows of the (z, y, x) mask) is the only
    # significant part of story → story
    rows = np.nonzero(mask)[1]
    slab = rows >= np.percentile(rows, 70)
    for masks in (result.significant, result.transfer_significant):
        for values in masks.values():
            values[:] = False
    result.r["story_to_story"][:] = 0.0
    result.r["story_to_story"][slab] = 0.5
    result.significant["story_to_story"][slab] = True
    assert huth_pycortex_subject(result) is not None

    report = write_report([result], tmp_path / "report", dpi=50)
    figures = sorted(p.name for p in (tmp_path / "report" / "figures").glob("*_pycortex.png"))
    assert figures == [f"S1_feats_r_{d}_pycortex.png" for d in
                       ("movie_to_movie", "movie_to_story", "story_to_movie", "story_to_story")]
    assert "pycortex flatmap of S1" in report.read_text(encoding="utf-8")
    assert tree_state(dataset) == before           # caches went to brainenc's cache folder
    shadow = shadow_filestore(huth_pycortex_subject(result))
    assert shadow.is_relative_to(dataset.parent / "cache")

    image = mpimg.imread(tmp_path / "report" / "figures" / "S1_feats_r_story_to_story_pycortex.png")
    rgb = image[..., :3]
    red = (rgb[..., 0] > rgb[..., 1] + 0.25) & (rgb[..., 0] > rgb[..., 2] + 0.2)
    grey = (np.abs(rgb - rgb.mean(axis=2, keepdims=True)).max(axis=2) < 0.02) & (rgb.mean(axis=2) < 0.8)
    assert red.mean() > 0.02, "the planted slab is not on the flatmap"
    assert grey.mean() > 0.1, "no curvature where nothing is significant"
    empty = mpimg.imread(tmp_path / "report" / "figures" / "S1_feats_r_movie_to_movie_pycortex.png")
    above_colorbar = empty[: int(0.85 * empty.shape[0]), :, :3]
    assert not ((above_colorbar[..., 0] > above_colorbar[..., 1] + 0.25)).any()   # nothing significant

"""ROI labels (GIFTI, annotations, NIfTI atlases, simulated regions) and per-ROI summaries."""
from __future__ import annotations

import json
import math
import warnings
from html.parser import HTMLParser
from pathlib import Path
from types import SimpleNamespace

import nibabel as nib
import numpy as np
import pytest
from nibabel.freesurfer import write_annot
from nibabel.gifti import (
    GiftiDataArray,
    GiftiImage,
    GiftiLabel,
    GiftiLabelTable,
    GiftiMetaData,
)

from brainenc.analyses.rois import (
    Roi,
    RoiSet,
    format_roi_table,
    ground_truth_rois,
    load_rois,
    read_lookup_table,
    read_surface_labels,
    read_volume_labels,
    roi_means,
    roi_summary,
    roi_table,
    roi_table_html,
    rois_from_labels,
)
from brainenc.errors import BrainencInputError, BrainencInputWarning
from brainenc.results import CROSS, DIRECTIONS, TransferResult

N_HEMI = 10242


# -- writers of test inputs ----------------------------------------------------------------


def write_label_gii(path: Path, labels, names: dict[int, str], structure: str | None = None) -> Path:
    table = GiftiLabelTable()
    for key, name in names.items():
        label = GiftiLabel(key=key)
        label.label = name
        table.labels.append(label)
    array = GiftiDataArray(np.asarray(labels, dtype=np.int32), intent="NIFTI_INTENT_LABEL",
                           datatype="NIFTI_TYPE_INT32")
    meta = GiftiMetaData({"AnatomicalStructurePrimary": structure}) if structure else None
    nib.save(GiftiImage(darrays=[array], labeltable=table, meta=meta), str(path))
    return path


def write_annotation(path: Path, labels, names: list[str]) -> Path:
    rng = np.random.default_rng(len(names))
    ctab = np.column_stack([rng.integers(0, 255, (len(names), 3)), np.zeros(len(names), int)])
    write_annot(str(path), np.asarray(labels), ctab, names, fill_ctab=True)
    return path


def hemisphere_labels(seed: int, values) -> np.ndarray:
    return np.random.default_rng(seed).choice(np.asarray(values), N_HEMI)


def make_result(n_voxels: int, space: str = "unknown", seed: int = 0, mask_path=None,
                tested: bool = True) -> TransferResult:
    """Random scores with NaN voxels, FDR masks and transfer maps (or no tests at all)."""
    rng = np.random.default_rng(seed)
    r, p, significant = {}, {}, {}
    for direction in DIRECTIONS:
        values = rng.normal(0.1, 0.2, n_voxels)
        values[rng.choice(n_voxels, 3, replace=False)] = np.nan
        r[direction] = values
        p[direction] = np.where(values > 0.15, 1e-4, 0.5) if tested else np.full(n_voxels, np.nan)
        significant[direction] = np.nan_to_num(values) > 0.15 if tested else np.zeros(n_voxels, bool)
    transfer_p = {d: np.where(significant[d] & (rng.random(n_voxels) < 0.5), 1e-4, 0.6)
                  for d in CROSS} if tested else {}
    return TransferResult(
        subject="sub01", feature_space="feats", r=r, r2=dict(r), pvalues=p,
        significant=significant, alphas={"story": np.ones(n_voxels), "movie": np.ones(n_voxels)},
        transfer_pvalues=transfer_p, transfer_significant={d: v < 0.01 for d, v in transfer_p.items()},
        space=space, mask_path=None if mask_path is None else str(mask_path),
        settings={"fdr_q": 0.05},
    )


# -- surfaces ------------------------------------------------------------------------------


def test_gifti_label_pair_gives_per_hemisphere_rois_with_the_files_names(tmp_path):
    left = hemisphere_labels(0, [0, 1, 2, 3])
    right = hemisphere_labels(1, [0, 2, 5])
    lpath = write_label_gii(tmp_path / "lh.atlas.label.gii", left,
                            {0: "???", 1: "V1", 2: "MT", 3: "A1", 4: "unused"}, "CortexLeft")
    rpath = write_label_gii(tmp_path / "rh.atlas.label.gii", right,
                            {0: "???", 2: "MT", 5: "IFG"}, "CortexRight")
    rois = read_surface_labels(lpath, rpath)
    assert rois.space == "fsaverage5" and rois.n_voxels == 2 * N_HEMI
    assert rois.names == ["L V1", "L MT", "L A1", "R MT", "R IFG"]
    assert [r.label for r in rois.rois] == [1, 2, 3, 2, 5]
    assert [r.hemisphere for r in rois.rois] == ["left"] * 3 + ["right"] * 2
    everything = np.concatenate([left, right])
    for roi in rois.rois:
        offset = 0 if roi.hemisphere == "left" else N_HEMI
        expected = offset + np.flatnonzero((left if offset == 0 else right) == roi.label)
        np.testing.assert_array_equal(roi.indices, expected)
    membership = rois.membership()
    assert membership.shape == (5, 2 * N_HEMI)
    np.testing.assert_array_equal(membership.any(axis=0), everything > 0)
    assert rois.paths == (lpath, rpath)


def test_annotation_pair_decodes_names_and_leaves_unknown_entries_out(tmp_path):
    names = ["unknown", "bankssts", "cuneus"]
    left = hemisphere_labels(2, [-1, 0, 1, 2])
    right = hemisphere_labels(3, [0, 2])
    lpath = write_annotation(tmp_path / "lh.aparc.annot", left, names)
    rpath = write_annotation(tmp_path / "rh.aparc.annot", right, names)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # "unknown" at index 0 is background: no warning
        rois = read_surface_labels(lpath, rpath)
    assert rois.names == ["L bankssts", "L cuneus", "R cuneus"]
    assert all(isinstance(name, str) for name in rois.names)
    np.testing.assert_array_equal(rois.rois[0].indices, np.flatnonzero(left == 1))
    np.testing.assert_array_equal(rois.rois[2].indices, N_HEMI + np.flatnonzero(right == 2))
    labelled = rois.membership().any(axis=0)
    assert not labelled[:N_HEMI][left == -1].any() and not labelled[:N_HEMI][left == 0].any()


def test_mixed_gifti_and_annotation_pair(tmp_path):
    lpath = write_annotation(tmp_path / "lh.x.annot", hemisphere_labels(4, [0, 1]), ["unknown", "a"])
    rpath = write_label_gii(tmp_path / "right.label.gii", hemisphere_labels(5, [0, 1]), {1: "a"})
    assert read_surface_labels(lpath, rpath).names == ["L a", "R a"]


def test_wrong_vertex_count_is_an_error_naming_the_file(tmp_path):
    lpath = write_label_gii(tmp_path / "lh.label.gii", np.ones(N_HEMI, int), {1: "a"})
    rpath = write_label_gii(tmp_path / "rh.label.gii", np.ones(40962, int), {1: "a"})
    with pytest.raises(BrainencInputError, match="40962 labels.*10242 vertices") as info:
        read_surface_labels(lpath, rpath)
    assert info.value.path == rpath


def test_swapped_hemispheres_are_errors(tmp_path):
    ones = np.ones(N_HEMI, int)
    left = write_label_gii(tmp_path / "a.label.gii", ones, {1: "a"}, "CortexLeft")
    right = write_label_gii(tmp_path / "b.label.gii", ones, {1: "a"}, "CortexRight")
    with pytest.raises(BrainencInputError, match="AnatomicalStructurePrimary=CortexRight") as info:
        read_surface_labels(right, left)
    assert info.value.path == right
    lh = write_annotation(tmp_path / "lh.x.annot", ones, ["unknown", "a"])
    rh = write_annotation(tmp_path / "rh.x.annot", ones, ["unknown", "a"])
    with pytest.raises(BrainencInputError, match="given as the left hemisphere but its name says right"):
        read_surface_labels(rh, lh)
    bids_right = write_label_gii(tmp_path / "sub-01_hemi-R_dseg.label.gii", ones, {1: "a"})
    with pytest.raises(BrainencInputError, match="name says right"):
        read_surface_labels(bids_right, left)
    with pytest.raises(BrainencInputError, match="both hemispheres"):
        read_surface_labels(left, left)


def test_missing_and_unusable_surface_files_are_errors(tmp_path):
    ones = np.ones(N_HEMI, int)
    left = write_label_gii(tmp_path / "lh.label.gii", ones, {1: "a"})
    with pytest.raises(BrainencInputError, match="right hemisphere label file not found") as info:
        read_surface_labels(left, tmp_path / "rh.label.gii")
    assert info.value.path == tmp_path / "rh.label.gii"
    floats = tmp_path / "rh.func.gii"
    nib.save(GiftiImage(darrays=[GiftiDataArray(np.full(N_HEMI, 0.5, np.float32))]), str(floats))
    with pytest.raises(BrainencInputError, match="not whole numbers"):
        read_surface_labels(left, floats)
    two = tmp_path / "rh.two.label.gii"
    nib.save(GiftiImage(darrays=[GiftiDataArray(ones.astype(np.int32))] * 2), str(two))
    with pytest.raises(BrainencInputError, match="2 data arrays"):
        read_surface_labels(left, two)
    text = tmp_path / "rh.labels.txt"
    text.write_text("1\n")
    with pytest.raises(BrainencInputError, match="unknown label file type"):
        read_surface_labels(left, text)
    broken = tmp_path / "rh.broken.annot"
    broken.write_bytes(b"\x00\x01")
    with pytest.raises(BrainencInputError, match="cannot read the FreeSurfer annotation"):
        read_surface_labels(left, broken)


def test_unnamed_labels_and_a_named_label_zero_warn(tmp_path):
    left = write_label_gii(tmp_path / "lh.label.gii", hemisphere_labels(6, [0, 1, 7]),
                           {0: "Cerebellum", 1: "a"})
    right = write_label_gii(tmp_path / "rh.label.gii", np.ones(N_HEMI, int), {1: "a"})
    with pytest.warns(BrainencInputWarning) as caught:
        rois = read_surface_labels(left, right)
    messages = " ".join(str(w.message) for w in caught)
    assert "labels 7 are not in the file's label table" in messages
    assert "label 0 is named 'Cerebellum'" in messages
    assert rois.names == ["L a", "L label 7", "R a"]


# -- volumes -------------------------------------------------------------------------------


def expected_label(world: np.ndarray) -> np.ndarray:
    """The atlas's labels as a function of world coordinates (mm); far-apart values, so that
    any interpolation other than nearest-neighbour gives other labels at the boundaries."""
    x, y, z = world
    label = np.where(x < 4, 1, 7)
    label = np.where(z >= 8, 20, label)
    return np.where(y > 8, 0, label)


def write_volume_pair(tmp_path: Path) -> tuple[Path, Path, np.ndarray]:
    """A 2 mm mask (an irregular blob) and a 1 mm atlas on a shifted, larger grid, with the
    labels expected at the mask's voxels in C order."""
    ijk = np.indices((6, 6, 6))
    inside = (ijk[0] + 2 * ijk[1] + 3 * ijk[2] < 15) | (ijk[0] == 5)
    nib.save(nib.Nifti1Image(inside.astype(np.uint8), np.diag([2.0, 2.0, 2.0, 1.0])),
             str(tmp_path / "mask.nii.gz"))
    atlas_affine = np.eye(4)
    atlas_affine[:3, 3] = -3.6
    atlas = expected_label(np.indices((16, 16, 16)) - 3.6).astype(np.int16)
    nib.save(nib.Nifti1Image(atlas, atlas_affine), str(tmp_path / "atlas.nii.gz"))
    mask_world = 2.0 * np.stack([axis[inside] for axis in ijk])  # C order of the mask voxels
    # The atlas voxel nearest to each mask voxel's centre lies 0.4 mm above it on every axis.
    return tmp_path / "atlas.nii.gz", tmp_path / "mask.nii.gz", expected_label(mask_world + 0.4)


def test_atlas_on_another_grid_is_resampled_nearest_onto_the_mask_voxels(tmp_path):
    atlas, mask, expected = write_volume_pair(tmp_path)
    with pytest.warns(BrainencInputWarning, match="nearest-neighbour"):
        rois = read_volume_labels(atlas, mask)
    assert rois.space == "volume" and rois.n_voxels == expected.size
    assert rois.names == ["label 1", "label 7", "label 20"]
    for roi in rois.rois:
        np.testing.assert_array_equal(roi.indices, np.flatnonzero(expected == roi.label))
    # the voxel order is nilearn's: masking a 4-D copy of the labels gives the same vector
    from nilearn.image import resample_to_img
    from nilearn.masking import apply_mask

    resampled = resample_to_img(str(atlas), str(mask), interpolation="nearest",
                                force_resample=True, copy_header=True)
    data = np.asanyarray(resampled.dataobj).astype(np.float32)[..., None]
    masked = apply_mask(nib.Nifti1Image(data, resampled.affine), str(mask))[0]
    np.testing.assert_array_equal(masked, expected)


def test_atlas_on_the_mask_grid_is_read_without_warning(tmp_path):
    mask_data = np.zeros((4, 5, 3), np.uint8)
    mask_data[1:3, 1:4, :] = 1
    atlas_data = np.arange(60, dtype=np.float32).reshape(4, 5, 3) % 4
    nib.save(nib.Nifti1Image(mask_data, np.eye(4)), str(tmp_path / "m.nii"))
    nib.save(nib.Nifti1Image(atlas_data, np.eye(4)), str(tmp_path / "a.nii"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        rois = read_volume_labels(tmp_path / "a.nii", tmp_path / "m.nii")
    values = atlas_data[mask_data > 0]
    assert [r.label for r in rois.rois] == sorted(set(values[values > 0].astype(int)))
    for roi in rois.rois:
        np.testing.assert_array_equal(roi.indices, np.flatnonzero(values == roi.label))


def test_lookup_names_from_a_sidecar_or_a_given_table(tmp_path):
    atlas, mask, _ = write_volume_pair(tmp_path)
    (tmp_path / "atlas.tsv").write_text(
        "index\tname\tcolor\n0\tbackground\t#000000\n1\tleft part\t#ff0000\n20\ttop\t#00ff00\n")
    with pytest.warns(BrainencInputWarning) as caught:
        rois = read_volume_labels(atlas, mask)
    assert rois.names == ["left part", "label 7", "top"]
    assert any("labels 7 of atlas.nii.gz are not in the lookup table" in str(w.message)
               for w in caught)
    assert tmp_path / "atlas.tsv" in rois.paths
    other = tmp_path / "names.tsv"
    other.write_text("name\tindex\nA\t1\nB\t7\nn/a\t20\n")
    with pytest.warns(BrainencInputWarning, match="nearest"):
        assert read_volume_labels(atlas, mask, other).names == ["A", "B", "label 20"]


def test_bad_lookup_tables_are_errors_naming_line_or_column(tmp_path):
    bad = tmp_path / "bad.tsv"
    bad.write_text("label\tname\n1\ta\n")
    with pytest.raises(BrainencInputError, match=r"lacks the column\(s\) \['index'\]"):
        read_lookup_table(bad)
    bad.write_text("index\tname\n1\ta\nx\tb\n")
    with pytest.raises(BrainencInputError, match="line 3: index 'x' is not an integer"):
        read_lookup_table(bad)
    bad.write_text("index\tname\n1\ta\n1\tb\n")
    with pytest.raises(BrainencInputError, match="line 3: index 1 appears twice"):
        read_lookup_table(bad)
    with pytest.raises(BrainencInputError, match="not found"):
        read_lookup_table(tmp_path / "none.tsv")


def test_unusable_atlases_and_masks_are_errors(tmp_path):
    atlas, mask, _ = write_volume_pair(tmp_path)
    nib.save(nib.Nifti1Image(np.full((6, 6, 6), 1.5, np.float32), np.eye(4) * 2),
             str(tmp_path / "prob.nii.gz"))
    with pytest.raises(BrainencInputError, match="not whole numbers.*1.5") as info:
        read_volume_labels(tmp_path / "prob.nii.gz", mask)
    assert info.value.path == tmp_path / "prob.nii.gz"
    nib.save(nib.Nifti1Image(np.ones((6, 6, 6, 3), np.int16), np.eye(4)), str(tmp_path / "4d.nii.gz"))
    with pytest.raises(BrainencInputError, match="3-D image of integer labels"):
        read_volume_labels(tmp_path / "4d.nii.gz", mask)
    far = np.eye(4)
    far[:3, 3] = 500.0
    nib.save(nib.Nifti1Image(np.ones((4, 4, 4), np.int16), far), str(tmp_path / "far.nii.gz"))
    with pytest.warns(BrainencInputWarning), pytest.raises(BrainencInputError, match="no voxel"):
        read_volume_labels(tmp_path / "far.nii.gz", mask)
    with pytest.raises(BrainencInputError, match="brain mask not found"):
        read_volume_labels(atlas, tmp_path / "nomask.nii.gz")
    with pytest.raises(BrainencInputError, match="atlas not found"):
        read_volume_labels(tmp_path / "none.nii.gz", mask)


# -- simulated regions ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def simulated(tmp_path_factory):
    from brainenc.simulate import load_ground_truth, simulate_dataset

    root = tmp_path_factory.mktemp("rois") / "sim"
    simulate_dataset(root, n_stories=1, n_movies=1, n_trs_per_run=(30, 32), seed=3,
                     regions_per_hemi=1)
    return root, load_ground_truth(root)


def test_ground_truth_regions_become_overlapping_rois(simulated):
    root, truth = simulated
    rois = ground_truth_rois(truth)
    assert rois.names == ["shared L 1", "language L 1", "vision L 1",
                          "shared R 1", "language R 1", "vision R 1"]
    columns = {"shared": 0, "language": 1, "vision": 2}
    for index, roi in enumerate(rois.rois):
        column = columns[roi.name.split()[0]]
        np.testing.assert_array_equal(roi.indices, np.flatnonzero(truth.region_of[:, column] == index))
        assert roi.size > 0
    membership = rois.membership()
    mixed = truth.category == truth.category_names.index("shared+language")
    assert mixed.any() and np.all(membership[:, mixed].sum(axis=0) == 2)
    np.testing.assert_array_equal(membership.any(axis=0), truth.category > 0)
    assert load_rois([root], make_result(2 * N_HEMI, "fsaverage5")).names == rois.names


def test_ground_truth_names_count_regions_per_component_and_hemisphere():
    region_of = np.full((8, 3), -1)
    region_of[[0, 1], 0] = 0
    region_of[[1, 2], 1] = 1
    region_of[[3], 0] = 2
    region_of[[5, 6], 0] = 3
    truth = SimpleNamespace(region_of=region_of, region_category=np.array([1, 2, 1, 1]),
                            region_hemi=("left", "left", "left", "right"),
                            category_names=("noise", "shared", "language", "vision"))
    rois = ground_truth_rois(truth)
    assert rois.names == ["shared L 1", "language L 1", "shared L 2", "shared R 1"]
    assert [r.indices.tolist() for r in rois.rois] == [[0, 1], [1, 2], [3], [5, 6]]
    assert rois.source == "ground truth"


# -- summaries -----------------------------------------------------------------------------


def reference_row(result: TransferResult, indices, direction):
    """Plain numpy over the ROI's voxels with a defined r."""
    r = result.r[direction][indices]
    ok = np.isfinite(r)
    sig = result.significant[direction][indices] & ok
    row = {"n_voxels": int(ok.sum()), "mean_r": np.mean(r[ok]), "median_r": np.median(r[ok]),
           "max_r": np.max(r[ok]), "fraction_significant": sig.sum() / ok.sum(),
           "mean_r_significant": np.mean(r[sig]) if sig.any() else np.nan}
    row["fraction_transfer"] = (
        (result.transfer_significant[direction][indices] & ok).sum() / ok.sum()
        if direction in CROSS else np.nan)
    return row


def overlapping_rois(n: int) -> RoiSet:
    labels = np.arange(n) % 3  # 0 unlabelled, 1, 2
    base = rois_from_labels(labels, {1: "one", 2: "two <b>"}, space="fsaverage5", source="test")
    extra = Roi(name="first ten", indices=np.arange(10))
    return RoiSet(rois=base.rois + (extra,), n_voxels=n, space="fsaverage5", source="test")


def test_roi_table_matches_plain_numpy(tmp_path):
    result = make_result(60, "fsaverage5", seed=1)
    rois = overlapping_rois(60)
    rows = roi_table(result, rois)
    assert [(row.roi, row.direction) for row in rows] == [
        (name, d) for name in ["one", "two <b>", "first ten"] for d in DIRECTIONS]
    for row in rows:
        roi = rois.rois[rois.names.index(row.roi)]
        expected = reference_row(result, roi.indices, row.direction)
        assert row.size == roi.size
        for key, value in expected.items():
            actual = getattr(row, key)
            assert (math.isnan(actual) and np.isnan(value)) or actual == pytest.approx(value), key
    text = json.dumps(roi_summary(rows, rois), allow_nan=False)
    loaded = json.loads(text)
    assert loaded["rows"][0]["fraction_transfer"] is None  # within direction
    assert loaded["rows"][2]["fraction_transfer"] == pytest.approx(rows[2].fraction_transfer)


def test_roi_table_without_tests_or_voxels_reports_nan_as_null():
    result = make_result(30, "fsaverage5", seed=2, tested=False)
    result.r["story_to_story"][:5] = np.nan
    rois = RoiSet(rois=(Roi("empty", np.arange(5)), Roi("rest", np.arange(5, 30))),
                  n_voxels=30, space="fsaverage5", source="test")
    rows = roi_table(result, rois)
    empty = rows[0]
    assert empty.n_voxels == 0 and empty.size == 5
    assert all(math.isnan(getattr(empty, k)) for k in ("mean_r", "median_r", "max_r"))
    assert all(math.isnan(row.fraction_significant) and math.isnan(row.fraction_transfer)
               for row in rows)
    assert rows[4].mean_r == pytest.approx(np.nanmean(result.r["story_to_story"][5:30]))
    assert json.loads(json.dumps(empty.as_dict(), allow_nan=False))["mean_r"] is None


def test_roi_table_checks_voxel_count_and_space():
    rois = overlapping_rois(60)
    with pytest.raises(BrainencInputError, match="cover 60 voxels but the result .* has 50"):
        roi_table(make_result(50, "fsaverage5"), rois)
    with pytest.raises(BrainencInputError, match="in fsaverage5 space but the result .* volume"):
        roi_table(make_result(60, "volume"), rois)
    with pytest.warns(BrainencInputWarning, match="response space .* is unknown"):
        roi_table(make_result(60, "unknown"), rois)


class _TableParser(HTMLParser):
    def __init__(self):
        super().__init__()
        self.rows, self.spans, self.cells = 0, [], []

    def handle_starttag(self, tag, attrs):
        self.rows += tag == "tr"
        if ("rowspan", "4") in attrs:
            self.spans.append(tag)

    def handle_data(self, data):
        self.cells.append(data)


def test_text_and_html_tables():
    result = make_result(60, "fsaverage5", seed=1)
    rows = roi_table(result, overlapping_rois(60))
    text = format_roi_table(rows)
    lines = text.splitlines()
    assert len(lines) == len(rows) + 2
    assert lines[0].split()[:2] == ["ROI", "direction"]
    assert f"{rows[0].mean_r:.3f}" in lines[2] and "story → story" in lines[2]
    assert lines[2].rstrip().endswith("–")  # no transfer map for a within direction
    assert f"{rows[2].fraction_transfer:.1%}" in lines[4]
    table = roi_table_html(rows)
    assert table.startswith("<table") and table.endswith("</table>")
    assert "two &lt;b&gt;" in table and "two <b>" not in table
    parser = _TableParser()
    parser.feed(table)
    assert parser.rows == len(rows) + 1 and len(parser.spans) == 3
    assert "story → movie" in parser.cells and table.count("class='cross'") == 6


def test_roi_means_of_one_and_two_dimensional_maps():
    rng = np.random.default_rng(5)
    rois = overlapping_rois(60)
    ceiling = rng.random(60)
    ceiling[[1, 4]] = np.nan
    loadings = rng.standard_normal((3, 60))
    loadings[:, 0::3] = np.nan  # every unlabelled voxel, and nothing of the labelled ones
    means = roi_means({"ceiling": ceiling, "loadings": loadings}, rois)
    assert means["ceiling"].shape == (3,) and means["loadings"].shape == (3, 3)
    for i, roi in enumerate(rois.rois):
        assert means["ceiling"][i] == pytest.approx(np.nanmean(ceiling[roi.indices]))
        np.testing.assert_allclose(means["loadings"][:, i], np.nanmean(loadings[:, roi.indices], axis=1))
    nan_only = roi_means({"x": np.where(np.arange(60) % 3 == 1, np.nan, 1.0)}, rois)["x"]
    assert np.isnan(nan_only[0]) and nan_only[1] == 1.0
    with pytest.raises(ValueError, match="last axis must be the 60 voxels"):
        roi_means({"bad": np.ones(59)}, rois)


# -- one entry point ----------------------------------------------------------------------


def test_load_rois_dispatches_on_the_files_and_the_result(tmp_path):
    atlas, mask, expected = write_volume_pair(tmp_path)
    (tmp_path / "names.tsv").write_text("index\tname\n1\ta\n7\tb\n20\tc\n")
    volume = make_result(expected.size, "volume", mask_path=mask)
    with pytest.warns(BrainencInputWarning, match="nearest"):
        rois = load_rois([atlas, tmp_path / "names.tsv"], volume)
    assert rois.names == ["a", "b", "c"]
    assert len(roi_table(volume, rois)) == 3 * len(DIRECTIONS)
    surface = make_result(2 * N_HEMI, "fsaverage5")
    with pytest.raises(BrainencInputError, match="needs a volume result"):
        load_rois([atlas], surface)
    ones = np.ones(N_HEMI, int)
    lh = write_label_gii(tmp_path / "lh.label.gii", ones, {1: "a"})
    with pytest.raises(BrainencInputError, match="need two files"):
        load_rois([lh], surface)
    rh = write_label_gii(tmp_path / "rh.label.gii", ones, {1: "a"})
    assert load_rois([lh, rh], surface).names == ["L a", "R a"]
    with pytest.raises(BrainencInputError, match="cannot use .* as ROI labels"):
        load_rois([tmp_path / "names.tsv"], surface)

"""Cortical maps, summary figures and the HTML report, on synthetic results."""
from __future__ import annotations

import re

import nibabel as nib
import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from brainenc.errors import BrainencInputError
from brainenc.plotting import figures, report, surface
from brainenc.results import DIRECTIONS, TransferResult
from brainenc.stats import summarize_direction

N_HEMI = surface.N_VERTICES_PER_HEMISPHERE


def make_result(n_voxels: int, space: str = "unknown", feature_space: str = "feats",
                seed: int = 0, mask_path=None) -> TransferResult:
    """Random scores with a planted signal in the first fifth of the voxels and a few NaN voxels."""
    rng = np.random.default_rng(seed)
    r, p, significant = {}, {}, {}
    for i, direction in enumerate(DIRECTIONS):
        values = rng.normal(0.0, 0.05, n_voxels)
        values[: n_voxels // 5] += 0.1 + 0.05 * i
        values[[3, 7]] = np.nan
        r[direction] = values
        p[direction] = np.where(values > 0.12, 0.001, 0.5)
        significant[direction] = np.nan_to_num(values) > 0.12
    summaries = [summarize_direction(d, r[d], significant[d], 0.05) for d in DIRECTIONS]
    return TransferResult(
        subject="sub01", feature_space=feature_space, r=r, r2=dict(r), pvalues=p,
        significant=significant, alphas={"story": np.ones(n_voxels), "movie": np.ones(n_voxels)},
        summaries=summaries, space=space, mask_path=mask_path,
        settings={"fdr_q": 0.05, "delays": [1, 2, 3, 4], "preset": "default"},
    )


def _face_colors(ax) -> np.ndarray:
    return np.unique(np.round(ax.collections[0].get_facecolor(), 4), axis=0)


def _is_grey(colors: np.ndarray) -> bool:
    return bool(np.all(np.ptp(colors[:, :3], axis=1) < 1e-6))


def _panels(fig) -> list:
    """The surface panels of a cortical map, in the order of ``surface.PANELS``."""
    titles = [f"{h} {v}" for h, v in surface.PANELS]
    panels = [ax for ax in fig.axes if ax.get_title() in titles]
    assert [ax.get_title() for ax in panels] == titles
    return panels


# -- surface maps --------------------------------------------------------------------


def test_plot_fsaverage5_draws_four_views_colour_bar_and_background_for_nan():
    values = np.full(surface.N_VERTICES, np.nan)
    values[:N_HEMI] = 0.15  # left hemisphere at half of vmax, right hemisphere missing
    fig = surface.plot_fsaverage5(values, title="t", vmax=0.3)
    panels = _panels(fig)
    assert len(panels) == 4 and len(fig.axes) == 5  # + colour bar
    expected = np.round(np.array(surface._resolve_cmap("RdBu_r")(0.75)), 4)
    for ax, (hemi, view) in zip(panels, surface.PANELS):
        # the fsaverage5 faces turned toward the viewer: over half of the 20 480 from the side
        shown = len(ax.collections[0].get_facecolor())
        assert shown == len(surface._projected_faces("inflated", hemi, view)[1])
        assert 6000 < shown < 20480
        colors = _face_colors(ax)
        if hemi == "left":  # every face: the colour of 0.15 on a -0.3..0.3 scale
            np.testing.assert_allclose(colors, expected[None, :], atol=1e-4)
        else:  # sulcal-depth greys only
            assert len(colors) > 10 and _is_grey(colors)
    colorbar_ax = fig.axes[4]
    assert colorbar_ax.get_ylim() == pytest.approx((-0.3, 0.3))


@pytest.mark.parametrize("hemi, view", surface.PANELS)
def test_each_panel_shows_the_side_of_the_hemisphere_it_names(hemi, view):
    """Lateral views show the faces on the outer side (x < 0 on the left hemisphere), medial
    views the inner side, painted far to near; anterior (+y) points left in views from -x."""
    triangles, order = surface._projected_faces("inflated", hemi, view)
    part = surface._mesh("inflated", hemi)
    centres = np.asarray(part.coordinates)[np.asarray(part.faces)[order]].mean(axis=1)
    outward = -1.0 if hemi == "left" else 1.0
    side = outward if view == "lateral" else -outward
    assert side * np.median(centres[:, 0]) > 10.0
    depth = side * centres[:, 0]
    assert np.all(np.diff(depth) >= 0)  # far first
    screen_x = triangles.mean(axis=1)[:, 0]
    assert np.corrcoef(screen_x, centres[:, 1])[0, 1] == pytest.approx(side, abs=1e-6)


def test_plot_fsaverage5_threshold_hides_small_values():
    values = np.zeros(surface.N_VERTICES)
    values[:N_HEMI] = 0.05
    values[N_HEMI:] = 0.25
    fig = surface.plot_fsaverage5(values, vmax=0.3, threshold=0.1, symmetric=False)
    left, right = fig.axes[0], fig.axes[1]
    assert _is_grey(_face_colors(left))
    assert len(_face_colors(right)) == 1 and not _is_grey(_face_colors(right))


def test_plot_fsaverage5_rejects_wrong_length():
    with pytest.raises(BrainencInputError, match="20484"):
        surface.plot_fsaverage5(np.zeros(20000))
    with pytest.raises(BrainencInputError, match="20484"):
        surface.plot_fsaverage5_2d(np.zeros(surface.N_VERTICES), np.zeros(10242))


def test_bivariate_colors_interpolate_the_corners():
    corners = surface.BIVARIATE_CORNERS
    got = surface.bivariate_colors(np.array([0.0, 0.2, 0.0, 0.2, 0.1, -0.3, 0.5]),
                                   np.array([0.0, 0.0, 0.2, 0.2, 0.1, -0.1, 0.5]), vmax=0.2)
    np.testing.assert_allclose(got[:4], corners)
    np.testing.assert_allclose(got[4], corners.mean(axis=0))  # centre: equal weights
    np.testing.assert_allclose(got[5], corners[0])  # negative values clip to "none"
    np.testing.assert_allclose(got[6], corners[3])  # beyond vmax clips to "both"


def test_plot_fsaverage5_2d_colours_vertices_by_the_pair_and_draws_a_legend():
    x = np.zeros(surface.N_VERTICES)
    y = np.zeros(surface.N_VERTICES)
    x[:N_HEMI] = 0.3  # left: story -> movie only
    mask = np.zeros(surface.N_VERTICES, bool)
    mask[:N_HEMI] = True  # right hemisphere masked out
    fig = surface.plot_fsaverage5_2d(x, y, vmax=0.3, mask=mask, n_levels=8)
    panels = _panels(fig)
    for ax, (hemi, _) in zip(panels, surface.PANELS):
        colors = _face_colors(ax)
        if hemi == "left":
            # the corner's colour, darkened in the sulci (up to 45 %) so the folds show
            factor = colors[:, :3] / surface.BIVARIATE_CORNERS[1]
            np.testing.assert_allclose(factor, factor[:, :1].repeat(3, axis=1), atol=2e-3)
            assert factor.min() >= 0.55 - 1e-3 and factor.max() <= 1 + 1e-3
            assert factor.max() - factor.min() > 0.2
        else:
            assert _is_grey(colors)
    legend = [ax for ax in fig.axes if ax not in panels]
    assert len(legend) == 1
    square = legend[0].images[0].get_array()
    # origin="lower": row 0 is y = 0; column 0 is x = 0.
    np.testing.assert_allclose(square[0, 0], surface.BIVARIATE_CORNERS[0])
    np.testing.assert_allclose(square[0, -1], surface.BIVARIATE_CORNERS[1])
    np.testing.assert_allclose(square[-1, 0], surface.BIVARIATE_CORNERS[2])


# -- volume to surface ---------------------------------------------------------------


def _mni_box_mask(path, half: bool):
    """A 4 mm grid over the MNI brain box; ``half`` keeps only x <= 4 mm (left hemisphere)."""
    shape = (46, 55, 46)
    affine = np.diag([4.0, 4.0, 4.0, 1.0])
    affine[:3, 3] = [-92.0, -128.0, -74.0]
    xyz = np.indices(shape).reshape(3, -1).T @ affine[:3, :3].T + affine[:3, 3]
    mask = np.ones(shape, np.uint8)
    if half:
        mask[(xyz[:, 0] > 4).reshape(shape)] = 0
    nib.save(nib.Nifti1Image(mask, affine), path)
    return xyz[mask.reshape(-1) > 0]  # voxel centres in mask (C) order


def test_volume_to_fsaverage5_constant_linear_and_half_masks(tmp_path):
    full = tmp_path / "full_mask.nii.gz"
    xyz = _mni_box_mask(full, half=False)
    linear = 0.01 * xyz[:, 0] + 0.02 * xyz[:, 1] - 0.015 * xyz[:, 2]
    ones = np.ones(len(xyz))
    ones_with_nan = ones.copy()
    ones_with_nan[::7] = np.nan  # missing voxels must not pull vertices towards 0
    maps = surface.volume_to_fsaverage5(np.stack([ones, linear, ones_with_nan]), full)
    assert maps.shape == (3, surface.N_VERTICES)
    assert np.isfinite(maps[0]).all()
    np.testing.assert_allclose(maps[0], 1.0, atol=1e-9)
    np.testing.assert_allclose(maps[2][np.isfinite(maps[2])], 1.0, atol=1e-9)
    assert np.isfinite(maps[2]).mean() > 0.95
    # Linear interpolation reproduces a linear field: each vertex samples evenly
    # between its white and pial positions, so it reads the field at their midpoint.
    for k, hemi in enumerate(surface.HEMISPHERES):
        mid = (surface._mesh("pial", hemi).coordinates
               + surface._mesh("white_matter", hemi).coordinates) / 2
        expected = 0.01 * mid[:, 0] + 0.02 * mid[:, 1] - 0.015 * mid[:, 2]
        np.testing.assert_allclose(maps[1][k * N_HEMI:(k + 1) * N_HEMI], expected, atol=1e-3)

    half = tmp_path / "half_mask.nii.gz"
    xyz_half = _mni_box_mask(half, half=True)
    projected = surface.volume_to_fsaverage5(np.ones(len(xyz_half)), half)
    left, right = projected[:N_HEMI], projected[N_HEMI:]
    assert np.isfinite(left).all()
    np.testing.assert_allclose(left, 1.0, atol=1e-9)  # no dilution by out-of-mask zeros
    assert np.isnan(right).mean() > 0.8


def test_volume_to_fsaverage5_checks_the_mask(tmp_path):
    mask = tmp_path / "mask.nii.gz"
    nib.save(nib.Nifti1Image(np.ones((4, 4, 4), np.uint8), np.eye(4)), mask)
    with pytest.raises(BrainencInputError, match="64 voxels but 10 values") as info:
        surface.volume_to_fsaverage5(np.ones(10), mask)
    assert info.value.path == mask
    with pytest.raises(BrainencInputError, match="not found"):
        surface.volume_to_fsaverage5(np.ones(10), tmp_path / "missing.nii.gz")


# -- summary figures ------------------------------------------------------------------


def test_histograms_highlight_exactly_the_significant_voxels():
    result = make_result(400)
    fig = figures.plot_histograms(result)
    assert len(fig.axes) == 4
    for ax, direction in zip(fig.axes, DIRECTIONS):
        all_bars, significant_bars = ax.containers
        r = result.r[direction]
        assert sum(b.get_height() for b in all_bars) == np.isfinite(r).sum()
        assert sum(b.get_height() for b in significant_bars) == result.significant[direction].sum()


def test_transfer_scatter_counts_each_significance_category():
    result = make_result(400)
    s2m, m2s = result.significant["story_to_movie"], result.significant["movie_to_story"]
    defined = np.isfinite(result.r["story_to_movie"]) & np.isfinite(result.r["movie_to_story"])
    expected = {
        "neither": (~s2m & ~m2s & defined).sum(),
        "story → movie only": (s2m & ~m2s & defined).sum(),
        "movie → story only": (~s2m & m2s & defined).sum(),
        "both": (s2m & m2s & defined).sum(),
    }
    fig = figures.plot_transfer_scatter(result)
    assert len(fig.axes) == 1
    labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert labels == [f"{name} ({count})" for name, count in expected.items()]
    offsets = [len(c.get_offsets()) for c in fig.axes[0].collections]
    assert offsets == list(expected.values())
    assert len(figures.plot_within_vs_cross(result).axes) == 2


def test_category_scores_match_roc_auc_and_means():
    result = make_result(300, seed=3)
    labels = np.random.default_rng(4).choice([0, 2], 300)
    labels[:60] = 1  # the planted signal: category 1
    mean_r, _, auc = figures.category_scores(result, labels, 3)
    for i, direction in enumerate(DIRECTIONS):
        r = result.r[direction]
        ok = np.isfinite(r)
        for c in range(3):
            assert mean_r[i, c] == pytest.approx(r[ok & (labels == c)].mean())
            assert auc[i, c] == pytest.approx(roc_auc_score(labels[ok] == c, r[ok]))
    assert (auc[:, 1] > 0.9).all() and (mean_r[:, 1] > mean_r[:, 0] + 0.05).all()


# -- report ---------------------------------------------------------------------------


def _table_numbers(result: TransferResult) -> list[str]:
    """The strings the summary table must hold, computed from the arrays."""
    out = []
    for direction in DIRECTIONS:
        r = result.r[direction]
        ok = np.isfinite(r)
        sig = result.significant[direction] & ok
        out += [f"<td>{ok.sum()}</td><td>{sig.sum()}</td>", f"{sig.sum() / ok.sum():.1%}",
                f"{r[ok].mean():.3f}", f"{r[sig].mean():.3f}", f"{r[ok].max():.3f}"]
    return out


def test_report_for_unknown_space_skips_maps_and_compares_feature_spaces(tmp_path):
    results = [make_result(500, feature_space="multimodal", seed=1),
               make_result(500, feature_space="unimodal", seed=2)]
    labels = np.zeros(500, int)
    labels[:100] = 1
    out = report.write_report(results, tmp_path / "out", title="Test report",
                              ground_truth={"labels": labels, "names": ["other", "planted"]}, dpi=40)
    assert out == tmp_path / "out" / "report.html"
    text = out.read_text(encoding="utf-8")
    assert "<title>Test report</title>" in text
    for result in results:
        for number in _table_numbers(result):
            assert number in text
    assert text.count("Cortical maps skipped") == 2
    assert "Comparison across feature spaces" in text
    # Ground-truth AUC of the planted category, story -> movie, first result.
    r = results[0].r["story_to_movie"]
    ok = np.isfinite(r)
    assert f"{roc_auc_score(labels[ok] == 1, r[ok]):.3f}" in text
    pngs = sorted(p.name for p in (tmp_path / "out" / "figures").iterdir())
    assert pngs == sorted(
        [f"sub01_{fs}_{kind}.png" for fs in ("multimodal", "unimodal")
         for kind in ("histograms", "scatter", "within_vs_cross", "ground_truth")]
        + ["comparison.png"]
    )
    for name in pngs:
        assert (tmp_path / "out" / "figures" / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f"src='figures/{name}'" in text
    assert not list((tmp_path / "out").rglob("*.tmp"))


def test_report_for_fsaverage5_draws_maps(tmp_path):
    result = make_result(surface.N_VERTICES, space="fsaverage5")
    out = report.write_report([result], tmp_path, dpi=40)
    text = out.read_text(encoding="utf-8")
    maps = [f"sub01_feats_r_{d}.png" for d in DIRECTIONS] + ["sub01_feats_transfer2d.png"]
    for name in maps:
        assert (tmp_path / "figures" / name).stat().st_size > 1000
        assert f"src='figures/{name}'" in text
    assert "Cortical maps skipped" not in text
    assert "Comparison across feature spaces" not in text
    for number in _table_numbers(result):
        assert number in text


def test_report_volume_inputs_are_projected_significant_values(tmp_path):
    mask = tmp_path / "mask.nii.gz"
    xyz = _mni_box_mask(mask, half=False)
    result = make_result(len(xyz), space="volume", mask_path=str(mask))
    for direction in DIRECTIONS:  # significant and constant on the left, nothing on the right
        result.r[direction] = np.full(len(xyz), 0.2)
        result.significant[direction] = xyz[:, 0] < 0
    inputs, note = report._surface_inputs(result)
    assert note is None
    for key in list(DIRECTIONS) + ["x", "y"]:
        left, right = inputs[key][:N_HEMI], inputs[key][N_HEMI:]
        assert np.isfinite(left).mean() > 0.95 and np.isnan(right).mean() > 0.8
        np.testing.assert_allclose(left[np.isfinite(left)], 0.2)
    missing = make_result(len(xyz), space="volume", mask_path=str(tmp_path / "gone.nii.gz"))
    inputs, note = report._surface_inputs(missing)
    assert inputs is None and re.search("mask .* not available", note)


def test_report_rejects_bad_ground_truth_before_writing(tmp_path):
    result = make_result(50)
    with pytest.raises(BrainencInputError, match="labels"):
        report.write_report([result], tmp_path / "out", ground_truth={"labels": np.arange(50)})
    with pytest.raises(BrainencInputError, match="0..1"):
        report.write_report([result], tmp_path / "out",
                            ground_truth={"labels": np.full(50, 5), "names": ["a", "b"]})
    assert not (tmp_path / "out").exists()


def test_flat_map_draws_every_face_of_nilearns_flat_hemispheres():
    values = np.full(surface.N_VERTICES, np.nan)
    values[N_HEMI:] = -0.15  # right hemisphere at minus half of vmax
    fig = surface.plot_fsaverage5(values, title="flat", vmax=0.3, flat=True)
    panels = [ax for ax in fig.axes if ax.get_title().endswith(" flat")]
    assert [ax.get_title() for ax in panels] == ["left flat", "right flat"]
    negative = np.round(np.array(surface._resolve_cmap("RdBu_r")(0.25)), 4)
    for ax, hemi in zip(panels, ("left", "right")):
        faces = np.asarray(surface._mesh("flat", hemi).faces)
        assert len(ax.collections[0].get_facecolor()) == len(faces)   # the cut mesh, all drawn
        colors = _face_colors(ax)
        if hemi == "right":   # a diverging map: negative values in blue
            np.testing.assert_allclose(colors, negative[None, :], atol=1e-4)
            assert negative[2] > negative[0]
        else:                 # NaN: the grey sulcal background
            assert np.allclose(colors[:, 0], colors[:, 1]) and np.allclose(colors[:, 1], colors[:, 2])

"""Report sections of the analyses (brainenc.plotting.analyses), on small synthetic analyses."""
from __future__ import annotations

import re

import numpy as np
import pytest

from brainenc.analyses.ceilings import NoiseCeiling
from brainenc.analyses.comparison import comparison_from_scores
from brainenc.analyses.dimensions import Components, SharedDimensions
from brainenc.analyses.layers import summarise_layers
from brainenc.analyses.partition import PartitionResult
from brainenc.analyses.rois import roi_table, rois_from_labels
from brainenc.plotting import analyses as sections
from brainenc.plotting import report, surface
from brainenc.plotting.figures import direction_label
from brainenc.results import DIRECTIONS
from tests.test_plotting import make_result

N = surface.N_VERTICES
PNG = b"\x89PNG\r\n\x1a\n"
DPI = 30  # small files: the tests check what is drawn and linked, not how it looks


# -- synthetic analyses ---------------------------------------------------------------------


def make_comparison(seed: int = 0, a: str = "multimodal", b: str = "unimodal", n: int = N):
    """Two results of the same voxels and a paired z where A wins on the first tenth."""
    result_a = make_result(n, space="fsaverage5", feature_space=a, seed=seed)
    result_b = make_result(n, space="fsaverage5", feature_space=b, seed=seed + 1)
    rng = np.random.default_rng(seed)
    z = {}
    for d in DIRECTIONS:
        z[d] = rng.normal(0.0, 1.0, n)
        z[d][: n // 10] += 6.0
        z[d][n // 10: n // 8] -= 6.0
        z[d][[3, 5, 7, 9]] = np.nan  # untested: r undefined (3, 7) or predictions equal
    return comparison_from_scores(result_a, result_b, z, fdr_q=0.05)


def make_dimensions(n_components: int = 3, n_features: int = 12, n: int = N) -> SharedDimensions:
    rng = np.random.default_rng(1)
    vectors = np.linalg.qr(rng.normal(size=(n_features, n_components)))[0].T

    def components():
        return Components(vectors, np.array([0.5, 0.2, 0.1][:n_components]), 500)

    joint = np.zeros(n, bool)
    joint[: n // 4] = True
    loadings = np.full((n_components, n), np.nan)
    loadings[:, joint] = rng.normal(0.0, 0.3, (n_components, joint.sum())) + np.array([[0.5], [0.0], [0.0]])
    angles = np.array([12.0, 40.0, 70.0])[:n_components]
    null = np.clip(rng.normal(50.0, 8.0, (40, n_components)) + np.arange(n_components) * 8, 0, 90)
    pvalues = (1 + (null <= angles).sum(axis=0)) / 41
    described = {"story_top": [["love", 2.1], ["home", 1.9]], "story_bottom": [["seven", -1.7]],
                 "movie_top": [["movie01", 12.0, 3.2], ["movie02", 40.5, 2.9]],
                 "movie_bottom": [["movie01", 3.0, -2.2]]}
    return SharedDimensions(
        "sub01", "multimodal", components(), components(), components(),
        {"story": joint | (np.arange(n) % 7 == 0), "movie": joint, "joint": joint},
        angles, null, pvalues, vectors[:1], loadings,
        top_stimuli={"shared": [described], "joint": [described] * n_components},
        settings={"n_components": n_components, "n_permutations": 40, "block": 10, "alpha": 0.05,
                  "max_angle": 30.0, "selection": "FDR maps of story → story (story), movie → movie "
                  "(movie), both (joint)"})


def make_sweep(n_layers: int = 3, with_rois: bool = True):
    results = [make_result(N, space="fsaverage5", feature_space=f"bridgetower-base_cross{k}", seed=k)
               for k in range(1, n_layers + 1)]
    for k, result in enumerate(results):  # later layers better on the second half of the planted voxels
        for d in DIRECTIONS:
            result.r[d][N // 10: N // 5] += 0.05 * k
            result.significant[d] = np.nan_to_num(result.r[d]) > 0.12
    rois = None
    if with_rois:
        labels = np.repeat(np.arange(4), N // 4 + 1)[:N]
        rois = rois_from_labels(labels, {0: "V1", 1: "A1", 2: "IPS", 3: "PCC"}, space="fsaverage5",
                                source="test labels")
    return results, summarise_layers(results, rois)


def make_ceilings(reference):
    rng = np.random.default_rng(2)
    ceilings, normalised = {}, {}
    for modality, repeats in (("story", (2,)), ("movie", (3, 2))):
        ev = rng.normal(0.05, 0.05, N)
        ev[: N // 5] += 0.3
        ev[11] = np.nan
        ceilings[modality] = NoiseCeiling("sub01", modality, tuple(f"{modality}{i}" for i in range(len(repeats))),
                                          tuple((f"run{i}a", f"run{i}b") for i in range(len(repeats))),
                                          repeats, (300,) * len(repeats), ev + 0.02, ev)
    for d in DIRECTIONS:
        normalised[d] = ceilings[d.split("_to_")[1]].normalise(reference.r[d], min_ev=0.05)
    return ceilings, normalised


def make_partition(space: str = "fsaverage5") -> PartitionResult:
    rng = np.random.default_rng(3)
    r2_a = rng.normal(0.0, 0.02, N)
    r2_b = rng.normal(0.0, 0.02, N)
    r2_a[: N // 5] += 0.08
    r2_b[N // 10: N // 3] += 0.05
    r2_joint = np.maximum(r2_a, r2_b) + np.abs(rng.normal(0.0, 0.01, N))
    r2_joint[[0, 1]] = np.nan
    folds = np.ones((3, N))
    return PartitionResult(r2_joint, r2_a, r2_b, 0.6 * r2_joint, 0.4 * r2_joint,
                           np.ones((3, 2, N)), folds, folds, subject="sub01", modality="story",
                           spaces=("multimodal", "unimodal"), space=space)


# -- checks ---------------------------------------------------------------------------------


def _figures(section: report.ReportSection, fig_dir) -> list[str]:
    """The figure files the section links, after checking each is a non-empty PNG."""
    names = re.findall(r"src='figures/([^']+)'", section.html)
    assert names and len(names) == len(set(names))
    for name in names:
        data = (fig_dir / name).read_bytes()
        assert data[:8] == PNG and len(data) > 1000
    return names


# -- sections -------------------------------------------------------------------------------


def test_comparison_section_counts_equal_the_masks_and_draws_delta_maps(tmp_path):
    fig_dir = tmp_path / "figures"
    comparison = make_comparison()
    section = sections.comparison_section([comparison], make_result(N, space="fsaverage5"),
                                          fig_dir, dpi=DPI)
    names = _figures(section, fig_dir)
    assert "sub01_compare_counts.png" in names
    assert sorted(n for n in names if "delta_r" in n) == sorted(
        f"sub01_compare_multimodal_vs_unimodal_delta_r_{d}.png" for d in DIRECTIONS)
    for d in DIRECTIONS:
        n_a, n_b = int(comparison.a_better[d].sum()), int(comparison.b_better[d].sum())
        tested = int(np.isfinite(comparison.z[d]).sum())
        assert n_a == comparison.summary(d).n_a_better and n_a > 0 and n_b > 0
        assert (f"<th class='label'>{direction_label(d)}</th><td>{tested}</td><td>{n_a}</td>"
                f"<td>{n_a / tested:.1%}</td><td>{n_b}</td>") in section.html
        delta = comparison.delta_r[d]
        assert f"<td>{np.nanmean(delta[np.isfinite(comparison.z[d])]):.3f}</td>" in section.html
        assert f"<td>{delta[comparison.a_better[d]].mean():.3f}</td>" in section.html
    assert section.anchor == "comparisons-sub01"


def test_comparison_section_without_a_surface_notes_why(tmp_path):
    comparison = make_comparison(n=300)
    section = sections.comparison_section([comparison], make_result(300), tmp_path / "figures", dpi=DPI)
    assert _figures(section, tmp_path / "figures") == ["sub01_compare_counts.png"]
    assert "Cortical maps skipped: response space is &#x27;unknown&#x27;" in section.html


def test_comparison_section_refuses_mismatched_voxels(tmp_path):
    with pytest.raises(Exception, match="300 voxels but its reference"):
        sections.comparison_section([make_comparison(n=300)], make_result(400), tmp_path, dpi=DPI)


def test_dimensions_section_draws_angles_rgb_and_pc_maps_and_lists_stimuli(tmp_path):
    fig_dir = tmp_path / "figures"
    dimensions = make_dimensions()
    section = sections.dimensions_section(dimensions, make_result(N, space="fsaverage5"), fig_dir,
                                          dpi=DPI)
    names = _figures(section, fig_dir)
    stem = "sub01_multimodal_dimensions"
    assert names == [f"{stem}_angles.png", f"{stem}_rgb.png"] + [f"{stem}_pc{k}.png" for k in (1, 2, 3)]
    for number in ("12.0", "40.0", f"{dimensions.angle_pvalues[0]:.3g}", "love (+2.10)",
                   "movie02 @ 40.5 s (+2.90)", "Shared dimension 1", "Joint PC 3",
                   f"joint {int(dimensions.voxels['joint'].sum())} voxels"):
        assert number in section.html
    assert section.html.count("<td>yes</td>") == 1  # one shared pair


def test_loadings_rgb_scales_each_component_and_hides_missing_vertices():
    loadings = np.array([[0.5, -1.0, 2.0, np.nan], [0.0, 0.1, 0.0, 1.0], [1.0, 1.0, -1.0, 1.0]])
    rgb = sections._loadings_rgb(loadings, np.array([1.0, 0.1, 1.0]))
    np.testing.assert_allclose(rgb[:3], [[0.75, 0.5, 1.0], [0.0, 1.0, 1.0], [1.0, 0.5, 0.0]])
    assert np.isnan(rgb[3]).all()


def test_plot_fsaverage5_rgb_colours_faces_by_their_vertices():
    rgb = np.full((N, 3), np.nan)
    rgb[: surface.N_VERTICES_PER_HEMISPHERE] = [1.0, 0.0, 0.0]
    figure = surface.plot_fsaverage5_rgb(rgb, title="t", channel_labels=("a", "b", "c"))
    panels = figure.axes[:4]
    for ax, (hemi, _) in zip(panels, surface.PANELS):
        colors = np.unique(np.round(ax.collections[0].get_facecolor(), 4), axis=0)
        if hemi == "left":
            np.testing.assert_allclose(colors, [[1.0, 0.0, 0.0, 1.0]])
        else:
            assert np.all(np.ptp(colors[:, :3], axis=1) < 1e-6)  # sulcal greys
    assert [ax.get_title() for ax in figure.axes[4:]] == ["a", "b", "c"]


def test_layers_section_curves_roi_curves_and_best_layer_maps(tmp_path):
    fig_dir = tmp_path / "figures"
    results, sweep = make_sweep()
    section = sections.layers_section(sweep, results[0], fig_dir, dpi=DPI)
    names = _figures(section, fig_dir)
    assert names == (["sub01_layers_curves.png", "sub01_layers_roi_curves.png"]
                     + [f"sub01_layers_best_{d}.png" for d in DIRECTIONS])
    for d in DIRECTIONS:
        assert f"<td>{int(sweep.n_map[d][-1])}</td>" in section.html
        assert f"<td>{sweep.mean_r_map[d][0]:.3f}</td>" in section.html
    _, no_rois = make_sweep(n_layers=2, with_rois=False)
    other = sections.layers_section(no_rois, make_result(N), tmp_path / "other", dpi=DPI)
    assert "roi_curves" not in other.html and "Cortical maps skipped" in other.html


def test_best_layer_colour_bar_names_the_layers():
    assert sections.short_layer_names(["bt_cross1", "bt_cross2", "bt_cross10"]) == (
        "bt_", ["cross1", "cross2", "cross10"])
    figure = surface.plot_fsaverage5(np.arange(N) % 3, cmap=sections._layer_colormap(3), symmetric=False,
                                     vmin=-0.5, vmax=2.5, colorbar_ticks=[0, 1, 2],
                                     colorbar_ticklabels=["a", "b", "c"], avg_method="min")
    assert [t.get_text() for t in figure.axes[-1].get_yticklabels()] == ["a", "b", "c"]


def test_ceilings_section_tables_and_maps(tmp_path):
    fig_dir = tmp_path / "figures"
    reference = make_result(N, space="fsaverage5")
    ceilings, normalised = make_ceilings(reference)
    section = sections.ceilings_section(ceilings, normalised, reference, fig_dir, dpi=DPI)
    names = _figures(section, fig_dir)
    assert names == (["sub01_ceiling_ev_story.png"]
                     + [f"sub01_ceiling_normalised_{d}.png" for d in ("story_to_story", "movie_to_story")]
                     + ["sub01_ceiling_ev_movie.png"]
                     + [f"sub01_ceiling_normalised_{d}.png" for d in ("movie_to_movie", "story_to_movie")])
    assert f"<td>{np.nanmedian(ceilings['movie'].ev_corrected):.3f}</td>" in section.html
    assert "movie0, movie1</td><td>3, 2</td>" in section.html
    for item in normalised.values():
        assert f"<td>{item.n_kept}</td><td>{np.nanmean(item.values):.3f}</td>" in section.html
    keyed = {"multimodal: story_to_movie": normalised["story_to_movie"]}
    other = sections.ceilings_section({"movie": ceilings["movie"]}, keyed, reference, tmp_path / "o", dpi=DPI)
    assert "multimodal: story → movie" in other.html
    assert "sub01_multimodal_ceiling_normalised_story_to_movie.png" in other.html
    with pytest.raises(ValueError, match="not keyed by a direction"):
        sections.ceilings_section({"movie": ceilings["movie"]}, normalised, reference, tmp_path)


def test_partition_section_maps_and_summary(tmp_path):
    fig_dir = tmp_path / "figures"
    partition = make_partition()
    section = sections.partition_section(partition, fig_dir, dpi=DPI)
    names = _figures(section, fig_dir)
    stem = "sub01_partition_story_multimodal_unimodal"
    assert names == [f"{stem}_summary.png"] + [f"{stem}_{k}.png" for k in ("unique_a", "unique_b",
                                                                            "shared", "r2_joint")]
    keep = np.nan_to_num(partition.r2_joint) > 0
    assert f"({int(keep.sum())} voxels)" in section.html
    assert f"<td>{partition.unique_a[keep].mean():.3f}</td>" in section.html
    unknown = sections.partition_section(make_partition(space="unknown"), tmp_path / "u", dpi=DPI)
    assert "Cortical maps skipped" in unknown.html


def test_rois_section_wraps_the_roi_tables():
    result = make_result(400)
    rois = rois_from_labels(np.repeat([1, 2], 200), {1: "left", 2: "right"}, space="unknown", source="test")
    with pytest.warns(Warning):
        rows = roi_table(result, rois)
    section = sections.rois_section({"sub01 · feats": rows})
    assert "<h3>sub01 · feats</h3>" in section.html and "<table class='rois'>" in section.html
    assert section.anchor == "rois"


# -- the report -----------------------------------------------------------------------------


def test_write_report_links_extra_sections_after_the_results(tmp_path):
    result = make_result(300, feature_space="multimodal")
    partition = make_partition(space="unknown")
    extra = [sections.partition_section(partition, tmp_path / "figures", dpi=DPI),
             report.ReportSection("notes", "Notes <& more>", "<p>hello</p>")]
    text = report.write_report([result], tmp_path, dpi=DPI, extra_sections=extra).read_text("utf-8")
    for section in extra:
        assert f"<a href='#{section.anchor}'>" in text and f"<h2 id='{section.anchor}'>" in text
    assert "<h2 id='notes'>Notes &lt;&amp; more&gt;</h2>\n<p>hello</p>" in text
    assert text.index("<h2 id='sub01_multimodal'>") < text.index(f"<h2 id='{extra[0].anchor}'>")
    for name in re.findall(r"src='(figures/[^']+)'", text):
        assert (tmp_path / name).read_bytes()[:8] == PNG


def test_write_report_refuses_duplicate_anchors_before_writing(tmp_path):
    result = make_result(50)
    with pytest.raises(ValueError, match="already used"):
        report.write_report([result], tmp_path / "out",
                            extra_sections=[report.ReportSection("sub01_feats", "x", "")])
    with pytest.raises(ValueError, match="already used"):
        report.write_report([result], tmp_path / "out", extra_sections=[
            report.ReportSection("a", "x", ""), report.ReportSection("a", "y", "")])
    assert not (tmp_path / "out").exists()


def test_surface_values_projects_like_the_report(tmp_path):
    result = make_result(N, space="fsaverage5")
    values, note = surface.surface_values(result, np.ones((2, N)))
    assert note is None and values.shape == (2, N)
    values, note = surface.surface_values(make_result(10), np.ones(10))
    assert values is None and "cannot be placed on a cortical surface" in note
    missing = make_result(10, space="volume", mask_path=str(tmp_path / "gone.nii.gz"))
    values, note = surface.surface_values(missing, np.ones(10))
    assert values is None and "not available" in note

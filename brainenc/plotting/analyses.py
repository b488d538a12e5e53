"""Report sections of the analyses in :mod:`brainenc.analyses`: their tables, figures and maps.

One function per analysis writes its figures into ``fig_dir`` (each PNG to a
temporary name, then renamed) and returns a
:class:`~brainenc.plotting.report.ReportSection` for
:func:`~brainenc.plotting.report.write_report`'s ``extra_sections``. The
section's HTML refers to its figures as ``<fig_dir name>/<file>``, so
``fig_dir`` is the report's figure folder, ``<out_dir>/figures``.

Cortical maps go through :func:`brainenc.plotting.surface.surface_values`, the
projection of the report's own maps: ``fsaverage5`` values are drawn as they
are, ``volume`` values are projected through the brain mask, and for other
spaces the section says why there are no maps. ``reference`` is a
:class:`~brainenc.results.TransferResult` of the same subject and responses
(its ``space`` and ``mask_path`` serve the projection).

Files written (``<s>`` is the subject, ``<f>`` a feature space)::

    <s>_compare_counts.png                   comparison_section
    <s>_compare_<A>_vs_<B>_delta_r_<direction>.png
    <s>_<f>_dimensions_angles.png            dimensions_section
    <s>_<f>_dimensions_rgb.png
    <s>_<f>_dimensions_pc<k>.png
    <s>_layers_curves.png                    layers_section
    <s>_layers_roi_curves.png                (with per-ROI curves)
    <s>_layers_best_<direction>.png
    <s>_ceiling_ev_<modality>.png            ceilings_section
    <s>[_<label>]_ceiling_normalised_<direction>.png
    <s>_partition_<modality>_<A>_<B>_<map>.png   partition_section
    <s>_partition_<modality>_<A>_<B>_summary.png
"""
from __future__ import annotations

import html
import os
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure

from brainenc.errors import BrainencInputError
from brainenc.plotting import figures as figs
from brainenc.plotting import surface
from brainenc.plotting.report import ReportSection, figure_html, file_slug, format_fraction, format_r
from brainenc.results import DIRECTIONS, TransferResult, split_direction

if TYPE_CHECKING:  # the analyses import heavy modules; plotting needs only their types
    from brainenc.analyses.ceilings import NoiseCeiling, NormalisedCorrelation
    from brainenc.analyses.comparison import ModelComparison
    from brainenc.analyses.dimensions import SharedDimensions
    from brainenc.analyses.layers import LayerSweep
    from brainenc.analyses.partition import PartitionResult
    from brainenc.analyses.rois import RoiRow

__all__ = [
    "ceilings_section",
    "comparison_section",
    "dimensions_section",
    "layers_section",
    "partition_section",
    "plot_comparison_counts",
    "plot_layer_curves",
    "plot_partition_summary",
    "plot_principal_angles",
    "plot_roi_layer_curves",
    "rois_section",
    "short_layer_names",
]

#: Colour map of signed differences and loadings: red positive, blue negative, white 0.
DIVERGING = "RdBu_r"
#: Colour of "A better" and "B better" in comparison figures (the ends of DIVERGING).
A_COLOR, B_COLOR = "#b2182b", "#2166ac"
#: ROI curves drawn at most; the ROIs with the highest mean r are kept.
MAX_ROI_CURVES = 10


# -- shared helpers ------------------------------------------------------------------------


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _note(text: str) -> str:
    return f"<p class='note'>{_e(text)}</p>"


def _small(text: str) -> str:
    return f"<p class='small'>{_e(text)}</p>"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]], labels: int = 1) -> str:
    """An HTML table; cells are escaped, the first ``labels`` columns left-aligned."""
    def cell(tag: str, i: int, text: str) -> str:
        cls = " class='label'" if i < labels else ""
        return f"<{tag}{cls}>{_e(text)}</{tag}>"

    head = "".join(cell("th", i, h) for i, h in enumerate(header))
    body = "".join("<tr>" + "".join(cell("th" if i == 0 else "td", i, c) for i, c in enumerate(row))
                   + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _save(figure: Figure, fig_dir: Path, name: str, dpi: int) -> str:
    """Write ``figure`` as ``fig_dir/name``; return its path relative to the report."""
    figs.save_figure(figure, fig_dir / name, dpi=dpi)
    return f"{fig_dir.name}/{name}"


def _check_voxels(n_voxels: int, reference: Any, what: str) -> None:
    expected = reference.n_voxels
    if n_voxels != expected:
        raise BrainencInputError(None, f"{what} has {n_voxels} voxels but its reference "
                                       f"({reference.subject}, {reference.space}) has {expected}")


def _robust_max(values: np.ndarray, percentile: float = 99.0, default: float = 0.1) -> float:
    """The ``percentile`` of |finite values| (``default`` when there are none or it is 0)."""
    finite = np.abs(values[np.isfinite(values)])
    top = float(np.percentile(finite, percentile)) if finite.size else 0.0
    return top if top > 0 else default


def _mean_or_nan(values: np.ndarray) -> float:
    finite = values[np.isfinite(values)]
    return float(finite.mean()) if finite.size else float("nan")


def _median_or_nan(values: np.ndarray) -> float:
    finite = values[np.isfinite(values)]
    return float(np.median(finite)) if finite.size else float("nan")


# -- model comparison ----------------------------------------------------------------------


def _comparison_rows(comparison: ModelComparison) -> list[dict[str, Any]]:
    """Per direction: tested voxels, A/B better counts and fractions, mean Δr (all, per side)."""
    rows = []
    q = float(comparison.settings.get("fdr_q", np.nan))
    for d in DIRECTIONS:
        delta = np.asarray(comparison.delta_r[d], dtype=float)
        a_better = np.asarray(comparison.a_better[d], dtype=bool)
        b_better = np.asarray(comparison.b_better[d], dtype=bool)
        tested = np.isfinite(np.asarray(comparison.z[d], dtype=float))
        n = int(tested.sum())
        rows.append({
            "direction": d, "n_voxels": n, "n_a": int(a_better.sum()), "n_b": int(b_better.sum()),
            "fraction_a": a_better.sum() / n if n else float("nan"),
            "fraction_b": b_better.sum() / n if n else float("nan"),
            "mean_delta": _mean_or_nan(delta[tested]), "mean_delta_a": _mean_or_nan(delta[a_better]),
            "mean_delta_b": _mean_or_nan(delta[b_better]), "fdr_q": q,
        })
    return rows


def _comparison_table(comparison: ModelComparison) -> str:
    a, b = comparison.space_a, comparison.space_b
    header = ["direction", "voxels tested", f"{a} better", "fraction", f"{b} better", "fraction",
              "mean Δr", f"mean Δr ({a} better)", f"mean Δr ({b} better)"]
    rows = [[figs.direction_label(row["direction"]), str(row["n_voxels"]), str(row["n_a"]),
             format_fraction(row["fraction_a"]), str(row["n_b"]), format_fraction(row["fraction_b"]),
             format_r(row["mean_delta"]), format_r(row["mean_delta_a"]), format_r(row["mean_delta_b"])]
            for row in _comparison_rows(comparison)]
    return _table(header, rows)


def plot_comparison_counts(comparisons: Sequence[ModelComparison]) -> Figure:
    """Per direction, the share of tested voxels where each space of each pair predicts better.

    Returns
    -------
    matplotlib.figure.Figure
        Four axes (2 × 2, one per direction); per comparison two bars, "A better"
        and "B better" (percent of the voxels tested, the counts above them).
    """
    rows = [_comparison_rows(c) for c in comparisons]
    figure = figs.new_figure(max(8.0, 2.2 * len(comparisons) + 4.0), 6.4)
    axes = figure.subplots(2, 2, sharey=True).ravel()
    positions = np.arange(len(comparisons))
    width = 0.38
    for index, (ax, direction) in enumerate(zip(axes, DIRECTIONS)):
        for side, offset, color, label in (("a", -width / 2, A_COLOR, "first space (A) better"),
                                           ("b", width / 2, B_COLOR, "second space (B) better")):
            shares = np.array([100 * np.nan_to_num(r[index][f"fraction_{side}"]) for r in rows])
            bars = ax.bar(positions + offset, shares, width, color=color, label=label)
            ax.bar_label(bars, labels=[str(r[index][f"n_{side}"]) for r in rows], fontsize=7, padding=1)
        ax.set_title(figs.direction_label(direction), fontsize=10)
        ax.set_xticks(positions, [f"{c.space_a}\nvs {c.space_b}" for c in comparisons], fontsize=8)
        ax.margins(y=0.15)
    for ax in axes[::2]:
        ax.set_ylabel("% of tested voxels")
    figure.legend(*axes[0].get_legend_handles_labels(), loc="outside lower center", ncols=2,
                  fontsize=8, frameon=False)
    q = rows[0][0]["fdr_q"] if rows else float("nan")
    figure.suptitle(f"{comparisons[0].subject}: voxels where one feature space predicts better "
                    f"(FDR q = {q:g}; bar labels: voxel counts)", fontsize=11)
    return figure


def _comparison_maps(comparison: ModelComparison, reference: TransferResult, fig_dir: Path,
                     dpi: int) -> tuple[list[tuple[str, str]], str | None]:
    """The Δr map of each direction, masked to the FDR-significant voxels."""
    _check_voxels(len(comparison.delta_r[DIRECTIONS[0]]), reference, f"comparison {comparison.label}")
    significant = {d: np.asarray(comparison.a_better[d], bool) | np.asarray(comparison.b_better[d], bool)
                   for d in DIRECTIONS}
    masked = np.stack([np.where(significant[d], comparison.delta_r[d], np.nan) for d in DIRECTIONS])
    projected, note = surface.surface_values(reference, masked, f"Δr of {comparison.label}")
    if projected is None:
        return [], note
    vmax = _robust_max(projected)  # one scale for the four directions
    rows = _comparison_rows(comparison)
    a, b = comparison.space_a, comparison.space_b
    stem = file_slug(f"{comparison.subject}_compare_{a}_vs_{b}")
    out = []
    for values, row in zip(projected, rows, strict=True):
        label = figs.direction_label(row["direction"])
        title = (f"{comparison.subject} · {a} vs {b}: {label}\n"
                 f"{row['n_a']} voxels {a} better, {row['n_b']} {b} better (FDR q = {row['fdr_q']:g})")
        figure = surface.plot_fsaverage5(values, title=title, vmax=vmax, cmap=DIVERGING,
                                         colorbar_label=f"Δr = r({a}) − r({b}), significant vertices")
        path = _save(figure, fig_dir, f"{stem}_delta_r_{row['direction']}.png", dpi)
        out.append((path, (f"Δr, {label}: red where {a} predicts better, blue where {b} does "
                           "(FDR-significant vertices; others show the sulcal background)")))
    return out, None


def comparison_section(comparisons: Sequence[ModelComparison], reference: TransferResult,
                       fig_dir: str | Path, *, dpi: int = 90) -> ReportSection:
    """The section of paired feature-space comparisons of one subject.

    Parameters
    ----------
    comparisons : sequence of ModelComparison
        Of one subject, at least one.
    reference : TransferResult
        A result of the same subject and responses (response space and mask).
    fig_dir : path-like
        The report's figure folder.
    dpi : int

    Returns
    -------
    ReportSection
        Anchor ``comparisons-<subject>``: per comparison a table (per direction:
        voxels tested, where A and where B predicts better at the FDR level,
        mean Δr overall and on each side) and four Δr maps; one bar figure of
        all comparisons.
    """
    comparisons = list(comparisons)
    if not comparisons:
        raise ValueError("comparison_section needs at least one comparison")
    fig_dir = Path(fig_dir)
    subject = comparisons[0].subject
    counts = _save(plot_comparison_counts(comparisons), fig_dir,
                   f"{file_slug(subject)}_compare_counts.png", dpi)
    parts = [_small("Paired tests of two feature spaces through the same runs and splits: per "
                    "voxel and direction, whether A or B predicts the held-out responses better "
                    "(Benjamini–Hochberg FDR over the two-sided p-values; across modalities the "
                    "winner must also pass its transfer test). Δr = r(A) − r(B)."),
             figure_html(counts, "Share of the tested voxels where each space predicts better, "
                                 "per direction and comparison (voxel counts above the bars).")]
    for comparison in comparisons:
        parts.append(f"<h3>{_e(comparison.label)}</h3>")
        parts.append(_comparison_table(comparison))
        maps, note = _comparison_maps(comparison, reference, fig_dir, dpi)
        if note:
            parts.append(_note(note))
        parts.extend(figure_html(path, caption) for path, caption in maps)
    return ReportSection(f"comparisons-{file_slug(subject)}", f"Feature-space comparisons · {subject}",
                         "\n".join(parts))


# -- shared dimensions ---------------------------------------------------------------------


def _shared_mask(dimensions: SharedDimensions) -> np.ndarray:
    """Which principal-angle pairs are shared dimensions (the analysis's own criterion)."""
    alpha = float(dimensions.settings.get("alpha", 0.05))
    max_angle = float(dimensions.settings.get("max_angle", 30.0))
    with np.errstate(invalid="ignore"):
        return (dimensions.angle_pvalues <= alpha) & (dimensions.angles <= max_angle)


def plot_principal_angles(dimensions: SharedDimensions) -> Figure:
    """Principal angles between the story and movie subspaces against their null.

    Returns
    -------
    matplotlib.figure.Figure
        One axes: observed angles (points), the null's median and 5th
        percentile per pair, the largest angle of a shared dimension, and the
        shared pairs ringed.
    """
    angles = np.asarray(dimensions.angles, dtype=float)
    pairs = np.arange(1, len(angles) + 1)
    figure = figs.new_figure(6.4, 4.4)
    ax = figure.subplots()
    null = np.asarray(dimensions.null_angles, dtype=float)
    if null.size:
        ax.fill_between(pairs, np.nanpercentile(null, 5, axis=0), np.nanpercentile(null, 95, axis=0),
                        color="#dddddd", label="null, 5th–95th percentile")
        ax.plot(pairs, np.nanmedian(null, axis=0), color="#777777", marker="_", label="null median")
        ax.plot(pairs, np.nanpercentile(null, 5, axis=0), color="#777777", linestyle="--",
                linewidth=0.9, label="null, 5th percentile")
    max_angle = float(dimensions.settings.get("max_angle", 30.0))
    ax.axhline(max_angle, color="#b2182b", linestyle=":", linewidth=1.0,
               label=f"largest shared angle ({max_angle:g}°)")
    ax.plot(pairs, angles, "o", color="black", label="observed")
    shared = _shared_mask(dimensions)
    ax.plot(pairs[shared], angles[shared], "o", markersize=13, markerfacecolor="none",
            markeredgecolor="#e66101", markeredgewidth=2, label=f"shared ({int(shared.sum())})")
    ax.set_xticks(pairs)
    ax.set_ylim(0, 90)
    ax.set_xlabel("pair of principal vectors (smallest angle first)")
    ax.set_ylabel("principal angle (degrees)")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0), frameon=False)
    ax.set_title(f"{dimensions.subject} · {dimensions.feature_space}: story vs movie weight "
                 "subspaces", fontsize=10)
    return figure


def _angles_table(dimensions: SharedDimensions) -> str:
    null = np.asarray(dimensions.null_angles, dtype=float)
    median = np.nanmedian(null, axis=0) if null.size else np.full(len(dimensions.angles), np.nan)
    low = np.nanpercentile(null, 5, axis=0) if null.size else median
    shared = _shared_mask(dimensions)
    rows = [[str(k + 1), f"{angle:.1f}", f"{median[k]:.1f}", f"{low[k]:.1f}",
             f"{dimensions.angle_pvalues[k]:.3g}", "yes" if shared[k] else ""]
            for k, angle in enumerate(dimensions.angles)]
    return _table(["pair", "angle (°)", "null median (°)", "null 5th percentile (°)", "p", "shared"], rows)


def _selection_text(dimensions: SharedDimensions) -> str:
    settings = dimensions.settings
    counts = {name: int(np.asarray(v, bool).sum()) for name, v in dimensions.voxels.items()}
    explained = {name: getattr(dimensions, name) for name in ("story", "movie", "joint")}
    described = ", ".join(f"{name} {counts.get(name, 0)} voxels"
                          + ("" if part is None else f" (first component {part.explained[0]:.1%})")
                          for name, part in explained.items())
    return (f"Voxels: {settings.get('selection', 'the within-modality FDR maps')}; {described}. "
            f"Components: the first {settings.get('n_components', len(dimensions.angles))} of the "
            "unit-norm, delay-averaged weights (not centred; share of the weights' sum of squares "
            f"in brackets). Null: {settings.get('n_permutations', len(dimensions.null_angles))} "
            f"block shuffles of the responses (blocks of {settings.get('block', '?')} TRs). A pair "
            f"is shared when p ≤ {settings.get('alpha', 0.05):g} and its angle ≤ "
            f"{settings.get('max_angle', 30.0):g}°; "
            f"{len(dimensions.shared)} shared dimension(s).")


def _loadings_rgb(loadings: np.ndarray, scales: np.ndarray) -> np.ndarray:
    """Loadings on PCs 1–3 as colour channels: ``0.5 + 0.5 · loading / scale``, clipped to
    [0, 1] (0.5 = zero loading); NaN rows where a vertex has no loading."""
    rgb = np.full((loadings.shape[1], 3), 0.5)
    k = min(3, len(loadings))
    rgb[:, :k] = np.clip(0.5 + 0.5 * loadings[:k].T / scales[:k], 0.0, 1.0)
    rgb[~np.isfinite(loadings[:k]).all(axis=0)] = np.nan
    return rgb


def _dimension_maps(dimensions: SharedDimensions, reference: TransferResult, fig_dir: Path,
                    dpi: int) -> tuple[list[tuple[str, str]], str | None]:
    """The RGB map of the joint loadings on PCs 1–3 and one map per joint PC."""
    loadings = np.asarray(dimensions.loadings, dtype=float)
    if dimensions.joint is None or not np.isfinite(loadings).any():
        return [], "Joint maps skipped: too few voxels in both within-modality maps for joint components."
    _check_voxels(loadings.shape[1], reference, "the joint loadings")
    k = len(dimensions.joint.vectors)
    projected, note = surface.surface_values(reference, loadings[:k], "joint loadings")
    if projected is None:
        return [], note
    scales = np.array([_robust_max(row) for row in loadings[:k]])
    stem = file_slug(f"{dimensions.subject}_{dimensions.feature_space}_dimensions")
    label = f"{dimensions.subject} · {dimensions.feature_space}"
    ticks = [(f"−{s:.2g}", "0", f"+{s:.2g}") for s in scales[:3]] + [("", "", "")] * (3 - min(3, k))
    figure = surface.plot_fsaverage5_rgb(
        _loadings_rgb(projected, scales), title=f"{label}: loadings on joint PCs 1–3",
        channel_labels=[f"{colour}: joint PC {i + 1} loading"
                        for i, colour in enumerate(("red", "green", "blue"))],
        channel_ticklabels=ticks, background_label="sulcal greys: not in both within-modality maps; mid-grey: loadings near 0")
    out = [(_save(figure, fig_dir, f"{stem}_rgb.png", dpi),
            ("Joint voxels coloured by their loadings on joint PCs 1–3 (red, green, blue; each "
             "scaled by the 99th percentile of its |loading|, mid-grey = 0 on all three); "
             "other vertices show the sulcal background."))]
    for i, (values, scale) in enumerate(zip(projected, scales, strict=True)):
        explained = dimensions.joint.explained[i]
        figure = surface.plot_fsaverage5(
            values, title=f"{label}: joint PC {i + 1} ({explained:.1%} of the weights' sum of squares)",
            vmax=scale, cmap=DIVERGING, colorbar_label=f"loading on joint PC {i + 1} (joint voxels)")
        out.append((_save(figure, fig_dir, f"{stem}_pc{i + 1}.png", dpi),
                    (f"Loadings of the joint voxels on joint PC {i + 1} (colour scale: 99th "
                     "percentile of |loading|).")))
    return out, None


def _stimuli_table(described: Mapping[str, Sequence]) -> str:
    """Top and bottom story words and movie moments of one direction, side by side."""
    def words(items):
        return [f"{word} ({score:+.2f})" for word, score in items]

    def moments(items):
        return [f"{movie} @ {seconds:.1f} s ({score:+.2f})" for movie, seconds, score in items]

    columns = [words(described.get("story_top", [])), words(described.get("story_bottom", [])),
               moments(described.get("movie_top", [])), moments(described.get("movie_bottom", []))]
    n = max((len(c) for c in columns), default=0)
    rows = [[str(i + 1)] + [c[i] if i < len(c) else "" for c in columns] for i in range(n)]
    return _table(["rank", "story words, top", "story words, bottom", "movie moments, top",
                   "movie moments, bottom"], rows, labels=5)


def _stimuli_html(dimensions: SharedDimensions) -> list[str]:
    parts = []
    for kind, name in (("shared", "Shared dimension"), ("joint", "Joint PC")):
        for k, described in enumerate(dimensions.top_stimuli.get(kind, [])):
            parts.append(f"<h4>{_e(name)} {k + 1}</h4>")
            parts.append(_stimuli_table(described))
    if parts:
        parts.insert(0, _small("Story words by their mean score over occurrences, movie moments "
                               "(at least 2 s apart) by their score; events' features z-scored "
                               "over the modality, score in brackets."))
    return parts


def dimensions_section(dimensions: SharedDimensions, reference: TransferResult, fig_dir: str | Path,
                       *, dpi: int = 90) -> ReportSection:
    """The section of shared semantic dimensions of one subject and feature space.

    Parameters
    ----------
    dimensions : SharedDimensions
    reference : TransferResult
        A result of the same subject and responses (response space and mask).
    fig_dir : path-like
        The report's figure folder.
    dpi : int

    Returns
    -------
    ReportSection
        Anchor ``dimensions-<subject>-<feature space>``: the voxel selection,
        a table and a figure of the principal angles against their null, the
        RGB map of the joint loadings on PCs 1–3, one map per joint PC, and the
        top and bottom stimuli of each shared dimension and joint PC.
    """
    fig_dir = Path(fig_dir)
    stem = file_slug(f"{dimensions.subject}_{dimensions.feature_space}_dimensions")
    parts = [_small(_selection_text(dimensions)), "<h3>Principal angles</h3>"]
    if len(dimensions.angles):
        parts.append(_angles_table(dimensions))
        path = _save(plot_principal_angles(dimensions), fig_dir, f"{stem}_angles.png", dpi)
        parts.append(figure_html(path, "Principal angles between the story and movie subspaces "
                                       "(points) and their null from block-shuffled responses."))
    else:
        parts.append(_note("No angles: the story or the movie map holds too few voxels."))
    parts.append("<h3>Joint components</h3>")
    maps, note = _dimension_maps(dimensions, reference, fig_dir, dpi)
    if note:
        parts.append(_note(note))
    parts.extend(figure_html(path, caption) for path, caption in maps)
    stimuli = _stimuli_html(dimensions)
    if stimuli:
        parts.append("<h3>Stimuli</h3>")
        parts.extend(stimuli)
    return ReportSection(f"dimensions-{file_slug(dimensions.subject)}-{file_slug(dimensions.feature_space)}",
                         f"Shared dimensions · {dimensions.subject} · {dimensions.feature_space}",
                         "\n".join(parts))


# -- layer sweeps --------------------------------------------------------------------------


def short_layer_names(layers: Sequence[str]) -> tuple[str, list[str]]:
    """The common prefix of layer names (cut after its last ``_``, ``-`` or ``.``) and the rest.

    >>> short_layer_names(["bt_cross1", "bt_cross2", "bt_cross10"])
    ('bt_', ['cross1', 'cross2', 'cross10'])
    """
    prefix = os.path.commonprefix(list(layers)) if len(layers) > 1 else ""
    cut = max(prefix.rfind(c) for c in "_-.") + 1
    prefix = prefix[:cut]
    return prefix, [name[len(prefix):] for name in layers]


def _layer_axis(ax, layers: Sequence[str], label: bool) -> None:
    """Layer names as x ticks; the axis label (with the names' common prefix) if ``label``."""
    prefix, names = short_layer_names(layers)
    ax.set_xticks(np.arange(len(layers)), names, rotation=45 if len(layers) > 6 else 0,
                  ha="right" if len(layers) > 6 else "center", fontsize=7)
    if label:
        ax.set_xlabel(f"layer ({prefix}…)" if prefix else "layer")


def plot_layer_curves(sweep: LayerSweep) -> Figure:
    """Per direction, mean r over all voxels and over the map's voxels, and the map's size.

    Returns
    -------
    matplotlib.figure.Figure
        Four panels (2 × 2, one per direction), each with a second y axis for
        the number of map voxels (grey bars).
    """
    x = np.arange(len(sweep.layers))
    figure = figs.new_figure(10.0, 7.0)
    axes = figure.subplots(2, 2, sharex=True).ravel()
    twins = []
    for index, (ax, direction) in enumerate(zip(axes, DIRECTIONS)):
        counts = ax.twinx()
        twins.append(counts)
        counts.bar(x, sweep.n_map[direction], color="#cccccc", width=0.6, label="voxels in the map")
        counts.set_ylabel("voxels in the map", color="#777777", fontsize=8)
        counts.tick_params(axis="y", labelcolor="#777777", labelsize=7)
        ax.set_zorder(counts.get_zorder() + 1)
        ax.patch.set_visible(False)
        color = figs.DIRECTION_COLORS[direction]
        ax.plot(x, sweep.mean_r_map[direction], "o-", color=color, label="mean r, map voxels")
        ax.plot(x, sweep.mean_r[direction], "s--", color=color, alpha=0.6, label="mean r, all voxels")
        ax.axhline(0.0, color="black", linewidth=0.6)
        ax.set_ylabel("mean r")
        ax.set_title(figs.direction_label(direction), fontsize=10)
        _layer_axis(ax, sweep.layers, label=index >= 2)
    lines, bars = axes[0].get_legend_handles_labels(), twins[0].get_legend_handles_labels()
    figure.legend(lines[0] + bars[0], lines[1] + bars[1], loc="outside lower center", ncols=3,
                  fontsize=8, frameon=False)
    figure.suptitle(f"{sweep.subject}: prediction across layers (map: FDR mask; cross-modal: "
                    "transfer map)", fontsize=11)
    return figure


def _top_rois(sweep: LayerSweep) -> np.ndarray:
    """Indices of the ROIs drawn: all, or the :data:`MAX_ROI_CURVES` with the highest mean r."""
    n = len(sweep.roi_names)
    if n <= MAX_ROI_CURVES:
        return np.arange(n)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # an ROI without any defined r
        score = np.nanmean(np.stack([sweep.roi_mean_r[d] for d in sweep.roi_mean_r]), axis=(0, 2))
    return np.sort(np.argsort(np.nan_to_num(score, nan=-np.inf))[::-1][:MAX_ROI_CURVES])


def plot_roi_layer_curves(sweep: LayerSweep) -> Figure:
    """Per direction, mean r per ROI against layer (at most :data:`MAX_ROI_CURVES` ROIs).

    Returns
    -------
    matplotlib.figure.Figure
        Four panels (2 × 2, one per direction), one line per ROI.
    """
    shown = _top_rois(sweep)
    x = np.arange(len(sweep.layers))
    figure = figs.new_figure(10.0, 7.4)
    axes = figure.subplots(2, 2, sharex=True, sharey=True).ravel()
    for index, (ax, direction) in enumerate(zip(axes, DIRECTIONS)):
        curves = sweep.roi_mean_r.get(direction)
        if curves is None:
            ax.set_axis_off()
            continue
        for i, roi in enumerate(shown):
            ax.plot(x, curves[roi], marker="o", markersize=3, color=f"C{i % 10}",
                    linestyle="-" if i < 10 else "--", label=sweep.roi_names[roi])
        ax.axhline(0.0, color="black", linewidth=0.6)
        ax.set_ylabel("mean r in the ROI")
        ax.set_title(figs.direction_label(direction), fontsize=10)
        _layer_axis(ax, sweep.layers, label=index >= 2)
    figure.legend(*axes[0].get_legend_handles_labels(), loc="outside right center", fontsize=7,
                  frameon=False, title="ROI", title_fontsize=8)
    which = ("" if len(shown) == len(sweep.roi_names)
             else f" ({len(shown)} of {len(sweep.roi_names)} ROIs: highest mean r)")
    figure.suptitle(f"{sweep.subject}: mean r per ROI across layers{which}", fontsize=11)
    return figure


def _layer_colormap(n_layers: int) -> ListedColormap:
    import matplotlib

    return ListedColormap(matplotlib.colormaps["viridis"](np.linspace(0.0, 1.0, n_layers)))


def _best_layer_maps(sweep: LayerSweep, reference: TransferResult, fig_dir: Path,
                     dpi: int) -> tuple[list[tuple[str, str]], str | None]:
    best = np.stack([np.asarray(sweep.best_layer[d], dtype=float) for d in DIRECTIONS])
    _check_voxels(best.shape[1], reference, "the layer sweep")
    projected, note = surface.surface_values(reference, best, "best layers")
    if projected is None:
        return [], note
    projected = np.rint(projected)  # a volume projection interpolates between layer codes
    n = len(sweep.layers)
    prefix, names = short_layer_names(sweep.layers)
    step = max(1, int(np.ceil(n / 16)))  # at most 16 labels on the colour bar
    ticks = np.arange(0, n, step)
    out = []
    for values, direction in zip(projected, DIRECTIONS, strict=True):
        label = figs.direction_label(direction)
        count = int(np.isfinite(sweep.best_layer[direction]).sum())
        figure = surface.plot_fsaverage5(
            values, title=f"{sweep.subject}: best layer, {label}\n({count} voxels in some layer's map)",
            cmap=_layer_colormap(n), symmetric=False, vmin=-0.5, vmax=n - 0.5,
            colorbar_label=f"layer with the largest r ({prefix}…)" if prefix else "layer with the largest r",
            colorbar_ticks=ticks, colorbar_ticklabels=[names[i] for i in ticks], avg_method="min")
        name = f"{file_slug(sweep.subject)}_layers_best_{direction}.png"
        out.append((_save(figure, fig_dir, name, dpi),
                    (f"Best layer per vertex, {label}: the layer with the largest r among those "
                     "whose map holds the vertex; vertices in no layer's map show the background.")))
    return out, None


def _layer_table(sweep: LayerSweep) -> str:
    """Per layer and direction: mean r (all voxels, map voxels) and map size; one header
    cell spans each direction's three columns."""
    groups = "".join(f"<th colspan='3'>{_e(figs.direction_label(d))}</th>" for d in DIRECTIONS)
    columns = "<th>mean r</th><th>mean r (map)</th><th>map voxels</th>" * len(DIRECTIONS)
    rows = []
    for i, layer in enumerate(sweep.layers):
        cells = "".join(f"<td>{format_r(sweep.mean_r[d][i])}</td><td>{format_r(sweep.mean_r_map[d][i])}</td>"
                        f"<td>{int(sweep.n_map[d][i])}</td>" for d in DIRECTIONS)
        rows.append(f"<tr><th class='label'>{_e(layer)}</th>{cells}</tr>")
    return (f"<table><tr><th class='label' rowspan='2'>layer</th>{groups}</tr><tr>{columns}</tr>"
            + "".join(rows) + "</table>")


def layers_section(sweep: LayerSweep, reference: TransferResult, fig_dir: str | Path, *,
                   dpi: int = 90) -> ReportSection:
    """The section of a layer sweep: curves across layers and best-layer maps.

    Parameters
    ----------
    sweep : LayerSweep
    reference : TransferResult
        A result of the same subject and responses (e.g. one layer's).
    fig_dir : path-like
        The report's figure folder.
    dpi : int

    Returns
    -------
    ReportSection
        Anchor ``layers-<subject>``: a table and a figure of mean r (all
        voxels, map voxels) and map sizes per layer and direction, per-ROI
        curves when the sweep has them, and a best-layer map per direction.
    """
    fig_dir = Path(fig_dir)
    stem = file_slug(sweep.subject)
    parts = [_small("Every layer is a feature space analysed through the same plan. Map: a "
                    "direction's FDR mask (cross-modal: its transfer map)."), _layer_table(sweep),
             figure_html(_save(plot_layer_curves(sweep), fig_dir, f"{stem}_layers_curves.png", dpi),
                         "Mean r over the map's voxels (solid) and over all voxels (dashed) per layer; "
                         "grey bars: voxels in the map (right axis).")]
    if sweep.roi_mean_r:
        path = _save(plot_roi_layer_curves(sweep), fig_dir, f"{stem}_layers_roi_curves.png", dpi)
        parts.append(figure_html(path, "Mean r of each ROI's voxels per layer."))
    parts.append("<h3>Best layer per vertex</h3>")
    maps, note = _best_layer_maps(sweep, reference, fig_dir, dpi)
    if note:
        parts.append(_note(note))
    parts.extend(figure_html(path, caption) for path, caption in maps)
    return ReportSection(f"layers-{stem}", f"Layer sweep · {sweep.subject}", "\n".join(parts))


# -- noise ceilings ------------------------------------------------------------------------


def _ceiling_table(ceilings: Mapping[str, NoiseCeiling]) -> str:
    rows = []
    for modality, ceiling in ceilings.items():
        ev = np.asarray(ceiling.ev_corrected, dtype=float)
        finite = np.isfinite(ev)
        top = float(np.percentile(ev[finite], 90)) if finite.any() else float("nan")
        rows.append([modality, ", ".join(ceiling.stimuli), ", ".join(str(n) for n in ceiling.n_repeats),
                     str(sum(ceiling.n_trs)), str(int(finite.sum())), str(int((ev[finite] > 0).sum())),
                     format_r(_median_or_nan(ev)), format_r(top)])
    return _table(["modality", "repeated stimuli", "presentations", "rows", "voxels",
                   "voxels with EV_c > 0", "median EV_c", "90th percentile EV_c"], rows, labels=2)


def _key_direction(key: str) -> tuple[str, str]:
    """``"story_to_movie"`` → ``("", "story_to_movie")``; ``"multimodal: story_to_movie"`` →
    ``("multimodal", "story_to_movie")``."""
    label, _, direction = key.rpartition(": ")
    return label, direction


def _key_label(key: str) -> str:
    label, direction = _key_direction(key)
    return f"{label}: {figs.direction_label(direction)}" if label else figs.direction_label(direction)


def _normalised_table(normalised: Mapping[str, NormalisedCorrelation]) -> str:
    rows = []
    for key, item in normalised.items():
        values = np.asarray(item.values, dtype=float)
        rows.append([_key_label(key), split_direction(_key_direction(key)[1])[1], str(item.n_kept),
                     format_r(_mean_or_nan(values)), format_r(_median_or_nan(values))])
    return _table(["direction", "ceiling of", "voxels kept", "mean r / √EV_c", "median r / √EV_c"], rows,
                  labels=2)


def _ceiling_maps(modality: str, ceiling: NoiseCeiling, normalised: Mapping[str, NormalisedCorrelation],
                  reference: TransferResult, fig_dir: Path, dpi: int) -> tuple[list[tuple[str, str]], str | None]:
    """The EV_c map of one modality and the normalised-r maps of the directions tested on it."""
    keys = [key for key in normalised if split_direction(_key_direction(key)[1])[1] == modality]
    ev = np.asarray(ceiling.ev_corrected, dtype=float)
    _check_voxels(len(ev), reference, f"the {modality} noise ceiling")
    with np.errstate(invalid="ignore"):
        stack = np.stack([np.where(ev > 0, ev, np.nan)]
                         + [np.asarray(normalised[key].values, dtype=float) for key in keys])
    projected, note = surface.surface_values(reference, stack, f"the {modality} noise ceiling")
    if projected is None:
        return [], note
    stem = file_slug(ceiling.subject)
    repeats = "/".join(str(n) for n in ceiling.n_repeats)
    figure = surface.plot_fsaverage5(
        projected[0], title=f"{ceiling.subject}: explainable variance, {modality}\n"
                            f"({len(ceiling.stimuli)} repeated {'stimulus' if len(ceiling.stimuli) == 1 else 'stimuli'}, "
                            f"{repeats} presentations)",
        cmap="viridis", symmetric=False, vmin=0.0, vmax=_robust_max(projected[0], default=1.0),
        colorbar_label="EV_c (fraction of a presentation's variance)")
    out = [(_save(figure, fig_dir, f"{stem}_ceiling_ev_{modality}.png", dpi),
            (f"Bias-corrected explainable variance of the {modality} responses; vertices with "
             "EV_c ≤ 0 show the background."))]
    for values, key in zip(projected[1:], keys, strict=True):
        label, direction = _key_direction(key)
        title_label = f"{ceiling.subject} · {label}" if label else ceiling.subject
        figure = surface.plot_fsaverage5(
            values, title=f"{title_label}: {figs.direction_label(direction)}, ceiling-normalised r\n"
                          f"({normalised[key].n_kept} voxels with a ceiling)",
            vmax=1.0, cmap="cold_hot", colorbar_label="r / √EV_c (share of the noise ceiling)")
        name = file_slug("_".join(filter(None, (ceiling.subject, label, "ceiling_normalised", direction))))
        name += ".png"
        out.append((_save(figure, fig_dir, name, dpi),
                    (f"r / √EV_c, {_key_label(key)} (ceiling of the {modality} responses); values "
                     "beyond ±1 show the end colours; voxels without a ceiling show the background.")))
    return out, None


def ceilings_section(ceilings: Mapping[str, NoiseCeiling], normalised: Mapping[str, NormalisedCorrelation],
                     reference: TransferResult, fig_dir: str | Path, *, dpi: int = 90) -> ReportSection:
    """The section of noise ceilings: explainable variance and ceiling-normalised r.

    Parameters
    ----------
    ceilings : mapping of str to NoiseCeiling
        By modality (``"story"``, ``"movie"``), of one subject.
    normalised : mapping of str to NormalisedCorrelation
        By direction (``"story_to_movie"``), or by ``"<label>: <direction>"``
        for several results (e.g. ``"multimodal: story_to_movie"``): a
        direction's r divided by the ceiling of the modality it is tested on
        (the second part of the direction's name), e.g.
        ``ceilings["movie"].normalise(result.r["story_to_movie"])``.
    reference : TransferResult
        A result of the same subject and responses (response space and mask).
    fig_dir : path-like
        The report's figure folder.
    dpi : int

    Returns
    -------
    ReportSection
        Anchor ``ceilings-<subject>``: a table per modality (stimuli,
        presentations, median EV_c), a table per direction (voxels kept,
        mean and median normalised r), and per modality the EV_c map and the
        normalised-r maps of the directions tested on it.

    Raises
    ------
    ValueError
        No ceiling, or a key of ``normalised`` that does not end with a
        direction tested on a modality of ``ceilings``.
    """
    if not ceilings:
        raise ValueError("ceilings_section needs at least one noise ceiling")
    fig_dir = Path(fig_dir)
    unknown = [key for key in normalised if _key_direction(key)[1] not in DIRECTIONS
               or split_direction(_key_direction(key)[1])[1] not in ceilings]
    if unknown:
        raise ValueError(f"normalised correlations {unknown} are not keyed by a direction (or "
                         f"'<label>: <direction>') tested on a modality of the ceilings ({sorted(ceilings)})")
    subject = next(iter(ceilings.values())).subject
    parts = [_small("EV_c: the bias-corrected explainable variance from repeated presentations, "
                    "the share of one presentation's variance the stimulus explains; √EV_c is the "
                    "r a perfect model reaches (docs/noise_ceilings.md). Normalised r: r / √EV_c "
                    "where EV_c is above the threshold the analysis used."),
             _ceiling_table(ceilings)]
    if normalised:
        parts.append(_normalised_table(normalised))
    for modality, ceiling in ceilings.items():
        parts.append(f"<h3>{_e(modality.capitalize())} responses</h3>")
        maps, note = _ceiling_maps(modality, ceiling, normalised, reference, fig_dir, dpi)
        if note:
            parts.append(_note(note))
        parts.extend(figure_html(path, caption) for path, caption in maps)
    return ReportSection(f"ceilings-{file_slug(subject)}", f"Noise ceilings · {subject}", "\n".join(parts))


# -- variance partitioning -----------------------------------------------------------------


def _partition_parts(partition: PartitionResult) -> list[tuple[str, str, np.ndarray]]:
    """(key, label, values) of the maps: unique A, unique B, shared, joint."""
    a, b = partition.spaces
    return [("unique_a", f"unique to {a}", np.asarray(partition.unique_a, dtype=float)),
            ("unique_b", f"unique to {b}", np.asarray(partition.unique_b, dtype=float)),
            ("shared", "shared", np.asarray(partition.shared, dtype=float)),
            ("r2_joint", f"joint model ({a} + {b})", np.asarray(partition.r2_joint, dtype=float))]


def _predicted(partition: PartitionResult) -> np.ndarray:
    with np.errstate(invalid="ignore"):
        return np.asarray(partition.r2_joint, dtype=float) > 0


def plot_partition_summary(partition: PartitionResult) -> Figure:
    """Mean of each part over the voxels the joint model predicts (R² > 0), and their spread.

    Returns
    -------
    matplotlib.figure.Figure
        Two axes: mean (± s.e.m.) of unique A, unique B, shared and joint
        R²; histograms of the first three.
    """
    keep = _predicted(partition)
    parts = _partition_parts(partition)
    colors = [A_COLOR, B_COLOR, "#7b3294", "#444444"]
    figure = figs.new_figure(10.0, 4.2)
    bars, hist = figure.subplots(1, 2)
    for i, ((_, label, values), color) in enumerate(zip(parts, colors)):
        chosen = values[keep & np.isfinite(values)]
        mean = chosen.mean() if chosen.size else np.nan
        sem = chosen.std(ddof=1) / np.sqrt(chosen.size) if chosen.size > 1 else 0.0
        bars.bar(i, np.nan_to_num(mean), yerr=sem, color=color, capsize=3)
        bars.text(i, np.nan_to_num(mean), f"{mean:.3f}\n", ha="center", va="bottom", fontsize=8)
    bars.set_xticks(range(len(parts)), [label for _, label, _ in parts], fontsize=8, rotation=15)
    bars.axhline(0.0, color="black", linewidth=0.6)
    bars.margins(y=0.2)
    bars.set_ylabel("mean held-out R² (± s.e.m.)")
    chosen = [values[keep & np.isfinite(values)] for _, _, values in parts[:3]]
    pooled = np.concatenate(chosen) if any(c.size for c in chosen) else np.array([-0.1, 0.1])
    edges = np.linspace(np.percentile(pooled, 0.5), np.percentile(pooled, 99.5) + 1e-9, 50)
    for values, (_, label, _), color in zip(chosen, parts[:3], colors):
        hist.hist(values, bins=edges, histtype="step", color=color, linewidth=1.4, label=label)
    hist.axvline(0.0, color="black", linewidth=0.6)
    hist.set_xlabel("held-out R² (0.5th–99.5th percentile shown)")
    hist.set_ylabel("voxels")
    hist.legend(fontsize=8, frameon=False, loc="upper left", bbox_to_anchor=(1.02, 1.0))
    figure.suptitle(f"{partition.subject} · {partition.modality}: variance partition over the "
                    f"{int(keep.sum())} voxels with joint R² > 0", fontsize=11)
    return figure


def _partition_maps(partition: PartitionResult, stem: str, fig_dir: Path,
                    dpi: int) -> tuple[list[tuple[str, str]], str | None]:
    keep = _predicted(partition)
    parts = _partition_parts(partition)
    stack = np.stack([np.where(keep, values, np.nan) for _, _, values in parts])
    projected, note = surface.surface_values(partition, stack, "the variance partition")
    if projected is None:
        return [], note
    vmax = _robust_max(projected)  # one scale, so that the parts compare
    out = []
    for values, (key, label, _) in zip(projected, parts, strict=True):
        figure = surface.plot_fsaverage5(
            values, title=f"{partition.subject} · {partition.modality}: {label}", vmax=vmax,
            cmap=DIVERGING, colorbar_label="held-out R² (voxels with joint R² > 0)")
        out.append((_save(figure, fig_dir, f"{stem}_{key}.png", dpi),
                    (f"{label.capitalize()}: held-out R² on the {partition.modality} runs, where the "
                     "joint model predicts (R² > 0); others show the background.")))
    return out, None


def partition_section(partition: PartitionResult, fig_dir: str | Path, *, dpi: int = 90) -> ReportSection:
    """The section of a variance partition of two feature spaces.

    Parameters
    ----------
    partition : PartitionResult
        Its ``space`` and ``mask_path`` place the maps.
    fig_dir : path-like
        The report's figure folder.
    dpi : int

    Returns
    -------
    ReportSection
        Anchor ``partition-<subject>-<modality>-<A>-<B>``: a table of mean
        R² per part, a summary figure and maps of unique A, unique B, shared
        and joint R².
    """
    fig_dir = Path(fig_dir)
    a, b = partition.spaces
    stem = file_slug(f"{partition.subject}_partition_{partition.modality}_{a}_{b}")
    keep = _predicted(partition)
    rows = [[label, format_r(_mean_or_nan(values[keep])), format_r(_median_or_nan(values[keep])),
             format_r(_mean_or_nan(values))] for _, label, values in _partition_parts(partition)]
    parts = [_small(f"Held-out R² of the {partition.modality} runs: joint banded ridge of {a} and {b}, "
                    f"and each space alone. unique to {a} = R²(joint) − R²({b}); unique to {b} = "
                    f"R²(joint) − R²({a}); shared = R²({a}) + R²({b}) − R²(joint) "
                    "(docs/variance_partitioning.md)."),
             _table(["part", f"mean, joint R² > 0 ({int(keep.sum())} voxels)", "median, joint R² > 0",
                     "mean, all voxels"], rows),
             figure_html(_save(plot_partition_summary(partition), fig_dir, f"{stem}_summary.png", dpi),
                         "Mean of each part over the voxels with joint R² > 0, and their distributions "
                         "(values beyond the 0.5th–99.5th percentiles counted in the end bins).")]
    maps, note = _partition_maps(partition, stem, fig_dir, dpi)
    if note:
        parts.append(_note(note))
    parts.extend(figure_html(path, caption) for path, caption in maps)
    return ReportSection(stem.replace("_", "-"), f"Variance partition · {partition.subject} · "
                         f"{partition.modality} · {a} and {b}", "\n".join(parts))


# -- regions of interest -------------------------------------------------------------------


def rois_section(rows_by_label: Mapping[str, Sequence[RoiRow]], anchor: str = "rois") -> ReportSection:
    """The section of ROI tables, one per result.

    Parameters
    ----------
    rows_by_label : mapping of str to sequence of RoiRow
        By result label (e.g. ``"sub01 · multimodal"``), the rows of
        :func:`brainenc.analyses.rois.roi_table`.
    anchor : str

    Returns
    -------
    ReportSection
    """
    from brainenc.analyses.rois import roi_table_html

    parts = [_small("Per ROI and direction, the scores of its voxels; the FDR masks are those of "
                    "the whole analysis. transfer map: the share of the ROI's voxels in a "
                    "cross-modal direction's transfer map.")]
    for label, rows in rows_by_label.items():
        parts.append(f"<h3>{_e(label)}</h3>")
        parts.append(roi_table_html(rows))
    return ReportSection(anchor, "Regions of interest", "\n".join(parts))

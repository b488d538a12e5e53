"""Summary figures of a transfer analysis: score distributions and direction comparisons."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from scipy import stats as _scipy_stats

from brainenc.io.atomic import atomic_path
from brainenc.results import (
    CROSS,
    DIRECTIONS,
    DirectionSummary,
    TransferResult,
    direction_label,
)
from brainenc.stats import summarize_direction

#: Significance categories of the two cross-modal directions, with their colours
#: (the corners of :func:`brainenc.plotting.surface.bivariate_colors`).
TRANSFER_CATEGORIES: tuple[tuple[str, str], ...] = (
    ("neither", "#b8b8b0"),
    ("story → movie only", "#e64d0d"),
    ("movie → story only", "#1a73e6"),
    ("both", "#730d80"),
)
DIRECTION_COLORS: dict[str, str] = {
    "story_to_story": "#2a9d8f",
    "movie_to_movie": "#8a5a00",
    "story_to_movie": "#e64d0d",
    "movie_to_story": "#1a73e6",
}


def result_label(result: TransferResult) -> str:
    """``"<subject> · <feature space>"``, with ``" (unaligned baseline)"`` after an
    unaligned feature space (:attr:`TransferResult.feature_space_label`)."""
    return f"{result.subject} · {result.feature_space_label}"


def new_figure(width: float, height: float) -> Figure:
    """A figure of ``width`` × ``height`` inches with constrained layout and an Agg canvas
    (independent of pyplot)."""
    figure = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def save_figure(figure: Figure, path: str | Path, dpi: int = 90) -> Path:
    """Write ``figure`` as PNG atomically (a temporary file renamed onto ``path``)."""
    path = Path(path)
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png", dpi=dpi)
    return path


def direction_summaries(result: TransferResult) -> dict[str, DirectionSummary]:
    """The summary of each direction: the stored one, or one computed from the arrays.

    A computed summary takes its FDR level from ``result.settings["fdr_q"]``
    (NaN when absent).
    """
    stored = {s.direction: s for s in result.summaries}
    q = float(result.settings.get("fdr_q", np.nan))
    return {
        d: stored[d] if d in stored else summarize_direction(d, result.r[d], result.significant[d], q)
        for d in result.directions
    }


def map_summaries(result: TransferResult) -> dict[str, DirectionSummary]:
    """The summary of what each direction's map shows: the transfer map of a cross-modal
    direction (when tested, :meth:`TransferResult.map_significant`), else as
    :func:`direction_summaries`."""
    summaries = direction_summaries(result)
    summaries.update({s.direction: s for s in result.transfer_summaries})
    return summaries


def transfer_category(result: TransferResult) -> np.ndarray:
    """Index into :data:`TRANSFER_CATEGORIES` per voxel, from the transfer maps of the two
    cross-modal directions (their FDR masks for a result without transfer maps).

    0 neither, 1 story→movie only, 2 movie→story only, 3 both.
    """
    s2m = result.map_significant("story_to_movie")
    m2s = result.map_significant("movie_to_story")
    return s2m.astype(int) + 2 * m2s.astype(int)


def plot_histograms(result: TransferResult, bins: int = 60) -> Figure:
    """Distribution of r in each direction, significant voxels highlighted (for a
    cross-modal direction, those of its transfer map).

    Returns
    -------
    matplotlib.figure.Figure
        One axes per direction of the result (2 × 2 for the four directions), in
        the order of :data:`brainenc.results.DIRECTIONS`.
    """
    directions = result.directions
    finite = [np.asarray(result.r[d], float) for d in directions]
    finite = [r[np.isfinite(r)] for r in finite]
    pooled = np.concatenate(finite) if any(r.size for r in finite) else np.array([-1.0, 1.0])
    low, high = float(pooled.min()), float(pooled.max())
    if low == high:
        low, high = low - 0.5, high + 0.5
    edges = np.linspace(low, high, bins + 1)

    if len(directions) == 4:
        figure = new_figure(9.0, 6.0)
        axes = figure.subplots(2, 2, sharex=True).ravel()
    else:
        figure = new_figure(4.8 * len(directions), 3.4)
        axes = np.atleast_1d(figure.subplots(1, len(directions), sharex=True))
    for ax, direction in zip(axes, directions):
        r = np.asarray(result.r[direction], float)
        significant = result.map_significant(direction) & np.isfinite(r)
        defined = np.isfinite(r)
        which = ("transfer significant" if direction in result.transfer_significant
                 else "FDR significant")
        ax.hist(r[defined], bins=edges, color="#c8c8c8", label="all voxels")
        n_defined = int(defined.sum())
        if result.tested:
            ax.hist(r[significant], bins=edges, color=DIRECTION_COLORS[direction], label=which)
            share = significant.sum() / n_defined if n_defined else float("nan")
            title = f"{significant.sum()} of {n_defined} {which} ({share:.1%})"
        else:
            title = f"{n_defined} voxels, significance not tested"
        ax.axvline(0.0, color="black", linewidth=0.8)
        ax.set_title(f"{direction_label(direction)}: {title}", fontsize=10)
        # a log scale keeps the few significant voxels of a large map visible
        ax.set_yscale("log")
        ax.set_ylabel("voxels (log scale)")
    for ax in axes[-2:] if len(directions) == 4 else axes:
        ax.set_xlabel("prediction correlation r")
    # one legend below the panels, never over the data
    handles, labels = axes[0].get_legend_handles_labels()
    if len(labels) == 2:
        labels[1] = f"{labels[1]} (in each direction's colour)"
    figure.legend(handles, labels, loc="outside lower center", ncols=2, fontsize=8, frameon=False)
    figure.suptitle(result_label(result))
    return figure


def _identity_and_zero_lines(ax, low: float, high: float) -> None:
    ax.plot([low, high], [low, high], color="black", linewidth=0.8, linestyle="--")
    ax.axhline(0.0, color="grey", linewidth=0.6)
    ax.axvline(0.0, color="grey", linewidth=0.6)
    ax.set_xlim(low, high)
    ax.set_ylim(low, high)
    ax.set_aspect("equal")


def _limits(*arrays: np.ndarray) -> tuple[float, float]:
    values = np.concatenate([a[np.isfinite(a)] for a in arrays])
    if not values.size:
        return -1.0, 1.0
    low, high = float(values.min()), float(values.max())
    pad = 0.05 * (high - low or 1.0)
    return low - pad, high + pad


def _scatter_by_category(ax, x, y, category) -> None:
    for code, (name, color) in enumerate(TRANSFER_CATEGORIES):
        chosen = (category == code) & np.isfinite(x) & np.isfinite(y)
        ax.scatter(x[chosen], y[chosen], s=4 if code else 2, color=color, alpha=0.6 if code else 0.35,
                   linewidths=0, rasterized=True, label=f"{name} ({int(chosen.sum())})")


def plot_transfer_scatter(result: TransferResult) -> Figure:
    """story→movie r against movie→story r per voxel, coloured by which transfer map holds it.

    Returns
    -------
    matplotlib.figure.Figure
        One axes; categories as in :data:`TRANSFER_CATEGORIES`, with voxel counts in the legend.
    """
    x = np.asarray(result.r["story_to_movie"], float)
    y = np.asarray(result.r["movie_to_story"], float)
    figure = new_figure(7.4, 5.4)
    ax = figure.subplots()
    _scatter_by_category(ax, x, y, transfer_category(result))
    _identity_and_zero_lines(ax, *_limits(x, y))
    ax.set_xlabel("story → movie r (model trained on stories)")
    ax.set_ylabel("movie → story r (model trained on movies)")
    ax.legend(fontsize=8, markerscale=3, loc="upper left", bbox_to_anchor=(1.02, 1.0),
              title="transfer significant", title_fontsize=8, frameon=False)
    ax.set_title(f"Cross-modal transfer: {result_label(result)}", fontsize=10)
    return figure


def plot_within_vs_cross(result: TransferResult) -> Figure:
    """Within-modality r against cross-modal r of the same trained model.

    Left: the story model on stories vs on movies; right: the movie model on
    movies vs on stories. Points are coloured by the cross-direction categories.

    Returns
    -------
    matplotlib.figure.Figure
        Two axes.
    """
    category = transfer_category(result)
    figure = new_figure(10.0, 5.0)
    axes = figure.subplots(1, 2)
    for ax, (within, cross) in zip(axes, (("story_to_story", "story_to_movie"),
                                          ("movie_to_movie", "movie_to_story"))):
        x = np.asarray(result.r[within], float)
        y = np.asarray(result.r[cross], float)
        _scatter_by_category(ax, x, y, category)
        _identity_and_zero_lines(ax, *_limits(x, y))
        ax.set_xlabel(f"{direction_label(within)} r (within modality)")
        ax.set_ylabel(f"{direction_label(cross)} r (cross-modal)")
    figure.legend(*axes[0].get_legend_handles_labels(), loc="outside lower center", ncols=4,
                  fontsize=7, markerscale=3, title="transfer significant", title_fontsize=7,
                  frameon=False)
    figure.suptitle(f"Within-modality vs cross-modal prediction: {result_label(result)}")
    return figure


# -- ground-truth categories -------------------------------------------------------------


def category_scores(
    result: TransferResult, labels: np.ndarray, n_categories: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean r per ground-truth category and direction, and how well r separates each category.

    Parameters
    ----------
    result : TransferResult
    labels : ndarray of int, shape (n_voxels,)
        Category code per voxel, in ``0 .. n_categories - 1``.
    n_categories : int

    Returns
    -------
    mean_r : ndarray of shape (n_directions, n_categories)
        Mean of the defined r of the category's voxels (NaN if none).
    sem_r : ndarray of shape (n_directions, n_categories)
        Standard error of that mean.
    auc : ndarray of shape (n_directions, n_categories)
        Area under the ROC curve of r as a score for "voxel belongs to the
        category" against all other voxels (0.5 = chance; NaN when either
        side is empty), by the Mann–Whitney rank formula.
    """
    labels = np.asarray(labels)
    shape = (len(result.directions), n_categories)
    mean_r, sem_r, auc = np.full(shape, np.nan), np.full(shape, np.nan), np.full(shape, np.nan)
    for i, direction in enumerate(result.directions):
        r = np.asarray(result.r[direction], float)
        defined = np.isfinite(r)
        ranks = _scipy_stats.rankdata(r[defined])
        codes = labels[defined]
        for c in range(n_categories):
            inside = codes == c
            n_in, n_out = int(inside.sum()), int((~inside).sum())
            if n_in:
                values = r[defined][inside]
                mean_r[i, c] = values.mean()
                sem_r[i, c] = values.std(ddof=1) / np.sqrt(n_in) if n_in > 1 else 0.0
            if n_in and n_out:
                auc[i, c] = (ranks[inside].sum() - n_in * (n_in + 1) / 2) / (n_in * n_out)
    return mean_r, sem_r, auc


def plot_ground_truth_summary(
    result: TransferResult, labels: np.ndarray, names: Sequence[str]
) -> Figure:
    """Mean r of each ground-truth category in each direction (bars with standard errors).

    Returns
    -------
    matplotlib.figure.Figure
        One axes: one group of four bars (the directions) per category.
    """
    mean_r, sem_r, _ = category_scores(result, labels, len(names))
    figure = new_figure(max(6.0, 1.6 * len(names) + 2.0), 4.2)
    ax = figure.subplots()
    directions = result.directions
    width = 0.8 / len(directions)
    positions = np.arange(len(names))
    for i, direction in enumerate(directions):
        ax.bar(positions + (i - (len(directions) - 1) / 2) * width, np.nan_to_num(mean_r[i]), width,
               yerr=np.nan_to_num(sem_r[i]), color=DIRECTION_COLORS[direction],
               label=direction_label(direction), capsize=2)
    ax.axhline(0.0, color="black", linewidth=0.8)
    ax.set_xticks(positions, list(names))
    ax.set_ylabel("mean r")
    ax.set_xlabel("ground-truth category")
    figure.legend(*ax.get_legend_handles_labels(), loc="outside right upper", fontsize=8,
                  frameon=False)
    ax.set_title(f"Prediction by ground-truth category: {result_label(result)}", fontsize=10)
    return figure


# -- across feature spaces ----------------------------------------------------------------


def _empty_reason(summary: DirectionSummary | None) -> str:
    """Why a direction's bar is empty: not scored, not tested, or no significant voxel."""
    if summary is None:
        return "not scored"
    if summary.n_significant is None:
        return "not tested"
    return "none significant"


def _empty_bar_label(ax, x: float, text: str) -> None:
    """Write ``text`` upright where a bar would be, so that an empty bar reads as such."""
    ax.annotate(text, (x, 0.0), xytext=(0, 3), textcoords="offset points", rotation=90,
                ha="center", va="bottom", fontsize=7, color="#555555")


def plot_feature_space_comparison(results: Sequence[TransferResult]) -> Figure:
    """Fraction of significant voxels and mean r per direction, one bar per result
    (for the cross-modal directions, of their transfer maps).

    Returns
    -------
    matplotlib.figure.Figure
        Two axes: fraction significant, and mean r of the significant voxels.
    """
    figure = new_figure(10.0, 4.2)
    axes = figure.subplots(1, 2)
    width = 0.8 / len(results)
    directions = [d for d in DIRECTIONS if any(d in result.r for result in results)]
    positions = np.arange(len(directions))
    colors = [f"C{i}" for i in range(len(results))]
    for k, (result, color) in enumerate(zip(results, colors)):
        summaries = map_summaries(result)
        offset = (k - (len(results) - 1) / 2) * width
        for ax, key in zip(axes, ("fraction_significant", "mean_r_significant")):
            values = [getattr(summaries[d], key) if d in summaries else np.nan for d in directions]
            ax.bar(positions + offset, np.nan_to_num(values), width, color=color,
                   label=result_label(result) if key == "fraction_significant" else None)
            for x, d, value in zip(positions + offset, directions, values):
                if not np.isfinite(value) or (key == "fraction_significant" and value == 0):
                    _empty_bar_label(ax, x, _empty_reason(summaries.get(d)))
    for ax, ylabel in zip(axes, ("fraction of voxels significant", "mean r of significant voxels")):
        ax.set_xticks(positions, [direction_label(d) for d in directions], fontsize=8)
        ax.set_ylabel(ylabel)
        ax.axhline(0.0, color="black", linewidth=0.6)
        for index, direction in enumerate(directions):
            if direction in CROSS:
                ax.axvspan(index - 0.45, index + 0.45, color="#f3efe0", zorder=0)
    figure.legend(*axes[0].get_legend_handles_labels(), loc="outside lower center",
                  ncols=min(len(results), 4), fontsize=8, frameon=False)
    figure.suptitle("Feature spaces compared (shaded: cross-modal directions)")
    return figure

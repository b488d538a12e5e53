"""An HTML report of one or more transfer analyses, with its figures as PNG files beside it.

Layout written into ``out_dir``::

    report.html
    figures/<subject>_<feature space>_r_<direction>.png   cortical maps (surface spaces)
    figures/<subject>_<feature space>_transfer2d.png       2-D map of the two cross directions
    figures/<subject>_<feature space>_histograms.png
    figures/<subject>_<feature space>_scatter.png
    figures/<subject>_<feature space>_within_vs_cross.png
    figures/<subject>_<feature space>_ground_truth.png     with a ground truth
    figures/comparison.png                                  with several results

Sections of further analyses (:class:`ReportSection`, made by
:mod:`brainenc.plotting.analyses`, which writes their figures into the same
``figures`` folder) follow the results. The HTML refers to the figures by
relative paths, so the folder can be moved as a whole. Every file is written
to a temporary name and renamed.
"""
from __future__ import annotations

import html
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from brainenc.errors import BrainencInputError
from brainenc.io.atomic import write_text_atomic
from brainenc.plotting import figures as figs
from brainenc.plotting import surface
from brainenc.plotting.interactive import write_surface_viewer
from brainenc.results import (
    CROSS,
    DIRECTIONS,
    TransferResult,
    format_fraction,
    format_r,
    split_direction,
)

FIGURE_DIR = "figures"


@dataclass(frozen=True)
class ReportSection:
    """A section added to the report after its results (e.g. one analysis's tables and figures).

    Attributes
    ----------
    anchor : str
        The section's HTML id, linked from the table of contents; unique in the report.
    title : str
        Its heading (plain text).
    html : str
        Its content: an HTML fragment whose images refer to files under the
        report's ``figures`` folder as ``figures/<name>``.
    """

    anchor: str
    title: str
    html: str


@dataclass
class _Section:
    """What the HTML shows for one result."""

    result: TransferResult
    maps: list[tuple[str, str]] = field(default_factory=list)  # (relative path, caption)
    map_note: str | None = None
    flat_maps: list[tuple[str, str]] = field(default_factory=list)
    viewers: list[tuple[str, str]] = field(default_factory=list)  # (relative path, label)
    plots: list[tuple[str, str]] = field(default_factory=list)
    ground_truth_table: str | None = None
    ground_truth_note: str | None = None


# -- formatting ---------------------------------------------------------------------------


def file_slug(text: str) -> str:
    """``text`` as a file-name part: runs of other characters than letters, digits, ``._-``
    become ``-``."""
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-") or "result"


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


# -- ground truth ------------------------------------------------------------------------


def _ground_truth_labels(ground_truth: Any) -> tuple[np.ndarray, list[str]]:
    """Labels and names from a mapping ``{"labels", "names"}`` or an object with
    ``category`` and ``category_names`` (a simulated subject's ground truth)."""
    if isinstance(ground_truth, Mapping):
        if "labels" not in ground_truth or "names" not in ground_truth:
            raise BrainencInputError(None, "a ground truth mapping needs the keys 'labels' and 'names'")
        labels, names = ground_truth["labels"], ground_truth["names"]
    elif hasattr(ground_truth, "category") and hasattr(ground_truth, "category_names"):
        labels, names = ground_truth.category, ground_truth.category_names
    else:
        raise BrainencInputError(
            getattr(ground_truth, "path", None),
            "ground truth must be a mapping with 'labels' and 'names', or have "
            "'category' and 'category_names'",
        )
    labels = np.asarray(labels)
    names = [str(n) for n in names]
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise BrainencInputError(None, f"ground-truth labels must be a 1-D integer array, got {labels.dtype} {labels.shape}")
    if labels.size and (labels.min() < 0 or labels.max() >= len(names)):
        raise BrainencInputError(None, f"ground-truth labels must lie in 0..{len(names) - 1}")
    return labels, names


# -- figures -----------------------------------------------------------------------------


def _surface_inputs(result: TransferResult) -> tuple[dict[str, np.ndarray] | None, str | None]:
    """Per-vertex arrays for the maps: r where significant per direction (for a cross-modal
    direction, in its transfer map), and the two cross r (NaN where neither transfer map
    holds the vertex); every r of a result not tested for significance; or why there are
    none."""
    directions = result.directions
    if result.tested:
        significant = {d: result.map_significant(d) for d in directions}
    else:
        significant = {d: np.ones(result.n_voxels, dtype=bool) for d in directions}
    per_voxel = {d: np.where(significant[d], result.r[d], np.nan) for d in directions}
    if result.cross_modal:
        either_cross = significant["story_to_movie"] | significant["movie_to_story"]
        per_voxel["x"] = np.where(either_cross, result.r["story_to_movie"], np.nan)
        per_voxel["y"] = np.where(either_cross, result.r["movie_to_story"], np.nan)
    keys = list(per_voxel)
    projected, note = surface.surface_values(result, np.stack([per_voxel[k] for k in keys]),
                                             f"the maps of {figs.result_label(result)}")
    return (None, note) if projected is None else (dict(zip(keys, projected)), None)


def _map_figures(result: TransferResult, fig_dir: Path, slug: str, dpi: int, section: _Section,
                 interactive: bool = True) -> None:
    inputs, note = _surface_inputs(result)
    section.map_note = note
    if inputs is None:
        _pycortex_figures(result, fig_dir, slug, dpi, section)
        return
    summaries = figs.map_summaries(result)
    directions = result.directions
    significant_values = np.concatenate([np.abs(inputs[d][np.isfinite(inputs[d])]) for d in directions])
    # One colour scale for every direction, so that their maps compare.
    vmax = float(np.percentile(significant_values, 99)) if significant_values.size else 0.1
    vmax = vmax if vmax > 0 else 0.1
    q = summaries[directions[0]].fdr_q
    for direction in directions:
        s = summaries[direction]
        transfer = result.tested and direction in result.transfer_significant
        if not result.tested:
            counted = "not tested for significance"
        else:
            counted = f"{s.n_significant} {'transfer ' if transfer else ''}significant, FDR q = {q:g}"
        title = f"{figs.result_label(result)}: {figs.direction_label(direction)} ({counted})"
        figure = surface.plot_fsaverage5(
            inputs[direction], title=title, vmax=vmax,
            colorbar_label="r (significant vertices)" if result.tested else "r (all vertices)")
        name = f"{slug}_r_{direction}.png"
        figs.save_figure(figure, fig_dir / name, dpi=dpi)
        train = split_direction(direction)[0]
        if not result.tested:
            caption = (f"r, {figs.direction_label(direction)}, every vertex: significance was not "
                       "tested (--no-significance)")
        elif transfer:
            caption = (f"r, {figs.direction_label(direction)}, transfer map: vertices where the "
                       f"{train} model predicts held-out {train} runs, its predictions correlate with "
                       "the other modality, and they do so through the pairing of story and movie "
                       "features (FDR); others show the sulcal background")
        else:
            caption = (f"r, {figs.direction_label(direction)}; vertices not significant after FDR "
                       "show the sulcal background")
        section.maps.append((f"{FIGURE_DIR}/{name}", caption))
        flat_name = f"{slug}_r_{direction}_flat.png"
        figs.save_figure(surface.plot_fsaverage5(inputs[direction], title=title, vmax=vmax, flat=True,
                                                 colorbar_label="r"), fig_dir / flat_name, dpi=dpi)
        section.flat_maps.append((f"{FIGURE_DIR}/{flat_name}",
                                  f"{figs.direction_label(direction)}, on nilearn's flattened "
                                  "fsaverage5 (the medial wall is cut out)"))
        if interactive and np.isfinite(inputs[direction]).any():  # an empty map needs no viewer
            viewer = f"{slug}_viewer_{direction}.html"
            write_surface_viewer(inputs[direction], fig_dir / viewer, title, vmax)
            section.viewers.append((f"{FIGURE_DIR}/{viewer}", figs.direction_label(direction)))
    if not result.cross_modal:
        return
    figure = surface.plot_fsaverage5_2d(
        inputs["x"], inputs["y"],
        title=f"{figs.result_label(result)}: cross-modal transfer in both directions",
    )
    name = f"{slug}_transfer2d.png"
    figs.save_figure(figure, fig_dir / name, dpi=dpi)
    section.maps.append((f"{FIGURE_DIR}/{name}", "story → movie r and movie → story r through a "
                         "2-D colour map; " + ("vertices in neither transfer map show the background"
                                               if result.tested else "every vertex (not tested)")))


def _map_title_and_caption(result: TransferResult, direction: str) -> tuple[str, str]:
    summary = figs.map_summaries(result)[direction]
    transfer = result.tested and direction in result.transfer_significant
    label = figs.direction_label(direction)
    if not result.tested:
        return (f"{figs.result_label(result)}: {label} (not tested for significance)",
                f"r, {label}, every voxel: significance was not tested (--no-significance)")
    counted = (f"{summary.n_significant} {'transfer ' if transfer else ''}significant, "
               f"FDR q = {summary.fdr_q:g}")
    kind = "transfer map" if transfer else "FDR-significant voxels"
    return (f"{figs.result_label(result)}: {label} ({counted})",
            f"r, {label}, {kind}; other voxels show the cortex's curvature")


def _pycortex_figures(result: TransferResult, fig_dir: Path, slug: str, dpi: int,
                      section: _Section) -> None:
    """Flatmaps of the subject's own cortex when its pycortex database is in the dataset."""
    import matplotlib.pyplot as plt

    from brainenc.plotting import pycortex_maps

    subject = pycortex_maps.huth_pycortex_subject(result)
    if subject is None:
        return
    if not pycortex_maps.pycortex_available():
        section.map_note = (f"The dataset holds the pycortex database of {result.subject} "
                            f"({subject.filestore}); install pycortex for flatmaps of the subject's "
                            "cortex: pip install 'brainenc[pycortex]'.")
        return
    section.map_note = None
    shown = {d: np.where(result.map_significant(d) if result.tested else True, result.r[d], np.nan)
             for d in result.directions}
    finite = np.concatenate([np.abs(v[np.isfinite(v)]) for v in shown.values()])
    vmax = float(np.percentile(finite, 99)) if finite.size else 0.1
    store = pycortex_maps.shadow_filestore(subject)
    for direction in result.directions:
        title, caption = _map_title_and_caption(result, direction)
        figure = pycortex_maps.plot_pycortex_flatmap(shown[direction], subject, title,
                                                     vmax=vmax or 0.1, filestore=store)
        name = f"{slug}_r_{direction}_pycortex.png"
        figs.save_figure(figure, fig_dir / name, dpi=dpi)
        plt.close(figure)  # pycortex makes its figures through pyplot
        section.maps.append((f"{FIGURE_DIR}/{name}", caption + f" (pycortex flatmap of "
                             f"{subject.subject}, transform {subject.transform})"))


def _plots(result: TransferResult, fig_dir: Path, slug: str, dpi: int, section: _Section) -> None:
    plots = [("histograms", figs.plot_histograms,
              "Distribution of r per direction; significant voxels in colour.")]
    if result.cross_modal:
        plots += [("scatter", figs.plot_transfer_scatter,
                   "story → movie r against movie → story r, by significance."),
                  ("within_vs_cross", figs.plot_within_vs_cross,
                   "Within-modality against cross-modal r for each trained model.")]
    for suffix, make, caption in plots:
        name = f"{slug}_{suffix}.png"
        figs.save_figure(make(result), fig_dir / name, dpi=dpi)
        section.plots.append((f"{FIGURE_DIR}/{name}", caption))


def _ground_truth_part(result, labels, names, fig_dir, slug, dpi, section) -> None:
    if labels.shape != (result.n_voxels,):
        section.ground_truth_note = (f"Ground truth skipped: it labels {labels.size} vertices, "
                                     f"the result has {result.n_voxels} voxels.")
        return
    name = f"{slug}_ground_truth.png"
    figs.save_figure(figs.plot_ground_truth_summary(result, labels, names), fig_dir / name, dpi=dpi)
    section.plots.append((f"{FIGURE_DIR}/{name}", "Mean r (± s.e.m.) per ground-truth category."))
    mean_r, _, auc = figs.category_scores(result, labels, len(names))
    counts = np.bincount(labels, minlength=len(names))
    header = "".join(f"<th>{_e(figs.direction_label(d))}<br>mean r</th><th>AUC</th>"
                     for d in result.directions)
    rows = []
    for c, label in enumerate(names):
        cells = "".join(f"<td>{format_r(mean_r[i, c])}</td><td>{format_r(auc[i, c])}</td>"
                        for i in range(len(result.directions)))
        rows.append(f"<tr><th>{_e(label)}</th><td>{counts[c]}</td>{cells}</tr>")
    section.ground_truth_table = (
        "<table><tr><th>category</th><th>voxels</th>" + header + "</tr>" + "".join(rows) + "</table>"
        "<p class='note'>AUC: area under the ROC curve of r for telling the category's voxels "
        "from all others (0.5 = chance).</p>"
    )


# -- HTML --------------------------------------------------------------------------------

_CSS = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1150px; color: #222; }
h1 { font-size: 1.6em; } h2 { border-bottom: 1px solid #ccc; padding-bottom: .2em; margin-top: 2em; }
table { border-collapse: collapse; margin: .8em 0; font-size: .9em; }
th, td { border: 1px solid #ccc; padding: .25em .6em; text-align: right; }
th { background: #f2f2f2; } td.label, th.label { text-align: left; }
tr.cross td, tr.cross th { background: #fbf7ea; }
tr.transfer td, tr.transfer th { background: #f6eadb; font-weight: 600; }
figure { display: inline-block; margin: .5em; vertical-align: top; }
figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { font-size: .85em; color: #555; max-width: 560px; }
.note { color: #8a5a00; } .small { font-size: .85em; color: #555; }
"""


def _summary_table(result: TransferResult) -> str:
    summaries = figs.direction_summaries(result)
    entries = [(d, "cross" if d in CROSS else "within", summaries[d]) for d in result.directions]
    entries += [(s.direction, "transfer", s) for s in result.transfer_summaries]
    rows = []
    for d, kind, s in entries:
        count = "not tested" if s.n_significant is None else s.n_significant
        rows.append(
            f"<tr class='{kind}'><th class='label'>{_e(figs.direction_label(d))}</th><td>{kind}</td>"
            f"<td>{s.n_voxels}</td><td>{count}</td>"
            f"<td>{format_fraction(s.fraction_significant)}</td><td>{format_r(s.mean_r)}</td>"
            f"<td>{format_r(s.mean_r_significant)}</td><td>{format_r(s.max_r)}</td></tr>"
        )
    return (
        "<table><tr><th class='label'>direction</th><th>kind</th><th>voxels</th><th>significant</th>"
        "<th>fraction significant</th><th>mean r</th><th>mean r (significant)</th><th>max r</th></tr>"
        + "".join(rows) + "</table>"
        "<p class='small'>within, cross: the test that predictions correlate with held-out "
        "responses. transfer: a cross-modal direction's vertices where, in addition, the "
        "training modality's own within test is significant and the prediction depends on the "
        "pairing of story and movie features (docs/statistics.md).</p>"
    )


def _settings_table(settings: Mapping) -> str:
    if not settings:
        return "<p class='small'>No settings recorded.</p>"
    rows = []
    for key, value in settings.items():
        text = value if isinstance(value, str) else json.dumps(value, default=str)
        rows.append(f"<tr><th class='label'>{_e(key)}</th><td class='label'>{_e(text)}</td></tr>")
    return "<table>" + "".join(rows) + "</table>"


def figure_html(path: str, caption: str) -> str:
    """A ``<figure>`` of the image at ``path`` (relative to the report) with its caption."""
    return (f"<figure><img src='{_e(path)}' alt='{_e(caption)}'>"
            f"<figcaption>{_e(caption)}</figcaption></figure>")


def _section_html(section: _Section, anchor: str) -> str:
    result = section.result
    parts = [
        f"<h2 id='{_e(anchor)}'>{_e(figs.result_label(result))}</h2>",
        f"<p class='small'>Subject {_e(result.subject)}, feature space {_e(result.feature_space_label)}, "
        f"{result.n_voxels} voxels, response space {_e(result.space)}.</p>",
        "<h3>Summary</h3>",
        _summary_table(result),
        "<h3>Cortical maps</h3>",
    ]
    if section.map_note:
        parts.append(f"<p class='note'>{_e(section.map_note)}</p>")
    parts.extend(figure_html(p, c) for p, c in section.maps)
    if section.flat_maps:
        parts.append("<details><summary>Flat maps</summary>")
        parts.extend(figure_html(p, c) for p, c in section.flat_maps)
        parts.append("</details>")
    if section.viewers:
        parts.append("<details><summary>Interactive 3-D maps (NiiVue, offline)</summary>"
                     "<p class='small'>Drag to rotate, scroll to zoom; each viewer is a "
                     "standalone page in figures/ that opens without a network.</p>")
        parts.extend(f"<figure><iframe src='{_e(p)}' title='{_e(label)}' loading='lazy' "
                     f"width='560' height='420'></iframe><figcaption>{_e(label)} — "
                     f"<a href='{_e(p)}'>open alone</a></figcaption></figure>"
                     for p, label in section.viewers)
        parts.append("</details>")
    parts.append("<h3>Distributions</h3>")
    parts.extend(figure_html(p, c) for p, c in section.plots)
    if section.ground_truth_table or section.ground_truth_note:
        parts.append("<h3>Ground truth</h3>")
        if section.ground_truth_note:
            parts.append(f"<p class='note'>{_e(section.ground_truth_note)}</p>")
        if section.ground_truth_table:
            parts.append(section.ground_truth_table)
    parts.append("<h3>Settings</h3>")
    parts.append(_settings_table(result.settings))
    return "\n".join(parts)


def _comparison_html(results: Sequence[TransferResult], figure_path: str) -> str:
    directions = [d for d in DIRECTIONS if any(d in result.r for result in results)]
    header = "".join(f"<th>{_e(figs.direction_label(d))}</th>" for d in directions)
    tables = []
    for title, key, fmt in (
        ("Fraction of voxels significant", "fraction_significant", format_fraction),
        ("Mean r of significant voxels", "mean_r_significant", format_r),
        ("Mean r of all voxels", "mean_r", format_r),
    ):
        rows = []
        for result in results:
            summaries = figs.map_summaries(result)
            cells = "".join(f"<td>{fmt(getattr(summaries[d], key)) if d in summaries else '–'}</td>"
                            for d in directions)
            rows.append(f"<tr><th class='label'>{_e(figs.result_label(result))}</th>{cells}</tr>")
        tables.append(f"<h3>{_e(title)}</h3><table><tr><th class='label'>result</th>{header}</tr>"
                      + "".join(rows) + "</table>")
    return ("<h2 id='comparison'>Comparison across feature spaces</h2>"
            "<p class='small'>Representations that transfer better across modalities have more "
            "significant voxels and higher r in the cross-modal directions (story → movie, "
            "movie → story; counted in their transfer maps).</p>" + "".join(tables)
            + figure_html(figure_path, "Fraction significant and mean r of significant voxels "
                          "per direction and result."))


def _result_slugs(results: Sequence[TransferResult]) -> list[str]:
    """One file-name prefix and anchor per result, unique in the report."""
    slugs: list[str] = []
    for result in results:
        slug = file_slug(f"{result.subject}_{result.feature_space}")
        base, k = slug, 2
        while slug in slugs:
            slug, k = f"{base}-{k}", k + 1
        slugs.append(slug)
    return slugs


def _check_extra_sections(extra_sections: Sequence[ReportSection], taken: Sequence[str]) -> None:
    anchors = list(taken)
    for section in extra_sections:
        if not isinstance(section, ReportSection):
            raise TypeError(f"extra_sections must hold ReportSection objects, got {type(section).__name__}")
        if not section.anchor or section.anchor in anchors:
            raise ValueError(f"report section anchor {section.anchor!r} is empty or already used "
                             f"(anchors so far: {anchors})")
        anchors.append(section.anchor)


#: What the report says first about transfer results.
_INTRODUCTION = ("<p>Voxelwise encoding models trained on one modality (stories or movies) and "
                 "tested on held-out runs of the same modality (within) and of the other "
                 "modality (cross-modal transfer). r: Pearson correlation between predicted and "
                 "measured responses. Significance: a test of each direction that accounts for "
                 "the responses' autocorrelation, with Benjamini–Hochberg FDR control; the "
                 "cross-modal maps are transfer maps, which also require the training "
                 "modality's within test and a prediction that depends on the pairing of story "
                 "and movie features (docs/statistics.md). Fractions count voxels with a "
                 "defined r.</p>")


def write_report(
    results: Sequence[TransferResult],
    out_dir: str | Path,
    title: str = "brainenc transfer report",
    ground_truth: Any = None,
    dpi: int = 90,
    extra_sections: Sequence[ReportSection] = (),
    interactive: bool = True,
) -> Path:
    """Write ``out_dir/report.html`` and its figures in ``out_dir/figures``.

    Parameters
    ----------
    results : sequence of TransferResult
        One per subject and feature space.
    out_dir : path-like
    title : str
    ground_truth : mapping or object, optional
        Per-voxel categories: a mapping with ``labels`` (int array, one code
        per voxel) and ``names`` (one name per code), or an object with
        ``category`` and ``category_names`` attributes. Adds mean r and ROC
        AUC by category for each result with as many voxels as labels.
    dpi : int
        Resolution of the PNG figures.
    extra_sections : sequence of ReportSection
        Sections appended after the results (and their comparison), each
        linked from the table of contents; e.g. those of
        :mod:`brainenc.plotting.analyses`, whose figures must already be in
        ``out_dir/figures``.
    interactive : bool
        Also write an interactive 3-D viewer per cortical map
        (:mod:`brainenc.plotting.interactive`: standalone NiiVue pages, about
        3.5 MB each, that open offline), shown in the report.

    Returns
    -------
    Path
        The HTML file.

    Raises
    ------
    ValueError
        No result, or two sections with the same anchor (result sections
        take ``<subject>_<feature space>``, the comparison ``comparison``).

    Notes
    -----
    Cortical maps show r of FDR-significant voxels (for the cross-modal
    directions, of their transfer maps), in four views of the inflated
    surface, on the flat surface and in an interactive viewer. They are drawn
    for ``fsaverage5`` results, ``fsaverage6`` ones at the fsaverage5
    vertices, and ``volume`` (MNI) results whose mask is available (projected
    with :func:`brainenc.plotting.surface.volume_to_fsaverage5`); for
    ``native_volume`` and ``unknown`` spaces the report says why there are
    none. The report refers to its figures and viewers in ``figures/``
    beside it.
    """
    results = list(results)
    extra_sections = list(extra_sections)
    if not results and not extra_sections:
        raise ValueError("write_report needs at least one result or extra section")
    out_dir = Path(out_dir)
    fig_dir = out_dir / FIGURE_DIR
    truth = _ground_truth_labels(ground_truth) if ground_truth is not None else None
    slugs = _result_slugs(results)
    _check_extra_sections(extra_sections, slugs + ["comparison"])

    sections = []
    for result, slug in zip(results, slugs):
        section = _Section(result)
        _map_figures(result, fig_dir, slug, dpi, section, interactive)
        _plots(result, fig_dir, slug, dpi, section)
        if truth is not None:
            _ground_truth_part(result, truth[0], truth[1], fig_dir, slug, dpi, section)
        sections.append((slug, section))

    body = [f"<h1>{_e(title)}</h1>"]
    if results:
        body.append(_INTRODUCTION)
    links = [f"<li><a href='#{_e(slug)}'>{_e(figs.result_label(s.result))}</a></li>" for slug, s in sections]
    if len(results) > 1:
        links.append("<li><a href='#comparison'>Comparison across feature spaces</a></li>")
    links.extend(f"<li><a href='#{_e(extra.anchor)}'>{_e(extra.title)}</a></li>"
                 for extra in extra_sections)
    body.append("<ul>" + "".join(links) + "</ul>")
    body.extend(_section_html(section, slug) for slug, section in sections)
    if len(results) > 1:
        name = "comparison.png"
        figs.save_figure(figs.plot_feature_space_comparison(results), fig_dir / name, dpi=dpi)
        body.append(_comparison_html(results, f"{FIGURE_DIR}/{name}"))
    body.extend(f"<h2 id='{_e(extra.anchor)}'>{_e(extra.title)}</h2>\n{extra.html}"
                for extra in extra_sections)

    document = (
        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
        f"<title>{_e(title)}</title><style>{_CSS}</style></head><body>\n"
        + "\n".join(body) + "\n</body></html>\n"
    )
    path = out_dir / "report.html"
    write_text_atomic(path, document)
    return path

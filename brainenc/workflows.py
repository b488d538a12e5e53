"""End-to-end workflows behind the command line: analyse, write outputs, report.

Output folder of a transfer analysis (see ``docs/outputs.md``)::

    OUT/
      scores.npz        per-voxel r, r2, p-values, FDR masks, alphas (one file per feature space
                        when several: <feature space>/scores.npz)
      summary.json      per feature space and direction: fraction significant, mean r...;
                        per cross-modal direction, the same for its transfer map
      figures/*.png     cortical maps, 2-D transfer map, histograms, scatter
      report.html

Every writer goes through :func:`brainenc.io.output.output_folder`: the
location is checked before any computation, the folder is built under a
temporary name and renamed when complete (a failed or interrupted analysis never
leaves a partial ``OUT``), and only a previous brainenc result is ever replaced,
with ``overwrite=True``.
"""
from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

from brainenc.analysis_outputs import (
    AnalysisOutputs,
    AnalysisRequest,
    check_request,
    read_roi_labels,
    report_sections,
    run_analyses,
    save_analyses,
    summary_entries,
)
from brainenc.checks import (
    check_analysis_options,
    check_subject_inputs,
    input_paths,
    resolve_feature_spaces,
)
from brainenc.errors import BrainencInputError
from brainenc.io.dataset import MODALITIES
from brainenc.io.layouts import load_dataset
from brainenc.io.maps import write_maps
from brainenc.io.output import output_folder
from brainenc.results import TransferResult, json_default

#: Options of :func:`brainenc.transfer.run_transfer` checked before any fit.
_CHECKED_OPTIONS = ("significance", "max_lag", "fdr_q", "alphas", "n_targets_batch",
                    "score_func", "backend", "memory")


def strict_json(value):
    """``value`` with NaN and infinities replaced by None, so that it is strict JSON."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: strict_json(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [strict_json(item) for item in value]
    return value


def summary_dict(results: Sequence[TransferResult], extra: dict | None = None) -> dict:
    """The content of ``summary.json`` (strict JSON: a NaN is written as null); ``extra``
    adds entries (those of :func:`brainenc.analysis_outputs.summary_entries`)."""
    content = {
        "subjects": sorted({res.subject for res in results}),
        "results": [
            {
                "subject": res.subject,
                "feature_space": res.feature_space,
                "pair_note": res.pair_note,
                "n_voxels": res.n_voxels,
                "space": res.space,
                "directions": {s.direction: asdict(s) for s in res.summaries},
                "transfer": {s.direction: asdict(s) for s in res.transfer_summaries},
                "settings": res.settings,
            }
            for res in results
        ],
        **(extra or {}),
    }
    return strict_json(json.loads(json.dumps(content, default=json_default)))


def result_folder(folder: str | Path, feature_spaces: Sequence[str], space: str) -> Path:
    """Where a space's ``scores.npz`` and ``weights.h5`` go: ``folder`` itself for a single
    space, ``folder/<space>`` among several."""
    return Path(folder) if len(feature_spaces) == 1 else Path(folder) / space


def weights_paths(folder: str | Path, feature_spaces: Sequence[str]) -> dict[str, Path]:
    """The ``weights.h5`` of each space in a results folder (see :func:`result_folder`)."""
    return {space: result_folder(folder, feature_spaces, space) / "weights.h5"
            for space in feature_spaces}


def write_results(
    results: Sequence[TransferResult],
    folder: str | Path,
    *,
    ground_truth=None,
    report: bool = True,
    analyses: AnalysisOutputs | None = None,
) -> Path:
    """Write scores, summary, figures and report of ``results`` into ``folder``.

    With one result, its scores go to ``folder/scores.npz``; with several, to
    ``folder/<feature space>/scores.npz`` (beside the ``weights.h5`` the
    analysis wrote, see :func:`weights_paths`), and the same maps as GIFTI or
    NIfTI files under ``maps/`` beside it (:mod:`brainenc.io.maps`). ``folder`` is normally the
    staging folder of :func:`brainenc.io.output.output_folder`. ``analyses``
    adds the files, summary entries and report sections of the optional
    analyses (:mod:`brainenc.analysis_outputs`).
    """
    from brainenc.plotting.report import FIGURE_DIR, write_report

    folder = Path(folder)
    names = [res.feature_space for res in results]
    for res in results:
        res.save(result_folder(folder, names, res.feature_space) / "scores.npz")
        write_maps(res, result_folder(folder, names, res.feature_space))
    extra = {}
    if analyses:
        save_analyses(analyses, results, folder, lambda space: result_folder(folder, names, space))
        extra = summary_entries(analyses, results)
    (folder / "summary.json").write_text(
        json.dumps(summary_dict(results, extra), indent=2, allow_nan=False), encoding="utf-8")
    if report:
        sections = report_sections(analyses, results, folder / FIGURE_DIR) if analyses else []
        write_report(results, folder, ground_truth=ground_truth, extra_sections=sections)
    return folder


def write_outputs(
    results: Sequence[TransferResult],
    out: str | Path,
    *,
    ground_truth=None,
    report: bool = True,
    overwrite: bool = False,
) -> Path:
    """Write ``results`` into a new results folder ``out`` (see :func:`write_results`).

    ``out`` follows the rules of :mod:`brainenc.io.output`: it must be new or
    empty, or hold a previous result and ``overwrite`` be true; it appears only
    once complete.
    """
    with output_folder(out, kind="transfer", overwrite=overwrite) as staging:
        write_results(results, staging, ground_truth=ground_truth, report=report)
    return Path(out)


def transfer_to_folder(
    dataset: str | Path,
    subject: str,
    features: Sequence[str],
    out: str | Path,
    *,
    report: bool = True,
    overwrite: bool = False,
    analyses: AnalysisRequest | None = None,
    cleaning=None,
    **transfer_options,
) -> list[TransferResult]:
    """Run :func:`brainenc.transfer.run_transfers` on the feature spaces and write ``out``.

    With ``modalities=("story",)`` (or ``("movie",)``) in ``transfer_options``
    the analysis is that modality's within direction alone (``brainenc encode``).
    ``cleaning`` (:class:`~brainenc.io.confounds.ResponseCleaning`) regresses
    out fMRIPrep confounds and filters the responses on loading.

    Everything is checked before the first fit: the options, the output
    location (see :mod:`brainenc.io.output`; ``overwrite`` replaces a previous
    result), every feature space, every file of the subject's runs and the
    optional ``analyses`` (:mod:`brainenc.analysis_outputs`).
    """
    request = analyses or AnalysisRequest()
    check_analysis_options(**{k: v for k, v in transfer_options.items() if k in _CHECKED_OPTIONS})
    data = load_dataset(dataset, cleaning=cleaning)
    data.runs_for(subject)  # an unknown subject fails here, naming the ones there are
    spaces = resolve_feature_spaces(features, data)
    names = [space.name for space in spaces]
    check_request(request, names, transfer_options.get("significance", True))
    rois = read_roi_labels(request, data, subject)
    from brainenc.transfer.plan import check_modalities

    modalities = check_modalities(transfer_options.get("modalities", MODALITIES))
    if len(modalities) == 1 and (request.compare or request.dimensions):
        raise BrainencInputError(None, "--compare and --dimensions compare story and movie models; "
                                       f"this analysis has {modalities[0]} runs only")
    if request.dimensions and transfer_options.get("memory") is not None:
        raise BrainencInputError(None, "--dimensions fits every voxel's responses at once; it "
                                       "cannot run under --memory")
    with output_folder(out, kind="transfer", overwrite=overwrite,
                       inputs=input_paths(data, subject, spaces)) as staging:
        check_subject_inputs(data, subject, spaces, modalities)
        results, comparisons = _transfers_and_comparisons(
            data, subject, spaces, request, weights_paths(staging, names), **transfer_options)
        outputs = run_analyses(request, data, subject, results, comparisons, rois)
        write_results(results, staging, report=report, analyses=outputs)
        relocate_results(results, staging, Path(out))
    return results


def layers_to_folder(
    dataset: str | Path,
    subject: str,
    pattern: str,
    out: str | Path,
    *,
    report: bool = True,
    overwrite: bool = False,
    save_weights: bool = False,
    roi_labels: Sequence[str | Path] = (),
    cleaning=None,
    **transfer_options,
) -> tuple[list[TransferResult], object]:
    """Sweep the layers of one model (feature spaces matching ``pattern``) and write ``out``.

    ``out/<layer>/scores.npz`` per layer (with ``weights.h5`` when
    ``save_weights``: one weights file per layer can take gigabytes),
    ``out/layers.npz`` (:class:`brainenc.analyses.layers.LayerSweep`),
    ``summary.json`` and a report with the curves, the best-layer maps and the
    full maps of the layer whose transfer maps hold the most voxels. Each
    layer's maps are also written as GIFTI/NIfTI files (``out/<layer>/maps``);
    ``cleaning`` as in :func:`transfer_to_folder`.
    """
    from brainenc.analyses.layers import find_layer_spaces, sweep_layers

    check_analysis_options(**{k: v for k, v in transfer_options.items() if k in _CHECKED_OPTIONS})
    data = load_dataset(dataset, cleaning=cleaning)
    data.runs_for(subject)
    layers = find_layer_spaces(data.feature_root, pattern)
    spaces = resolve_feature_spaces(layers, data)
    rois = read_roi_labels(AnalysisRequest(roi_labels=tuple(Path(p) for p in roi_labels)), data, subject)
    with output_folder(out, kind="layers", overwrite=overwrite,
                       inputs=input_paths(data, subject, spaces)) as staging:
        check_subject_inputs(data, subject, spaces)
        weights = ({name: staging / name / "weights.h5" for name in layers} if save_weights
                   else None)
        results, sweep = sweep_layers(data, subject, layers, weights_paths=weights, rois=rois,
                                      **transfer_options)
        for result in results:
            result.save(staging / result.feature_space / "scores.npz")
            write_maps(result, staging / result.feature_space)
        sweep.save(staging / "layers.npz")
        summary = summary_dict(results, {"layers": _layer_summary(sweep)})
        (staging / "summary.json").write_text(json.dumps(summary, indent=2, allow_nan=False),
                                              encoding="utf-8")
        if report:
            _layers_report(results, sweep, staging)
        relocate_results(results, staging, Path(out))
    return results, sweep


def _layer_summary(sweep) -> dict:
    return {"layers": sweep.layers,
            "mean_r": {d: v.tolist() for d, v in sweep.mean_r.items()},
            "mean_r_map": {d: v.tolist() for d, v in sweep.mean_r_map.items()},
            "n_map": {d: v.tolist() for d, v in sweep.n_map.items()},
            "roi_names": sweep.roi_names,
            "roi_mean_r": {d: v.tolist() for d, v in sweep.roi_mean_r.items()}}


def _layers_report(results: Sequence[TransferResult], sweep, folder: Path) -> None:
    """The sweep's section and the full maps of the layer with the largest transfer maps."""
    from brainenc.plotting.analyses import layers_section
    from brainenc.plotting.report import FIGURE_DIR, write_report

    transfer = [sum(int(sweep.n_map[d][k]) for d in ("story_to_movie", "movie_to_story"))
                for k in range(len(results))]
    best = results[int(max(range(len(results)), key=lambda k: transfer[k]))]
    section = layers_section(sweep, best, folder / FIGURE_DIR)
    write_report([best], folder, title=f"brainenc layer sweep: {sweep.layers[0]} … {sweep.layers[-1]}",
                 extra_sections=[section])


def partition_to_folder(
    dataset: str | Path,
    subject: str,
    features: Sequence[str],
    out: str | Path,
    *,
    modality: str = "story",
    report: bool = True,
    overwrite: bool = False,
    **partition_options,
):
    """Variance partitioning of two feature spaces (:func:`brainenc.analyses.partition.run_partition`)
    written to ``out``: ``partition.npz``, ``summary.json``, figures and ``report.html``."""
    from brainenc.analyses.partition import run_partition

    data = load_dataset(dataset)
    data.runs_for(subject)
    spaces = resolve_feature_spaces(features, data)
    with output_folder(out, kind="partition", overwrite=overwrite,
                       inputs=input_paths(data, subject, spaces)) as staging:
        result = run_partition(data, subject, spaces, modality, **partition_options)
        result.save(staging / "partition.npz")
        (staging / "summary.json").write_text(
            json.dumps(strict_json(_partition_summary(result)), indent=2, allow_nan=False),
            encoding="utf-8")
        if report:
            from brainenc.plotting.analyses import partition_section
            from brainenc.plotting.report import FIGURE_DIR, write_report

            write_report([], staging, title="brainenc variance partitioning",
                         extra_sections=[partition_section(result, staging / FIGURE_DIR)])
    return result


def _partition_summary(result) -> dict:
    import numpy as np

    def mean(values):
        finite = np.isfinite(values)
        return float(values[finite].mean()) if finite.any() else float("nan")

    maps = result.maps()
    return {"subject": result.subject, "modality": result.modality, "spaces": list(result.spaces),
            "n_voxels": result.n_voxels,
            "mean": {name: mean(values) for name, values in
                     {"r2_joint": result.r2_joint, "r2_a": result.r2_a, "r2_b": result.r2_b,
                      **maps}.items()},
            "settings": json.loads(json.dumps(result.settings, default=json_default))}


def _relocate(value, staging: Path, final: Path):
    """``value`` (settings) with paths under ``staging`` moved to ``final``."""
    if isinstance(value, str) and value.startswith(str(staging)):
        return str(final) + value[len(str(staging)):]
    if isinstance(value, dict):
        return {key: _relocate(item, staging, final) for key, item in value.items()}
    if isinstance(value, list):
        return [_relocate(item, staging, final) for item in value]
    return value


def relocate_results(results: Sequence[TransferResult], staging: Path, out: Path) -> None:
    """Point the results' settings and weights at ``out``, where the staging folder is renamed."""
    final = Path(out).expanduser().resolve()
    for res in results:
        res.settings = _relocate(res.settings, staging.resolve(), final)
        res.weights_path = _relocate(res.weights_path, staging.resolve(), final)


def run_demo(
    out: str | Path = "demo_output",
    *,
    layout: str = "huth",
    significance: bool = True,
    max_lag: int | None = None,
    fdr_q: float = 0.05,
    seed: int = 0,
    overwrite: bool = False,
    progress: bool = True,
) -> list[TransferResult]:
    """Simulate a subject, analyse it with both simulated feature spaces, and report.

    Writes ``out/dataset`` (the simulated data and ground truth) and
    ``out/results`` (scores, weights, summary, figures, report.html). With the
    significance tests, the report also compares the multimodal space with the
    unimodal one, finds the shared dimensions of both spaces' weights and
    tabulates the simulated regions. ``out`` follows the rules of
    :mod:`brainenc.io.output`: ``overwrite`` replaces a previous demo output,
    nothing else.
    """
    from brainenc.analyses.rois import ground_truth_rois
    from brainenc.simulate import load_ground_truth, simulate_dataset

    check_analysis_options(significance=significance, max_lag=max_lag, fdr_q=fdr_q, seed=seed)
    with output_folder(out, kind="demo", overwrite=overwrite) as staging:
        info = simulate_dataset(staging / "dataset", layout=layout, seed=seed)
        data = load_dataset(info.root)
        truth = load_ground_truth(info.root)
        spaces = list(info.feature_spaces)
        request = AnalysisRequest(compare=((spaces[0], spaces[1]),) if significance else (),
                                  dimensions=significance,
                                  n_permutations=DEMO_PERMUTATIONS if significance else None)
        results, comparisons = _transfers_and_comparisons(data, info.subject, spaces, request,
                                               weights_paths(staging / "results", spaces),
                                               significance=significance, max_lag=max_lag,
                                               fdr_q=fdr_q, progress=progress)
        outputs = run_analyses(request, data, info.subject, results, comparisons,
                               ground_truth_rois(truth), seed=seed)
        write_results(results, staging / "results", ground_truth=truth, analyses=outputs)
        relocate_results(results, staging, Path(out))
    return results


#: Shuffles of the demo's null of the principal angles (the command's default is 200).
DEMO_PERMUTATIONS = 100


def _transfers_and_comparisons(data, subject, spaces, request, weights, **options):
    """The results of every space and, when ``request`` names pairs, their comparisons."""
    from brainenc.analyses.comparison import compare_feature_spaces
    from brainenc.transfer import run_transfers

    if request.compare:
        return compare_feature_spaces(data, subject, spaces, request.compare, weights_paths=weights,
                                      **options)
    return run_transfers(data, subject, spaces, weights_paths=weights, **options), []

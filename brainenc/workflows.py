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

from brainenc.checks import (
    check_analysis_options,
    check_subject_inputs,
    input_paths,
    resolve_feature_spaces,
)
from brainenc.io.layouts import load_dataset
from brainenc.io.output import output_folder
from brainenc.results import TransferResult, json_default

#: Options of :func:`brainenc.transfer.run_transfer` checked before any fit.
_CHECKED_OPTIONS = ("significance", "max_lag", "fdr_q", "alphas", "n_targets_batch",
                    "score_func", "backend")


def strict_json(value):
    """``value`` with NaN and infinities replaced by None, so that it is strict JSON."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: strict_json(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [strict_json(item) for item in value]
    return value


def summary_dict(results: Sequence[TransferResult]) -> dict:
    """The content of ``summary.json`` (strict JSON: a NaN is written as null)."""
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
) -> Path:
    """Write scores, summary, figures and report of ``results`` into ``folder``.

    With one result, its scores go to ``folder/scores.npz``; with several, to
    ``folder/<feature space>/scores.npz`` (beside the ``weights.h5`` the
    analysis wrote, see :func:`weights_paths`). ``folder`` is normally the
    staging folder of :func:`brainenc.io.output.output_folder`.
    """
    from brainenc.plotting.report import write_report

    folder = Path(folder)
    names = [res.feature_space for res in results]
    for res in results:
        res.save(result_folder(folder, names, res.feature_space) / "scores.npz")
    (folder / "summary.json").write_text(
        json.dumps(summary_dict(results), indent=2, allow_nan=False), encoding="utf-8")
    if report:
        write_report(results, folder, ground_truth=ground_truth)
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
    **transfer_options,
) -> list[TransferResult]:
    """Run :func:`brainenc.transfer.run_transfers` on the feature spaces and write ``out``.

    Everything is checked before the first fit: the options, the output
    location (see :mod:`brainenc.io.output`; ``overwrite`` replaces a previous
    result), every feature space and every file of the subject's runs.
    """
    from brainenc.transfer import run_transfers

    check_analysis_options(**{k: v for k, v in transfer_options.items() if k in _CHECKED_OPTIONS})
    data = load_dataset(dataset)
    data.runs_for(subject)  # an unknown subject fails here, naming the ones there are
    spaces = resolve_feature_spaces(features, data)
    with output_folder(out, kind="transfer", overwrite=overwrite,
                       inputs=input_paths(data, subject, spaces)) as staging:
        check_subject_inputs(data, subject, spaces)
        names = [space.name for space in spaces]
        results = run_transfers(data, subject, spaces, weights_paths=weights_paths(staging, names),
                                **transfer_options)
        write_results(results, staging, report=report)
        _relocate_results(results, staging, Path(out))
    return results


def _relocate(value, staging: Path, final: Path):
    """``value`` (settings) with paths under ``staging`` moved to ``final``."""
    if isinstance(value, str) and value.startswith(str(staging)):
        return str(final) + value[len(str(staging)):]
    if isinstance(value, dict):
        return {key: _relocate(item, staging, final) for key, item in value.items()}
    if isinstance(value, list):
        return [_relocate(item, staging, final) for item in value]
    return value


def _relocate_results(results: Sequence[TransferResult], staging: Path, out: Path) -> None:
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
    ``out/results`` (scores, summary, figures, report.html). ``out`` follows
    the rules of :mod:`brainenc.io.output`: ``overwrite`` replaces a previous
    demo output, nothing else.
    """
    from brainenc.simulate import load_ground_truth, simulate_dataset
    from brainenc.transfer import run_transfers

    check_analysis_options(significance=significance, max_lag=max_lag, fdr_q=fdr_q, seed=seed)
    with output_folder(out, kind="demo", overwrite=overwrite) as staging:
        info = simulate_dataset(staging / "dataset", layout=layout, seed=seed)
        data = load_dataset(info.root)
        truth = load_ground_truth(info.root)
        spaces = list(info.feature_spaces)
        results = run_transfers(data, info.subject, spaces,
                                weights_paths=weights_paths(staging / "results", spaces),
                                significance=significance, max_lag=max_lag, fdr_q=fdr_q,
                                progress=progress)
        write_results(results, staging / "results", ground_truth=truth)
        _relocate_results(results, staging, Path(out))
    return results

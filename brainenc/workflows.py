"""End-to-end workflows behind the command line: analyse, write outputs, report.

Output folder of a transfer analysis (see ``docs/outputs.md``)::

    OUT/
      scores.npz        per-voxel r, r2, p-values, FDR masks, alphas (one file per feature space
                        when several: <feature space>/scores.npz)
      summary.json      per feature space and direction: fraction significant, mean r...
      figures/*.png     cortical maps, 2-D transfer map, histograms, scatter
      report.html

The folder is built under a temporary name and renamed when complete, so a
failed analysis never leaves a partial ``OUT``.
"""
from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

from brainenc.io.atomic import atomic_directory
from brainenc.io.layouts import load_dataset
from brainenc.results import TransferResult, json_default


def summary_dict(results: Sequence[TransferResult]) -> dict:
    """The content of ``summary.json``."""
    return {
        "subjects": sorted({res.subject for res in results}),
        "results": [
            {
                "subject": res.subject,
                "feature_space": res.feature_space,
                "n_voxels": res.n_voxels,
                "space": res.space,
                "directions": {s.direction: asdict(s) for s in res.summaries},
                "settings": res.settings,
            }
            for res in results
        ],
    }


def write_outputs(
    results: Sequence[TransferResult],
    out: str | Path,
    *,
    ground_truth=None,
    report: bool = True,
    extra_files: dict[str, str] | None = None,
) -> Path:
    """Write scores, summary, figures and report of ``results`` into ``out``.

    With one result, its scores go to ``out/scores.npz``; with several, to
    ``out/<feature space>/scores.npz``. ``out`` appears only once complete.
    """
    from brainenc.plotting.report import write_report

    out = Path(out)
    with atomic_directory(out) as tmp:
        for res in results:
            target = tmp / "scores.npz" if len(results) == 1 else tmp / res.feature_space / "scores.npz"
            res.save(target)
        (tmp / "summary.json").write_text(
            json.dumps(summary_dict(results), indent=2, default=json_default), encoding="utf-8")
        for name, text in (extra_files or {}).items():
            (tmp / name).write_text(text, encoding="utf-8")
        if report:
            write_report(results, tmp, ground_truth=ground_truth)
    return out


def transfer_to_folder(
    dataset: str | Path,
    subject: str,
    features: Sequence[str],
    out: str | Path,
    *,
    report: bool = True,
    **transfer_options,
) -> list[TransferResult]:
    """Run :func:`brainenc.transfer.run_transfer` for each feature space and write ``out``."""
    from brainenc.transfer import run_transfer

    data = load_dataset(dataset)
    results = [run_transfer(data, subject, name, **transfer_options) for name in features]
    write_outputs(results, out, report=report)
    return results


def run_demo(
    out: str | Path = "demo_output",
    *,
    layout: str = "huth",
    n_permutations: int = 1000,
    seed: int = 0,
    progress: bool = True,
) -> list[TransferResult]:
    """Simulate a subject, analyse it with both simulated feature spaces, and report.

    Writes ``out/dataset`` (the simulated data and ground truth) and
    ``out/results`` (scores, summary, figures, report.html).
    """
    from brainenc.simulate import load_ground_truth, simulate_dataset
    from brainenc.transfer import run_transfer

    out = Path(out)
    info = simulate_dataset(out / "dataset", layout=layout, seed=seed)
    data = load_dataset(info.root)
    truth = load_ground_truth(info.root)
    results = [
        run_transfer(data, info.subject, name, n_permutations=n_permutations, seed=seed,
                     progress=progress)
        for name in info.feature_spaces
    ]
    write_outputs(results, out / "results", ground_truth=truth)
    return results


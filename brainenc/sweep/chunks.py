"""A large subject's job split into voxel chunks: one task per chunk, then one that finishes.

With ``chunk_voxels`` in ``[analysis]``, a job whose subject has more voxels
than that runs as several tasks, each fitting, predicting and scoring its own
voxels (read from the response files by batch, :mod:`brainenc.transfer.responses`),
and a last task that assembles them: p-values and FDR maps over every voxel,
the weights file, the maps and the report, written into the job's folder as one
``brainenc transfer`` writes it.

A chunk's part (its scores, weights and settings) is written into a staging
folder and renamed into ``OUT/<subject>/.<feature space>.chunks/<first>-<stop>/``
when complete, so a part that exists is finished: a rerun (a killed worker, an
interrupted sweep) computes only the chunks that have none. A part records the
sweep's analysis (:meth:`~brainenc.sweep.spec.SweepSpec.identity`); one of another
analysis, left by a sweep whose spec has changed since, is computed again. The parts are
removed once the job's folder is in place.

Chunks are whole numbers of the analysis's voxel batches (``n_targets_batch``),
so that each batch is the one the unchunked analysis fits and the results equal
it bit for bit. Under a memory bound the batch is sized inside each task; the
chunks then cut batches the unchunked analysis would not, and agree with it to
float32 rounding.
"""
from __future__ import annotations

import json
import os
import shutil
import socket
from pathlib import Path

import numpy as np

from brainenc.sweep.folders import subject_plan, write_job_outputs
from brainenc.sweep.plan import Job, SweepPlan

__all__ = ["job_chunks", "run_chunk", "finish_job", "chunks_folder"]

_SCORE_FIELDS = ("r", "r2", "z", "alignment_z", "alphas")


def chunks_folder(job: Job) -> Path:
    """Where the parts of ``job``'s chunks are kept until the job is finished."""
    return job.folder.parent / f".{job.folder.name}.chunks"


def _part_folder(job: Job, columns: slice) -> Path:
    return chunks_folder(job) / f"{columns.start:09d}-{columns.stop:09d}"


def job_chunks(plan: SweepPlan, job: Job, n_voxels: int) -> list[slice]:
    """The voxel chunks of ``job`` (one, all voxels, without ``chunk_voxels``)."""
    size = plan.spec.analysis.get("chunk_voxels")
    if size is None or n_voxels <= size:
        return [slice(0, n_voxels)]
    batch = int(plan.spec.analysis.get("n_targets_batch", 20000))
    size = max(batch, size - size % batch)   # whole batches
    return [slice(v0, min(v0 + size, n_voxels)) for v0 in range(0, n_voxels, size)]


def run_chunk(plan: SweepPlan, job: Job, columns: slice) -> Path:
    """Fit, predict and score the voxels ``columns`` of ``job``; the folder of its part.

    A part that exists is finished and kept (nothing is computed again)."""
    import warnings

    from brainenc.results import json_default
    from brainenc.transfer import prepare_space
    from brainenc.transfer.run import score_spaces
    from brainenc.transfer.scores import result_settings

    part = _part_folder(job, columns)
    if part.is_dir():
        if _part_identity(part) == plan.spec.identity():
            return part
        shutil.rmtree(part)   # a part of another analysis (the spec changed since)
    _, chunk_plan = subject_plan(plan, job.subject, columns)
    staging = part.with_name(f"{part.name}.{socket.gethostname()}-{os.getpid()}.tmp")
    shutil.rmtree(staging, ignore_errors=True)   # a dead attempt of this process's pid
    staging.mkdir(parents=True)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            space = prepare_space(chunk_plan, job.feature_space, progress=False)
            scores = score_spaces(chunk_plan, [space], progress=False,
                                  weights_paths={space.name: staging / "weights.h5"})[space.name]
        arrays = {f"{field}/{key}": values[columns] for field in _SCORE_FIELDS
                  for key, values in getattr(scores, field).items()}
        np.savez(staging / "scores.npz", **arrays)
        settings = json.dumps(result_settings(chunk_plan, space), default=json_default)
        (staging / "settings.json").write_text(settings, encoding="utf-8")
        (staging / "identity.json").write_text(json.dumps(plan.spec.identity()), encoding="utf-8")
        os.replace(staging, part)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return part


def _part_identity(part: Path) -> dict | None:
    try:
        return json.loads((part / "identity.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _read_part(part: Path, scores) -> None:
    start, stop = (int(x) for x in part.name.split("-"))
    with np.load(part / "scores.npz") as arrays:
        for name in arrays.files:
            field, key = name.split("/")
            getattr(scores, field)[key][start:stop] = arrays[name]


def _merge_weights(parts: list[Path], path: Path) -> None:
    """The weights of every part (each holds its own voxels) in one weights file at ``path``."""
    import h5py

    shutil.copyfile(parts[0] / "weights.h5", path)
    with h5py.File(path, "r+") as out:
        for part in parts[1:]:
            start, stop = (int(x) for x in part.name.split("-"))
            with h5py.File(part / "weights.h5", "r") as source:
                for modality in source:
                    if isinstance(source[modality], h5py.Group):
                        for name in ("weights", "alphas"):
                            data = source[f"{modality}/{name}"]
                            out[f"{modality}/{name}"][..., start:stop] = data[..., start:stop]


def finish_job(plan: SweepPlan, job: Job, parts: list[Path]) -> str:
    """Assemble the parts of ``job``'s chunks into its result folder; the job's key.

    The p-values' FDR maps are computed over all voxels, as in one analysis."""
    from brainenc.checks import input_paths, resolve_feature_spaces
    from brainenc.io.output import clean_leftovers, output_folder
    from brainenc.sweep.plan import job_done
    from brainenc.transfer.scores import VoxelScores, result_from_scores
    from brainenc.workflows import weights_paths

    replace = job.key in plan.stale
    if job_done(job) and not replace:
        return job.key
    clean_leftovers(job.folder)
    parts = sorted(parts)
    data, whole = subject_plan(plan, job.subject, slice(0, 0))   # reads no response
    scores = VoxelScores.empty(whole.n_voxels, whole.directions, whole.modalities)
    for part in parts:
        _read_part(part, scores)
    settings = json.loads((parts[0] / "settings.json").read_text(encoding="utf-8"))
    result = result_from_scores(whole, job.feature_space, scores, settings)
    spaces = resolve_feature_spaces([job.feature_space], data)
    with output_folder(job.folder, kind="transfer", overwrite=replace,
                       inputs=input_paths(data, job.subject, spaces)) as staging:
        path = weights_paths(staging, [job.feature_space])[job.feature_space]
        _merge_weights(parts, path)
        result.weights_path = str(path.resolve())
        write_job_outputs(plan, job, data, result, staging)
    shutil.rmtree(chunks_folder(job), ignore_errors=True)
    return job.key

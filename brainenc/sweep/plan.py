"""The jobs of a sweep, checked before the first fit, and what is already done.

A job is one (subject, feature space): its result is the folder
``OUT/<subject>/<feature space>/`` that ``brainenc transfer`` (or ``encode``)
writes. That folder is built under a temporary name and renamed when complete,
so a folder with brainenc's output marker is a finished job: a resumed sweep
skips it, and an interrupted one never leaves half a result there.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from brainenc.errors import BrainencInputError
from brainenc.io.output import check_output_folder, read_marker
from brainenc.sweep.spec import SweepSpec

__all__ = ["Job", "SweepPlan", "plan_sweep", "SWEEP_MARKER", "job_done"]

#: Backends that need a GPU on the machine that runs the job.
GPU_BACKENDS = ("torch_cuda", "cupy")

#: The marker of a sweep root: the analysis that the folders under it hold.
SWEEP_MARKER = ".brainenc-sweep.json"


@dataclass(frozen=True)
class Job:
    """One (subject, feature space) of a sweep and its result folder."""

    subject: str
    feature_space: str
    folder: Path

    @property
    def key(self) -> str:
        return f"{self.subject}/{self.feature_space}"


@dataclass(frozen=True)
class SweepPlan:
    """Every job of a sweep, in order (subjects, then feature spaces)."""

    spec: SweepSpec
    jobs: tuple[Job, ...]
    #: keys of finished folders that hold a replaced analysis (``--overwrite``): redone
    stale: frozenset[str] = frozenset()
    #: voxels of each subject (from the response files' headers)
    n_voxels: dict[str, int] = field(default_factory=dict)

    @property
    def subjects(self) -> list[str]:
        return list(dict.fromkeys(job.subject for job in self.jobs))

    @property
    def feature_spaces(self) -> list[str]:
        return list(dict.fromkeys(job.feature_space for job in self.jobs))

    def pending(self) -> list[Job]:
        """Jobs without a finished result folder of this analysis."""
        return [job for job in self.jobs if job.key in self.stale or not job_done(job)]

    def marker(self, stale: set[str] | frozenset[str] | None = None) -> dict:
        """The content of the sweep root's marker; ``stale`` as it stands now (default: the
        plan's)."""
        return {"identity": self.spec.identity(), "spec": str(self.spec.path),
                "stale": sorted(self.stale if stale is None else stale)}


def job_done(job: Job) -> bool:
    """Whether the job's folder holds a finished brainenc result."""
    marker = read_marker(job.folder)
    return marker is not None and marker.get("kind") == "transfer"


def _feature_spaces(spec: SweepSpec, data) -> list[str]:
    from brainenc.analyses.layers import find_layer_spaces
    from brainenc.checks import resolve_feature_spaces

    names = list(spec.features)
    for pattern in spec.layers:
        names += [name for name in find_layer_spaces(data.feature_root, pattern) if name not in names]
    return [space.name for space in resolve_feature_spaces(names, data)]


def _differences(old: dict, new: dict) -> str:
    """The settings in which two sweep identities differ, as ``key: old -> new``."""
    flat_old = {"dataset": old.get("dataset"), **(old.get("analysis") or {})}
    flat_new = {"dataset": new.get("dataset"), **(new.get("analysis") or {})}
    keys = sorted(k for k in set(flat_old) | set(flat_new) if flat_old.get(k) != flat_new.get(k))
    return ", ".join(f"{k}: {flat_old.get(k, 'default')!r} -> {flat_new.get(k, 'default')!r}"
                     for k in keys)


def _stale_keys(spec: SweepSpec, overwrite: bool) -> set[str]:
    """Check the sweep root: new, empty, or a sweep of the same analysis (resumed), or of
    another one with ``overwrite``. The keys of its finished folders still to be redone."""
    root = spec.out
    if root.exists() and not root.is_dir():
        raise BrainencInputError(root, "out: is a file, not a folder")
    if not root.is_dir() or not any(root.iterdir()):
        return set()
    marker = root / SWEEP_MARKER
    if not marker.is_file():
        raise BrainencInputError(root, "out: the folder holds files brainenc did not write; "
                                       "choose a new or empty folder")
    content = json.loads(marker.read_text(encoding="utf-8"))
    if content.get("identity") == spec.identity():
        return set(content.get("stale", []))
    if not overwrite:
        raise BrainencInputError(root, f"out: holds a sweep of another analysis ({marker}: "
                                       f"{_differences(content.get('identity') or {}, spec.identity())}); "
                                       "use --overwrite to replace its results")
    return {f"{s.name}/{f.name}" for s in root.iterdir() if s.is_dir()
            for f in s.iterdir() if read_marker(f) is not None}


def _check_bound(spec: SweepSpec, runs, n_voxels: int, modalities) -> None:
    """A memory bound leaves room to read the subject's responses (before any job)."""
    from brainenc.checks import parse_memory
    from brainenc.transfer.memory import response_chunk

    n_trs = sum(run.n_trs for run in runs if run.modality in modalities)
    try:
        response_chunk(parse_memory(spec.memory), n_voxels, n_trs,
                       int(spec.analysis.get("n_targets_batch", 20000)))
    except BrainencInputError as error:
        raise spec.fail("[analysis] memory", f"subject {runs[0].subject}: {error.problem}") from None


def plan_sweep(spec: SweepSpec, overwrite: bool = False, devices_here: bool = True) -> SweepPlan:
    """Check the dataset, subjects, feature spaces, options and every input file of every job,
    and the sweep root; the jobs in order.

    ``devices_here``: the jobs run on this machine (serial or a local cluster), so a ``backend``
    that needs a GPU (``torch_cuda``, ``cupy``) must find one here. With False (the workers of
    a remote cluster) only the backend's name is checked: each worker resolves it, and the
    default ``"auto"`` gives ``torch_cuda`` on a worker that sees a CUDA device.

    Raises
    ------
    BrainencInputError
        Anything a job would fail on, before any job runs.
    """
    from brainenc.checks import (
        check_analysis_options,
        check_subject_inputs,
        input_paths,
        resolve_feature_spaces,
    )
    from brainenc.io.layouts import load_dataset
    from brainenc.io.responses import response_shape
    from brainenc.transfer.plan import check_modalities

    options = spec.transfer_options()
    checked = ["significance", "max_lag", "fdr_q", "alphas", "n_targets_batch", "memory"]
    if devices_here or options.get("backend") not in GPU_BACKENDS:
        checked.append("backend")
    try:
        check_analysis_options(**{k: v for k, v in options.items() if k in checked})
    except BrainencInputError as error:
        raise spec.fail("[analysis]", error.problem) from None
    modalities = check_modalities(options.get("modalities", ("story", "movie")))
    data = load_dataset(spec.dataset)
    subjects = list(spec.subjects) if spec.subjects is not None else data.subjects
    for subject in subjects:
        data.runs_for(subject)   # an unknown subject fails here, naming the ones there are
    names = _feature_spaces(spec, data)
    spaces = resolve_feature_spaces(names, data)
    for subject in subjects:
        check_subject_inputs(data, subject, spaces, modalities)
    stale = _stale_keys(spec, overwrite)
    jobs = tuple(Job(subject, name, spec.out / subject / name) for subject in subjects for name in names)
    voxels = {subject: response_shape(data.runs_for(subject)[0])[1] for subject in subjects}
    if spec.memory is not None:
        for subject in subjects:
            _check_bound(spec, data.runs_for(subject), voxels[subject], modalities)
    plan = SweepPlan(spec, jobs, frozenset(stale & {job.key for job in jobs}), voxels)
    inputs = {subject: input_paths(data, subject, spaces) for subject in subjects}
    for job in plan.pending():   # the rules of every brainenc output folder, for each job's
        check_output_folder(job.folder, kind="transfer", overwrite=job.key in plan.stale,
                            inputs=inputs[job.subject], what=f"the folder of job {job.key}")
    return plan

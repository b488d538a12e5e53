"""Feature extraction on several Dask workers, one task per stimulus, into the shared cache.

:func:`extract_sharded` runs, in the submitting process and before the first
task is submitted, every check of
:func:`~feature_extractors.pipeline.extract_dataset` (the layer selection,
every transcript and its coverage of the scan, every movie, that no target is
a feature file ``brainenc extract`` did not write) and skips the files already
cached. Each stimulus still to compute (or each group of ``group_size``
stimuli) is then one Dask task: the worker loads the extractor once per
process (:func:`worker_extractor`, a module-level dictionary keyed by the
:class:`ExtractorSpec`), checks that its identity is the one the run was
planned with, embeds the stimulus for every requested layer and commits its
files in a transaction of its own (:mod:`feature_extractors.transaction`):
all or nothing per task, the lock of the feature root held only to commit.

Schedulers
    ``"serial"``: everything in this process, as ``extract_dataset``;
    ``"local"``: a :class:`distributed.LocalCluster` of ``n_workers``
    single-threaded worker processes; an address (``tcp://host:8786``): a
    running cluster, whose workers must see the dataset, the model and the
    feature root at the same paths.

Failures
    A task that fails stops the run: the tasks not started are cancelled and
    the error is raised; the stimuli committed by then stay in the store, so
    the next run computes only the others. A worker that dies leaves its
    staging folder, which the next transaction on that host removes (its pid
    is dead); Dask reruns its task on another worker.
"""
from __future__ import annotations

import os
import threading
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from brainenc.errors import BrainencInputError
from brainenc.io.dataset import Dataset
from feature_extractors.base import FeatureExtractor, identity_hash
from feature_extractors.loading import load_extractor
from feature_extractors.pipeline import (
    MIN_TRANSCRIPT_COVERAGE,
    ExtractionPlan,
    ExtractionReport,
    StimulusTask,
    plan_extraction,
    run_tasks,
)
from feature_extractors.transaction import host_name, prepared_root

_EXTRACTORS: dict[ExtractorSpec, FeatureExtractor] = {}
_EXTRACTORS_LOCK = threading.Lock()


@dataclass(frozen=True)
class ExtractorSpec:
    """How a worker builds the extractor: ``loader(model, **dict(options))``.

    Attributes
    ----------
    model : str
        Model folder, hub id or word-embedding file.
    options : tuple of (str, value) pairs
        Loader options, sorted by name; values must be hashable.
    loader : callable
        Importable by name on the workers (default
        :func:`~feature_extractors.loading.load_extractor`).
    """

    model: str
    options: tuple[tuple[str, Any], ...] = ()
    loader: Callable[..., FeatureExtractor] = load_extractor

    @classmethod
    def of(cls, model: str | os.PathLike, options: dict | None = None,
           loader: Callable[..., FeatureExtractor] | None = None) -> ExtractorSpec:
        """The spec of ``model`` with ``options`` (those set to None dropped)."""
        given = tuple(sorted((k, v) for k, v in (options or {}).items() if v is not None))
        return cls(os.fspath(model), given, loader or load_extractor)

    def load(self) -> FeatureExtractor:
        """A new extractor."""
        return self.loader(self.model, **dict(self.options))


def worker_extractor(spec: ExtractorSpec) -> FeatureExtractor:
    """The extractor of ``spec``, loaded once per process and then reused."""
    with _EXTRACTORS_LOCK:
        extractor = _EXTRACTORS.get(spec)
        if extractor is None:
            extractor = _EXTRACTORS[spec] = spec.load()
    return extractor


class ShardInputError(BrainencInputError):
    """A :class:`~brainenc.errors.BrainencInputError` raised in a task, as it travels back."""

    def __reduce__(self):
        return type(self), (self.path, self.problem)


def _check_identity(extractor: FeatureExtractor, task: StimulusTask) -> None:
    here = extractor.modality_identity(task.source.modality)
    if identity_hash(here) != identity_hash(task.identity):
        raise BrainencInputError(
            task.source.path, f"the extractor loaded on host {host_name()} (pid {os.getpid()}) is "
            f"not the one the extraction was planned with ({here} instead of {task.identity}); "
            "the model files or the software differ between the submitting machine and the workers")


def _quiet_worker() -> None:
    """No progress bars on a worker (model loading included): the submitting process shows
    one bar for the whole extraction."""
    try:
        from transformers.utils import logging as transformers_logging
    except ImportError:
        return
    transformers_logging.disable_progress_bar()


def run_shard(spec: ExtractorSpec, tasks: Sequence[StimulusTask], out: Path, fps: float | None,
              force: bool, lock_timeout_s: float | None) -> ExtractionReport:
    """Embed and commit a group of stimuli on a worker: the body of one Dask task.

    Parameters
    ----------
    spec : ExtractorSpec
        The extractor, loaded once per worker process.
    tasks : sequence of StimulusTask
        From :func:`~feature_extractors.pipeline.plan_extraction`, with the
        layers to compute.
    out : Path
        The feature root.
    fps, force, lock_timeout_s
        As in :func:`~feature_extractors.pipeline.extract_dataset`.

    Returns
    -------
    ExtractionReport
        The task's files written and kept, and the stale staging folders removed.
    """
    _quiet_worker()
    try:
        extractor = worker_extractor(spec)
        for task in tasks:
            _check_identity(extractor, task)
        return run_tasks(tasks, extractor, out, fps=fps, force=force,
                         lock_timeout_s=lock_timeout_s, progress=False)
    except BrainencInputError as error:
        raise ShardInputError(error.path, error.problem) from error


def check_sharding(scheduler: str, n_workers: int | None, group_size: int = 1) -> None:
    """Raise a :class:`~brainenc.errors.BrainencInputError` for unusable sharding settings.

    ``scheduler`` is ``"serial"``, ``"local"`` or a Dask scheduler address
    (Dask installed); ``n_workers`` applies to ``"local"`` only and is at
    least 1; ``group_size`` is at least 1.
    """
    from brainenc.sweep.run import check_scheduler

    check_scheduler(scheduler, n_workers)
    if group_size < 1:
        raise BrainencInputError(None, f"group_size must be at least 1, got {group_size}")


def _split_cached(plan: ExtractionPlan, force: bool) -> tuple[list[StimulusTask], list[Path]]:
    """The tasks left to compute, each narrowed to its pending layers, and the cached files."""
    todo, cached = [], []
    for task in plan.tasks:
        pending = task.pending(force)
        cached += [path for layer, (path, _) in task.targets.items() if layer not in pending]
        if pending:
            todo.append(replace(task, targets={layer: task.targets[layer] for layer in pending}))
    return todo, cached


def _submit(client, spec: ExtractorSpec, groups: list[list[StimulusTask]], plan: ExtractionPlan,
            force: bool, lock_timeout_s: float | None, progress: bool) -> list[ExtractionReport]:
    """Run every group as a task; on the first failure cancel the others and raise."""
    from distributed import as_completed

    run = uuid.uuid4().hex[:8]
    futures = [client.submit(run_shard, spec, group, plan.out, plan.fps, force, lock_timeout_s,
                             key=f"brainenc-extract-{run}-{k}-{group[0].source.stimulus}", pure=False)
               for k, group in enumerate(groups)]
    reports = []
    try:
        for future in tqdm(as_completed(futures), total=len(futures), disable=not progress,
                           desc=f"extract {spec.model} on Dask"):
            reports.append(future.result())
    except BaseException:
        client.cancel(futures)
        raise
    return reports


def _run_on_dask(plan: ExtractionPlan, spec: ExtractorSpec, todo: list[StimulusTask], *,
                 scheduler: str, n_workers: int | None, client, group_size: int, force: bool,
                 lock_timeout_s: float | None, progress: bool) -> list[ExtractionReport]:
    groups = [todo[k:k + group_size] for k in range(0, len(todo), group_size)]
    own = client is None
    cluster = None
    if own:
        from brainenc.sweep.run import open_client

        client, cluster = open_client(scheduler, n_workers)
    try:
        return _submit(client, spec, groups, plan, force, lock_timeout_s, progress)
    finally:
        if own:
            client.close()
            if cluster is not None:
                cluster.close()


def extract_sharded(
    dataset: Dataset,
    model: str | os.PathLike,
    *,
    options: dict | None = None,
    loader: Callable[..., FeatureExtractor] | None = None,
    modality: str = "both",
    layers: str | Sequence[str] | None = None,
    out: str | Path | None = None,
    name_template: str = "{model}_{label}",
    fps: float | None = None,
    tier: str | int | None = None,
    subject: str | None = None,
    force: bool = False,
    min_transcript_coverage: float = MIN_TRANSCRIPT_COVERAGE,
    lock_timeout_s: float | None = None,
    scheduler: str = "local",
    n_workers: int | None = None,
    client=None,
    group_size: int = 1,
    progress: bool = True,
) -> ExtractionReport:
    """Embed a dataset's stimuli on Dask workers, one task per stimulus (or group).

    The extractor is loaded here too, once, for its layers and identity (the
    cache keys); the workers load their own copy from the same ``model`` and
    ``options``. Parameters not listed below are those of
    :func:`~feature_extractors.pipeline.extract_dataset`.

    Parameters
    ----------
    dataset : Dataset
        From :func:`brainenc.io.layouts.load_dataset`.
    model : str or path-like
        Model folder, hub id or word-embedding file, as the workers see it.
    options : dict, optional
        Options of ``loader`` (``device``, ``context_words``...); None values are dropped.
    loader : callable, optional
        ``loader(model, **options) -> FeatureExtractor``, importable on the
        workers (default :func:`~feature_extractors.loading.load_extractor`).
    scheduler : str
        ``"serial"``, ``"local"`` (default) or a Dask scheduler address.
    n_workers : int, optional
        Workers of the local cluster (default: one per core).
    client : distributed.Client, optional
        A client of your own; ``scheduler`` and ``n_workers`` are then ignored
        and the client is left open.
    group_size : int
        Stimuli per task.

    Returns
    -------
    ExtractionReport
        ``written`` lists the files this run committed, ``cached`` those found
        in the cache or committed meanwhile by another extraction.

    Raises
    ------
    BrainencInputError
        Bad settings or a bad input, found before any task is submitted, or
        raised by a task.
    """
    if client is None:
        check_sharding(scheduler, n_workers, group_size)
    elif group_size < 1:
        raise BrainencInputError(None, f"group_size must be at least 1, got {group_size}")
    spec = ExtractorSpec.of(model, options, loader)
    extractor = worker_extractor(spec)
    plan = plan_extraction(dataset, extractor, modality=modality, layers=layers,
                           out=None if out is None else Path(out).absolute(),
                           name_template=name_template, fps=fps, tier=tier, subject=subject,
                           min_transcript_coverage=min_transcript_coverage)
    if scheduler == "serial" and client is None:
        report = run_tasks(plan.tasks, extractor, plan.out, fps=fps, force=force,
                           lock_timeout_s=lock_timeout_s, progress=progress)
    else:
        report = _extract_on_dask(plan, spec, scheduler=scheduler, n_workers=n_workers,
                                  client=client, group_size=group_size, force=force,
                                  lock_timeout_s=lock_timeout_s, progress=progress)
    report.spaces = plan.spaces
    return report


def _extract_on_dask(plan: ExtractionPlan, spec: ExtractorSpec, *, force: bool,
                     lock_timeout_s: float | None, **dask_options) -> ExtractionReport:
    """Clean stale staging on this host, then compute the uncached stimuli as Dask tasks."""
    todo, cached = _split_cached(plan, force)
    report = ExtractionReport(cached=cached)
    with prepared_root(plan.out, lock_timeout_s) as removed:
        report.removed_staging = list(removed)
        if todo:
            for part in _run_on_dask(plan, spec, todo, force=force, lock_timeout_s=lock_timeout_s,
                                     **dask_options):
                report.written += part.written
                report.cached += part.cached
                report.removed_staging += part.removed_staging
    planned = (path for task in plan.tasks for path, _ in task.targets.values())
    order = {path: k for k, path in enumerate(planned)}
    report.written.sort(key=order.__getitem__)
    report.cached.sort(key=order.__getitem__)
    return report

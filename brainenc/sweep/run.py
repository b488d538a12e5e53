"""Run the jobs of a sweep: in this process, or as tasks of a Dask cluster.

``scheduler``:

* ``"serial"``: one job after the other in this process;
* ``"local"`` (default): a :class:`distributed.LocalCluster` of ``n_workers``
  single-threaded worker processes on this machine;
* an address (``tcp://host:8786``): the scheduler of a running cluster, e.g.
  one started by ``dask-jobqueue`` on SLURM or PBS; its workers must see the
  dataset and the sweep root at the same paths.

A job is a task; Dask reruns the task of a worker that dies on another worker,
and the job first removes what the dead one left (its staging folder). After
each finished job the driver records it in the sweep root's marker, so an
interrupted sweep resumes with the jobs that are not finished.
"""
from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable
from pathlib import Path

from brainenc.io.atomic import atomic_path
from brainenc.io.output import clean_leftovers
from brainenc.sweep.plan import SWEEP_MARKER, Job, SweepPlan

__all__ = ["run_job", "run_sweep", "check_scheduler", "open_client", "SweepFailed", "SCHEDULERS"]

SCHEDULERS = ("serial", "local")
#: A local worker's memory limit over the jobs' memory bound.
WORKER_MEMORY_MARGIN = 1.3


class SweepFailed(RuntimeError):
    """Some jobs of a sweep failed; the others finished. ``failures`` maps each failed job's
    key to its error message."""

    def __init__(self, failures: dict[str, str], n_done: int):
        self.failures = dict(failures)
        self.n_done = n_done
        lines = "".join(f"\n  {key}: {message}" for key, message in self.failures.items())
        super().__init__(f"{len(self.failures)} job(s) failed, {n_done} finished; the same "
                         f"command runs the failed ones again:{lines}")


def _describe(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}".strip()


def run_job(plan: SweepPlan, job: Job) -> str:
    """Analyse one (subject, feature space) into its folder; returns the job's key.

    Safe to run again after a killed attempt: a finished folder is kept (unless it holds a
    replaced analysis), and a dead attempt's staging folder is removed first."""
    from brainenc.sweep.chunks import finish_job, job_chunks, run_chunk
    from brainenc.sweep.plan import job_done
    from brainenc.workflows import transfer_to_folder

    replace = job.key in plan.stale
    if job_done(job) and not replace:
        return job.key
    clean_leftovers(job.folder)
    chunks = job_chunks(plan, job, plan.n_voxels.get(job.subject, 0))
    if len(chunks) > 1:
        return finish_job(plan, job, [run_chunk(plan, job, columns) for columns in chunks])
    spec = plan.spec
    transfer_to_folder(spec.dataset, job.subject, [job.feature_space], job.folder,
                       report=spec.report, overwrite=replace, progress=False,
                       **spec.transfer_options())
    return job.key


def check_scheduler(scheduler: str, n_workers: int | None = None) -> None:
    """``scheduler`` is usable here: ``serial``, or Dask is installed and an address looks like
    one (``tcp://``, ``tls://``, ``inproc://`` or ``ucx://``); ``n_workers``, when given, is at
    least 1 and goes with ``local``."""
    from brainenc.errors import BrainencInputError

    if not isinstance(scheduler, str):
        raise BrainencInputError(None, f"--scheduler: expected a string, got {scheduler!r}")
    if n_workers is not None and n_workers < 1:
        raise BrainencInputError(None, f"--workers must be at least 1, got {n_workers}")
    if n_workers is not None and scheduler != "local":
        raise BrainencInputError(None, f"--workers sets the size of a local cluster (--scheduler "
                                       f"local), not of --scheduler {scheduler}")
    if scheduler == "serial":
        return
    if scheduler != "local" and "://" not in scheduler:
        raise BrainencInputError(None, f"--scheduler: expected 'local', 'serial' or a Dask scheduler "
                                       f"address such as tcp://host:8786, got {scheduler!r}")
    try:
        import distributed  # noqa: F401
    except ImportError:
        raise BrainencInputError(None, "--scheduler: Dask is not installed; pip install "
                                       "'brainenc[sweep]', or run with --scheduler serial") from None


def _write_marker(plan: SweepPlan, stale: set[str]) -> None:
    content = plan.marker(stale)
    with atomic_path(plan.spec.out / SWEEP_MARKER) as tmp:
        Path(tmp).write_text(json.dumps(content, indent=2), encoding="utf-8")


def open_client(scheduler: str, n_workers: int | None = None, memory_limit: int | None = None):
    """A Dask client and its cluster (None for an address): a :class:`distributed.LocalCluster`
    of ``n_workers`` single-threaded processes (default one per core) for ``"local"``, else
    the scheduler at the address ``scheduler``. ``memory_limit`` (bytes per worker) replaces
    Dask's default share of this machine's memory."""
    from distributed import Client, LocalCluster

    if scheduler == "local":
        workers = n_workers or max(1, os.cpu_count() or 1)
        cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                               dashboard_address=None, memory_limit=memory_limit or "auto")
        return Client(cluster), cluster
    return Client(scheduler), None


def run_sweep(plan: SweepPlan, scheduler: str = "local", n_workers: int | None = None,
              on_done: Callable[[str], None] | None = None, client=None) -> list[str]:
    """Run the pending jobs of ``plan``; the keys of the jobs run, in completion order.

    Parameters
    ----------
    plan : SweepPlan
        From :func:`brainenc.sweep.plan.plan_sweep` (everything checked).
    scheduler : str
        ``"serial"``, ``"local"`` or a Dask scheduler address.
    n_workers : int, optional
        Workers of the local cluster (default: one per core).
    on_done : callable, optional
        Called with each finished job's key (progress).
    client : distributed.Client, optional
        A client of your own (e.g. in a notebook); then ``scheduler`` and ``n_workers`` are
        ignored and the client is left open.

    Raises
    ------
    SweepFailed
        After every job ran, when some failed (the others' folders are finished).
    """
    pending = plan.pending()
    on_dask = bool(pending) and not (scheduler == "serial" and client is None)
    if scheduler == "local" and client is None:
        warn_if_memory_short(plan, n_workers or max(1, os.cpu_count() or 1))
    with contextlib.ExitStack() as stack:
        if on_dask and client is None:   # connected before anything is written
            client = stack.enter_context(_own_client(scheduler, n_workers, _worker_memory(plan)))
        return _run_pending(plan, pending, client if on_dask else None, on_done)


@contextlib.contextmanager
def _own_client(scheduler: str, n_workers: int | None, memory_limit: int | None):
    import logging

    client, cluster = open_client(scheduler, n_workers, memory_limit)
    try:
        yield client
    finally:
        # workers stopped mid-task (Ctrl-C) make Dask's shutdown chatty; our message says it all
        chatter = logging.getLogger("distributed")
        level = chatter.level
        chatter.setLevel(logging.ERROR)
        try:
            client.close()
            if cluster is not None:
                cluster.close()
        finally:
            chatter.setLevel(level)


def _run_pending(plan: SweepPlan, pending: list[Job], client, on_done) -> list[str]:
    """Run ``pending`` here (``client`` None) or on Dask, recording each finished job."""
    stale = set(plan.stale)
    plan.spec.out.mkdir(parents=True, exist_ok=True)
    _write_marker(plan, stale)
    for subject in {job.subject for job in pending}:
        (plan.spec.out / subject).mkdir(exist_ok=True)   # before jobs of a subject race for it
    done: list[str] = []

    def finished(key: str) -> None:
        stale.discard(key)
        _write_marker(plan, stale)
        done.append(key)
        if on_done is not None:
            on_done(key)

    failures: dict[str, str] = {}
    units = task_units(plan, pending)
    if client is None:
        for unit in units:
            try:
                for key in run_unit(plan, unit):
                    finished(key)
            except Exception as error:   # the other jobs go on; the failure is reported
                failures.update({job.key: _describe(error) for job in unit if job.key not in done})
    else:
        _run_on_dask(plan, units, client, finished, failures)
    if failures:
        raise SweepFailed(failures, len(done))
    return done


def task_units(plan: SweepPlan, jobs: list[Job]) -> list[list[Job]]:
    """The jobs as units of work: a job split into voxel chunks alone, the others one by one
    or ``spaces_per_task`` of a subject together (:mod:`brainenc.sweep.groups`)."""
    from brainenc.sweep.chunks import job_chunks
    from brainenc.sweep.groups import job_groups

    chunked = [job for job in jobs if len(job_chunks(plan, job, plan.n_voxels.get(job.subject, 0))) > 1]
    return [[job] for job in chunked] + job_groups(plan, [job for job in jobs if job not in chunked])


def describe_units(plan: SweepPlan, jobs: list[Job]) -> list[str]:
    """How ``jobs`` run, in words, where it is not one task per job."""
    from brainenc.sweep.chunks import chunks_folder, job_chunks

    lines = []
    for unit in task_units(plan, jobs):
        job = unit[0]
        chunks = job_chunks(plan, job, plan.n_voxels.get(job.subject, 0))
        if len(chunks) > 1:
            kept = len(list(chunks_folder(job).glob("*-*[0-9]"))) if chunks_folder(job).is_dir() else 0
            lines.append(f"{job.key}: {len(chunks)} voxel chunks of up to {chunks[0].stop} voxels"
                         + (f", {kept} part(s) found from an earlier run" if kept else ""))
        elif len(unit) > 1:
            lines.append(f"{job.subject}: {', '.join(j.feature_space for j in unit)} in one task")
    return lines


def run_unit(plan: SweepPlan, unit: list[Job]) -> list[str]:
    """Run a unit of :func:`task_units` here; the keys of its jobs."""
    from brainenc.sweep.groups import run_group

    return [run_job(plan, unit[0])] if len(unit) == 1 else run_group(plan, unit)


def _submit_unit(client, plan: SweepPlan, unit: list[Job]):
    """The future of a unit: one task, or one per voxel chunk and one that assembles them."""
    from brainenc.sweep.chunks import job_chunks, run_chunk

    job = unit[0]
    key = f"brainenc-sweep-{job.key}"
    chunks = job_chunks(plan, job, plan.n_voxels.get(job.subject, 0))
    if len(unit) > 1 or len(chunks) == 1:
        return client.submit(run_unit, plan, unit, key=key, pure=False)
    parts = [client.submit(run_chunk, plan, job, columns, key=f"{key}-{columns.start}", pure=False)
             for columns in chunks]
    return client.submit(_finish_unit, plan, job, parts, key=key, pure=False)


def _finish_unit(plan: SweepPlan, job: Job, parts: list[Path]) -> list[str]:
    from brainenc.sweep.chunks import finish_job

    return [finish_job(plan, job, parts)]


def warn_if_memory_short(plan: SweepPlan, n_workers: int) -> None:
    """Warn when ``n_workers`` local workers, each allowed the jobs' memory bound, would need
    more memory than this machine has."""
    import warnings

    from brainenc.checks import format_bytes, parse_memory
    from brainenc.errors import BrainencInputWarning

    if plan.spec.memory is None or not hasattr(os, "sysconf"):
        return
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError):
        return
    needed = n_workers * parse_memory(plan.spec.memory)
    if needed > total:
        warnings.warn(f"{n_workers} workers with a memory bound of {format_bytes(needed / n_workers)} "
                      f"each need {format_bytes(needed)}, more than this machine's "
                      f"{format_bytes(total)}: use fewer --workers or a lower bound",
                      BrainencInputWarning, stacklevel=3)


def _worker_memory(plan: SweepPlan) -> int | None:
    """Memory of a local worker for jobs under a bound: the bound and a margin, so that Dask's
    own limits (pause at 80 %, restart at 95 %) stay above what the job allows itself."""
    from brainenc.checks import parse_memory

    memory = plan.spec.memory
    return None if memory is None else int(parse_memory(memory) * WORKER_MEMORY_MARGIN)


def _run_on_dask(plan, units, client, finished, failures) -> None:
    from distributed import as_completed

    futures = {_submit_unit(client, plan, unit): unit for unit in units}
    for future in as_completed(futures):
        try:
            keys = future.result()
        except Exception as error:   # a job's error, or KilledWorker after repeated deaths
            failures.update({job.key: _describe(error) for job in futures[future]})
            continue
        for key in keys:
            finished(key)

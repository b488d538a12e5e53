"""Several feature spaces of one subject in one task, sharing what does not depend on them.

With ``spaces_per_task = N`` in ``[analysis]``, a subject's jobs run N at a time
in one task: the subject's responses are read and z-scored once, its splits and
the response autocovariance of every voxel batch are computed once
(:class:`~brainenc.transfer.plan.TransferPlan`), and each feature space's
designs and factorisations are prepared once for the task. Each job still gets
its own folder, as one ``brainenc transfer`` writes it, equal bit for bit to
the job run alone (the same batches, the same computations).

A task writes its jobs' folders together: if it fails, none of them is
finished, and a rerun does the jobs that are not.
"""
from __future__ import annotations

import contextlib
import warnings
from collections.abc import Sequence

from brainenc.sweep.folders import subject_plan, write_job_outputs
from brainenc.sweep.plan import Job, SweepPlan, job_done

__all__ = ["job_groups", "run_group"]


def job_groups(plan: SweepPlan, jobs: Sequence[Job]) -> list[list[Job]]:
    """``jobs`` as the tasks that run them: one job each, or ``spaces_per_task`` jobs of one
    subject (in the plan's order) each."""
    size = int(plan.spec.analysis.get("spaces_per_task", 1))
    groups = []
    for subject in dict.fromkeys(job.subject for job in jobs):
        own = [job for job in jobs if job.subject == subject]
        groups += [own[k:k + size] for k in range(0, len(own), size)]
    return groups


def run_group(plan: SweepPlan, jobs: Sequence[Job]) -> list[str]:
    """Analyse the feature spaces of ``jobs`` (one subject) together, each into its folder;
    the jobs' keys. Finished folders are kept (unless they hold a replaced analysis)."""
    from brainenc.checks import input_paths, resolve_feature_spaces
    from brainenc.io.output import clean_leftovers, output_folder
    from brainenc.transfer import analyse_spaces, prepare_space
    from brainenc.workflows import weights_paths

    todo = [job for job in jobs if job.key in plan.stale or not job_done(job)]
    if len({job.subject for job in jobs}) > 1:
        raise ValueError("a group holds the jobs of one subject")
    if todo:
        for job in todo:
            clean_leftovers(job.folder)
        data, shared = subject_plan(plan, todo[0].subject)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")   # warned once, when the sweep was planned
            spaces = [prepare_space(shared, job.feature_space, progress=False) for job in todo]
        with contextlib.ExitStack() as stack:
            stagings = {job.key: stack.enter_context(output_folder(
                job.folder, kind="transfer", overwrite=job.key in plan.stale,
                inputs=input_paths(data, job.subject, resolve_feature_spaces([job.feature_space], data))))
                for job in todo}
            paths = {job.feature_space: weights_paths(stagings[job.key], [job.feature_space])[job.feature_space]
                     for job in todo}
            results = analyse_spaces(shared, spaces, weights_paths=paths, progress=False)
            for job, result in zip(todo, results, strict=True):
                write_job_outputs(plan, job, data, result, stagings[job.key])
    return [job.key for job in jobs]

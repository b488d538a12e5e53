"""What the tasks of a sweep share: a subject's analysis plan, and a job's folder contents.

Whether a job runs as one task, as voxel chunks (:mod:`brainenc.sweep.chunks`) or with
other feature spaces of its subject (:mod:`brainenc.sweep.groups`), its folder is
written the way ``brainenc transfer`` writes it.
"""
from __future__ import annotations

import inspect
import warnings
from pathlib import Path

from brainenc.sweep.plan import Job, SweepPlan

__all__ = ["subject_plan", "write_job_outputs"]


def _plan_options(plan: SweepPlan) -> dict:
    """The spec's options that :func:`~brainenc.transfer.plan.plan_transfer` takes."""
    from brainenc.transfer.plan import plan_transfer

    accepted = inspect.signature(plan_transfer).parameters
    return {k: v for k, v in plan.spec.transfer_options().items() if k in accepted}


def subject_plan(plan: SweepPlan, subject: str, columns: slice | None = None):
    """The dataset and the :class:`~brainenc.transfer.plan.TransferPlan` of ``subject`` under
    the sweep's analysis options (of the voxels ``columns`` only, when given)."""
    from brainenc.io.layouts import load_dataset
    from brainenc.transfer.plan import plan_transfer

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")   # warned once, when the sweep was planned
        data = load_dataset(plan.spec.dataset)
        return data, plan_transfer(data, subject, columns=columns, **_plan_options(plan))


def write_job_outputs(plan: SweepPlan, job: Job, data, result, staging: Path) -> None:
    """Write ``result`` (its weights already in ``staging``) as ``brainenc transfer`` writes a
    folder: scores, maps, summary and report; paths then point at the job's folder."""
    from brainenc.analysis_outputs import AnalysisRequest, run_analyses
    from brainenc.workflows import relocate_results, write_results

    outputs = run_analyses(AnalysisRequest(), data, job.subject, [result], [])
    write_results([result], staging, report=plan.spec.report, analyses=outputs)
    relocate_results([result], staging, job.folder)

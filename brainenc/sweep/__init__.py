"""Sweeps of the transfer analysis over subjects × feature spaces (``brainenc sweep``).

:func:`load_sweep_spec` reads the TOML spec, :func:`plan_sweep` checks every
input of every job and the sweep root, :func:`run_sweep` runs the pending jobs
(serially or on Dask), and :func:`write_sweep_summary` writes the table and the
report across the sweep. The encoding pipeline does not import this package.
"""
from brainenc.sweep.plan import Job, SweepPlan, plan_sweep
from brainenc.sweep.run import run_job, run_sweep
from brainenc.sweep.spec import SweepSpec, load_sweep_spec
from brainenc.sweep.summary import sweep_rows, write_sweep_summary

__all__ = ["Job", "SweepPlan", "SweepSpec", "load_sweep_spec", "plan_sweep", "run_job",
           "run_sweep", "sweep_rows", "write_sweep_summary"]

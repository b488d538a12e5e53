"""A memory bound for one subject's analysis: the voxel batch that fits in it.

With a bound (``memory="8GB"``, ``--memory 8GB``) the responses are read batch
by batch (:class:`~brainenc.transfer.responses.SubjectResponses`) and the batch
is the largest that keeps the estimated peak under the bound::

    peak = process + held(feature spaces) + n_voxels * per_voxel_result
           + batch * (TR_COPIES * 4 * n_TRs + (n_folds / 2 + 3) * 4 * n_design_columns)

``held`` is the size of the arrays of the prepared feature spaces (their
designs and factorisations), counted once they exist; the other terms were
measured with ``benchmarks/bench_memory.py`` (peak resident memory of the
whole process) on subjects of 20 000 to 300 000 voxels and are rounded up.
"""
from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from brainenc.checks import format_bytes, parse_memory
from brainenc.errors import BrainencInputError

__all__ = ["parse_memory", "response_chunk", "memory_batch", "held_bytes"]

#: The interpreter, NumPy, SciPy, himalaya and PyTorch, a dataset's tables.
PROCESS_BYTES = 512 * 2**20
#: Per-voxel results held for the whole subject (scores, p-values, maps of every direction).
RESULT_BYTES_PER_VOXEL = 1024
#: Float32 copies of a voxel's responses alive while a batch is fitted and scored.
TR_COPIES = 8
#: Float32 copies of a voxel's responses in one space's predictions (within, across, sequential).
PREDICTION_COPIES = 3
#: The smallest batch worth running; a bound that leaves less is an error.
MIN_BATCH = 100

def held_bytes(obj, _seen: set[int] | None = None) -> int:
    """Bytes of the NumPy arrays and PyTorch tensors reachable from ``obj`` through lists,
    tuples, dicts and brainenc's own objects (each array counted once)."""
    seen = set() if _seen is None else _seen
    if id(obj) in seen:
        return 0
    seen.add(id(obj))
    if isinstance(obj, np.ndarray):
        return obj.nbytes if obj.base is None else held_bytes(obj.base, seen)
    if type(obj).__module__.startswith("torch") and hasattr(obj, "nelement"):
        return int(obj.element_size() * obj.nelement())
    if isinstance(obj, dict):
        return sum(held_bytes(v, seen) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return sum(held_bytes(v, seen) for v in obj)
    if type(obj).__module__.startswith("brainenc.") and hasattr(obj, "__dict__"):
        return sum(held_bytes(v, seen) for v in vars(obj).values())
    return 0


def _per_voxel(n_trs: int, n_columns: int, n_folds: int) -> int:
    return 4 * (TR_COPIES * n_trs + (n_folds // 2 + 3) * n_columns)


def response_chunk(bound: int, n_voxels: int, n_trs: int, largest: int) -> int:
    """Voxels read at once while the responses are checked (no model yet), at most ``largest``.

    Raises
    ------
    BrainencInputError
        The bound leaves less than :data:`MIN_BATCH` voxels.
    """
    free = bound - PROCESS_BYTES - n_voxels * RESULT_BYTES_PER_VOXEL
    chunk = min(largest, free // _per_voxel(n_trs, 0, 0)) if free > 0 else 0
    if chunk < min(MIN_BATCH, largest):
        results, reading = n_voxels * RESULT_BYTES_PER_VOXEL, MIN_BATCH * _per_voxel(n_trs, 0, 0)
        raise BrainencInputError(
            None, f"--memory {format_bytes(bound)} is too small for {n_voxels} voxels of {n_trs} "
                  f"TRs: reading them needs at least {format_bytes(PROCESS_BYTES + results + reading)} "
                  f"(the process {format_bytes(PROCESS_BYTES)}, per-voxel results "
                  f"{format_bytes(results)}, {MIN_BATCH} voxels at a time {format_bytes(reading)})")
    return int(chunk)


def memory_batch(bound: int, n_voxels: int, n_trs: int, spaces: Iterable, largest: int,
                 keep_predictions: bool = False) -> int:
    """The largest voxel batch (at most ``largest``) whose estimated peak stays under ``bound``.

    Parameters
    ----------
    bound : int
        Bytes.
    n_voxels, n_trs : int
        Voxels of the subject and TRs of all its analysed runs.
    spaces : iterable of SpaceModels
        The prepared feature spaces, all held during the batches.
    largest : int
        ``n_targets_batch``.
    keep_predictions : bool
        Every space's predictions of a batch are kept at once (paired comparisons).

    Raises
    ------
    BrainencInputError
        The bound leaves less than :data:`MIN_BATCH` voxels; the message gives the
        parts of the estimate.
    """
    spaces = list(spaces)
    held = held_bytes(spaces)
    results = n_voxels * RESULT_BYTES_PER_VOXEL * max(1, len(spaces))
    n_columns = max(space.n_features for space in spaces)
    n_folds = max(sum(len(m.folds) + len(m.chain) for m in space.models.values()) for space in spaces)
    per_voxel = _per_voxel(n_trs, n_columns, n_folds)
    if keep_predictions:
        per_voxel += len(spaces) * PREDICTION_COPIES * 4 * n_trs
    free = bound - PROCESS_BYTES - held - results
    batch = min(largest, n_voxels, free // per_voxel) if free > 0 else 0
    if batch < min(MIN_BATCH, n_voxels):
        need = PROCESS_BYTES + held + results + MIN_BATCH * per_voxel
        raise BrainencInputError(
            None, f"--memory {format_bytes(bound)} is too small for this analysis: it needs at "
                  f"least {format_bytes(need)} (the process {format_bytes(PROCESS_BYTES)}, the "
                  f"designs and factorisations of {len(spaces)} feature space(s) "
                  f"{format_bytes(held)}, per-voxel results {format_bytes(results)}, a batch of "
                  f"{MIN_BATCH} voxels {format_bytes(MIN_BATCH * per_voxel)})")
    return int(batch)

"""A subject's responses for an analysis: every run in memory, or read voxel chunk by chunk.

In memory (the default), every run is loaded, z-scored and kept as float32.
Read by chunks, nothing is kept but the voxel columns of the batch being
analysed: they are read from the files (HDF5 and ``.npy`` files read only those
columns; NIfTI and GIfTI files are read whole and cut) when first asked for, and
replaced by the next batch's. Z-scoring, cleaning and every check are column by
column, so both give the same numbers.

Before any fit, the chunked store reads every chunk once: the checks of
:func:`brainenc.io.responses.load_responses` (NaN, infinities, ranges) hold for
the whole subject before the first model, and the constant voxels are known.
"""
from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence

import numpy as np

from brainenc.design import zscore_columns
from brainenc.errors import BrainencInputError, BrainencInputWarning
from brainenc.io.dataset import Run
from brainenc.io.responses import load_responses, response_shape

__all__ = ["SubjectResponses", "load_modality_responses"]


def load_modality_responses(runs: Sequence[Run], columns: slice | None = None) -> list[np.ndarray]:
    """Z-scored float32 responses of ``runs`` (the voxels ``columns``, default all), which
    must have the same voxels."""
    responses = []
    n_voxels = None
    for run in runs:
        Y = load_responses(run, columns=columns)
        if n_voxels is not None and Y.shape[1] != n_voxels:
            raise BrainencInputError(
                run.response_paths[0],
                f"has {Y.shape[1]} voxels but earlier runs of subject {run.subject} have {n_voxels}",
            )
        n_voxels = Y.shape[1]
        responses.append(zscore_columns(Y).astype(np.float32))
    return responses


def _constant(responses: Sequence[np.ndarray]) -> np.ndarray:
    """Columns that are constant (zero after z-scoring) within every run."""
    return np.all([np.all(Y == 0, axis=0) for Y in responses], axis=0)


class SubjectResponses:
    """Z-scored float32 responses (TRs × voxels) of a subject's runs, per modality.

    Build with :meth:`in_memory` or :meth:`by_chunks`.

    Attributes
    ----------
    runs : dict of str to list of Run
    n_voxels : int
    lengths : dict of str to list of int
        Rows of every run, per modality.
    constant : ndarray of bool
        Voxels constant within every run of some modality.
    chunked : bool
        Whether the responses are read batch by batch.
    columns : slice
        The voxels held or read (all, or one chunk's; step 1).
    """

    def __init__(self, runs: Mapping[str, Sequence[Run]], n_voxels: int,
                 lengths: Mapping[str, list[int]], constant: np.ndarray,
                 loaded: dict[str, list[np.ndarray]] | None, columns: slice | None = None):
        self.runs = {m: list(r) for m, r in runs.items()}
        self.n_voxels = int(n_voxels)
        self.columns = slice(*(columns or slice(None)).indices(self.n_voxels)[:2])
        self.lengths = dict(lengths)
        self.constant = constant
        self.chunked = loaded is None
        self._loaded = loaded
        self._columns: tuple[int, int] | None = None
        self._block: dict[str, list[np.ndarray]] | None = None

    @classmethod
    def in_memory(cls, runs: Mapping[str, Sequence[Run]]) -> SubjectResponses:
        """Load every run of every modality."""
        loaded = {m: load_modality_responses(r) for m, r in runs.items()}
        _check_same_voxels(runs, {m: Y[0].shape[1] for m, Y in loaded.items()})
        constant = np.any([_constant(Y) for Y in loaded.values()], axis=0)
        n_voxels = next(iter(loaded.values()))[0].shape[1]
        lengths = {m: [len(Y) for Y in responses] for m, responses in loaded.items()}
        return cls(runs, n_voxels, lengths, constant, loaded)

    @classmethod
    def by_chunks(cls, runs: Mapping[str, Sequence[Run]], chunk: int,
                  part: slice | None = None) -> SubjectResponses:
        """Keep nothing in memory; check every chunk of ``chunk`` voxels once, now (of the
        voxels ``part`` only, when given: the rest is neither read nor analysed)."""
        widths = {m: _run_widths(r) for m, r in runs.items()}
        _check_same_voxels(runs, widths)
        n_voxels = next(iter(widths.values()))
        first, last, step = (part or slice(None)).indices(n_voxels)
        if step != 1 or last < first:
            raise BrainencInputError(None, f"voxel chunk {part} is not a range of the {n_voxels} "
                                           "voxels")
        constant = np.zeros(n_voxels, dtype=bool)
        lengths = {m: [run.n_trs for run in r] for m, r in runs.items()}
        all_constant = {m: [True] * len(r) for m, r in runs.items()}
        for v0 in range(first, last, chunk):
            columns = slice(v0, min(v0 + chunk, last))
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", BrainencInputWarning)  # per file, warned below
                block = {m: load_modality_responses(r, columns) for m, r in runs.items()}
            constant[columns] = np.any([_constant(Y) for Y in block.values()], axis=0)
            for m, responses in block.items():
                lengths[m] = [len(Y) for Y in responses]
                all_constant[m] = [flag and not Y.any() for flag, Y in zip(all_constant[m], responses)]
        if (first, last) == (0, n_voxels):
            _warn_about_constant_files(runs, all_constant)
        return cls(runs, n_voxels, lengths, constant, None, slice(first, last))

    def run_lengths(self, modality: str) -> list[int]:
        return list(self.lengths[modality])

    def stack(self, modality: str, indices: Sequence[int], columns: slice) -> np.ndarray:
        """Rows of the runs at ``indices`` (in that order) for the voxels ``columns``."""
        if not self.chunked:
            return np.concatenate([self._loaded[modality][i][:, columns] for i in indices])
        start, stop, _ = columns.indices(self.n_voxels)
        if self._columns != (start, stop):
            self._block = None   # free the previous batch before reading the next
            self._block = {m: load_modality_responses(r, slice(start, stop))
                           for m, r in self.runs.items()}
            self._columns = (start, stop)
        return np.concatenate([self._block[modality][i] for i in indices])

    def all_runs(self, modality: str) -> list[np.ndarray]:
        """Every run of ``modality``, all voxels (responses held in memory only)."""
        if self.chunked:
            raise BrainencInputError(None, "this analysis needs every voxel's responses at once; "
                                           "run it without a memory bound (--memory)")
        return self._loaded[modality]


def _run_widths(runs: Sequence[Run]) -> int:
    """The voxels of ``runs`` from their headers, which must agree."""
    n_voxels = None
    for run in runs:
        width = response_shape(run)[1]
        if n_voxels is not None and width != n_voxels:
            raise BrainencInputError(
                run.response_paths[0],
                f"has {width} voxels but earlier runs of subject {run.subject} have {n_voxels}")
        n_voxels = width
    return n_voxels


def _check_same_voxels(runs: Mapping[str, Sequence[Run]], n_voxels: Mapping[str, int]) -> None:
    if len(set(n_voxels.values())) > 1:
        raise BrainencInputError(
            runs["movie"][0].response_paths[0],
            f"has {n_voxels['movie']} voxels but the story runs have {n_voxels['story']}",
        )


def _warn_about_constant_files(runs: Mapping[str, Sequence[Run]],
                               all_constant: Mapping[str, list[bool]]) -> None:
    for modality, flags in all_constant.items():
        for run, flag in zip(runs[modality], flags):
            if flag:
                warnings.warn(f"{run.response_paths[0]}: every voxel is constant over the analysed "
                              "rows; is this the right file?", BrainencInputWarning, stacklevel=4)

"""Checks that run before any fit: analysis options, and the inputs of a subject.

An analysis can take hours; every argument and every file it will read is
checked first, so that a user error costs seconds and leaves nothing behind.
"""
from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from brainenc.errors import BrainencInputError
from brainenc.io.dataset import MODALITIES, Dataset, Run
from brainenc.io.features import FeatureSpace, find_feature_space

__all__ = ["check_analysis_options", "check_subject_inputs", "resolve_feature_spaces",
           "input_paths"]


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


_UNITS = {"": 1, "b": 1, "k": 10**3, "kb": 10**3, "m": 10**6, "mb": 10**6, "g": 10**9,
          "gb": 10**9, "t": 10**12, "tb": 10**12, "kib": 2**10, "mib": 2**20, "gib": 2**30,
          "tib": 2**40}


def parse_memory(value: str | int | float) -> int:
    """Bytes of a memory size: a number of bytes, or ``"8GB"``, ``"8 GiB"``, ``"512MB"``.

    Units as Dask reads them: ``KB``/``MB``/``GB``/``TB`` (and ``K``/``M``/``G``/``T``)
    are powers of 1000, ``KiB``/``MiB``/``GiB``/``TiB`` powers of 1024.

    Raises
    ------
    BrainencInputError
        Not a positive size.
    """
    problem = f"--memory must be a size such as 8GB, 16GiB or 512MB, got {value!r}"
    if isinstance(value, bool):
        raise BrainencInputError(None, problem)
    if isinstance(value, (int, float)):
        number, unit = float(value), ""
    else:
        match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([A-Za-z]*)\s*", str(value))
        if match is None or match[2].lower() not in _UNITS:
            raise BrainencInputError(None, problem)
        number, unit = float(match[1]), match[2].lower()
    size = number * _UNITS[unit]
    if not math.isfinite(size) or size < 1:
        raise BrainencInputError(None, problem)
    return int(size)


def format_bytes(n: float) -> str:
    """``n`` bytes as GB (powers of 1000, as ``--memory`` reads them), or MB below 0.1 GB."""
    return f"{n / 1e9:.2f} GB" if n >= 1e8 else f"{n / 1e6:.1f} MB"


def check_analysis_options(
    *,
    significance: bool = True,
    max_lag: int | None = None,
    fdr_q: float = 0.05,
    alphas: Sequence[float] | None = None,
    seed: int = 0,
    n_targets_batch: int = 20000,
    score_func: str = "correlation",
    backend: str = "auto",
    memory: str | int | None = None,
) -> None:
    """Raise :class:`~brainenc.errors.BrainencInputError` for an impossible option.

    Every problem is reported at once, each naming its option and the range
    it must lie in.
    """
    problems = []
    if not isinstance(significance, (bool, np.bool_)):
        problems.append(f"significance must be True or False, got {significance!r}")
    if max_lag is not None and (not _is_int(max_lag) or max_lag < 1):
        problems.append(f"--max-lag must be a whole number of TRs >= 1, got {max_lag!r}")
    if isinstance(fdr_q, bool) or not isinstance(fdr_q, (int, float)) or not 0 < fdr_q < 1:
        problems.append(f"--fdr-q must be a false discovery rate in (0, 1), e.g. 0.05, "
                        f"got {fdr_q!r}")
    if alphas is not None:
        values = list(alphas)
        if not values or any(isinstance(a, bool) or not isinstance(a, (int, float))
                             or not math.isfinite(a) or a <= 0 for a in values):
            problems.append(f"--alphas must be positive finite numbers, got {values!r}")
    if not _is_int(seed) or seed < 0:
        problems.append(f"--seed must be a whole number >= 0, got {seed!r}")
    if not _is_int(n_targets_batch) or n_targets_batch < 1:
        problems.append(f"n_targets_batch must be a whole number >= 1, got {n_targets_batch!r}")
    if score_func not in ("correlation", "r2"):
        problems.append(f"--score must be 'correlation' or 'r2', got {score_func!r}")
    problem = _backend_problem(backend)
    if problem:
        problems.append(problem)
    if memory is not None:
        try:
            parse_memory(memory)
        except BrainencInputError as error:
            problems.append(error.problem)
    if problems:
        raise BrainencInputError(None, "; ".join(problems))


def _backend_problem(backend: str) -> str | None:
    from brainenc.encoding import resolve_backend

    try:
        resolve_backend(backend)
    except (ValueError, ImportError, RuntimeError) as error:
        return f"--backend {backend}: {error}"
    if backend == "torch_cuda":
        import torch

        if not torch.cuda.is_available():
            return "--backend torch_cuda needs a CUDA GPU, and PyTorch sees none"
    return None


def resolve_feature_spaces(features: Sequence[str | Path | FeatureSpace],
                           dataset: Dataset) -> list[FeatureSpace]:
    """Each ``--features`` value as a feature space; two values may not name one folder."""
    if isinstance(features, (str, Path, FeatureSpace)):
        features = [features]
    spaces = [item if isinstance(item, FeatureSpace) else
              find_feature_space(item, dataset.feature_root) for item in features]
    if not spaces:
        raise BrainencInputError(None, "--features names no feature space")
    seen: dict[str, Path] = {}
    for space in spaces:
        if space.name in seen:
            raise BrainencInputError(
                space.root, f"two feature spaces share the name {space.name!r} "
                f"({seen[space.name]} and {space.root}); their results would collide")
        seen[space.name] = space.root
    return spaces


@dataclass(frozen=True)
class _Width:
    n_features: int
    path: Path


#: Fraction of a run's events that may fall outside its scan before a warning.
OUTSIDE_SCAN_FRACTION = 0.05
#: An analysed stretch without events longer than this (s, and fraction of the
#: analysed scan) at its start or end is warned about.
UNCOVERED_SECONDS, UNCOVERED_FRACTION = 30.0, 0.2


def _check_features(run: Run, space: FeatureSpace) -> _Width:
    features = space.load(run.stimulus)
    if features.level == "tr" and len(features.data) != run.n_trs:
        raise BrainencInputError(
            features.path, f"TR-level features have {len(features.data)} rows but run "
            f"{run.name!r} has {run.n_trs} analysed volumes; expected one row per volume")
    if features.level == "event":
        _warn_if_misaligned(features.times, run, features.path)
    return _Width(features.n_features, features.path)


def _warn_if_misaligned(times, run: Run, path: Path) -> None:
    """Warn when event times and the run's scan do not line up (shifted or wrong stimulus)."""
    from brainenc.errors import warn_input

    grid, analysed = run.tr_grid, run.response_grid
    start, end = grid.times[0] - grid.tr, grid.times[-1] + grid.tr
    outside = int(((times < start) | (times > end)).sum())
    where = (f"run {run.name!r} of subject {run.subject} (scan {start:.1f} to {end:.1f} s on "
             "the stimulus clock)")
    if outside > OUTSIDE_SCAN_FRACTION * len(times):
        warn_input(f"{path}: {outside} of {len(times)} event times fall outside {where}; "
                   "are the times shifted, in other units, or from another stimulus?")
    first, last = analysed.times[0], analysed.times[-1]
    allowed = max(UNCOVERED_SECONDS, UNCOVERED_FRACTION * (last - first))
    gaps = {"first": times.min() - first, "last": last - times.max()}
    for side, gap in gaps.items():
        if gap > allowed:
            warn_input(f"{path}: the {side} {gap:.0f} s of the analysed volumes of {where} "
                       "have no events; are the times shifted or the transcript incomplete?")


def _check_widths(widths: dict[str, list[_Width]], space: FeatureSpace,
                  modalities: Sequence[str]) -> None:
    first = next(width for m in modalities for width in widths[m])
    for modality in modalities:
        for width in widths[modality]:
            if width.n_features != first.n_features:
                raise BrainencInputError(
                    width.path, f"has {width.n_features} features but {first.path.name} in "
                    f"feature space {space.name!r} has {first.n_features}; every stimulus of "
                    "a feature space needs the same features")


def missing_runs_message(dataset: Dataset, subject: str, modality: str) -> str:
    """Why ``subject`` cannot be analysed without ``modality`` runs, and what would work."""
    present = sorted({run.modality for run in dataset.runs_for(subject)})
    hint = ""
    if present:
        hint = (f"; to analyse the {present[0]} runs alone, use `brainenc encode --modality "
                f"{present[0]}` (or run_encoding)")
    return f"subject {subject} has no {modality} runs (it has {present or 'no'} runs){hint}"


def check_subject_inputs(
    dataset: Dataset,
    subject: str,
    spaces: Sequence[FeatureSpace],
    modalities: Sequence[str] = MODALITIES,
) -> None:
    """Check every file an analysis of ``subject`` will read, before any fit.

    Each run of ``modalities`` needs a readable response file (header checks:
    format, shape, row count against the TR grid, declared space), all with
    the same voxels, and, in every feature space,
    a valid feature file (2-D finite data, sorted times, TR-level rows); all
    stimuli of a feature space need the same width.

    Raises
    ------
    BrainencInputError
        Naming the first file that is wrong and what was expected.
    """
    from brainenc.io.responses import check_run_responses

    runs = {m: dataset.runs_for(subject, m) for m in modalities}
    for modality, found in runs.items():
        if not found:
            raise BrainencInputError(dataset.root, missing_runs_message(dataset, subject, modality))
    n_voxels = {}
    for modality in modalities:
        for run in runs[modality]:
            n_voxels[run.response_paths[0]] = check_run_responses(run)[1]
    if len(set(n_voxels.values())) > 1:
        first, *rest = n_voxels.items()
        other = next(item for item in rest if item[1] != first[1])
        raise BrainencInputError(
            other[0], f"has {other[1]} voxels but {first[0]} of the same subject has {first[1]}; "
            "every run of a subject needs the same voxels")
    for space in spaces:
        widths = {m: [_check_features(run, space) for run in runs[m]] for m in modalities}
        _check_widths(widths, space, modalities)


def input_paths(dataset: Dataset, subject: str | None,
                spaces: Sequence[FeatureSpace] = ()) -> list[Path]:
    """Every input an analysis reads: what an output location must stay clear of."""
    runs = dataset.runs if subject is None else dataset.runs_for(subject)
    paths = [Path(dataset.root)]
    for run in runs:
        paths += list(run.response_paths)
        paths += [p for p in (run.mask_path, run.stimulus_path) if p is not None]
    paths += [space.root for space in spaces]
    return list(dict.fromkeys(paths))

"""What every feature space of one subject's analysis shares: runs, splits, responses, tests.

A :class:`TransferPlan` is built once per subject. It checks the options and
the split, loads and z-scores the responses, and fixes which runs train and
which test each model; any number of feature spaces then go through it
(:mod:`brainenc.transfer.models`), reusing all of it.
"""
from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from brainenc.checks import check_analysis_options, missing_runs_message
from brainenc.design import get_preset
from brainenc.errors import BrainencInputError, BrainencInputWarning
from brainenc.inference import default_max_lag
from brainenc.io.dataset import MODALITIES, Dataset, Run
from brainenc.io.responses import response_shape
from brainenc.transfer.memory import parse_memory, response_chunk
from brainenc.transfer.responses import SubjectResponses

#: (training run indices, test run indices) of each model of one modality.
Folds = list[tuple[list[int], list[int]]]


def other_modality(modality: str) -> str:
    return "movie" if modality == "story" else "story"


@dataclass(frozen=True)
class AnalysisOptions:
    """The settings of an analysis that do not depend on the feature space."""

    preset: object
    alphas: np.ndarray
    score_func: str
    significance: bool
    max_lag: int | None
    fdr_q: float
    backend: str
    n_targets_batch: int
    memory: int | None = None


@dataclass
class TransferPlan:
    """Runs, splits, responses and test settings of one subject's analysis.

    Attributes
    ----------
    dataset : Dataset
    subject : str
    options : AnalysisOptions
    runs : dict of str to list of Run
        Per modality, in the dataset's order.
    chosen : dict of str to list of int or None
        Per modality, the named test runs (indices into ``runs``), or None for
        leave-one-run-out.
    folds : dict of str to Folds
    cross_idx : dict of str to list of int
        Per training modality, the runs of the other modality its models predict.
    lags : dict of str to int or None
        Autocorrelation lags of each modality's tests; None without tests.
    store : SubjectResponses
        Z-scored float32 responses (TRs × voxels) of every run, in memory or
        read batch by batch (:mod:`brainenc.transfer.responses`).
    modalities : tuple of str
        The modalities analysed: both (the four directions of a transfer
        analysis) or one (its within-modality direction only).
    """

    dataset: Dataset
    subject: str
    options: AnalysisOptions
    runs: dict[str, list[Run]]
    chosen: dict[str, list[int] | None]
    folds: dict[str, Folds]
    cross_idx: dict[str, list[int]]
    lags: dict[str, int] | None
    store: SubjectResponses
    modalities: tuple[str, ...] = MODALITIES

    @property
    def n_voxels(self) -> int:
        return self.store.n_voxels

    @property
    def constant(self) -> np.ndarray:
        """Voxels constant in every run of a modality (scored NaN)."""
        return self.store.constant

    @property
    def responses(self) -> dict[str, list[np.ndarray]]:
        """Every run's responses, per modality (a plan that holds them in memory only)."""
        return {m: self.store.all_runs(m) for m in self.modalities}

    @property
    def cross_modal(self) -> bool:
        """Whether both modalities are analysed, so that models predict across them."""
        return len(self.modalities) == 2

    @property
    def directions(self) -> tuple[str, ...]:
        """The directions scored: within each analysed modality, then across them."""
        within = tuple(f"{m}_to_{m}" for m in self.modalities)
        if not self.cross_modal:
            return within
        return within + tuple(f"{m}_to_{other_modality(m)}" for m in self.modalities)

    def run_lengths(self, modality: str) -> list[int]:
        return self.store.run_lengths(modality)

    def stack_responses(self, modality: str, indices: Sequence[int], columns: slice) -> np.ndarray:
        """Response rows of the runs at ``indices`` for the voxels ``columns``."""
        return self.store.stack(modality, indices, columns)

    @property
    def columns(self) -> slice:
        """The voxels this plan analyses: all of them, or a chunk's."""
        return self.store.columns

    def batches(self) -> list[slice]:
        """Voxel batches of at most ``n_targets_batch`` columns: those of the whole subject,
        cut to the plan's voxels."""
        step = self.options.n_targets_batch
        first, last = self.columns.start, self.columns.stop
        starts = range(first - first % step, last, step)
        return [slice(max(v0, first), min(v0 + step, last)) for v0 in starts]

    def split_settings(self) -> dict:
        """Run names of every fold and cross-modal test set, per training modality."""
        split = {}
        for modality in self.modalities:
            names = [run.name for run in self.runs[modality]]
            split[modality] = {
                "test_runs": [[names[i] for i in test] for _, test in self.folds[modality]]}
            if self.cross_modal:
                split[modality]["cross_test_runs"] = [self.runs[other_modality(modality)][i].name
                                                      for i in self.cross_idx[modality]]
        return split


def check_modalities(modalities: Sequence[str]) -> tuple[str, ...]:
    """``modalities`` as a tuple in the canonical order: both, or one of them."""
    if isinstance(modalities, str):
        modalities = (modalities,)
    unknown = [m for m in modalities if m not in MODALITIES]
    if unknown or not modalities or len(set(modalities)) != len(modalities):
        raise BrainencInputError(None, f"modalities must be one or both of {list(MODALITIES)}, "
                                       f"each once; got {list(modalities)}")
    return tuple(m for m in MODALITIES if m in modalities)


def _select_runs(runs: list[Run], names: Sequence[str] | None, modality: str) -> list[int] | None:
    if names is None:
        return None
    known = {run.name: i for i, run in enumerate(runs)}
    missing = [name for name in names if name not in known]
    if missing:
        raise ValueError(f"test {modality} runs {missing} not found; {modality} runs are {list(known)}")
    repeated = sorted({name for name in names if list(names).count(name) > 1})
    if repeated:
        raise BrainencInputError(None, f"--test-{modality} names {repeated} more than once; a run "
                                       "tested twice would count its data twice")
    return [known[name] for name in names]


def _outer_folds(runs: list[Run], chosen: list[int] | None, modality: str, subject: str,
                 root: Path) -> Folds:
    """(training, test) run indices of each model trained on ``modality``.

    Every training set needs at least 2 runs, because the alphas are chosen by
    leave-one-run-out over the training runs.
    """
    names = [run.name for run in runs]

    def listed(indices) -> str:
        return ", ".join(names[i] for i in indices) or "none"

    if chosen is None:
        if len(runs) < 3:
            raise BrainencInputError(
                root,
                f"subject {subject} has {len(runs)} {modality} run(s) ({listed(range(len(runs)))}); "
                f"leave-one-run-out testing needs at least 3 {modality} runs, because each test "
                f"run's model is trained on the other runs and chooses its alphas by "
                f"leave-one-run-out over them, which takes at least 2 training runs",
            )
        return [([j for j in range(len(runs)) if j != i], [i]) for i in range(len(runs))]
    train = [j for j in range(len(runs)) if j not in chosen]
    if len(train) < 2:
        raise BrainencInputError(
            root,
            f"subject {subject} has {len(runs)} {modality} run(s) ({listed(range(len(runs)))}) and "
            f"{len(chosen)} of them are test runs ({listed(chosen)}), leaving {len(train)} for "
            f"training ({listed(train)}); at least 2 {modality} training runs are needed to choose "
            f"the alphas by leave-one-run-out",
        )
    return [(train, chosen)]


def check_repeats_split(runs: list[Run], chosen: list[int] | None, modality: str, subject: str,
                        root: Path, option: str | None = None) -> None:
    """No stimulus may be in a model's training runs and in its test runs.

    Runs presenting the same stimulus again (a repeated test story, a repeated
    clip) share the stimulus: trained on one presentation and tested on another,
    a model would be scored on what it was fitted to. Repeats go to the test
    runs together; repeats left among the training runs only make the alpha
    search optimistic, which a warning says.
    """
    groups: dict[str, list[int]] = {}
    for i, run in enumerate(runs):
        groups.setdefault(run.stimulus, []).append(i)
    option = option or f"--test-{modality}"
    for stimulus, members in groups.items():
        if len(members) < 2:
            continue
        names = " ".join(runs[i].name for i in members)
        if chosen is None:
            raise BrainencInputError(
                root, f"subject {subject}: {modality} stimulus {stimulus!r} is presented in runs "
                f"{names}; leave-one-run-out testing would train on one presentation and test on "
                f"another. Hold its presentations out together ({option} {names}); "
                "docs/noise_ceilings.md explains how repeats are found")
        tested = [i for i in members if i in chosen]
        if tested and len(tested) < len(members):
            raise BrainencInputError(
                root, f"subject {subject}: {modality} stimulus {stimulus!r} is presented in runs "
                f"{names}, but only {' '.join(runs[i].name for i in tested)} of them are test "
                f"runs; name all of them in {option} so that no model trains on a presentation "
                "of a stimulus it is tested on")
        if not tested:
            warnings.warn(
                f"subject {subject}: {modality} stimulus {stimulus!r} is presented in training runs "
                f"{names}; the leave-one-run-out search of the alphas can train on one "
                "presentation and validate on another, which favours weak regularisation",
                BrainencInputWarning, stacklevel=4)


def _max_lags(runs: dict[str, list[Run]], max_lag: int | None) -> dict[str, int]:
    """Autocorrelation lags of each modality's tests: ``max_lag``, or 20 s worth of TRs."""
    if max_lag is not None:
        return {m: int(max_lag) for m in runs}
    return {m: default_max_lag(min(run.tr_grid.tr for run in modality_runs))
            for m, modality_runs in runs.items()}


def _check_max_lag(runs: dict[str, list[Run]], lags: dict[str, int], explicit: bool) -> None:
    """Every tested run must be longer than twice its lags (checked before any fit)."""
    problems = []
    for modality, modality_runs in runs.items():
        short = [f"{run.name} ({run.n_trs} TRs)" for run in modality_runs
                 if run.n_trs <= 2 * lags[modality]]
        if short:
            source = (f"--max-lag {lags[modality]}" if explicit else
                      f"the default --max-lag of {lags[modality]} TRs (20 s)")
            problems.append(f"{source}: the {modality} runs {', '.join(short)} are not longer than "
                            "twice that many TRs")
    if problems:
        raise BrainencInputError(
            None, "; ".join(problems) + ": too short to estimate the response autocorrelation the "
            "significance tests need; use a smaller --max-lag, or --no-significance")


def _warn_about_one_step(runs: dict[str, list[Run]], chosen: dict[str, list[int] | None]) -> None:
    """With 3 runs, the sequential within test rests on one run and a model of two."""
    few = [f"{m} ({len(runs[m])} runs)" for m in runs
           if chosen[m] is None and len(runs[m]) == 3]
    if few:
        warnings.warn(
            f"leave-one-run-out with 3 runs: the within test of {', '.join(few)} rests on one run, "
            "predicted by a model fitted on the two before it (docs/statistics.md); it has little "
            "power. More runs, or named test runs, test more data",
            BrainencInputWarning, stacklevel=3)


def _responses(runs: dict[str, list[Run]], options: AnalysisOptions, chunk_reads: bool,
               columns: slice | None) -> SubjectResponses:
    """The responses in memory, or read by chunks (a memory bound sets the chunk)."""
    if options.memory is None and not chunk_reads:
        return SubjectResponses.in_memory(runs)
    chunk = options.n_targets_batch
    if options.memory is not None:
        first = next(iter(runs.values()))[0]
        n_trs = sum(run.n_trs for modality_runs in runs.values() for run in modality_runs)
        chunk = response_chunk(options.memory, response_shape(first)[1], n_trs, chunk)
    return SubjectResponses.by_chunks(runs, chunk, columns)


def plan_transfer(
    dataset: Dataset,
    subject: str,
    *,
    preset: str | None = None,
    alphas: Sequence[float] | None = None,
    test_runs: Mapping[str, Sequence[str]] | None = None,
    score_func: str = "correlation",
    significance: bool = True,
    max_lag: int | None = None,
    fdr_q: float = 0.05,
    backend: str = "auto",
    n_targets_batch: int = 20000,
    modalities: Sequence[str] = MODALITIES,
    memory: str | int | None = None,
    chunk_reads: bool = False,
    columns: slice | None = None,
) -> TransferPlan:
    """Check the options and the split of one subject, and load its responses.

    Parameters are those of :func:`brainenc.transfer.run_transfer`; ``modalities``
    names the modalities analysed (both, or one for a within-modality analysis,
    :func:`brainenc.transfer.run_encoding`). With ``memory`` (a bound such as
    ``"8GB"``, :mod:`brainenc.transfer.memory`) or ``chunk_reads`` the responses
    are read batch by batch instead of held in memory
    (:class:`~brainenc.transfer.responses.SubjectResponses`). ``columns`` (a slice
    of voxels, read by batch) makes the plan of one voxel chunk of the subject:
    only those voxels are read, checked and analysed. Everything
    that can fail on the options or the runs fails here, before any feature
    is read or any model fitted.

    Returns
    -------
    TransferPlan
    """
    check_analysis_options(significance=significance, max_lag=max_lag, fdr_q=fdr_q, alphas=alphas,
                           n_targets_batch=n_targets_batch, score_func=score_func, backend=backend,
                           memory=memory)
    bound = None if memory is None else parse_memory(memory)
    design_preset = get_preset(preset or dataset.preset)
    alpha_grid = np.asarray(alphas if alphas is not None else design_preset.alphas, dtype=float)
    options = AnalysisOptions(design_preset, alpha_grid, score_func, bool(significance), max_lag,
                              float(fdr_q), backend, int(n_targets_batch), bound)
    modalities = check_modalities(modalities)
    runs = {m: dataset.runs_for(subject, m) for m in modalities}
    for modality in modalities:
        if not runs[modality]:
            raise BrainencInputError(dataset.root, missing_runs_message(dataset, subject, modality))
    defaults = {m: names for m, names in dataset.default_test_runs(subject).items() if m in modalities}
    test_runs = {**defaults, **(test_runs or {})}
    unused = sorted(m for m, names in test_runs.items() if names is not None and m not in modalities)
    if unused:
        raise BrainencInputError(None, f"test runs are named for {unused}, which this analysis "
                                       f"does not use (it analyses {' and '.join(modalities)})")
    chosen = {m: _select_runs(runs[m], None if test_runs is None else test_runs.get(m), m)
              for m in modalities}
    folds = {m: _outer_folds(runs[m], chosen[m], m, subject, dataset.root) for m in modalities}
    for modality in modalities:
        check_repeats_split(runs[modality], chosen[modality], modality, subject, dataset.root)
    cross_idx = {}
    if len(modalities) == 2:
        for modality in modalities:
            other = other_modality(modality)
            cross_idx[modality] = (chosen[other] if chosen[other] is not None
                                   else list(range(len(runs[other]))))
    if max_lag is not None and not significance:
        raise BrainencInputError(None, "--max-lag sets the lags of the significance tests; it has no "
                                       "effect with --no-significance")
    lags = _max_lags(runs, max_lag) if significance else None
    if lags is not None:
        _check_max_lag(runs, lags, explicit=max_lag is not None)
        _warn_about_one_step(runs, chosen)
    store = _responses(runs, options, chunk_reads or columns is not None, columns)
    constant = store.constant
    if constant.any():
        warnings.warn(
            f"{int(constant.sum())} voxels of subject {subject} are constant in every run of a "
            "modality; their scores are NaN",
            stacklevel=3,
        )
    return TransferPlan(dataset, subject, options, runs, chosen, folds, cross_idx, lags,
                        store, modalities)

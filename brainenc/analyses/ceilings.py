"""Noise ceilings from repeated presentations of a stimulus.

When a stimulus is presented ``R`` times, the part of a voxel's response that
repeats is driven by the stimulus and the rest is noise. With each repeat
``Y_r`` z-scored over time, the *explainable variance* of a voxel is

    EV = Var_t(mean_r Y_r) / mean_r Var_t(Y_r)          (ddof 1 in both)

and its bias-corrected form ``EV_c = EV - (1 - EV) / (R - 1)`` (as
voxelwise_tutorials' ``explainable_variance``). ``EV_c`` equals the mean
correlation between pairs of repeats, an unbiased estimate (up to the O(1/T)
bias of a sample correlation) of the fraction of a single presentation's
variance that the stimulus explains; ``sqrt(EV_c)`` is the correlation a
perfect model reaches on one presentation. ``docs/noise_ceilings.md`` has the
derivation, the pooling rule across stimuli and how the layouts mark repeats.
"""
from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from brainenc.errors import BrainencInputError, BrainencInputWarning
from brainenc.io.dataset import MODALITIES, Dataset, Run
from brainenc.io.responses import load_responses

#: Voxels z-scored at a time: bounds the float64 temporaries of one run.
DEFAULT_VOXEL_BATCH = 8192
#: Start times of the repeats of one stimulus may differ by this fraction of a TR
#: before a warning: rows further apart do not see the same part of the stimulus.
GRID_SHIFT_TOLERANCE = 0.25


class _RepeatSums:
    """Sums over the repeats of one stimulus, added one repeat at a time.

    Holds the sum of the z-scored repeats (rows × voxels, float64), the sum of
    their variances (ddof 1) and which voxels were constant in some repeat, so
    that memory does not grow with the number of repeats.
    """

    def __init__(self, voxel_batch: int) -> None:
        self.voxel_batch = voxel_batch
        self.n_repeats = 0
        self.sum_z: np.ndarray | None = None
        self.sum_var: np.ndarray | None = None
        self.constant: np.ndarray | None = None

    def add(self, values: np.ndarray) -> None:
        """Add one repeat, ``values`` of shape (n_trs, n_voxels)."""
        if self.sum_z is None:
            self.sum_z = np.zeros(values.shape, dtype=np.float64)
            self.sum_var = np.zeros(values.shape[1], dtype=np.float64)
            self.constant = np.zeros(values.shape[1], dtype=bool)
        for columns in _batches(values.shape[1], self.voxel_batch):
            z, constant = _zscore(values[:, columns])
            self.sum_z[:, columns] += z
            self.sum_var[columns] += z.var(axis=0, ddof=1)
            self.constant[columns] |= constant
        self.n_repeats += 1

    def explainable_variance(self) -> np.ndarray:
        """``Var_t(mean_r Z_r) / mean_r Var_t(Z_r)`` per voxel; NaN where a repeat is constant."""
        ev = np.empty(self.sum_z.shape[1], dtype=np.float64)
        for columns in _batches(len(ev), self.voxel_batch):
            mean_z = self.sum_z[:, columns] / self.n_repeats
            ev[columns] = mean_z.var(axis=0, ddof=1)
        mean_var = self.sum_var / self.n_repeats
        with np.errstate(invalid="ignore", divide="ignore"):
            ev = ev / mean_var
        ev[self.constant] = np.nan
        return ev


def _batches(n_voxels: int, size: int) -> list[slice]:
    return [slice(start, min(start + size, n_voxels)) for start in range(0, n_voxels, size)]


def _zscore(block: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Columns z-scored over rows (population std, as ``scipy.stats.zscore``), in float64,
    and which columns are constant (those are left at 0)."""
    block = np.asarray(block, dtype=np.float64)
    constant = np.ptp(block, axis=0) == 0
    centred = block - block.mean(axis=0)
    std = np.sqrt((centred**2).mean(axis=0))
    std[constant] = 1.0
    return centred / std, constant


def bias_corrected(ev: np.ndarray, n_repeats: int) -> np.ndarray:
    """``EV - (1 - EV) / (R - 1)``: removes the share of the noise that survives averaging.

    Parameters
    ----------
    ev : ndarray
        Explainable variance of ``R``-repeat averages, as :func:`explainable_variance`
        returns it with ``bias_correction=False``.
    n_repeats : int
        ``R``, at least 2.

    Returns
    -------
    ndarray
        Same shape as ``ev``; equal to the mean correlation between pairs of
        z-scored repeats.
    """
    if n_repeats < 2:
        raise ValueError(f"the bias correction needs at least 2 repeats, got {n_repeats}")
    ev = np.asarray(ev, dtype=np.float64)
    return ev - (1.0 - ev) / (n_repeats - 1)


def explainable_variance(repeats, bias_correction: bool = True) -> np.ndarray:
    """Explainable variance per voxel from repeated presentations of one stimulus.

    Parameters
    ----------
    repeats : array-like of shape (n_repeats, n_trs, n_voxels), or a sequence of
        (n_trs, n_voxels) arrays
        The responses to each presentation, rows aligned on the stimulus.
        Each repeat is z-scored over time here.
    bias_correction : bool
        Return ``EV_c = EV - (1 - EV) / (R - 1)`` (default) instead of ``EV``.

    Returns
    -------
    ndarray of float64, shape (n_voxels,)
        ``EV = Var_t(mean_r Z_r) / mean_r Var_t(Z_r)`` (ddof 1 in both) or its
        bias-corrected form; NaN for a voxel that is constant in some repeat.
        ``EV`` lies in [0, 1]; ``EV_c`` in [-1/(R-1), 1].

    Raises
    ------
    ValueError
        Fewer than 2 repeats or 2 time points, repeats of different shapes,
        an array that is not 3-D, or values that are not finite.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> signal = rng.standard_normal((200, 3))
    >>> repeats = signal + rng.standard_normal((4, 200, 3))   # EV_c near 1/2
    >>> explainable_variance(repeats).round(2)
    array([0.51, 0.53, 0.44])
    """
    repeats = _as_repeats(repeats)
    sums = _RepeatSums(DEFAULT_VOXEL_BATCH)
    for values in repeats:
        sums.add(values)
    ev = sums.explainable_variance()
    return bias_corrected(ev, len(repeats)) if bias_correction else ev


def _as_repeats(repeats) -> np.ndarray:
    """``repeats`` as a checked 3-D array (repeats, time, voxels)."""
    if isinstance(repeats, (list, tuple)):
        shapes = [np.shape(values) for values in repeats]
        if len(set(shapes)) > 1:
            raise ValueError(f"every repeat must have the same shape (n_trs, n_voxels), got "
                             f"{shapes}")
    array = np.asarray(repeats)
    if array.ndim != 3:
        raise ValueError("repeats must have shape (n_repeats, n_trs, n_voxels), got shape "
                         f"{array.shape}")
    if not np.issubdtype(array.dtype, np.number) or np.iscomplexobj(array):
        raise ValueError(f"repeats must hold real numbers, got dtype {array.dtype}")
    n_repeats, n_trs, _ = array.shape
    if n_repeats < 2:
        raise ValueError(f"at least 2 repeats are needed, got {n_repeats}")
    if n_trs < 2:
        raise ValueError(f"at least 2 time points per repeat are needed, got {n_trs}")
    if not np.all(np.isfinite(array)):
        raise ValueError("repeats hold NaN or infinite values")
    return array


def repeated_stimuli(runs: Sequence[Run]) -> dict[str, list[Run]]:
    """The stimuli presented more than once, each with its runs in the given order.

    Parameters
    ----------
    runs : sequence of Run
        Runs of one subject and one modality (``Dataset.runs_for(subject, modality)``).

    Returns
    -------
    dict of str to list of Run
        ``{stimulus: [run, run, ...]}`` for every stimulus with at least two
        runs, in order of first appearance; empty when nothing repeats.

    Raises
    ------
    ValueError
        The runs mix subjects or modalities.
    BrainencInputError
        The runs of one stimulus have different numbers of analysed rows (after
        trimming) or different TRs; the message names each run, its length and
        its response file.

    Warns
    -----
    BrainencInputWarning
        The first analysed rows of two runs of one stimulus lie more than a
        quarter of a TR apart on the stimulus clock (different stimulus onsets):
        their rows do not see the same part of the stimulus.
    """
    for attribute in ("subject", "modality"):
        values = sorted({getattr(run, attribute) for run in runs})
        if len(values) > 1:
            raise ValueError(f"runs of one {attribute} are expected, got {values}")
    groups: dict[str, list[Run]] = {}
    for run in runs:
        groups.setdefault(run.stimulus, []).append(run)
    repeated = {stimulus: group for stimulus, group in groups.items() if len(group) > 1}
    for stimulus, group in repeated.items():
        _check_repeats_align(stimulus, group)
    return repeated


def _describe(group: list[Run]) -> str:
    return "; ".join(f"{run.name}: {run.n_trs} rows, TR {run.tr_grid.tr:g} s "
                     f"({run.response_paths[0]})" for run in group)


def _check_repeats_align(stimulus: str, group: list[Run]) -> None:
    """Repeats need the same rows: same length, same TR, (nearly) the same start time."""
    subject = group[0].subject
    if len({run.n_trs for run in group}) > 1:
        raise BrainencInputError(
            None, f"subject {subject}: the runs of stimulus {stimulus!r} have different numbers "
            f"of analysed rows after trimming ({_describe(group)}); repeats must cover the "
            "stimulus with the same volumes: fix the trims or the response files")
    trs = [run.tr_grid.tr for run in group]
    if max(trs) - min(trs) > 0.01 * min(trs):
        raise BrainencInputError(
            None, f"subject {subject}: the runs of stimulus {stimulus!r} have different TRs "
            f"({_describe(group)}); their rows do not correspond")
    starts = np.array([run.response_grid.times[0] for run in group])
    if starts.max() - starts.min() > GRID_SHIFT_TOLERANCE * min(trs):
        listed = ", ".join(f"{run.name}: {start:g} s" for run, start in zip(group, starts))
        warnings.warn(
            f"subject {subject}: the first analysed volume of the runs of stimulus "
            f"{stimulus!r} falls at different stimulus times ({listed}): the stimulus onsets "
            "differ, so the rows of the repeats are shifted against each other and the noise "
            "ceiling is underestimated; check the onsets", BrainencInputWarning, stacklevel=3)


@dataclass(frozen=True)
class NoiseCeiling:
    """Per-voxel explainable variance of one subject and modality, from repeated stimuli.

    Parameters
    ----------
    subject : str
    modality : {"story", "movie"}
    stimuli : tuple of str
        The repeated stimuli used, in dataset order.
    runs : tuple of tuple of str
        Names of the runs of each stimulus (same order as ``stimuli``).
    n_repeats : tuple of int
        Presentations of each stimulus.
    n_trs : tuple of int
        Analysed rows of each stimulus's runs: the pooling weights.
    ev : ndarray of shape (n_voxels,)
        Explainable variance without bias correction, averaged over the
        stimuli with weights ``n_trs``; NaN where a voxel is constant in a run.
    ev_corrected : ndarray of shape (n_voxels,)
        The bias-corrected explainable variance ``EV_c`` of each stimulus,
        averaged the same way: the fraction of a single presentation's variance
        that the stimuli explain. Can be negative for voxels without signal.
    """

    subject: str
    modality: str
    stimuli: tuple[str, ...]
    runs: tuple[tuple[str, ...], ...]
    n_repeats: tuple[int, ...]
    n_trs: tuple[int, ...]
    ev: np.ndarray
    ev_corrected: np.ndarray

    @property
    def n_voxels(self) -> int:
        """Number of voxels (columns of the responses)."""
        return len(self.ev_corrected)

    def normalise(self, r: np.ndarray, min_ev: float = 0.0) -> NormalisedCorrelation:
        """``r / sqrt(ev_corrected)`` where ``ev_corrected > min_ev``; see
        :func:`normalised_correlation`."""
        return normalised_correlation(r, self.ev_corrected, min_ev=min_ev)


def noise_ceiling(dataset: Dataset, subject: str, modality: str,
                  voxel_batch: int = DEFAULT_VOXEL_BATCH) -> NoiseCeiling:
    """Explainable variance per voxel of one subject and modality, from its repeated stimuli.

    Parameters
    ----------
    dataset : Dataset
        As :func:`brainenc.io.layouts.load_dataset` returns it.
    subject : str
    modality : {"story", "movie"}
    voxel_batch : int
        Voxels z-scored at a time. Runs are read one at a time
        (:func:`brainenc.io.responses.load_responses`), so memory holds one
        run's responses and one float64 sum of the same shape, whatever the
        number of repeats.

    Returns
    -------
    NoiseCeiling

    Raises
    ------
    BrainencInputError
        No stimulus of that subject and modality is presented more than once,
        the repeats of a stimulus do not align (:func:`repeated_stimuli`), the
        runs have different numbers of voxels, or a response file cannot be read.

    Notes
    -----
    Each stimulus gets its own ``EV`` and ``EV_c`` (with its own number of
    repeats); several stimuli are pooled by averaging with weights equal to
    their numbers of rows. Every run is z-scored, so this average is the
    fraction of variance explained over the stimuli concatenated in time, and
    each ``EV_c`` being unbiased, so is the average (concatenating the repeats
    themselves would need the same number of repeats for every stimulus).
    """
    if modality not in MODALITIES:
        raise ValueError(f"modality must be 'story' or 'movie', got {modality!r}")
    if not isinstance(voxel_batch, (int, np.integer)) or voxel_batch < 1:
        raise ValueError(f"voxel_batch must be a positive whole number, got {voxel_batch!r}")
    runs = dataset.runs_for(subject, modality)
    repeated = repeated_stimuli(runs)
    if not repeated:
        raise BrainencInputError(
            dataset.root, f"subject {subject} has no {modality} stimulus presented more than "
            f"once ({len(runs)} {modality} run(s), stimuli "
            f"{sorted({run.stimulus for run in runs})}); a noise ceiling needs repeats "
            "(see docs/noise_ceilings.md for how each layout marks them)")
    per_stimulus = [_stimulus_ev(group, voxel_batch) for group in repeated.values()]
    _check_voxel_counts(repeated, per_stimulus)
    weights = np.array([group[0].n_trs for group in repeated.values()], dtype=np.float64)
    weights /= weights.sum()
    ev = sum(w * stimulus_ev for w, (stimulus_ev, _) in zip(weights, per_stimulus))
    ev_c = sum(w * stimulus_ev_c for w, (_, stimulus_ev_c) in zip(weights, per_stimulus))
    return NoiseCeiling(
        subject=subject, modality=modality, stimuli=tuple(repeated),
        runs=tuple(tuple(run.name for run in group) for group in repeated.values()),
        n_repeats=tuple(len(group) for group in repeated.values()),
        n_trs=tuple(group[0].n_trs for group in repeated.values()),
        ev=ev, ev_corrected=ev_c)


def _stimulus_ev(group: list[Run], voxel_batch: int) -> tuple[np.ndarray, np.ndarray]:
    """``EV`` and ``EV_c`` of one stimulus, its runs read one at a time."""
    sums = _RepeatSums(voxel_batch)
    for run in group:
        values = load_responses(run)
        if sums.sum_z is not None and values.shape != sums.sum_z.shape:
            raise BrainencInputError(
                run.response_paths[0], f"run {run.name} has {values.shape[1]} voxels but the "
                f"earlier runs of stimulus {run.stimulus!r} have {sums.sum_z.shape[1]}")
        sums.add(values)
    ev = sums.explainable_variance()
    return ev, bias_corrected(ev, len(group))


def _check_voxel_counts(repeated: dict[str, list[Run]],
                        per_stimulus: list[tuple[np.ndarray, np.ndarray]]) -> None:
    counts = {stimulus: len(ev) for stimulus, (ev, _) in zip(repeated, per_stimulus)}
    if len(set(counts.values())) > 1:
        first = next(iter(repeated.values()))[0]
        raise BrainencInputError(
            first.response_paths[0], f"the repeated stimuli of subject {first.subject} have "
            f"responses with different numbers of voxels: {counts}")


class NormalisedCorrelation(NamedTuple):
    """Correlations divided by their noise ceiling.

    Attributes
    ----------
    values : ndarray of shape (n_voxels,)
        ``r / sqrt(EV_c)`` where ``EV_c > min_ev``; NaN elsewhere.
    n_kept : int
        Voxels where a normalised value was computed (``EV_c > min_ev``, both
        finite); report it beside any summary of ``values``.
    """

    values: np.ndarray
    n_kept: int


def normalised_correlation(r, ev_corrected, min_ev: float = 0.0) -> NormalisedCorrelation:
    """Correlation scores as a fraction of what a perfect model could reach.

    A perfect model predicts the repeatable part of a response, and its
    correlation with one presentation is ``sqrt(EV_c)``; ``r / sqrt(EV_c)`` is
    the share of that ceiling a model reaches.

    Parameters
    ----------
    r : array-like of shape (n_voxels,)
        Correlations between predictions and single-presentation responses.
    ev_corrected : array-like of shape (n_voxels,)
        Bias-corrected explainable variance (:attr:`NoiseCeiling.ev_corrected`).
    min_ev : float
        Voxels with ``EV_c <= min_ev`` are left out (NaN). The default 0 keeps
        every voxel with a positive estimate; where ``EV_c`` is small and noisy
        the ratio is unstable and can exceed 1, so a threshold such as 0.05
        gives steadier summaries.

    Returns
    -------
    NormalisedCorrelation
        ``(values, n_kept)``.

    Raises
    ------
    ValueError
        ``r`` and ``ev_corrected`` differ in shape, or ``min_ev`` is negative
        or not finite.
    """
    r = np.asarray(r, dtype=np.float64)
    ev_corrected = np.asarray(ev_corrected, dtype=np.float64)
    if r.shape != ev_corrected.shape:
        raise ValueError(f"r has shape {r.shape} but ev_corrected has shape "
                         f"{ev_corrected.shape}")
    if not np.isfinite(min_ev) or min_ev < 0:
        raise ValueError(f"min_ev must be a finite number >= 0, got {min_ev!r}")
    with np.errstate(invalid="ignore"):
        kept = np.isfinite(r) & np.isfinite(ev_corrected) & (ev_corrected > min_ev)
    values = np.full(r.shape, np.nan)
    values[kept] = r[kept] / np.sqrt(ev_corrected[kept])
    return NormalisedCorrelation(values, int(kept.sum()))

"""Run the transfer analysis of one subject: one or several feature spaces, batch by batch.

Several feature spaces of one subject share everything that does not depend on
the features (:class:`~brainenc.transfer.plan.TransferPlan`: responses, splits,
the response autocovariance of every batch), so analysing them together costs
less than analysing them one by one. Voxel batches go through every space in
turn: fitted, predicted, scored, tested and (optionally) their weights written,
then discarded.
"""
from __future__ import annotations

import contextlib
from dataclasses import replace
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from tqdm.auto import tqdm

from brainenc.errors import BrainencInputError
from brainenc.io.dataset import MODALITIES, Dataset
from brainenc.io.features import FeatureSpace
from brainenc.io.weights import WeightsWriter
from brainenc.results import TransferResult
from brainenc.transfer.memory import memory_batch
from brainenc.transfer.models import BatchPredictions, SpaceModels, predict_batch, prepare_space
from brainenc.transfer.plan import TransferPlan, plan_transfer
from brainenc.transfer.scores import VoxelScores, batch_noise, score_batch, transfer_result

#: Called after each voxel batch with (columns, predictions by space name and
#: modality, response autocovariance by modality or None).
BatchHook = Callable[[slice, dict[str, dict[str, BatchPredictions]], dict | None], None]


def _weights_writer(plan: TransferPlan, space: SpaceModels, path: Path) -> WeightsWriter:
    leave_one_out = all(chosen is None for chosen in plan.chosen.values())
    model = ("mean of the leave-one-run-out fold models (the model applied across modalities)"
             if leave_one_out else "the model trained on the training runs")
    attrs = {"subject": plan.subject, "feature_space": space.name,
             "space": plan.runs[plan.modalities[0]][0].space, "model": model}
    return WeightsWriter(path, space.n_features // space.n_delays,
                         list(plan.options.preset.delays), plan.n_voxels, attrs, plan.modalities)


def fit_to_memory(plan: TransferPlan, spaces: Sequence[SpaceModels],
                  keep_predictions: bool = False) -> TransferPlan:
    """``plan`` with the voxel batch that keeps a memory-bounded analysis under its bound
    (:func:`~brainenc.transfer.memory.memory_batch`); ``plan`` itself without a bound."""
    if plan.options.memory is None:
        return plan
    n_trs = sum(sum(plan.run_lengths(m)) for m in plan.modalities)
    batch = memory_batch(plan.options.memory, plan.n_voxels, n_trs, spaces,
                         plan.options.n_targets_batch, keep_predictions)
    return replace(plan, options=replace(plan.options, n_targets_batch=batch))


def score_spaces(plan: TransferPlan, spaces: Sequence[SpaceModels], *,
                 weights_paths: Mapping[str, str | Path] | None = None, progress: bool = True,
                 on_batch: BatchHook | None = None) -> dict[str, VoxelScores]:
    """Fit, predict and score every voxel batch of the plan's voxels, for every space.

    The plan's voxels are all of the subject's, or the part a plan of a voxel chunk
    covers (:func:`~brainenc.transfer.plan.plan_transfer` with ``columns``); the scores of
    other voxels stay NaN. The parameters are those of :func:`analyse_spaces`.

    Returns
    -------
    dict of str to VoxelScores
        Per space name.
    """
    names = [space.name for space in spaces]
    if len(set(names)) != len(names):
        raise BrainencInputError(None, f"feature spaces must be distinct, got {names}")
    plan = fit_to_memory(plan, spaces, keep_predictions=on_batch is not None)
    weights_paths = dict(weights_paths or {})
    scores = {name: VoxelScores.empty(plan.n_voxels, plan.directions, plan.modalities)
              for name in names}
    with contextlib.ExitStack() as stack:
        writers = {space.name: stack.enter_context(_weights_writer(plan, space, Path(weights_paths[space.name])))
                   for space in spaces if space.name in weights_paths}
        for columns in tqdm(plan.batches(), desc=f"{plan.subject}: fit and score voxel batches",
                            disable=not progress, leave=False):
            noise = batch_noise(plan, columns)
            predictions = {}
            for space in spaces:
                predicted = {m: predict_batch(plan, space, m, columns) for m in plan.modalities}
                score_batch(plan, space, predicted, noise, columns, scores[space.name])
                if space.name in writers:
                    for m in plan.modalities:
                        writers[space.name].write(m, columns, predicted[m].coef_mean, predicted[m].alphas)
                # only a hook needs every space's predictions at once; without one, memory
                # stays that of one space's batch however many spaces (layers) there are
                if on_batch is not None:
                    predictions[space.name] = predicted
                del predicted
            if on_batch is not None:
                on_batch(columns, predictions, noise)
    return scores


def analyse_spaces(plan: TransferPlan, spaces: Sequence[SpaceModels], *,
                   weights_paths: Mapping[str, str | Path] | None = None, progress: bool = True,
                   on_batch: BatchHook | None = None) -> list[TransferResult]:
    """Fit, predict, score and test every voxel batch of every space; one result per space.

    Parameters
    ----------
    plan : TransferPlan
    spaces : sequence of SpaceModels
        From :func:`~brainenc.transfer.models.prepare_space`, distinct names.
    weights_paths : mapping of str to path, optional
        Per space name, where to write its weights (:mod:`brainenc.io.weights`).
    progress : bool
    on_batch : callable, optional
        Called after each batch with its predictions (analyses that need them,
        such as paired comparisons of spaces).
    """
    scores = score_spaces(plan, spaces, weights_paths=weights_paths, progress=progress,
                          on_batch=on_batch)
    results = [transfer_result(plan, space, scores[space.name]) for space in spaces]
    for result in results:
        if weights_paths and result.feature_space in weights_paths:
            result.weights_path = str(Path(weights_paths[result.feature_space]).resolve())
    return results


def run_transfers(
    dataset: Dataset,
    subject: str,
    features: Sequence[str | FeatureSpace],
    *,
    weights_paths: Mapping[str, str | Path] | None = None,
    progress: bool = True,
    **options,
) -> list[TransferResult]:
    """:func:`run_transfer` for several feature spaces of one subject, sharing their data.

    The responses, splits and test noise estimates are computed once for all
    spaces (:mod:`brainenc.transfer.plan`); each space's result equals what
    :func:`run_transfer` gives for it alone.

    Parameters
    ----------
    dataset : Dataset
    subject : str
    features : sequence of str or FeatureSpace
    weights_paths : mapping of str to path, optional
        Per feature-space name, a ``weights.h5`` to write.
    progress : bool
    **options
        The options of :func:`run_transfer`.

    Returns
    -------
    list of TransferResult
        In the order of ``features``.
    """
    plan = plan_transfer(dataset, subject, **options)
    spaces = [prepare_space(plan, f, progress) for f in features]
    return analyse_spaces(plan, spaces, weights_paths=weights_paths, progress=progress)


def run_transfer(
    dataset: Dataset,
    subject: str,
    features: str | FeatureSpace,
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
    memory: str | int | None = None,
    weights_path: str | Path | None = None,
    progress: bool = True,
    modalities: Sequence[str] = MODALITIES,
) -> TransferResult:
    """Score encoding models within and across modalities, per voxel.

    Parameters
    ----------
    dataset : Dataset
        From :func:`brainenc.io.layouts.load_dataset`.
    subject : str
    features : str or FeatureSpace
        A feature-space name under ``dataset.feature_root``, a folder, or a
        :class:`~brainenc.io.features.FeatureSpace`.
    preset : str, optional
        Design preset (``"huth"``, ``"default"``); defaults to the layout's.
    alphas : sequence of float, optional
        Ridge grid; defaults to the preset's.
    test_runs : mapping, optional
        ``{"story": [...], "movie": [...]}`` run names held out for testing;
        a modality mapped to None is split leave-one-run-out. Default: the
        layout's default test runs (:meth:`~brainenc.io.dataset.Dataset.default_test_runs`:
        the Huth layout's ``wheretheressmoke``), else leave-one-run-out within
        each modality.
    score_func : {"correlation", "r2"}
        How the per-voxel alpha is chosen inside each fit.
    significance : bool
        Test every direction and build the transfer maps (``docs/statistics.md``).
        False skips the tests and the models of the sequential test: p-values
        are NaN and nothing is significant.
    max_lag : int, optional
        Longest lag, in TRs, of the response autocorrelation the tests account
        for. Default: 20 s worth of TRs (10 at a TR of 2 s).
    fdr_q : float
        Benjamini–Hochberg false discovery rate of every map.
    backend : str
        himalaya backend (``"auto"``: GPU when present).
    n_targets_batch : int
        Voxels fitted, predicted and scored at once. Memory grows with this
        batch, not with the number of voxels; the results do not depend on it.
    memory : str or int, optional
        A bound on the memory of the analysis (``"8GB"``, ``"16GiB"``, bytes):
        the responses are read from their files batch by batch and the batch
        (at most ``n_targets_batch``) is the largest that keeps the estimated
        peak under the bound (:mod:`brainenc.transfer.memory`). An error before
        the first fit when the bound is too small.
    weights_path : path-like, optional
        Write the fitted weights there (``weights.h5``, :mod:`brainenc.io.weights`).
    progress : bool
        Show progress bars.
    modalities : sequence of str
        Both modalities (the default: four directions), or one of them for a
        within-modality analysis (:func:`run_encoding`).

    Returns
    -------
    TransferResult
    """
    plan = plan_transfer(dataset, subject, preset=preset, alphas=alphas, test_runs=test_runs,
                         score_func=score_func, significance=significance, max_lag=max_lag,
                         fdr_q=fdr_q, backend=backend, n_targets_batch=n_targets_batch,
                         modalities=modalities, memory=memory)
    space = prepare_space(plan, features, progress)
    paths = {space.name: weights_path} if weights_path is not None else None
    return analyse_spaces(plan, [space], weights_paths=paths, progress=progress)[0]


def run_encoding(
    dataset: Dataset,
    subject: str,
    features: str | FeatureSpace,
    modality: str = "story",
    **options,
) -> TransferResult:
    """Score encoding models within one modality, per voxel (story-only or movie-only data).

    The analysis of :func:`run_transfer` restricted to ``modality``: the same
    split, fits, scores, tests and FDR maps of its within-modality direction,
    equal to that direction of :func:`run_transfer` on the same runs; no
    cross-modal direction and no transfer map.

    Parameters
    ----------
    dataset : Dataset
    subject : str
    features : str or FeatureSpace
    modality : {"story", "movie"}
    **options
        The options of :func:`run_transfer` (``test_runs`` names runs of
        ``modality`` only).

    Returns
    -------
    TransferResult
        With the one direction ``"<modality>_to_<modality>"``.
    """
    return run_transfer(dataset, subject, features, modalities=(modality,), **options)

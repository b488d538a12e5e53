"""Per-voxel scores and tests of one feature space, batch by batch, then its result.

Which prediction is tested against which responses (``docs/statistics.md``):
the within test is direct on named test runs and sequential with
leave-one-run-out splits; the cross-modal test is direct; the
feature-correspondence test permutes the other modality's features; the
transfer maps combine the training modality's within test, the cross-modal
test and the feature-correspondence test.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from brainenc.inference import (
    NoiseAutocovariance,
    alignment_zscores,
    conjunction_pvalues,
    one_sided_pvalues,
    prediction_zscores,
    stouffer,
)
from brainenc.io.dataset import MODALITIES
from brainenc.results import CROSS, DIRECTIONS, TransferResult, split_direction
from brainenc.stats import fdr_bh, prediction_scores, summarize_direction
from brainenc.transfer.models import BatchPredictions, SpaceModels
from brainenc.transfer.plan import TransferPlan, other_modality


def batch_noise(plan: TransferPlan, columns: slice) -> dict[str, NoiseAutocovariance] | None:
    """Each modality's response autocovariance for the voxels ``columns`` (None without tests)."""
    if plan.lags is None:
        return None
    return {m: NoiseAutocovariance.estimate(
                plan.stack_responses(m, range(len(plan.runs[m])), columns), plan.run_lengths(m),
                plan.lags[m])
            for m in plan.modalities}


def within_test_data(plan: TransferPlan, space: SpaceModels, modality: str, batch: BatchPredictions,
                     columns: slice) -> list[tuple[np.ndarray, list[int]]]:
    """(prediction, runs) pairs of the within test, each prediction made without its runs:
    the held-out prediction of named test runs, or each step of the sequential test."""
    models = space.models[modality]
    if not models.chain:
        return [(batch.within, models.test_idx)]
    return [(pred, [step.run]) for step, pred in zip(models.chain, batch.chain, strict=True)]


def combined_zscores(plan: TransferPlan, modality: str, parts: list[tuple[np.ndarray, list[int]]],
                     noise: NoiseAutocovariance, columns: slice) -> np.ndarray:
    """The z-scores of independent (prediction, runs) tests, combined by weighted Stouffer
    (weights √TRs); a single test's own z-score."""
    zscores, weights = [], []
    for pred, runs in parts:
        Y = plan.stack_responses(modality, runs, columns)
        zscores.append(prediction_zscores(pred, Y, noise.runs(runs)))
        weights.append(np.sqrt(sum(plan.run_lengths(modality)[i] for i in runs)))
    return zscores[0] if len(zscores) == 1 else stouffer(np.stack(zscores), weights)


@dataclass
class VoxelScores:
    """Per-voxel outputs of every direction (and each modality's alphas), filled batch by batch."""

    r: dict[str, np.ndarray]
    r2: dict[str, np.ndarray]
    z: dict[str, np.ndarray]
    alignment_z: dict[str, np.ndarray]
    alphas: dict[str, np.ndarray]

    @classmethod
    def empty(cls, n_voxels: int, directions: tuple[str, ...] = DIRECTIONS,
              modalities: tuple[str, ...] = MODALITIES) -> "VoxelScores":
        def nan_per(keys) -> dict[str, np.ndarray]:
            return {key: np.full(n_voxels, np.nan) for key in keys}

        cross = [d for d in directions if d in CROSS]
        return cls(nan_per(directions), nan_per(directions), nan_per(directions), nan_per(cross),
                   nan_per(modalities))


def score_batch(plan: TransferPlan, space: SpaceModels, predictions: dict[str, BatchPredictions],
                noise: dict[str, NoiseAutocovariance] | None, columns: slice,
                scores: VoxelScores) -> None:
    """Score the voxels ``columns`` of one space in every direction of the plan (and test
    them when ``noise`` is given), from each training modality's predictions."""
    for modality in plan.modalities:
        other = other_modality(modality)
        models, batch = space.models[modality], predictions[modality]
        scores.alphas[modality][columns] = batch.alphas
        within, cross = f"{modality}_to_{modality}", f"{modality}_to_{other}"
        targets = [(within, batch.within, modality, models.test_idx)]
        if plan.cross_modal:
            targets.append((cross, batch.across, other, models.cross_idx))
        for direction, pred, target, runs in targets:
            Y = plan.stack_responses(target, runs, columns)
            scores.r[direction][columns], scores.r2[direction][columns] = prediction_scores(pred, Y)
        if noise is None:
            continue
        parts = within_test_data(plan, space, modality, batch, columns)
        scores.z[within][columns] = combined_zscores(plan, modality, parts, noise[modality], columns)
        if not plan.cross_modal:
            continue
        scores.z[cross][columns] = combined_zscores(plan, other, [(batch.across, models.cross_idx)],
                                                    noise[other], columns)
        Y_other = plan.stack_responses(other, models.cross_idx, columns)
        z_align = alignment_zscores(models.X_cross.T @ Y_other, batch.coef_mean, space.n_delays)
        z_align[plan.constant[columns]] = np.nan
        scores.alignment_z[cross][columns] = z_align


def _significance(scores: VoxelScores, fdr_q: float, tested: bool) -> dict:
    """p-values, FDR masks and summaries of every direction and of the transfer maps (no
    transfer summaries when nothing was tested)."""
    r = scores.r
    directions = list(r)
    cross = [d for d in directions if d in CROSS]
    pvalues = {d: one_sided_pvalues(scores.z[d]) for d in directions}
    significant = {d: fdr_bh(pvalues[d], q=fdr_q) for d in directions}
    alignment_p = {d: one_sided_pvalues(scores.alignment_z[d]) for d in cross}
    transfer_p = {}
    for d in cross:
        train = split_direction(d)[0]
        transfer_p[d] = conjunction_pvalues(pvalues[f"{train}_to_{train}"], pvalues[d], alignment_p[d])
    transfer_sig = {d: fdr_bh(transfer_p[d], q=fdr_q) for d in cross}
    return dict(
        pvalues=pvalues, significant=significant, alignment_pvalues=alignment_p,
        transfer_pvalues=transfer_p, transfer_significant=transfer_sig,
        summaries=[summarize_direction(d, r[d], significant[d], fdr_q, tested) for d in directions],
        transfer_summaries=([summarize_direction(d, r[d], transfer_sig[d], fdr_q) for d in cross]
                            if tested else []),
    )


def _cleaning_settings(plan: TransferPlan) -> dict | None:
    """How the responses were cleaned on loading (None: as stored)."""
    cleaning = plan.runs[plan.modalities[0]][0].cleaning
    return None if cleaning is None else cleaning.settings()


def result_settings(plan: TransferPlan, space: SpaceModels) -> dict:
    """The settings a space's result records (``TransferResult.settings``)."""
    options = plan.options
    split = plan.split_settings()
    for modality in plan.modalities:
        names = [run.name for run in plan.runs[modality]]
        split[modality]["sequential_test"] = [
            {"train_runs": names[:step.run], "test_run": names[step.run]}
            for step in space.models[modality].chain]
    return {
        "preset": options.preset.name,
        "delays": list(options.preset.delays),
        "alphas": options.alphas.tolist(),
        "score_func": options.score_func,
        "significance": options.significance,
        "max_lag": plan.lags,
        "fdr_q": options.fdr_q,
        "feature_space_path": str(Path(space.space.root).resolve()),
        "modalities": list(plan.modalities),
        "cleaning": _cleaning_settings(plan),
        **({"aligned_pair": space.pair.aligned, "pair": space.pair.description}
           if plan.cross_modal else {}),
        "n_features": space.n_features,
        "dataset": str(Path(plan.dataset.root).resolve()),
        "layout": plan.dataset.layout,
        "split": split,
        "held_out": ("named test runs" if any(c is not None for c in plan.chosen.values())
                     else "leave-one-run-out"),
        "within_test": {m: None if not options.significance else
                        "held-out test runs" if plan.chosen[m] is not None else
                        "sequential: each run from the third predicted by the runs before it"
                        for m in plan.modalities},
    }


def transfer_result(plan: TransferPlan, space: SpaceModels, scores: VoxelScores) -> TransferResult:
    """The :class:`TransferResult` of a space whose voxels have all been scored."""
    return result_from_scores(plan, space.name, scores, result_settings(plan, space))


def result_from_scores(plan: TransferPlan, feature_space: str, scores: VoxelScores,
                       settings: dict) -> TransferResult:
    """The :class:`TransferResult` of every voxel's ``scores`` (assembled from voxel chunks,
    say), with its p-values and FDR maps over all voxels; ``settings`` from
    :func:`result_settings`."""
    first = plan.runs[plan.modalities[0]][0]
    return TransferResult(
        subject=plan.subject,
        feature_space=feature_space,
        r=scores.r,
        r2=scores.r2,
        z=scores.z,
        alphas=scores.alphas,
        space=first.space,
        mask_path=None if first.mask_path is None else str(Path(first.mask_path).resolve()),
        settings=settings,
        **_significance(scores, plan.options.fdr_q, plan.options.significance),
    )

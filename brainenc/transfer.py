"""The cross-modal transfer analysis of one subject and one feature space.

Four directions are scored per voxel:

* ``story_to_story`` and ``movie_to_movie``: models trained on runs of one
  modality predict held-out runs of the same modality;
* ``story_to_movie`` and ``movie_to_story``: models trained on one modality
  predict the other modality's test runs.

Held-out runs
    By default each modality is split leave-one-run-out: run *i* is predicted
    by the model trained on all other runs of its modality, and the within
    score is computed over all runs' held-out predictions. The same fold models
    serve the cross test: their weights are averaged (a linear model, so this
    equals averaging their predictions) and predict every run of the other
    modality. With named test runs, one model per modality is trained on the
    remaining runs; it predicts its own modality's test runs and the other
    modality's test runs, so within and cross scores share their test data.

Inside every fit, the regularisation of each voxel is chosen by
leave-one-run-out cross-validation over the training runs.
"""
from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from tqdm.auto import tqdm

from brainenc.design import build_design, get_preset, zscore_columns
from brainenc.encoding import VoxelwiseRidge
from brainenc.errors import BrainencInputError
from brainenc.io.dataset import MODALITIES, Dataset, Run
from brainenc.io.features import FeatureSpace, find_feature_space
from brainenc.io.responses import load_responses
from brainenc.results import DIRECTIONS, TransferResult
from brainenc.stats import (
    block_permutation_pvalues,
    fdr_bh,
    pearson_r,
    r2_score,
    summarize_direction,
)


@dataclass
class ModalityData:
    """Design matrices and z-scored responses of one modality's runs."""

    runs: list[Run]
    designs: list[np.ndarray]
    responses: list[np.ndarray]

    @property
    def run_lengths(self) -> list[int]:
        return [len(x) for x in self.designs]

    def stack(self, indices: Sequence[int]) -> tuple[np.ndarray, np.ndarray, list[int]]:
        """Rows of the runs at ``indices``, concatenated in that order."""
        X = np.concatenate([self.designs[i] for i in indices])
        Y = np.concatenate([self.responses[i] for i in indices])
        return X, Y, [len(self.designs[i]) for i in indices]


def load_modality(runs: Sequence[Run], space: FeatureSpace, preset) -> ModalityData:
    """Design matrices (features → TR grid) and z-scored responses of ``runs``."""
    features = [space.load(run.stimulus) for run in runs]
    designs = build_design(features, runs, preset=preset)
    responses = []
    n_voxels = None
    for run in runs:
        Y = load_responses(run)
        if n_voxels is not None and Y.shape[1] != n_voxels:
            raise BrainencInputError(
                run.response_paths[0],
                f"has {Y.shape[1]} voxels but earlier runs of subject {run.subject} have {n_voxels}",
            )
        n_voxels = Y.shape[1]
        responses.append(zscore_columns(Y).astype(np.float32))
    return ModalityData(list(runs), designs, responses)


def _select_runs(runs: list[Run], names: Sequence[str] | None, modality: str) -> list[int] | None:
    if names is None:
        return None
    known = {run.name: i for i, run in enumerate(runs)}
    missing = [name for name in names if name not in known]
    if missing:
        raise ValueError(f"test {modality} runs {missing} not found; {modality} runs are {list(known)}")
    return [known[name] for name in names]


def _constant_voxels(data: ModalityData) -> np.ndarray:
    """Voxels that are constant within every run of a modality."""
    return np.all([np.all(Y == 0, axis=0) for Y in data.responses], axis=0)


def run_transfer(
    dataset: Dataset,
    subject: str,
    features: str | FeatureSpace,
    *,
    preset: str | None = None,
    alphas: Sequence[float] | None = None,
    test_runs: Mapping[str, Sequence[str]] | None = None,
    score_func: str = "correlation",
    n_permutations: int = 1000,
    block_length: int = 10,
    fdr_q: float = 0.05,
    backend: str = "auto",
    n_targets_batch: int = 20000,
    seed: int = 0,
    progress: bool = True,
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
        ``{"story": [...], "movie": [...]}`` run names held out for testing.
        Default: leave-one-run-out within each modality.
    score_func : {"correlation", "r2"}
        How the per-voxel alpha is chosen inside each fit.
    n_permutations, block_length : int
        Block-permutation test of each direction's r (0 permutations skips it:
        p-values are NaN and nothing is significant).
    fdr_q : float
        Benjamini–Hochberg false discovery rate.
    backend : str
        himalaya backend (``"auto"``: GPU when present).
    n_targets_batch : int
        Voxels solved at once (memory bound).
    seed : int
        Seed of the permutations.
    progress : bool
        Show progress bars.

    Returns
    -------
    TransferResult
    """
    design_preset = get_preset(preset or dataset.preset)
    alpha_grid = np.asarray(alphas if alphas is not None else design_preset.alphas, dtype=float)
    space = features if isinstance(features, FeatureSpace) else find_feature_space(
        features, dataset.feature_root)

    data: dict[str, ModalityData] = {}
    for modality in MODALITIES:
        runs = dataset.runs_for(subject, modality)
        if not runs:
            raise ValueError(f"subject {subject} has no {modality} runs in {dataset.root}")
        data[modality] = load_modality(runs, space, design_preset)
    widths = {m: d.designs[0].shape[1] for m, d in data.items()}
    if widths["story"] != widths["movie"]:
        raise BrainencInputError(
            space.root,
            f"story features have {widths['story']} delayed columns but movie features have "
            f"{widths['movie']}; transfer needs one feature space for both modalities",
        )
    n_voxels = {m: d.responses[0].shape[1] for m, d in data.items()}
    if n_voxels["story"] != n_voxels["movie"]:
        raise BrainencInputError(
            data["movie"].runs[0].response_paths[0],
            f"has {n_voxels['movie']} voxels but the story runs have {n_voxels['story']}",
        )
    constant = _constant_voxels(data["story"]) | _constant_voxels(data["movie"])
    if constant.any():
        warnings.warn(
            f"{int(constant.sum())} voxels of subject {subject} are constant in every run of a "
            "modality; their scores are NaN",
            stacklevel=2,
        )

    n_total = int(np.sum(~constant))
    if n_permutations > 0:
        # the smallest attainable p is 1/(n+1); BH flags k voxels only if k/m * q reaches it
        needed = n_total / (fdr_q * (n_permutations + 1))
        if needed > 0.05 * n_total:
            warnings.warn(
                f"with {n_permutations} permutations the smallest p-value is "
                f"1/{n_permutations + 1}: FDR at q={fdr_q} can flag voxels only if at least "
                f"{int(np.ceil(needed))} of {n_total} reach it; use more permutations",
                stacklevel=2,
            )

    def new_model() -> VoxelwiseRidge:
        return VoxelwiseRidge(alphas=alpha_grid, score_func=score_func, backend=backend,
                              n_targets_batch=n_targets_batch, warn_constant=False)

    predictions: dict[str, np.ndarray] = {}
    targets: dict[str, tuple[np.ndarray, list[int]]] = {}
    selected_alphas: dict[str, np.ndarray] = {}
    split = {}
    for modality in MODALITIES:
        other = "movie" if modality == "story" else "story"
        own, cross = data[modality], data[other]
        chosen = _select_runs(own.runs, None if test_runs is None else test_runs.get(modality), modality)
        cross_chosen = _select_runs(cross.runs, None if test_runs is None else test_runs.get(other), other)
        if chosen is None:
            folds = [([j for j in range(len(own.runs)) if j != i], [i]) for i in range(len(own.runs))]
        else:
            folds = [([j for j in range(len(own.runs)) if j not in chosen], chosen)]
        if any(len(train) < 2 for train, _ in folds):
            raise ValueError(
                f"subject {subject}: training on {modality} needs at least 2 training runs "
                f"(for leave-one-run-out alpha selection), has {len(own.runs)} {modality} runs"
            )
        cross_idx = list(range(len(cross.runs))) if cross_chosen is None else cross_chosen
        X_cross, Y_cross, cross_lengths = cross.stack(cross_idx)
        within_pred, within_true, within_lengths = [], [], []
        coef_sum = None
        alphas_folds = []
        for train, test in tqdm(folds, desc=f"{subject} {space.name}: fit on {modality}",
                                disable=not progress, leave=False):
            X_train, Y_train, lengths = own.stack(train)
            model = new_model().fit(X_train, Y_train, runs=lengths)
            X_test, Y_test, test_lengths = own.stack(test)
            within_pred.append(model.predict(X_test))
            within_true.append(Y_test)
            within_lengths += test_lengths
            coef_sum = model.coef_.astype(np.float64) if coef_sum is None else coef_sum + model.coef_
            alphas_folds.append(model.best_alphas_)
        coef_mean = (coef_sum / len(folds)).astype(np.float32)
        within = f"{modality}_to_{modality}"
        across = f"{modality}_to_{other}"
        predictions[within] = np.concatenate(within_pred)
        targets[within] = (np.concatenate(within_true), within_lengths)
        predictions[across] = X_cross @ coef_mean
        targets[across] = (Y_cross, cross_lengths)
        selected_alphas[modality] = np.median(np.stack(alphas_folds), axis=0)
        split[modality] = {
            "test_runs": [[own.runs[i].name for i in test] for _, test in folds],
            "cross_test_runs": [cross.runs[i].name for i in cross_idx],
        }

    r, r2, pvalues, significant, summaries = {}, {}, {}, {}, []
    for direction in tqdm(DIRECTIONS, desc=f"{subject} {space.name}: statistics",
                          disable=not progress, leave=False):
        pred, (Y, lengths) = predictions[direction], targets[direction]
        pred[:, constant] = np.nan
        r[direction] = pearson_r(pred, Y)
        r2[direction] = r2_score(pred, Y)
        if n_permutations > 0:
            pvalues[direction] = block_permutation_pvalues(
                pred, Y, n_permutations=n_permutations, block_length=block_length,
                seed=seed, run_lengths=lengths)
        else:
            pvalues[direction] = np.full(len(r[direction]), np.nan)
        significant[direction] = fdr_bh(pvalues[direction], q=fdr_q)
        summaries.append(summarize_direction(direction, r[direction], significant[direction], fdr_q))

    first = data["story"].runs[0]
    settings = {
        "preset": design_preset.name,
        "delays": list(design_preset.delays),
        "alphas": alpha_grid.tolist(),
        "score_func": score_func,
        "n_permutations": n_permutations,
        "block_length": block_length,
        "fdr_q": fdr_q,
        "seed": seed,
        "feature_space_path": str(space.root),
        "n_features": widths["story"],
        "dataset": str(dataset.root),
        "layout": dataset.layout,
        "split": split,
        "held_out": "named test runs" if test_runs else "leave-one-run-out",
    }
    return TransferResult(
        subject=subject,
        feature_space=space.name,
        r=r,
        r2=r2,
        pvalues=pvalues,
        significant=significant,
        alphas=selected_alphas,
        summaries=summaries,
        space=first.space,
        mask_path=None if first.mask_path is None else str(first.mask_path),
        settings=settings,
    )

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

Aligned pairs
    Transfer means something only when the story and movie features share
    coordinates. The files of the space record whether they do (attributes
    ``aligned_pair`` and ``pair``, :mod:`brainenc.io.features`); the files of
    the analysed stimuli must agree, the result's settings keep both, and an
    unaligned space (a baseline) or one with unknown alignment is warned about.

Inside every fit, the regularisation of each voxel is chosen by
leave-one-run-out cross-validation over the training runs.

Memory
    Each training design is factorised once
    (:meth:`brainenc.encoding.VoxelwiseRidge.factor`); then voxels go through
    in batches: a batch is fitted, predicted in all four directions, scored
    (r, R², permutation p-values) and discarded before the next one. Apart
    from the loaded responses, memory is set by the batch size, not by the
    number of voxels. A voxel's results do not depend on its batch: the
    permutations come from the seed and the run layout alone.
"""
from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from brainenc.checks import check_analysis_options
from brainenc.design import build_design, get_preset, zscore_columns
from brainenc.encoding import FactoredDesign, VoxelwiseRidge
from brainenc.errors import BrainencInputError, BrainencInputWarning
from brainenc.io.dataset import MODALITIES, Dataset, Run
from brainenc.io.features import (
    ALIGNED_PAIR_ATTR,
    PAIR_ATTR,
    FeaturePair,
    FeatureSpace,
    find_feature_space,
    space_pair,
)
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
        X = self.stack_designs(indices)
        Y = self.stack_responses(indices, slice(None))
        return X, Y, [len(self.designs[i]) for i in indices]

    def stack_designs(self, indices: Sequence[int]) -> np.ndarray:
        """Design rows of the runs at ``indices``, concatenated in that order."""
        return np.concatenate([self.designs[i] for i in indices])

    def stack_responses(self, indices: Sequence[int], columns: slice) -> np.ndarray:
        """Response rows of the runs at ``indices`` for the voxels ``columns``."""
        return np.concatenate([self.responses[i][:, columns] for i in indices])


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


def feature_space_pair(space: FeatureSpace, runs: Mapping[str, Sequence[Run]]) -> FeaturePair:
    """Whether the story and movie parts of ``space`` share coordinates, from the files of
    the stimuli of ``runs`` (by modality), which must agree (:func:`space_pair`).

    Stimuli without a file are left out here; loading them reports them.
    """
    paths = {}
    for modality, modality_runs in runs.items():
        stimuli = dict.fromkeys(run.stimulus for run in modality_runs)
        paths[modality] = [space.path_for(s) for s in stimuli if space.path_for(s).is_file()]
    return space_pair(paths)


def _warn_about_pair(pair: FeaturePair, space: FeatureSpace) -> None:
    """Warn when the space is an unaligned baseline or its alignment is unknown."""
    if pair.aligned is None:
        warnings.warn(
            f"feature space {space.name!r} ({space.root}) does not record whether its story and "
            f"movie features share a space (file attribute {ALIGNED_PAIR_ATTR!r} missing): its "
            "cross-modal scores mean something only if they do. Mark every file with "
            f"{ALIGNED_PAIR_ATTR}=True or False and a short {PAIR_ATTR!r} description, e.g. "
            f"write_stimulus_features(path, data, times, {ALIGNED_PAIR_ATTR}=False, "
            f"{PAIR_ATTR}='unaligned: separate encoders')",
            BrainencInputWarning, stacklevel=3)
    elif not pair.aligned:
        warnings.warn(
            f"feature space {space.name!r} pairs story and movie features that do not share a "
            f"space ({pair.description or 'unaligned'}): a baseline, not a transfer space; its "
            "cross-modal scores measure how far unrelated coordinates happen to agree",
            BrainencInputWarning, stacklevel=3)


def _select_runs(runs: list[Run], names: Sequence[str] | None, modality: str) -> list[int] | None:
    if names is None:
        return None
    known = {run.name: i for i, run in enumerate(runs)}
    missing = [name for name in names if name not in known]
    if missing:
        raise ValueError(f"test {modality} runs {missing} not found; {modality} runs are {list(known)}")
    return [known[name] for name in names]


Folds = list[tuple[list[int], list[int]]]


def _check_block_length(runs: dict[str, list[Run]], chosen: dict[str, list[int] | None],
                        block_length: int) -> None:
    """Every test set must hold at least 2 full permutation blocks (checked before any fit)."""
    for modality, modality_runs in runs.items():
        test = chosen[modality] if chosen[modality] is not None else range(len(modality_runs))
        lengths = [modality_runs[i].n_trs for i in test]
        if sum(n // block_length for n in lengths) < 2:
            raise BrainencInputError(
                None, f"--block-length {block_length}: the {modality} test runs hold "
                f"{sum(lengths)} TRs ({', '.join(map(str, lengths))} per run), fewer than 2 "
                f"full blocks of {block_length} TRs, so there is nothing to permute; use "
                "shorter blocks")


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


def _other(modality: str) -> str:
    return "movie" if modality == "story" else "story"


def _warn_if_too_few_permutations(n_tested: int, n_permutations: int, fdr_q: float) -> None:
    """Warn when the permutation resolution cannot reach what FDR at ``fdr_q`` needs."""
    if n_permutations <= 0:
        return
    # the smallest attainable p is 1/(n+1); BH flags k voxels only if k/m * q reaches it
    needed = n_tested / (fdr_q * (n_permutations + 1))
    if needed > 0.05 * n_tested:
        warnings.warn(
            f"with {n_permutations} permutations the smallest p-value is "
            f"1/{n_permutations + 1}: FDR at q={fdr_q} can flag voxels only if at least "
            f"{int(np.ceil(needed))} of {n_tested} reach it; use more permutations",
            stacklevel=3,
        )


def _constant_voxels(data: ModalityData) -> np.ndarray:
    """Voxels that are constant within every run of a modality."""
    return np.all([np.all(Y == 0, axis=0) for Y in data.responses], axis=0)


@dataclass
class _ModalityModels:
    """The factorised training sets of one modality and what their models predict.

    ``factored[k]`` is the design of ``folds[k]``'s training runs; the fold
    models predict their own test runs (``X_tests[k]``) and, averaged, the
    other modality's runs ``cross_idx`` (``X_cross``).
    """

    folds: Folds
    factored: list[FactoredDesign]
    X_tests: list[np.ndarray]
    cross_idx: list[int]
    X_cross: np.ndarray

    @property
    def test_idx(self) -> list[int]:
        return [i for _, test in self.folds for i in test]


def _factor_modality(own: ModalityData, cross: ModalityData, folds: Folds, cross_idx: list[int],
                     model: VoxelwiseRidge, desc: str, progress: bool) -> _ModalityModels:
    """Factorise the training design of every fold (the part of each fit shared by all voxels)."""
    factored = []
    for train, _ in tqdm(folds, desc=desc, disable=not progress, leave=False):
        lengths = [own.run_lengths[i] for i in train]
        factored.append(model.factor(own.stack_designs(train), runs=lengths))
    X_tests = [own.stack_designs(test) for _, test in folds]
    return _ModalityModels(folds, factored, X_tests, cross_idx, cross.stack_designs(cross_idx))


def _predict_voxels(models: _ModalityModels, own: ModalityData,
                    columns: slice) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Within and cross predictions for the voxels ``columns``, and the median selected alphas.

    Each fold's model predicts its own test runs; the mean of the fold
    weights (accumulated in float64) predicts the other modality.
    """
    within, alphas, coef_sum = [], [], None
    for (train, _), factored, X_test in zip(models.folds, models.factored, models.X_tests, strict=True):
        solution = factored.solve(own.stack_responses(train, columns))
        within.append(X_test @ solution.coef)
        alphas.append(solution.best_alphas)
        coef = solution.coef
        coef_sum = coef.astype(np.float64) if coef_sum is None else coef_sum + coef
    coef_mean = (coef_sum / len(models.folds)).astype(np.float32)
    return np.concatenate(within), models.X_cross @ coef_mean, np.median(np.stack(alphas), axis=0)


def _score_voxels(pred: np.ndarray, Y: np.ndarray, lengths: list[int], n_permutations: int,
                  block_length: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """r, R² and block-permutation p-values (NaN without permutations) of one voxel batch."""
    r = pearson_r(pred, Y)
    r2 = r2_score(pred, Y)
    if n_permutations > 0:
        # the permutations depend on the seed and the run layout only: every batch gets the same
        p = block_permutation_pvalues(pred, Y, n_permutations=n_permutations,
                                      block_length=block_length, seed=seed, run_lengths=lengths)
    else:
        p = np.full(len(r), np.nan)
    return r, r2, p


@dataclass
class _VoxelScores:
    """Per-voxel outputs of every direction (and each modality's alphas), filled batch by batch."""

    r: dict[str, np.ndarray]
    r2: dict[str, np.ndarray]
    pvalues: dict[str, np.ndarray]
    alphas: dict[str, np.ndarray]

    @classmethod
    def empty(cls, n_voxels: int) -> "_VoxelScores":
        def nan_per(keys) -> dict[str, np.ndarray]:
            return {key: np.full(n_voxels, np.nan) for key in keys}

        return cls(nan_per(DIRECTIONS), nan_per(DIRECTIONS), nan_per(DIRECTIONS), nan_per(MODALITIES))


def _fit_and_score(models: dict[str, _ModalityModels], data: dict[str, ModalityData], columns: slice,
                   constant: np.ndarray, scores: _VoxelScores, **test) -> None:
    """Fit the voxels ``columns``, predict them in all four directions and score them.

    ``constant`` marks the batch's voxels that get NaN scores; ``test`` holds
    the permutation settings of :func:`_score_voxels`.
    """
    for modality in MODALITIES:
        other = _other(modality)
        own = models[modality]
        within, across, scores.alphas[modality][columns] = _predict_voxels(own, data[modality], columns)
        targets = {
            f"{modality}_to_{modality}": (within, data[modality], own.test_idx),
            f"{modality}_to_{other}": (across, data[other], own.cross_idx),
        }
        for direction, (pred, target, indices) in targets.items():
            pred[:, constant] = np.nan
            Y = target.stack_responses(indices, columns)
            lengths = [target.run_lengths[i] for i in indices]
            (scores.r[direction][columns], scores.r2[direction][columns],
             scores.pvalues[direction][columns]) = _score_voxels(pred, Y, lengths, **test)


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
        Voxels fitted, predicted and scored at once. Memory grows with this
        batch (predictions, scores and permutation tests of one batch at a
        time), not with the number of voxels; the results do not depend on it.
    seed : int
        Seed of the permutations.
    progress : bool
        Show progress bars.

    Returns
    -------
    TransferResult
    """
    check_analysis_options(n_permutations=n_permutations, block_length=block_length,
                           fdr_q=fdr_q, alphas=alphas, seed=seed,
                           n_targets_batch=n_targets_batch, score_func=score_func,
                           backend=backend)
    design_preset = get_preset(preset or dataset.preset)
    alpha_grid = np.asarray(alphas if alphas is not None else design_preset.alphas, dtype=float)
    space = features if isinstance(features, FeatureSpace) else find_feature_space(
        features, dataset.feature_root)

    runs = {m: dataset.runs_for(subject, m) for m in MODALITIES}
    for modality in MODALITIES:
        if not runs[modality]:
            raise ValueError(f"subject {subject} has no {modality} runs in {dataset.root}")
    chosen = {m: _select_runs(runs[m], None if test_runs is None else test_runs.get(m), m)
              for m in MODALITIES}
    folds = {m: _outer_folds(runs[m], chosen[m], m, subject, dataset.root) for m in MODALITIES}
    if n_permutations > 0:
        _check_block_length(runs, chosen, block_length)
    pair = feature_space_pair(space, runs)
    data = {m: load_modality(runs[m], space, design_preset) for m in MODALITIES}
    _warn_about_pair(pair, space)
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
    _warn_if_too_few_permutations(int(np.sum(~constant)), n_permutations, fdr_q)

    model = VoxelwiseRidge(alphas=alpha_grid, score_func=score_func, backend=backend,
                           n_targets_batch=n_targets_batch, warn_constant=False)
    models, split = {}, {}
    for modality in MODALITIES:
        other = _other(modality)
        cross_idx = chosen[other] if chosen[other] is not None else list(range(len(runs[other])))
        models[modality] = _factor_modality(
            data[modality], data[other], folds[modality], cross_idx, model,
            f"{subject} {space.name}: factor {modality} designs", progress)
        split[modality] = {
            "test_runs": [[runs[modality][i].name for i in test] for _, test in folds[modality]],
            "cross_test_runs": [runs[other][i].name for i in cross_idx],
        }

    # Fit, predict and score one batch of voxels at a time: memory is bounded by the
    # batch, never by TRs × all voxels.
    n_all = int(n_voxels["story"])
    scores = _VoxelScores.empty(n_all)
    batches = [slice(v0, min(v0 + n_targets_batch, n_all)) for v0 in range(0, n_all, n_targets_batch)]
    for columns in tqdm(batches, desc=f"{subject} {space.name}: fit and score voxel batches",
                        disable=not progress, leave=False):
        _fit_and_score(models, data, columns, constant[columns], scores,
                       n_permutations=n_permutations, block_length=block_length, seed=seed)
    r, r2, pvalues, selected_alphas = scores.r, scores.r2, scores.pvalues, scores.alphas

    significant = {d: fdr_bh(pvalues[d], q=fdr_q) for d in DIRECTIONS}
    summaries = [summarize_direction(d, r[d], significant[d], fdr_q) for d in DIRECTIONS]

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
        "aligned_pair": pair.aligned,
        "pair": pair.description,
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

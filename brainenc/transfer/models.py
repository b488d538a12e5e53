"""One feature space through a plan: design matrices, factorised fits, batch predictions.

For each training modality, every fold's training design is factorised once
(:meth:`brainenc.encoding.VoxelwiseRidge.factor`); so is every step of the
sequential within test of leave-one-run-out splits (run *j* predicted from the
runs before it; ``docs/statistics.md``). A voxel batch is then fitted and
predicted with products only (:func:`predict_batch`).
"""
from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from tqdm.auto import tqdm

from brainenc.design import build_design
from brainenc.encoding import FactoredDesign, VoxelwiseRidge
from brainenc.errors import BrainencInputError, BrainencInputWarning
from brainenc.io.dataset import Run
from brainenc.io.features import (
    ALIGNED_PAIR_ATTR,
    PAIR_ATTR,
    FeaturePair,
    FeatureSpace,
    find_feature_space,
    space_pair,
)
from brainenc.transfer.plan import Folds, TransferPlan, other_modality
from brainenc.transfer.responses import load_modality_responses

#: Fewer features than this make the normal approximation of the feature-correspondence
#: test of the transfer maps (:func:`brainenc.inference.alignment_zscores`) rough.
MIN_ALIGNMENT_FEATURES = 20


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


def load_designs(runs: Sequence[Run], space: FeatureSpace, preset) -> list[np.ndarray]:
    """Design matrices (features → TR grid, delays) of ``runs`` in ``space``."""
    return build_design([space.load(run.stimulus) for run in runs], runs, preset=preset)


def load_modality(runs: Sequence[Run], space: FeatureSpace, preset) -> ModalityData:
    """Design matrices and z-scored responses of ``runs``."""
    return ModalityData(list(runs), load_designs(runs, space, preset), load_modality_responses(runs))


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
            BrainencInputWarning, stacklevel=4)
    elif not pair.aligned:
        warnings.warn(
            f"feature space {space.name!r} pairs story and movie features that do not share a "
            f"space ({pair.description or 'unaligned'}): a baseline, not a transfer space; its "
            "cross-modal scores measure how far unrelated coordinates happen to agree",
            BrainencInputWarning, stacklevel=4)


def _warn_if_few_features(n_features: int, space: FeatureSpace, significance: bool) -> None:
    if significance and n_features < MIN_ALIGNMENT_FEATURES:
        warnings.warn(
            f"feature space {space.name!r} has {n_features} features: the transfer maps' test of "
            f"the feature correspondence permutes them, and with fewer than "
            f"{MIN_ALIGNMENT_FEATURES} its normal approximation (and so the transfer p-values) "
            "is rough", BrainencInputWarning, stacklevel=4)


@dataclass
class ChainStep:
    """One step of the sequential within test: run ``run`` predicted from the runs before it.

    ``fold`` is the index of a leave-one-run-out fold with the same training
    runs (the last step's), whose model serves; otherwise ``factored`` is the
    design of the runs before ``run``.
    """

    run: int
    X_test: np.ndarray
    factored: FactoredDesign | None = None
    fold: int | None = None


@dataclass
class ModalityModels:
    """The factorised training sets of one modality and what their models predict.

    ``factored[k]`` is the design of ``folds[k]``'s training runs; the fold
    models predict their own test runs (``X_tests[k]``) and, averaged, the
    other modality's runs ``cross_idx`` (``X_cross``; empty and None when one
    modality is analysed). ``chain`` holds the
    models of the sequential within test (leave-one-run-out splits only).
    """

    folds: Folds
    factored: list[FactoredDesign]
    X_tests: list[np.ndarray]
    cross_idx: list[int]
    X_cross: np.ndarray | None
    chain: list[ChainStep]

    @property
    def test_idx(self) -> list[int]:
        return [i for _, test in self.folds for i in test]


def _chain_runs(folds: Folds) -> list[int]:
    """Runs predicted by the sequential test: with leave-one-run-out folds, every run
    from the third on (each model needs 2 earlier runs to choose its alphas); none
    with named test runs, whose test is direct."""
    leave_one_out = len(folds) > 1
    return list(range(2, len(folds))) if leave_one_out else []


def _factor_modality(designs: list[np.ndarray], cross_designs: list[np.ndarray] | None, folds: Folds,
                     cross_idx: list[int], model: VoxelwiseRidge, desc: str, progress: bool,
                     significance: bool) -> ModalityModels:
    """Factorise the training design of every fold, and of every step of the sequential
    test when significance is tested (the part of each fit shared by all voxels)."""
    lengths = [len(x) for x in designs]
    chain_runs = _chain_runs(folds) if significance else []
    factored, chain = [], []
    with tqdm(total=len(folds) + len(chain_runs), desc=desc, disable=not progress,
              leave=False) as bar:
        for train, _ in folds:
            factored.append(model.factor(np.concatenate([designs[i] for i in train]),
                                         groups=[lengths[i] for i in train]))
            bar.update()
        for j in chain_runs:
            earlier = list(range(j))
            same = [f for f, (train, _) in enumerate(folds) if train == earlier]
            if same:
                chain.append(ChainStep(j, designs[j], fold=same[0]))
            else:
                step = model.factor(np.concatenate(designs[:j]), groups=lengths[:j])
                chain.append(ChainStep(j, designs[j], factored=step))
            bar.update()
    X_tests = [np.concatenate([designs[i] for i in test]) for _, test in folds]
    X_cross = None if cross_designs is None else np.concatenate([cross_designs[i] for i in cross_idx])
    return ModalityModels(folds, factored, X_tests, cross_idx, X_cross, chain)


@dataclass
class SpaceModels:
    """A feature space prepared for the voxel batches of a plan.

    Attributes
    ----------
    space : FeatureSpace
    pair : FeaturePair
        Whether its story and movie parts share coordinates.
    designs : dict of str to list of ndarray
        Per modality, the design of every run.
    models : dict of str to ModalityModels
        Per training modality.
    n_features : int
        Delayed design columns.
    n_delays : int
    """

    space: FeatureSpace
    pair: FeaturePair
    designs: dict[str, list[np.ndarray]]
    models: dict[str, ModalityModels]
    n_features: int
    n_delays: int

    @property
    def name(self) -> str:
        return self.space.name


def prepare_space(plan: TransferPlan, features: str | FeatureSpace,
                  progress: bool = True) -> SpaceModels:
    """Load a feature space's designs for the plan's runs and factorise every fit.

    Raises
    ------
    BrainencInputError
        The space's story and movie designs differ in width, or a file is
        missing or invalid (the message names it).
    """
    dataset, options = plan.dataset, plan.options
    space = features if isinstance(features, FeatureSpace) else find_feature_space(
        features, dataset.feature_root)
    pair = feature_space_pair(space, {m: plan.runs[m] for m in plan.modalities})
    designs = {m: load_designs(plan.runs[m], space, options.preset) for m in plan.modalities}
    if plan.cross_modal:
        _warn_about_pair(pair, space)
    widths = {m: d[0].shape[1] for m, d in designs.items()}
    if len(set(widths.values())) > 1:
        raise BrainencInputError(
            space.root,
            f"story features have {widths['story']} delayed columns but movie features have "
            f"{widths['movie']}; transfer needs one feature space for both modalities",
        )
    n_delays = len(options.preset.delays)
    n_features = widths[plan.modalities[0]]
    if plan.cross_modal:
        _warn_if_few_features(n_features // n_delays, space, options.significance)
    model = VoxelwiseRidge(alphas=options.alphas, score_func=options.score_func,
                           backend=options.backend, n_targets_batch=options.n_targets_batch,
                           warn_constant=False)
    models = {
        m: _factor_modality(designs[m], designs.get(other_modality(m)), plan.folds[m],
                            plan.cross_idx.get(m, []), model,
                            f"{plan.subject} {space.name}: factor {m} designs", progress,
                            options.significance)
        for m in plan.modalities
    }
    return SpaceModels(space, pair, designs, models, n_features, n_delays)


@dataclass
class BatchPredictions:
    """What a modality's models predict for one batch of voxels.

    Attributes
    ----------
    within : ndarray
        The folds' held-out predictions, runs ``test_idx`` stacked.
    across : ndarray or None
        The mean model's predictions of the other modality's runs ``cross_idx``
        (None when one modality is analysed).
    coef_mean : ndarray
        The mean model's weights (delayed features × voxels): the model that
        predicts across modalities.
    chain : list of ndarray
        The sequential test's prediction of each step's run.
    alphas : ndarray
        Median over folds of the selected alphas (a value of the grid, :func:`grid_median`).
    """

    within: np.ndarray
    across: np.ndarray | None
    coef_mean: np.ndarray
    chain: list[np.ndarray]
    alphas: np.ndarray


def grid_median(alphas: np.ndarray) -> np.ndarray:
    """Per voxel (column), the median of the fold models' alphas (rows) taken as the lower
    middle value, so that it is always one of the alphas of the grid."""
    return np.sort(alphas, axis=0)[(len(alphas) - 1) // 2]


def predict_batch(plan: TransferPlan, space: SpaceModels, modality: str,
                  columns: slice) -> BatchPredictions:
    """Fit the models trained on ``modality`` for the voxels ``columns`` and predict.

    Each fold's model predicts its own test runs; the mean of the fold
    weights (accumulated in float64) predicts the other modality. Voxels
    constant in the plan get NaN predictions.
    """
    models = space.models[modality]
    within, alphas, coefs, coef_sum = [], [], [], None
    for (train, _), factored, X_test in zip(models.folds, models.factored, models.X_tests, strict=True):
        solution = factored.solve(plan.stack_responses(modality, train, columns))
        within.append(X_test @ solution.coef)
        alphas.append(solution.best_alphas)
        coefs.append(solution.coef)
        coef_sum = solution.coef.astype(np.float64) if coef_sum is None else coef_sum + solution.coef
    coef_mean = (coef_sum / len(models.folds)).astype(np.float32)
    chain = []
    for step in models.chain:
        coef = (coefs[step.fold] if step.fold is not None else
                step.factored.solve(plan.stack_responses(modality, range(step.run), columns)).coef)
        chain.append(step.X_test @ coef)
    across = None if models.X_cross is None else models.X_cross @ coef_mean
    batch = BatchPredictions(np.concatenate(within), across, coef_mean, chain,
                             grid_median(np.stack(alphas)))
    constant = plan.constant[columns]
    for pred in (batch.within, batch.across, *batch.chain):
        if pred is not None:
            pred[:, constant] = np.nan
    return batch

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

Significance (``docs/statistics.md``)
    Each direction's p-value tests whether predictions correlate positively
    with the responses beyond what the responses' autocorrelation allows
    (:mod:`brainenc.inference`). A cross-modal prediction is made without the
    other modality's responses, and so is a prediction of named test runs:
    each is tested directly. The pooled leave-one-run-out prediction is not:
    each fold's model contains the other folds' test runs, so its folds are
    dependent. Its within p-value comes instead from a sequential test on the
    same runs: run *j* (from the third on) is predicted by a model trained on
    the runs before it, which makes the steps' statistics independent under
    the null, and the steps are combined by Stouffer's method. The transfer
    maps ask in addition that the training modality's within test be
    significant, and that the cross-modal prediction depend on the pairing of
    story and movie feature coordinates
    (:func:`brainenc.inference.alignment_zscores`), through the intersection-
    union test of the three (:func:`brainenc.inference.conjunction_pvalues`):
    a model that learned nothing from its own modality cannot carry anything
    over, and a correlation that any pairing of the features would give is
    chance alignment, not transfer.

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
    (r, R², test statistics) and discarded before the next one. Apart from the
    loaded responses, memory is set by the batch size, not by the number of
    voxels. A voxel's results do not depend on its batch.
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
from brainenc.inference import (
    NoiseAutocovariance,
    alignment_zscores,
    conjunction_pvalues,
    default_max_lag,
    one_sided_pvalues,
    prediction_zscores,
    stouffer,
)
from brainenc.results import CROSS, DIRECTIONS, TransferResult, split_direction
from brainenc.stats import fdr_bh, prediction_scores, summarize_direction


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


#: Fewer features than this make the normal approximation of the feature-correspondence
#: test of the transfer maps (:func:`brainenc.inference.alignment_zscores`) rough.
MIN_ALIGNMENT_FEATURES = 20


def _warn_if_few_features(n_features: int, space: FeatureSpace, significance: bool) -> None:
    if significance and n_features < MIN_ALIGNMENT_FEATURES:
        warnings.warn(
            f"feature space {space.name!r} has {n_features} features: the transfer maps' test of "
            f"the feature correspondence permutes them, and with fewer than "
            f"{MIN_ALIGNMENT_FEATURES} its normal approximation (and so the transfer p-values) "
            "is rough", BrainencInputWarning, stacklevel=3)


def _max_lags(runs: dict[str, list[Run]], max_lag: int | None) -> dict[str, int]:
    """Autocorrelation lags of each modality's tests: ``max_lag``, or 20 s worth of TRs."""
    if max_lag is not None:
        return {m: int(max_lag) for m in runs}
    return {m: default_max_lag(min(run.tr_grid.tr for run in modality_runs))
            for m, modality_runs in runs.items()}


def _check_max_lag(runs: dict[str, list[Run]], lags: dict[str, int], explicit: bool) -> None:
    """Every tested run must be longer than twice its lags (checked before any fit)."""
    for modality, modality_runs in runs.items():
        short = [f"{run.name} ({run.n_trs} TRs)" for run in modality_runs
                 if run.n_trs <= 2 * lags[modality]]
        if short:
            source = (f"--max-lag {lags[modality]}" if explicit else
                      f"the default --max-lag of {lags[modality]} TRs (20 s)")
            raise BrainencInputError(
                None, f"{source}: the {modality} runs {', '.join(short)} are not longer than "
                f"twice that many TRs, too short to estimate the response autocorrelation the "
                "significance tests need; use a smaller --max-lag, or --no-significance")


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


def _constant_voxels(data: ModalityData) -> np.ndarray:
    """Voxels that are constant within every run of a modality."""
    return np.all([np.all(Y == 0, axis=0) for Y in data.responses], axis=0)


@dataclass
class _ChainStep:
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
class _ModalityModels:
    """The factorised training sets of one modality and what their models predict.

    ``factored[k]`` is the design of ``folds[k]``'s training runs; the fold
    models predict their own test runs (``X_tests[k]``) and, averaged, the
    other modality's runs ``cross_idx`` (``X_cross``). ``chain`` holds the
    models of the sequential within test (leave-one-run-out splits only).
    """

    folds: Folds
    factored: list[FactoredDesign]
    X_tests: list[np.ndarray]
    cross_idx: list[int]
    X_cross: np.ndarray
    chain: list[_ChainStep]

    @property
    def test_idx(self) -> list[int]:
        return [i for _, test in self.folds for i in test]


def _chain_runs(folds: Folds) -> list[int]:
    """Runs predicted by the sequential test: with leave-one-run-out folds, every run
    from the third on (each model needs 2 earlier runs to choose its alphas); none
    with named test runs, whose test is direct."""
    leave_one_out = len(folds) > 1
    return list(range(2, len(folds))) if leave_one_out else []


def _factor_modality(own: ModalityData, cross: ModalityData, folds: Folds, cross_idx: list[int],
                     model: VoxelwiseRidge, desc: str, progress: bool,
                     significance: bool) -> _ModalityModels:
    """Factorise the training design of every fold, and of every step of the sequential
    test when significance is tested (the part of each fit shared by all voxels)."""
    chain_runs = _chain_runs(folds) if significance else []
    factored, chain = [], []
    with tqdm(total=len(folds) + len(chain_runs), desc=desc, disable=not progress,
              leave=False) as bar:
        for train, _ in folds:
            lengths = [own.run_lengths[i] for i in train]
            factored.append(model.factor(own.stack_designs(train), runs=lengths))
            bar.update()
        for j in chain_runs:
            earlier = list(range(j))
            same = [f for f, (train, _) in enumerate(folds) if train == earlier]
            if same:
                chain.append(_ChainStep(j, own.designs[j], fold=same[0]))
            else:
                factored_step = model.factor(own.stack_designs(earlier),
                                             runs=[own.run_lengths[i] for i in earlier])
                chain.append(_ChainStep(j, own.designs[j], factored=factored_step))
            bar.update()
    X_tests = [own.stack_designs(test) for _, test in folds]
    return _ModalityModels(folds, factored, X_tests, cross_idx, cross.stack_designs(cross_idx), chain)


@dataclass
class _BatchPredictions:
    """What a modality's models predict for one batch of voxels."""

    within: np.ndarray           # the folds' held-out predictions, runs ``test_idx`` stacked
    across: np.ndarray           # the mean model's predictions of runs ``cross_idx``
    coef_mean: np.ndarray        # the mean model's weights (delayed features × voxels)
    chain: list[np.ndarray]      # the sequential test's prediction of each step's run
    alphas: np.ndarray           # median over folds of the selected alphas


def _predict_voxels(models: _ModalityModels, own: ModalityData, columns: slice) -> _BatchPredictions:
    """Within, cross and sequential-test predictions for the voxels ``columns``.

    Each fold's model predicts its own test runs; the mean of the fold
    weights (accumulated in float64) predicts the other modality.
    """
    within, alphas, coefs, coef_sum = [], [], [], None
    for (train, _), factored, X_test in zip(models.folds, models.factored, models.X_tests, strict=True):
        solution = factored.solve(own.stack_responses(train, columns))
        within.append(X_test @ solution.coef)
        alphas.append(solution.best_alphas)
        coefs.append(solution.coef)
        coef_sum = solution.coef.astype(np.float64) if coef_sum is None else coef_sum + solution.coef
    coef_mean = (coef_sum / len(models.folds)).astype(np.float32)
    chain = []
    for step in models.chain:
        coef = (coefs[step.fold] if step.fold is not None else
                step.factored.solve(own.stack_responses(range(step.run), columns)).coef)
        chain.append(step.X_test @ coef)
    return _BatchPredictions(np.concatenate(within), models.X_cross @ coef_mean, coef_mean, chain,
                             np.median(np.stack(alphas), axis=0))


def _within_zscores(models: _ModalityModels, batch: _BatchPredictions, own: ModalityData,
                    columns: slice, noise: NoiseAutocovariance) -> np.ndarray:
    """z of the within test: direct on named test runs, sequential with leave-one-run-out."""
    if not models.chain:
        Y = own.stack_responses(models.test_idx, columns)
        return prediction_zscores(batch.within, Y, noise.runs(models.test_idx))
    steps = [prediction_zscores(pred, own.responses[step.run][:, columns], noise.runs([step.run]))
             for step, pred in zip(models.chain, batch.chain, strict=True)]
    weights = np.sqrt([own.run_lengths[step.run] for step in models.chain])
    return stouffer(np.stack(steps), weights)


@dataclass
class _VoxelScores:
    """Per-voxel outputs of every direction (and each modality's alphas), filled batch by batch."""

    r: dict[str, np.ndarray]
    r2: dict[str, np.ndarray]
    z: dict[str, np.ndarray]
    alignment_z: dict[str, np.ndarray]
    alphas: dict[str, np.ndarray]

    @classmethod
    def empty(cls, n_voxels: int) -> "_VoxelScores":
        def nan_per(keys) -> dict[str, np.ndarray]:
            return {key: np.full(n_voxels, np.nan) for key in keys}

        return cls(nan_per(DIRECTIONS), nan_per(DIRECTIONS), nan_per(DIRECTIONS), nan_per(CROSS),
                   nan_per(MODALITIES))


def _fit_and_score(models: dict[str, _ModalityModels], data: dict[str, ModalityData], columns: slice,
                   constant: np.ndarray, scores: _VoxelScores, lags: dict[str, int] | None,
                   n_delays: int) -> None:
    """Fit the voxels ``columns``, predict them in all four directions and score them.

    ``constant`` marks the batch's voxels that get NaN scores; ``lags`` holds
    each modality's autocorrelation lags, or is None to skip the tests;
    ``n_delays`` is the number of delay blocks of the design's columns.
    """
    noise = {}
    if lags is not None:
        for modality in MODALITIES:
            every_run = range(len(data[modality].runs))
            noise[modality] = NoiseAutocovariance.estimate(
                data[modality].stack_responses(every_run, columns), data[modality].run_lengths,
                lags[modality])
    for modality in MODALITIES:
        other = _other(modality)
        own = models[modality]
        batch = _predict_voxels(own, data[modality], columns)
        scores.alphas[modality][columns] = batch.alphas
        for pred in (batch.within, batch.across, *batch.chain):
            pred[:, constant] = np.nan
        targets = {
            f"{modality}_to_{modality}": (batch.within, data[modality], own.test_idx),
            f"{modality}_to_{other}": (batch.across, data[other], own.cross_idx),
        }
        for direction, (pred, target, indices) in targets.items():
            Y = target.stack_responses(indices, columns)
            scores.r[direction][columns], scores.r2[direction][columns] = prediction_scores(pred, Y)
        if lags is not None:
            scores.z[f"{modality}_to_{modality}"][columns] = _within_zscores(
                own, batch, data[modality], columns, noise[modality])
            Y_other = data[other].stack_responses(own.cross_idx, columns)
            cross = f"{modality}_to_{other}"
            scores.z[cross][columns] = prediction_zscores(batch.across, Y_other,
                                                          noise[other].runs(own.cross_idx))
            z_align = alignment_zscores(own.X_cross.T @ Y_other, batch.coef_mean, n_delays)
            z_align[constant] = np.nan
            scores.alignment_z[cross][columns] = z_align


def _significance(scores: _VoxelScores, fdr_q: float) -> dict:
    """p-values, FDR masks and summaries of every direction and of the transfer maps."""
    r = scores.r
    pvalues = {d: one_sided_pvalues(scores.z[d]) for d in DIRECTIONS}
    significant = {d: fdr_bh(pvalues[d], q=fdr_q) for d in DIRECTIONS}
    alignment_p = {d: one_sided_pvalues(scores.alignment_z[d]) for d in CROSS}
    transfer_p = {}
    for d in CROSS:
        train = split_direction(d)[0]
        transfer_p[d] = conjunction_pvalues(pvalues[f"{train}_to_{train}"], pvalues[d], alignment_p[d])
    transfer_sig = {d: fdr_bh(transfer_p[d], q=fdr_q) for d in CROSS}
    return dict(
        pvalues=pvalues, significant=significant, alignment_pvalues=alignment_p,
        transfer_pvalues=transfer_p, transfer_significant=transfer_sig,
        summaries=[summarize_direction(d, r[d], significant[d], fdr_q) for d in DIRECTIONS],
        transfer_summaries=[summarize_direction(d, r[d], transfer_sig[d], fdr_q) for d in CROSS],
    )


def _split_settings(runs: dict[str, list[Run]], models: dict[str, _ModalityModels]) -> dict:
    """Run names of every fold, cross test and sequential-test step, per training modality."""
    split = {}
    for modality in MODALITIES:
        names = [run.name for run in runs[modality]]
        own = models[modality]
        split[modality] = {
            "test_runs": [[names[i] for i in test] for _, test in own.folds],
            "cross_test_runs": [runs[_other(modality)][i].name for i in own.cross_idx],
            "sequential_test": [{"train_runs": names[:step.run], "test_run": names[step.run]}
                                for step in own.chain],
        }
    return split


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
    significance : bool
        Test every direction and build the transfer maps (module notes,
        ``docs/statistics.md``). False skips the tests and the models of the
        sequential test: p-values are NaN and nothing is significant.
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
    progress : bool
        Show progress bars.

    Returns
    -------
    TransferResult
    """
    check_analysis_options(significance=significance, max_lag=max_lag, fdr_q=fdr_q, alphas=alphas,
                           n_targets_batch=n_targets_batch, score_func=score_func, backend=backend)
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
    lags = _max_lags(runs, max_lag)
    if significance:
        _check_max_lag(runs, lags, explicit=max_lag is not None)
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
    _warn_if_few_features(widths["story"] // len(design_preset.delays), space, significance)
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

    model = VoxelwiseRidge(alphas=alpha_grid, score_func=score_func, backend=backend,
                           n_targets_batch=n_targets_batch, warn_constant=False)
    models = {}
    for modality in MODALITIES:
        other = _other(modality)
        cross_idx = chosen[other] if chosen[other] is not None else list(range(len(runs[other])))
        models[modality] = _factor_modality(
            data[modality], data[other], folds[modality], cross_idx, model,
            f"{subject} {space.name}: factor {modality} designs", progress, significance)

    # Fit, predict and score one batch of voxels at a time: memory is bounded by the
    # batch, never by TRs × all voxels.
    n_all = int(n_voxels["story"])
    scores = _VoxelScores.empty(n_all)
    batches = [slice(v0, min(v0 + n_targets_batch, n_all)) for v0 in range(0, n_all, n_targets_batch)]
    for columns in tqdm(batches, desc=f"{subject} {space.name}: fit and score voxel batches",
                        disable=not progress, leave=False):
        _fit_and_score(models, data, columns, constant[columns], scores,
                       lags if significance else None, len(design_preset.delays))
    tests = _significance(scores, fdr_q)

    first = data["story"].runs[0]
    settings = {
        "preset": design_preset.name,
        "delays": list(design_preset.delays),
        "alphas": alpha_grid.tolist(),
        "score_func": score_func,
        "significance": bool(significance),
        "max_lag": lags if significance else None,
        "fdr_q": fdr_q,
        "feature_space_path": str(space.root),
        "aligned_pair": pair.aligned,
        "pair": pair.description,
        "n_features": widths["story"],
        "dataset": str(dataset.root),
        "layout": dataset.layout,
        "split": _split_settings(runs, models),
        "held_out": "named test runs" if test_runs else "leave-one-run-out",
        "within_test": {m: "held-out test runs" if chosen[m] is not None else
                        "sequential: each run from the third predicted by the runs before it"
                        for m in MODALITIES},
    }
    return TransferResult(
        subject=subject,
        feature_space=space.name,
        r=scores.r,
        r2=scores.r2,
        z=scores.z,
        alphas=scores.alphas,
        space=first.space,
        mask_path=None if first.mask_path is None else str(first.mask_path),
        settings=settings,
        **tests,
    )

"""Shared semantic dimensions: principal components of the encoding weights.

For one subject and feature space (its ``weights.h5``, :mod:`brainenc.io.weights`):

Voxels
    The story model's weights of the voxels in the story → story map (FDR), the
    movie model's weights of the voxels in the movie → movie map, and for the
    joint analysis both models' weights of the voxels in both maps: the voxels
    where each model learned something.
Weights
    Averaged over delays, each voxel's weight vector scaled to unit norm (the
    direction of a voxel's tuning, not its strength). The weights are not
    centred: a direction shared by all selected voxels is a dimension of the
    representation too.
Components
    The right singular vectors of the voxels × features weight matrix: unit
    directions in feature space, with the share of the weights' sum of squares
    each explains. Story, movie and joint (both models' weights of the joint
    voxels stacked).
Shared dimensions
    The principal angles between the story and the movie subspaces (their first
    ``n_components`` components), smallest first, and the principal vectors of
    each pair. A small angle means both modalities' models use that direction.
    The null: the same analysis of models fitted on responses whose blocks of
    TRs were shuffled within each run (the same shuffle for every voxel, so the
    voxels keep their correlations; the alphas fixed at the selected ones).
    Those models carry the geometry of the features and of ridge shrinkage and
    nothing of the stimulus–response relation, so their angles say how close
    two subspaces come for reasons other than shared tuning. A pair whose angle
    is below the null's at ``alpha`` and below ``max_angle`` (30° by default: the
    two directions share at least three quarters of their squared length) is a
    shared dimension; its direction is the normalised mean of the two principal
    vectors.
Interpretation
    Stimulus events (story words, movie frames) are scored on each shared
    dimension and joint component by projecting their features, z-scored per
    feature over all events of the modality; the words with the highest and
    lowest mean scores, and the highest- and lowest-scoring movie moments (at
    least 2 s apart), are listed. Voxel loadings (the mean of a joint voxel's unit story and movie
    weights, projected on each joint component) make the maps.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy import linalg
from threadpoolctl import ThreadpoolController

from brainenc.errors import BrainencInputError
from brainenc.io.dataset import MODALITIES, Dataset
from brainenc.io.features import FeatureSpace, find_feature_space
from brainenc.results import TransferResult, write_npz
from brainenc.transfer.models import load_designs
from brainenc.transfer.plan import TransferPlan, plan_transfer

#: Voxels fewer than this in a selection leave its components undefined.
MIN_VOXELS = 10


@dataclass(frozen=True)
class Components:
    """Principal components of unit-norm weight vectors.

    Attributes
    ----------
    vectors : ndarray of shape (n_components, n_features)
        Unit directions in feature space, first component first.
    explained : ndarray of shape (n_components,)
        Share of the weights' sum of squares along each.
    n_voxels : int
        Weight vectors analysed.
    """

    vectors: np.ndarray
    explained: np.ndarray
    n_voxels: int


def unit_columns(weights: np.ndarray) -> np.ndarray:
    """Weight vectors (features × voxels) scaled to unit norm; zero vectors stay zero."""
    norms = np.linalg.norm(weights, axis=0)
    return weights / np.where(norms > 0, norms, 1.0)


_CONTROLLER: list[ThreadpoolController] = []


def _one_thread():
    """A context limiting BLAS to one thread, from one controller made on first use
    (``threadpool_limits`` would rescan the loaded libraries at every call)."""
    if not _CONTROLLER:
        _CONTROLLER.append(ThreadpoolController())
    return _CONTROLLER[0].limit(limits=1)


def principal_components(vectors: np.ndarray, n_components: int) -> Components:
    """Components of the (features × samples) ``vectors``, not centred (module notes)."""
    n_features, n_samples = vectors.shape
    k = min(n_components, n_features, n_samples)
    # small decompositions run faster (and far faster on a busy machine) on one thread
    with _one_thread():
        _, singular, components = np.linalg.svd(vectors.T, full_matrices=False)
    energy = singular**2
    return Components(components[:k], energy[:k] / energy.sum(), n_samples)


def principal_angles(first: np.ndarray, second: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Principal angles (degrees, smallest first) between the row spaces of ``first`` and
    ``second`` (orthonormal rows), with the principal vectors of each (rows, in the same
    order)."""
    with _one_thread():
        u, cosines, vt = np.linalg.svd(first @ second.T)
    k = min(first.shape[0], second.shape[0])
    angles = np.degrees(np.arccos(np.clip(cosines[:k], -1.0, 1.0)))
    return angles, u[:, :k].T @ first, vt[:k] @ second


def subspace_angles_deg(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """Principal angles in degrees (smallest first) between the column spaces of two
    matrices of any widths (features × dimensions)."""
    return np.sort(np.degrees(linalg.subspace_angles(first, second)))


@dataclass
class SharedDimensions:
    """Principal components of one subject's story and movie weights, and what they share.

    Attributes
    ----------
    subject, feature_space : str
    story, movie, joint : Components or None
        None where fewer than :data:`MIN_VOXELS` voxels were selected.
    voxels : dict of str to ndarray of bool
        The voxels of ``"story"``, ``"movie"`` and ``"joint"``.
    angles : ndarray of shape (n_components,)
        Principal angles between the story and movie subspaces, degrees.
    null_angles : ndarray of shape (n_permutations, n_components)
    angle_pvalues : ndarray of shape (n_components,)
        ``(1 + #{null ≤ observed}) / (1 + n_permutations)`` per angle.
    shared : ndarray of shape (n_shared, n_features)
        Unit directions of the pairs whose angle is significant at ``alpha`` and
        below ``max_angle``.
    loadings : ndarray of shape (n_components, n_voxels)
        Joint voxels' loadings on each joint component (NaN elsewhere).
    top_stimuli : dict of str to list of dict
        ``"shared"`` (per shared dimension) and ``"joint"`` (per joint
        component): ``story_top``, ``story_bottom`` (words and mean scores),
        ``movie_top``, ``movie_bottom`` (movie, seconds, score).
    settings : dict
    """

    subject: str
    feature_space: str
    story: Components | None
    movie: Components | None
    joint: Components | None
    voxels: dict[str, np.ndarray]
    angles: np.ndarray
    null_angles: np.ndarray
    angle_pvalues: np.ndarray
    shared: np.ndarray
    loadings: np.ndarray
    top_stimuli: dict[str, list[dict]] = field(default_factory=dict)
    settings: dict = field(default_factory=dict)

    def save(self, path: str | Path) -> Path:
        """Write every array to one ``.npz``; the top stimuli and settings as JSON metadata."""
        arrays = {"angles": self.angles, "null_angles": self.null_angles,
                  "angle_pvalues": self.angle_pvalues, "shared": self.shared,
                  "loadings": self.loadings}
        for name in ("story", "movie", "joint"):
            arrays[f"voxels/{name}"] = self.voxels[name]
            part = getattr(self, name)
            if part is not None:
                arrays[f"{name}/vectors"] = part.vectors
                arrays[f"{name}/explained"] = part.explained
                arrays[f"{name}/n_voxels"] = np.array(part.n_voxels)
        meta = {"subject": self.subject, "feature_space": self.feature_space,
                "top_stimuli": self.top_stimuli, "settings": self.settings}
        return write_npz(path, arrays, meta)

    @classmethod
    def load(cls, path: str | Path) -> "SharedDimensions":
        with np.load(path, allow_pickle=False) as data:
            meta = json.loads(str(data["meta_json"]))
            parts = {}
            for name in ("story", "movie", "joint"):
                parts[name] = (Components(data[f"{name}/vectors"], data[f"{name}/explained"],
                                          int(data[f"{name}/n_voxels"]))
                               if f"{name}/vectors" in data.files else None)
            voxels = {name: data[f"voxels/{name}"] for name in ("story", "movie", "joint")}
            return cls(meta["subject"], meta["feature_space"], parts["story"], parts["movie"],
                       parts["joint"], voxels, data["angles"], data["null_angles"],
                       data["angle_pvalues"], data["shared"], data["loadings"],
                       meta["top_stimuli"], meta["settings"])


# -- the null: models of shuffled responses ------------------------------------------------------


def block_shuffle(rng: np.random.Generator, lengths: list[int], block: int) -> np.ndarray:
    """Row order that shuffles blocks of ``block`` TRs within each run (a partial last
    block stays in place)."""
    order, start = [], 0
    for n in lengths:
        n_full = n // block
        blocks = rng.permutation(n_full)
        rows = (start + blocks[:, None] * block + np.arange(block)).ravel()
        order.append(rows)
        order.append(np.arange(start + n_full * block, start + n))
        start += n
    return np.concatenate(order)


class _MeanModel:
    """The leave-one-run-out mean ridge model of a modality at fixed per-voxel alphas,
    refitted cheaply for any responses of the selected voxels."""

    def __init__(self, designs: list[np.ndarray], folds, alphas: np.ndarray):
        self.designs = [np.asarray(x, dtype=np.float32) for x in designs]
        self.folds = folds
        self.shrink = []
        self.bases = []
        for train, _ in folds:
            X = np.concatenate([designs[i] for i in train]).astype(np.float64)
            s, V = np.linalg.eigh(X.T @ X)
            self.bases.append(V.astype(np.float32))
            self.shrink.append((1.0 / (np.clip(s, 0, None)[:, None] + alphas[None, :])).astype(np.float32))

    def weights(self, responses: list[np.ndarray]) -> np.ndarray:
        """Mean fold weights (delayed features × voxels) for per-run ``responses``."""
        cross = [x.T @ y for x, y in zip(self.designs, responses, strict=True)]
        total = 0.0
        for (train, _), V, shrink in zip(self.folds, self.bases, self.shrink, strict=True):
            C = sum(cross[i] for i in train)
            total = total + V @ ((V.T @ C) * shrink)
        return total / len(self.folds)


def _delay_average(coef: np.ndarray, n_delays: int) -> np.ndarray:
    return coef.reshape(n_delays, -1, coef.shape[1]).mean(axis=0)


def _null_angles(plan: TransferPlan, designs, voxels, alphas, n_components: int,
                 n_permutations: int, block: int, seed: int) -> np.ndarray:
    """Principal angles of story and movie components of models fitted on shuffled responses."""
    n_delays = len(plan.options.preset.delays)
    models = {m: _MeanModel(designs[m], plan.folds[m], alphas[m][voxels[m]]) for m in MODALITIES}
    responses = {m: [np.asarray(Y[:, voxels[m]], dtype=np.float32) for Y in plan.responses[m]]
                 for m in MODALITIES}
    rng = np.random.default_rng(seed)
    null = np.full((n_permutations, n_components), np.nan)
    for k in range(n_permutations):
        parts = {}
        for m in MODALITIES:
            lengths = plan.run_lengths(m)
            order = block_shuffle(rng, lengths, block)
            shuffled = np.concatenate(responses[m])[order]
            bounds = np.cumsum([0, *lengths])
            runs = [shuffled[a:b] for a, b in zip(bounds[:-1], bounds[1:], strict=True)]
            weights = unit_columns(_delay_average(models[m].weights(runs), n_delays))
            parts[m] = principal_components(weights, n_components).vectors
        angles, _, _ = principal_angles(parts["story"], parts["movie"])
        null[k, :len(angles)] = angles
    return null


# -- stimuli --------------------------------------------------------------------------------


def _event_scores(space: FeatureSpace, runs, directions: np.ndarray):
    """Per stimulus of ``runs``: (labels, times, scores on ``directions``), features z-scored
    over all events of the runs' stimuli."""
    stimuli = list(dict.fromkeys(run.stimulus for run in runs))
    features = {s: space.load(s) for s in stimuli}
    pooled = np.concatenate([features[s].data for s in stimuli]).astype(np.float64)
    mean, std = pooled.mean(axis=0), pooled.std(axis=0)
    std[std == 0] = 1.0
    return {s: ((features[s].data - mean) / std) @ directions.T for s in stimuli}, features


def _story_words(runs) -> dict[str, tuple[str, ...]]:
    """The words of each story, read once (the events of its feature file, in order)."""
    from brainenc.io.textgrid import read_word_transcript

    return {run.stimulus: read_word_transcript(run.stimulus_path).events.labels
            for run in runs if run.stimulus_path is not None}


def _top_words(words: dict, scores: dict, k: int, n_top: int) -> tuple[list, list]:
    """Words with the highest and lowest mean score on direction ``k``."""
    totals: dict[str, list[float]] = {}
    for story, values in scores.items():
        labels = words.get(story)
        if labels is None or len(labels) != len(values):
            continue
        for word, value in zip(labels, values[:, k], strict=True):
            totals.setdefault(word, []).append(float(value))
    means = sorted(([w, float(np.mean(v))] for w, v in totals.items()), key=lambda item: item[1])
    return means[::-1][:n_top], means[:n_top]


def _top_moments(scores: dict, features: dict, k: int, n_top: int, spacing_s: float = 2.0):
    """Highest and lowest scoring (movie, seconds, score), at least ``spacing_s`` apart."""
    events = [(movie, float(t), float(v)) for movie, values in scores.items()
              for t, v in zip(features[movie].times, values[:, k], strict=True)]

    def pick(ordered):
        chosen = []
        for movie, t, v in ordered:
            if all(m != movie or abs(t - u) >= spacing_s for m, u, _ in chosen):
                chosen.append([movie, round(t, 2), v])
            if len(chosen) == n_top:
                break
        return chosen

    ordered = sorted(events, key=lambda e: e[2])
    return pick(ordered[::-1]), pick(ordered)


def describe_components(dataset: Dataset, plan: TransferPlan, space: FeatureSpace,
                        directions: np.ndarray, n_top: int = 10) -> list[dict]:
    """Top and bottom story words and movie moments of each direction (module notes)."""
    story_scores, _ = _event_scores(space, plan.runs["story"], directions)
    movie_scores, movie_features = _event_scores(space, plan.runs["movie"], directions)
    words = _story_words(plan.runs["story"])
    described = []
    for k in range(len(directions)):
        story_top, story_bottom = _top_words(words, story_scores, k, n_top)
        movie_top, movie_bottom = _top_moments(movie_scores, movie_features, k, n_top)
        described.append({"story_top": story_top, "story_bottom": story_bottom,
                          "movie_top": movie_top, "movie_bottom": movie_bottom})
    return described


# -- the analysis ------------------------------------------------------------------------------


def _selection(result: TransferResult) -> dict[str, np.ndarray]:
    story = np.asarray(result.significant["story_to_story"], dtype=bool)
    movie = np.asarray(result.significant["movie_to_movie"], dtype=bool)
    return {"story": story, "movie": movie, "joint": story & movie}


def shared_dimensions(
    result: TransferResult,
    dataset: Dataset,
    *,
    n_components: int = 10,
    n_permutations: int = 200,
    block: int = 10,
    alpha: float = 0.05,
    max_angle: float = 30.0,
    n_top: int = 10,
    seed: int = 0,
) -> SharedDimensions:
    """Principal components of a result's weights and the dimensions story and movie share.

    Parameters
    ----------
    result : TransferResult
        With its weights (``result.weights()``) and significance tested.
    dataset : Dataset
        The dataset it was computed from (its designs, responses and stimuli
        serve the null and the interpretation).
    n_components : int
        Components per subspace.
    n_permutations : int
        Shuffles of the responses for the null of the angles.
    block : int
        TRs per shuffled block (longer than the responses' autocorrelation).
    alpha : float
        Level at which an angle is significantly small.
    max_angle : float
        Largest angle (degrees) of a shared dimension.
    n_top : int
        Words and movie moments listed per direction.
    seed : int

    Returns
    -------
    SharedDimensions
    """
    if not result.settings.get("significance", True):
        raise BrainencInputError(None, "shared dimensions need the within-modality maps: analyse "
                                       "with significance tests")
    weights = result.weights()
    voxels = _selection(result)
    averaged = {m: unit_columns(weights.delay_averaged(m, voxels[m])) for m in MODALITIES}
    story = principal_components(averaged["story"], n_components) if voxels["story"].sum() >= MIN_VOXELS else None
    movie = principal_components(averaged["movie"], n_components) if voxels["movie"].sum() >= MIN_VOXELS else None
    joint = None
    loadings = np.full((n_components, result.n_voxels), np.nan)
    if voxels["joint"].sum() >= MIN_VOXELS:
        both = {m: unit_columns(weights.delay_averaged(m, voxels["joint"])) for m in MODALITIES}
        joint = principal_components(np.hstack([both["story"], both["movie"]]), n_components)
        mean_direction = (both["story"] + both["movie"]) / 2
        loadings[:len(joint.vectors)][:, voxels["joint"]] = joint.vectors @ mean_direction
    angles = null = pvalues = np.full(0, np.nan)
    shared = np.zeros((0, weights.n_features))
    plan = _plan_of(result, dataset)
    space = find_feature_space(result.settings["feature_space_path"])
    if story is not None and movie is not None:
        angles, story_vectors, movie_vectors = principal_angles(story.vectors, movie.vectors)
        designs = {m: load_designs(plan.runs[m], space, plan.options.preset) for m in MODALITIES}
        alphas = {m: weights.alphas(m) for m in MODALITIES}
        null = _null_angles(plan, designs, voxels, alphas, len(angles), n_permutations, block, seed)
        pvalues = (1 + (null <= angles[None, :]).sum(axis=0)) / (1 + n_permutations)
        keep = (pvalues <= alpha) & (angles <= max_angle)
        directions = story_vectors[keep] + movie_vectors[keep]
        shared = directions / np.linalg.norm(directions, axis=1, keepdims=True)
    described = {"shared": describe_components(dataset, plan, space, shared, n_top) if len(shared) else [],
                 "joint": describe_components(dataset, plan, space, joint.vectors, n_top)
                 if joint is not None else []}
    settings = {"n_components": n_components, "n_permutations": n_permutations, "block": block,
                "alpha": alpha, "max_angle": max_angle, "seed": seed,
                "voxels": {m: int(v.sum()) for m, v in voxels.items()},
                "selection": "FDR maps of story → story (story), movie → movie (movie), both (joint)"}
    return SharedDimensions(result.subject, result.feature_space, story, movie, joint, voxels,
                            angles, null, pvalues, shared, loadings, described, settings)


def _plan_of(result: TransferResult, dataset: Dataset) -> TransferPlan:
    """The plan of the analysis that produced ``result`` (its runs, split and responses)."""
    split = result.settings.get("split", {})
    named = {m: split[m]["test_runs"][0] for m in MODALITIES
             if m in split and len(split[m]["test_runs"]) == 1}
    return plan_transfer(dataset, result.subject, preset=result.settings.get("preset"),
                         alphas=result.settings.get("alphas"), test_runs=named or None,
                         significance=False)


def summary_dict(dimensions: SharedDimensions) -> dict:
    """What ``summary.json`` records of a shared-dimensions analysis (strict JSON once NaN → null)."""
    def part(name):
        components = getattr(dimensions, name)
        return None if components is None else {
            "n_voxels": int(np.sum(dimensions.voxels[name])),
            "n_weight_vectors": components.n_voxels,
            "explained": components.explained.tolist()}
    return {"feature_space": dimensions.feature_space,
            "story": part("story"), "movie": part("movie"), "joint": part("joint"),
            "angles_deg": dimensions.angles.tolist(), "angle_pvalues": dimensions.angle_pvalues.tolist(),
            "null_median_angles_deg": (np.median(dimensions.null_angles, axis=0).tolist()
                                       if dimensions.null_angles.size else []),
            "n_shared": int(len(dimensions.shared)), "top_stimuli": dimensions.top_stimuli,
            "settings": dimensions.settings}


__all__ = ["Components", "SharedDimensions", "principal_angles", "principal_components",
           "shared_dimensions", "subspace_angles_deg", "summary_dict", "unit_columns"]

"""Shared semantic dimensions: the linear algebra against references, and the simulated subject."""
from __future__ import annotations

import h5py
import numpy as np
import pytest
from scipy import linalg, stats as scipy_stats

from brainenc.analyses.dimensions import (
    SharedDimensions,
    _event_scores,
    _MeanModel,
    _story_words,
    block_shuffle,
    principal_angles,
    principal_components,
    shared_dimensions,
    subspace_angles_deg,
    unit_columns,
)
from brainenc.io.features import find_feature_space
from tests.test_encoding import closed_form

#: Largest angle (degrees) a recovered shared dimension may make with the planted concept
#: subspace. Measured 8–17° on seeds 0–2; a random direction of the 48-dimensional feature
#: space lies 67° away on average and more than 52° away in 99 % of draws.
CONCEPT_BOUND_DEG = 25.0


def test_components_recover_a_planted_subspace_and_explain_in_order():
    rng = np.random.default_rng(0)
    basis = linalg.qr(rng.standard_normal((30, 3)), mode="economic")[0]
    vectors = basis @ (rng.standard_normal((3, 400)) * np.array([[3.0], [2.0], [1.0]]))
    vectors += 0.01 * rng.standard_normal(vectors.shape)
    components = principal_components(vectors, 5)
    assert components.vectors.shape == (5, 30) and components.n_voxels == 400
    np.testing.assert_allclose(components.vectors @ components.vectors.T, np.eye(5), atol=1e-10)
    assert np.all(np.diff(components.explained) <= 0) and components.explained[:3].sum() > 0.999
    assert subspace_angles_deg(components.vectors[:3].T, basis).max() < 1.0


def test_principal_angles_and_vectors_against_scipy():
    rng = np.random.default_rng(1)
    first = linalg.orth(rng.standard_normal((20, 4))).T
    second = linalg.orth(rng.standard_normal((20, 4))).T
    angles, u, v = principal_angles(first, second)
    np.testing.assert_allclose(angles, np.sort(np.degrees(linalg.subspace_angles(first.T, second.T))),
                               atol=1e-8)
    # each pair of principal vectors makes its angle, and they stay in their subspaces
    np.testing.assert_allclose(np.degrees(np.arccos(np.clip(np.sum(u * v, axis=1), -1, 1))), angles,
                               atol=1e-6)
    np.testing.assert_allclose(u @ first.T @ first, u, atol=1e-10)
    np.testing.assert_allclose(np.linalg.norm(unit_columns(rng.standard_normal((5, 7))), axis=0), 1.0)


def test_block_shuffle_keeps_blocks_inside_their_run():
    rng = np.random.default_rng(2)
    order = block_shuffle(rng, [23, 17], 5)
    assert sorted(order) == list(range(40))
    assert set(order[:23]) == set(range(23))                 # runs stay apart
    assert list(order[20:23]) == [20, 21, 22]                # a partial block stays in place
    blocks = order[:20].reshape(4, 5)
    assert np.all(np.diff(blocks, axis=1) == 1) and np.all(blocks[:, 0] % 5 == 0)


def test_the_null_models_equal_the_mean_of_plain_fold_ridges():
    rng = np.random.default_rng(3)
    designs = [rng.standard_normal((40, 6)) for _ in range(3)]
    responses = [rng.standard_normal((40, 4)) for _ in range(3)]
    folds = [([1, 2], [0]), ([0, 2], [1]), ([0, 1], [2])]
    alphas = np.array([0.5, 3.0, 30.0, 300.0])
    got = _MeanModel(designs, folds, alphas).weights(responses)
    expected = np.zeros((6, 4))
    for train, _ in folds:
        X = np.concatenate([designs[i] for i in train])
        Y = np.concatenate([responses[i] for i in train])
        expected += np.stack([closed_form(X, Y[:, v], alphas[v]) for v in range(4)], axis=1) / 3
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-6)


@pytest.fixture(scope="module")
def dimensions(simulated_analysis):
    truth, multimodal = simulated_analysis(0, "multimodal")
    _, unimodal = simulated_analysis(0, "unimodal")
    dataset = simulated_analysis.dataset(0)
    return truth, dataset, {result.feature_space: shared_dimensions(result, dataset)
                            for result in (multimodal, unimodal)}


@pytest.mark.slow
def test_multimodal_weights_share_the_planted_concept_dimensions(dimensions, tmp_path):
    truth, _, found = dimensions
    concept = truth.feature_mixing["concept"]
    multimodal = found["multimodal"]
    assert len(multimodal.shared) >= 2
    for direction in multimodal.shared:
        assert subspace_angles_deg(direction[:, None], concept)[0] < CONCEPT_BOUND_DEG
    assert np.all(multimodal.angles[:len(multimodal.shared)] <= 30.0)
    # the null of shuffled responses is far from the observed angles
    assert np.all(multimodal.angle_pvalues[:len(multimodal.shared)] <= 0.05)
    assert np.median(multimodal.null_angles[:, 0]) > multimodal.angles[0] + 5
    # the unaligned baseline's story and movie models share nothing beyond chance
    assert len(found["unimodal"].shared) == 0
    # loadings exist on the voxels of both within maps only
    joint = multimodal.voxels["joint"]
    assert np.isfinite(multimodal.loadings[0][joint]).all() and np.isnan(multimodal.loadings[0][~joint]).all()
    back = SharedDimensions.load(multimodal.save(tmp_path / "dimensions.npz"))
    np.testing.assert_array_equal(back.shared, multimodal.shared)
    assert back.top_stimuli == multimodal.top_stimuli


@pytest.mark.slow
def test_top_stimuli_of_each_shared_dimension_are_those_built_along_it(dimensions):
    """Each shared dimension u reads the concept latent along Aᵀu: the words (and movie frames)
    that score highest on u are those whose simulated concept vectors point along Aᵀu."""
    truth, dataset, found = dimensions
    shared = found["multimodal"].shared
    concept = truth.feature_mixing["concept"]
    space = find_feature_space("multimodal", dataset.feature_root)
    runs = {m: dataset.runs_for("sim01", m) for m in ("story", "movie")}
    words = _story_words(runs["story"])
    for modality in ("story", "movie"):
        scores, _ = _event_scores(space, runs[modality], shared)
        for k, direction in enumerate(shared):
            latent = {}
            for stimulus in scores:
                with h5py.File(dataset.root / "latents" / f"{stimulus}.hf5", "r") as f:
                    latent[stimulus] = f["concept"][()] @ (concept.T @ direction)
            feature_scores = np.concatenate([scores[s][:, k] for s in scores])
            latent_scores = np.concatenate([latent[s] for s in scores])
            assert abs(np.corrcoef(feature_scores, latent_scores)[0, 1]) > 0.8, (modality, k)
            if modality == "story":
                sign = np.sign(np.corrcoef(feature_scores, latent_scores)[0, 1])
                # the highest-scoring words point along sign · Aᵀu
                top = found["multimodal"].top_stimuli["shared"][k]["story_top"]
                by_word = {}
                for stimulus, values in latent.items():
                    for word, value in zip(words[stimulus], values, strict=True):
                        by_word.setdefault(word, []).append(value)
                means = {w: np.mean(v) for w, v in by_word.items()}
                rank = scipy_stats.rankdata([sign * means[w] for w in means]) / len(means)
                percentile = dict(zip(means, rank))
                assert np.mean([percentile[w] for w, _ in top]) > 0.85, k

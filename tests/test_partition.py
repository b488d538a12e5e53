"""Variance partitioning of two feature spaces (brainenc.analyses.partition).

A small manifest dataset plants, voxel group by voxel group, responses driven
by features of space A only, of space B only, of both (one feature of each),
by a feature that both spaces contain (shared), and by nothing. The partition
must put the planted variance where it belongs, and its R² must equal a plain
numpy ridge (closed form, float64) evaluated at the penalties the models
selected.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from brainenc.analyses.partition import (
    PartitionResult,
    partition_variance,
    run_partition,
)
from brainenc.errors import BrainencInputError
from brainenc.io.layouts import load_dataset

N_TRS = 120
LAG = 2                      # TRs between a feature and the response it drives
DELAYS = (1, 2, 3, 4)        # the manifest layout's "default" preset
NOISE_SD = 1.0
#: Voxel groups: columns of the responses, and which features drive them (weights).
GROUPS = {
    "a_only": range(3),
    "b_only": range(3, 6),
    "both": range(6, 9),
    "shared": range(9, 12),
    "none": range(12, 15),
}
CONSTANT_VOXEL = 15
N_VOXELS = 16
#: Search settings small enough for a fast test (the defaults are exercised on the benchmark).
FAST = {"n_iter": 8, "banded_alphas": np.logspace(-1, 5, 7), "alphas": np.logspace(-1, 5, 13),
        "backend": "numpy", "progress": False}


def _weights(rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Weights of the five latent features (a1, a2, b1, b2, s) on every voxel."""
    W = np.zeros((5, N_VOXELS))
    for v in GROUPS["a_only"]:
        W[0:2, v] = rng.uniform(0.6, 1.0, 2)
    for v in GROUPS["b_only"]:
        W[2:4, v] = rng.uniform(0.6, 1.0, 2)
    for v in GROUPS["both"]:
        W[[0, 2], v] = rng.uniform(0.7, 1.0, 2)
    for v in GROUPS["shared"]:
        W[4, v] = rng.uniform(1.0, 1.3)
    return W


def make_two_space_dataset(root: Path, n_story: int = 4, n_movie: int = 3, seed: int = 0) -> dict:
    """Write a manifest dataset with feature spaces ``spaceA`` = (a1, a2, s) and
    ``spaceB`` = (b1, b2, s), plus ``storyonly`` (features of the stories only).

    Every stimulus has one event per TR, at the TR centre, where the Lanczos
    kernel is 1 and vanishes at the other TRs: the design is the features
    themselves, z-scored and delayed. Responses follow the features ``LAG``
    TRs earlier through :func:`_weights`, plus white noise; one voxel is
    constant. Returns the ground truth: weights, and per run the latents and responses.
    """
    from brainenc.io.features import write_stimulus_features

    rng = np.random.default_rng(seed)
    W = _weights(rng)
    rows = ["subject\trun\tmodality\tresponse\tstimulus\ttr\tstimulus_onset"]
    latents, responses = {}, {}
    root.mkdir(parents=True)
    times = 2.0 * np.arange(N_TRS) + 1.0
    for modality, n_runs in (("story", n_story), ("movie", n_movie)):
        for i in range(n_runs):
            name = f"{modality}{i}"
            z = rng.standard_normal((N_TRS, 5))
            latents[name] = z
            spaces = {"spaceA": z[:, [0, 1, 4]], "spaceB": z[:, [2, 3, 4]]}
            if modality == "story":
                spaces["storyonly"] = z[:, [0, 2]]
            for space, data in spaces.items():
                write_stimulus_features(root / "features" / space / f"{name}.hf5",
                                        data.astype(np.float32), times)
            Y = np.zeros((N_TRS, N_VOXELS))
            Y[LAG:] = z[:-LAG] @ W
            Y += NOISE_SD * rng.standard_normal(Y.shape)
            Y[:, CONSTANT_VOXEL] = 2.0
            responses[name] = Y.astype(np.float32)
            np.save(root / f"{name}.npy", responses[name])
            rows.append(f"s1\t{name}\t{modality}\t{name}.npy\t{name}\t2.0\t0")
    (root / "brainenc_manifest.tsv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    return {"weights": W, "latents": latents, "responses": responses}


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    """The dataset, its ground truth and the story partition (leave-one-run-out)."""
    root = tmp_path_factory.mktemp("partition") / "ds"
    truth = make_two_space_dataset(root)
    dataset = load_dataset(root)
    return dataset, truth, run_partition(dataset, "s1", ["spaceA", "spaceB"], "story", **FAST)


# --------------------------------------------------------------------------- plain references


def _zscore(x: np.ndarray) -> np.ndarray:
    sd = x.std(axis=0)
    return (x - x.mean(axis=0)) / np.where(sd > 0, sd, 1.0)


def _design(features: np.ndarray) -> np.ndarray:
    """z-scored features with FIR delays added within the run (zero-filled)."""
    z = _zscore(features)
    blocks = []
    for d in DELAYS:
        shifted = np.zeros_like(z)
        shifted[d:] = z[:-d]
        blocks.append(shifted)
    return np.hstack(blocks)


def _runs(truth: dict, modality: str = "story") -> tuple[list, list, list]:
    """Designs of A and B and z-scored responses of the modality's runs, from the planted data."""
    names = sorted(name for name in truth["latents"] if name.startswith(modality))
    designs_a = [_design(truth["latents"][n][:, [0, 1, 4]]) for n in names]
    designs_b = [_design(truth["latents"][n][:, [2, 3, 4]]) for n in names]
    return designs_a, designs_b, names


def _ridge_prediction(X_train, Y_train, X_test, penalties: np.ndarray) -> np.ndarray:
    """Closed-form ridge, one voxel at a time: (XᵀX + diag(λ_v))⁻¹ Xᵀy_v.

    ``penalties`` has shape (n_features, n_voxels): the penalty of each column
    for each voxel.
    """
    G, C = X_train.T @ X_train, X_train.T @ Y_train
    out = np.zeros((len(X_test), Y_train.shape[1]))
    for v in range(Y_train.shape[1]):
        out[:, v] = X_test @ np.linalg.solve(G + np.diag(penalties[:, v]), C[:, v])
    return out


def _r2(pred: np.ndarray, Y: np.ndarray) -> np.ndarray:
    return 1.0 - ((Y - pred) ** 2).sum(0) / ((Y - Y.mean(0)) ** 2).sum(0)


def _reference_r2(designs, responses, folds, penalty_columns) -> np.ndarray:
    """Pooled held-out R² of closed-form ridge with ``penalty_columns(k)`` in fold ``k``."""
    preds, tests = [], []
    for k, (train, test) in enumerate(folds):
        X_train = np.concatenate([designs[i] for i in train])
        Y_train = np.concatenate([responses[i] for i in train])
        preds.append(_ridge_prediction(X_train, Y_train, np.concatenate([designs[i] for i in test]),
                                       penalty_columns(k)))
        tests.append(np.concatenate([responses[i] for i in test]))
    return _r2(np.concatenate(preds), np.concatenate(tests))


def _inner_cv_r2(designs, responses, train, penalties: np.ndarray) -> np.ndarray:
    """Mean over leave-one-run-out folds of ``train`` of the validation R² (per voxel)."""
    scores = []
    for val in train:
        rest = [i for i in train if i != val]
        pred = _ridge_prediction(np.concatenate([designs[i] for i in rest]),
                                 np.concatenate([responses[i] for i in rest]), designs[val], penalties)
        scores.append(_r2(pred, responses[val]))
    return np.mean(scores, axis=0)


# --------------------------------------------------------------------------- tests


def _oracle_r2(truth: dict, rows: list[int], modality: str = "story") -> np.ndarray:
    """Pooled R² of the planted signal of the latent features ``rows``, predicting the
    realised responses of every run (each z-scored, as the analysis sees them).

    This is what a model that knew the planted weights would score on the same
    held-out data, so comparing with it leaves out the sampling error of the test
    runs and keeps only that of the fitted weights.
    """
    W = truth["weights"][:, :CONSTANT_VOXEL]
    residual, total = 0.0, 0.0
    for name, z in truth["latents"].items():
        if not name.startswith(modality):
            continue
        full, part = np.zeros((N_TRS, CONSTANT_VOXEL)), np.zeros((N_TRS, CONSTANT_VOXEL))
        full[LAG:], part[LAG:] = z[:-LAG] @ W, z[:-LAG, rows] @ W[rows]
        y = truth["responses"][name][:, :CONSTANT_VOXEL]
        scale = y.std(axis=0)
        pred = (part - part.mean(axis=0)) / scale
        residual = residual + (((y - y.mean(axis=0)) / scale - pred) ** 2).sum(axis=0)
        total += len(y)
    return 1.0 - residual / total


def test_partition_puts_planted_variance_in_the_right_place(planted):
    _, truth, result = planted
    everything = [0, 1, 2, 3, 4]
    joint = _oracle_r2(truth, everything)
    expected = {
        "unique_a": joint - _oracle_r2(truth, [2, 3, 4]),      # a1, a2: only in space A
        "unique_b": joint - _oracle_r2(truth, [0, 1, 4]),      # b1, b2: only in space B
        "shared": _oracle_r2(truth, [0, 1, 4]) + _oracle_r2(truth, [2, 3, 4]) - joint,  # s: in both
    }
    # The fitted models lose to the planted weights by what estimating 12 (24 for the
    # joint model) delayed weights from 360 TRs costs, about p/n of the unexplained
    # variance (0.01-0.03 here); a difference of two such losses stayed below 0.045 on
    # every voxel of 8 simulated datasets (seeds 0-7).
    tolerance = 0.06
    for name, values in expected.items():
        np.testing.assert_allclose(getattr(result, name)[:CONSTANT_VOXEL], values, atol=tolerance,
                                   err_msg=name)
    assert np.all(result.unique_a[GROUPS["a_only"]] > 0.3)
    assert np.all(result.unique_b[GROUPS["b_only"]] > 0.3)
    assert np.all(result.unique_a[GROUPS["both"]] > 0.15)
    assert np.all(result.unique_b[GROUPS["both"]] > 0.15)
    assert np.all(result.shared[GROUPS["shared"]] > 0.3)
    assert np.all(np.abs(result.r2_joint[GROUPS["none"]]) < 0.05)


def test_split_sums_to_joint_r2_and_follows_the_driving_space(planted):
    _, _, result = planted
    voxels = slice(0, CONSTANT_VOXEL)
    np.testing.assert_allclose(result.split_a[voxels] + result.split_b[voxels],
                               result.r2_joint[voxels], atol=1e-5)
    np.testing.assert_allclose(result.split_a[GROUPS["a_only"]], result.r2_joint[GROUPS["a_only"]],
                               atol=0.03)
    np.testing.assert_allclose(result.split_b[GROUPS["b_only"]], result.r2_joint[GROUPS["b_only"]],
                               atol=0.03)


def test_constant_voxel_is_nan(planted):
    _, _, result = planted
    for name, values in result.maps().items():
        assert np.isnan(values[CONSTANT_VOXEL]), name
        assert np.all(np.isfinite(values[:CONSTANT_VOXEL])), name
    assert np.all(np.isnan(result.alphas_joint[..., CONSTANT_VOXEL]))


def test_r2_equals_closed_form_ridge_at_the_selected_penalties(planted):
    _, truth, result = planted
    designs_a, designs_b, _ = _runs(truth)
    responses = [_zscore(np.load(Path(planted[0].root) / f"{n}.npy").astype(np.float64))
                 for n in _runs(truth)[2]]
    folds = [([j for j in range(4) if j != i], [i]) for i in range(4)]
    voxels = slice(0, CONSTANT_VOXEL)
    Y = [r[:, voxels] for r in responses]
    n_a, n_b = designs_a[0].shape[1], designs_b[0].shape[1]

    def single(alphas, n):
        return lambda k: np.repeat(alphas[k][None, voxels], n, axis=0)

    def joint(k):
        lam = result.alphas_joint[k][:, voxels]
        return np.concatenate([np.repeat(lam[:1], n_a, axis=0), np.repeat(lam[1:], n_b, axis=0)])

    joint_designs = [np.hstack([a, b]) for a, b in zip(designs_a, designs_b)]
    # The analysis holds designs and responses in float32 (relative rounding 6e-8) and
    # himalaya solves in float32; the reference solves in float64. At these small
    # condition numbers R² differs by ~1e-7 (measured 5e-8): 1e-6 leaves a margin.
    atol = 1e-6
    reference_a = _reference_r2(designs_a, Y, folds, single(result.alphas_a, n_a))
    reference_b = _reference_r2(designs_b, Y, folds, single(result.alphas_b, n_b))
    np.testing.assert_allclose(result.r2_a[voxels], reference_a, atol=atol)
    np.testing.assert_allclose(result.r2_b[voxels], reference_b, atol=atol)
    np.testing.assert_allclose(result.r2_joint[voxels], _reference_r2(joint_designs, Y, folds, joint),
                               atol=atol)


def test_selected_penalties_win_the_inner_cross_validation(planted):
    """Single-space alphas are the inner-CV argmax (ties: larger); the joint pair scores at
    least as well as every equal-weight candidate (λ_A = λ_B = 2α, himalaya's first draw)."""
    _, truth, result = planted
    designs_a, designs_b, names = _runs(truth)
    responses = [_zscore(np.load(Path(planted[0].root) / f"{n}.npy").astype(np.float64))[:, :CONSTANT_VOXEL]
                 for n in names]
    train = [1, 2, 3]                    # fold 0 tests run 0
    grid = np.unique(FAST["alphas"])
    n_a = designs_a[0].shape[1]
    scores = np.stack([_inner_cv_r2(designs_a, responses, train, np.full((n_a, CONSTANT_VOXEL), a))
                       for a in grid])
    best = grid[len(grid) - 1 - np.argmax(scores[::-1], axis=0)]
    np.testing.assert_allclose(result.alphas_a[0, :CONSTANT_VOXEL], best, rtol=1e-6)

    joint = [np.hstack([a, b]) for a, b in zip(designs_a, designs_b)]
    lam = result.alphas_joint[0][:, :CONSTANT_VOXEL]
    n_b = designs_b[0].shape[1]
    chosen = _inner_cv_r2(joint, responses, train, np.concatenate(
        [np.repeat(lam[:1], n_a, axis=0), np.repeat(lam[1:], n_b, axis=0)]))
    for alpha in np.unique(FAST["banded_alphas"]):
        equal = _inner_cv_r2(joint, responses, train, np.full((n_a + n_b, CONSTANT_VOXEL), 2 * alpha))
        assert np.all(chosen >= equal - 1e-4)


def test_batches_and_named_test_runs(planted):
    dataset, truth, result = planted
    designs_a, designs_b, names = _runs(truth)
    responses = [_zscore(np.load(Path(dataset.root) / f"{n}.npy")).astype(np.float32) for n in names]
    options = {k: v for k, v in FAST.items() if k != "progress"}
    whole = partition_variance(designs_a, designs_b, responses, **options)
    batched = partition_variance(designs_a, designs_b, responses, n_targets_batch=5, **options)
    for name, values in whole.maps().items():
        np.testing.assert_allclose(batched.maps()[name], values, atol=1e-6, equal_nan=True)
        np.testing.assert_allclose(result.maps()[name], values, atol=1e-4, equal_nan=True)

    named = run_partition(dataset, "s1", ["spaceA", "spaceB"], "movie", test_runs=["movie2"], **FAST)
    assert named.settings["split"] == [{"train_runs": ["movie0", "movie1"], "test_runs": ["movie2"]}]
    assert named.alphas_joint.shape == (1, 2, N_VOXELS)
    assert np.all(named.unique_a[GROUPS["a_only"]] > 0.2)


def test_save_and_load(planted, tmp_path):
    _, _, result = planted
    path = result.save(tmp_path / "partition.npz")
    with np.load(path, allow_pickle=False) as data:
        keys = set(data.files)
        meta = json.loads(str(data["meta_json"]), parse_constant=lambda c: pytest.fail(c))
        np.testing.assert_array_equal(data["shared"], result.shared)
    assert {"r2_joint", "r2_a", "r2_b", "unique_a", "unique_b", "shared", "split_a", "split_b",
            "alphas_joint", "alphas_a", "alphas_b", "meta_json"} == keys
    assert meta["spaces"] == ["spaceA", "spaceB"] and meta["modality"] == "story"
    loaded = PartitionResult.load(path)
    assert loaded.spaces == result.spaces and loaded.settings == result.settings
    for name, values in result.maps().items():
        np.testing.assert_array_equal(loaded.maps()[name], values)
    np.testing.assert_array_equal(loaded.alphas_joint, result.alphas_joint)


@pytest.fixture
def no_fit(monkeypatch):
    """Fail the test if any model is fitted."""
    from himalaya.ridge import BandedRidgeCV

    from brainenc.encoding import VoxelwiseRidge

    def refuse(*args, **kwargs):
        raise AssertionError("a model was fitted before the inputs were checked")

    monkeypatch.setattr(BandedRidgeCV, "fit", refuse)
    monkeypatch.setattr(VoxelwiseRidge, "factor", refuse)


@pytest.mark.parametrize("features, modality, options, message", [
    (["spaceA", "nosuch"], "story", {}, "no feature space named 'nosuch'"),
    (["spaceA", "spaceA"], "story", {}, "share the name"),
    (["spaceA"], "story", {}, "exactly two feature spaces"),
    (["spaceA", "storyonly"], "movie", {}, "no features for any movie stimulus"),
    (["spaceA", "spaceB"], "speech", {}, "modality must be one of"),
    (["spaceA", "spaceB"], "story", {"test_runs": ["story9"]}, "must name story runs"),
    (["spaceA", "spaceB"], "story", {"test_runs": ["story0", "story1", "story2"]}, "leaves 1 story"),
    (["spaceA", "spaceB"], "story", {"n_iter": 0}, "n_iter must be"),
    (["spaceA", "spaceB"], "story", {"banded_alphas": [1.0, -2.0]}, "banded_alphas must be"),
])
def test_bad_input_fails_before_any_fit(planted, no_fit, features, modality, options, message):
    dataset = planted[0]
    with pytest.raises(BrainencInputError, match=message):
        run_partition(dataset, "s1", features, modality, progress=False, **options)


def test_space_missing_some_runs_fails_before_any_fit(planted, no_fit, tmp_path):
    dataset = planted[0]
    partial = tmp_path / "partial"
    partial.mkdir()
    for name in ("story0", "story1"):
        (partial / f"{name}.hf5").write_bytes((dataset.feature_root / "spaceA" / f"{name}.hf5").read_bytes())
    with pytest.raises(BrainencInputError, match=r"lacks the story stimuli \['story2', 'story3'\]"):
        run_partition(dataset, "s1", ["spaceB", partial], "story", progress=False)


def test_array_runs_must_agree(no_fit):
    X = [np.zeros((10, 2), dtype=np.float32)] * 3
    Y = [np.zeros((10, 4), dtype=np.float32)] * 3
    with pytest.raises(BrainencInputError, match="design B 9 and the responses 10"):
        partition_variance(X, [X[0], X[1], np.zeros((9, 2))], Y)
    with pytest.raises(BrainencInputError, match="same runs"):
        partition_variance(X, X[:2], Y)
    with pytest.raises(BrainencInputError, match="tested by an earlier fold"):
        partition_variance(X, X, Y, folds=[([0, 1], [2]), ([0, 1], [2])])

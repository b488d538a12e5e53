"""VoxelwiseRidge against plain float64 references, himalaya, and planted weights."""
from __future__ import annotations

import warnings

import numpy as np
import pytest

from brainenc.encoding import (ConstantVoxelWarning, VoxelwiseRidge, leave_one_run_out,
                               resolve_backend, ridge_weights)

ALPHAS = np.logspace(-1, 3, 9)


def make_problem(run_lengths, n_features=8, n_voxels=6, noise=2.0, seed=0):
    rng = np.random.default_rng(seed)
    n = int(np.sum(run_lengths))
    X = rng.standard_normal((n, n_features))
    W = rng.standard_normal((n_features, n_voxels))
    # voxels from well predicted to nearly pure noise, so the chosen alphas differ
    Y = X @ W * np.linspace(1.0, 0.05, n_voxels) + noise * rng.standard_normal((n, n_voxels))
    return X, Y, W


def closed_form(X, y, alpha):
    return np.linalg.solve(X.T @ X + alpha * np.eye(X.shape[1]), X.T @ y)


def pearson(a, b):
    return np.array([np.corrcoef(a[:, j], b[:, j])[0, 1] for j in range(a.shape[1])])


def r2(a, b):
    return 1 - ((a - b) ** 2).sum(0) / ((a - a.mean(0)) ** 2).sum(0)


def naive_cv_scores(X, Y, folds, alphas, score):
    """Fit on the training rows for each fold and alpha, score the validation rows, average."""
    scores = np.zeros((len(alphas), Y.shape[1]))
    for train, val in folds:
        for i, alpha in enumerate(alphas):
            W = closed_form(X[train], Y[train], alpha)
            scores[i] += score(Y[val], X[val] @ W)
    return scores / len(folds)


# ------------------------------------------------------------------ folds


def test_folds_from_lengths_hold_out_each_run_whole():
    lengths = [3, 5, 4]
    folds = leave_one_run_out(lengths)
    starts = np.cumsum([0] + lengths)
    assert len(folds) == 3
    for r, (train, val) in enumerate(folds):
        assert val.tolist() == list(range(starts[r], starts[r + 1]))
        assert train.tolist() == [i for i in range(12) if not starts[r] <= i < starts[r + 1]]


def test_folds_from_noncontiguous_labels_never_split_a_run():
    labels = np.array(["b", "b", "a", "a", "b", "c", "c", "a", "c"])
    folds = leave_one_run_out(labels, n_samples=labels.size)
    assert [sorted(set(labels[val])) for _, val in folds] == [["b"], ["a"], ["c"]]  # first appearance
    for train, val in folds:
        assert set(labels[val]).isdisjoint(labels[train])
        assert sorted(np.concatenate([train, val]).tolist()) == list(range(labels.size))
    # integer labels need n_samples to be read as labels
    int_folds = leave_one_run_out([7, 7, 2, 2, 7], n_samples=5)
    assert [v.tolist() for _, v in int_folds] == [[0, 1, 4], [2, 3]]


@pytest.mark.parametrize("runs, n_samples, message", [
    ([3, 4], 8, "sum to 7"),
    ([5], None, "at least 2 runs"),
    ([3, 0, 2], None, "positive integers"),
    (np.zeros((2, 2)), None, "1-D"),
])
def test_bad_runs_are_rejected(runs, n_samples, message):
    with pytest.raises(ValueError, match=message):
        leave_one_run_out(runs, n_samples)


# ------------------------------------------------------------------ against references


@pytest.mark.parametrize("score_name, score", [("correlation", pearson), ("r2", r2)])
@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_cv_scores_and_alphas_match_naive_float64(score_name, score, backend):
    lengths = [40, 30, 50]
    X, Y, _ = make_problem(lengths)
    model = VoxelwiseRidge(alphas=ALPHAS, score_func=score_name, backend=backend).fit(X, Y, groups=lengths)
    expected = naive_cv_scores(X, Y, leave_one_run_out(lengths), ALPHAS, score)
    np.testing.assert_allclose(model.cv_scores_, expected, atol=1e-4)
    np.testing.assert_array_equal(model.best_alphas_, ALPHAS[np.argmax(expected, axis=0)])
    assert len(np.unique(model.best_alphas_)) > 1  # the comparison covers several alphas


def test_noncontiguous_runs_and_explicit_cv_match_naive():
    rng = np.random.default_rng(1)
    labels = rng.permutation(np.repeat([0, 1, 2, 3], 30))
    X, Y, _ = make_problem([120], seed=2)
    model = VoxelwiseRidge(alphas=ALPHAS, backend="numpy").fit(X, Y, groups=labels)
    folds = leave_one_run_out(labels, n_samples=120)
    np.testing.assert_allclose(model.cv_scores_, naive_cv_scores(X, Y, folds, ALPHAS, pearson), atol=1e-4)
    # two folds, each validating on two runs that are not adjacent in the sample order; samples
    # of run 3 are never validated on in the second fold but still train it
    runs_of = lambda *rs: np.flatnonzero(np.isin(labels, rs))  # noqa: E731
    cv = [(runs_of(1, 3), runs_of(0, 2)), (runs_of(0, 2), runs_of(1))]
    model = VoxelwiseRidge(alphas=ALPHAS, backend="numpy", cv=cv).fit(X, Y)
    np.testing.assert_allclose(model.cv_scores_, naive_cv_scores(X, Y, cv, ALPHAS, pearson), atol=1e-4)


@pytest.mark.parametrize("n_features", [8, 150])  # fewer and more features than samples
def test_coef_is_closed_form_ridge_at_selected_alphas(n_features):
    lengths = [40, 30, 50]
    X, Y, _ = make_problem(lengths, n_features=n_features, seed=3)
    model = VoxelwiseRidge(alphas=ALPHAS, backend="numpy").fit(X, Y, groups=lengths)
    expected = np.stack([closed_form(X, Y[:, v], a) for v, a in enumerate(model.best_alphas_)], axis=1)
    assert model.coef_.dtype == np.float32 and model.coef_.shape == (n_features, 6)
    np.testing.assert_allclose(model.coef_, expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max())
    np.testing.assert_allclose(model.predict(X), X @ expected, atol=1e-4 * np.abs(X @ expected).max())
    np.testing.assert_allclose(ridge_weights(X, Y, model.best_alphas_, backend="numpy"), expected,
                               rtol=1e-4, atol=1e-4 * np.abs(expected).max())


def test_custom_score_callable_is_used():
    lengths = [40, 30, 50]
    X, Y, _ = make_problem(lengths, seed=4)
    neg_mse = lambda y, p: -((y - p) ** 2).mean(0)  # noqa: E731
    model = VoxelwiseRidge(alphas=ALPHAS, score_func=neg_mse, backend="numpy").fit(X, Y, groups=lengths)
    expected = naive_cv_scores(X, Y, leave_one_run_out(lengths), ALPHAS, neg_mse)
    np.testing.assert_allclose(model.cv_scores_, expected, rtol=1e-4)


def test_agrees_with_himalaya_ridgecv():
    from himalaya.backend import get_backend, set_backend
    from himalaya.ridge import RidgeCV
    from himalaya.scoring import correlation_score

    lengths = [50, 40, 60, 50]
    X, Y, _ = make_problem(lengths, n_features=10, n_voxels=8, seed=5)
    folds = leave_one_run_out(lengths)
    previous = get_backend().name
    set_backend("numpy")
    try:
        ref = RidgeCV(alphas=ALPHAS, cv=folds, fit_intercept=False,
                      solver_params=dict(score_func=correlation_score)).fit(X, Y)
    finally:
        set_backend(previous)
    model = VoxelwiseRidge(alphas=ALPHAS, backend="torch").fit(X, Y, groups=lengths)
    np.testing.assert_allclose(model.best_alphas_, np.asarray(ref.best_alphas_), rtol=1e-6)
    ref_coef = np.asarray(ref.coef_)
    np.testing.assert_allclose(model.coef_, ref_coef, rtol=1e-4, atol=1e-4 * np.abs(ref_coef).max())
    # himalaya's cv_scores_ is the mean score at the best alpha
    np.testing.assert_allclose(model.cv_scores_.max(axis=0), np.asarray(ref.cv_scores_), atol=1e-5)
    assert get_backend().name == previous  # our fit leaves the global backend alone


@pytest.mark.parametrize("score_name", ["correlation", "r2"])
@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_same_folds_give_himalaya_ridgecv_results_in_float64(score_name, backend):
    """Alphas, coefficients, predictions and CV scores equal himalaya's RidgeCV on the same folds."""
    from himalaya.backend import get_backend, set_backend
    from himalaya.ridge import RidgeCV
    from himalaya.scoring import correlation_score, r2_score

    X, Y, _ = make_problem([60, 50, 70], n_features=10, n_voxels=8, seed=13)
    X_new = np.random.default_rng(14).standard_normal((40, 10))
    rng = np.random.default_rng(15)
    labels = rng.permutation(np.repeat([0, 1, 2], 60))
    # explicit, non-contiguous folds; the last one leaves samples of run 2 out entirely
    runs_of = lambda *rs: np.flatnonzero(np.isin(labels, rs))  # noqa: E731
    folds = [(runs_of(1, 2), runs_of(0)), (runs_of(0, 2), runs_of(1)), (runs_of(0), runs_of(1))]
    score = {"correlation": correlation_score, "r2": r2_score}[score_name]
    previous = get_backend().name
    set_backend("numpy")
    try:
        ref = RidgeCV(alphas=ALPHAS, cv=folds, fit_intercept=False,
                      solver_params=dict(score_func=score, local_alpha=True)).fit(X, Y)
        ref_prediction = np.asarray(ref.predict(X_new))
    finally:
        set_backend(previous)
    model = VoxelwiseRidge(alphas=ALPHAS, cv=folds, score_func=score_name, backend=backend,
                           dtype="float64").fit(X, Y)
    assert model.coef_.dtype == np.float64
    assert len(np.unique(model.best_alphas_)) > 1  # the comparison covers several alphas
    np.testing.assert_allclose(model.best_alphas_, np.asarray(ref.best_alphas_), rtol=1e-12)  # same grid points
    np.testing.assert_allclose(model.coef_, np.asarray(ref.coef_), rtol=1e-4)
    np.testing.assert_allclose(model.predict(X_new), ref_prediction, rtol=1e-4,
                               atol=1e-10 * np.abs(ref_prediction).max())
    # himalaya's cv_scores_ is the fold-averaged score at the best alpha
    np.testing.assert_allclose(model.cv_scores_.max(axis=0), np.asarray(ref.cv_scores_), rtol=1e-4)


def test_recovers_planted_weights():
    rng = np.random.default_rng(6)
    lengths = [100] * 4
    X = rng.standard_normal((400, 12))
    W = rng.standard_normal((12, 20))
    Y = X @ W + 0.05 * rng.standard_normal((400, 20))
    model = VoxelwiseRidge(alphas=np.logspace(-2, 3, 11), backend="numpy").fit(X, Y, groups=lengths)
    np.testing.assert_allclose(model.coef_, W, atol=0.02)
    X_new = rng.standard_normal((200, 12))
    Y_new = X_new @ W + 0.05 * rng.standard_normal((200, 20))
    r = model.score_voxels(X_new, Y_new)
    assert r.shape == (20,) and r.min() > 0.999
    r2 = model.score_voxels(X_new, Y_new, metric="r2")
    assert r2.shape == (20,) and r2.min() > 0.998
    assert model.score(X_new, Y_new) == pytest.approx(r2.mean(), abs=1e-12)
    assert np.all(model.cv_scores_.max(axis=0) > 0.999)


# ------------------------------------------------------------------ edge cases and API


def test_constant_voxels_are_nan_and_leave_others_unchanged():
    lengths = [40, 30, 50]
    X, Y, _ = make_problem(lengths, seed=7)
    Y_const = np.insert(Y, [1, 4], 3.0, axis=1)           # columns 1 and 5 are constant
    Y_const[:40, 3] = 0.0                                  # constant within run 0 only: kept
    Y_ref = Y_const[:, [0, 2, 3, 4, 6, 7]]
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)     # no divide-by-zero or invalid-value noise
        with pytest.warns(ConstantVoxelWarning, match="2 of 8 voxels"):
            model = VoxelwiseRidge(alphas=ALPHAS, backend="numpy").fit(X, Y_const, groups=lengths)
        prediction = model.predict(X)
        r = model.score_voxels(X, Y_const)
        r2 = model.score(X, Y_const)
    ref = VoxelwiseRidge(alphas=ALPHAS, backend="numpy").fit(X, Y_ref, groups=lengths)
    const = [1, 5]
    keep = [0, 2, 3, 4, 6, 7]
    assert model.constant_voxels_.tolist() == [i in const for i in range(8)]
    assert np.all(np.isnan(model.cv_scores_[:, const])) and np.all(np.isnan(model.best_alphas_[const]))
    assert np.all(np.isnan(model.coef_[:, const])) and np.all(np.isnan(prediction[:, const]))
    assert np.all(np.isnan(r[const])) and np.all(np.isfinite(r[keep]))
    # the float score averages R² over the voxels that have a model
    from sklearn.metrics import r2_score
    assert r2 == pytest.approx(r2_score(Y_const[:, keep], prediction[:, keep]), abs=1e-12)
    np.testing.assert_allclose(model.cv_scores_[:, keep], ref.cv_scores_, atol=1e-6)
    np.testing.assert_array_equal(model.best_alphas_[keep], ref.best_alphas_)
    np.testing.assert_allclose(model.coef_[:, keep], ref.coef_, rtol=1e-5, atol=1e-6)
    # a voxel flat in one validation run: that fold's correlation is undefined and counts as 0
    naive = naive_cv_scores(X, Y_ref[:, [2]], leave_one_run_out(lengths)[1:], ALPHAS, pearson) * 2 / 3
    np.testing.assert_allclose(model.cv_scores_[:, 3], naive[:, 0], atol=1e-4)

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        VoxelwiseRidge(alphas=ALPHAS, backend="numpy", warn_constant=False).fit(X, Y_const, groups=lengths)


def test_voxel_flat_in_every_validation_run_scores_zero_and_takes_the_largest_alpha():
    lengths = [40, 30, 50]
    X, Y, _ = make_problem(lengths, seed=12)
    Y[:, 0] = np.repeat([1.0, -2.0, 0.5], lengths)    # varies across runs, flat within each
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model = VoxelwiseRidge(alphas=ALPHAS, backend="numpy").fit(X, Y, groups=lengths)
    np.testing.assert_array_equal(model.cv_scores_[:, 0], 0.0)
    assert model.best_alphas_[0] == ALPHAS.max()      # ties go to the most regularised fit
    np.testing.assert_allclose(model.coef_[:, 0], closed_form(X, Y[:, 0], ALPHAS.max()), rtol=1e-4, atol=1e-6)


def test_coef_per_delay_splits_column_blocks():
    lengths = [40, 30, 50]
    X, Y, _ = make_problem(lengths, n_features=12, seed=8)
    model = VoxelwiseRidge(alphas=ALPHAS, backend="numpy").fit(X, Y, groups=lengths)
    per_delay = model.coef_per_delay(3)
    assert per_delay.shape == (3, 4, 6)
    for d in range(3):
        np.testing.assert_array_equal(per_delay[d], model.coef_[4 * d:4 * (d + 1)])
    with pytest.raises(ValueError, match="divisor"):
        model.coef_per_delay(5)


def test_clone_and_pipeline_with_routed_groups():
    from sklearn.base import clone
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    lengths = [40, 30, 50]
    X, Y, _ = make_problem(lengths, seed=9)
    X = 3.0 * X + 1.0
    model = VoxelwiseRidge(alphas=ALPHAS, score_func="r2", backend="numpy", n_targets_batch=4)
    copy = clone(model)
    assert copy is not model and copy.get_params()["n_targets_batch"] == 4
    np.testing.assert_array_equal(copy.get_params()["alphas"], ALPHAS)
    assert not hasattr(copy, "coef_")
    assert "n_targets_batch=4" in repr(model) and "alphas" not in repr(VoxelwiseRidge())

    Xs = StandardScaler().fit_transform(X)
    direct = clone(model).fit(Xs, Y, groups=lengths)
    folds = leave_one_run_out(lengths)
    labels = np.repeat(["a", "b", "c"], lengths)
    for step, params in ((clone(model).set_params(cv=folds), {}),
                         (clone(model), dict(voxelwiseridge__groups=lengths)),
                         (clone(model), dict(voxelwiseridge__groups=labels))):
        pipe = make_pipeline(StandardScaler(), step).fit(X, Y, **params)
        np.testing.assert_allclose(pipe.predict(X), direct.predict(Xs), rtol=1e-5, atol=1e-5)
        np.testing.assert_array_equal(pipe[-1].best_alphas_, direct.best_alphas_)


def test_batches_give_the_same_answer():
    lengths = [40, 30, 50]
    X, Y, _ = make_problem(lengths, n_voxels=7, seed=10)
    whole = VoxelwiseRidge(alphas=ALPHAS, backend="numpy").fit(X, Y, groups=lengths)
    batched = VoxelwiseRidge(alphas=ALPHAS, backend="numpy", n_targets_batch=3).fit(X, Y, groups=lengths)
    np.testing.assert_allclose(batched.cv_scores_, whole.cv_scores_, atol=1e-6)
    np.testing.assert_allclose(batched.coef_, whole.coef_, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("X, Y, params, groups, message", [
    (np.ones(10), np.ones((10, 2)), {}, [5, 5], "Expected 2D array, got 1D array"),
    (np.ones((10, 3)), np.ones((9, 2)), {}, [5, 5], "inconsistent numbers of samples"),
    (np.full((10, 3), np.nan), np.ones((10, 2)), {}, [5, 5], "Input X contains NaN"),
    (np.ones((10, 3)), np.ones((10, 2)), {}, [4, 5], "sum to 9"),
    (np.ones((10, 3)), np.ones((10, 2)), {}, [10], "at least 2 runs"),
    (np.ones((3, 3)), np.ones((3, 2)), {}, None, "5 contiguous folds .* n_samples=3"),
    (np.ones((10, 3)), np.ones((10, 2)), dict(cv=1), None, "cv must be at least 2"),
    (np.ones((10, 3)), np.ones((10, 2)), dict(cv=[([0, 1], [1, 2])]), None, "share samples"),
    (np.ones((10, 3)), np.ones((10, 2)), dict(cv=[([0, 1], [2, 3])]), [5, 5], "groups cannot be combined"),
    (np.ones((10, 3)), np.ones((10, 2)), dict(backend="jax"), None, "unknown backend"),
])
def test_bad_input_is_rejected_with_a_clear_message(X, Y, params, groups, message):
    with pytest.raises(ValueError, match=message):
        VoxelwiseRidge(**{"backend": "numpy", **params}).fit(X, Y, groups=groups)


def test_predict_checks_feature_count():
    lengths = [40, 30, 50]
    X, Y, _ = make_problem(lengths, seed=11)
    model = VoxelwiseRidge(alphas=ALPHAS, backend="numpy").fit(X, Y, groups=lengths)
    with pytest.raises(ValueError, match="8 features but got 5|has 5 features"):
        model.predict(X[:, :5])


def test_resolve_backend():
    import torch
    from himalaya.backend import get_backend, set_backend

    assert resolve_backend("numpy") == "numpy"
    expected = {"torch_cuda"} if torch.cuda.is_available() else {"numpy"}
    assert resolve_backend("auto") in expected
    assert resolve_backend(get_backend()) == get_backend().name  # a backend module
    with pytest.raises(ValueError, match="unknown backend"):
        resolve_backend("jax")
    with pytest.raises(ValueError, match="not a himalaya backend"):
        resolve_backend(np)
    previous = get_backend().name
    set_backend("torch")
    try:
        assert resolve_backend("auto") == "torch"  # honours the user's set_backend
    finally:
        set_backend(previous)


def test_auto_backend_follows_set_backend_and_accepts_modules():
    import pickle

    from himalaya.backend import get_backend, set_backend
    from sklearn.base import clone

    lengths = [40, 30, 50]
    X, Y, _ = make_problem(lengths, seed=16)
    reference = VoxelwiseRidge(alphas=ALPHAS, backend="numpy").fit(X, Y, groups=lengths)
    previous = get_backend().name
    torch_module = set_backend("torch")
    try:
        auto = VoxelwiseRidge(alphas=ALPHAS).fit(X, Y, groups=lengths)
        assert get_backend().name == "torch"  # the fit restored the user's choice
    finally:
        set_backend(previous)
    assert auto.backend_ == "torch"
    model = VoxelwiseRidge(alphas=ALPHAS, backend=torch_module)
    assert model.get_params()["backend"] == "torch" and "backend='torch'" in repr(model)
    copy = clone(model)
    assert copy.backend == "torch"
    model.fit(X, Y, groups=lengths)
    assert model.backend_ == "torch" and model.backend is torch_module
    restored = pickle.loads(pickle.dumps(model))
    for fitted in (auto, model, restored):
        np.testing.assert_array_equal(fitted.best_alphas_, reference.best_alphas_)
        np.testing.assert_allclose(fitted.predict(X), reference.predict(X), rtol=1e-4, atol=1e-4)

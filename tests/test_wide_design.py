"""Dual (kernel) ridge for wide designs against the primal route and plain float64 ridge."""
from __future__ import annotations

import numpy as np
import pytest

from brainenc.design import add_delays
from brainenc.encoding import VoxelwiseRidge, leave_one_run_out
from tests.test_encoding import closed_form, naive_cv_scores, pearson, r2

ALPHAS = np.logspace(0, 4, 9)
LENGTHS = [60, 60, 60]


def wide_problem(n_features=50, delays=(1, 2, 3, 4), n_voxels=8, seed=0):
    """Three runs of 60 TRs, ``n_features`` × 4 delays (200 columns > 180 samples).

    Voxels range from well predicted to pure noise, so several alphas are chosen.
    """
    rng = np.random.default_rng(seed)
    runs = [add_delays(rng.standard_normal((n, n_features)), delays) for n in LENGTHS]
    X = np.concatenate([(x - x.mean(0)) / x.std(0) for x in runs])
    W = rng.standard_normal((X.shape[1], n_voxels)) / np.sqrt(X.shape[1])
    Y = X @ W * np.linspace(2.0, 0.0, n_voxels) + rng.standard_normal((X.shape[0], n_voxels))
    return X, Y


def fit(solver, X, Y, backend="numpy", **kwargs):
    return VoxelwiseRidge(alphas=ALPHAS, backend=backend, solver=solver, **kwargs).fit(X, Y, groups=LENGTHS)


def assert_close(actual, expected, rtol=1e-4):
    scale = np.nanmax(np.abs(expected))
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=rtol * scale)


@pytest.mark.parametrize("backend", ["numpy", "torch"])
@pytest.mark.parametrize("score_name, score", [("correlation", pearson), ("r2", r2)])
def test_dual_and_primal_match_each_other_and_float64_ridge(score_name, score, backend):
    X, Y = wide_problem()
    assert X.shape == (180, 200)
    primal = fit("primal", X, Y, backend, score_func=score_name)
    dual = fit("dual", X, Y, backend, score_func=score_name)
    assert (primal.solver_, dual.solver_) == ("primal", "dual")

    expected_scores = naive_cv_scores(X, Y, leave_one_run_out(LENGTHS), ALPHAS, score)
    expected_alphas = ALPHAS[np.argmax(expected_scores, axis=0)]
    expected_coef = np.stack([closed_form(X, Y[:, v], a) for v, a in enumerate(expected_alphas)], axis=1)
    assert len(np.unique(expected_alphas)) > 2  # the comparison covers several alphas
    for model in (primal, dual):
        np.testing.assert_allclose(model.cv_scores_, expected_scores, atol=1e-4)
        np.testing.assert_array_equal(model.best_alphas_, expected_alphas)
        assert_close(model.coef_, expected_coef)

    np.testing.assert_allclose(dual.cv_scores_, primal.cv_scores_, atol=1e-5)
    assert_close(dual.coef_, primal.coef_)
    X_new = wide_problem(seed=1)[0]
    assert_close(dual.predict(X_new), primal.predict(X_new))
    assert_close(dual.predict(X_new), X_new @ expected_coef)


def test_auto_takes_the_dual_route_only_for_wide_designs():
    X, Y = wide_problem()
    assert fit("auto", X, Y).solver_ == "dual"
    narrow = X[:, :150]
    assert fit("auto", narrow, Y).solver_ == "primal"
    # on a narrow design both routes are still the same ridge
    assert_close(fit("dual", narrow, Y).coef_, fit("primal", narrow, Y).coef_)


def test_dual_with_explicit_noncontiguous_folds_matches_naive():
    X, Y = wide_problem(seed=2)
    rng = np.random.default_rng(3)
    labels = rng.permutation(np.repeat([0, 1, 2, 3], 45))
    runs_of = lambda *rs: np.flatnonzero(np.isin(labels, rs))  # noqa: E731
    # fold 2 never validates on run 3, whose samples still train it
    cv = [(runs_of(1, 3), runs_of(0, 2)), (runs_of(0, 2), runs_of(1))]
    model = VoxelwiseRidge(alphas=ALPHAS, backend="numpy", solver="dual", cv=cv).fit(X, Y)
    expected = naive_cv_scores(X, Y, cv, ALPHAS, pearson)
    np.testing.assert_allclose(model.cv_scores_, expected, atol=1e-4)
    coef = np.stack([closed_form(X, Y[:, v], a) for v, a in enumerate(model.best_alphas_)], axis=1)
    assert_close(model.coef_, coef)


@pytest.mark.parametrize("solver", ["primal", "dual"])
def test_factored_design_solves_batches_like_one_fit(solver):
    X, Y = wide_problem(n_voxels=11, seed=4)
    Y[:, 5] = 0.0  # a constant voxel inside a batch
    model = VoxelwiseRidge(alphas=ALPHAS, backend="numpy", solver=solver, warn_constant=False)
    whole = model.fit(X, Y, groups=LENGTHS)
    factored = model.factor(X, groups=LENGTHS)
    parts = [factored.solve(Y[:, cols]) for cols in (slice(0, 4), slice(4, 7), slice(7, 11))]
    # float32 products over different column counts may round differently, by an ulp or so
    assert_close(np.concatenate([p.coef for p in parts], axis=1), whole.coef_, rtol=1e-6)
    np.testing.assert_array_equal(np.concatenate([p.best_alphas for p in parts]), whole.best_alphas_)
    np.testing.assert_allclose(np.concatenate([p.cv_scores for p in parts], axis=1), whole.cv_scores_,
                               atol=1e-7)
    assert np.isnan(whole.coef_[:, 5]).all() and parts[1].constant_voxels.tolist() == [False, True, False]


def test_unknown_solver_is_rejected():
    X, Y = wide_problem()
    with pytest.raises(ValueError, match="solver must be"):
        VoxelwiseRidge(solver="kernel", backend="numpy").fit(X, Y, groups=LENGTHS)

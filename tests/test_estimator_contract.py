"""VoxelwiseRidge as a scikit-learn estimator: the estimator checks, pipelines, cv and groups."""
from __future__ import annotations

import numpy as np
import pytest
from sklearn.base import BaseEstimator, TransformerMixin, clone
from sklearn.model_selection import GroupKFold, KFold, LeaveOneGroupOut, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import parametrize_with_checks
from sklearn.utils.validation import check_is_fitted, validate_data

from brainenc.design import add_delays
from brainenc.encoding import DEFAULT_N_FOLDS, VoxelwiseRidge, leave_one_run_out
from tests.test_encoding import ALPHAS, make_problem


class Delayer(TransformerMixin, BaseEstimator):
    """FIR delays as a transformer, in the style of voxelwise_tutorials' ``Delayer``.

    Delays the stacked samples as a whole (zero-filled at the start only).
    """

    def __init__(self, delays=(1, 2, 3, 4)):
        self.delays = delays

    def fit(self, X, y=None):
        validate_data(self, X, dtype=[np.float64, np.float32])
        return self

    def transform(self, X):
        check_is_fitted(self)
        X = validate_data(self, X, reset=False, dtype=[np.float64, np.float32])
        return add_delays(X, self.delays)


# Every check applies: none is listed as an expected failure. The default instance
# ("auto": numpy on CPUs, torch_cuda where a GPU is visible) and the torch backend.
@parametrize_with_checks([VoxelwiseRidge(), VoxelwiseRidge(backend="torch")])
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)


def test_tags_describe_a_multi_output_regressor():
    from sklearn.utils import get_tags

    tags = get_tags(VoxelwiseRidge())
    assert tags.estimator_type == "regressor"
    assert tags.target_tags.multi_output and tags.target_tags.single_output
    assert tags.target_tags.required
    assert not tags.input_tags.sparse and not tags.input_tags.allow_nan


def test_pipeline_with_delayer_fits_and_predicts_without_fit_params():
    lengths = [60, 60, 60]
    rng = np.random.default_rng(0)
    stimulus = rng.standard_normal((sum(lengths), 6))
    W = rng.standard_normal((24, 5))
    Y = add_delays(stimulus, [1, 2, 3, 4]) @ W + 0.1 * rng.standard_normal((sum(lengths), 5))
    Y -= Y.mean(0)
    pipe = make_pipeline(StandardScaler(with_std=False), Delayer(delays=[1, 2, 3, 4]),
                         VoxelwiseRidge(alphas=ALPHAS, cv=leave_one_run_out(lengths), backend="numpy"))
    pipe.fit(stimulus, Y)
    prediction = pipe.predict(stimulus)
    assert prediction.shape == Y.shape and prediction.dtype == np.float64
    ridge = pipe[-1]
    assert ridge.n_features_in_ == 24 and ridge.coef_per_delay(4).shape == (4, 6, 5)
    assert pipe.score(stimulus, Y) > 0.99
    # through scikit-learn's model selection, which clones the pipeline per split; the inner
    # folds must then fit each training subset: 2 contiguous blocks
    scores = cross_val_score(pipe.set_params(voxelwiseridge__cv=2), stimulus, Y, cv=KFold(3))
    assert scores.shape == (3,) and np.all(scores > 0.95)


def test_default_cv_is_contiguous_blocks_and_groups_give_leave_one_run_out():
    lengths = [40, 30, 50]
    X, Y, _ = make_problem(lengths, seed=1)
    default = VoxelwiseRidge(alphas=ALPHAS, backend="numpy").fit(X, Y)
    kfold = VoxelwiseRidge(alphas=ALPHAS, backend="numpy", cv=KFold(DEFAULT_N_FOLDS)).fit(X, Y)
    blocks = VoxelwiseRidge(alphas=ALPHAS, backend="numpy", cv=DEFAULT_N_FOLDS).fit(X, Y)
    for model in (kfold, blocks):
        np.testing.assert_array_equal(model.cv_scores_, default.cv_scores_)
        np.testing.assert_array_equal(model.coef_, default.coef_)

    labels = np.repeat([7, 3, 5], lengths)
    by_groups = VoxelwiseRidge(alphas=ALPHAS, backend="numpy").fit(X, Y, groups=labels)
    by_lengths = VoxelwiseRidge(alphas=ALPHAS, backend="numpy").fit(X, Y, groups=lengths)
    by_splitter = VoxelwiseRidge(alphas=ALPHAS, backend="numpy", cv=LeaveOneGroupOut()).fit(X, Y, groups=labels)
    by_folds = VoxelwiseRidge(alphas=ALPHAS, backend="numpy", cv=leave_one_run_out(lengths)).fit(X, Y)
    for model in (by_lengths, by_splitter, by_folds):
        # same folds (LeaveOneGroupOut orders them by label, so the mean may round differently)
        np.testing.assert_allclose(model.cv_scores_, by_groups.cv_scores_, atol=1e-12)
        np.testing.assert_array_equal(model.best_alphas_, by_groups.best_alphas_)
        np.testing.assert_allclose(model.coef_, by_groups.coef_, rtol=1e-6, atol=1e-7)
    assert not np.allclose(by_groups.cv_scores_, default.cv_scores_)


def test_int_cv_with_groups_keeps_runs_whole():
    lengths = [30, 30, 30, 30]
    X, Y, _ = make_problem(lengths, seed=2)
    labels = np.repeat(np.arange(4), 30)
    model = VoxelwiseRidge(alphas=ALPHAS, backend="numpy", cv=2).fit(X, Y, groups=labels)
    folds = list(GroupKFold(n_splits=2).split(X, None, labels))
    reference = VoxelwiseRidge(alphas=ALPHAS, backend="numpy", cv=folds).fit(X, Y)
    np.testing.assert_array_equal(model.cv_scores_, reference.cv_scores_)


def test_one_dimensional_y_gives_one_dimensional_predictions():
    lengths = [40, 30, 50]
    X, Y, _ = make_problem(lengths, seed=3)
    model = VoxelwiseRidge(alphas=ALPHAS, backend="numpy").fit(X, Y[:, 0], groups=lengths)
    column = VoxelwiseRidge(alphas=ALPHAS, backend="numpy").fit(X, Y[:, :1], groups=lengths)
    assert model.coef_.shape == (8, 1) and model.best_alphas_.shape == (1,)
    assert model.predict(X).shape == (120,) and column.predict(X).shape == (120, 1)
    np.testing.assert_array_equal(model.predict(X), column.predict(X)[:, 0])
    assert isinstance(model.score(X, Y[:, 0]), float)
    assert model.score(X, Y[:, 0]) == pytest.approx(column.score(X, Y[:, :1]))
    assert model.score_voxels(X, Y[:, 0]).shape == (1,)


def test_predictions_keep_float32_and_promote_other_dtypes():
    lengths = [40, 30, 50]
    X, Y, _ = make_problem(lengths, seed=4)
    model = VoxelwiseRidge(alphas=ALPHAS, backend="numpy").fit(X.astype(np.float32), Y, groups=lengths)
    assert model.predict(X.astype(np.float32)).dtype == np.float32
    assert model.predict(X).dtype == np.float64
    assert model.predict(np.round(X).astype(np.int64)).dtype == np.float64


def test_score_is_r2_of_sklearn_and_score_voxels_gives_both_metrics():
    from sklearn.metrics import r2_score

    lengths = [40, 30, 50]
    X, Y, _ = make_problem(lengths, seed=5)
    model = VoxelwiseRidge(alphas=ALPHAS, backend="numpy").fit(X, Y, groups=lengths)
    X_new, Y_new, _ = make_problem(lengths, seed=6)
    prediction = model.predict(X_new)
    assert model.score(X_new, Y_new) == pytest.approx(r2_score(Y_new, prediction), abs=1e-12)
    weights = np.linspace(0.5, 2.0, 120)
    assert model.score(X_new, Y_new, sample_weight=weights) == pytest.approx(
        r2_score(Y_new, prediction, sample_weight=weights), abs=1e-12)
    np.testing.assert_allclose(model.score_voxels(X_new, Y_new, metric="r2"),
                               r2_score(Y_new, prediction, multioutput="raw_values"), atol=1e-12)
    np.testing.assert_allclose(model.score_voxels(X_new, Y_new),
                               [np.corrcoef(prediction[:, v], Y_new[:, v])[0, 1] for v in range(6)],
                               atol=1e-12)
    with pytest.raises(ValueError, match="metric must be"):
        model.score_voxels(X_new, Y_new, metric="mse")
    with pytest.raises(ValueError, match=r"y must have shape \(120, 6\)"):
        model.score_voxels(X_new, Y_new[:, :3])


def test_clone_keeps_cv():
    folds = leave_one_run_out([5, 5])
    model = VoxelwiseRidge(cv=folds, backend="numpy")
    copy = clone(model)
    assert copy.cv is not folds and len(copy.cv) == 2
    for pair, expected in zip(copy.cv, folds, strict=True):
        for a, b in zip(pair, expected, strict=True):
            np.testing.assert_array_equal(a, b)


def test_groups_reach_the_model_through_metadata_routing():
    import sklearn
    from sklearn.model_selection import cross_validate

    X, Y, _ = make_problem([40, 40, 40, 40], seed=7)
    labels = np.repeat([0, 1, 2, 3], 40)
    with sklearn.config_context(enable_metadata_routing=True):
        model = VoxelwiseRidge(alphas=ALPHAS, backend="numpy").set_fit_request(groups=True)
        result = cross_validate(model, X, Y, cv=GroupKFold(2), params={"groups": labels},
                                return_estimator=True)
    for (train, _), fitted in zip(GroupKFold(2).split(X, Y, labels), result["estimator"], strict=True):
        # each inner fit ran leave-one-run-out over the two training runs
        direct = VoxelwiseRidge(alphas=ALPHAS, backend="numpy").fit(X[train], Y[train], groups=labels[train])
        np.testing.assert_array_equal(fitted.cv_scores_, direct.cv_scores_)

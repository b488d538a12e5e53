"""Significance of encoding-model predictions.

Every test here has the same shape. A statistic ``T = sum_t g_t y_t`` is a
fixed vector ``g`` (a prediction, made without the response it is tested on)
against a response column ``y``. Under the null hypothesis ``y`` is noise
that is independent of ``g``, stationary within each run, independent across
runs, with autocovariance ``gamma(k)``, so that, exactly::

    Var(T) = sum over runs of sum_{|k| <= K} c_g(k) gamma(k),

with ``c_g(k) = sum_t g_t g_{t+k}`` the lagged products of ``g`` inside the
run and ``K`` the longest lag the noise remembers. ``gamma`` is estimated from
``y`` itself (:class:`NoiseAutocovariance`), so ``z = T / sqrt(Var)`` is
standard normal under the null (exactly, for Gaussian noise, up to the
estimate of ``gamma``) and ``p = P(Z >= z)`` is a one-sided p-value: small
when the prediction correlates positively with the response. The p-value is
analytic: it resolves far below what any false-discovery correction over
voxels needs.

Combining independent tests
    Several statistics that are independent under the null (say, each run
    predicted by a model that never saw it or any later run) are combined by
    Stouffer's weighted sum of their z-scores (:func:`stouffer`).

Feature correspondence
    :func:`alignment_zscores` asks whether a cross-modal prediction depends on
    which story feature is paired with which movie feature: the same
    statistic ``T`` with the other modality's feature columns relabelled at
    random gives a permutation null, whose exact mean and variance are closed
    forms (Hoeffding's combinatorial central limit theorem).

Transfer
    A transfer map asks three things of a voxel: that the model learned
    something in its training modality, that its predictions of the other
    modality correlate with the responses, and that they do so through the
    correspondence of the two modalities' feature coordinates.
    :func:`conjunction_pvalues` gives the intersection–union p-value (the
    largest): valid whenever at least one of the nulls holds.

``docs/statistics.md`` explains the choices and shows their calibration.
"""
from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats as _scipy_stats

__all__ = [
    "AUTOCORRELATION_SPAN_S",
    "NoiseAutocovariance",
    "alignment_zscores",
    "conjunction_pvalues",
    "default_max_lag",
    "one_sided_pvalues",
    "prediction_zscores",
    "stouffer",
]

#: The default longest lag, in seconds, of the response autocorrelation the tests
#: account for: longer than the haemodynamic response and the usual fMRI noise memory.
AUTOCORRELATION_SPAN_S: float = 20.0
#: A null variance below this fraction of the white-noise variance is taken as a
#: failed estimate (possible only with strongly negative autocorrelations).
_VARIANCE_FLOOR = 0.1


def default_max_lag(tr: float) -> int:
    """Lags (TRs) covering :data:`AUTOCORRELATION_SPAN_S` at repetition time ``tr``."""
    if not math.isfinite(tr) or tr <= 0:
        raise ValueError(f"tr must be a positive number of seconds, got {tr!r}")
    return max(1, math.ceil(AUTOCORRELATION_SPAN_S / tr - 1e-9))


def _run_slices(run_lengths: Sequence[int]) -> list[slice]:
    bounds = np.concatenate([[0], np.cumsum([int(n) for n in run_lengths])])
    return [slice(int(a), int(b)) for a, b in zip(bounds[:-1], bounds[1:], strict=True)]


def _lagged_products(x: np.ndarray, y: np.ndarray, max_lag: int) -> np.ndarray:
    """``out[k] = sum_t x_t y_{t+k}`` per column, k = 0..max_lag (float64)."""
    n = len(x)
    out = np.zeros((max_lag + 1, x.shape[1]))
    for k in range(min(max_lag, n - 1) + 1):
        out[k] = np.einsum("tv,tv->v", x[: n - k], y[k:])
    return out


@dataclass(frozen=True)
class NoiseAutocovariance:
    """Autocovariance of response columns, per run, at lags 0..``max_lag``.

    Estimated from the centred responses and corrected for the two biases of
    the plain estimator: the division by ``n`` instead of ``n - k`` and the
    removal of the run mean (which lowers every lag by about ``Var(mean)``,
    itself estimated from the corrected lags). Once estimated it serves every
    prediction tested against these responses.

    Attributes
    ----------
    gamma : tuple of ndarray of shape (max_lag + 1, n_voxels)
        One array per run.
    run_lengths : tuple of int
    max_lag : int
    """

    gamma: tuple[np.ndarray, ...]
    run_lengths: tuple[int, ...]
    max_lag: int

    @classmethod
    def estimate(cls, y: np.ndarray, run_lengths: Sequence[int], max_lag: int) -> "NoiseAutocovariance":
        """Estimate from responses ``y`` (n_trs × n_voxels, runs stacked in order).

        Parameters
        ----------
        y : ndarray of shape (n_trs, n_voxels)
        run_lengths : sequence of int
            Rows of each run; they must sum to ``n_trs``.
        max_lag : int
            Longest lag, in rows; every run must be longer than ``2 * max_lag``.
        """
        lengths = tuple(int(n) for n in run_lengths)
        if sum(lengths) != len(y):
            raise ValueError(f"run lengths {list(lengths)} do not sum to the {len(y)} rows of y")
        if max_lag < 0 or any(n <= 2 * max_lag for n in lengths):
            raise ValueError(f"every run must be longer than 2 * max_lag = {2 * max_lag} rows; "
                             f"runs have {list(lengths)}")
        gamma = []
        lags = np.arange(max_lag + 1)
        for rows, n in zip(_run_slices(lengths), lengths, strict=True):
            centred = np.asarray(y[rows], dtype=np.float64)
            centred = centred - centred.mean(axis=0)
            g = _lagged_products(centred, centred, max_lag) / (n - lags)[:, None]
            # The run mean removed a variance of about sum_k gamma(k) / n from every lag.
            g += (g[0] + 2.0 * g[1:].sum(axis=0)) / n
            gamma.append(g)
        return cls(tuple(gamma), lengths, int(max_lag))

    def runs(self, indices: Sequence[int]) -> "NoiseAutocovariance":
        """The estimate restricted to the runs at ``indices``, in that order."""
        return NoiseAutocovariance(tuple(self.gamma[i] for i in indices),
                                   tuple(self.run_lengths[i] for i in indices), self.max_lag)

    def dot_variance(self, g: np.ndarray) -> np.ndarray:
        """Null variance of ``sum_t g_t y_t`` per column, for a fixed ``g`` (rows as ``y``).

        ``g`` is centred within each run first, since ``y``'s run means are
        unknown (``sum_t g_t y_t`` with centred ``g`` does not depend on them).
        """
        return self._variances(self._centred_runs(g))[0]

    def _centred_runs(self, g: np.ndarray) -> list[np.ndarray]:
        """``g`` cut into runs, each centred, in float64."""
        if len(g) != sum(self.run_lengths):
            raise ValueError(f"g has {len(g)} rows but the runs hold {sum(self.run_lengths)}")
        parts = []
        for rows in _run_slices(self.run_lengths):
            part = np.asarray(g[rows], dtype=np.float64)
            parts.append(part - part.mean(axis=0))
        return parts

    def _variances(self, parts: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """Null variance of the centred runs ``parts`` against the noise, and what it would
        be without autocorrelation (lag 0 only)."""
        variance = np.zeros(parts[0].shape[1])
        white = np.zeros(parts[0].shape[1])
        for part, gamma in zip(parts, self.gamma, strict=True):
            products = _lagged_products(part, part, self.max_lag)
            white += products[0] * gamma[0]
            variance += products[0] * gamma[0] + 2.0 * np.einsum("kv,kv->v", products[1:], gamma[1:])
        return variance, white


def prediction_zscores(pred: np.ndarray, y: np.ndarray, noise: NoiseAutocovariance) -> np.ndarray:
    """z-score of the alignment of each predicted column with its response column.

    ``z = sum_t p_t y_t / sqrt(Var)`` with ``p`` centred within each run and
    ``Var`` from :meth:`NoiseAutocovariance.dot_variance`; ``z`` has the sign
    of the correlation between ``pred`` and ``y``.

    Parameters
    ----------
    pred, y : ndarray of shape (n_trs, n_voxels)
        The prediction must not depend on ``y``.
    noise : NoiseAutocovariance
        Estimated from ``y`` (the same runs, in the same order).

    Returns
    -------
    z : ndarray of shape (n_voxels,)
        NaN where the prediction or response is constant or not finite.
    """
    pred = np.asarray(pred)
    y = np.asarray(y)
    if pred.shape != y.shape:
        raise ValueError(f"pred and y differ in shape: {pred.shape} vs {y.shape}")
    parts = noise._centred_runs(pred)
    statistic = np.zeros(y.shape[1])
    for part, rows in zip(parts, _run_slices(noise.run_lengths), strict=True):
        statistic += np.einsum("tv,tv->v", part, y[rows].astype(np.float64, copy=False))
    variance, white = noise._variances(parts)
    floor = _VARIANCE_FLOOR * white
    raised = (variance < floor) & (floor > 0)
    if np.any(raised):
        warnings.warn(f"{int(np.sum(raised))} voxels have a null variance below "
                      f"{_VARIANCE_FLOOR:g} of the white-noise one (strongly negative response "
                      "autocorrelation); it is raised to that floor", stacklevel=2)
    variance = np.maximum(variance, floor)
    with np.errstate(invalid="ignore", divide="ignore"):
        z = statistic / np.sqrt(variance)
    z[~(variance > 0) | ~np.isfinite(z)] = np.nan
    return z


def alignment_zscores(cross_products: np.ndarray, weights: np.ndarray, n_delays: int) -> np.ndarray:
    """z-score of a cross-modal statistic against random pairings of the feature coordinates.

    With ``a = X_otherᵀ y`` (the other modality's delayed design against the
    response) and ``w`` the training modality's weights, the cross-modal
    statistic is ``T = Σ_d Σ_f a[d, f] w[d, f]`` over delays ``d`` and features
    ``f``. Pairing story feature ``f`` with movie feature ``π(f)`` instead
    (the same ``π`` at every delay) gives ``T_π = Σ_f M[π(f), f]`` with
    ``M[g, f] = Σ_d a[d, g] w[d, f]``. Over all ``π`` its mean is
    ``ΣM / F`` and its variance ``Σ C² / (F − 1)`` with ``C`` the doubly
    centred ``M`` (Hoeffding), and ``Σ C² = Σ_{d,e} (ãᵀã)_{de} (w̃ᵀw̃)_{de}``
    with ``ã``, ``w̃`` centred over features, so ``M`` is never formed.

    Parameters
    ----------
    cross_products : ndarray of shape (n_delays * n_features, n_voxels)
        ``X_otherᵀ y``, columns of the design in its order: delay blocks of
        ``n_features`` columns.
    weights : ndarray of the same shape
        The model's weights on the same columns.
    n_delays : int

    Returns
    -------
    ndarray of shape (n_voxels,)
        ``(T - mean) / sd``; NaN where the permutation variance is 0.
    """
    a = np.array(cross_products, dtype=np.float64)  # copies: centred in place below
    w = np.array(weights, dtype=np.float64)
    if a.shape != w.shape or a.shape[0] % n_delays:
        raise ValueError(f"cross products {a.shape} and weights {w.shape} must have the same "
                         f"shape, with rows a multiple of n_delays={n_delays}")
    n_features = a.shape[0] // n_delays
    if n_features < 2:
        return np.full(a.shape[1], np.nan)
    a = a.reshape(n_delays, n_features, -1)
    w = w.reshape(n_delays, n_features, -1)
    statistic = np.einsum("dfv,dfv->v", a, w)
    mean = np.einsum("dv,dv->v", a.sum(axis=1), w.sum(axis=1)) / n_features
    a -= a.mean(axis=1, keepdims=True)
    w -= w.mean(axis=1, keepdims=True)
    variance = np.einsum("dev,dev->v", np.einsum("dfv,efv->dev", a, a),
                         np.einsum("dfv,efv->dev", w, w)) / (n_features - 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        z = (statistic - mean) / np.sqrt(variance)
    z[~(variance > 0) | ~np.isfinite(z)] = np.nan
    return z


def stouffer(zscores: np.ndarray, weights: Sequence[float] | None = None) -> np.ndarray:
    """Weighted Stouffer combination of independent z-scores.

    ``sum_i w_i z_i / sqrt(sum_i w_i**2)``: standard normal under the null
    when the ``z_i`` are independent standard normals.

    Parameters
    ----------
    zscores : ndarray of shape (n_tests, n_voxels)
    weights : sequence of float, optional
        One positive weight per test (default: equal).

    Returns
    -------
    ndarray of shape (n_voxels,)
        NaN where any of a voxel's z-scores is NaN.
    """
    zscores = np.atleast_2d(np.asarray(zscores, dtype=np.float64))
    w = np.ones(len(zscores)) if weights is None else np.asarray(weights, dtype=np.float64)
    if w.shape != (len(zscores),) or np.any(w <= 0) or not np.all(np.isfinite(w)):
        raise ValueError(f"need one positive weight per test ({len(zscores)}), got {weights!r}")
    return (w[:, None] * zscores).sum(axis=0) / np.sqrt(np.sum(w**2))


def one_sided_pvalues(z: np.ndarray) -> np.ndarray:
    """``P(Z >= z)`` for a standard normal ``Z`` (NaN stays NaN)."""
    return _scipy_stats.norm.sf(np.asarray(z, dtype=np.float64))


def conjunction_pvalues(*pvalues: np.ndarray) -> np.ndarray:
    """Intersection–union p-value of several tests of one voxel: their maximum.

    Rejecting when the maximum is at most ``alpha`` rejects every one of the
    nulls at ``alpha``; it is a level-``alpha`` test of "at least one null
    holds". NaN where any of the p-values is NaN.
    """
    stacked = np.stack([np.asarray(p, dtype=np.float64) for p in pvalues])
    return stacked.max(axis=0)

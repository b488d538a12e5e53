"""Voxelwise prediction scores, FDR control and per-direction summaries.

Scores compare a predicted and a measured response column by column
(time × voxels). The p-values behind the FDR masks come from
:mod:`brainenc.inference`.
"""
from __future__ import annotations

import numpy as np
from scipy import stats as _scipy_stats

from brainenc.results import DIRECTIONS, DirectionSummary

# Scores are computed on column chunks of about this many float64 bytes, so that the
# working copies stay small whatever the number of voxels.
_SCORE_BYTES = 64 * 2**20


def _as_2d(array: np.ndarray, name: str) -> np.ndarray:
    """``array`` as a 2-D floating array; float32 input stays float32 (chunks are widened later)."""
    array = np.asarray(array)
    if array.dtype.kind != "f":
        array = array.astype(np.float64)
    if array.ndim == 1:
        array = array[:, None]
    if array.ndim != 2:
        raise ValueError(f"{name} must be (n_trs,) or (n_trs, n_voxels), got shape {array.shape}")
    return array


def _check_pair(pred: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    pred2 = _as_2d(pred, "pred")
    y2 = _as_2d(y, "y")
    if pred2.shape != y2.shape:
        raise ValueError(f"pred and y differ in shape: {np.shape(pred)} vs {np.shape(y)}")
    if pred2.shape[0] < 2:
        raise ValueError("at least 2 time points are needed to score a prediction")
    return pred2, y2


def _column_chunks(n_trs: int, n_voxels: int) -> list[slice]:
    """Consecutive column ranges of about :data:`_SCORE_BYTES` of float64 each."""
    width = max(1, _SCORE_BYTES // (8 * n_trs))
    return [slice(start, min(start + width, n_voxels)) for start in range(0, n_voxels, width)]


def _column_scores(pred: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pearson r and R² of float64 columns, in one pass.

    A column pair holding a non-finite value gets NaN for both. r is NaN
    where either column is constant, R² where ``y`` is. Constancy is tested
    with ``max == min`` because centring a constant column can leave rounding
    residue that a zero-variance test would miss.
    """
    finite = np.isfinite(pred).all(axis=0) & np.isfinite(y).all(axis=0)
    pred[:, ~finite] = 0.0
    y[:, ~finite] = 0.0
    varies_p = pred.max(axis=0) > pred.min(axis=0)
    varies_y = y.max(axis=0) > y.min(axis=0)
    offset = y.mean(axis=0) - pred.mean(axis=0)
    pred -= pred.mean(axis=0)
    y -= y.mean(axis=0)
    ss_p = np.einsum("tv,tv->v", pred, pred)
    ss_y = np.einsum("tv,tv->v", y, y)
    cross = np.einsum("tv,tv->v", pred, y)
    r = np.full(y.shape[1], np.nan)
    ok = finite & varies_p & varies_y
    r[ok] = np.clip(cross[ok] / np.sqrt(ss_p[ok] * ss_y[ok]), -1.0, 1.0)
    r2 = np.full(y.shape[1], np.nan)
    ok = finite & varies_y
    # Σ(y - p)² from the centred sums: Σ(yc - pc)² + n (mean y - mean p)²
    ss_res = ss_y - 2.0 * cross + ss_p + len(y) * offset**2
    r2[ok] = 1.0 - ss_res[ok] / ss_y[ok]
    return r, r2


def prediction_scores(pred: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pearson r and coefficient of determination between matching columns.

    Parameters
    ----------
    pred, y : ndarray of shape (n_trs, n_voxels) or (n_trs,)
        Predicted and measured responses.

    Returns
    -------
    r : ndarray of shape (n_voxels,)
        NaN where either column is constant or holds a non-finite value.
    r2 : ndarray of shape (n_voxels,)
        ``1 - SS_res / SS_tot``; NaN where ``y`` is constant or either column
        holds a non-finite value. Can be negative (a prediction worse than the
        mean of ``y``).
    """
    pred2, y2 = _check_pair(pred, y)
    r = np.empty(y2.shape[1])
    r2 = np.empty(y2.shape[1])
    for cols in _column_chunks(*y2.shape):
        r[cols], r2[cols] = _column_scores(pred2[:, cols].astype(np.float64),
                                           y2[:, cols].astype(np.float64))
    return r, r2


def pearson_r(pred: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Pearson correlation between matching columns of ``pred`` and ``y``.

    Parameters
    ----------
    pred, y : ndarray of shape (n_trs, n_voxels) or (n_trs,)
        Predicted and measured responses.

    Returns
    -------
    r : ndarray of shape (n_voxels,)
        NaN where either column is constant or holds a non-finite value.
    """
    return prediction_scores(pred, y)[0]


def r2_score(pred: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Coefficient of determination ``1 - SS_res / SS_tot`` per column.

    Parameters
    ----------
    pred, y : ndarray of shape (n_trs, n_voxels) or (n_trs,)
        Predicted and measured responses.

    Returns
    -------
    r2 : ndarray of shape (n_voxels,)
        NaN where ``y`` is constant or either column holds a non-finite value.
        Can be negative (a prediction worse than the mean of ``y``).
    """
    return prediction_scores(pred, y)[1]


# -- multiple comparisons and summaries ------------------------------------------------


def fdr_bh(pvalues: np.ndarray, q: float = 0.05) -> np.ndarray:
    """Benjamini–Hochberg false-discovery-rate control.

    Parameters
    ----------
    pvalues : ndarray of shape (n_voxels,)
        NaN p-values (untested voxels) are never significant and do not count
        in the number of tests.
    q : float
        Target false discovery rate, in (0, 1).

    Returns
    -------
    significant : ndarray of bool, shape (n_voxels,)
    """
    if not 0.0 < q < 1.0:
        raise ValueError(f"q must lie in (0, 1), got {q}")
    pvalues = np.asarray(pvalues, dtype=np.float64)
    significant = np.zeros(pvalues.shape, dtype=bool)
    tested = np.isfinite(pvalues)
    if tested.any():
        tested_p = pvalues[tested]
        if (tested_p < 0).any() or (tested_p > 1).any():
            raise ValueError("p-values must lie in [0, 1]")
        adjusted = _scipy_stats.false_discovery_control(tested_p, method="bh")
        significant[tested] = adjusted <= q
    return significant


def summarize_direction(
    direction: str, r: np.ndarray, significant: np.ndarray, q: float, tested: bool = True
) -> DirectionSummary:
    """Summarise the scores of one direction.

    Only voxels with a defined (finite) ``r`` count: ``n_voxels`` is their
    number and ``fraction_significant`` is relative to it.

    Parameters
    ----------
    direction : str
        One of :data:`brainenc.results.DIRECTIONS`.
    r : ndarray of shape (n_voxels,)
        Correlation per voxel (NaN for untested voxels).
    significant : ndarray of bool, shape (n_voxels,)
        FDR mask; ignored where ``r`` is NaN.
    q : float
        The FDR level that produced ``significant``.
    tested : bool
        Whether significance was tested at all; if not, ``n_significant`` is
        None and the fraction and mean of significant voxels NaN (not 0).

    Returns
    -------
    DirectionSummary
        ``mean_r_significant`` is NaN when no voxel is significant; ``mean_r``
        and ``max_r`` are NaN when no voxel has a defined ``r``.
    """
    if direction not in DIRECTIONS:
        raise ValueError(f"unknown direction {direction!r}; expected one of {DIRECTIONS}")
    r = np.asarray(r, dtype=np.float64)
    significant = np.asarray(significant, dtype=bool)
    if r.shape != significant.shape:
        raise ValueError(f"r and significant differ in shape: {r.shape} vs {significant.shape}")
    defined = np.isfinite(r)
    sig = significant & defined
    n_defined = int(defined.sum())
    n_sig = int(sig.sum())
    return DirectionSummary(
        direction=direction,
        n_voxels=n_defined,
        n_significant=n_sig if tested else None,
        fraction_significant=n_sig / n_defined if n_defined and tested else float("nan"),
        mean_r=float(r[defined].mean()) if n_defined else float("nan"),
        mean_r_significant=float(r[sig].mean()) if n_sig and tested else float("nan"),
        max_r=float(r[defined].max()) if n_defined else float("nan"),
        fdr_q=float(q),
    )

"""Voxelwise prediction scores, block-permutation significance and FDR control.

Scores compare a predicted and a measured response column by column
(time × voxels). Significance follows the usual encoding-model recipe: the
prediction is cut into blocks of consecutive TRs, the blocks are shuffled to
break the alignment with the response while keeping the autocorrelation inside
each block, and the one-sided p-value of the observed correlation is read off
that null distribution; the p-values are then corrected over voxels with
Benjamini–Hochberg.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
from scipy import stats as _scipy_stats

from brainenc.results import DIRECTIONS, DirectionSummary

#: Null correlations within this distance below the observed one count as ties
#: (``null >= observed``), so that a permutation that reproduces the observed
#: alignment is counted whatever the rounding of the two computations.
TIE_TOLERANCE: float = 1e-10
# Working-set sizes of the permutation loop: the cross-block products of a voxel batch
# and the null values of a chunk of permutations stay cache-resident, which matters
# more than the operation count because each permutation is a gather.
_CROSS_BYTES = 8 * 2**20
_NULL_BYTES = 4 * 2**20
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


def _zscore_columns(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Population z-scores per column, and which columns are usable.

    A column is unusable when it is constant or holds a non-finite value; its
    z-scores are set to 0 so that it contributes nothing and raises no warning.
    Constancy is tested with ``max == min`` because centring a constant column
    can leave rounding residue that a ``std == 0`` test would miss.
    """
    with np.errstate(invalid="ignore"):
        # max/min propagate NaN, so the comparison is False for non-finite columns
        # (and for columns holding +inf or -inf, inf - inf makes the mean NaN below).
        valid = x.max(axis=0) > x.min(axis=0)
        centred = x - x.mean(axis=0)
        valid &= np.isfinite(centred).all(axis=0)
    centred[:, ~valid] = 0.0
    std = np.sqrt(np.einsum("tv,tv->v", centred, centred) / x.shape[0])
    scale = np.divide(1.0, std, out=np.zeros_like(std), where=valid)
    centred *= scale
    return centred, valid


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
    pred2, y2 = _check_pair(pred, y)
    r = np.empty(y2.shape[1])
    for cols in _column_chunks(*y2.shape):
        zp, valid_p = _zscore_columns(pred2[:, cols].astype(np.float64))
        zy, valid_y = _zscore_columns(y2[:, cols].astype(np.float64))
        chunk = np.clip((zp * zy).mean(axis=0), -1.0, 1.0)
        chunk[~(valid_p & valid_y)] = np.nan
        r[cols] = chunk
    return r


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
    pred2, y2 = _check_pair(pred, y)
    r2 = np.full(y2.shape[1], np.nan)
    for cols in _column_chunks(*y2.shape):
        r2[cols] = _r2_columns(pred2[:, cols].astype(np.float64), y2[:, cols].astype(np.float64))
    return r2


def _r2_columns(pred: np.ndarray, y: np.ndarray) -> np.ndarray:
    """:func:`r2_score` of float64 columns."""
    finite = np.isfinite(pred).all(axis=0) & np.isfinite(y).all(axis=0)
    y_safe = np.where(finite, y, 0.0)
    p_safe = np.where(finite, pred, 0.0)
    valid = finite & (y_safe.max(axis=0) > y_safe.min(axis=0))
    ss_res = ((y_safe - p_safe) ** 2).sum(axis=0)
    ss_tot = ((y_safe - y_safe.mean(axis=0)) ** 2).sum(axis=0)
    r2 = np.full(y.shape[1], np.nan)
    r2[valid] = 1.0 - ss_res[valid] / ss_tot[valid]
    return r2


# -- block permutations ----------------------------------------------------------


def _block_layout(
    n_trs: int, block_length: int, run_lengths: Sequence[int] | None
) -> tuple[np.ndarray, list[slice], np.ndarray]:
    """Start TR of every full block, the block range of each run, and the fixed TRs."""
    if block_length < 1:
        raise ValueError(f"block_length must be >= 1, got {block_length}")
    lengths = [int(n_trs)] if run_lengths is None else [int(n) for n in run_lengths]
    if any(n < 1 for n in lengths) or sum(lengths) != n_trs:
        raise ValueError(f"run_lengths {list(lengths)} must be positive and sum to n_trs={n_trs}")
    starts: list[int] = []
    run_blocks: list[slice] = []
    fixed: list[np.ndarray] = []
    offset = 0
    for length in lengths:
        n_full = length // block_length
        first = len(starts)
        starts.extend(offset + k * block_length for k in range(n_full))
        run_blocks.append(slice(first, len(starts)))
        fixed.append(np.arange(offset + n_full * block_length, offset + length))
        offset += length
    if len(starts) < 2:
        raise ValueError(
            f"{n_trs} TRs hold fewer than 2 full blocks of {block_length} TRs: nothing to permute"
        )
    return np.asarray(starts, dtype=np.int64), run_blocks, np.concatenate(fixed).astype(np.int64)


def _block_orders(
    n_blocks: int, run_blocks: list[slice], n_permutations: int, seed: int, within_runs: bool
) -> np.ndarray:
    """Random block orders, shape (n_permutations, n_blocks): row k is pi_k."""
    if n_permutations < 1:
        raise ValueError(f"n_permutations must be >= 1, got {n_permutations}")
    rng = np.random.default_rng(seed)
    orders = np.tile(np.arange(n_blocks, dtype=np.int64), (n_permutations, 1))
    if not within_runs:
        return rng.permuted(orders, axis=1)
    for blocks in run_blocks:
        orders[:, blocks] = rng.permuted(orders[:, blocks], axis=1)
    return orders


def block_permutations(
    n_trs: int,
    block_length: int = 10,
    n_permutations: int = 1000,
    seed: int = 0,
    run_lengths: Sequence[int] | None = None,
    within_runs: bool = False,
) -> np.ndarray:
    """TR orders of the block-permutation null, as used by :func:`block_permutation_pvalues`.

    Each run (or the whole series when ``run_lengths`` is None) is cut into
    consecutive blocks of ``block_length`` TRs, starting at its first TR; blocks
    never straddle two runs. The last ``n_run % block_length`` TRs of a run form
    a partial block that stays in place, since it cannot swap with a full block.
    Full blocks are shuffled among all runs, or only inside their own run when
    ``within_runs`` is True.

    Parameters
    ----------
    n_trs : int
        Length of the series (all runs concatenated).
    block_length : int
        TRs per block.
    n_permutations : int
        Number of random block orders.
    seed : int
        Seed of :func:`numpy.random.default_rng`; the same arguments give the
        same permutations.
    run_lengths : sequence of int, optional
        TRs per run, in the order of the series; must sum to ``n_trs``.
    within_runs : bool
        Shuffle blocks only inside their run.

    Returns
    -------
    order : ndarray of int, shape (n_permutations, n_trs)
        ``pred[order[k]]`` is the k-th permuted prediction.
    """
    starts, run_blocks, _ = _block_layout(n_trs, block_length, run_lengths)
    orders = _block_orders(len(starts), run_blocks, n_permutations, seed, within_runs)
    result = np.tile(np.arange(n_trs, dtype=np.int64), (n_permutations, 1))
    within = np.arange(block_length, dtype=np.int64)
    destination = (starts[:, None] + within).ravel()
    # The block at position b receives the block pi(b).
    result[:, destination] = (starts[orders][:, :, None] + within).reshape(n_permutations, -1)
    return result


def block_permutation_pvalues(
    pred: np.ndarray,
    y: np.ndarray,
    n_permutations: int = 1000,
    block_length: int = 10,
    seed: int = 0,
    run_lengths: Sequence[int] | None = None,
    within_runs: bool = False,
    n_voxels_batch: int | None = None,
) -> np.ndarray:
    """One-sided block-permutation p-values of the Pearson correlation per voxel.

    ``p = (1 + #{k : r_k >= r_observed}) / (1 + n_permutations)`` where ``r_k``
    correlates the measured response with the prediction permuted by the k-th
    order of :func:`block_permutations` (same arguments, same permutations for
    every voxel). Null values within :data:`TIE_TOLERANCE` below the observed
    correlation count as ties.

    The permutations are not applied to the series. With z-scored columns the
    permuted correlation is ``r_k = (sum_b M[b, pi_k(b)] + c) / n`` where
    ``M[a, b] = sum_j zy[s_a + j] * zpred[s_b + j]`` pairs block ``a`` of the
    response with block ``b`` of the prediction (``s_a`` its first TR) and ``c``
    is the fixed contribution of the partial blocks. ``M`` is computed once per
    batch of voxels, after which a permutation costs a sum over blocks instead
    of a sum over TRs.

    The permutations depend only on the series layout and ``seed``, never on
    the voxels, and each voxel's p-value only on its own two columns: voxels
    may be tested in batches of any size (and float32 input is widened to
    float64 one batch at a time), with the same result as testing them all at
    once.

    Parameters
    ----------
    pred, y : ndarray of shape (n_trs, n_voxels) or (n_trs,)
        Predicted and measured responses.
    n_permutations, block_length, seed, run_lengths, within_runs
        Define the null; see :func:`block_permutations`.
    n_voxels_batch : int, optional
        Voxels processed together; by default sized so that ``M`` takes about
        8 MB (cache-resident: speed is bound by memory traffic, not arithmetic).

    Returns
    -------
    pvalues : ndarray of shape (n_voxels,)
        NaN where ``pearson_r`` is NaN (constant or non-finite columns).
    """
    pred2, y2 = _check_pair(pred, y)
    n_trs, n_voxels = y2.shape
    starts, run_blocks, fixed = _block_layout(n_trs, block_length, run_lengths)
    n_blocks = len(starts)
    orders = _block_orders(n_blocks, run_blocks, n_permutations, seed, within_runs)
    # Row of M (flattened a*n_blocks + b) gathered for position b of each permutation.
    gather = orders + np.arange(n_blocks, dtype=np.int64)[None, :] * n_blocks
    identity = np.arange(n_blocks, dtype=np.int64)[None, :] * (n_blocks + 1)
    block_trs = (starts[:, None] + np.arange(block_length)).ravel()

    if n_voxels_batch is None:
        n_voxels_batch = max(1, _CROSS_BYTES // (8 * n_blocks * n_blocks))
    # Permutations per step: bounds the (permutations x voxels) work array.
    perm_chunk = max(1, min(n_permutations, _NULL_BYTES // (8 * min(n_voxels_batch, n_voxels))))

    pvalues = np.full(n_voxels, np.nan)
    for v0 in range(0, n_voxels, n_voxels_batch):
        cols = slice(v0, min(v0 + n_voxels_batch, n_voxels))
        zp, valid_p = _zscore_columns(pred2[:, cols].astype(np.float64))
        zy, valid_y = _zscore_columns(y2[:, cols].astype(np.float64))
        n_batch = zy.shape[1]
        yb = zy[block_trs].reshape(n_blocks, block_length, n_batch)
        pb = zp[block_trs].reshape(n_blocks, block_length, n_batch)
        cross = np.empty((n_blocks, n_blocks, n_batch))
        for a in range(n_blocks):  # one response block at a time keeps ``cross`` contiguous
            cross[a] = np.einsum("jv,bjv->bv", yb[a], pb)
        cross = cross.reshape(n_blocks * n_blocks, n_batch)
        constant = (zy[fixed] * zp[fixed]).sum(axis=0)
        # The observed value goes through the same sums as the null values, so that a
        # permutation that restores the alignment reproduces it to the last bit.
        observed = _sum_gathered(cross, identity)[0] + constant
        exceed = np.zeros(n_batch, dtype=np.int64)
        for k0 in range(0, n_permutations, perm_chunk):
            null = _sum_gathered(cross, gather[k0 : k0 + perm_chunk]) + constant
            # Sums over TRs are n_trs * r, hence the scaled tolerance.
            exceed += (null >= observed - TIE_TOLERANCE * n_trs).sum(axis=0)
        p = (1.0 + exceed) / (1.0 + n_permutations)
        p[~(valid_p & valid_y)] = np.nan
        pvalues[cols] = p
    return pvalues


def _sum_gathered(cross: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """``out[k] = sum_b cross[rows[k, b]]``: one row per permutation, summed over blocks."""
    out = cross[rows[:, 0]]
    for b in range(1, rows.shape[1]):
        out += cross[rows[:, b]]
    return out


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
    direction: str, r: np.ndarray, significant: np.ndarray, q: float
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
        n_significant=n_sig,
        fraction_significant=n_sig / n_defined if n_defined else float("nan"),
        mean_r=float(r[defined].mean()) if n_defined else float("nan"),
        mean_r_significant=float(r[sig].mean()) if n_sig else float("nan"),
        max_r=float(r[defined].max()) if n_defined else float("nan"),
        fdr_q=float(q),
    )

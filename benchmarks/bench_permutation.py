"""Time block-permutation p-values: the cross-block trick against permute-and-correlate.

The naive method permutes the prediction and recomputes every correlation, at
a cost of n_TRs per permutation and voxel; it is timed on a subset of voxels
and scaled linearly to the full count. The subset fits in cache, as it would
in a naive implementation that batches voxels, so the scaled time is a
favourable estimate for the naive method. The two methods are checked to
agree on that subset.

Usage::

    python benchmarks/bench_permutation.py            # 1000 permutations, 100 000 voxels x 300 TRs
    python benchmarks/bench_permutation.py --quick    # 200 permutations, 5 000 voxels
"""
from __future__ import annotations

import argparse
import time

import numpy as np

from brainenc.stats import TIE_TOLERANCE, block_permutation_pvalues, block_permutations


def naive_pvalues(pred: np.ndarray, y: np.ndarray, order: np.ndarray) -> np.ndarray:
    """Permute the prediction for real and recompute all correlations, permutation by permutation."""
    def zscore(x):
        return (x - x.mean(axis=0)) / x.std(axis=0)

    zy = zscore(y)
    zp = zscore(pred)
    n_trs = y.shape[0]
    observed = (zy * zp).sum(axis=0) / n_trs
    exceed = np.zeros(y.shape[1], dtype=np.int64)
    for rows in order:
        null = np.einsum("tv,tv->v", zy, zp[rows]) / n_trs
        exceed += null >= observed - TIE_TOLERANCE
    return (1.0 + exceed) / (1.0 + len(order))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small problem for a smoke run")
    parser.add_argument("--voxels", type=int, default=None)
    parser.add_argument("--trs", type=int, default=300)
    parser.add_argument("--permutations", type=int, default=None)
    parser.add_argument("--block-length", type=int, default=10)
    parser.add_argument("--naive-voxels", type=int, default=None,
                        help="voxels on which the naive method is timed (then scaled)")
    args = parser.parse_args(argv)
    n_vox = args.voxels or (5_000 if args.quick else 100_000)
    n_perm = args.permutations or (200 if args.quick else 1000)
    n_naive = min(n_vox, args.naive_voxels or (500 if args.quick else 2_000))

    rng = np.random.default_rng(0)
    pred = rng.standard_normal((args.trs, n_vox), dtype=np.float64)
    y = 0.2 * pred + rng.standard_normal((args.trs, n_vox), dtype=np.float64)
    kwargs = dict(n_permutations=n_perm, block_length=args.block_length, seed=0)

    start = time.perf_counter()
    p_fast = block_permutation_pvalues(pred, y, **kwargs)
    fast_s = time.perf_counter() - start

    order = block_permutations(args.trs, **kwargs)
    start = time.perf_counter()
    p_naive = naive_pvalues(pred[:, :n_naive], y[:, :n_naive], order)
    naive_subset_s = time.perf_counter() - start
    naive_s = naive_subset_s * n_vox / n_naive

    agree = np.array_equal(p_fast[:n_naive], p_naive)
    print(f"problem: {n_vox} voxels x {args.trs} TRs, {n_perm} permutations, blocks of {args.block_length}")
    print(f"block trick:          {fast_s:8.2f} s")
    print(f"naive (on {n_naive} voxels): {naive_subset_s:8.2f} s -> scaled to {n_vox}: {naive_s:8.2f} s")
    print(f"speed-up:             {naive_s / fast_s:8.1f} x")
    print(f"p-values agree on the subset: {agree}")
    if not agree:
        raise SystemExit("block trick and naive permutation disagree")


if __name__ == "__main__":
    main()

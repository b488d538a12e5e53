"""Time the p-values of all four directions: the analytic tests against permute-and-correlate.

The problem: 20 484 vertices (fsaverage5), 6 story and 6 movie runs of 280 TRs
(1 680 TRs per modality). The analysed statistics are those of
:func:`brainenc.transfer.run_transfer` with leave-one-run-out splits: per
modality, the response autocovariance of every run; the within test of the
sequential steps (runs 3-6, each against its own prediction, combined by
Stouffer's method); the cross test of the mean model's prediction of all six
runs of the other modality. Predictions are smooth (white noise through an
HRF-like filter) and responses AR(1) noise with a planted signal in 10 % of the
vertices.

The baseline is the naive block-permutation test: cut the prediction into
blocks of 10 TRs, shuffle the blocks, recompute every correlation, 1 000
times, for the same four statistics (within: the four sequential runs;
cross: the six runs). It is timed on a subset of vertices and scaled linearly
to the full count (a favourable estimate: the subset fits in cache).

Usage::

    python benchmarks/bench_statistics.py            # the demo's problem
    python benchmarks/bench_statistics.py --quick    # 2 000 vertices, 200 permutations
"""
from __future__ import annotations

import argparse
import time

import numpy as np
from scipy import signal

from brainenc.inference import NoiseAutocovariance, one_sided_pvalues, prediction_zscores, stouffer

N_RUNS, N_TRS, MAX_LAG, BLOCK = 6, 280, 10, 10


def make_problem(n_vox: int, seed: int = 0):
    """Per modality: responses (all runs), within predictions (runs 3-6), cross predictions."""
    rng = np.random.default_rng(seed)
    kernel = np.exp(-0.5 * ((np.arange(12) - 4) / 1.5) ** 2)

    def smooth(n):
        return signal.lfilter(kernel, 1, rng.standard_normal((n + 12, n_vox)), axis=0)[12:].astype(np.float32)

    def ar1(n, rho=0.4):
        x = rng.standard_normal((n, n_vox)).astype(np.float32)
        for t in range(1, n):
            x[t] = rho * x[t - 1] + np.sqrt(1 - rho**2) * x[t]
        return x

    signal_voxels = rng.random(n_vox) < 0.1
    problem = {}
    for modality in ("story", "movie"):
        truth = smooth(N_RUNS * N_TRS)
        y = ar1(N_RUNS * N_TRS) + 0.3 * truth * signal_voxels
        within = truth[2 * N_TRS:] + smooth((N_RUNS - 2) * N_TRS)
        cross = truth + smooth(N_RUNS * N_TRS)
        problem[modality] = (y, within, cross)
    return problem


def analytic_pvalues(problem) -> dict[str, np.ndarray]:
    """The four directions' p-values as run_transfer computes them."""
    lengths = [N_TRS] * N_RUNS
    noise = {m: NoiseAutocovariance.estimate(y, lengths, MAX_LAG) for m, (y, _, _) in problem.items()}
    pvalues = {}
    for modality, other in (("story", "movie"), ("movie", "story")):
        y, within, _ = problem[modality]
        steps = [prediction_zscores(within[(j - 2) * N_TRS:(j - 1) * N_TRS], y[j * N_TRS:(j + 1) * N_TRS],
                                    noise[modality].runs([j])) for j in range(2, N_RUNS)]
        pvalues[f"{modality}_to_{modality}"] = one_sided_pvalues(stouffer(np.stack(steps)))
        cross = problem[modality][2]
        pvalues[f"{modality}_to_{other}"] = one_sided_pvalues(
            prediction_zscores(cross, problem[other][0], noise[other]))
    return pvalues


def naive_pvalues(pred: np.ndarray, y: np.ndarray, n_perm: int, rng) -> np.ndarray:
    """Block-permute the prediction for real and recompute all correlations."""
    def zscore(x):
        x = x.astype(np.float64)
        return (x - x.mean(axis=0)) / x.std(axis=0)

    zy, zp = zscore(y), zscore(pred)
    n = len(y)
    blocks = np.arange(n).reshape(-1, BLOCK)
    observed = np.einsum("tv,tv->v", zy, zp)
    exceed = np.zeros(y.shape[1], dtype=np.int64)
    for _ in range(n_perm):
        rows = blocks[rng.permutation(len(blocks))].ravel()
        exceed += np.einsum("tv,tv->v", zy, zp[rows]) >= observed
    return (1.0 + exceed) / (1.0 + n_perm)


def naive_all(problem, n_perm: int, columns: slice) -> float:
    """Seconds the naive test takes for the four directions on ``columns``."""
    rng = np.random.default_rng(1)
    start = time.perf_counter()
    for modality, other in (("story", "movie"), ("movie", "story")):
        y, within, cross = problem[modality]
        naive_pvalues(within[:, columns], y[2 * N_TRS:, columns], n_perm, rng)
        naive_pvalues(cross[:, columns], problem[other][0][:, columns], n_perm, rng)
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small problem for a smoke run")
    parser.add_argument("--voxels", type=int, default=None)
    parser.add_argument("--permutations", type=int, default=None)
    parser.add_argument("--naive-voxels", type=int, default=None,
                        help="vertices on which the naive method is timed (then scaled)")
    args = parser.parse_args(argv)
    n_vox = args.voxels or (2_000 if args.quick else 20_484)
    n_perm = args.permutations or (200 if args.quick else 1000)
    n_naive = min(n_vox, args.naive_voxels or (200 if args.quick else 1_000))
    problem = make_problem(n_vox)

    start = time.perf_counter()
    pvalues = analytic_pvalues(problem)
    analytic_s = time.perf_counter() - start
    naive_subset_s = naive_all(problem, n_perm, slice(0, n_naive))
    naive_s = naive_subset_s * n_vox / n_naive

    print(f"problem: {n_vox} vertices, {N_RUNS}+{N_RUNS} runs x {N_TRS} TRs, four directions "
          f"(analytic: lags 0-{MAX_LAG}; naive: {n_perm} permutations of {BLOCK}-TR blocks)")
    print(f"analytic tests, all four directions: {analytic_s:8.2f} s")
    print(f"naive permutations (on {n_naive} vertices): {naive_subset_s:8.2f} s "
          f"-> scaled to {n_vox}: {naive_s:8.1f} s")
    print(f"ratio naive / analytic: {naive_s / analytic_s:8.1f} x")
    smallest = min(float(np.nanmin(p)) for p in pvalues.values())
    print(f"smallest p-value: analytic {smallest:.1e}; naive at best {1 / (n_perm + 1):.1e}")


if __name__ == "__main__":
    main()

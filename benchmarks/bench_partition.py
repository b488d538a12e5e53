"""Time variance partitioning (banded ridge + two single-space ridges) on one subject.

A simulated within-modality problem like one modality of the simulated subject
(``brainenc simulate``): runs of a few hundred TRs, two feature spaces of 48
features each with FIR delays 1-4 (192 columns each, 384 for the joint
model), and voxels driven by A, by B, by both, or by nothing. The
responses are z-scored within each run, as the analysis loads them.

``partition_variance`` is timed whole, and the two single-space
``VoxelwiseRidge`` fits of the same folds are timed alone, so that the joint
model's share is the difference. By default the split is leave-one-run-out
(one model per run); ``--test-runs 1`` times one model tested on the last run,
as with named test runs.

Checks that the partition attributes the planted variance: mean unique_A is
larger where A drives than where B drives, and the other way round.

Usage::

    python benchmarks/bench_partition.py                      # 20 000 voxels, 5 runs x 350 TRs
    python benchmarks/bench_partition.py --threads 1          # steadier on a shared machine
    python benchmarks/bench_partition.py --voxels 2000 --n-iter 20 --n-alphas 7
    python benchmarks/bench_partition.py --quick              # seconds
"""
from __future__ import annotations

import argparse
import resource
import sys
import time

import numpy as np
import scipy.linalg  # noqa: F401  (loads scipy's BLAS before --threads limits every BLAS)
from scipy.signal import lfilter

from brainenc.analyses.partition import (
    DEFAULT_BATCH,
    DEFAULT_N_ITER,
    partition_variance,
)
from brainenc.design import add_delays, get_preset, zscore_columns
from brainenc.encoding import VoxelwiseRidge


class Stopwatch:
    """Wall-clock and process CPU seconds of a block."""

    def __enter__(self):
        self._wall, self._cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc):
        self.wall = time.perf_counter() - self._wall
        self.cpu = time.process_time() - self._cpu
        return False

    def __str__(self):
        return f"{self.wall:.1f} s wall, {self.cpu:.1f} s CPU"


def simulate(n_runs: int, n_trs: int, n_features: int, n_voxels: int, seed: int = 0):
    """Per-run designs of spaces A and B and z-scored responses (float32).

    The spaces share no feature; a quarter of the voxels is driven by A, a
    quarter by B, a quarter by both, a quarter by nothing, at SNRs from 0.05 to 1.
    """
    rng = np.random.default_rng(seed)
    groups = rng.integers(0, 4, n_voxels)           # 0: A, 1: B, 2: both, 3: none
    W = {key: rng.standard_normal((n_features, n_voxels)) / np.sqrt(n_features) for key in "ab"}
    W["a"][:, (groups == 1) | (groups == 3)] = 0
    W["b"][:, (groups == 0) | (groups == 3)] = 0
    snr = 10 ** rng.uniform(np.log10(0.05), 0, n_voxels)
    designs_a, designs_b, responses = [], [], []
    for _ in range(n_runs):
        raw = {key: lfilter([1.0], [1.0, -0.6], rng.standard_normal((n_trs + 2, n_features)), axis=0)
               for key in "ab"}
        signal = raw["a"][:-2] @ W["a"] + raw["b"][:-2] @ W["b"]     # a 2-TR lag
        signal /= np.where(signal.std(0) > 0, signal.std(0), 1.0)
        Y = np.sqrt(snr) * signal + rng.standard_normal((n_trs, n_voxels))
        designs_a.append(add_delays(zscore_columns(raw["a"][2:]), (1, 2, 3, 4)).astype(np.float32))
        designs_b.append(add_delays(zscore_columns(raw["b"][2:]), (1, 2, 3, 4)).astype(np.float32))
        responses.append(zscore_columns(Y).astype(np.float32))
    return designs_a, designs_b, responses, groups


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--voxels", type=int, default=20000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--trs", type=int, default=350)
    parser.add_argument("--features", type=int, default=48, help="features per space, before delays")
    parser.add_argument("--n-iter", type=int, default=DEFAULT_N_ITER)
    parser.add_argument("--n-alphas", type=int, default=None,
                        help="joint-model alphas logspace(0, 6, N) (default: the single-space grid, "
                             "logspace(0, 6, 13), as the module does)")
    parser.add_argument("--batch", type=int, default=DEFAULT_BATCH)
    parser.add_argument("--test-runs", type=int, default=0,
                        help="0: leave-one-run-out; k: one model tested on the last k runs")
    parser.add_argument("--backend", default="numpy")
    parser.add_argument("--threads", type=int, default=None, help="limit BLAS threads")
    parser.add_argument("--quick", action="store_true", help="a small problem")
    args = parser.parse_args(argv)
    if args.quick:
        args.voxels, args.trs, args.n_iter = 500, 150, 5

    if args.threads is not None:
        from threadpoolctl import threadpool_limits
        threadpool_limits(args.threads)

    designs_a, designs_b, responses, groups = simulate(args.runs, args.trs, args.features, args.voxels)
    n_runs = args.runs
    folds = None
    if args.test_runs:
        folds = [(list(range(n_runs - args.test_runs)), list(range(n_runs - args.test_runs, n_runs)))]
    fold_list = folds or [([j for j in range(n_runs) if j != i], [i]) for i in range(n_runs)]
    alphas = get_preset("default").alphas
    banded = None if args.n_alphas is None else np.logspace(0, 6, args.n_alphas)
    print(f"{args.voxels} voxels, {n_runs} runs x {args.trs} TRs, 2 x {4 * args.features} delayed "
          f"columns; {len(fold_list)} model(s) per space; joint search {args.n_iter} draws x "
          f"{len(alphas) if banded is None else len(banded)} alphas; single-space grid "
          f"{len(alphas)} alphas; batch {args.batch}; "
          f"backend {args.backend}; threads {args.threads or 'all'}")

    with Stopwatch() as single:
        model = VoxelwiseRidge(alphas=alphas, score_func="r2", backend=args.backend,
                               n_targets_batch=args.batch, warn_constant=False)
        for designs in (designs_a, designs_b):
            for train, _ in fold_list:
                model.fit(np.concatenate([designs[i] for i in train]),
                          np.concatenate([responses[i] for i in train]),
                          groups=[len(responses[i]) for i in train])
    print(f"single-space models (both spaces, all folds): {single}")

    with Stopwatch() as whole:
        result = partition_variance(designs_a, designs_b, responses, folds, alphas=alphas,
                                    banded_alphas=banded, n_iter=args.n_iter, backend=args.backend,
                                    n_targets_batch=args.batch, progress=False)
    print(f"partition_variance: {whole}  (joint model about {whole.wall - single.wall:.1f} s wall)")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024    # KiB on Linux
    print(f"peak resident memory of the process (data included): {peak:.0f} MiB")

    means = {name: [float(np.nanmean(getattr(result, name)[groups == g])) for g in range(4)]
             for name in ("r2_joint", "unique_a", "unique_b", "shared")}
    for name, values in means.items():
        print(f"  mean {name:9s} by group (A, B, both, none): " + "  ".join(f"{v:+.3f}" for v in values))
    best = np.maximum(result.r2_a, result.r2_b)
    predicted = best > 0.05
    short = np.mean(result.r2_joint[predicted] < best[predicted] - 0.01)
    print(f"  joint model more than 0.01 below the better single-space model: {100 * short:.1f} % "
          f"of the {int(predicted.sum())} voxels with a single-space R² > 0.05")
    ok = means["unique_a"][0] > means["unique_a"][1] and means["unique_b"][1] > means["unique_b"][0]
    print("check: unique variance goes to the driving space:", "ok" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

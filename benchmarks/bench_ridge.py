"""Time VoxelwiseRidge against himalaya RidgeCV and a plain bootstrap ridge.

One simulated encoding problem (training runs for leave-one-run-out CV, plus a
held-out test run; planted weights, per-voxel signal-to-noise, some pure-noise
voxels) is solved three ways, each timed over fit + predict on the test run:

* ``VoxelwiseRidge`` (run-wise Gram matrices, one eigendecomposition per fold);
* (a) himalaya ``RidgeCV`` with the same leave-one-run-out folds, alpha grid
  and correlation scoring, on himalaya's numpy and torch CPU backends (the
  faster one is used for the ratio);
* (b) a bootstrap ridge written plainly after the Huth-lab recipe: 50
  bootstraps, each holding out ~20% of the training samples in random chunks of
  40 TRs, an SVD of the remaining design, validation correlation for every
  alpha; mean over bootstraps, best alpha per voxel, refit on all training
  samples. The penalty is ``alpha`` as in ``(XᵀX + alpha I)`` for all three
  methods; the default grid logspace(2, 6, 10) is the Huth-lab grid
  logspace(1, 3, 10) squared, since that code penalises ``alpha**2``.

Checks: test-run correlations of VoxelwiseRidge and (a) agree (|Δr| < 1e-3);
the bootstrap chooses alphas differently, so its test-run correlations are
compared with a closed-form refit at the bootstrap's own alphas
(``brainenc.encoding.ridge_weights``), and the spread of |Δr| between the two
methods' own choices is reported.

Usage::

    python benchmarks/bench_ridge.py           # 5 runs x 400 TRs, 1024 features, 5000 voxels, 10 alphas
    python benchmarks/bench_ridge.py --threads 1   # steadier timings on a shared machine
    python benchmarks/bench_ridge.py --quick   # a small problem, a few seconds
"""
from __future__ import annotations

import argparse
import sys
import time

import numpy as np
from scipy.signal import lfilter

from brainenc.stats import pearson_r
from brainenc.encoding import (VoxelwiseRidge, leave_one_run_out,
                               resolve_backend, ridge_weights)

TOLERANCE_R = 1e-3


class Stopwatch:
    """Wall-clock and process CPU seconds of a block.

    On a machine shared with other jobs the wall time of a single-threaded run
    grows with the load while its CPU time barely moves, so both are reported.
    """

    def __enter__(self):
        self._wall, self._cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc):
        self.wall = time.perf_counter() - self._wall
        self.cpu = time.process_time() - self._cpu
        return False

    def __str__(self):
        return f"{self.wall:.2f} s wall, {self.cpu:.2f} s CPU"


def zscore_runs(data: np.ndarray, lengths: list[int]) -> np.ndarray:
    """Z-score each column within each run (population std)."""
    out = np.empty_like(data)
    start = 0
    for length in lengths:
        block = data[start:start + length]
        std = block.std(0)
        out[start:start + length] = (block - block.mean(0)) / np.where(std > 0, std, 1)
        start += length
    return out


def simulate(n_runs: int, n_trs: int, n_features: int, n_voxels: int, seed: int = 0):
    """Training design/responses (``n_runs`` runs) and one test run, float32."""
    rng = np.random.default_rng(seed)
    lengths = [n_trs] * (n_runs + 1)
    n_total = sum(lengths)
    # temporally smooth features with a decaying covariance spectrum, like
    # transformer features after TR resampling
    latent = lfilter([1.0], [1.0, -0.6], rng.standard_normal((n_total, n_features)), axis=0)
    spectrum = 1.0 / np.sqrt(np.arange(1, n_features + 1))
    rotation, _ = np.linalg.qr(rng.standard_normal((n_features, n_features)))
    X = zscore_runs((latent * spectrum) @ rotation.T, lengths)
    weights = rng.standard_normal((n_features, n_voxels)) / np.sqrt(n_features)
    signal = X @ weights
    signal /= signal.std(0)
    # with isotropic weights the best penalty is about n_features / snr, so these
    # SNRs put most voxels' best alpha inside the default grid
    snr = 10 ** rng.uniform(-1.5, 0.5, n_voxels)
    snr[rng.random(n_voxels) < 0.1] = 0.0             # pure-noise voxels
    Y = zscore_runs(np.sqrt(snr) * signal + rng.standard_normal((n_total, n_voxels)), lengths)
    n_train = n_runs * n_trs
    X, Y = X.astype(np.float32), Y.astype(np.float32)
    return X[:n_train], Y[:n_train], X[n_train:], Y[n_train:], lengths[:-1]


def bootstrap_ridge(X, Y, X_test, alphas, n_boots=50, chunk_len=40, held_fraction=0.2, seed=0):
    """Huth-lab style bootstrap ridge; returns (test predictions, best alpha per voxel)."""
    rng = np.random.default_rng(seed)
    n_samples = X.shape[0]
    chunks = np.arange(n_samples // chunk_len * chunk_len).reshape(-1, chunk_len)
    n_held_chunks = max(1, int(round(held_fraction * n_samples / chunk_len)))
    mean_corr = np.zeros((len(alphas), Y.shape[1]))
    for _ in range(n_boots):
        held = np.sort(chunks[rng.permutation(len(chunks))[:n_held_chunks]].ravel())
        train = np.setdiff1d(np.arange(n_samples), held)
        U, S, Vt = np.linalg.svd(X[train], full_matrices=False)
        UR = U.T @ Y[train]
        PVt = X[held] @ Vt.T
        Y_held = Y[held]
        zY = (Y_held - Y_held.mean(0)) / Y_held.std(0)
        for i, alpha in enumerate(alphas):
            pred = (PVt * (S / (S ** 2 + alpha))) @ UR
            pred_std = pred.std(0)
            zpred = (pred - pred.mean(0)) / np.where(pred_std > 0, pred_std, 1)
            mean_corr[i] += (zY * zpred).mean(0)
    mean_corr /= n_boots
    best = alphas[np.argmax(mean_corr, axis=0)]
    # refit on all samples, grouping voxels by their alpha
    U, S, Vt = np.linalg.svd(X, full_matrices=False)
    UR = U.T @ Y
    W = np.empty((X.shape[1], Y.shape[1]), dtype=X.dtype)
    for alpha in np.unique(best):
        cols = best == alpha
        W[:, cols] = Vt.T @ ((S / (S ** 2 + alpha))[:, None] * UR[:, cols])
    return X_test @ W, best


def time_ours(X, Y, X_test, lengths, alphas, backend):
    with Stopwatch() as watch:
        model = VoxelwiseRidge(alphas=alphas, backend=backend).fit(X, Y, groups=lengths)
        prediction = model.predict(X_test)
    return prediction, model.best_alphas_, watch


def time_himalaya(X, Y, X_test, folds, alphas, backend_name):
    from himalaya.backend import set_backend
    from himalaya.ridge import RidgeCV
    from himalaya.scoring import correlation_score

    backend = set_backend(backend_name)
    with Stopwatch() as watch:
        model = RidgeCV(alphas=alphas, cv=folds, fit_intercept=False,
                        solver_params=dict(score_func=correlation_score))
        model.fit(X, Y)
        prediction = backend.to_numpy(model.predict(X_test))
    best = backend.to_numpy(model.best_alphas_)
    set_backend("numpy")
    return np.asarray(prediction), np.asarray(best, dtype=np.float64), watch


def describe(values: np.ndarray) -> str:
    q = np.nanpercentile(values, [50, 90, 99, 100])
    return f"median {q[0]:.2e}, p90 {q[1]:.2e}, p99 {q[2]:.2e}, max {q[3]:.2e}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small problem for a smoke run")
    parser.add_argument("--runs", type=int, default=5, help="training runs")
    parser.add_argument("--trs", type=int, default=None, help="TRs per run")
    parser.add_argument("--features", type=int, default=None)
    parser.add_argument("--voxels", type=int, default=None)
    parser.add_argument("--boots", type=int, default=50)
    parser.add_argument("--himalaya-backends", default="numpy,torch",
                        help="comma-separated himalaya CPU backends to time for (a)")
    parser.add_argument("--alphas", default="2,6,10", metavar="LO,HI,N",
                        help="alpha grid logspace(LO, HI, N); the default is the Huth-lab grid "
                             "logspace(1, 3, 10) squared, as that code penalises alpha**2")
    parser.add_argument("--threads", type=int, default=None,
                        help="limit BLAS / torch threads (default: library defaults); "
                             "on a machine shared with other jobs, 1 gives steadier timings")
    args = parser.parse_args(argv)
    if args.threads:
        import torch
        from threadpoolctl import threadpool_limits
        threadpool_limits(args.threads)
        torch.set_num_threads(args.threads)
    n_trs = args.trs or (120 if args.quick else 400)
    n_features = args.features or (64 if args.quick else 1024)
    n_voxels = args.voxels or (500 if args.quick else 5000)
    lo, hi, n_alphas = args.alphas.split(",")
    alphas = np.logspace(float(lo), float(hi), int(n_alphas))

    X, Y, X_test, Y_test, lengths = simulate(args.runs, n_trs, n_features, n_voxels)
    folds = leave_one_run_out(lengths)
    print(f"problem: {args.runs} training runs x {n_trs} TRs (+1 test run), {n_features} features, "
          f"{n_voxels} voxels, {len(alphas)} alphas logspace({lo}, {hi}), float32; "
          f"threads: {args.threads or 'library default'}")

    backend = resolve_backend("auto")
    print(f"VoxelwiseRidge backend: {backend}")

    # warm-up on a tiny slice: thread pools and first-call dispatch stay out of the timings
    small = slice(0, min(50, n_voxels))
    time_ours(X, Y[:, small], X_test, lengths, alphas, backend)
    ours_pred, ours_alpha, ours_s = time_ours(X, Y, X_test, lengths, alphas, backend)
    r_ours = pearson_r(ours_pred, Y_test)
    print(f"VoxelwiseRidge fit+predict: {ours_s}")

    hima = {}
    for name in [b.strip() for b in args.himalaya_backends.split(",") if b.strip()]:
        time_himalaya(X, Y[:, small], X_test, folds, alphas.astype(np.float32), name)
        hima[name] = time_himalaya(X, Y, X_test, folds, alphas.astype(np.float32), name)
        print(f"(a) himalaya RidgeCV [{name}] fit+predict: {hima[name][2]}")
    hima_name = min(hima, key=lambda k: hima[k][2].wall)
    hima_pred, hima_alpha, hima_s = hima[hima_name]
    r_hima = pearson_r(hima_pred, Y_test)

    with Stopwatch() as boot_s:
        boot_pred, boot_alpha = bootstrap_ridge(X, Y, X_test, alphas, n_boots=args.boots)
    r_boot = pearson_r(boot_pred, Y_test)
    print(f"(b) bootstrap ridge ({args.boots} bootstraps, chunks of 40 TRs) fit+predict: {boot_s}")

    print()
    ok = True
    diff_a = np.abs(r_ours - r_hima)
    same_alpha = np.isclose(ours_alpha, hima_alpha, rtol=1e-4)
    pass_a = np.nanmax(diff_a) < TOLERANCE_R
    ok &= bool(pass_a)
    print(f"(a) test r vs himalaya [{hima_name}]: max |dr| = {np.nanmax(diff_a):.2e} "
          f"({'ok' if pass_a else 'FAIL'}, tolerance {TOLERANCE_R}); same alpha for "
          f"{same_alpha.mean():.1%} of voxels; max |dr| where alphas differ: "
          f"{np.nanmax(diff_a[~same_alpha]) if (~same_alpha).any() else 0.0:.2e}")

    closed = X_test @ ridge_weights(X, Y, boot_alpha, backend=backend)
    diff_b = np.abs(pearson_r(closed, Y_test) - r_boot)
    pass_b = np.nanmax(diff_b) < TOLERANCE_R
    ok &= bool(pass_b)
    print(f"(b) test r, closed-form refit at the bootstrap's alphas vs bootstrap: max |dr| = "
          f"{np.nanmax(diff_b):.2e} ({'ok' if pass_b else 'FAIL'})")
    own = np.abs(r_ours - r_boot)
    print(f"(b) test r, each method's own alphas: |dr| {describe(own)}; same alpha for "
          f"{np.isclose(ours_alpha, boot_alpha).mean():.1%} of voxels; mean r "
          f"{np.nanmean(r_ours):.4f} (LORO) vs {np.nanmean(r_boot):.4f} (bootstrap)")
    counts = {f"{a:.3g}": int(np.sum(np.isclose(ours_alpha, a))) for a in alphas}
    print(f"alphas chosen by VoxelwiseRidge: {counts}\n")

    for label, other, target in ((f"(a) himalaya [{hima_name}]", hima_s, 2), ("(b) bootstrap ridge", boot_s, 20)):
        wall, cpu = other.wall / ours_s.wall, other.cpu / ours_s.cpu
        print(f"speed-up vs {label}: {wall:.1f}x wall, {cpu:.1f}x CPU "
              f"({'meets' if wall >= target else 'below'} the {target}x target on wall time)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

"""Time VoxelwiseRidge on wide designs (more delayed features than TRs): dual vs primal.

The design follows the ``default`` preset: 3 runs of 280 TRs (840 TRs), each
run's features z-scored and given FIR delays 1–4 TRs within the run, and the
preset's alpha grid; the responses are a planted linear map of the design plus
noise (signal-to-noise falling across voxels). ``solver="auto"`` takes the
dual (kernel) route here, since the design has more columns than rows; the
forced primal route is timed for the smaller width only (it eigendecomposes
``n_features·4``-square Gram matrices and gets slow quickly). Both routes are
checked to agree (alphas, CV scores, weights).

Usage::

    python benchmarks/bench_wide.py                # 1 000 and 2 000 features x 4 delays, 3 000 voxels
    python benchmarks/bench_wide.py --quick        # 250 and 500 features, 1 000 voxels
"""
from __future__ import annotations

import argparse
import time

import numpy as np

from brainenc.design import add_delays, get_preset
from brainenc.encoding import VoxelwiseRidge

RUN_LENGTHS = [280, 280, 280]


def simulate(n_features: int, n_voxels: int, delays, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Delayed, per-run z-scored design (float32) and planted responses."""
    rng = np.random.default_rng(seed)
    runs = []
    for length in RUN_LENGTHS:
        features = rng.standard_normal((length, n_features))
        runs.append(add_delays((features - features.mean(0)) / features.std(0), delays))
    X = np.concatenate(runs).astype(np.float32)
    W = rng.standard_normal((X.shape[1], n_voxels)).astype(np.float32) / np.sqrt(X.shape[1])
    gain = np.linspace(1.0, 0.0, n_voxels, dtype=np.float32)
    Y = (X @ W) * gain + rng.standard_normal((X.shape[0], n_voxels), dtype=np.float32)
    return X, Y


def timed_fit(solver: str, X: np.ndarray, Y: np.ndarray, alphas) -> tuple[VoxelwiseRidge, float, float]:
    model = VoxelwiseRidge(alphas=alphas, solver=solver, backend="numpy")
    wall, cpu = time.perf_counter(), time.process_time()
    model.fit(X, Y, groups=RUN_LENGTHS)
    return model, time.perf_counter() - wall, time.process_time() - cpu


def compare(dual: VoxelwiseRidge, primal: VoxelwiseRidge) -> str:
    scale = np.abs(primal.coef_).max()
    return (f"agreement: alphas equal for {np.mean(dual.best_alphas_ == primal.best_alphas_):.4f} of voxels, "
            f"max |d cv score| {np.abs(dual.cv_scores_ - primal.cv_scores_).max():.1e}, "
            f"max |d coef| / max |coef| {np.abs(dual.coef_ - primal.coef_).max() / scale:.1e}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--features", type=int, nargs="+", default=None,
                        help="feature counts before delays (default 1000 2000)")
    parser.add_argument("--voxels", type=int, default=None)
    parser.add_argument("--primal-up-to", type=int, default=None,
                        help="also time the forced primal solver up to this many features (default: the smallest)")
    parser.add_argument("--quick", action="store_true", help="250 and 500 features, 1 000 voxels")
    args = parser.parse_args(argv)
    widths = args.features or ([250, 500] if args.quick else [1000, 2000])
    n_voxels = args.voxels or (1000 if args.quick else 3000)
    primal_up_to = args.primal_up_to or min(widths)
    preset = get_preset("default")
    print(f"{sum(RUN_LENGTHS)} TRs ({len(RUN_LENGTHS)} runs), {n_voxels} voxels, delays {preset.delays}, "
          f"{len(preset.alphas)} alphas (preset 'default')")
    for n_features in widths:
        X, Y = simulate(n_features, n_voxels, preset.delays)
        auto, wall, cpu = timed_fit("auto", X, Y, preset.alphas)
        print(f"{n_features} features ({X.shape[1]} columns): auto -> {auto.solver_}: "
              f"{wall:.1f} s wall, {cpu:.1f} s CPU")
        if n_features <= primal_up_to:
            primal, p_wall, p_cpu = timed_fit("primal", X, Y, preset.alphas)
            print(f"    forced primal: {p_wall:.1f} s wall, {p_cpu:.1f} s CPU; "
                  f"primal / auto = {p_wall / wall:.1f}x wall, {p_cpu / cpu:.1f}x CPU")
            print(f"    {compare(auto, primal)}")


if __name__ == "__main__":
    main()

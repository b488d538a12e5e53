"""Time a layer sweep through one plan against one ``run_transfer`` per layer.

A simulated subject (:func:`brainenc.simulate.simulate_dataset`, fsaverage5:
20 484 vertices) gets a simulated multi-layer feature set
(:func:`brainenc.simulate.layers.write_layer_features`: ``layers_0 …``, 48
features each, FIR delays of the layout's preset). The layers are analysed
two ways, with the default options (leave-one-run-out, significance tests):

* ``sweep_layers``: one :func:`~brainenc.transfer.plan_transfer` for all
  layers (responses, splits and the test noise of every voxel batch computed
  once), then every layer's designs and fits through ``analyse_spaces``;
* the baseline, the naive way: ``run_transfer`` separately for each layer, each
  planning anew.

The sweep is timed for two numbers of layers (2 and 5 by default, the first
layers of the set); a line through the two times separates its fixed cost
from its cost per layer. The baseline is timed per layer, so its times for the
same layer counts are sums, and the same line is fitted to them. Each path runs
twice (``--repeats``; in the second round the sweeps go first) and the fastest
time of each counts, wall and CPU separately: other jobs on a shared machine
only ever add time. Peak memory is the largest traced allocation
(``tracemalloc``: numpy arrays included) during each call, above what was
allocated before it; ``plan_transfer`` alone is timed too (the responses and
splits a sweep shares; the test noise of each batch is shared as well).

Check: every layer's r maps (all four directions) from the sweep equal those
of its own ``run_transfer`` (``allclose``, NaN where NaN), so both paths do the
same work.

Usage::

    python benchmarks/bench_layers.py                  # 3+3 runs of 100-120 TRs, 2 and 5 layers: ~2.5 min
    python benchmarks/bench_layers.py --layers 2,6 --repeats 1
    python benchmarks/bench_layers.py --threads 0      # BLAS library default threads
    python benchmarks/bench_layers.py --layers 2,4 --runs 5 --trs 300,400   # the default simulation's runs
    python benchmarks/bench_layers.py --quick          # 3+3 runs of 60-70 TRs, 2 and 3 layers, once: ~40 s

Sizes: the simulation always has 20 484 vertices; 100-120 TRs per run keep
every training set (two runs at least) longer than the 192 delayed features,
so the fits take the primal route as on real data (``--quick`` does not).
With three runs per modality the sequential within test has a single step
(run 3 predicted from runs 1-2); ``--runs 4`` or more gives it more, at about
twice the time per layer. BLAS runs on one thread by default: on a machine
shared with other jobs, two threads made every fit several times slower and
the timings erratic.
"""
from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
import tracemalloc
import warnings
from pathlib import Path

import numpy as np
import scipy.linalg  # noqa: F401  (loads scipy's BLAS before --threads limits every BLAS)

from brainenc.analyses.layers import find_layer_spaces, sweep_layers
from brainenc.io.layouts import load_dataset
from brainenc.results import DIRECTIONS
from brainenc.simulate import simulate_dataset
from brainenc.simulate.layers import write_layer_features
from brainenc.transfer import plan_transfer, run_transfer
from traced_timing import Stopwatch, fit_line

SUBJECT = "sim01"
RTOL, ATOL = 1e-5, 1e-6


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", default=None, metavar="N1,N2",
                        help="layer counts of the sweeps (default 2,5; --quick 2,3)")
    parser.add_argument("--runs", type=int, default=3, help="story runs and movie runs each")
    parser.add_argument("--trs", default=None, metavar="LO,HI",
                        help="TRs per run, drawn from LO..HI (default 100,120; --quick 60,70)")
    parser.add_argument("--repeats", type=int, default=None,
                        help="times each path is run; the fastest counts (default 2; --quick 1)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1,
                        help="BLAS threads (0: the library default); on a machine shared with "
                             "other jobs, 1 gives steadier timings")
    parser.add_argument("--quick", action="store_true", help="a small problem for a smoke run")
    args = parser.parse_args(argv)
    counts = sorted({int(n) for n in (args.layers or ("2,3" if args.quick else "2,5")).split(",")})
    n_runs = args.runs
    args.repeats = args.repeats or (1 if args.quick else 2)
    lo, hi = (int(v) for v in (args.trs or ("60,70" if args.quick else "100,120")).split(","))
    if len(counts) < 2 or counts[0] < 1:
        parser.error(f"--layers needs at least two distinct positive counts, got {args.layers}")
    if args.threads:
        from threadpoolctl import threadpool_limits
        threadpool_limits(args.threads)
    n_layers = counts[-1]

    with tempfile.TemporaryDirectory(prefix="bench_layers_") as tmp:
        root = Path(tmp) / "sim"
        start = time.perf_counter()
        simulate_dataset(root, seed=args.seed, n_stories=n_runs, n_movies=n_runs, n_trs_per_run=(lo, hi))
        write_layer_features(root, n_layers=n_layers, concept_peak=min(3, n_layers - 1),
                             specific_peak=min(1, n_layers - 1), seed=args.seed)
        print(f"simulated {n_runs} story + {n_runs} movie runs of {lo}-{hi} TRs and {n_layers} layers "
              f"in {time.perf_counter() - start:.1f} s")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            data = load_dataset(root)
            layers = find_layer_spaces(data.feature_root, "layers_*")
            # warm-up: imports (the backend check loads torch) and the file cache stay out of the timings
            plan = plan_transfer(data, SUBJECT)
            n_voxels = plan.n_voxels
            del plan
            print(f"problem: {n_voxels} vertices, {len(layers)} layers, sweeps of {counts} layers; "
                  f"threads: {args.threads or 'library default'}")

            tracemalloc.start()
            with Stopwatch() as planned:
                plan_transfer(data, SUBJECT)
            print(f"plan_transfer alone (what a sweep's layers share, before the batch noise): {planned}")
            naive, naive_s = {}, {name: [] for name in layers}
            sweeps, sweep_s = {}, {n: [] for n in counts}
            for repeat in range(args.repeats):
                # every other repeat runs the sweeps first, so that a slow spell of the
                # machine does not always fall on the same path
                for path in (("baseline", "sweep") if repeat % 2 == 0 else ("sweep", "baseline")):
                    if path == "baseline":
                        for name in layers:
                            with Stopwatch() as watch:
                                naive[name] = run_transfer(data, SUBJECT, name, progress=False)
                            naive_s[name].append(watch)
                            print(f"[{repeat + 1}] baseline run_transfer({name}): {watch}")
                    else:
                        for n in counts:
                            with Stopwatch() as watch:
                                sweeps[n], _ = sweep_layers(data, SUBJECT, layers[:n], progress=False)
                            sweep_s[n].append(watch)
                            print(f"[{repeat + 1}] sweep_layers, {n} layers: {watch}")
            tracemalloc.stop()

    print()
    ok = True
    worst = 0.0
    for n, results in sweeps.items():
        for k, result in enumerate(results):
            for d in DIRECTIONS:
                got, expected = np.asarray(result.r[d]), np.asarray(naive[layers[k]].r[d])
                same = np.allclose(got, expected, rtol=RTOL, atol=ATOL, equal_nan=True)
                ok &= bool(same)
                finite = np.isfinite(got) & np.isfinite(expected)
                if finite.any():
                    worst = max(worst, float(np.max(np.abs(got[finite] - expected[finite]))))
                if not same:
                    print(f"FAIL: sweep of {n}, {layers[k]}, {d}: r differs from run_transfer")
    print(f"check: r maps of the sweeps equal run_transfer's, every layer and direction "
          f"(max |dr| {worst:.1e}, rtol {RTOL}, atol {ATOL}): {'ok' if ok else 'FAILED'}")

    # the fastest of the repeats: other jobs on the machine only ever add time
    naive_wall = [sum(min(w.wall for w in naive_s[name]) for name in layers[:n]) for n in counts]
    naive_cpu = [sum(min(w.cpu for w in naive_s[name]) for name in layers[:n]) for n in counts]
    sweep_wall = [min(w.wall for w in sweep_s[n]) for n in counts]
    sweep_cpu = [min(w.cpu for w in sweep_s[n]) for n in counts]
    sweep_peak = {n: max(w.peak_mib for w in sweep_s[n]) for n in counts}
    print(f"\nfastest of {args.repeats} repeat(s), wall and CPU separately; baseline: sums over the layers")
    print(f"{'layers':>6}  {'sweep wall':>10}  {'baseline wall':>13}  {'ratio':>6}  "
          f"{'sweep CPU':>9}  {'baseline CPU':>12}  {'ratio':>6}  {'sweep peak':>10}")
    for i, n in enumerate(counts):
        print(f"{n:6d}  {sweep_wall[i]:8.1f} s  {naive_wall[i]:11.1f} s  {naive_wall[i] / sweep_wall[i]:5.2f}x  "
              f"{sweep_cpu[i]:7.1f} s  {naive_cpu[i]:10.1f} s  {naive_cpu[i] / sweep_cpu[i]:5.2f}x  "
              f"{sweep_peak[n]:6.0f} MiB")
    print("(ratio: baseline / sweep, above 1 when the sweep is faster)")
    for label, sweep_t, naive_t in (("wall", sweep_wall, naive_wall), ("CPU", sweep_cpu, naive_cpu)):
        s_fixed, s_per = fit_line(counts, sweep_t)
        n_fixed, n_per = fit_line(counts, naive_t)
        print(f"line through {counts} layers, {label}: sweep {s_fixed:6.1f} s + {s_per:5.2f} s/layer; "
              f"baseline {n_fixed:6.1f} s + {n_per:5.2f} s/layer; per-layer ratio baseline / sweep "
              f"{n_per / s_per:.2f}x")
    peaks = [sweep_peak[n] for n in counts]
    m_fixed, m_per = fit_line(counts, peaks)
    print(f"peak traced memory: baseline (largest single run_transfer) {max(w.peak_mib for ws in naive_s.values() for w in ws):.0f} MiB; "
          f"sweep {m_fixed:.0f} MiB + {m_per:.0f} MiB/layer")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024    # KiB on Linux
    print(f"peak resident memory of the process (data included): {peak:.0f} MiB")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

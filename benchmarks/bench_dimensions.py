"""Time the permutation null of shared dimensions against one full transfer fit.

A simulated subject (:func:`brainenc.simulate.simulate_dataset`, fsaverage5:
20 484 vertices) is analysed in its ``multimodal`` feature space with
``run_transfer`` (default options: leave-one-run-out, significance tests) and
its weights written (``weights_path``). That result goes to
:func:`brainenc.analyses.dimensions.shared_dimensions`, whose null refits the
mean leave-one-run-out ridge model of each modality on block-shuffled responses
of the voxels of its within map, at the alphas the fit selected: each
permutation costs the cross products of the designs with the shuffled
responses and one product per fold with the factors computed once.

``shared_dimensions`` is timed with two numbers of permutations (20 and 200
by default), each twice (``--repeats``; the fastest counts, as other jobs on a
shared machine only ever add time); a line through the two times separates the
fixed cost (plan, designs, factors, components, top stimuli) from the cost per
permutation. The baseline is what a naive null would repeat per permutation:
one full fit with its alpha search. Two are timed, once each: the
``run_transfer`` above (with tests, as the analysis needs), and a
``run_transfer`` with weights but without significance tests (no sequential
models), the cheapest full refit, which the headline ratio uses. Peak memory
is the largest traced allocation (``tracemalloc``: numpy arrays included)
during each call, above what was allocated before it.

Checks: the null of the smaller run equals the first permutations of the larger
one (same seed: both runs do the same work per permutation); the observed first
angle is below the null's median (the simulation plants shared concept
dimensions).

Usage::

    python benchmarks/bench_dimensions.py                  # 4+4 runs of 200-250 TRs, 20 and 200 permutations: ~2 min
    python benchmarks/bench_dimensions.py --threads 0      # BLAS library default threads
    python benchmarks/bench_dimensions.py --runs 5 --trs 300,400   # the default simulation's runs
    python benchmarks/bench_dimensions.py --quick          # 4+4 runs of 120-150 TRs, 10 and 50 permutations, once

BLAS runs on one thread by default: on a machine shared with other jobs, two
threads made every fit several times slower and the timings erratic.
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

from brainenc.analyses.dimensions import shared_dimensions
from brainenc.io.layouts import load_dataset
from brainenc.simulate import simulate_dataset
from brainenc.transfer import plan_transfer, run_transfer
from traced_timing import Stopwatch, fit_line

SUBJECT, SPACE = "sim01", "multimodal"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--permutations", default=None, metavar="P1,P2",
                        help="numbers of permutations of the two timed runs (default 20,200; "
                             "--quick 10,50)")
    parser.add_argument("--runs", type=int, default=4, help="story runs and movie runs each")
    parser.add_argument("--trs", default=None, metavar="LO,HI",
                        help="TRs per run, drawn from LO..HI (default 200,250; --quick 120,150)")
    parser.add_argument("--repeats", type=int, default=None,
                        help="times shared_dimensions runs per number of permutations; the fastest "
                             "counts (default 2; --quick 1)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1,
                        help="BLAS threads (0: the library default); on a machine shared with "
                             "other jobs, 1 gives steadier timings")
    parser.add_argument("--quick", action="store_true", help="a small problem for a smoke run")
    args = parser.parse_args(argv)
    counts = sorted({int(n) for n in (args.permutations or ("10,50" if args.quick else "20,200")).split(",")})
    n_runs = args.runs
    args.repeats = args.repeats or (1 if args.quick else 2)
    lo, hi = (int(v) for v in (args.trs or ("120,150" if args.quick else "200,250")).split(","))
    if len(counts) < 2 or counts[0] < 1:
        parser.error(f"--permutations needs at least two distinct positive numbers, got {args.permutations}")
    if args.threads:
        from threadpoolctl import threadpool_limits
        threadpool_limits(args.threads)

    with tempfile.TemporaryDirectory(prefix="bench_dimensions_") as tmp:
        root = Path(tmp) / "sim"
        start = time.perf_counter()
        simulate_dataset(root, seed=args.seed, n_stories=n_runs, n_movies=n_runs, n_trs_per_run=(lo, hi))
        print(f"simulated {n_runs} story + {n_runs} movie runs of {lo}-{hi} TRs "
              f"in {time.perf_counter() - start:.1f} s")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            data = load_dataset(root)
            # warm-up: imports (the backend check loads torch) and the file cache stay out of the timings
            n_voxels = plan_transfer(data, SUBJECT).n_voxels
            print(f"problem: {n_voxels} vertices, feature space {SPACE!r}; permutations {counts}; "
                  f"threads: {args.threads or 'library default'}")

            tracemalloc.start()
            with Stopwatch() as full:
                result = run_transfer(data, SUBJECT, SPACE, weights_path=Path(tmp) / "weights.h5",
                                      progress=False)
            print(f"baseline run_transfer with weights and tests:    {full}")
            with Stopwatch() as bare:
                run_transfer(data, SUBJECT, SPACE, weights_path=Path(tmp) / "weights_bare.h5",
                             significance=False, progress=False)
            print(f"baseline run_transfer with weights, no tests:    {bare}")
            found, runs = {}, {n: [] for n in counts}
            for repeat in range(args.repeats):
                for n in counts:
                    with Stopwatch() as watch:
                        found[n] = shared_dimensions(result, data, n_permutations=n, seed=args.seed)
                    runs[n].append(watch)
                    print(f"[{repeat + 1}] shared_dimensions, {n:4d} permutations:     {watch}")
            tracemalloc.stop()

    print()
    selected = found[counts[-1]].settings["voxels"]
    print(f"voxels refitted per permutation: story {selected['story']}, movie {selected['movie']} "
          f"(of {n_voxels}); components per subspace: {found[counts[-1]].settings['n_components']}")
    ok = True
    small, large = found[counts[0]].null_angles, found[counts[-1]].null_angles
    if large.size == 0:
        print("FAIL: no null was computed (fewer than 10 voxels in a within map)")
        return 1
    same = np.allclose(small, large[:counts[0]], equal_nan=True)
    ok &= bool(same)
    print(f"check: the {counts[0]}-permutation null is the start of the {counts[-1]}-permutation one: "
          f"{'ok' if same else 'FAILED'}")
    angles = found[counts[-1]].angles
    median = np.median(large, axis=0)
    below = bool(angles[0] < median[0])
    ok &= below
    print(f"check: first angle {angles[0]:.1f} deg below the null median {median[0]:.1f} deg: "
          f"{'ok' if below else 'FAILED'} ({len(found[counts[-1]].shared)} shared dimensions)")

    print()
    print(f"shared_dimensions: fastest of {args.repeats} repeat(s), wall and CPU separately")
    for label in ("wall", "CPU"):
        seconds = [min(getattr(w, label.lower()) for w in runs[n]) for n in counts]
        fixed, per = fit_line(counts, seconds)
        base_full, base_bare = getattr(full, label.lower()), getattr(bare, label.lower())
        print(f"{label}: shared_dimensions = {fixed:.2f} s + {1000 * per:.1f} ms/permutation; "
              f"one full fit {base_bare:.1f} s (no tests), {base_full:.1f} s (with tests)")
        print(f"  ratio one full fit / one permutation: {base_bare / per:.0f}x (no tests), "
              f"{base_full / per:.0f}x (with tests)")
        n = counts[-1]
        print(f"  {n} permutations: {seconds[-1]:.1f} s; {n} naive refits: {n * base_bare:.0f} s "
              f"({n * base_bare / seconds[-1]:.0f}x)")
    print(f"peak traced memory: run_transfer {full.peak_mib:.0f} MiB (with tests), "
          f"{bare.peak_mib:.0f} MiB (no tests); shared_dimensions "
          + ", ".join(f"{max(w.peak_mib for w in runs[n]):.0f} MiB ({n} permutations)" for n in counts))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024    # KiB on Linux
    print(f"peak resident memory of the process (data included): {peak:.0f} MiB")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

"""A sweep on a LocalCluster against the serial loop, and the wall time of a lab's sweep.

Manifest datasets are written to a temporary folder: ``--subjects`` subjects,
``--spaces`` feature spaces of ``--features`` features (768, a BridgeTower-base
layer), story and movie runs of 200 TRs,
``--voxels`` voxels (a third driven by the features). In this process:

1. the serial loop over the jobs (``run_sweep(scheduler="serial")``, the baseline);
2. the same jobs on a Dask LocalCluster of ``--workers`` workers (its start included);
3. serial jobs at 4 × the voxels and at 2 × the runs, which split a job's cost
   into ``a + c·T + b·V·T`` (T TRs, V voxels): set-up, design, and the fits and
   scores, which grow with both.

Printed: the wall times and the ratio serial / cluster, the per-job cost model,
and an estimate for a lab's sweep, 8 subjects × 3 models × 7 layers = 168 jobs
of 95 000 voxels with 9 000 story and 3 000 movie TRs (ds003020's stories and a
few movies), on 1, 8, 32 and 168 workers: ``ceil(168 / workers)`` rounds of one
job, plus the cluster's start. The costs are measured with this whole machine
per job (its cores used by BLAS), so the estimate is for workers of that size.
Jobs are independent, so the rounds are the whole cost; the extrapolation from
small jobs to 95 000 voxels × 12 000 TRs is linear and so a rough guide.

Measured on 2 CPU cores (defaults: 2 subjects × 3 spaces of 768 features,
20 000 voxels, 1 600 TRs): serial loop 95.1 s (median job 15.7 s), LocalCluster
of 2 workers 65.0 s (serial / cluster = 1.46); a job at 4 × the voxels 56.3 s,
at 2 × the TRs 32.5 s, so a job costs about 2.0 ms per TR plus 422 s per 10^9
voxel-TRs. A lab's sweep: about 8.4 min per job, 23.6 h on one 2-core worker,
3.0 h on 8, 0.8 h on 32. With ``--quick`` (64 features, 1 000 voxels) the jobs
take 0.2 s and the cluster's start outweighs them (serial / cluster about 0.2).

``--chunks-only`` measures one large job (4 × ``--voxels``) serially and split
into one voxel chunk per worker (``chunk_voxels``) on a LocalCluster. Measured
on 2 cores: a job of 80 000 voxels, 68.0 s serial, 51.0 s in 2 chunks on 2
workers (serial / chunked = 1.33; each chunk prepares the feature space again).
``--grouped-only`` runs the serial loop one job per task and with each subject's
feature spaces in one task (``spaces_per_task``): 82.0 s against 76.6 s (1.07).

Usage::

    python benchmarks/bench_sweep.py               # 2 subjects × 3 spaces, 20 000 voxels, about 6 minutes
    python benchmarks/bench_sweep.py --chunks-only # one job of 80 000 voxels, serial and in 2 chunks
    python benchmarks/bench_sweep.py --grouped-only  # the serial loop against 3 spaces per task
    python benchmarks/bench_sweep.py --quick       # 2 × 2, 1 000 voxels
"""
from __future__ import annotations

import argparse
import math
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

N_RUNS, N_TRS, TR = 4, 200, 2.0
LAB = {"subjects": 8, "models": 3, "layers": 7, "voxels": 95_000, "trs": 12_000}


def write_dataset(root: Path, n_subjects: int, n_spaces: int, n_voxels: int, n_features: int,
                  n_runs: int = N_RUNS, seed: int = 0) -> Path:
    """Manifest dataset: subjects ``s1..``, feature spaces ``space1..``, ``n_runs`` runs of
    each modality."""
    from brainenc.io.features import write_stimulus_features

    rng = np.random.default_rng(seed)
    rows = ["subject\trun\tmodality\tresponse\tstimulus\ttr\tstimulus_onset"]
    times = TR * np.arange(N_TRS) + TR / 2
    for modality in ("story", "movie"):
        for i in range(n_runs):
            name = f"{modality}{i}"
            base = rng.standard_normal((N_TRS, n_features), dtype=np.float32)
            for k in range(1, n_spaces + 1):
                data = base + 0.5 * rng.standard_normal(base.shape, dtype=np.float32)
                write_stimulus_features(root / "features" / f"space{k}" / f"{name}.hf5", data, times,
                                        aligned_pair=True, pair="benchmark")
            for s in range(1, n_subjects + 1):
                n_driven = n_voxels // 3
                weights = rng.standard_normal((n_features, n_driven), dtype=np.float32) / np.sqrt(n_features)
                y = rng.standard_normal((N_TRS, n_voxels), dtype=np.float32)
                y[2:, :n_driven] += base[:-2] @ weights
                np.save(root / f"s{s}_{name}.npy", y)
                rows.append(f"s{s}\t{name}\t{modality}\ts{s}_{name}.npy\t{name}\t{TR}\t0")
    (root / "brainenc_manifest.tsv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    return root


def sweep(folder: Path, dataset: Path, out: str, n_subjects: int, n_spaces: int,
          scheduler: str = "serial", workers: int = 1, n_runs: int = N_RUNS,
          chunk_voxels: int | None = None, spaces_per_task: int | None = None
          ) -> tuple[float, list[float]]:
    """Wall time of a sweep and the time of each job (serial: between completions). The last
    run of each modality is the test run (one model per modality, as with ds003020's
    wheretheressmoke), so a job's cost grows linearly with the TRs."""
    from brainenc.sweep import load_sweep_spec, plan_sweep, run_sweep

    spec = folder / f"{out}.toml"
    spec.write_text(f'dataset = "{dataset}"\nout = "{folder / out}"\n'
                    f"subjects = {[f's{s}' for s in range(1, n_subjects + 1)]}\n"
                    f"features = {[f'space{k}' for k in range(1, n_spaces + 1)]}\n"
                    "[analysis]\nreport = false\n"
                    + (f"chunk_voxels = {chunk_voxels}\n" if chunk_voxels else "")
                    + (f"spaces_per_task = {spaces_per_task}\n" if spaces_per_task else "")
                    + "[analysis.test_runs]\n"
                    f'story = ["story{n_runs - 1}"]\nmovie = ["movie{n_runs - 1}"]\n', encoding="utf-8")
    plan = plan_sweep(load_sweep_spec(spec))
    stamps = [time.perf_counter()]
    run_sweep(plan, scheduler=scheduler, n_workers=workers,
              on_done=lambda key: stamps.append(time.perf_counter()))
    return stamps[-1] - stamps[0], list(np.diff(stamps))


def chunked_job(args) -> None:
    """Step 4: one job of 4 x the voxels, serial (baseline) and as one voxel chunk per worker
    on a LocalCluster."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        wide = write_dataset(folder / "ds-wide", 1, 1, 4 * args.voxels, args.features, seed=1)
        serial, _ = sweep(folder, wide, "serial", 1, 1)
        chunk = -(-4 * args.voxels // args.workers)
        chunked, _ = sweep(folder, wide, "chunked", 1, 1, "local", args.workers, chunk_voxels=chunk)
    print(f"one job of {4 * args.voxels} voxels: serial (baseline) {serial:.1f} s; "
          f"{args.workers} voxel chunks on a LocalCluster of {args.workers} workers {chunked:.1f} s "
          f"(serial / chunked = {serial / chunked:.2f})")


def grouped_spaces(args) -> None:
    """Step 5: the serial loop (baseline) against the same jobs with each subject's feature
    spaces in one task (``spaces_per_task``), serially too."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        data = write_dataset(folder / "ds", args.subjects, args.spaces, args.voxels, args.features)
        serial, _ = sweep(folder, data, "serial", args.subjects, args.spaces)
        grouped, _ = sweep(folder, data, "grouped", args.subjects, args.spaces,
                           spaces_per_task=args.spaces)
    print(f"{args.subjects} subjects x {args.spaces} spaces, serial: one task per job (baseline) "
          f"{serial:.1f} s; {args.spaces} spaces per task {grouped:.1f} s "
          f"(serial / grouped = {serial / grouped:.2f})")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subjects", type=int, default=2)
    parser.add_argument("--spaces", type=int, default=3)
    parser.add_argument("--voxels", type=int, default=20000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--features", type=int, default=768,
                        help="features per feature space (768: a BridgeTower-base layer)")
    parser.add_argument("--quick", action="store_true", help="2 spaces, 1 000 voxels")
    parser.add_argument("--chunks-only", action="store_true",
                        help="only step 4: one job of 4 x the voxels, serial and in voxel chunks")
    parser.add_argument("--grouped-only", action="store_true",
                        help="only step 5: the serial loop, and each subject's spaces in one task")
    args = parser.parse_args(argv)
    if args.quick:
        args.spaces, args.voxels, args.features = 2, 1000, 64
    warnings.simplefilter("ignore")
    if args.chunks_only:
        chunked_job(args)
        return
    if args.grouped_only:
        grouped_spaces(args)
        return
    n_jobs = args.subjects * args.spaces
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        data = write_dataset(folder / "ds", args.subjects, args.spaces, args.voxels, args.features)
        wide = write_dataset(folder / "ds-wide", 1, 2, 4 * args.voxels, args.features, seed=1)
        long = write_dataset(folder / "ds-long", 1, 2, args.voxels, args.features, n_runs=8, seed=2)
        serial, jobs = sweep(folder, data, "serial", args.subjects, args.spaces)
        local, _ = sweep(folder, data, "local", args.subjects, args.spaces, "local", args.workers)
        _, wide_jobs = sweep(folder, wide, "wide", 1, 2)
        _, long_jobs = sweep(folder, long, "long", 1, 2, n_runs=8)
    t0, t_wide, t_long = np.median(jobs), np.median(wide_jobs), np.median(long_jobs)
    trs = 2 * 4 * N_TRS
    b = max(t_wide - t0, 0.0) / (3 * args.voxels * trs)        # per voxel × TR
    c = max(t_long - t0 - b * args.voxels * trs, 0.0) / trs    # per TR
    a = max(t0 - c * trs - b * args.voxels * trs, 0.0)
    rounds_here = math.ceil(n_jobs / args.workers)
    startup = max(local - rounds_here * t0, 0.0)
    print(f"{n_jobs} jobs ({args.subjects} subjects × {args.spaces} spaces of {args.features} features, "
          f"{args.voxels} voxels, 4 + 4 runs of {N_TRS} TRs)")
    print(f"serial loop (baseline)       {serial:8.1f} s   (median job {t0:.2f} s)")
    print(f"LocalCluster, {args.workers} workers     {local:8.1f} s   serial / cluster = {serial / local:.2f}")
    print(f"median job: {t0:.2f} s; at 4 x voxels {t_wide:.2f} s; at 2 x TRs {t_long:.2f} s")
    print(f"job cost ~ {a:.2f} s + {c * 1e3:.3f} ms per TR + {b * 1e9:.2f} s per 10^9 voxel-TRs; "
          f"overhead of the cluster (start, scheduling, workers sharing cores) about {startup:.1f} s")
    lab_jobs = LAB["subjects"] * LAB["models"] * LAB["layers"]
    lab_job = a + c * LAB["trs"] + b * LAB["voxels"] * LAB["trs"]
    print(f"\nestimate for a lab's sweep: {lab_jobs} jobs of {LAB['voxels']} voxels x {LAB['trs']} TRs "
          f"x {args.features} features, about {lab_job / 60:.1f} min each")
    for workers in (1, 8, 32, lab_jobs):
        rounds = math.ceil(lab_jobs / workers)
        print(f"  {workers:4d} workers: {rounds:4d} rounds, about {(rounds * lab_job + startup) / 3600:.1f} h")


if __name__ == "__main__":
    main()

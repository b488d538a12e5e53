"""Peak memory and wall time of ``run_transfer`` on a whole-cortex-sized subject.

A manifest dataset is written to a temporary folder: 6 story and 6 movie runs
of 280 TRs, ``--voxels`` responses (100 000 by default) and ``--features``
stimulus features per TR (one event at each TR centre, so the design is the
features themselves with the preset's FIR delays). A third of the voxels follow
a planted linear map of the features 2 TRs earlier, plus noise; the rest are
noise. ``run_transfer`` then runs with its defaults (the ``default`` preset,
leave-one-run-out with its sequential within test, ``n_targets_batch=20000``) in a child
process, which reports its peak resident memory (``ru_maxrss``) and wall time.

``--unbatched`` also runs the same analysis as one batch of all voxels
(``n_targets_batch`` = number of voxels), which gives the same numbers with
the memory of an unbatched computation (the float64 score copies are still
made column chunk by column chunk).

``--memory SIZE`` measures the memory bound instead: the responses are
written as HDF5 files (``--runs`` runs of ``--trs`` TRs per modality) and the
whole command ``brainenc transfer ... --memory SIZE`` (reading the responses
voxel batch by batch, writing the result folder and its report) runs under
``/usr/bin/time -v``, whose maximum resident set size is compared with the
bound and with the size of the responses alone.

Usage::

    python benchmarks/bench_memory.py                 # 100 000 voxels, 5-10 minutes on 2 cores
    python benchmarks/bench_memory.py --unbatched     # also the single-batch run (about 2x longer)
    python benchmarks/bench_memory.py --quick         # 5 000 voxels
    python benchmarks/bench_memory.py --voxels 300000 --runs 4 --trs 200 --memory 1.5GB
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

TARGET_GB = 8.0
N_RUNS = 6
N_TRS = 280
TR = 2.0


def write_dataset(root: Path, n_voxels: int, n_features: int, seed: int = 0, n_runs: int = N_RUNS,
                  n_trs: int = N_TRS, suffix: str = ".npy") -> Path:
    """A manifest dataset with a planted response in a third of the voxels; responses as
    ``.npy`` or HDF5 (``.hf5``) files, written in blocks of voxels."""
    from brainenc.io.features import write_stimulus_features

    rng = np.random.default_rng(seed)
    n_driven = n_voxels // 3
    weights = (rng.standard_normal((n_features, n_driven)) / np.sqrt(n_features)).astype(np.float32)
    rows = ["subject\trun\tmodality\tresponse\tstimulus\ttr\tstimulus_onset"]
    root.mkdir(parents=True, exist_ok=True)
    for modality in ("story", "movie"):
        for i in range(n_runs):
            name = f"{modality}{i}"
            times = TR * np.arange(n_trs) + TR / 2
            data = rng.standard_normal((n_trs, n_features), dtype=np.float32)
            write_stimulus_features(root / "features" / "feats" / f"{name}.hf5", data, times)
            _write_responses(root / f"{name}{suffix}", rng, data, weights, n_voxels)
            rows.append(f"s1\t{name}\t{modality}\t{name}{suffix}\t{name}\t{TR}\t0")
    (root / "brainenc_manifest.tsv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    return root


def _write_responses(path: Path, rng, data: np.ndarray, weights: np.ndarray, n_voxels: int,
                     block: int = 50_000) -> None:
    """Noise plus the planted map of the features 2 TRs earlier, block of voxels by block."""
    import h5py

    n_trs, n_driven = len(data), weights.shape[1]
    if path.suffix == ".npy":
        out = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(n_trs, n_voxels))
    else:
        handle = h5py.File(path, "w")
        out = handle.create_dataset("data", shape=(n_trs, n_voxels), dtype=np.float32)
    for v0 in range(0, n_voxels, block):
        v1 = min(v0 + block, n_voxels)
        Y = rng.standard_normal((n_trs, v1 - v0), dtype=np.float32)
        if v0 < n_driven:
            d1 = min(v1, n_driven)
            Y[2:, :d1 - v0] += data[:-2] @ weights[:, v0:d1]
        out[:, v0:v1] = Y
    if path.suffix == ".npy":
        out.flush()
        del out
    else:
        handle.close()


def measure(root: Path, n_targets_batch: int | None) -> dict:
    """Run the transfer analysis here and report peak RSS and wall time (child process side)."""
    from brainenc.io.layouts import load_dataset
    from brainenc.transfer import run_transfer

    options = {} if n_targets_batch is None else {"n_targets_batch": n_targets_batch}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dataset = load_dataset(root)
        start = time.perf_counter()
        result = run_transfer(dataset, "s1", "feats", progress=False, **options)
        wall = time.perf_counter() - start
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    return {
        "peak_gib": peak_kib / 2**20,
        "wall_s": wall,
        "fraction_significant": {s.direction: round(s.fraction_significant, 3) for s in result.summaries},
    }


def run_child(root: Path, n_targets_batch: int | None) -> dict:
    command = [sys.executable, __file__, "--child", str(root)]
    if n_targets_batch is not None:
        command += ["--batch", str(n_targets_batch)]
    out = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def report(label: str, numbers: dict) -> None:
    verdict = "within" if numbers["peak_gib"] * 2**30 <= TARGET_GB * 1e9 else "ABOVE"
    print(f"{label}: peak RSS {numbers['peak_gib']:.2f} GiB ({verdict} the {TARGET_GB:g} GB target), "
          f"wall {numbers['wall_s']:.0f} s")
    print(f"    fraction significant: {numbers['fraction_significant']}")


#: Run the command line and print the peak of this program (VmHWM; ru_maxrss would also
#: count the parent's memory, shared by the child between fork and exec).
_PEAK_CHILD = ("import re, sys; from brainenc.cli import main; status = main(sys.argv[1:]); "
               "hwm = re.search(r'VmHWM:\\s*(\\d+) kB', open('/proc/self/status').read())[1]; "
               "print('peak', int(hwm) * 1024, file=sys.stderr); sys.exit(status)")


def run_bounded(root: Path, out: Path, memory: str) -> dict:
    """``brainenc transfer --memory`` in a child under ``/usr/bin/time -v`` (else reporting
    its own VmHWM): its peak RSS (bytes), wall time and exit status."""
    argv = ["transfer", "--dataset", str(root), "--subject", "s1", "--features", "feats",
            "--out", str(out), "--memory", memory, "--quiet"]
    timed = Path("/usr/bin/time").is_file()
    command = ((["/usr/bin/time", "-v", sys.executable, "-m", "brainenc.cli"] if timed
                else [sys.executable, "-c", _PEAK_CHILD]) + argv)
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if timed:
        line = next(x for x in done.stderr.splitlines() if "Maximum resident set size" in x)
        peak = int(line.split(":")[1]) * 1024
    else:
        peak = int(done.stderr.strip().splitlines()[-1].split()[1])
    return {"peak": peak, "wall_s": wall, "status": done.returncode, "stderr": done.stderr[-2000:]}


def bounded(args) -> None:
    """The memory-bound measurement (``--memory``)."""
    from brainenc.checks import parse_memory

    bound = parse_memory(args.memory)
    n_voxels = args.voxels or 300_000
    with tempfile.TemporaryDirectory(prefix="bench_memory_") as tmp:
        start = time.perf_counter()
        root = write_dataset(Path(tmp) / "ds", n_voxels, args.features, n_runs=args.runs,
                             n_trs=args.trs, suffix=".hf5")
        responses = 2 * args.runs * args.trs * n_voxels * 4
        print(f"dataset: {args.runs}+{args.runs} runs x {args.trs} TRs of {n_voxels} voxels (HDF5), "
              f"{args.features} features (x 4 delays), written in {time.perf_counter() - start:.0f} s; "
              f"float32 responses alone: {responses / 1e9:.2f} GB")
        numbers = run_bounded(root, Path(tmp) / "out", args.memory)
    if numbers["status"] != 0:
        print(numbers["stderr"])
        raise SystemExit(f"brainenc transfer exited {numbers['status']}")
    verdict = "under" if numbers["peak"] <= bound else "ABOVE"
    print(f"brainenc transfer --memory {args.memory}: completed in {numbers['wall_s']:.0f} s, "
          f"maximum resident set size {numbers['peak'] / 1e9:.2f} GB ({verdict} the bound "
          f"{bound / 1e9:.2f} GB; peak / bound {numbers['peak'] / bound:.2f}, peak / responses "
          f"{numbers['peak'] / responses:.2f})")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--voxels", type=int, default=None)
    parser.add_argument("--features", type=int, default=64, help="stimulus features per TR, before delays")
    parser.add_argument("--batch", type=int, default=None, help="n_targets_batch (default: run_transfer's)")
    parser.add_argument("--unbatched", action="store_true", help="also run one batch of all voxels")
    parser.add_argument("--quick", action="store_true", help="5 000 voxels")
    parser.add_argument("--memory", default=None, metavar="SIZE",
                        help="measure `brainenc transfer --memory SIZE` (default voxels: 300 000)")
    parser.add_argument("--runs", type=int, default=N_RUNS, help="runs per modality (--memory)")
    parser.add_argument("--trs", type=int, default=N_TRS, help="TRs per run (--memory)")
    parser.add_argument("--child", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child is not None:
        print(json.dumps(measure(args.child, args.batch)))
        return
    if args.memory is not None:
        bounded(args)
        return

    n_voxels = args.voxels or (5_000 if args.quick else 100_000)
    with tempfile.TemporaryDirectory(prefix="bench_memory_") as tmp:
        start = time.perf_counter()
        root = write_dataset(Path(tmp) / "ds", n_voxels, args.features)
        print(f"dataset: {N_RUNS}+{N_RUNS} runs x {N_TRS} TRs, {n_voxels} voxels, {args.features} "
              f"features (x 4 delays), written in {time.perf_counter() - start:.0f} s")
        responses_gib = 2 * N_RUNS * N_TRS * n_voxels * 4 / 2**30
        print(f"float32 responses of both modalities alone: {responses_gib:.2f} GiB")
        batched = run_child(root, args.batch)
        report(f"batched (n_targets_batch={args.batch or 'default'})", batched)
        if args.unbatched:
            single = run_child(root, n_voxels)
            report(f"one batch of all {n_voxels} voxels", single)
            print(f"peak ratio one batch / batched: {single['peak_gib'] / batched['peak_gib']:.2f}")


if __name__ == "__main__":
    main()

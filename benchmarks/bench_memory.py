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

Usage::

    python benchmarks/bench_memory.py                 # 100 000 voxels, 5-10 minutes on 2 cores
    python benchmarks/bench_memory.py --unbatched     # also the single-batch run (about 2x longer)
    python benchmarks/bench_memory.py --quick         # 5 000 voxels
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


def write_dataset(root: Path, n_voxels: int, n_features: int, seed: int = 0) -> Path:
    """A manifest dataset with a planted response in a third of the voxels."""
    from brainenc.io.features import write_stimulus_features

    rng = np.random.default_rng(seed)
    n_driven = n_voxels // 3
    weights = (rng.standard_normal((n_features, n_driven)) / np.sqrt(n_features)).astype(np.float32)
    rows = ["subject\trun\tmodality\tresponse\tstimulus\ttr\tstimulus_onset"]
    root.mkdir(parents=True, exist_ok=True)
    for modality in ("story", "movie"):
        for i in range(N_RUNS):
            name = f"{modality}{i}"
            times = TR * np.arange(N_TRS) + TR / 2
            data = rng.standard_normal((N_TRS, n_features), dtype=np.float32)
            write_stimulus_features(root / "features" / "feats" / f"{name}.hf5", data, times)
            Y = rng.standard_normal((N_TRS, n_voxels), dtype=np.float32)
            Y[2:, :n_driven] += data[:-2] @ weights
            np.save(root / f"{name}.npy", Y)
            del Y
            rows.append(f"s1\t{name}\t{modality}\t{name}.npy\t{name}\t{TR}\t0")
    (root / "brainenc_manifest.tsv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    return root


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


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--voxels", type=int, default=None)
    parser.add_argument("--features", type=int, default=64, help="stimulus features per TR, before delays")
    parser.add_argument("--batch", type=int, default=None, help="n_targets_batch (default: run_transfer's)")
    parser.add_argument("--unbatched", action="store_true", help="also run one batch of all voxels")
    parser.add_argument("--quick", action="store_true", help="5 000 voxels")
    parser.add_argument("--child", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child is not None:
        print(json.dumps(measure(args.child, args.batch)))
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

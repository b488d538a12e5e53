"""A memory bound (``--memory``): responses read voxel batch by batch from their files, the
batch sized to the bound, the same results as in memory, and the peak under the bound."""
from __future__ import annotations

import subprocess
import sys
import warnings
from pathlib import Path

import h5py
import numpy as np
import pytest

from brainenc.checks import parse_memory
from brainenc.cli import main
from brainenc.errors import BrainencInputError
from brainenc.io.layouts import load_dataset
from brainenc.io.responses import load_responses
from brainenc.results import DIRECTIONS
from brainenc.transfer import analyse_spaces, plan_transfer, prepare_space, run_transfer
from brainenc.transfer.memory import PROCESS_BYTES, memory_batch
from safety import assert_refused
from tests.conftest import make_manifest_dataset

N_VOXELS = 400
CONSTANT = (5, 301)


def as_hdf5(root):
    """The dataset's .npy responses rewritten as HDF5 files (``data``), in the manifest too."""
    for path in sorted(root.glob("*.npy")):
        with h5py.File(path.with_suffix(".hf5"), "w") as handle:
            handle["data"] = np.load(path)
        path.unlink()
    manifest = root / "brainenc_manifest.tsv"
    manifest.write_text(manifest.read_text().replace(".npy", ".hf5"))
    return root


@pytest.fixture(scope="module", params=["npy", "hdf5"])
def dataset(request, tmp_path_factory):
    root = make_manifest_dataset(tmp_path_factory.mktemp(request.param) / "ds", n_runs=3, n_trs=90,
                                 n_voxels=N_VOXELS, n_features=6, constant_voxels=CONSTANT, seed=4)
    if request.param == "hdf5":
        as_hdf5(root)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return load_dataset(root)


def analyse(dataset, batch, chunk_reads):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        plan = plan_transfer(dataset, "s1", n_targets_batch=batch, chunk_reads=chunk_reads)
        space = prepare_space(plan, "feats", progress=False)
        return plan, analyse_spaces(plan, [space], progress=False)[0]


def test_column_reads_equal_the_columns_of_the_whole_file(dataset):
    run = dataset.runs_for("s1", "story")[1]
    whole = load_responses(run)
    for columns in (slice(0, 7), slice(123, 400), slice(399, 400)):
        np.testing.assert_array_equal(load_responses(run, columns=columns), whole[:, columns])


def test_responses_read_by_batch_give_the_results_held_in_memory_bit_for_bit(dataset):
    plan, chunked = analyse(dataset, 64, chunk_reads=True)
    assert plan.store.chunked and plan.store._loaded is None
    _, in_memory = analyse(dataset, 64, chunk_reads=False)
    for direction in DIRECTIONS:
        for name in ("r", "r2", "z", "pvalues", "significant"):
            np.testing.assert_array_equal(getattr(chunked, name)[direction],
                                          getattr(in_memory, name)[direction], err_msg=name)
    assert np.isnan(chunked.r["story_to_movie"][list(CONSTANT)]).all()
    assert sum(s.n_significant for s in chunked.summaries) > 0


def test_a_bound_sets_the_batch_and_keeps_the_in_memory_results(dataset):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # a bound that leaves room for a few hundred voxels at a time
        plan = plan_transfer(dataset, "s1", memory="1GB")
        space = prepare_space(plan, "feats", progress=False)
    n_trs = sum(sum(plan.run_lengths(m)) for m in plan.modalities)
    batch = memory_batch(parse_memory("1GB"), N_VOXELS, n_trs, [space], 20000)
    assert batch == N_VOXELS   # small data: the whole subject fits
    small = memory_batch(PROCESS_BYTES + 5_000_000, N_VOXELS, n_trs, [space], 20000)
    assert 100 <= small < N_VOXELS
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        bounded = run_transfer(dataset, "s1", "feats", progress=False,
                               memory=PROCESS_BYTES + 5_000_000)
        reference = run_transfer(dataset, "s1", "feats", progress=False)
    for direction in DIRECTIONS:
        np.testing.assert_allclose(bounded.r[direction], reference.r[direction], atol=1e-6)
        np.testing.assert_array_equal(bounded.significant[direction], reference.significant[direction])


@pytest.mark.parametrize("value, expected", [("8GB", 8 * 10**9), ("8 GiB", 8 * 2**30),
                                             ("512MB", 512 * 10**6), ("1.5G", 1_500_000_000),
                                             (2_000_000_000, 2_000_000_000), ("300kib", 300 * 1024)])
def test_memory_sizes_read_as_dask_reads_them(value, expected):
    assert parse_memory(value) == expected


@pytest.mark.parametrize("value", ["lots", "-1GB", "0", "8 GBs", True, "", "1e3GB"])
def test_impossible_memory_sizes_are_refused(value):
    with pytest.raises(BrainencInputError, match="--memory must be a size"):
        parse_memory(value)


def test_a_bound_too_small_is_an_error_naming_what_it_needs(dataset):
    with pytest.raises(BrainencInputError, match=r"--memory 0\.10 GB is too small .* at least"):
        run_transfer(dataset, "s1", "feats", progress=False, memory="100MB")


@pytest.mark.parametrize("extra, fragment", [(["--memory", "plenty"], "--memory must be a size"),
                                             (["--memory", "10MB"], "too small"),
                                             (["--memory", "4GB", "--dimensions"], "--dimensions")])
def test_cli_refuses_bad_bounds_before_writing_anything(tmp_path, capsys, extra, fragment):
    root = make_manifest_dataset(tmp_path / "ds", n_runs=3, n_trs=60, n_voxels=20, n_features=4)
    before = sorted(p.name for p in root.rglob("*"))
    code = main(["transfer", "--dataset", str(root), "--subject", "s1", "--features", "feats",
                 "--out", str(tmp_path / "out"), *extra])
    assert_refused(capsys, code, fragment)
    assert not (tmp_path / "out").exists()
    assert sorted(p.name for p in root.rglob("*")) == before


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/status").is_file(), reason="reads VmHWM from /proc (Linux)")
def test_peak_memory_of_the_command_stays_under_the_bound(tmp_path):
    """``brainenc transfer --memory 0.9GB`` on 20 000 voxels of HDF5 responses: the child's
    peak resident memory is under the bound and the batch is a part of the voxels."""
    root = make_manifest_dataset(tmp_path / "ds", n_runs=3, n_trs=150, n_voxels=20_000,
                                 n_features=16, seed=2)
    as_hdf5(root)
    bound = "0.9GB"
    argv = ["transfer", "--dataset", str(root), "--subject", "s1", "--features", "feats",
            "--out", str(tmp_path / "out"), "--memory", bound, "--quiet", "--no-report"]
    # the child reports the peak of its own program (VmHWM): ru_maxrss would count this
    # process's resident memory too, which the child shared between fork and exec
    code = ("import re, sys; from brainenc.cli import main; status = main(sys.argv[1:]); "
            "hwm = re.search(r'VmHWM:\\s*(\\d+) kB', open('/proc/self/status').read())[1]; "
            "print('peak', int(hwm) * 1024, file=sys.stderr); sys.exit(status)")
    done = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    peak = int(done.stderr.strip().splitlines()[-1].split()[1])
    assert peak < parse_memory(bound), peak
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        plan = plan_transfer(load_dataset(root), "s1", memory=bound)
        space = prepare_space(plan, "feats", progress=False)
    n_trs = sum(sum(plan.run_lengths(m)) for m in plan.modalities)
    assert memory_batch(parse_memory(bound), 20_000, n_trs, [space], 20000) < 20_000
    assert (tmp_path / "out" / "summary.json").is_file()

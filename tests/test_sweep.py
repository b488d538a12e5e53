"""``brainenc sweep``: subjects × feature spaces on Dask, equal to serial runs, resumable."""
from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

from brainenc.cli import main
from brainenc.errors import BrainencInputError
from brainenc.sweep import load_sweep_spec, plan_sweep, run_sweep, write_sweep_summary
from safety import assert_refused
from tests.conftest import make_manifest_dataset

SPEC = """\
dataset = "ds"
out = "{out}"
features = ["feats", "other"]
[analysis]
max_lag = 3
report = false
"""


def _sweep_dataset(root: Path) -> Path:
    """The manifest dataset of the other tests with a second subject (its responses plus
    noise) and copies of its feature space: ``other`` and the layers ``model_1``, ``model_2``."""
    make_manifest_dataset(root)
    manifest = root / "brainenc_manifest.tsv"
    header, *rows = manifest.read_text().splitlines()
    rng = np.random.default_rng(5)
    for row in list(rows):
        cells = row.split("\t")
        y = np.load(root / cells[3])
        np.save(root / f"s2_{cells[3]}", (y + rng.standard_normal(y.shape)).astype(np.float32))
        rows.append("\t".join(["s2", cells[1], cells[2], f"s2_{cells[3]}", *cells[4:]]))
    manifest.write_text("\n".join([header, *rows]) + "\n")
    for name in ("other", "model_1", "model_2"):
        shutil.copytree(root / "features" / "feats", root / "features" / name)
    return root


@pytest.fixture(scope="module")
def sweep_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("sweep")
    _sweep_dataset(root / "ds")
    return root


def _spec(root: Path, out: str, text: str = SPEC) -> Path:
    path = root / f"{out}.toml"
    path.write_text(text.format(out=out), encoding="utf-8")
    return path


def _scores(out: Path) -> dict[str, dict[str, np.ndarray]]:
    found = {}
    for path in sorted(out.glob("*/*/scores.npz")):
        with np.load(path) as content:
            found[f"{path.parent.parent.name}/{path.parent.name}"] = {k: content[k] for k in content.files}
    return found


@pytest.fixture(scope="module")
def serial(sweep_root) -> dict:
    spec = _spec(sweep_root, "serial")
    assert main(["sweep", str(spec), "--scheduler", "serial"]) == 0
    return _scores(sweep_root / "serial")


def _assert_equal_bit_for_bit(found: dict, expected: dict) -> None:
    assert sorted(found) == sorted(expected) == ["s1/feats", "s1/other", "s2/feats", "s2/other"]
    for key, arrays in expected.items():
        assert sorted(found[key]) == sorted(arrays)
        for name, value in arrays.items():
            np.testing.assert_array_equal(found[key][name], value, err_msg=f"{key} {name}")


@pytest.mark.slow
def test_local_cluster_equals_the_serial_runs_bit_for_bit(sweep_root, serial, capsys):
    spec = _spec(sweep_root, "local", SPEC.replace("report = false", "report = true"))
    assert main(["sweep", str(spec), "--scheduler", "local", "--workers", "2"]) == 0
    printed = capsys.readouterr().out
    assert "4 jobs (2 subjects × 2 feature spaces), 0 already done" in printed
    _assert_equal_bit_for_bit(_scores(sweep_root / "local"), serial)
    # the table holds each job's summary, row for row
    with open(sweep_root / "local" / "sweep_summary.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 4 * (4 + 2)    # 4 jobs × (4 directions + 2 transfer maps)
    summary = json.loads((sweep_root / "local" / "s2" / "other" / "summary.json").read_text())
    expected = summary["results"][0]["directions"]["story_to_movie"]["mean_r"]
    row = next(r for r in rows if r["subject"] == "s2" and r["feature_space"] == "other"
               and r["map"] == "prediction" and r["direction"] == "story_to_movie")
    assert float(row["mean_r"]) == pytest.approx(expected, rel=1e-12)
    assert row["aligned_pair"] == ""    # the test features do not say whether they share a space
    report = (sweep_root / "local" / "sweep_report.html").read_text()
    assert "s1/feats/report.html" in report and "sweep_mean_r.png" in report
    assert (sweep_root / "local" / "s1" / "feats" / "report.html").is_file()


@pytest.mark.slow
def test_a_killed_worker_loses_nothing(sweep_root, serial):
    """Once the first job is done, a worker that is running a job is killed (SIGKILL): the
    job runs again on another worker, and the sweep equals the serial runs."""
    from distributed import Client, LocalCluster

    plan = plan_sweep(load_sweep_spec(_spec(sweep_root, "killed")))
    lost: list[str] = []
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                      dashboard_address=None) as cluster, Client(cluster) as client:
        pids = client.run(os.getpid)

        def kill_a_busy_worker(key: str) -> None:
            if lost:
                return
            for address, keys in client.processing().items():
                if keys:
                    os.kill(pids[address], signal.SIGKILL)
                    lost.extend(str(k) for k in keys)
                    return

        done = run_sweep(plan, client=client, on_done=kill_a_busy_worker)
    assert lost and all(k.startswith("brainenc-sweep-") for k in lost)   # a job was in flight
    assert sorted(done) == ["s1/feats", "s1/other", "s2/feats", "s2/other"]
    _assert_equal_bit_for_bit(_scores(sweep_root / "killed"), serial)
    assert not list((sweep_root / "killed").glob("*/.*.tmp"))   # no staging folder left


@pytest.mark.slow
def test_an_interrupted_sweep_resumes_without_redoing_finished_jobs(sweep_root, serial, capsys):
    spec = _spec(sweep_root, "resumed")
    plan = plan_sweep(load_sweep_spec(spec))
    run_sweep(plan, scheduler="serial")
    out = sweep_root / "resumed"
    finished = {key: (out / key / "scores.npz").stat().st_mtime_ns for key in serial}
    # as if killed while analysing s2/other: its folder never appeared, a staging folder did
    shutil.rmtree(out / "s2" / "other")
    staging = out / "s2" / ".other.abc123.tmp"
    staging.mkdir()
    (staging / ".brainenc-staging").write_text("999999999", encoding="utf-8")   # a dead process
    assert main(["sweep", str(spec), "--scheduler", "serial"]) == 0
    printed = capsys.readouterr().out
    assert "4 jobs (2 subjects × 2 feature spaces), 3 already done" in printed
    assert "done s2/other" in printed and "done s1/feats" not in printed
    for key in ("s1/feats", "s1/other", "s2/feats"):
        assert (out / key / "scores.npz").stat().st_mtime_ns == finished[key]
    assert not staging.exists()
    _assert_equal_bit_for_bit(_scores(out), serial)


def test_another_analysis_in_the_same_root_needs_overwrite(sweep_root, serial, capsys):
    changed = SPEC.replace("max_lag = 3", "max_lag = 2").format(out="serial")
    spec = sweep_root / "changed.toml"
    spec.write_text(changed, encoding="utf-8")
    assert_refused(capsys, main(["sweep", str(spec), "--scheduler", "serial"]),
                   "serial", "another analysis", "max_lag: 3 -> 2", "--overwrite")
    plan = plan_sweep(load_sweep_spec(spec), overwrite=True)
    assert sorted(plan.stale) == sorted(serial) and len(plan.pending()) == 4


@pytest.mark.parametrize("edit, fragments", [
    (lambda s: s + "colour = 1\n", ["unknown keys", "colour"]),
    (lambda s: s.replace('features = ["feats", "other"]\n', ""), ["features / layers"]),
    (lambda s: s.replace('"other"', '"nothing"'), ["nothing"]),
    (lambda s: s.replace("max_lag = 3", "max_lag = 3\nmodalities = [\"audio\"]"),
     ["[analysis] modalities", "audio"]),
    (lambda s: s.replace("max_lag = 3", "lag = 3"), ["[analysis]", "unknown keys", "lag"]),
    (lambda s: 'subjects = ["s9"]\n' + s, ["s9"]),
    (lambda s: s.replace('dataset = "ds"', 'dataset = "nowhere"'), ["nowhere"]),
    (lambda s: s + 'memory = "x"\n', ["bad.toml", "[analysis]", "--memory must be a size"]),
    (lambda s: s + "memory = 5\n", ["bad.toml", "[analysis] memory", "unit"]),
    (lambda s: s + "n_targets_batch = 0\n", ["bad.toml", "[analysis]", "n_targets_batch"]),
    (lambda s: s + 'memory = "10MB"\n', ["bad.toml", "[analysis] memory", "subject s1", "too small"]),
])
def test_bad_specs_are_refused_before_anything_is_written(sweep_root, capsys, edit, fragments):
    spec = sweep_root / "bad.toml"
    spec.write_text(edit(SPEC.format(out="bad")), encoding="utf-8")
    assert_refused(capsys, main(["sweep", str(spec), "--scheduler", "serial"]), *fragments)
    assert not (sweep_root / "bad").exists()


def test_a_foreign_folder_is_never_used_as_the_sweep_root(sweep_root, capsys):
    (sweep_root / "foreign").mkdir()
    (sweep_root / "foreign" / "notes.txt").write_text("mine", encoding="utf-8")
    spec = _spec(sweep_root, "foreign")
    assert_refused(capsys, main(["sweep", str(spec), "--scheduler", "serial"]),
                   "foreign", "did not write")
    assert sorted(p.name for p in (sweep_root / "foreign").iterdir()) == ["notes.txt"]


def test_summary_of_a_sweep_with_nothing_finished_is_an_empty_table(sweep_root):
    plan = plan_sweep(load_sweep_spec(_spec(sweep_root, "empty")))
    plan.spec.out.mkdir()
    assert write_sweep_summary(plan) == []
    assert (plan.spec.out / "sweep_summary.csv").read_text().startswith("subject,feature_space")


def test_an_unreachable_scheduler_writes_nothing(sweep_root, capsys):
    import dask

    spec = _spec(sweep_root, "unreachable")
    with dask.config.set({"distributed.comm.timeouts.connect": "1s"}):
        code = main(["sweep", str(spec), "--scheduler", "tcp://127.0.0.1:1"])
    assert code == 2, capsys.readouterr().err
    assert not (sweep_root / "unreachable").exists()


@pytest.mark.parametrize("argv, fragment", [
    (["--scheduler", "nowhere"], "--scheduler"),
    (["--workers", "0"], "--workers"),
    (["--scheduler", "serial", "--workers", "2"], "--workers sets the size of a local cluster"),
])
def test_bad_scheduler_options_are_refused(sweep_root, capsys, argv, fragment):
    spec = _spec(sweep_root, "options")
    assert_refused(capsys, main(["sweep", str(spec), *argv]), fragment)
    assert not (sweep_root / "options").exists()


@pytest.mark.slow
def test_a_running_cluster_is_reached_by_its_address(sweep_root, serial, capsys):
    from distributed import LocalCluster

    spec = _spec(sweep_root, "address")
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                      dashboard_address=None) as cluster:
        assert main(["sweep", str(spec), "--scheduler", cluster.scheduler_address]) == 0
    _assert_equal_bit_for_bit(_scores(sweep_root / "address"), serial)


def test_layer_patterns_and_subjects_make_the_jobs(sweep_root):
    spec = sweep_root / "layers.toml"
    spec.write_text('dataset = "ds"\nout = "layers"\nsubjects = ["s2"]\nfeatures = ["feats"]\n'
                    'layers = ["model_*"]\n', encoding="utf-8")
    plan = plan_sweep(load_sweep_spec(spec))
    assert [job.key for job in plan.jobs] == ["s2/feats", "s2/model_1", "s2/model_2"]
    assert plan.jobs[1].folder == sweep_root / "layers" / "s2" / "model_1"
    assert not (sweep_root / "layers").exists()      # planning writes nothing


@pytest.mark.slow
def test_ctrl_c_keeps_the_finished_jobs_and_the_same_command_resumes(sweep_root, serial):
    spec = _spec(sweep_root, "interrupted")
    command = [str(Path(sys.executable).parent / "brainenc"), "sweep", str(spec), "--scheduler", "serial"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    for line in process.stdout:
        if "done s1/feats" in line:
            break
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 130 and "Traceback" not in err and "resumes" in err, err
    out = sweep_root / "interrupted"
    assert (out / "s1" / "feats" / "scores.npz").is_file()
    assert not list(out.glob("*/.*.tmp"))           # the interrupted job left nothing
    resumed = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert "done s1/feats" not in resumed.stdout
    _assert_equal_bit_for_bit(_scores(out), serial)


def test_a_gpu_backend_is_checked_here_only_for_jobs_that_run_here(sweep_root, monkeypatch):
    """A backend this machine cannot load (a GPU backend on a CPU machine; stood in for by a
    check that refuses it, as himalaya's GPU modules skip rather than fail under pytest) is
    refused for jobs on this machine, and left to the workers of a remote cluster, each of
    which resolves the backend itself."""
    import brainenc.checks

    monkeypatch.setattr(brainenc.checks, "_backend_problem",
                        lambda name: f"--backend {name}: no GPU here" if name == "cupy" else None)
    spec = sweep_root / "gpu.toml"
    spec.write_text(SPEC.format(out="gpu") + 'backend = "cupy"\n', encoding="utf-8")
    with pytest.raises(BrainencInputError, match="no GPU here"):
        plan_sweep(load_sweep_spec(spec))                          # serial or a local cluster
    plan = plan_sweep(load_sweep_spec(spec), devices_here=False)   # a remote cluster's workers
    assert plan.spec.transfer_options()["backend"] == "cupy" and len(plan.jobs) == 4


def test_a_failing_job_does_not_stop_the_others(sweep_root, serial, capsys, monkeypatch):
    """One job raises: the others finish, the table holds them, the command exits 1 naming the
    failed job, and the same command then runs only that job."""
    import brainenc.workflows

    real = brainenc.workflows.transfer_to_folder

    def failing(dataset, subject, features, out, **options):
        if subject == "s1" and features == ["other"]:
            raise MemoryError("out of memory (planted)")
        return real(dataset, subject, features, out, **options)

    monkeypatch.setattr(brainenc.workflows, "transfer_to_folder", failing)
    spec = _spec(sweep_root, "failing")
    assert main(["sweep", str(spec), "--scheduler", "serial"]) == 1
    printed = capsys.readouterr()
    assert "1 job(s) failed, 3 finished" in printed.err and "s1/other: MemoryError" in printed.err
    with open(sweep_root / "failing" / "sweep_summary.csv", newline="") as handle:
        assert {r["feature_space"] + r["subject"] for r in csv.DictReader(handle)} == {
            "featss1", "featss2", "others2"}
    monkeypatch.setattr(brainenc.workflows, "transfer_to_folder", real)
    assert main(["sweep", str(spec), "--scheduler", "serial"]) == 0
    assert "3 already done" in capsys.readouterr().out
    _assert_equal_bit_for_bit(_scores(sweep_root / "failing"), serial)


def test_a_sweep_root_inside_the_dataset_is_refused_before_anything_is_written(sweep_root, capsys):
    """Each job's folder obeys the rules of every brainenc output folder (here: not inside an
    input), checked for all jobs at planning time."""
    spec = sweep_root / "inside.toml"
    spec.write_text(SPEC.format(out="ds/sweep"), encoding="utf-8")
    before = sorted(p.name for p in (sweep_root / "ds").iterdir())
    assert_refused(capsys, main(["sweep", str(spec), "--scheduler", "serial"]), "s1/feats")
    assert sorted(p.name for p in (sweep_root / "ds").iterdir()) == before


CHUNKED = SPEC.replace("report = false", "report = false\nn_targets_batch = 4")


@pytest.fixture(scope="module")
def batched(sweep_root) -> dict:
    """The serial sweep in batches of 4 voxels, without chunks: the reference of the chunks."""
    spec = _spec(sweep_root, "batched", CHUNKED)
    assert main(["sweep", str(spec), "--scheduler", "serial"]) == 0
    return _scores(sweep_root / "batched")


def _weights(out: Path) -> dict[str, np.ndarray]:
    import h5py

    found = {}
    for path in sorted(out.glob("*/*/weights.h5")):
        with h5py.File(path, "r") as handle:
            for modality in ("story", "movie"):
                for name in ("weights", "alphas"):
                    found[f"{path.parent.name}/{modality}/{name}"] = handle[f"{modality}/{name}"][()]
    return found


@pytest.mark.slow
def test_voxel_chunks_on_two_workers_equal_the_unchunked_sweep_bit_for_bit(sweep_root, batched):
    """12 voxels in chunks of 4 (whole batches): three tasks per job and one that assembles
    them; scores, p-values, FDR maps and weights equal the unchunked sweep's bit for bit."""
    spec = _spec(sweep_root, "chunked", CHUNKED + "chunk_voxels = 4\n")
    assert main(["sweep", str(spec), "--scheduler", "local", "--workers", "2"]) == 0
    _assert_equal_bit_for_bit(_scores(sweep_root / "chunked"), batched)
    found, expected = _weights(sweep_root / "chunked"), _weights(sweep_root / "batched")
    assert sorted(found) == sorted(expected)
    for key, value in expected.items():
        np.testing.assert_array_equal(found[key], value, err_msg=key)
    assert not list((sweep_root / "chunked").glob("*/.*.chunks"))   # parts removed when done


def test_finished_chunks_are_found_again_and_not_recomputed(sweep_root, batched, monkeypatch):
    """Two chunks of a job finished before an interruption: the rerun computes the others only,
    and the result equals the unchunked sweep's."""
    import brainenc.transfer.run as transfer_run
    from brainenc.sweep.chunks import chunks_folder, job_chunks, run_chunk

    spec = _spec(sweep_root, "resumed_chunks", CHUNKED + "chunk_voxels = 4\n")
    plan = plan_sweep(load_sweep_spec(spec))
    job = plan.jobs[0]
    chunks = job_chunks(plan, job, plan.n_voxels[job.subject])
    assert [(c.start, c.stop) for c in chunks] == [(0, 4), (4, 8), (8, 12)]
    (plan.spec.out / job.subject).mkdir(parents=True)
    done = [run_chunk(plan, job, columns) for columns in chunks[:2]]
    assert all((part / "scores.npz").is_file() for part in done)
    # a part of another analysis (left before the spec changed) is not taken for this one's
    stray = run_chunk(plan, plan.jobs[1], chunks[2])
    (stray / "identity.json").write_text(json.dumps({"analysis": {"max_lag": 9}}))
    calls = []
    original = transfer_run.score_spaces
    monkeypatch.setattr(transfer_run, "score_spaces",
                        lambda plan, *a, **k: calls.append(plan.columns) or original(plan, *a, **k))
    from brainenc.sweep.run import describe_units

    assert describe_units(plan, plan.pending())[0] == ("s1/feats: 3 voxel chunks of up to 4 voxels, "
                                                       "2 part(s) found from an earlier run")
    run_sweep(plan, scheduler="serial")
    assert len(calls) == 3 * len(plan.jobs) - 2    # the stray part was computed again
    assert slice(0, 4) in calls and calls.count(slice(0, 4)) == len(plan.jobs) - 1
    _assert_equal_bit_for_bit(_scores(plan.spec.out), batched)
    assert not chunks_folder(job).exists()


def test_chunk_voxels_must_be_a_positive_whole_number(sweep_root, capsys):
    spec = _spec(sweep_root, "bad_chunks", SPEC + "chunk_voxels = 0\n")
    assert_refused(capsys, main(["sweep", str(spec)]), "chunk_voxels", "whole number")
    assert not (sweep_root / "bad_chunks").exists()


@pytest.mark.slow
def test_spaces_of_a_subject_in_one_task_equal_the_serial_runs_bit_for_bit(sweep_root, serial):
    """spaces_per_task = 2: each subject's two feature spaces in one task on a 2-worker
    LocalCluster; every job's folder equals its serial run's bit for bit."""
    spec = _spec(sweep_root, "grouped", SPEC + "spaces_per_task = 2\n")
    assert main(["sweep", str(spec), "--scheduler", "local", "--workers", "2"]) == 0
    _assert_equal_bit_for_bit(_scores(sweep_root / "grouped"), serial)


def test_a_subject_s_responses_are_read_once_for_its_grouped_spaces(sweep_root, serial, monkeypatch):
    from brainenc.sweep.run import task_units
    from brainenc.transfer.responses import SubjectResponses

    spec = _spec(sweep_root, "grouped_serial", SPEC + "spaces_per_task = 2\n")
    plan = plan_sweep(load_sweep_spec(spec))
    assert [[job.key for job in unit] for unit in task_units(plan, plan.pending())] == [
        ["s1/feats", "s1/other"], ["s2/feats", "s2/other"]]
    from brainenc.sweep.run import describe_units

    assert describe_units(plan, plan.pending()) == ["s1: feats, other in one task",
                                                    "s2: feats, other in one task"]
    loads = []
    original = SubjectResponses.in_memory.__func__
    monkeypatch.setattr(SubjectResponses, "in_memory",
                        classmethod(lambda cls, runs: loads.append(1) or original(cls, runs)))
    assert sorted(run_sweep(plan, scheduler="serial")) == ["s1/feats", "s1/other", "s2/feats", "s2/other"]
    assert len(loads) == 2     # once per subject, not once per job
    _assert_equal_bit_for_bit(_scores(plan.spec.out), serial)


def test_local_workers_whose_bounds_exceed_the_machine_are_warned_about(sweep_root):
    from brainenc.errors import BrainencInputWarning
    from brainenc.sweep.run import warn_if_memory_short

    plan = plan_sweep(load_sweep_spec(_spec(sweep_root, "short", SPEC + 'memory = "100TB"\n')))
    with pytest.warns(BrainencInputWarning, match="2 workers .* each need .* more than this machine"):
        warn_if_memory_short(plan, 2)
    fits = plan_sweep(load_sweep_spec(_spec(sweep_root, "fits", SPEC + 'memory = "1GB"\n')))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        warn_if_memory_short(fits, 2)


def test_the_sweep_figure_joins_only_the_layers_of_one_model():
    from brainenc.sweep.summary import _layer_runs

    spaces = ["feats", "other", "bt_1", "bt_2", "bt_3", "gpt_1", "gpt_2", "clip_7", "bt_4"]
    assert _layer_runs(spaces) == [[2, 3, 4], [5, 6]]
    assert _layer_runs(["feats", "other"]) == []

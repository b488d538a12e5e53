"""The safe-output guard: no command deletes or replaces what brainenc did not write."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from brainenc.cli import main
from brainenc.errors import BrainencInputError
from brainenc.io.output import MARKER_NAME, STAGING_NAME, clean_leftovers, output_folder
from tests.conftest import make_manifest_dataset
from tests.safety import assert_refused, tree_state


def _transfer(dataset: Path, out, *extra: str) -> int:
    return main(["transfer", "--dataset", str(dataset), "--subject", "s1", "--features", "feats",
                 "--out", str(out), "--no-report", "--quiet", *extra])


@pytest.fixture
def dataset(tmp_path) -> Path:
    return make_manifest_dataset(tmp_path / "ds", n_runs=3, n_trs=40, n_voxels=6)


def test_out_equal_to_the_dataset_is_refused_and_nothing_changes(dataset, capsys):
    before = tree_state(dataset)
    assert_refused(capsys, _transfer(dataset, dataset), "input being read")
    assert tree_state(dataset) == before


def test_out_holding_the_dataset_isassert_refused(dataset, tmp_path, capsys):
    (tmp_path / "unrelated.txt").write_text("keep me")
    before = tree_state(tmp_path)
    assert_refused(capsys, _transfer(dataset, tmp_path), "contains an input")
    assert tree_state(tmp_path) == before


def test_out_inside_a_feature_space_or_the_dataset_isassert_refused(dataset, capsys):
    before = tree_state(dataset)
    assert_refused(capsys, _transfer(dataset, dataset / "features" / "feats"), "input being read")
    assert_refused(capsys, _transfer(dataset, dataset / "results"), "lies inside an input")
    assert tree_state(dataset) == before


def test_existing_folder_of_the_user_isassert_refused(dataset, tmp_path, capsys):
    out = tmp_path / "mine"
    (out / "old_figs").mkdir(parents=True)
    (out / "notes.txt").write_text("my notes")
    (out / "old_figs" / "a.png").write_bytes(b"\x89PNG")
    before = tree_state(out)
    assert_refused(capsys, _transfer(dataset, out), "not a brainenc result", str(out))
    assert_refused(capsys, _transfer(dataset, out, "--overwrite"), "not a brainenc result")
    assert tree_state(out) == before


def test_out_that_is_a_file_or_the_current_folder_isassert_refused(dataset, tmp_path, capsys,
                                                               monkeypatch):
    target = tmp_path / "result.txt"
    target.write_text("a file")
    assert_refused(capsys, _transfer(dataset, target, "--overwrite"), "not a folder")
    assert target.read_text() == "a file"
    here = tmp_path / "work"
    here.mkdir()
    monkeypatch.chdir(here)
    assert_refused(capsys, _transfer(dataset, "."), "current folder")
    assert_refused(capsys, _transfer(dataset, tmp_path), "current folder")
    assert list(here.iterdir()) == []


def test_unwritable_parent_is_refused_before_any_fit(dataset, tmp_path, capsys, monkeypatch):
    import brainenc.transfer

    def never(*args, **kwargs):
        raise AssertionError("the analysis ran")

    monkeypatch.setattr(brainenc.transfer, "run_transfers", never)
    assert_refused(capsys, _transfer(dataset, "/proc/brainenc-results"), "/proc")
    blocker = tmp_path / "plain_file"
    blocker.write_text("x")
    assert_refused(capsys, _transfer(dataset, blocker / "sub" / "out"), "is a file")
    if os.geteuid() != 0:  # root writes into read-only folders
        locked = tmp_path / "locked"
        locked.mkdir()
        locked.chmod(0o500)
        try:
            assert_refused(capsys, _transfer(dataset, locked / "out"), "not writable")
        finally:
            locked.chmod(0o700)


def test_previous_result_needs_overwrite_and_only_it_is_replaced(dataset, tmp_path, capsys):
    out = tmp_path / "results"
    assert _transfer(dataset, out) == 0
    marker = json.loads((out / MARKER_NAME).read_text())
    assert marker["kind"] == "transfer" and "scores.npz" in marker["files"]
    (tmp_path / "beside.txt").write_text("beside")
    before = tree_state(tmp_path)
    capsys.readouterr()
    assert_refused(capsys, _transfer(dataset, out), "--overwrite")
    assert tree_state(tmp_path) == before
    assert _transfer(dataset, out, "--overwrite", "--fdr-q", "0.1") == 0
    settings = json.loads((out / "summary.json").read_text())["results"][0]["settings"]
    assert settings["fdr_q"] == 0.1
    assert (tmp_path / "beside.txt").read_text() == "beside"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["beside.txt", "ds", "results"]
    # a file the user added to the result is not ours to delete, even with --overwrite
    (out / "notes.txt").write_text("mine")
    before = tree_state(out)
    capsys.readouterr()
    assert_refused(capsys, _transfer(dataset, out, "--overwrite"), "notes.txt")
    assert tree_state(out) == before


def test_failure_during_the_analysis_leaves_no_trace(dataset, tmp_path, capsys, monkeypatch):
    import brainenc.transfer

    def broken(*args, **kwargs):
        raise BrainencInputError(None, "planted failure")

    monkeypatch.setattr(brainenc.transfer, "run_transfers", broken)
    before = tree_state(tmp_path)
    assert_refused(capsys, _transfer(dataset, tmp_path / "new" / "deeper"), "planted failure")
    assert tree_state(tmp_path) == before


def test_interrupt_in_process_is_one_line_and_leaves_nothing(dataset, tmp_path, capsys,
                                                             monkeypatch):
    import brainenc.transfer

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(brainenc.transfer, "run_transfers", interrupted)
    before = tree_state(tmp_path)
    assert _transfer(dataset, tmp_path / "out") == 130
    err = capsys.readouterr().err
    lines = [line for line in err.strip().splitlines() if not line.startswith("WARNING:")]
    assert "Traceback" not in err and lines == [
        "brainenc transfer: interrupted; nothing was written to the output"]
    assert tree_state(tmp_path) == before


#: A ridge grid long enough to keep a small transfer busy for a while.
SLOW_ALPHA_GRID = [f"{a:g}" for a in np.logspace(0, 4, 4000)]


def _running_transfer(tmp_path: Path) -> subprocess.Popen:
    """A long transfer in a child process, returned once its staging folder exists."""
    dataset = make_manifest_dataset(tmp_path / "ds", n_runs=3, n_trs=200, n_voxels=3000)
    process = subprocess.Popen(
        [sys.executable, "-m", "brainenc.cli", "transfer", "--dataset", str(dataset),
         "--subject", "s1", "--features", "feats", "--out", str(tmp_path / "out"),
         "--quiet", "--alphas", *SLOW_ALPHA_GRID],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path)
    deadline = time.monotonic() + 120
    while not list(tmp_path.glob(".out.*.tmp")) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert list(tmp_path.glob(".out.*.tmp")), "the staging folder never appeared"
    time.sleep(1.0)
    return process


def test_sigint_to_a_running_transfer(tmp_path):
    process = _running_transfer(tmp_path)
    dataset, out = tmp_path / "ds", tmp_path / "out"
    before = tree_state(dataset)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 130, err
    assert "Traceback" not in err and "interrupted" in err
    assert not out.exists() and not list(tmp_path.glob(".out.*"))
    assert tree_state(dataset) == before


def test_leftovers_of_a_killed_run_are_cleaned_or_reported(dataset, tmp_path, capsys):
    out = tmp_path / "res"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    stale = tmp_path / ".res.abc123.tmp"
    stale.mkdir()
    (stale / STAGING_NAME).write_text(dead.stdout.strip())
    (stale / "scores.npz").write_bytes(b"partial")
    foreign = tmp_path / ".res.user.tmp"
    foreign.mkdir()
    (foreign / "keep.txt").write_text("not brainenc's")
    assert _transfer(dataset, out) == 0
    err = capsys.readouterr().err
    assert f"removed {stale}" in err
    assert "not written by brainenc" in err
    assert not stale.exists()
    assert (foreign / "keep.txt").read_text() == "not brainenc's"


def test_a_result_moved_aside_by_a_killed_replace_is_restored(dataset, tmp_path):
    out = tmp_path / "res"
    assert _transfer(dataset, out) == 0
    before = tree_state(out)
    aside = tmp_path / ".res.k1ll.old"
    os.replace(out, aside)
    notes = clean_leftovers(out)
    assert any("restored" in note for note in notes)
    assert tree_state(out) == before and not aside.exists()


def test_output_folder_rechecks_before_commit(tmp_path):
    out = tmp_path / "res"
    with pytest.raises(BrainencInputError, match="not a brainenc result"):
        with output_folder(out, kind="transfer") as staging:
            (staging / "a.txt").write_text("new")
            out.mkdir()
            (out / "user.txt").write_text("appeared meanwhile")
    assert (out / "user.txt").read_text() == "appeared meanwhile"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["res"]


def test_simulate_follows_the_same_rules(tmp_path, capsys):
    occupied = tmp_path / "occupied"
    occupied.mkdir()
    (occupied / "keep.txt").write_text("x")
    assert_refused(capsys, main(["simulate", str(occupied), "--overwrite"]), "not a brainenc result")
    assert [p.name for p in occupied.iterdir()] == ["keep.txt"]
    out = tmp_path / "sim"
    args = ["simulate", str(out), "--n-stories", "1", "--n-movies", "1"]
    assert main(args) == 0
    before = tree_state(out)
    capsys.readouterr()
    assert_refused(capsys, main(args), "--overwrite")
    assert tree_state(out) == before
    assert main(args + ["--overwrite", "--seed", "1"]) == 0
    assert tree_state(out) != before
    # a transfer result is never replaced by a simulation
    assert _transfer(make_manifest_dataset(tmp_path / "ds"), tmp_path / "res") == 0
    capsys.readouterr()
    assert_refused(capsys, main(["simulate", str(tmp_path / "res"), "--overwrite"]), "'transfer'")


def test_demo_refuses_a_user_folder(tmp_path, capsys):
    out = tmp_path / "demo"
    out.mkdir()
    (out / "thesis.tex").write_text("years of work")
    assert_refused(capsys, main(["demo", "--out", str(out), "--overwrite", "--quiet"]),
             "not a brainenc result")
    assert [p.name for p in out.iterdir()] == ["thesis.tex"]


def test_extract_out_rules(dataset, tmp_path, capsys):
    before = tree_state(tmp_path)

    def extract(out) -> int:
        return main(["extract", "--dataset", str(dataset), "--model", str(tmp_path / "nomodel"),
                     "--out", str(out), "--quiet"])

    assert_refused(capsys, extract(dataset), "dataset")
    assert_refused(capsys, extract(tmp_path), "dataset")
    assert_refused(capsys, extract(dataset / "features" / "feats"), "holds .hf5 files")
    assert_refused(capsys, extract(dataset / "elsewhere"), "inside the dataset")
    papers = tmp_path / "papers"
    papers.mkdir()
    (papers / "draft.pdf").write_bytes(b"%PDF")
    assert_refused(capsys, extract(papers), "draft.pdf")
    (papers / "draft.pdf").unlink()
    papers.rmdir()
    assert tree_state(tmp_path) == before


def test_summary_json_is_strict(dataset, tmp_path):
    out = tmp_path / "res"
    assert _transfer(dataset, out, "--no-significance") == 0
    text = (out / "summary.json").read_text()
    assert "NaN" not in text
    summary = json.loads(text, parse_constant=lambda name: pytest.fail(f"{name} in JSON"))
    directions = summary["results"][0]["directions"]
    assert directions["story_to_story"]["mean_r_significant"] is None
    assert np.isfinite(directions["story_to_story"]["mean_r"])


@pytest.mark.slow
def test_extract_never_replaces_feature_files_it_did_not_write(tmp_path, capsys):
    from brainenc.io.features import write_stimulus_features
    from brainenc.simulate import VOCABULARY, simulate_dataset
    from tests.tiny_models import save_tiny_bridgetower

    info = simulate_dataset(tmp_path / "ds", layout="huth", n_stories=2, n_movies=1,
                            n_trs_per_run=30)
    sentences = [" ".join(VOCABULARY[k:k + 12]) for k in range(0, len(VOCABULARY), 12)]
    model = save_tiny_bridgetower(tmp_path / "BridgeTower-Tiny", sentences)
    mine = info.root / "features" / "bridgetower-tiny_tower2" / "story02.hf5"
    write_stimulus_features(mine, np.ones((3, 2)), np.arange(3.0))
    before = tree_state(tmp_path)
    args = ["extract", "--dataset", str(info.root), "--model", str(model), "--layers", "-1",
            "--modality", "story", "--device", "cpu", "--quiet"]
    assert_refused(capsys, main(args), "story02.hf5", "did not write")
    assert tree_state(tmp_path) == before
    assert_refused(capsys, main(args + ["--revision", "v1"]), "revision")
    assert tree_state(tmp_path) == before
    mine.unlink()
    assert main(args + ["--tier", "0"]) == 0
    assert mine.is_file()


def test_overwrite_keeps_folders_the_user_made_inside_a_result(dataset, tmp_path, capsys):
    out = tmp_path / "results"
    assert _transfer(dataset, out) == 0
    (out / "my_empty_folder").mkdir()
    before = tree_state(out)
    capsys.readouterr()
    assert_refused(capsys, _transfer(dataset, out, "--overwrite"), "my_empty_folder/")
    assert tree_state(out) == before


def test_repeated_sigint_still_ends_cleanly(tmp_path):
    process = _running_transfer(tmp_path)
    out = tmp_path / "out"
    for _ in range(4):
        process.send_signal(signal.SIGINT)
        time.sleep(0.02)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 130, err
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err
    assert not out.exists() and not list(tmp_path.glob(".out.*"))


def test_extract_out_inside_the_feature_root_or_home_is_refused(dataset, tmp_path, capsys):
    before = tree_state(tmp_path)
    for out in (dataset / "features" / "newroot", Path.home()):
        code = main(["extract", "--dataset", str(dataset), "--model", str(tmp_path / "nomodel"),
                     "--out", str(out), "--quiet"])
        assert_refused(capsys, code, str(out))
    assert tree_state(tmp_path) == before

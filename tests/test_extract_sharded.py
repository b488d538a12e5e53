"""Extraction sharded by stimulus over Dask workers, into one feature cache shared by
concurrent transactions: same bits as the serial run, lock only around commits."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
import warnings
from pathlib import Path

import h5py
import numpy as np
import pytest

distributed = pytest.importorskip("distributed")

from brainenc.cli import main  # noqa: E402
from brainenc.errors import BrainencInputError, BrainencInputWarning  # noqa: E402
from brainenc.io.features import read_stimulus_features, write_stimulus_features  # noqa: E402
from brainenc.io.layouts import load_dataset  # noqa: E402
from brainenc.simulate import VOCABULARY, simulate_dataset  # noqa: E402
from feature_extractors import sharded  # noqa: E402
from feature_extractors.pipeline import extract_dataset  # noqa: E402
from feature_extractors.transaction import (  # noqa: E402
    LOCK_NAME,
    feature_root_lock,
    remove_stale_staging,
    staging_name,
    staging_owner,
)
from tests.test_extract_pipeline import TableExtractor  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SENTENCES = [" ".join(VOCABULARY[k:k + 12]) for k in range(0, len(VOCABULARY), 12)]


def save_tiny_roberta(folder: Path) -> Path:
    """A RoBERTa of width 32 and 2 layers with a byte-level fast tokenizer."""
    import torch
    from transformers import RobertaConfig, RobertaModel

    from tests.tiny_models import roberta_tokenizer

    tokenizer = roberta_tokenizer(SENTENCES)
    config = RobertaConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2,
                           num_attention_heads=2, intermediate_size=64, max_position_embeddings=40,
                           pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
                           eos_token_id=tokenizer.eos_token_id)
    torch.manual_seed(0)
    RobertaModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def table_loader(model: str, **options) -> TableExtractor:
    """A loader for :class:`ExtractorSpec` that needs no model files."""
    return TableExtractor()


def feature_root_contents(root: Path) -> dict[str, dict]:
    """Every dataset and attribute of every feature file under ``root``, by relative path."""
    contents = {}
    for path in sorted(root.rglob("*.hf5")):
        with h5py.File(path, "r") as f:
            arrays = {}
            f.visititems(lambda name, item: arrays.__setitem__(name, item[()])
                         if isinstance(item, h5py.Dataset) else None)
            contents[str(path.relative_to(root))] = {"arrays": arrays, "attrs": dict(f.attrs)}
    return contents


def hidden_leftovers(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir() if p.name.startswith(".brainenc-extract"))


def dead_pid() -> int:
    finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                              capture_output=True, text=True, check=True)
    return int(finished.stdout)


@pytest.fixture(scope="module")
def stories(tmp_path_factory):
    info = simulate_dataset(tmp_path_factory.mktemp("sharded") / "ds", layout="huth", n_stories=4,
                            n_movies=1, n_trs_per_run=20, seed=2)
    return load_dataset(info.root)


# --------------------------------------------------------------------------- #
# Sharded extraction on a LocalCluster
# --------------------------------------------------------------------------- #
def _loaded_extractors() -> int:
    from feature_extractors import sharded as on_worker

    return len(on_worker._EXTRACTORS)


@pytest.mark.slow
def test_two_workers_give_the_serial_bits_and_a_second_run_computes_nothing(stories, tmp_path,
                                                                           capsys):
    import torch

    from feature_extractors.loading import load_extractor

    model = save_tiny_roberta(tmp_path / "roberta-tiny")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)   # as on the single-threaded workers
    try:
        serial = extract_dataset(stories, load_extractor(str(model), device="cpu"),
                                 out=tmp_path / "serial", progress=False)
    finally:
        torch.set_num_threads(threads)
    assert len(serial.written) == 4 * 3   # 4 stories × layers 0-2; the movie is not embedded

    out = tmp_path / "sharded"
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster, distributed.Client(cluster) as client:
        report = sharded.extract_sharded(stories, str(model), options={"device": "cpu"}, out=out,
                                         client=client, progress=False)
        assert sorted(client.run(_loaded_extractors).values()) == [1, 1]  # once per worker
        stamps = {p: p.stat().st_ino for p in report.written}
        again = sharded.extract_sharded(stories, str(model), options={"device": "cpu"}, out=out,
                                        client=client, progress=False)
        # an input error on a worker comes back as one (the command line exits 2 on it)
        missing = sharded.ExtractorSpec.of(tmp_path / "missing-model")
        with pytest.raises(BrainencInputError, match="missing-model"):
            client.submit(sharded.run_shard, missing, [], out, None, False, None).result()
    assert [p.relative_to(out) for p in report.written] == \
        [p.relative_to(tmp_path / "serial") for p in serial.written]
    assert report.spaces == serial.spaces and report.cached == []
    expected, got = feature_root_contents(tmp_path / "serial"), feature_root_contents(out)
    assert sorted(got) == sorted(expected)
    for name, content in expected.items():
        assert sorted(got[name]["arrays"]) == ["data", "times"]
        for key, array in content["arrays"].items():
            assert np.array_equal(got[name]["arrays"][key], array), (name, key)
        assert got[name]["attrs"].keys() == content["attrs"].keys()
        assert got[name]["attrs"]["cache_key"] == content["attrs"]["cache_key"]
    assert again.written == [] and sorted(again.cached) == sorted(report.written)
    capsys.readouterr()
    # the command line finds everything cached before it would start a cluster
    assert main(["extract", "--dataset", str(stories.root), "--model", str(model), "--out", str(out),
                 "--device", "cpu", "--scheduler", "local", "--workers", "2", "--quiet"]) == 0
    assert "0 feature files written, 12 already cached" in capsys.readouterr().out
    assert {p: p.stat().st_ino for p in report.written} == stamps
    assert hidden_leftovers(out) == [] and not (out / LOCK_NAME).exists()


class NoSubmit:
    """A client that fails the test if anything is submitted."""

    def submit(self, *args, **kwargs):
        raise AssertionError("a task was submitted")


@pytest.mark.parametrize("damage", ["truncated transcript", "foreign feature file"])
def test_inputs_are_checked_before_the_first_task_is_submitted(tmp_path, damage):
    info = simulate_dataset(tmp_path / "ds", layout="huth", n_stories=2, n_movies=1,
                            n_trs_per_run=20, seed=3)
    data = load_dataset(info.root)
    if damage == "truncated transcript":
        second = data.runs_for(info.subject, "story")[1].stimulus_path
        second.write_bytes(second.read_bytes()[: second.stat().st_size * 2 // 3])
        problem = second.name
    else:
        story = data.runs_for(info.subject, "story")[0].stimulus
        foreign = data.feature_root / "table_tower0" / f"{story}.hf5"
        foreign.parent.mkdir(parents=True)
        write_stimulus_features(foreign, np.zeros((2, 3), np.float32), np.arange(2.0))
        problem = "did not write"
    with pytest.raises(BrainencInputError, match=problem):
        sharded.extract_sharded(data, "table", loader=table_loader, modality="story",
                                client=NoSubmit(), progress=False)


# --------------------------------------------------------------------------- #
# Transactions of two processes
# --------------------------------------------------------------------------- #
TRANSACTION = textwrap.dedent("""
    import json, sys, time
    from pathlib import Path
    import numpy as np
    from brainenc.io.features import pair_attrs, write_stimulus_features
    from feature_extractors.pipeline import is_cached
    from feature_extractors.transaction import extraction_transaction, file_signature

    root, value, sync = Path(sys.argv[1]), float(sys.argv[2]), Path(sys.argv[4])
    with extraction_transaction(root, keep_existing=is_cached) as (staging, _):
        for stimulus in sys.argv[3].split(","):
            target, key = root / "space" / f"{stimulus}.hf5", f"key-{stimulus}"
            seen = file_signature(target)          # checked: not cached
            write_stimulus_features(staging.path_for(target, key, seen),
                                    np.full((3, 2), value, np.float32), np.arange(3.0),
                                    cache_key=key, **pair_attrs(False, "test"))
        (sync / f"{value:g}.staged").touch()
        while not (sync / f"{value:g}.go").exists():   # between staging and commit
            time.sleep(0.02)
    print(json.dumps({"committed": [p.stem for p in staging.committed],
                      "kept": [p.stem for p in staging.kept]}))
""")


def _wait_for(path: Path, process: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert path.exists(), process.communicate()[1] if process.poll() is not None else "timed out"


def test_two_transactions_interleave_and_a_duplicate_keeps_the_first_commit(tmp_path):
    root, sync = tmp_path / "features", tmp_path / "sync"
    sync.mkdir()
    script = tmp_path / "transaction.py"
    script.write_text(TRANSACTION)
    env = {**os.environ, "PYTHONPATH": str(REPO)}

    def start(value: int, stimuli: str) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, str(script), str(root), str(value), stimuli,
                                 str(sync)], cwd=REPO, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)

    first = start(1, "s1,s2")
    _wait_for(sync / "1.staged", first)
    # the first process has staged and not committed: the lock is free
    assert not (root / LOCK_NAME).exists()
    with feature_root_lock(root, timeout_s=0):
        pass
    (sync / "2.go").touch()
    second = start(2, "s2,s3")
    out_second, err_second = second.communicate(timeout=60)
    assert second.returncode == 0, err_second
    assert json.loads(out_second) == {"committed": ["s2", "s3"], "kept": []}
    assert first.poll() is None and not (root / "space" / "s1.hf5").exists()
    inode = (root / "space" / "s2.hf5").stat().st_ino

    (sync / "1.go").touch()
    out_first, err_first = first.communicate(timeout=60)
    assert first.returncode == 0, err_first
    assert json.loads(out_first) == {"committed": ["s1"], "kept": ["s2"]}
    values = {p.stem: float(read_stimulus_features(p).data[0, 0])
              for p in (root / "space").iterdir()}
    assert values == {"s1": 1.0, "s2": 2.0, "s3": 2.0}
    assert (root / "space" / "s2.hf5").stat().st_ino == inode
    assert hidden_leftovers(root) == [] and not (root / LOCK_NAME).exists()


# --------------------------------------------------------------------------- #
# Stale staging folders
# --------------------------------------------------------------------------- #
def test_stale_staging_of_this_host_is_removed_and_other_hosts_are_left_alone(tmp_path):
    root = tmp_path / "features"
    root.mkdir()
    pid = dead_pid()

    def folder(name: str) -> Path:
        path = root / name
        (path / "space").mkdir(parents=True)
        (path / "space" / "story.hf5").write_bytes(b"half a file")
        return path

    dead_here = folder(staging_name(pid))
    dead_old_form = folder(f".brainenc-extract-{pid}.tmp")
    reused_pid = folder(staging_name())          # ours: a dead process with our pid left it
    live_here = folder(staging_name(os.getppid()))
    other_host = folder(staging_name(pid, host="node-7"))
    old_other_host = folder(staging_name(pid, host="node-8"))
    two_days_ago = time.time() - 2 * 24 * 3600
    for path in [old_other_host, *old_other_host.rglob("*")]:
        os.utime(path, (two_days_ago, two_days_ago))

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with feature_root_lock(root):
            removed = remove_stale_staging(root)
    assert sorted(removed) == sorted([dead_here, dead_old_form, reused_pid / "space"])
    assert not dead_here.exists() and not dead_old_form.exists()
    assert reused_pid.is_dir() and list(reused_pid.iterdir()) == []
    assert live_here.is_dir() and other_host.is_dir() and old_other_host.is_dir()
    messages = [str(w.message) for w in caught if issubclass(w.category, BrainencInputWarning)]
    assert len(messages) == 1 and "host node-8" in messages[0] and "left in place" in messages[0]
    assert staging_owner(other_host.name) == ("node-7", pid)
    assert staging_owner(dead_old_form.name) == (None, pid)


# --------------------------------------------------------------------------- #
# Command line
# --------------------------------------------------------------------------- #
@pytest.mark.parametrize("options, message", [
    (["--scheduler", "bogus"], "--scheduler"),
    (["--scheduler", "local", "--workers", "0"], "--workers must be at least 1"),
    (["--workers", "2"], "--workers sets the size of a local cluster"),
])
def test_bad_scheduler_options_exit_2_and_write_nothing(stories, capsys, options, message):
    before = sorted(p.relative_to(stories.root) for p in stories.root.rglob("*"))
    status = main(["extract", "--dataset", str(stories.root), "--model", "unused-model",
                   "--quiet", *options])
    assert status == 2
    err = capsys.readouterr().err
    assert message in err and "brainenc extract: error" in err
    assert sorted(p.relative_to(stories.root) for p in stories.root.rglob("*")) == before


def test_the_lock_is_free_while_a_transaction_stages(tmp_path):
    from feature_extractors.transaction import extraction_transaction

    root = tmp_path / "features"
    with extraction_transaction(root) as (staging, _):
        staging.path_for(root / "space" / "story.hf5", "k").write_bytes(b"x")
        with feature_root_lock(root, timeout_s=0):   # another open file description gets it at once
            pass
    assert (root / "space" / "story.hf5").read_bytes() == b"x"
    assert hidden_leftovers(root) == []

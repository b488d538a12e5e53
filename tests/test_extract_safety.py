"""Extraction never leaves a partial store, keys its cache on what really changes the
vectors (weights, revision, the modality's own settings) and lets concurrent runs share a root."""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
import warnings
from pathlib import Path

import h5py
import numpy as np
import pytest

from brainenc.errors import BrainencInputError, BrainencInputWarning
from brainenc.io.features import read_stimulus_features
from brainenc.io.layouts import load_dataset
from brainenc.simulate import VOCABULARY, simulate_dataset
from feature_extractors.pipeline import extract_dataset
from feature_extractors.transaction import LOCK_NAME, staging_name
from tests.test_extract_pipeline import TableExtractor
from tests.tiny_models import save_tiny_bridgetower

REPO = Path(__file__).resolve().parents[1]
SENTENCES = [" ".join(VOCABULARY[k:k + 12]) for k in range(0, len(VOCABULARY), 12)]


def store_checksums(root: Path) -> dict[str, str]:
    """SHA-256 of every file under ``root``, hidden ones included, by relative path."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def hidden_leftovers(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir() if p.name.startswith(".brainenc-extract"))


@pytest.fixture
def small_dataset(tmp_path):
    info = simulate_dataset(tmp_path / "ds", layout="huth", n_stories=2, n_movies=2,
                            n_trs_per_run=30, seed=1, movie_format="video", video_fps=2.0)
    return load_dataset(info.root)


class SettingsExtractor(TableExtractor):
    """TableExtractor whose identity carries one story-only and one movie-only setting."""

    def __init__(self, context_words: int = 20, frame_pooling: str = "cls"):
        super().__init__()
        self.context_words = context_words
        self.frame_pooling = frame_pooling

    def identity(self):
        return {"model": "table", "context_words": self.context_words,
                "frame_pooling": self.frame_pooling, "revision": "v2", "commit": "abc123"}


class InterruptingExtractor(TableExtractor):
    """Raises KeyboardInterrupt on its second call, as a user pressing Ctrl-C."""

    def _count(self):
        self.calls += 1
        if self.calls > 1:
            raise KeyboardInterrupt


# --------------------------------------------------------------------------- #
# Transaction
# --------------------------------------------------------------------------- #
@pytest.mark.parametrize("failure", [RuntimeError, KeyboardInterrupt])
def test_failure_on_the_second_story_leaves_a_new_store_untouched(small_dataset, failure):
    root = small_dataset.feature_root
    before = store_checksums(root) if root.exists() else None
    extractor = TableExtractor(fail_after=1) if failure is RuntimeError else InterruptingExtractor()
    with pytest.raises(failure):
        extract_dataset(small_dataset, extractor, modality="story", progress=False)
    assert extractor.calls == 2  # the first story was computed before the second failed
    after = store_checksums(root) if root.exists() else None
    assert after == before
    if root.exists():
        assert hidden_leftovers(root) == []


@pytest.mark.parametrize("failure", [RuntimeError, KeyboardInterrupt])
def test_failure_leaves_an_existing_store_byte_identical(small_dataset, failure):
    root = small_dataset.feature_root
    first = extract_dataset(small_dataset, TableExtractor(), modality="story", layers="0,1",
                            progress=False)
    assert len(first.written) == 4
    (root / "notes.txt").write_text("a file brainenc did not write\n")
    before = store_checksums(root)
    # a new version recomputes every file (and adds layer 2): the run fails on story 2
    extractor = TableExtractor(fail_after=1, version=7) if failure is RuntimeError \
        else InterruptingExtractor(version=7)
    with pytest.raises(failure):
        extract_dataset(small_dataset, extractor, modality="story", layers="all", force=True,
                        progress=False)
    assert store_checksums(root) == before
    assert hidden_leftovers(root) == [] and not (root / "table_tower2").exists()


def test_a_bad_second_transcript_fails_before_any_computation(small_dataset):
    root = small_dataset.feature_root
    extract_dataset(small_dataset, TableExtractor(), modality="story", layers="0", progress=False)
    before = store_checksums(root)
    second = small_dataset.runs_for("sim01", "story")[1].stimulus_path
    data = second.read_bytes()
    second.write_bytes(data[: len(data) * 2 // 3])
    extractor = TableExtractor(version=3)
    with pytest.raises(BrainencInputError) as error:
        extract_dataset(small_dataset, extractor, modality="story", progress=False)
    assert second.name in str(error.value)
    assert extractor.calls == 0
    assert store_checksums(root) == before


def test_success_moves_new_files_in_and_leaves_cached_files_alone(small_dataset):
    root = small_dataset.feature_root
    extract_dataset(small_dataset, TableExtractor(), modality="story", layers="0", progress=False)
    cached_file = next((root / "table_tower0").iterdir())
    stat_before = cached_file.stat()
    report = extract_dataset(small_dataset, TableExtractor(), modality="story", layers="0,1",
                             progress=False)
    assert len(report.written) == 2 and len(report.cached) == 2
    assert cached_file.stat().st_ino == stat_before.st_ino
    assert cached_file.stat().st_mtime_ns == stat_before.st_mtime_ns
    assert all(p.parent == root / "table_tower1" and p.is_file() for p in report.written)
    assert hidden_leftovers(root) == [] and not (root / LOCK_NAME).exists()


def test_staging_folder_of_a_killed_run_is_removed_on_the_next_run(small_dataset):
    root = small_dataset.feature_root
    root.mkdir(parents=True, exist_ok=True)
    finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                              capture_output=True, text=True, check=True)
    dead_pid = int(finished.stdout)
    stale = root / staging_name(dead_pid)
    (stale / "table_tower0").mkdir(parents=True)
    (stale / "table_tower0" / "story01.hf5").write_bytes(b"half a file")
    report = extract_dataset(small_dataset, TableExtractor(), modality="story", layers="0",
                             progress=False)
    assert report.removed_staging == [stale] and not stale.exists()
    assert len(report.written) == 2


def test_staging_folder_of_a_live_process_is_kept_silently(small_dataset):
    # a live process' staging folder is another extraction at work, not a leftover
    root = small_dataset.feature_root
    root.mkdir(parents=True, exist_ok=True)
    live = root / staging_name(os.getppid())
    live.mkdir()
    with warnings.catch_warnings():
        warnings.simplefilter("error", BrainencInputWarning)
        report = extract_dataset(small_dataset, TableExtractor(), modality="story", layers="0",
                                 progress=False)
    assert live.is_dir() and report.removed_staging == []


# --------------------------------------------------------------------------- #
# Lock
# --------------------------------------------------------------------------- #
SLOW_EXTRACTION = textwrap.dedent("""
    import json, sys, time
    import numpy as np
    from brainenc.io.layouts import load_dataset
    from feature_extractors.base import FeatureExtractor
    from feature_extractors.pipeline import extract_dataset

    class SlowExtractor(FeatureExtractor):
        modalities = ("story",)
        name = "slow"

        def layers(self, modality):
            return ["text.0", "text.1"]

        def identity(self):
            return {"model": "slow"}

        def embed_words(self, words, layers):
            time.sleep(1.5)
            return {layer: np.full((len(words), 3), k, np.float32) for k, layer in enumerate(layers)}

    report = extract_dataset(load_dataset(sys.argv[1]), SlowExtractor(), modality="story",
                             progress=False)
    print(json.dumps({"written": len(report.written), "cached": len(report.cached)}))
""")


def test_two_concurrent_extractions_share_the_root_without_replacing_files(small_dataset, tmp_path):
    # the second starts while the first is embedding (its staging folder exists, nothing is
    # committed): neither waits for the other's run, and no file is written twice
    script = tmp_path / "slow_extract.py"
    script.write_text(SLOW_EXTRACTION)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    command = [sys.executable, str(script), str(small_dataset.root)]
    root = small_dataset.feature_root
    first = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    staging = root / staging_name(first.pid)
    deadline = time.monotonic() + 60
    while not staging.exists() and first.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert staging.exists(), "the first extraction never staged a file"
    second = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    out_first, err_first = first.communicate(timeout=120)
    out_second, err_second = second.communicate(timeout=120)
    assert first.returncode == 0, err_first
    assert second.returncode == 0, err_second
    reports = [json.loads(out_first), json.loads(out_second)]
    assert all(r["written"] + r["cached"] == 4 for r in reports)
    assert reports[0]["written"] == 4          # the first commits everything it computed
    assert reports[1]["written"] == 0          # the second keeps the first's files
    assert hidden_leftovers(root) == [] and not (root / LOCK_NAME).exists()
    for k in (0, 1):
        files = sorted((root / f"slow_tower{k}").iterdir())
        assert [p.name for p in files] == ["story01.hf5", "story02.hf5"]
        assert all(np.all(read_stimulus_features(p).data == k) for p in files)


def test_lock_timeout_is_a_clear_error(small_dataset):
    import fcntl

    root = small_dataset.feature_root
    root.mkdir(parents=True, exist_ok=True)
    with open(root / LOCK_NAME, "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        held.write("12345\n")
        held.flush()
        messages = []
        from feature_extractors import transaction

        with pytest.raises(BrainencInputError, match=r"another extraction \(pid 12345\).*0.5 s"):
            with transaction.extraction_transaction(root, lock_timeout_s=0.5, announce=messages.append):
                pass
    assert len(messages) == 1 and "pid 12345" in messages[0]


# --------------------------------------------------------------------------- #
# Cache keys
# --------------------------------------------------------------------------- #
def test_story_settings_keep_movie_features_and_movie_settings_keep_story_features(small_dataset):
    def run(**settings):
        return extract_dataset(small_dataset, SettingsExtractor(**settings), layers="1",
                               progress=False)

    def kinds(paths):
        return sorted(p.stem[:5] for p in paths)

    first = run()
    assert kinds(first.written) == ["movie", "movie", "story", "story"]
    story_change = run(context_words=5)
    assert kinds(story_change.written) == ["story", "story"]
    assert kinds(story_change.cached) == ["movie", "movie"]
    movie_change = run(context_words=5, frame_pooling="mean")
    assert kinds(movie_change.written) == ["movie", "movie"]
    assert kinds(movie_change.cached) == ["story", "story"]
    with h5py.File(movie_change.written[0], "r") as f:
        identity = json.loads(f.attrs["extractor"])
        assert identity == {"model": "table", "frame_pooling": "mean", "revision": "v2",
                            "commit": "abc123"}
        assert f.attrs["model_revision"] == "v2" and f.attrs["model_commit"] == "abc123"


@pytest.fixture
def weight_hash_cache(tmp_path, monkeypatch):
    import feature_extractors.weights as weights

    monkeypatch.setenv("BRAINENC_CACHE_DIR", str(tmp_path / "cache"))
    hashed = []
    real = weights.file_sha256
    monkeypatch.setattr(weights, "file_sha256", lambda path, *a: hashed.append(path.name) or real(path, *a))
    return hashed


def test_resaved_weights_with_the_same_config_are_recomputed(small_dataset, tmp_path,
                                                            weight_hash_cache):
    from feature_extractors.loading import load_extractor

    model = save_tiny_bridgetower(tmp_path / "BridgeTower-Tiny", SENTENCES, seed=0)
    config_before = (model / "config.json").read_bytes()

    def run():
        extractor = load_extractor(str(model), device="cpu")
        return extractor, extract_dataset(small_dataset, extractor, modality="story", layers="-1",
                                          progress=False)

    _, first = run()
    assert len(first.written) == 2 and weight_hash_cache == ["model.safetensors"]
    old = {p: read_stimulus_features(p).data for p in first.written}
    _, unchanged = run()
    assert unchanged.written == [] and len(unchanged.cached) == 2
    assert weight_hash_cache == ["model.safetensors"]  # the sidecar spared a second hash

    save_tiny_bridgetower(model, SENTENCES, seed=1)
    assert (model / "config.json").read_bytes() == config_before
    extractor, resaved = run()
    assert sorted(resaved.written) == sorted(old)
    assert weight_hash_cache == ["model.safetensors", "model.safetensors"]
    for path, before in old.items():
        after = read_stimulus_features(path).data
        assert after.shape == before.shape and np.abs(after - before).max() > 1e-3
    identity = extractor.identity()
    assert identity["commit"] is None and len(identity["weights_hash"]) == 64


def test_a_revision_for_a_local_folder_is_an_error(tmp_path):
    from feature_extractors.loading import load_extractor

    model = save_tiny_bridgetower(tmp_path / "BridgeTower-Tiny", SENTENCES)
    with pytest.raises(BrainencInputError, match="revision 'v1'.*local model folder"):
        load_extractor(str(model), revision="v1", device="cpu")


def test_modality_identity_of_bridgetower(tmp_path):
    from feature_extractors.loading import load_extractor

    model = save_tiny_bridgetower(tmp_path / "BridgeTower-Tiny", SENTENCES)
    short, long = (load_extractor(str(model), device="cpu", context_words=n) for n in (3, 9))
    assert short.modality_identity("movie") == long.modality_identity("movie")
    assert short.modality_identity("story") != long.modality_identity("story")
    assert "processor_hash" not in short.modality_identity("story")
    assert "tokenizer_hash" not in short.modality_identity("movie")
    neutral = load_extractor(str(model), device="cpu", input_mode="neutral")
    # the grey image and the empty text make each modality depend on the other's input
    assert "processor_hash" in neutral.modality_identity("story")
    assert "tokenizer_hash" in neutral.modality_identity("movie")
    assert "context_words" not in neutral.modality_identity("movie")


HUB_EXTRACTION = textwrap.dedent("""
    import json, sys
    import h5py
    from brainenc.io.layouts import load_dataset
    from feature_extractors.loading import load_extractor
    from feature_extractors.pipeline import extract_dataset

    extractor = load_extractor("brainenc-test/bridgetower-tiny", revision=sys.argv[2], device="cpu")
    report = extract_dataset(load_dataset(sys.argv[1]), extractor, modality="story", layers="-1",
                             out=sys.argv[3], progress=False)
    with h5py.File(report.written[0], "r") as f:
        attrs = {key: f.attrs[key] for key in ("model_revision", "model_commit")}
    identity = extractor.identity()
    print(json.dumps({"revision": identity["revision"], "commit": identity["commit"],
                      "weights_hash": identity["weights_hash"], **attrs}))
""")


def test_hub_revision_and_commit_reach_the_identity_and_the_files(small_dataset, tmp_path):
    commit = "0123456789abcdef0123456789abcdef01234567"
    cache = tmp_path / "hub"
    repo = cache / "models--brainenc-test--bridgetower-tiny"
    save_tiny_bridgetower(repo / "snapshots" / commit, SENTENCES)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    script = tmp_path / "hub_extract.py"
    script.write_text(HUB_EXTRACTION)
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_CACHE": str(cache), "HF_HUB_OFFLINE": "1",
           "BRAINENC_CACHE_DIR": str(tmp_path / "cache")}
    done = subprocess.run([sys.executable, str(script), str(small_dataset.root), "main",
                           str(tmp_path / "features")], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result == {"revision": "main", "commit": commit, "weights_hash": commit,
                      "model_revision": "main", "model_commit": commit}
    shutil.rmtree(tmp_path / "features")


def test_a_feature_root_created_by_a_failed_run_is_removed(small_dataset, tmp_path):
    out = tmp_path / "new" / "features"
    with pytest.raises(RuntimeError, match="interrupted"):
        extract_dataset(small_dataset, TableExtractor(fail_after=1), modality="story", out=out,
                        progress=False)
    assert not out.exists() and not out.parent.exists()
    report = extract_dataset(small_dataset, TableExtractor(), modality="story", layers="0", out=out,
                             progress=False)
    assert sorted(p.name for p in out.iterdir()) == ["table_tower0"] and len(report.written) == 2

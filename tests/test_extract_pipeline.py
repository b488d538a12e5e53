"""Extraction pipeline: stimuli → feature spaces, cache, resume, naming, bad input."""
from __future__ import annotations

import zlib

import numpy as np
import pytest

from brainenc.errors import BrainencInputError
from brainenc.io.features import FeatureSpace, read_stimulus_features
from brainenc.io.layouts import load_dataset
from brainenc.io.textgrid import read_word_events
from brainenc.simulate import simulate_dataset
from feature_extractors.base import FeatureExtractor, layer_label, select_layers
from feature_extractors.pipeline import extract_dataset, space_name


def word_vector(word: str, layer: int) -> np.ndarray:
    rng = np.random.default_rng(zlib.crc32(word.encode()) + layer)
    return rng.standard_normal(4).astype(np.float32)


class TableExtractor(FeatureExtractor):
    """Words → seeded random vectors (layer k adds k); frames → mean colour × (k + 1)."""

    modalities = ("story", "movie")

    def __init__(self, fail_after: int | None = None, version: int = 0):
        self.calls = 0
        self.fail_after = fail_after
        self.version = version

    @property
    def name(self) -> str:
        return "table"

    def layers(self, modality):
        return [f"{'text' if modality == 'story' else 'vision'}.{k}" for k in range(3)]

    def identity(self):
        return {"model": "table", "version": self.version}

    def _count(self):
        self.calls += 1
        if self.fail_after is not None and self.calls > self.fail_after:
            raise RuntimeError("interrupted")

    def embed_words(self, words, layers):
        self._count()
        return {layer: np.stack([word_vector(w, int(layer[-1])) for w in words]) for layer in layers}

    def embed_frames(self, frames, layers):
        self._count()
        colour = np.stack([f.reshape(-1, 3).mean(axis=0) for f in frames]).astype(np.float32)
        return {layer: colour * (int(layer[-1]) + 1) for layer in layers}


@pytest.fixture
def small_dataset(tmp_path):
    info = simulate_dataset(tmp_path / "ds", layout="huth", n_stories=2, n_movies=2,
                            n_trs_per_run=30, seed=1)
    return load_dataset(info.root)


def test_layer_labels_pair_modalities():
    assert layer_label("text.8") == layer_label("vision.8") == "tower8"
    assert layer_label("text.projection") == layer_label("vision.projection") == "projection"
    assert layer_label("cross.text.3") == layer_label("cross.vision.3") == "cross3"
    assert layer_label("layer.2") == "layer2"
    assert layer_label("embedding") == "embedding"
    layers = [f"text.{k}" for k in range(4)] + ["cross.text.1", "cross.text.2"]
    assert select_layers(layers, "1,-1") == ["text.1", "cross.text.2"]
    assert select_layers(layers, "cross.*") == ["cross.text.1", "cross.text.2"]
    with pytest.raises(BrainencInputError, match="out of range"):
        select_layers(layers, "6")
    with pytest.raises(BrainencInputError, match="unknown layer"):
        select_layers(layers, "vision.1")


def test_story_features_follow_the_transcript(small_dataset):
    report = extract_dataset(small_dataset, TableExtractor(), modality="story", layers="0,2",
                             progress=False)
    assert report.spaces == ["table_tower0", "table_tower2"]
    assert len(report.written) == 4
    run = small_dataset.runs_for("sim01", "story")[0]
    words = read_word_events(run.stimulus_path)
    features = FeatureSpace(small_dataset.feature_root / "table_tower2").load(run.stimulus)
    np.testing.assert_array_equal(features.times, words.times)
    expected = np.stack([word_vector(w, 2) for w in words.labels])
    np.testing.assert_array_equal(features.data, expected)
    assert features.attrs["layer"] == "text.2" and features.attrs["modality"] == "story"


def test_cache_is_reused_invalidated_by_content_and_forced(small_dataset):
    first = extract_dataset(small_dataset, TableExtractor(), modality="story", layers="1",
                            progress=False)
    assert len(first.written) == 2
    again = TableExtractor()
    second = extract_dataset(small_dataset, again, modality="story", layers="1", progress=False)
    assert second.written == [] and len(second.cached) == 2 and again.calls == 0
    # a changed transcript is recomputed, the other story is not
    run = small_dataset.runs_for("sim01", "story")[0]
    text = run.stimulus_path.read_text(encoding="utf-8")
    run.stimulus_path.write_text(text + "\n", encoding="utf-8")
    third = extract_dataset(small_dataset, TableExtractor(), modality="story", layers="1",
                            progress=False)
    assert [p.stem for p in third.written] == [run.stimulus]
    # new extractor settings invalidate everything; force recomputes all
    assert len(extract_dataset(small_dataset, TableExtractor(version=1), modality="story",
                               layers="1", progress=False).written) == 2
    assert len(extract_dataset(small_dataset, TableExtractor(version=1), modality="story",
                               layers="1", force=True, progress=False).written) == 2


def test_interrupted_run_writes_nothing_and_the_next_run_computes_all(small_dataset):
    before = sorted(p.name for p in small_dataset.feature_root.iterdir())
    failing = TableExtractor(fail_after=1)
    with pytest.raises(RuntimeError, match="interrupted"):
        extract_dataset(small_dataset, failing, modality="story", layers="all", progress=False)
    assert failing.calls == 2  # the first story was computed, then discarded
    assert sorted(p.name for p in small_dataset.feature_root.iterdir()) == before
    again = TableExtractor()
    report = extract_dataset(small_dataset, again, modality="story", layers="all", progress=False)
    assert again.calls == 2 and len(report.written) == 6 and report.cached == []
    for path in report.written:
        read_stimulus_features(path)


def test_frame_table_without_images_is_a_clear_error(small_dataset):
    with pytest.raises(BrainencInputError, match="file"):
        extract_dataset(small_dataset, TableExtractor(), modality="movie", progress=False)
    assert not (small_dataset.feature_root / "table_tower0").exists()


def test_wrong_extractor_output_writes_nothing(small_dataset):
    class Broken(TableExtractor):
        def embed_words(self, words, layers):
            return {layer: np.zeros((len(words) - 1, 4), np.float32) for layer in layers}

    with pytest.raises(BrainencInputError, match="expected"):
        extract_dataset(small_dataset, Broken(), modality="story", progress=False)
    assert not (small_dataset.feature_root / "table_tower0").exists()


def test_space_name_template():
    extractor = TableExtractor()
    assert space_name("{model}_{label}", extractor, "vision.2") == "table_tower2"
    assert space_name("unimodal_{label}", extractor, "text.2") == "unimodal_tower2"
    assert space_name("{model}-{layer}", extractor, "text.2") == "table-text.2"


def test_movie_features_from_video_at_a_chosen_rate(tmp_path):
    from feature_extractors.video import decode_video

    info = simulate_dataset(tmp_path / "ds", layout="huth", n_stories=2, n_movies=2,
                            n_trs_per_run=30, seed=2, movie_format="video", video_fps=5.0)
    data = load_dataset(info.root)
    report = extract_dataset(data, TableExtractor(), modality="movie", layers="1", fps=2.0,
                             progress=False)
    assert report.spaces == ["table_tower1"] and len(report.written) == 2
    run = data.runs_for("sim01", "movie")[0]
    frames, times = decode_video(run.stimulus_path, fps=2.0)
    features = FeatureSpace(data.feature_root / "table_tower1").load(run.stimulus)
    np.testing.assert_allclose(features.times, np.arange(len(frames)) / 2.0)
    np.testing.assert_array_equal(features.times, times)
    expected = 2 * np.stack([f.reshape(-1, 3).mean(axis=0) for f in frames])
    np.testing.assert_allclose(features.data, expected, rtol=1e-6)


def _no_features_written(dataset) -> bool:
    root = dataset.feature_root
    return not any(p.name.startswith("table") for p in root.iterdir())


def test_empty_transcript_is_a_clear_error(small_dataset):
    run = small_dataset.runs_for("sim01", "story")[1]
    text = run.stimulus_path.read_text(encoding="utf-8")
    # keep the tiers, blank every word label
    import re
    blank = re.sub(r'text = "[^"]*"', 'text = ""', text)
    run.stimulus_path.write_text(blank, encoding="utf-8")
    with pytest.raises(BrainencInputError) as error:
        extract_dataset(small_dataset, TableExtractor(), modality="story", progress=False)
    assert run.stimulus_path.name in str(error.value)
    # found before any computation: nothing is written, not even the first story
    assert _no_features_written(small_dataset)


@pytest.mark.parametrize("damage", ["missing", "unreadable"])
def test_missing_or_unreadable_video_is_a_clear_error(tmp_path, damage):
    info = simulate_dataset(tmp_path / "ds", layout="huth", n_stories=2, n_movies=2,
                            n_trs_per_run=30, seed=2, movie_format="video", video_fps=5.0)
    data = load_dataset(info.root)
    video = data.runs_for("sim01", "movie")[0].stimulus_path
    if damage == "missing":
        video.unlink()
    else:
        video.write_text("not a video", encoding="utf-8")
    with pytest.raises(BrainencInputError) as error:
        extract_dataset(data, TableExtractor(), modality="movie", progress=False)
    assert video.name in str(error.value)
    assert _no_features_written(data)


def test_layer_index_out_of_range_writes_nothing(small_dataset):
    with pytest.raises(BrainencInputError, match="out of range"):
        extract_dataset(small_dataset, TableExtractor(), layers="7", progress=False)
    assert _no_features_written(small_dataset)

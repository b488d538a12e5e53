"""Aligned pairs: feature files record whether their story and movie parts share a space.

Extraction writes ``aligned_pair`` and ``pair`` for every layer (tiny
BridgeTower in both input modes, tiny CLIP), transfer reads them, checks that
the files agree, records them and warns about baselines and unknown spaces,
and the report and summaries label an unaligned space as a baseline.
"""
from __future__ import annotations

import json
import warnings

import h5py
import numpy as np
import pytest

from brainenc.cli import _print_summaries, main
from brainenc.errors import BrainencInputError, BrainencInputWarning
from brainenc.io.features import FeaturePair, feature_pair, read_feature_pair
from brainenc.io.layouts import load_dataset
from brainenc.plotting import report
from brainenc.results import DIRECTIONS, TransferResult
from brainenc.simulate import VOCABULARY, simulate_dataset
from brainenc.stats import summarize_direction
from brainenc.transfer import run_transfer
from feature_extractors.base import FeatureExtractor, LayerPair, layer_label
from tests.conftest import make_manifest_dataset

SENTENCES = [" ".join(VOCABULARY[k:k + 12]) for k in range(0, len(VOCABULARY), 12)]
TOWER2 = FeaturePair(False, "unaligned: separate encoders (text tower layer 2, vision tower layer 2)")


# -- extraction ------------------------------------------------------------- #
@pytest.fixture(scope="module")
def small_dataset(tmp_path_factory):
    info = simulate_dataset(tmp_path_factory.mktemp("ds") / "ds", layout="huth", n_stories=2,
                            n_movies=2, n_trs_per_run=30, seed=1, movie_format="video",
                            video_fps=2.0)
    return load_dataset(info.root)


@pytest.fixture(scope="module")
def bridgetower_dir(tmp_path_factory):
    pytest.importorskip("transformers")
    from tests.tiny_models import save_tiny_bridgetower

    return save_tiny_bridgetower(tmp_path_factory.mktemp("models") / "BridgeTower-Tiny", SENTENCES)


@pytest.fixture(scope="module")
def clip_dir(tmp_path_factory):
    pytest.importorskip("transformers")
    from tests.tiny_models import save_tiny_clip

    return save_tiny_clip(tmp_path_factory.mktemp("models") / "clip-tiny", SENTENCES)


def _extract(dataset, extractor, layers, out):
    from feature_extractors.pipeline import extract_dataset

    return extract_dataset(dataset, extractor, layers=layers, out=out, progress=False)


def _space_pairs(folder) -> set[FeaturePair]:
    """The distinct pairings of a space's files (4 stimuli: 2 stories, 2 movies)."""
    paths = sorted(folder.glob("*.hf5"))
    assert len(paths) == 4
    return {read_feature_pair(path) for path in paths}


def test_tower_layers_are_labelled_towers():
    assert layer_label("text.8") == layer_label("vision.8") == "tower8"
    assert layer_label("cross.text.3") == layer_label("cross.vision.3") == "cross3"
    assert layer_label("text.projection") == "projection"
    assert layer_label("layer.8") == "layer8"


def test_bridgetower_towers_mode_writes_unaligned_tower_spaces(small_dataset, bridgetower_dir, tmp_path):
    from feature_extractors.bridgetower import BridgeTowerExtractor

    extractor = BridgeTowerExtractor(bridgetower_dir, device="cpu")
    report_ = _extract(small_dataset, extractor, "-1", tmp_path / "features")
    assert report_.spaces == ["bridgetower-tiny_tower2"]
    assert _space_pairs(tmp_path / "features" / "bridgetower-tiny_tower2") == {TOWER2}


def test_bridgetower_neutral_mode_marks_cross_modal_layers_aligned(small_dataset, bridgetower_dir,
                                                                   tmp_path):
    from feature_extractors.bridgetower import BridgeTowerExtractor

    extractor = BridgeTowerExtractor(bridgetower_dir, input_mode="neutral", device="cpu")
    assert extractor.pairing("cross1") == LayerPair(True, "bridgetower cross-modal layer 1")
    report_ = _extract(small_dataset, extractor, "2,-1", tmp_path / "features")
    assert report_.spaces == ["bridgetower-tiny_tower2", "bridgetower-tiny_cross2"]
    root = tmp_path / "features"
    assert _space_pairs(root / "bridgetower-tiny_cross2") == {
        FeaturePair(True, "bridgetower cross-modal layer 2")}
    assert _space_pairs(root / "bridgetower-tiny_tower2") == {TOWER2}


def test_clip_projection_is_aligned_and_towers_are_not(small_dataset, clip_dir, tmp_path):
    from feature_extractors.clip import CLIPExtractor

    extractor = CLIPExtractor(clip_dir, projections=True, device="cpu")
    report_ = _extract(small_dataset, extractor, "2,-1", tmp_path / "features")
    assert report_.spaces == ["clip-tiny_tower2", "clip-tiny_projection"]
    root = tmp_path / "features"
    assert _space_pairs(root / "clip-tiny_projection") == {FeaturePair(True, "clip projection")}
    assert _space_pairs(root / "clip-tiny_tower2") == {TOWER2}


def test_cached_file_without_the_attribute_is_rewritten(small_dataset, bridgetower_dir, tmp_path):
    from feature_extractors.bridgetower import BridgeTowerExtractor

    extractor = BridgeTowerExtractor(bridgetower_dir, device="cpu")
    _extract(small_dataset, extractor, "-1", tmp_path / "features")
    old = sorted((tmp_path / "features" / "bridgetower-tiny_tower2").glob("*.hf5"))[0]
    with h5py.File(old, "r+") as f:
        del f.attrs["aligned_pair"], f.attrs["pair"]
    again = _extract(small_dataset, extractor, "-1", tmp_path / "features")
    assert again.written == [old] and len(again.cached) == 3
    assert read_feature_pair(old) == TOWER2


def test_default_pairing_of_one_modality_extractors():
    class Words(FeatureExtractor):
        modalities = ("story",)
        name = "words"

        def layers(self, modality):
            return ["layer.0"]

        def identity(self):
            return {}

    assert Words().pairing("layer0") == LayerPair(False, "unaligned: language model only")


# -- the feature-store attributes ------------------------------------------- #
def test_feature_pair_reads_booleans_numbers_and_text():
    assert feature_pair({}) == FeaturePair(None, None)
    assert feature_pair({"aligned_pair": np.bool_(True), "pair": b"clip projection"}) == FeaturePair(
        True, "clip projection")
    assert feature_pair({"aligned_pair": 0}).aligned is False
    assert feature_pair({"aligned_pair": "True"}).aligned is True
    with pytest.raises(BrainencInputError, match="aligned_pair"):
        feature_pair({"aligned_pair": "maybe"})


def test_simulated_spaces_carry_their_pairing(small_dataset):
    root = small_dataset.feature_root
    assert _space_pairs(root / "multimodal") == {FeaturePair(True, "simulated: shared concept dimensions")}
    assert _space_pairs(root / "unimodal") == {
        FeaturePair(False, "unaligned: simulated separate feature bases (baseline)")}


# -- transfer, summaries and report ----------------------------------------- #
@pytest.fixture
def manifest(tmp_path):
    return make_manifest_dataset(tmp_path / "ds")


def _mark(root, aligned, pair, names=None) -> None:
    for path in sorted((root / "features" / "feats").glob("*.hf5")):
        if names is None or path.stem in names:
            with h5py.File(path, "r+") as f:
                f.attrs["aligned_pair"] = aligned
                f.attrs["pair"] = pair


def _transfer(root):
    return run_transfer(load_dataset(root), "s1", "feats", significance=False, progress=False)


def _input_warnings(record) -> list[str]:
    return [str(w.message) for w in record if issubclass(w.category, BrainencInputWarning)]


def test_unknown_pair_warns_how_to_mark_the_files(manifest):
    with pytest.warns(BrainencInputWarning, match="'feats'.*aligned_pair.*write_stimulus_features"):
        result = _transfer(manifest)
    assert result.settings["aligned_pair"] is None and result.settings["pair"] is None
    assert result.feature_space_label == "feats (alignment unknown)"


def test_unaligned_pair_warns_it_is_a_baseline(manifest):
    _mark(manifest, False, "unaligned: separate encoders")
    with pytest.warns(BrainencInputWarning, match="'feats'.*a baseline, not a transfer space"):
        result = _transfer(manifest)
    assert result.settings["aligned_pair"] is False
    assert result.settings["pair"] == "unaligned: separate encoders"
    assert result.feature_space_label == "feats (unaligned baseline)"


def test_aligned_pair_does_not_warn(manifest):
    _mark(manifest, True, "clip projection")
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        result = _transfer(manifest)
    assert _input_warnings(record) == []
    assert result.settings["aligned_pair"] is True and result.settings["pair"] == "clip projection"
    assert result.feature_space_label == "feats"


def test_unaligned_spaces_may_pair_two_sources(manifest):
    _mark(manifest, False, "unaligned: language model only", names={"story0", "story1", "story2"})
    _mark(manifest, False, "unaligned: vision model only", names={"movie0", "movie1", "movie2"})
    with pytest.warns(BrainencInputWarning, match="baseline"):
        result = _transfer(manifest)
    assert result.settings["pair"] == ("story: unaligned: language model only; "
                                       "movie: unaligned: vision model only")


@pytest.mark.parametrize("marks", [
    [(True, "clip projection", None), (False, "unaligned", {"movie1"})],
    [(True, "clip projection", None), (True, "bridgetower cross-modal layer 2", {"movie0", "movie1", "movie2"})],
    [(True, "clip projection", {"story0", "story1", "story2"})],
])
def test_disagreeing_files_are_an_error_naming_two_files(manifest, marks):
    for aligned, pair, names in marks:
        _mark(manifest, aligned, pair, names)
    with pytest.raises(BrainencInputError) as caught:
        _transfer(manifest)
    message = str(caught.value)
    assert message.count(".hf5") >= 2 and "must agree" in message


def _result(aligned: bool | None, feature_space: str) -> TransferResult:
    rng = np.random.default_rng(0)
    r = {d: rng.normal(0.1, 0.05, 40) for d in DIRECTIONS}
    significant = {d: r[d] > 0.1 for d in DIRECTIONS}
    return TransferResult(
        subject="sub01", feature_space=feature_space, r=r, r2=dict(r),
        pvalues={d: np.full(40, 0.5) for d in DIRECTIONS}, significant=significant,
        alphas={"story": np.ones(40), "movie": np.ones(40)},
        summaries=[summarize_direction(d, r[d], significant[d], 0.05) for d in DIRECTIONS],
        settings={"aligned_pair": aligned, "pair": "x"})


def test_report_and_printed_summary_label_the_baseline(tmp_path, capsys):
    results = [_result(True, "multimodal"), _result(False, "unimodal")]
    text = report.write_report(results, tmp_path / "out", dpi=30).read_text(encoding="utf-8")
    assert "unimodal (unaligned baseline)" in text
    assert "multimodal (unaligned baseline)" not in text
    _print_summaries(results)
    out = capsys.readouterr().out
    assert "sub01 / unimodal (unaligned baseline)" in out and "sub01 / multimodal (40 voxels)" in out


def test_cli_transfer_labels_an_unaligned_space(manifest, tmp_path, capsys):
    _mark(manifest, False, "unaligned: separate encoders")
    out = tmp_path / "results"
    assert main(["transfer", "--dataset", str(manifest), "--subject", "s1", "--features", "feats",
                 "--out", str(out), "--no-significance", "--quiet"]) == 0
    captured = capsys.readouterr()
    assert "a baseline, not a transfer space" in captured.err
    assert "feats (unaligned baseline)" in captured.out
    assert "feats (unaligned baseline)" in (out / "report.html").read_text(encoding="utf-8")
    summary = json.loads((out / "summary.json").read_text())["results"][0]
    assert summary["pair_note"] == "unaligned baseline" and summary["settings"]["aligned_pair"] is False

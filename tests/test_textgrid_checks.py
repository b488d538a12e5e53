"""Transcripts that would give silently wrong features: truncated TextGrids, transcripts that
stop long before the scan, ambiguous word tiers, and words no tokenizer can encode."""
from __future__ import annotations

import re
import warnings

import numpy as np
import pytest
from praatio.utilities import textgrid_io

from brainenc.cli import main
from brainenc.errors import BrainencInputError, BrainencInputWarning
from brainenc.io.layouts import load_dataset
from brainenc.io.textgrid import read_word_events, read_word_transcript
from brainenc.simulate import VOCABULARY, simulate_dataset
from feature_extractors.pipeline import ScanSpan, check_transcript_coverage, extract_dataset
from feature_extractors.text import word_windows
from tests.test_extract_pipeline import TableExtractor
from tests.test_textgrid import PHONE_INTERVALS, WORD_INTERVALS, long_textgrid, short_textgrid


@pytest.fixture
def dataset(tmp_path):
    info = simulate_dataset(tmp_path / "ds", layout="huth", n_stories=2, n_movies=1,
                            n_trs_per_run=30, seed=1)
    return load_dataset(info.root)


def story_paths(dataset):
    return [run.stimulus_path for run in dataset.runs_for("sim01", "story")]


def word_intervals(path) -> tuple[float, list[tuple[float, float, str]]]:
    """The declared end and the (start, end, label) intervals of a simulated TextGrid's word tier."""
    parsed = textgrid_io.parseTextgridStr(path.read_text(encoding="utf-8"), includeEmptyIntervals=True)
    tier = next(t for t in parsed["tiers"] if t["name"] == "word")
    return tier["xmax"], [(float(a), float(b), label) for a, b, label in tier["entries"]]


def rewrite_words(path, intervals, xmax=None):
    """Write ``path`` again as a one-tier long-format TextGrid with these word intervals."""
    xmax = intervals[-1][1] if xmax is None else xmax
    path.write_text(long_textgrid([("IntervalTier", "word", intervals)], xmax=xmax), encoding="utf-8")


def embedding_file(tmp_path):
    """A word-embedding table over the simulator's vocabulary: the cheapest real model."""
    rng = np.random.default_rng(0)
    path = tmp_path / "vectors.txt"
    path.write_text("".join(f"{word} {' '.join(f'{v:.3f}' for v in rng.standard_normal(4))}\n"
                            for word in VOCABULARY), encoding="utf-8")
    return path


# --------------------------------------------------------------------------- #
# Truncated files
# --------------------------------------------------------------------------- #
def test_truncated_short_format_is_an_error_naming_both_times(tmp_path):
    tiers = [("IntervalTier", "phone", PHONE_INTERVALS), ("IntervalTier", "word", WORD_INTERVALS)]
    text = short_textgrid(tiers)
    path = tmp_path / "cut.TextGrid"
    path.write_text(text[: len(text) * 5 // 6], encoding="utf-8")
    # praatio alone parses the remains without complaint
    parsed = textgrid_io.parseTextgridStr(path.read_text(encoding="utf-8"), includeEmptyIntervals=True)
    assert 0 < len(parsed["tiers"][1]["entries"]) < len(WORD_INTERVALS)
    with pytest.raises(BrainencInputError) as error:
        read_word_events(path)
    message = str(error.value)
    assert "cut.TextGrid" in message and "truncated" in message
    assert re.search(r"xmax = 5\.000 s but its last interval \(interval \d+\) ends at \d\.\d{3} s", message)


def test_long_format_cut_between_intervals_or_inside_one(dataset, tmp_path):
    path = story_paths(dataset)[0]
    data = path.read_bytes()
    cut = data[: len(data) * 2 // 3]
    at_boundary = cut[: cut.rfind(b'" \n') + 3]  # just after a complete interval's text line
    inside = cut[: cut.rfind(b"xmax = ") + 9]
    for name, content, expected in [("boundary", at_boundary, "looks truncated"),
                                    ("inside", inside, "damaged or truncated")]:
        damaged = tmp_path / f"{name}.TextGrid"
        damaged.write_bytes(content)
        with pytest.raises(BrainencInputError, match=f"{name}.TextGrid.*{expected}"):
            read_word_events(damaged)


@pytest.mark.parametrize("where", ["boundary", "anywhere"])
def test_extract_of_a_story_cut_to_two_thirds_exits_2_naming_the_textgrid(dataset, tmp_path, capsys,
                                                                          where):
    path = story_paths(dataset)[1]
    data = path.read_bytes()
    cut = data[: len(data) * 2 // 3]
    path.write_bytes(cut[: cut.rfind(b'" \n') + 3] if where == "boundary" else cut)
    before = sorted(p.name for p in dataset.feature_root.iterdir())
    code = main(["extract", "--dataset", str(dataset.root), "--model", str(embedding_file(tmp_path)),
                 "--quiet"])
    assert code == 2
    err = capsys.readouterr().err
    assert f"{path}" in err and "truncated" in err
    assert sorted(p.name for p in dataset.feature_root.iterdir()) == before


# --------------------------------------------------------------------------- #
# Coverage of the scan
# --------------------------------------------------------------------------- #
def test_transcript_that_stops_long_before_the_scan_is_an_error(dataset):
    path = story_paths(dataset)[1]
    _, intervals = word_intervals(path)
    kept = [interval for interval in intervals if interval[1] <= 20.0]
    rewrite_words(path, kept)  # a consistent file: xmax is the last interval's end
    last_word = max(end for _, end, label in kept if label)
    with pytest.raises(BrainencInputError) as error:
        extract_dataset(dataset, TableExtractor(), modality="story", progress=False)
    message = str(error.value)
    assert path.name in message
    assert f"last word ends at {last_word:.1f} s" in message
    assert "run 'story02' of subject sim01 is analysed up to 70.0 s" in message
    assert not (dataset.feature_root / "table_tower0").exists()
    # switched off, the same transcript is accepted
    report = extract_dataset(dataset, TableExtractor(), modality="story", layers="0",
                             min_transcript_coverage=0, progress=False)
    assert len(report.written) == 2


def test_coverage_rule_allows_silence_after_short_stories():
    scan = ScanSpan("S1", "run-1", 90.0)
    check_transcript_coverage(None, 61.0, scan)           # 68 %, but only 29 s of tail
    check_transcript_coverage(None, 72.0, scan, 0.8)      # 80 %
    with pytest.raises(BrainencInputError, match=r"ends at 59.0 s.*up to 90.0 s.*66%"):
        check_transcript_coverage(None, 59.0, scan)       # 66 % and 31 s of tail
    long_scan = ScanSpan("S1", "run-1", 575.0)
    with pytest.raises(BrainencInputError, match=r"ends at 76.0 s.*13%"):
        check_transcript_coverage(None, 76.0, long_scan)
    check_transcript_coverage(None, 76.0, long_scan, min_coverage=0)
    check_transcript_coverage(None, 1.0, None)


# --------------------------------------------------------------------------- #
# Ambiguous tiers
# --------------------------------------------------------------------------- #
def test_two_candidate_word_tiers_are_an_error_listing_them(tmp_path):
    other = [(0.0, 2.5, "wrong"), (2.5, 5.0, "tier")]
    path = tmp_path / "two.TextGrid"
    path.write_text(long_textgrid([("IntervalTier", "phone", PHONE_INTERVALS),
                                   ("IntervalTier", "words", other),
                                   ("IntervalTier", "word", WORD_INTERVALS)]), encoding="utf-8")
    with pytest.raises(BrainencInputError) as error:
        read_word_events(path)
    message = str(error.value)
    assert "two.TextGrid" in message and "2 tiers could be the word tier" in message
    assert "'words' (index 1), 'word' (index 2)" in message and "explicitly" in message
    assert list(read_word_events(path, tier=2).labels) == ["so", "i", "went", "café"]
    assert list(read_word_events(path, tier="words").labels) == ["wrong", "tier"]


def test_two_tiers_with_the_same_name_need_an_index(tmp_path):
    other = [(0.0, 5.0, "other")]
    path = tmp_path / "same.TextGrid"
    path.write_text(short_textgrid([("IntervalTier", "word", other),
                                    ("IntervalTier", "word", WORD_INTERVALS)]), encoding="utf-8")
    with pytest.raises(BrainencInputError, match="same.TextGrid: 2 tiers could be the word tier"):
        read_word_events(path)
    with pytest.raises(BrainencInputError, match="2 tiers are named 'word'.*by its index"):
        read_word_events(path, tier="word")
    assert list(read_word_events(path, tier=1).labels) == ["so", "i", "went", "café"]
    transcript = read_word_transcript(path, tier=1)
    assert (transcript.tier, transcript.start, transcript.end) == ("word", 0.0, 5.0)


# --------------------------------------------------------------------------- #
# Words that print nothing
# --------------------------------------------------------------------------- #
@pytest.mark.parametrize("invisible", ["\u200b", "\x00", "\u200b\ufeff"])
def test_invisible_labels_are_dropped_with_a_warning_naming_them(tmp_path, invisible):
    intervals = list(WORD_INTERVALS)
    intervals[4] = (1.52, 1.9, invisible)  # the empty interval between "I" and "WENT"
    path = tmp_path / "hidden.TextGrid"
    path.write_text(long_textgrid([("IntervalTier", "word", intervals)]), encoding="utf-8")
    with pytest.warns(BrainencInputWarning) as caught:
        events = read_word_events(path)
    assert list(events.labels) == ["so", "i", "went", "café"]
    message = str(caught[0].message)
    assert "hidden.TextGrid" in message and "interval 5 at 1.520-1.900 s" in message
    assert repr(invisible) in message


def test_visible_words_raise_no_warning(tmp_path):
    path = tmp_path / "plain.TextGrid"
    path.write_text(long_textgrid([("IntervalTier", "word", WORD_INTERVALS)]), encoding="utf-8")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert len(read_word_events(path)) == 4


def bert_like_tokenizer():
    """A WordPiece tokenizer whose normaliser strips accents and control characters, as BERT's."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {"[UNK]": 0, "[CLS]": 1, "[SEP]": 2, "[PAD]": 3,
             **{word: 4 + k for k, word in enumerate(VOCABULARY)}}
    tokenizer = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.BertNormalizer(strip_accents=True, lowercase=True)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.post_processor = processors.BertProcessing(("[SEP]", 2), ("[CLS]", 1))
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, unk_token="[UNK]", cls_token="[CLS]",
                                   sep_token="[SEP]", pad_token="[PAD]")


class WindowedExtractor(TableExtractor):
    """TableExtractor that first builds the word windows of a BERT-like tokenizer."""

    def __init__(self):
        super().__init__()
        self.tokenizer = bert_like_tokenizer()

    def embed_words(self, words, layers):
        word_windows(list(words), self.tokenizer, context_words=3)
        return super().embed_words(words, layers)


@pytest.mark.parametrize("invisible", ["\u200b", "\x00"])
def test_zero_width_and_nul_words_no_longer_abort_a_story(dataset, invisible):
    path = story_paths(dataset)[1]
    xmax, intervals = word_intervals(path)
    position = next(k for k, (_, _, label) in enumerate(intervals) if label.strip() and k > 10)
    start, end, _ = intervals[position]
    intervals[position] = (start, end, invisible)
    rewrite_words(path, intervals, xmax)
    # the tokenizer gives nothing for it: kept, it would abort the story
    with pytest.raises(BrainencInputError, match="no token"):
        word_windows(["the", invisible], bert_like_tokenizer())
    with pytest.warns(BrainencInputWarning, match=re.escape(repr(invisible))) as caught:
        report = extract_dataset(dataset, WindowedExtractor(), modality="story", layers="0",
                                 progress=False)
    assert path.name in str(caught[0].message) and f"interval {position + 1} at {start:.3f}" in str(
        caught[0].message)
    assert len(report.written) == 2


def test_an_untokenisable_visible_word_names_the_file_position_and_time(dataset):
    path = story_paths(dataset)[0]
    xmax, intervals = word_intervals(path)
    spoken = [k for k, (_, _, label) in enumerate(intervals) if label.strip()]
    position = spoken[6]
    start, end, _ = intervals[position]
    intervals[position] = (start, end, "\u0301")  # a lone combining accent: stripped by BERT
    rewrite_words(path, intervals, xmax)
    before = sorted(p.name for p in dataset.feature_root.iterdir())
    with pytest.raises(BrainencInputError) as error:
        extract_dataset(dataset, WindowedExtractor(), modality="story", progress=False)
    message = str(error.value)
    word_index = read_word_events(path).labels.index("\u0301")
    assert error.value.path == path
    assert f"word {word_index} (counting from 0) at {(start + end) / 2:.2f} s, '\u0301'" in message
    assert "no token" in message
    assert sorted(p.name for p in dataset.feature_root.iterdir()) == before


def test_intervals_out_of_order_name_the_file(tmp_path):
    intervals = [(0.0, 1.0, "one"), (2.0, 3.0, "three"), (1.0, 2.0, "two"), (3.0, 5.0, "")]
    path = tmp_path / "shuffled.TextGrid"
    path.write_text(short_textgrid([("IntervalTier", "word", intervals)]), encoding="utf-8")
    with pytest.raises(BrainencInputError, match="shuffled.TextGrid: tier 'word'"):
        read_word_events(path)

"""Reading word timings from TextGrids written by hand in both Praat text formats."""
from __future__ import annotations

import numpy as np
import pytest

from brainenc.errors import BrainencInputError
from brainenc.io.textgrid import DEFAULT_FILLERS, read_word_events

# (start, end, label) of a word tier: fillers in several spellings, empty intervals.
WORD_INTERVALS = [
    (0.0, 0.35, "sentence_start"),
    (0.35, 0.8, "So"),
    (0.8, 1.1, "{SP}"),
    (1.1, 1.52, "I"),
    (1.52, 1.9, ""),
    (1.9, 2.45, "WENT"),
    (2.45, 2.6, "sp"),
    (2.6, 3.05, "{LG}"),
    (3.05, 3.7, "Café"),
    (3.7, 4.0, " {BR} "),
    (4.0, 4.4, "sentence_end"),
    (4.4, 5.0, ""),
]
PHONE_INTERVALS = [(0.0, 2.5, "S"), (2.5, 5.0, "OW")]
EXPECTED_WORDS = ["so", "i", "went", "café"]
EXPECTED_BOUNDS = [(0.35, 0.8), (1.1, 1.52), (1.9, 2.45), (3.05, 3.7)]


def long_textgrid(tiers, xmax=5.0) -> str:
    """Praat's long text format. ``tiers``: (class, name, entries)."""
    lines = [
        'File type = "ooTextFile"', 'Object class = "TextGrid"', "",
        "xmin = 0 ", f"xmax = {xmax} ", "tiers? <exists> ", f"size = {len(tiers)} ", "item []: ",
    ]
    for number, (kind, name, entries) in enumerate(tiers, start=1):
        lines += [
            f"    item [{number}]:", f'        class = "{kind}" ', f'        name = "{name}" ',
            "        xmin = 0 ", f"        xmax = {xmax} ",
        ]
        if kind == "IntervalTier":
            lines.append(f"        intervals: size = {len(entries)} ")
            for index, (start, end, label) in enumerate(entries, start=1):
                lines += [f"        intervals [{index}]:", f"            xmin = {start} ",
                          f"            xmax = {end} ", f'            text = "{label}" ']
        else:
            lines.append(f"        points: size = {len(entries)} ")
            for index, (time, label) in enumerate(entries, start=1):
                lines += [f"        points [{index}]:", f"            number = {time} ",
                          f'            mark = "{label}" ']
    return "\n".join(lines) + "\n"


def short_textgrid(tiers, xmax=5.0) -> str:
    """Praat's short text format."""
    lines = ['File type = "ooTextFile"', 'Object class = "TextGrid"', "", "0", str(xmax),
             "<exists>", str(len(tiers))]
    for kind, name, entries in tiers:
        lines += [f'"{kind}"', f'"{name}"', "0", str(xmax), str(len(entries))]
        for entry in entries:
            lines += [str(value) for value in entry[:-1]] + [f'"{entry[-1]}"']
    return "\n".join(lines) + "\n"


def test_long_format_utf16_words_and_midpoints(tmp_path):
    path = tmp_path / "story.TextGrid"
    path.write_text(long_textgrid([("IntervalTier", "phone", PHONE_INTERVALS),
                                   ("IntervalTier", "word", WORD_INTERVALS)]), encoding="utf-16")
    assert path.read_bytes()[:2] in (b"\xff\xfe", b"\xfe\xff")  # really UTF-16 with a BOM

    events = read_word_events(path)

    assert list(events.labels) == EXPECTED_WORDS
    np.testing.assert_allclose(events.onsets, [s for s, _ in EXPECTED_BOUNDS])
    np.testing.assert_allclose(events.offsets, [e for _, e in EXPECTED_BOUNDS])
    np.testing.assert_allclose(events.times, [0.575, 1.31, 2.175, 3.375])


def test_short_format_utf8_matches_long_format(tmp_path):
    tiers = [("IntervalTier", "phone", PHONE_INTERVALS), ("IntervalTier", "Words", WORD_INTERVALS)]
    short = tmp_path / "short.TextGrid"
    short.write_text(short_textgrid(tiers), encoding="utf-8")
    long = tmp_path / "long.TextGrid"
    long.write_text(long_textgrid(tiers), encoding="utf-8")

    from_short = read_word_events(short)  # tier "Words" found in any case
    from_long = read_word_events(long)

    assert list(from_short.labels) == EXPECTED_WORDS
    np.testing.assert_allclose(from_short.times, [(s + e) / 2 for s, e in EXPECTED_BOUNDS])
    assert from_short.labels == from_long.labels
    np.testing.assert_array_equal(from_short.times, from_long.times)


def test_tier_by_index_and_name_case_and_fillers(tmp_path):
    path = tmp_path / "story.TextGrid"
    path.write_text(short_textgrid([("IntervalTier", "phones", PHONE_INTERVALS),
                                    ("IntervalTier", "transcript", WORD_INTERVALS)]),
                    encoding="utf-8")

    by_index = read_word_events(path, tier=1, lowercase=False)
    assert list(by_index.labels) == ["So", "I", "WENT", "Café"]
    by_name = read_word_events(path, tier="transcript")
    assert list(by_name.labels) == EXPECTED_WORDS
    phones = read_word_events(path, tier=0)
    assert list(phones.labels) == ["s", "ow"]
    np.testing.assert_allclose(phones.times, [1.25, 3.75])

    # With no fillers, only empty intervals are dropped (braces are kept in the label).
    everything = read_word_events(path, tier=1, fillers=())
    kept = [label.strip().lower() for _, _, label in WORD_INTERVALS if label.strip()]
    assert list(everything.labels) == kept
    # Custom fillers are compared after stripping braces and case.
    custom = read_word_events(path, tier=1, fillers=DEFAULT_FILLERS + ("{went}",))
    assert list(custom.labels) == ["so", "i", "café"]


def test_missing_file(tmp_path):
    path = tmp_path / "absent.TextGrid"
    with pytest.raises(BrainencInputError, match="absent.TextGrid.*not found"):
        read_word_events(path)


def test_not_a_textgrid(tmp_path):
    path = tmp_path / "notes.TextGrid"
    path.write_text("this is just some text\nwith two lines\n", encoding="utf-8")
    with pytest.raises(BrainencInputError, match="notes.TextGrid.*Praat TextGrid"):
        read_word_events(path)


def test_no_word_tier_lists_tiers(tmp_path):
    path = tmp_path / "phones_only.TextGrid"
    path.write_text(long_textgrid([("IntervalTier", "phone", PHONE_INTERVALS),
                                   ("IntervalTier", "syllable", PHONE_INTERVALS)]),
                    encoding="utf-16")
    with pytest.raises(BrainencInputError) as info:
        read_word_events(path)
    message = str(info.value)
    assert "phones_only.TextGrid" in message
    assert "no word tier" in message and "'phone'" in message and "'syllable'" in message


def test_tier_index_out_of_range_and_unknown_name(tmp_path):
    path = tmp_path / "two.TextGrid"
    path.write_text(short_textgrid([("IntervalTier", "phone", PHONE_INTERVALS),
                                    ("IntervalTier", "word", WORD_INTERVALS)]), encoding="utf-8")
    with pytest.raises(BrainencInputError, match="two.TextGrid.*index 2 is out of range.*2 tiers"):
        read_word_events(path, tier=2)
    with pytest.raises(BrainencInputError, match="two.TextGrid.*no tier named 'lexeme'"):
        read_word_events(path, tier="lexeme")


def test_point_tier_is_refused(tmp_path):
    path = tmp_path / "points.TextGrid"
    path.write_text(long_textgrid([("TextTier", "word", [(0.5, "so"), (1.5, "went")])]),
                    encoding="utf-8")
    with pytest.raises(BrainencInputError, match="points.TextGrid.*point tier"):
        read_word_events(path)


def test_tier_with_only_fillers(tmp_path):
    path = tmp_path / "silent.TextGrid"
    path.write_text(short_textgrid([("IntervalTier", "word",
                                     [(0.0, 1.0, "sp"), (1.0, 2.0, ""), (2.0, 5.0, "{NS}")])]),
                    encoding="utf-8")
    with pytest.raises(BrainencInputError, match="silent.TextGrid.*no words"):
        read_word_events(path)

"""Word timings from Praat TextGrid transcripts.

TextGrids in the long or short text format, UTF-8 or UTF-16, are parsed with
:mod:`praatio`. The word tier's intervals become :class:`~brainenc.timing.StimulusEvents`:
one event per spoken word, timed at the midpoint of its interval. Silences,
breaths and sentence markers (:data:`DEFAULT_FILLERS`) and empty intervals are
dropped, following the conventions of the Huth story dataset.

Checks that keep a damaged transcript from giving features silently:

* **Truncation.** A Praat interval tier covers its whole span: its intervals
  run from the tier's ``xmin`` to its ``xmax``. A file cut short keeps its
  header (and so the declared ``xmax``) but loses its last intervals, and
  praatio parses what is left without complaint (short format, or a long
  format cut between two intervals). An interval tier whose last interval
  ends more than :data:`END_TOLERANCE_S` before the declared ``xmax`` is an
  error naming both times.
* **Ambiguous word tier.** Without an explicit tier, exactly one tier may be
  named ``word`` or ``words`` (any case); two candidates, or two tiers with
  the requested name, are an error listing the tiers.
* **Invisible words.** A label made only of characters that print nothing
  (zero-width spaces, joiners, byte-order marks, NUL and other control or
  format characters, whitespace) holds no word a tokenizer can encode: it is
  dropped like an empty interval, with a :class:`~brainenc.errors.BrainencInputWarning`
  naming the file, each interval's number and time, and the label's ``repr``.
"""
from __future__ import annotations

import unicodedata
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from praatio.utilities import textgrid_io
from praatio.utilities.constants import INTERVAL_TIER

from brainenc.errors import BrainencInputError, BrainencInputWarning
from brainenc.timing import StimulusEvents

#: Labels that mark non-words (compared after stripping ``{}`` and spaces and
#: lower-casing): sentence markers, breath, laughter, lip smack, noise, silence.
DEFAULT_FILLERS: tuple[str, ...] = (
    "sentence_start", "sentence_end", "br", "lg", "ls", "ns", "sp",
)

#: Tier names taken as the word tier when no tier is given (any case).
WORD_TIER_NAMES: tuple[str, ...] = ("word", "words")

#: Seconds by which a tier's last interval may end before the tier's declared
#: ``xmax`` (rounding of the written times) before the file counts as truncated.
END_TOLERANCE_S = 1e-3

#: Invisible labels listed in a warning; the rest are counted.
_WARNING_EXAMPLES = 5


@dataclass(frozen=True)
class WordTranscript:
    """The words of a TextGrid's word tier and the span the tier covers.

    Attributes
    ----------
    events : StimulusEvents
        The kept words (see :func:`read_word_events`).
    tier : str
        Name of the word tier.
    start, end : float
        The tier's declared ``xmin`` and ``xmax`` in seconds; its intervals
        were checked to reach ``end``.
    """

    events: StimulusEvents
    tier: str
    start: float
    end: float


@dataclass(frozen=True)
class _Tier:
    """One tier as parsed, before any word is kept."""

    kind: str
    name: str
    start: float
    end: float
    entries: tuple


def normalise_label(label: str) -> str:
    """The form of a label that fillers are compared in: no braces or spaces, lower case."""
    return label.strip().strip("{}").strip().lower()


def is_invisible(label: str) -> bool:
    """Whether ``label`` is non-empty but prints nothing.

    True when every character is whitespace or a control, format, surrogate,
    private-use or unassigned character (Unicode categories ``Z*`` and ``C*``):
    zero-width spaces and joiners, byte-order marks, soft hyphens, NUL...
    """
    return bool(label) and all(unicodedata.category(char)[0] in "CZ" for char in label)


def read_word_events(
    path: str | Path,
    tier: str | int | None = None,
    fillers: Iterable[str] = DEFAULT_FILLERS,
    lowercase: bool = True,
) -> StimulusEvents:
    """Read the words of a TextGrid's word tier as timed events.

    Parameters
    ----------
    path : path-like
        A Praat TextGrid (long or short text format, UTF-8 or UTF-16).
    tier : str, int or None
        The word tier: its name (exact, else the one name equal in any case),
        its position (0 is the first tier), or None for the one tier named
        ``word`` or ``words`` in any case.
    fillers : iterable of str
        Labels to drop, compared after stripping ``{}`` and spaces and
        lower-casing both sides.
    lowercase : bool
        Lower-case the kept words.

    Returns
    -------
    StimulusEvents
        ``times`` are interval midpoints, ``onsets``/``offsets`` the interval
        bounds, ``labels`` the words (surrounding whitespace removed).

    Raises
    ------
    BrainencInputError
        The file is missing or not a TextGrid; the tier does not exist, is
        ambiguous or is a point tier; its intervals stop before its declared
        end (a truncated file); or it holds no words.

    Warns
    -----
    BrainencInputWarning
        Labels that print nothing (see :func:`is_invisible`) were dropped.
    """
    return read_word_transcript(path, tier, fillers, lowercase).events


def read_word_transcript(
    path: str | Path,
    tier: str | int | None = None,
    fillers: Iterable[str] = DEFAULT_FILLERS,
    lowercase: bool = True,
) -> WordTranscript:
    """:func:`read_word_events` with the word tier's name and declared span.

    Parameters and errors are those of :func:`read_word_events`.

    Returns
    -------
    WordTranscript
    """
    path = Path(path)
    if not path.is_file():
        raise BrainencInputError(path, "TextGrid file not found")
    word_tier = _select_tier(_parse_tiers(path), tier, path)
    intervals = _interval_times(word_tier, path)
    _check_reaches_end(word_tier, intervals, path)
    drop = {normalise_label(filler) for filler in fillers}

    onsets, offsets, labels, invisible = [], [], [], []
    for number, (start, end, label) in enumerate(intervals, start=1):
        word = label.strip()
        if is_invisible(word):
            invisible.append(f"interval {number} at {start:.3f}-{end:.3f} s: {word!r}")
            continue
        key = normalise_label(word)
        if not key or key in drop:
            continue
        onsets.append(start)
        offsets.append(end)
        labels.append(word.lower() if lowercase else word)
    if invisible:
        _warn_invisible(path, word_tier.name, invisible)
    if not labels:
        raise BrainencInputError(
            path, f"tier {word_tier.name!r} holds no words (only empty intervals or fillers)"
        )
    onsets_arr = np.asarray(onsets, dtype=np.float64)
    offsets_arr = np.asarray(offsets, dtype=np.float64)
    try:
        events = StimulusEvents(
            times=(onsets_arr + offsets_arr) / 2.0,
            labels=tuple(labels),
            onsets=onsets_arr,
            offsets=offsets_arr,
        )
    except ValueError as error:  # intervals out of order or ending before they start
        raise BrainencInputError(path, f"tier {word_tier.name!r}: {error}") from error
    return WordTranscript(events, word_tier.name, word_tier.start, word_tier.end)


def _warn_invisible(path: Path, tier_name: str, found: list[str]) -> None:
    shown = "; ".join(found[:_WARNING_EXAMPLES])
    more = f" and {len(found) - _WARNING_EXAMPLES} more" if len(found) > _WARNING_EXAMPLES else ""
    warnings.warn(
        f"{path}: tier {tier_name!r}: dropped {len(found)} label(s) that print nothing "
        f"(zero-width, control or format characters only), as empty intervals: {shown}{more}",
        BrainencInputWarning, stacklevel=3,
    )


# --------------------------------------------------------------------------- #
# Parsing and checks
# --------------------------------------------------------------------------- #
def _decode(path: Path) -> str:
    """The file's text: UTF-16 when it has a UTF-16 byte-order mark or NUL-interleaved
    ASCII (Praat's own UTF-16 files), else UTF-8 (with or without a BOM)."""
    raw = path.read_bytes()
    try:
        if raw[:2] in (b"\xff\xfe", b"\xfe\xff"):
            return raw.decode("utf-16")
        if raw[:2] in (b"F\x00", b"\x00F"):  # "File type" without a byte-order mark
            return raw.decode("utf-16-le" if raw[:1] == b"F" else "utf-16-be")
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise BrainencInputError(
            path, f"cannot be read as a Praat TextGrid: not UTF-8 or UTF-16 text ({error})"
        ) from error


def _parse_tiers(path: Path) -> list[_Tier]:
    """Every tier of the file, with its empty intervals; parse failures become errors."""
    text = _decode(path)
    try:
        parsed = textgrid_io.parseTextgridStr(text, includeEmptyIntervals=True)
    except Exception as error:  # praatio raises many types on malformed files
        raise BrainencInputError(
            path, f"cannot be read as a Praat TextGrid ({type(error).__name__}: {error}); "
            "is the file damaged or truncated?"
        ) from error
    return [_Tier(t["class"], str(t["name"]), float(t["xmin"]), float(t["xmax"]), tuple(t["entries"]))
            for t in parsed["tiers"]]


def _select_tier(tiers: list[_Tier], tier: str | int | None, path: Path) -> _Tier:
    names = [t.name for t in tiers]
    if isinstance(tier, bool):
        raise TypeError("tier must be a name, an index or None")
    if tier is None:
        matches = [k for k, name in enumerate(names) if name.strip().lower() in WORD_TIER_NAMES]
        if not matches:
            raise BrainencInputError(
                path,
                f"no word tier: expected a tier named 'word' or 'words', found tiers {names}; "
                "give the tier name or index explicitly",
            )
        if len(matches) > 1:
            raise BrainencInputError(
                path, f"{len(matches)} tiers could be the word tier: {_listing(names, matches)}; "
                "pass the word tier explicitly (its index, counting from 0)",
            )
        chosen = tiers[matches[0]]
    elif isinstance(tier, (int, np.integer)):
        if not 0 <= int(tier) < len(names):
            raise BrainencInputError(
                path, f"tier index {int(tier)} is out of range: the file has {len(names)} "
                f"tiers {names}"
            )
        chosen = tiers[int(tier)]
    else:
        matches = [k for k, name in enumerate(names) if name == tier]
        if not matches:
            matches = [k for k, name in enumerate(names) if name.lower() == str(tier).lower()]
        if not matches:
            raise BrainencInputError(path, f"no tier named {tier!r}; found tiers {names}")
        if len(matches) > 1:
            raise BrainencInputError(
                path, f"{len(matches)} tiers are named {tier!r}: {_listing(names, matches)}; "
                "pass the word tier by its index (counting from 0)",
            )
        chosen = tiers[matches[0]]
    if chosen.kind != INTERVAL_TIER:
        raise BrainencInputError(
            path, f"tier {chosen.name!r} is a point tier; words need an interval tier"
        )
    return chosen


def _listing(names: list[str], indices: list[int]) -> str:
    return ", ".join(f"{names[k]!r} (index {k})" for k in indices)


def _interval_times(tier: _Tier, path: Path) -> list[tuple[float, float, str]]:
    """``(start, end, label)`` of each interval, with numeric times."""
    intervals = []
    for number, (start, end, label) in enumerate(tier.entries, start=1):
        try:
            intervals.append((float(start), float(end), str(label)))
        except (TypeError, ValueError):
            raise BrainencInputError(
                path, f"tier {tier.name!r}, interval {number}: times {start!r}, {end!r} "
                "are not numbers"
            ) from None
    return intervals


def _check_reaches_end(tier: _Tier, intervals: list[tuple[float, float, str]], path: Path) -> None:
    """Raise if the tier's intervals stop before its declared end (see the module notes)."""
    if not intervals:
        return
    last_end = max(end for _, end, _ in intervals)
    if last_end < tier.end - END_TOLERANCE_S:
        raise BrainencInputError(
            path, f"tier {tier.name!r} declares xmax = {tier.end:.3f} s but its last interval "
            f"(interval {len(intervals)}) ends at {last_end:.3f} s; a Praat interval tier covers "
            "xmin to xmax, so the file looks truncated: restore the complete TextGrid "
            "(or, if it is complete, set the tier's xmax to the end of its last interval)",
        )

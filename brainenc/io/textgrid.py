"""Word timings from Praat TextGrid transcripts.

TextGrids in the long or short text format, UTF-8 or UTF-16, are parsed with
:mod:`praatio`. The word tier's intervals become :class:`~brainenc.timing.StimulusEvents`:
one event per spoken word, timed at the midpoint of its interval. Silences,
breaths and sentence markers (:data:`DEFAULT_FILLERS`) and empty intervals are
dropped, following the conventions of the Huth story dataset.
"""
from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np
from praatio import textgrid as praat_textgrid
from praatio.data_classes.interval_tier import IntervalTier

from brainenc.errors import BrainencInputError
from brainenc.timing import StimulusEvents

#: Labels that mark non-words (compared after stripping ``{}`` and spaces and
#: lower-casing): sentence markers, breath, laughter, lip smack, noise, silence.
DEFAULT_FILLERS: tuple[str, ...] = (
    "sentence_start", "sentence_end", "br", "lg", "ls", "ns", "sp",
)

#: Tier names taken as the word tier when no tier is given (any case).
WORD_TIER_NAMES: tuple[str, ...] = ("word", "words")


def normalise_label(label: str) -> str:
    """The form of a label that fillers are compared in: no braces or spaces, lower case."""
    return label.strip().strip("{}").strip().lower()


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
        its position (0 is the first tier), or None for the tier named ``word``
        or ``words`` in any case.
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
        The file is missing or not a TextGrid, the tier does not exist or is a
        point tier, or the tier holds no words.
    """
    path = Path(path)
    if not path.is_file():
        raise BrainencInputError(path, "TextGrid file not found")
    grid = _open_textgrid(path)
    word_tier = _select_tier(grid, tier, path)
    drop = {normalise_label(filler) for filler in fillers}

    onsets, offsets, labels = [], [], []
    for start, end, label in word_tier.entries:
        word = label.strip()
        key = normalise_label(word)
        if not key or key in drop:
            continue
        onsets.append(float(start))
        offsets.append(float(end))
        labels.append(word.lower() if lowercase else word)
    if not labels:
        raise BrainencInputError(
            path, f"tier {word_tier.name!r} holds no words (only empty intervals or fillers)"
        )
    onsets_arr = np.asarray(onsets, dtype=np.float64)
    offsets_arr = np.asarray(offsets, dtype=np.float64)
    return StimulusEvents(
        times=(onsets_arr + offsets_arr) / 2.0,
        labels=tuple(labels),
        onsets=onsets_arr,
        offsets=offsets_arr,
    )


def _open_textgrid(path: Path):
    """Parse ``path`` with praatio; any parse failure becomes a BrainencInputError."""
    try:
        # Empty intervals are dropped later anyway; "rename" keeps files with two
        # tiers of the same name readable (the tier is then chosen by index).
        return praat_textgrid.openTextgrid(
            str(path), includeEmptyIntervals=False, reportingMode="silence",
            duplicateNamesMode="rename",
        )
    except Exception as error:  # praatio raises many types on malformed files
        raise BrainencInputError(
            path, f"cannot be read as a Praat TextGrid ({type(error).__name__}: {error})"
        ) from error


def _select_tier(grid, tier: str | int | None, path: Path) -> IntervalTier:
    names = list(grid.tierNames)
    if isinstance(tier, bool):
        raise TypeError("tier must be a name, an index or None")
    if tier is None:
        matches = [name for name in names if name.strip().lower() in WORD_TIER_NAMES]
        if not matches:
            raise BrainencInputError(
                path,
                f"no word tier: expected a tier named 'word' or 'words', found tiers {names}; "
                "give the tier name or index explicitly",
            )
        chosen = grid.getTier(matches[0])
    elif isinstance(tier, (int, np.integer)):
        if not 0 <= int(tier) < len(names):
            raise BrainencInputError(
                path, f"tier index {int(tier)} is out of range: the file has {len(names)} "
                f"tiers {names}"
            )
        chosen = grid.getTier(names[int(tier)])
    else:
        if tier in names:
            chosen = grid.getTier(tier)
        else:
            folded = [name for name in names if name.lower() == str(tier).lower()]
            if len(folded) != 1:
                raise BrainencInputError(path, f"no tier named {tier!r}; found tiers {names}")
            chosen = grid.getTier(folded[0])
    if not isinstance(chosen, IntervalTier):
        raise BrainencInputError(
            path, f"tier {chosen.name!r} is a point tier; words need an interval tier"
        )
    return chosen

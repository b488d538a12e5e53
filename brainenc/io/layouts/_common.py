"""Pieces shared by the layout readers: TR grids, JSON and TSV files, stimulus files."""
from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np

from brainenc.errors import BrainencInputError, warn_input
from brainenc.io.dataset import Run
from brainenc.timing import TRGrid

SPACES = ("fsaverage5", "fsaverage6", "volume", "native_volume", "unknown")
VIDEO_SUFFIXES = (".mp4", ".mkv", ".avi", ".mov", ".webm", ".m4v", ".mpg", ".mpeg")
FRAMES_TAG = "_frames"
MISSING_CELLS = frozenset({"", "n/a"})

#: Plausible repetition times in seconds; values outside are refused.
TR_RANGE_S = (0.1, 10.0)
#: Seconds per unit a TR may be stored in.
TR_UNITS = {"s": 1.0, "ms": 1e-3, "us": 1e-6}


def scan_grid(tr: float, n_volumes: int, stimulus_onset: float) -> TRGrid:
    """TR grid of a run whose stimulus began ``stimulus_onset`` s after the first volume.

    Volume ``k`` sits at ``tr·k − stimulus_onset + tr/2`` on the stimulus clock
    (volumes are timed at their centres).
    """
    return TRGrid(
        tr * np.arange(n_volumes, dtype=np.float64) - stimulus_onset + tr / 2.0, float(tr)
    )


def sorted_runs(runs: list[Run]) -> list[Run]:
    """Runs ordered by subject, then run name."""
    return sorted(runs, key=lambda run: (run.subject, run.name))


def read_json_object(path: Path) -> dict:
    """A JSON file holding an object."""
    try:
        content = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as error:
        raise BrainencInputError(path, f"cannot read the file ({error})") from error
    except json.JSONDecodeError as error:
        raise BrainencInputError(path, f"invalid JSON ({error})") from error
    if not isinstance(content, dict):
        raise BrainencInputError(path, "expected a JSON object ({...})")
    return content


def read_tsv(path: Path) -> tuple[list[str], list[tuple[int, dict[str, str]]]]:
    """A tab-separated file with a header: its columns and ``(line, row)`` pairs.

    Blank lines are skipped; ``line`` is the 1-based line number in the file
    (the header is line 1). Cells are stripped of surrounding spaces.

    Raises
    ------
    BrainencInputError
        The file cannot be read, is empty, or a row has more or fewer cells
        than the header (a short row would otherwise shift or drop values).
    """
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            reader = csv.reader(handle, delimiter="\t")
            header: list[str] | None = None
            rows: list[tuple[int, dict[str, str]]] = []
            for cells in reader:
                if not any(cell.strip() for cell in cells):
                    continue
                cells = [cell.strip() for cell in cells]
                if header is None:
                    header = cells
                    continue
                if len(cells) != len(header):
                    raise BrainencInputError(
                        path, f"line {reader.line_num}: {len(cells)} cells but the header "
                        f"has {len(header)} columns {header}; every row needs one "
                        "tab-separated cell per column (n/a for a missing value)"
                    )
                rows.append((reader.line_num, dict(zip(header, cells))))
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise BrainencInputError(path, f"cannot read the table ({error})") from error
    if header is None:
        raise BrainencInputError(path, "the table is empty (no header row)")
    return header, rows


def check_space(space, path: Path) -> str:
    """``space`` if it is a known response space, else an error naming ``path``."""
    if space not in SPACES:
        raise BrainencInputError(path, f"unknown space {space!r}; expected one of {SPACES}")
    return space


def stimulus_kind(path: str | Path) -> str | None:
    """``"textgrid"``, ``"frames"`` (a frame-time table), ``"video"`` or None."""
    name = Path(path).name.lower()
    if name.endswith(".textgrid"):
        return "textgrid"
    if name.endswith(".tsv"):
        return "frames"
    if name.endswith(VIDEO_SUFFIXES):
        return "video"
    return None


#: Modality that each kind of stimulus file implies.
KIND_MODALITY = {"textgrid": "story", "frames": "movie", "video": "movie"}


def stimulus_name(path: str | Path) -> str:
    """Stimulus name of a stimulus file: its name without extension and ``_frames``."""
    stem = Path(path).name
    if "." in stem:
        stem = stem[: stem.rindex(".")]
    if stem.endswith(FRAMES_TAG):
        stem = stem[: -len(FRAMES_TAG)]
    return stem


def check_tr(value, path: Path, field: str, unit: str = "s") -> float:
    """A repetition time in seconds, refused outside :data:`TR_RANGE_S`.

    Parameters
    ----------
    value : number or str
        The TR as stored in ``path``.
    path : Path
        The file the value was read from (named in errors).
    field : str
        Where in the file the value sits (``RepetitionTime``, ``'tr'``...).
    unit : {"s", "ms", "us"}
        Unit ``value`` is stored in.

    Returns
    -------
    float
        The TR in seconds.

    Raises
    ------
    BrainencInputError
        ``value`` is not a finite number or the TR is outside 0.1–10 s; a
        value that reads as milliseconds where seconds are expected (or the
        reverse) is named as such.
    """
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise BrainencInputError(path, f"{field} must be a number, got {value!r}") from None
    if isinstance(value, bool) or not math.isfinite(number):
        raise BrainencInputError(path, f"{field} must be a finite number, got {value!r}")
    seconds = number * TR_UNITS[unit]
    low, high = TR_RANGE_S
    if low <= seconds <= high:
        return seconds
    hint = ""
    if unit == "s" and 100.0 <= number <= 10000.0:
        hint = (f"; {number:g} looks like milliseconds: write the TR in seconds "
                f"({number / 1000.0:g})")
    elif unit == "ms" and low <= number <= high:
        hint = (f"; {number:g} looks like seconds, but {field} is in milliseconds "
                f"({number * 1000.0:g})")
    raise BrainencInputError(
        path, f"{field} = {value!r} gives a TR of {seconds:g} s, outside the plausible range "
        f"{low:g}-{high:g} s{hint}"
    )


def check_onset(onset: float, path: Path, where: str) -> None:
    """Warn when a stimulus onset is negative (the stimulus began before the scan)."""
    if onset < 0:
        warn_input(
            f"{path}: {where}: stimulus onset {onset:g} s is negative, i.e. the stimulus "
            "began before the first volume; the onset is seconds from the first volume to "
            "the stimulus start (check its sign)"
        )


def warn_unknown_keys(content: dict, known, path: Path, where: str = "") -> None:
    """Warn about keys of a JSON object that nothing reads (a typo would be ignored)."""
    unknown = sorted(str(key) for key in content if key not in known)
    if unknown:
        place = f" {where}" if where else ""
        warn_input(f"{path}: unknown key(s){place} {unknown} are ignored; known keys are "
                   f"{sorted(known)}")



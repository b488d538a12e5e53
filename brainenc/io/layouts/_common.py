"""Pieces shared by the layout readers: TR grids, JSON and TSV files, stimulus files."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np

from brainenc.errors import BrainencInputError
from brainenc.io.dataset import Run
from brainenc.timing import TRGrid

SPACES = ("fsaverage5", "volume", "unknown")
VIDEO_SUFFIXES = (".mp4", ".mkv", ".avi", ".mov", ".webm", ".m4v", ".mpg", ".mpeg")
FRAMES_TAG = "_frames"
MISSING_CELLS = frozenset({"", "n/a"})


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
                if len(cells) > len(header):
                    raise BrainencInputError(
                        path, f"line {reader.line_num}: {len(cells)} cells but the header "
                        f"has {len(header)} columns"
                    )
                cells += [""] * (len(header) - len(cells))
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

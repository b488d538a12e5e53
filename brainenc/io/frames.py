"""Frame timings of movies: frame-time tables and regular video frame clocks."""
from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np

from brainenc.errors import BrainencInputError
from brainenc.timing import StimulusEvents, frame_times

#: Cell values read as missing (BIDS writes ``n/a``).
MISSING_VALUES = frozenset({"", "n/a", "na", "nan"})


def read_frame_table(path: str | Path) -> StimulusEvents:
    """Read a tab-separated frame-time table.

    Parameters
    ----------
    path : path-like
        A TSV file with a header row, a ``time`` column (seconds on the movie
        clock, one row per frame, strictly increasing) and optionally ``frame``
        (integer index) and ``file`` (an image path relative to the table).

    Returns
    -------
    StimulusEvents
        ``times`` from the ``time`` column. ``labels`` are the ``file`` values
        as written when that column exists, else the ``frame`` indices, else
        the row positions (0, 1, ...), as strings.

    Raises
    ------
    BrainencInputError
        The file is missing, has no ``time`` column or no rows, a row has more
        or fewer cells than the header, or a time is missing, not a number, not
        finite, or not after the previous one.
    """
    path = Path(path)
    if not path.is_file():
        raise BrainencInputError(path, "frame table not found")
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            rows = list(csv.reader(handle, delimiter="\t"))
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise BrainencInputError(path, f"cannot read the frame table ({error})") from error
    rows = [row for row in rows if any(cell.strip() for cell in row)]
    if not rows:
        raise BrainencInputError(path, "the frame table is empty")
    header = [cell.strip() for cell in rows[0]]
    if "time" not in header:
        raise BrainencInputError(
            path, f"the frame table has no 'time' column (columns: {header}); "
            "expected a tab-separated file with a header row"
        )
    body = rows[1:]
    if not body:
        raise BrainencInputError(path, "the frame table has a header but no frames")
    _check_row_lengths(rows, path)

    def column(name: str) -> list[str] | None:
        if name not in header:
            return None
        index = header.index(name)
        return [row[index].strip() for row in body]

    times = np.empty(len(body), dtype=np.float64)
    for position, cell in enumerate(column("time")):
        line = position + 2  # the header is line 1
        try:
            value = math.nan if cell.lower() in MISSING_VALUES else float(cell)
        except ValueError:
            raise BrainencInputError(
                path, f"line {line}: time {cell!r} is not a number"
            ) from None
        if not math.isfinite(value):
            raise BrainencInputError(path, f"line {line}: time is missing or not finite ({cell!r})")
        times[position] = value
    steps = np.diff(times)
    if np.any(steps <= 0):
        bad = int(np.flatnonzero(steps <= 0)[0])
        raise BrainencInputError(
            path, f"frame times must increase: line {bad + 3} has time {times[bad + 1]} "
            f"after {times[bad]} on line {bad + 2}"
        )

    files = column("file")
    frames = column("frame")
    if files is not None:
        labels = tuple(files)
    elif frames is not None:
        labels = tuple(_frame_index(cell, position + 2, path) for position, cell in enumerate(frames))
    else:
        labels = tuple(str(position) for position in range(len(body)))
    return StimulusEvents(times=times, labels=labels)


def _check_row_lengths(rows: list[list[str]], path: Path) -> None:
    """Every row must have one cell per header column; a short row shifts nothing silently."""
    width = len(rows[0])
    for position, row in enumerate(rows[1:]):
        if len(row) != width:
            raise BrainencInputError(
                path, f"line {position + 2}: {len(row)} cells but the header has {width} "
                "columns; every row needs one tab-separated cell per column"
            )


def _frame_index(cell: str, line: int, path: Path) -> str:
    try:
        return str(int(cell))
    except ValueError:
        raise BrainencInputError(path, f"line {line}: frame {cell!r} is not an integer") from None


def video_frame_events(n_frames: int, fps: float, start: float = 0.0) -> StimulusEvents:
    """Events for ``n_frames`` frames shown at ``fps`` frames per second.

    Frame ``i`` is at ``start + i / fps`` seconds and labelled ``str(i)``.
    """
    if n_frames < 0:
        raise ValueError(f"n_frames must be non-negative, got {n_frames}")
    return StimulusEvents(
        times=frame_times(n_frames, fps, start),
        labels=tuple(str(index) for index in range(n_frames)),
    )

"""Time bases: timed stimulus events, frame clocks and TR grids.

All times are in seconds on the *stimulus clock*: 0 is the first sample of the
story audio or the first frame of the movie. A :class:`TRGrid` places the
scanner's volumes on that clock, so features (timed on the stimulus clock) can
be resampled to it.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class StimulusEvents:
    """Timed events of one stimulus: words of a story or frames of a movie.

    Parameters
    ----------
    times : ndarray of shape (n_events,)
        Time of each event in seconds on the stimulus clock (word midpoint,
        frame time).
    labels : tuple of str
        A label per event (the word; a frame index or image file for movies).
    onsets, offsets : ndarray of shape (n_events,) or None
        Start and end of each event where known (word intervals).

    Raises
    ------
    ValueError
        Times that are not finite or decrease (events out of order would be
        read as a different stimulus), or arrays of mismatched lengths.
    """

    times: np.ndarray
    labels: tuple[str, ...]
    onsets: np.ndarray | None = None
    offsets: np.ndarray | None = None

    def __post_init__(self):
        times = np.asarray(self.times, dtype=np.float64)
        if times.ndim != 1 or len(times) != len(self.labels):
            raise ValueError(
                f"times has shape {times.shape} but there are {len(self.labels)} labels"
            )
        check_event_times(times, "event times")
        object.__setattr__(self, "times", times)
        for name in ("onsets", "offsets"):
            values = getattr(self, name)
            if values is None:
                continue
            values = np.asarray(values, dtype=np.float64)
            if values.shape != times.shape:
                raise ValueError(f"{name} has shape {values.shape}, times {times.shape}")
            object.__setattr__(self, name, values)
        if self.onsets is not None and self.offsets is not None:
            late = np.flatnonzero(self.offsets < self.onsets)
            if late.size:
                k = int(late[0])
                raise ValueError(
                    f"event {k} ({self.labels[k]!r}) ends at {self.offsets[k]} s, before its "
                    f"onset {self.onsets[k]} s"
                )

    def __len__(self) -> int:
        return len(self.times)


@dataclass(frozen=True)
class TRGrid:
    """Acquisition times of the fMRI volumes of one run, on the stimulus clock.

    Parameters
    ----------
    times : ndarray of shape (n_trs,)
        Time of each volume in seconds on the stimulus clock.
    tr : float
        Repetition time in seconds.
    """

    times: np.ndarray
    tr: float
    meta: dict = field(default_factory=dict, compare=False)

    def __post_init__(self):
        times = np.asarray(self.times, dtype=np.float64)
        if times.ndim != 1:
            raise ValueError(f"TR times must be 1-D, got shape {times.shape}")
        if not np.isfinite(self.tr) or self.tr <= 0:
            raise ValueError(f"TR must be positive and finite, got {self.tr}")
        check_event_times(times, "TR times", strict=True)
        object.__setattr__(self, "times", times)

    @classmethod
    def from_tr(cls, tr: float, n_trs: int, offset: float = 0.0) -> "TRGrid":
        """Regular grid: volume ``k`` at ``offset + k * tr`` seconds."""
        if n_trs < 0:
            raise ValueError(f"n_trs must be non-negative, got {n_trs}")
        return cls(offset + tr * np.arange(n_trs, dtype=np.float64), float(tr))

    @classmethod
    def from_triggers(cls, triggers, tr: float | None = None) -> "TRGrid":
        """Grid from recorded scanner trigger times (seconds on the stimulus clock).

        The TR defaults to the median interval between triggers.
        """
        triggers = np.asarray(triggers, dtype=np.float64)
        if triggers.ndim != 1 or len(triggers) < 2:
            raise ValueError("at least two trigger times are needed")
        if np.any(np.diff(triggers) <= 0):
            raise ValueError("trigger times must be strictly increasing")
        if tr is None:
            tr = float(np.median(np.diff(triggers)))
        return cls(triggers, float(tr))

    def __len__(self) -> int:
        return len(self.times)

    def trimmed(self, start: int, end: int) -> "TRGrid":
        """The grid without its first ``start`` and last ``end`` volumes."""
        stop = len(self.times) - end
        return TRGrid(self.times[start:stop], self.tr)


def check_event_times(times: np.ndarray, what: str = "times", strict: bool = False) -> None:
    """Raise ``ValueError`` unless ``times`` are finite and in order.

    Parameters
    ----------
    times : ndarray of shape (n,)
    what : str
        Name of the times in the message.
    strict : bool
        Require strictly increasing times; otherwise equal neighbours are allowed.
    """
    times = np.asarray(times, dtype=np.float64)
    if not np.isfinite(times).all():
        k = int(np.flatnonzero(~np.isfinite(times))[0])
        raise ValueError(f"{what} must be finite; element {k} is {times[k]}")
    steps = np.diff(times)
    bad = np.flatnonzero(steps <= 0 if strict else steps < 0)
    if bad.size:
        k = int(bad[0]) + 1
        order = "increase" if strict else "not decrease"
        raise ValueError(
            f"{what} must {order}: element {k} is {times[k]} s after {times[k - 1]} s "
            f"(element {k - 1})"
        )


def frame_times(n_frames: int, fps: float, start: float = 0.0) -> np.ndarray:
    """Times of ``n_frames`` frames shown at ``fps`` frames per second.

    Each frame is timed at its onset: frame ``i`` at ``start + i / fps``.
    """
    if fps <= 0:
        raise ValueError(f"fps must be positive, got {fps}")
    return start + np.arange(n_frames, dtype=np.float64) / fps


def huth_story_grid(n_trs: int, tr: float = 2.0, audio_start: float = 10.0) -> TRGrid:
    """The TR grid of a story in the Huth ds003020 conventions.

    With ``N = respdict[story]``, ``N - 5`` volumes are placed at TR centres:
    volume ``k`` at ``tr * k - audio_start + tr / 2`` seconds on the audio clock.
    """
    n = n_trs - 5
    if n <= 0:
        raise ValueError(f"a Huth story needs more than 5 TRs, got {n_trs}")
    return TRGrid(tr * np.arange(n, dtype=np.float64) - audio_start + tr / 2.0, float(tr))

"""Timing of the simulated runs: stimulus lengths, acquired volumes and written rows.

Times are on the stimulus clock (0 = first sample of audio or first frame);
each run is scanned from ``LEAD_IN_S`` before the stimulus to ``LEAD_OUT_S``
after it (``docs/simulation.md``, Timing).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: Huth conventions: audio (or the first frame) starts this long after the first
#: volume, and the scan goes on this long after the stimulus ends.
LEAD_IN_S = 10.0
LEAD_OUT_S = 10.0


@dataclass(frozen=True)
class RunTiming:
    """Volumes acquired, the stimulus-clock time of each written row, layout numbers."""

    n_volumes: int         # volumes acquired
    row_times: np.ndarray  # stimulus-clock time of each written row
    meta: dict             # layout-specific numbers (respdict N, movie entry, onset)


def story_duration(n_rows: int, tr: float) -> float:
    """Audio length: with ``N = n_rows + 20`` volumes, 10 s of scan before and after."""
    return tr * (n_rows + 20) - LEAD_IN_S - LEAD_OUT_S


def movie_duration(n_rows: int, tr: float) -> float:
    """Movie length: with ``n_rows + 15`` volumes, 10 s of scan before and after."""
    return tr * (n_rows + 15) - LEAD_IN_S - LEAD_OUT_S


def huth_timing(modality: str, n_rows: int, tr: float) -> RunTiming:
    """Timing of a run in the Huth layout: ``n_rows`` analysed volumes."""
    if modality == "story":
        n_volumes = n_rows + 20
        # respdict N -> N - 5 grid volumes at 2k - 10 + 1 s; keep [10 : -5].
        k = np.arange(n_volumes - 5)[10:-5]
        return RunTiming(n_volumes, tr * k - LEAD_IN_S + tr / 2.0, {"respdict": n_volumes})
    n_volumes = n_rows + 15
    k = np.arange(n_volumes)[10:-5]
    entry = {"n_trs": n_volumes, "tr": tr, "start": LEAD_IN_S, "trim_start": 10, "trim_end": 5}
    return RunTiming(n_volumes, tr * k - LEAD_IN_S + tr / 2.0, entry)


def bids_timing(duration: float, tr: float) -> RunTiming:
    """Timing of a run in the BIDS layout: every acquired volume is written."""
    n_volumes = int(np.ceil((LEAD_IN_S + duration + LEAD_OUT_S) / tr))
    k = np.arange(n_volumes)
    return RunTiming(n_volumes, tr * k - LEAD_IN_S + tr / 2.0, {"onset": LEAD_IN_S})

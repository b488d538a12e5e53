"""Timing helpers shared by the benchmarks that fit cost lines (bench_layers, bench_dimensions)."""
from __future__ import annotations

import time
import tracemalloc

import numpy as np


class Stopwatch:
    """Wall-clock and process CPU seconds of a block, and its peak traced memory.

    The peak is what ``tracemalloc`` saw above the memory traced when the block
    began (tracing must be on).
    """

    def __enter__(self):
        self._base = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        self._wall, self._cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc):
        self.wall = time.perf_counter() - self._wall
        self.cpu = time.process_time() - self._cpu
        self.peak_mib = (tracemalloc.get_traced_memory()[1] - self._base) / 2**20
        return False

    def __str__(self):
        return f"{self.wall:6.1f} s wall, {self.cpu:6.1f} s CPU, peak {self.peak_mib:5.0f} MiB"


def fit_line(counts: list[int], seconds: list[float]) -> tuple[float, float]:
    """(fixed seconds, seconds per unit: layer, permutation) of the least-squares line."""
    slope, intercept = np.polyfit(np.asarray(counts, float), np.asarray(seconds, float), 1)
    return float(intercept), float(slope)

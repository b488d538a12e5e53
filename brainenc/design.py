"""Design matrices: stimulus features resampled to the TR grid, z-scored and delayed.

Features are timed on the stimulus clock (one row per word or frame) or already
given per TR. For each run they are brought onto the run's TR grid with a
Lanczos filter, trimmed like the responses, z-scored within the run, and
expanded with finite-impulse-response (FIR) delays so that a linear model can
fit a haemodynamic response of any shape over a few TRs.

Two presets fix the choices that differ between conventions:

``huth``
    The conventions of the Huth-lab story encoding code (LeBel et al. 2023):
    delays 1–4 TRs added *after* stacking the runs, so that the first rows of
    each run after the first hold the previous run's last rows, and the ridge
    alpha grid ``logspace(1, 3, 10)`` of that code. Its solver shrinks singular
    value ``s`` by ``s / (s² + a²)``: it penalises ``a²``, so the same grid in the
    usual ``(X'X + αI)`` convention used here is ``logspace(2, 6, 10)``.
``default``
    Delays added per run (zero-filled at each run start, so no run leaks into
    the next) and a wider alpha grid.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from brainenc.errors import BrainencInputError
from brainenc.io.dataset import Run
from brainenc.io.features import StimulusFeatures

#: Above this many kernel entries (new times × events) resampling works in row chunks,
#: which bounds the temporary kernel matrix to about 160 MB of float64.
_MAX_KERNEL_ENTRIES = 20_000_000


def lanczos_kernel(t: np.ndarray, cutoff: float, window: int = 3) -> np.ndarray:
    """Lanczos interpolation kernel.

    ``L(t) = window * sin(pi f t) * sin(pi f t / window) / (pi**2 f**2 t**2)``,
    with ``L(0) = 1`` and ``L(t) = 0`` where ``|f t| > window``.

    Parameters
    ----------
    t : array_like
        Time lags in seconds.
    cutoff : float
        Cutoff frequency ``f`` in Hz (``1 / TR`` for the usual downsampling).
    window : int, default 3
        Number of lobes on each side of the centre.

    Returns
    -------
    ndarray
        Kernel values, same shape as ``t``.
    """
    if cutoff <= 0:
        raise ValueError(f"cutoff must be positive, got {cutoff}")
    if window <= 0:
        raise ValueError(f"window must be positive, got {window}")
    x = cutoff * np.asarray(t, dtype=np.float64)
    # sinc(x) * sinc(x / window) is the same product written without the 0/0 at x = 0.
    values = np.sinc(x) * np.sinc(x / window)
    values[np.abs(x) > window] = 0.0
    return values


def lanczos_resample(
    data: np.ndarray,
    old_times: np.ndarray,
    new_times: np.ndarray,
    window: int = 3,
    cutoff_mult: float = 1.0,
    tr: float | None = None,
) -> np.ndarray:
    """Resample event features onto new times with a Lanczos filter.

    Each output row is ``sum_events L(t_new - t_event) * x_event``. The sum is
    not normalised by the kernel weights, so a TR with more events gets a
    larger vector (as in the Huth-lab code).

    Parameters
    ----------
    data : ndarray of shape (n_events, n_features)
        One feature vector per event.
    old_times : ndarray of shape (n_events,)
        Event times in seconds.
    new_times : ndarray of shape (n_new,)
        Times to resample to (TR times), in seconds on the same clock.
    window : int, default 3
        Lanczos window (lobes on each side).
    cutoff_mult : float, default 1.0
        Cutoff frequency as a multiple of ``1 / tr``.
    tr : float, optional
        Sampling interval of ``new_times``; defaults to their median spacing.

    Returns
    -------
    ndarray of shape (n_new, n_features), float64
    """
    data = np.asarray(data, dtype=np.float64)
    old_times = np.asarray(old_times, dtype=np.float64)
    new_times = np.asarray(new_times, dtype=np.float64)
    if data.ndim == 1:
        data = data[:, None]
    if data.ndim != 2 or data.shape[0] != old_times.shape[0] or old_times.ndim != 1:
        raise ValueError(
            f"data has shape {data.shape} but there are {old_times.shape} event times; "
            "expected one row per event"
        )
    if new_times.ndim != 1:
        raise ValueError(f"new_times must be 1-D, got shape {new_times.shape}")
    if tr is None:
        if len(new_times) < 2:
            raise ValueError("tr must be given when there are fewer than two new times")
        tr = float(np.median(np.diff(new_times)))
    if tr <= 0:
        raise ValueError(f"tr must be positive, got {tr}")
    cutoff = cutoff_mult / tr

    out = np.zeros((len(new_times), data.shape[1]), dtype=np.float64)
    if len(old_times) == 0 or len(new_times) == 0:
        return out
    chunk = max(1, _MAX_KERNEL_ENTRIES // len(old_times))
    for start in range(0, len(new_times), chunk):
        stop = start + chunk
        kernel = lanczos_kernel(new_times[start:stop, None] - old_times[None, :], cutoff, window)
        out[start:stop] = kernel @ data
    return out


def zscore_columns(x: np.ndarray) -> np.ndarray:
    """Z-score each column: subtract the mean, divide by the population std (ddof=0).

    A column with zero standard deviation is only centred (it becomes zeros),
    never NaN.

    Parameters
    ----------
    x : ndarray of shape (n_rows, n_columns)

    Returns
    -------
    ndarray of shape (n_rows, n_columns), float64
    """
    x = np.asarray(x, dtype=np.float64)
    centred = x - x.mean(axis=0)
    std = centred.std(axis=0)
    safe = np.where(std > 0, std, 1.0)
    return centred / safe


def add_delays(x: np.ndarray, delays: Sequence[int] = (1, 2, 3, 4)) -> np.ndarray:
    """FIR delays: copies of ``x`` shifted by each delay, side by side.

    For a delay ``d > 0`` row ``t`` of its block holds row ``t - d`` of ``x``
    (shift down), and the first ``d`` rows are zero. ``d = 0`` is ``x`` itself;
    ``d < 0`` shifts up and zero-fills the last ``|d|`` rows.

    Parameters
    ----------
    x : ndarray of shape (n_rows, n_features)
    delays : sequence of int, default (1, 2, 3, 4)

    Returns
    -------
    ndarray of shape (n_rows, n_features * len(delays))
        Column blocks ``[delay 1 | delay 2 | ...]`` in the order of ``delays``.
    """
    x = np.asarray(x)
    if x.ndim != 2:
        raise ValueError(f"x must be 2-D, got shape {x.shape}")
    delays = [int(d) for d in delays]
    if not delays:
        raise ValueError("at least one delay is needed")
    n_rows, n_features = x.shape
    out = np.zeros((n_rows, n_features * len(delays)), dtype=x.dtype)
    for i, d in enumerate(delays):
        block = out[:, i * n_features:(i + 1) * n_features]
        if d >= 0:
            if d < n_rows:
                block[d:] = x[: n_rows - d]
        elif -d < n_rows:
            block[: n_rows + d] = x[-d:]
    return out


@dataclass(frozen=True)
class DesignPreset:
    """Choices that turn features into a design matrix, and the matching ridge alphas.

    Parameters
    ----------
    name : str
    delays : tuple of int, default (1, 2, 3, 4)
        FIR delays in TRs.
    lanczos_window : int, default 3
    cutoff_mult : float, default 1.0
        Lanczos cutoff as a multiple of ``1 / TR``.
    zscore : bool, default True
        Z-score every feature column within each run (after trimming).
    delays_across_runs : bool, default False
        Add the delays to the stacked runs (Huth-lab convention) instead of to
        each run separately.
    alphas : tuple of float
        Default ridge regularisation grid for designs built with this preset.
    """

    name: str
    delays: tuple[int, ...] = (1, 2, 3, 4)
    lanczos_window: int = 3
    cutoff_mult: float = 1.0
    zscore: bool = True
    delays_across_runs: bool = False
    alphas: tuple[float, ...] = tuple(np.logspace(0, 6, 13).tolist())

    def __post_init__(self):
        object.__setattr__(self, "delays", tuple(int(d) for d in self.delays))
        object.__setattr__(self, "alphas", tuple(float(a) for a in self.alphas))
        if not self.delays:
            raise ValueError("a preset needs at least one delay")
        if not self.alphas or any(a <= 0 for a in self.alphas):
            raise ValueError("alphas must be a non-empty sequence of positive numbers")


#: Named presets. ``default`` uses half-decade alpha steps over six decades: with
#: z-scored columns the eigenvalues of X'X grow with both the number of TRs (10^3–10^4)
#: and the number of correlated delayed features (10^2–10^4), so the best per-voxel
#: alpha can sit anywhere from near least squares to ~10^6; a grid that a voxel's
#: choice hits at an edge should be widened.
PRESETS: dict[str, DesignPreset] = {
    "huth": DesignPreset(
        name="huth",
        delays_across_runs=True,
        # the Huth grid logspace(1, 3, 10), squared: that code penalises alpha**2
        alphas=tuple((np.logspace(1, 3, 10) ** 2).tolist()),
    ),
    "default": DesignPreset(
        name="default",
        delays_across_runs=False,
        alphas=tuple(np.logspace(0, 6, 13).tolist()),
    ),
}


def get_preset(name_or_preset: str | DesignPreset) -> DesignPreset:
    """The preset of that name (``"huth"``, ``"default"``), or the preset itself."""
    if isinstance(name_or_preset, DesignPreset):
        return name_or_preset
    try:
        return PRESETS[name_or_preset]
    except (KeyError, TypeError):
        raise ValueError(
            f"unknown design preset {name_or_preset!r}; expected one of {sorted(PRESETS)}"
        ) from None


def _warn_if_disjoint(features: StimulusFeatures, run: Run, reach: float) -> None:
    """Warn when no event is within the kernel's reach of any kept TR of the run."""
    grid = run.response_grid.times
    times = np.asarray(features.times, dtype=np.float64)
    if len(grid) == 0:
        return
    near = (times >= grid[0] - reach) & (times <= grid[-1] + reach)
    if not np.any(near):
        span = f"[{times.min():.1f}, {times.max():.1f}] s" if len(times) else "nothing"
        warnings.warn(
            f"{features.path or 'features'}: event times span {span} but the TRs of run "
            f"{run.name!r} ({run.subject}) span [{grid[0]:.1f}, {grid[-1]:.1f}] s; "
            "its design rows are all zero",
            stacklevel=3,
        )


def run_features(
    features: StimulusFeatures, run: Run, preset: str | DesignPreset = "default"
) -> np.ndarray:
    """Features of one run on its analysed TRs, before delays.

    Event-level features are Lanczos-resampled to the run's full TR grid,
    the first ``run.trim_start`` and last ``run.trim_end`` rows are dropped,
    and the columns are z-scored within the run (if the preset says so).
    TR-level features must already have one row per analysed TR; they are only
    z-scored.

    Parameters
    ----------
    features : StimulusFeatures
    run : Run
    preset : str or DesignPreset, default "default"

    Returns
    -------
    ndarray of shape (run.n_trs, n_features), float64

    Raises
    ------
    BrainencInputError
        If the features' shape does not fit the run.
    """
    preset = get_preset(preset)
    data = np.asarray(features.data)
    if data.ndim != 2:
        raise BrainencInputError(
            features.path, f"features must be 2-D (events x features), got shape {data.shape}"
        )
    if features.level == "tr":
        if data.shape[0] != run.n_trs:
            raise BrainencInputError(
                features.path,
                f"TR-level features have {data.shape[0]} rows but run {run.name!r} "
                f"({run.subject}) has {run.n_trs} TRs",
            )
        kept = data.astype(np.float64)
    elif features.level == "event":
        if features.times is None:
            raise BrainencInputError(features.path, "event-level features need event times")
        grid = run.tr_grid
        _warn_if_disjoint(features, run, reach=preset.lanczos_window * grid.tr / preset.cutoff_mult)
        resampled = lanczos_resample(
            data, features.times, grid.times,
            window=preset.lanczos_window, cutoff_mult=preset.cutoff_mult, tr=grid.tr,
        )
        kept = resampled[run.trim_start: len(grid) - run.trim_end]
    else:
        raise BrainencInputError(
            features.path, f"features level must be 'event' or 'tr', got {features.level!r}"
        )
    return zscore_columns(kept) if preset.zscore else kept


def build_design(
    features: Sequence[StimulusFeatures],
    runs: Sequence[Run],
    preset: str | DesignPreset = "default",
) -> list[np.ndarray]:
    """Delayed design matrices, one per run.

    Parameters
    ----------
    features : sequence of StimulusFeatures
        The features of each run's stimulus, in the order of ``runs``.
    runs : sequence of Run
    preset : str or DesignPreset, default "default"
        ``"huth"`` adds the delays to the stacked runs (rows at the start of a
        run see the end of the previous run); ``"default"`` adds them per run
        (zeros at each run start).

    Returns
    -------
    list of ndarray of shape (run.n_trs, n_features * n_delays), float32

    Raises
    ------
    BrainencInputError
        If the runs' features differ in width, or features do not fit a run.

    Warns
    -----
    UserWarning
        When no event of a run lies within the Lanczos window of any of its
        analysed TRs (its design rows are then all zero).
    """
    preset = get_preset(preset)
    if len(features) != len(runs):
        raise ValueError(f"got features for {len(features)} runs but {len(runs)} runs")
    if not runs:
        return []
    width = np.shape(features[0].data)[-1]
    for feats, run in zip(features, runs):
        other = np.shape(feats.data)[-1]
        if other != width:
            raise BrainencInputError(
                feats.path,
                f"features of run {run.name!r} have {other} columns but those of run "
                f"{runs[0].name!r} ({features[0].path}) have {width}",
            )
    per_run = [run_features(feats, run, preset) for feats, run in zip(features, runs)]
    if preset.delays_across_runs:
        stacked = add_delays(np.concatenate(per_run, axis=0), preset.delays)
        bounds = np.cumsum([len(x) for x in per_run])[:-1]
        delayed = np.split(stacked, bounds, axis=0)
    else:
        delayed = [add_delays(x, preset.delays) for x in per_run]
    return [np.ascontiguousarray(x, dtype=np.float32) for x in delayed]

"""Per-channel standardisation of gesture windows, fitted on training windows only."""
from __future__ import annotations

from dataclasses import replace

import numpy as np

from .windowing import Windows

__all__ = ["ChannelScaler"]


def _weighted_stats(x: np.ndarray, weight: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    total = weight.sum()
    mean = weight @ x.astype(np.float64) / total
    var = weight @ (x.astype(np.float64) - mean) ** 2 / total
    return mean, np.sqrt(var)


class ChannelScaler:
    """Standardise each EMG and each ACC channel with training statistics.

    :meth:`fit` takes the mean and standard deviation (``ddof=0``) of every
    channel over all samples of all training windows: a sample covered by
    ``k`` overlapping windows counts ``k`` times, exactly as if the windows
    were stacked. EMG and ACC are scaled separately. Fit on the training
    split only and transform both splits, so nothing of the test split enters
    the statistics. A channel with zero deviation keeps scale 1.

    Attributes
    ----------
    emg_mean_, emg_scale_ : numpy.ndarray
        ``(12,)`` per-channel EMG mean and standard deviation.
    acc_mean_, acc_scale_ : numpy.ndarray
        ``(36,)`` per-channel ACC mean and standard deviation.

    Examples
    --------
    >>> scaler = ChannelScaler().fit(train)            # doctest: +SKIP
    >>> train, test = scaler.transform(train), scaler.transform(test)  # doctest: +SKIP
    """

    def fit(self, windows: Windows) -> ChannelScaler:
        """Learn per-channel statistics from ``windows`` (the training windows)."""
        if len(windows) == 0:
            raise ValueError("cannot fit on zero windows")
        weight = windows.coverage().astype(np.float64)
        covered = weight > 0
        self.emg_mean_, emg_sd = _weighted_stats(windows.source_emg[covered], weight[covered])
        self.acc_mean_, acc_sd = _weighted_stats(windows.source_acc[covered], weight[covered])
        self.emg_scale_ = np.where(emg_sd > 0, emg_sd, 1.0)
        self.acc_scale_ = np.where(acc_sd > 0, acc_sd, 1.0)
        return self

    def transform(self, windows: Windows) -> Windows:
        """The same windows over standardised signals (float32 copies)."""
        if not hasattr(self, "emg_mean_"):
            raise RuntimeError("ChannelScaler is not fitted; call fit on the training windows first")
        emg = (windows.source_emg - self.emg_mean_) / self.emg_scale_
        acc = (windows.source_acc - self.acc_mean_) / self.acc_scale_
        return replace(windows, source_emg=emg.astype(np.float32), source_acc=acc.astype(np.float32))

    def fit_transform(self, windows: Windows) -> Windows:
        """:meth:`fit` then :meth:`transform` on the same windows."""
        return self.fit(windows).transform(windows)

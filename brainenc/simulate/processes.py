"""Random processes the simulation draws from: stationary AR(1) series, Gaussian kernels."""
from __future__ import annotations

import numpy as np


def ar1_series(rng: np.random.Generator, n_rows: int, n_cols: int, rho: float) -> np.ndarray:
    """Independent stationary AR(1) series along rows, unit marginal variance, float32.

    ``x[0] ~ N(0, 1)`` and ``x[t] = rho * x[t-1] + sqrt(1 - rho**2) * e[t]``.

    Parameters
    ----------
    rng : numpy.random.Generator
    n_rows, n_cols : int
        Time points and independent series.
    rho : float
        Lag-one autocorrelation, in [0, 1).

    Returns
    -------
    ndarray of float32, shape (n_rows, n_cols)
    """
    series = rng.standard_normal((n_rows, n_cols), dtype=np.float32)
    gain = np.float32(np.sqrt(1.0 - rho**2))
    rho32 = np.float32(rho)
    for t in range(1, n_rows):
        series[t] *= gain
        series[t] += rho32 * series[t - 1]
    return series


def gaussian_kernel(sigma_samples: float) -> np.ndarray:
    """Gaussian smoothing kernel of unit sum, 4 standard deviations on each side."""
    half = int(np.ceil(4 * sigma_samples))
    x = np.arange(-half, half + 1)
    kernel = np.exp(-0.5 * (x / sigma_samples) ** 2)
    return kernel / kernel.sum()

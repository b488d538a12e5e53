"""Haemodynamics: double-gamma HRFs of several peak shapes and the convolution of latents.

The neural drive runs on a fine grid (``DT``); it is convolved with each HRF in
use and sampled at the times of the written volumes. Vertices share HRFs
(their shapes are quantised), so the latents are convolved once per distinct
HRF, never per vertex.
"""
from __future__ import annotations

from collections.abc import Iterable

import numpy as np
from scipy import signal as sps
from scipy import stats

#: Fine time step of the neural drive and of the HRF convolution (seconds).
DT = 0.1
#: Duration covered by the HRF (seconds).
HRF_LENGTH_S = 32.0
#: Shape of the canonical (SPM) HRF's main gamma; its undershoot has shape + 10.
CANONICAL_PEAK_SHAPE = 6.0
_UNDERSHOOT_DELAY = 10.0
_UNDERSHOOT_RATIO = 6.0


def canonical_hrf(dt: float = DT, length: float = HRF_LENGTH_S,
                  peak_shape: float = CANONICAL_PEAK_SHAPE) -> np.ndarray:
    """Double-gamma haemodynamic response of unit area (SPM's canonical one by default).

    ``h(t) = g(t; a) - g(t; a + 10) / 6`` with ``g(t; a)`` the gamma density of
    shape ``a = peak_shape`` and scale 1 s: the response peaks near ``a - 1``
    seconds (5 s for the canonical ``a = 6``) and undershoots near ``a + 9`` s.
    The samples are scaled so that ``h.sum() * dt == 1``.

    Parameters
    ----------
    dt : float
        Sampling step in seconds.
    length : float
        Duration covered, in seconds (samples at ``0, dt, ... < length``).
    peak_shape : float
        Shape ``a`` of the main gamma density, greater than 1.

    Returns
    -------
    ndarray of shape (ceil(length / dt),)

    Examples
    --------
    >>> h = canonical_hrf(dt=0.1, peak_shape=5.0)
    >>> round(float(np.argmax(h) * 0.1), 1)
    4.0
    """
    if dt <= 0 or length <= dt:
        raise ValueError(f"need 0 < dt < length, got dt={dt}, length={length}")
    if not peak_shape > 1.0:
        raise ValueError(f"peak_shape must be greater than 1, got {peak_shape}")
    t = np.arange(int(np.ceil(length / dt))) * dt
    h = (stats.gamma.pdf(t, peak_shape)
         - stats.gamma.pdf(t, peak_shape + _UNDERSHOOT_DELAY) / _UNDERSHOOT_RATIO)
    return h / (h.sum() * dt)


def convolved_latents(
    event_times: np.ndarray,
    latents: dict[str, np.ndarray],
    impulses: bool,
    duration: float,
    sample_times: np.ndarray,
    shapes: Iterable[float],
) -> dict[float, dict[str, np.ndarray]]:
    """HRF-convolved latent time courses of one stimulus, sampled at ``sample_times``.

    Parameters
    ----------
    event_times : ndarray of shape (n_events,)
        Word midpoints or frame times on the stimulus clock.
    latents : dict of str to ndarray of shape (n_events, k)
        The latents to convolve (``"concept"`` and one other).
    impulses : bool
        True: each event is an impulse of unit area at its time (story words).
        False: each event holds its value until the next (movie frames), from
        0 to ``duration``.
    duration : float
        Stimulus length in seconds.
    sample_times : ndarray of shape (n_rows,)
        Times of the written volumes; the fine grid is linearly interpolated there.
    shapes : iterable of float
        HRF peak shapes to convolve with (see :func:`canonical_hrf`).

    Returns
    -------
    dict
        ``{shape: {latent name: (n_rows, k) array}}``.
    """
    t0 = min(0.0, float(sample_times.min())) - HRF_LENGTH_S
    t1 = max(duration, float(sample_times.max())) + DT
    fine = t0 + np.arange(int(np.ceil((t1 - t0) / DT)) + 1) * DT
    names = list(latents)
    stacked = np.concatenate([latents[name] for name in names], axis=1)
    drive = np.zeros((len(fine), stacked.shape[1]))
    if impulses:
        # An impulse of unit area: height 1 / dt over one fine step.
        bins = np.round((event_times - t0) / DT).astype(int)
        np.add.at(drive, bins, stacked / DT)
    else:
        inside = (fine >= 0.0) & (fine < duration)
        frame = np.searchsorted(event_times, fine[inside], side="right") - 1
        drive[inside] = stacked[np.clip(frame, 0, len(stacked) - 1)]
    left = np.clip(np.searchsorted(fine, sample_times, side="right") - 1, 0, len(fine) - 2)
    weight = ((sample_times - fine[left]) / (fine[left + 1] - fine[left]))[:, None]
    edges = np.cumsum([0] + [latents[name].shape[1] for name in names])
    result = {}
    for shape in shapes:
        hrf = canonical_hrf(peak_shape=shape)
        response = sps.fftconvolve(drive, hrf[:, None], axes=0)[: len(drive)] * DT
        sampled = (1.0 - weight) * response[left] + weight * response[left + 1]
        result[shape] = {name: sampled[:, edges[i]:edges[i + 1]] for i, name in enumerate(names)}
    return result

"""NinaPro DB2 exercise files: reading, writing and synthetic recordings.

A DB2 exercise file ``S<k>_E<e>_A1.mat`` (MATLAB v5) holds, per sample, the
variables used here (Atzori et al. 2014, Scientific Data 1:140053; the DB2
page https://ninapro.hevs.ch/instructions/DB2.html):

* ``emg`` ``(T, 12)``: sEMG of the 12 Delsys Trigno electrodes (columns 1-8
  equally spaced around the forearm, 9-10 flexor / extensor digitorum, 11-12
  biceps / triceps);
* ``acc`` ``(T, 36)``: three-axis accelerometers of the 12 electrodes;
* ``stimulus`` / ``repetition`` ``(T, 1)``: the movement shown to the subject
  and its repetition, timed by the cue;
* ``restimulus`` / ``rerepetition`` ``(T, 1)``: the same with the movement
  boundaries refined a posteriori to the real movement (Gijsberts et al. 2014,
  IEEE TNSRE 22(4):735); ``0`` is rest;
* ``subject``, ``exercise``: scalars.

The sEMG is sampled at 2 kHz; the accelerometers (148 Hz natively) are
upsampled to 2 kHz so every variable shares one time base. DB2 files carry
no sampling-rate variable: :func:`load_ninapro_db2` uses a ``frequency`` or
``fs`` variable when a file has one, else :data:`DB2_FS`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.io

from ...errors import BrainencInputError

__all__ = [
    "DB2_FS",
    "N_ACC",
    "N_EMG",
    "SYNTHETIC_STRUCTURES",
    "Recording",
    "load_ninapro_db2",
    "synthetic_recording",
    "write_ninapro_db2",
]

DB2_FS = 2000.0
"""Sampling rate (Hz) of every variable of a DB2 file."""
N_EMG = 12
"""sEMG channels of DB2."""
N_ACC = 36
"""Accelerometer channels of DB2 (12 electrodes x 3 axes)."""
SYNTHETIC_STRUCTURES = ("unimodal", "interaction")

_RATE_FIELDS = ("frequency", "fs")


@dataclass(frozen=True)
class Recording:
    """One DB2 exercise file: signals and per-sample labels on one time base.

    Attributes
    ----------
    emg : numpy.ndarray
        ``(T, 12)`` sEMG.
    acc : numpy.ndarray
        ``(T, 36)`` accelerometers.
    restimulus : numpy.ndarray
        ``(T,)`` int64 refined movement label, 0 = rest.
    rerepetition : numpy.ndarray
        ``(T,)`` int64 repetition of ``restimulus`` (0 during rest in DB2).
    fs : float
        Sampling rate in Hz.
    stimulus, repetition : numpy.ndarray or None
        ``(T,)`` int64 cue-timed label and repetition, when present.
    subject, exercise : int or None
        From the file, when present.
    path : pathlib.Path or None
        The file it was read from.
    """

    emg: np.ndarray
    acc: np.ndarray
    restimulus: np.ndarray
    rerepetition: np.ndarray
    fs: float = DB2_FS
    stimulus: np.ndarray | None = None
    repetition: np.ndarray | None = None
    subject: int | None = None
    exercise: int | None = None
    path: Path | None = None

    @property
    def n_samples(self) -> int:
        """Number of samples ``T``."""
        return int(self.emg.shape[0])


def _signal(path: Path, mat: dict, name: str, n_channels: int) -> np.ndarray:
    if name not in mat:
        raise BrainencInputError(path, f"no '{name}' variable; a DB2 file has '{name}' (T, {n_channels})")
    x = np.asarray(mat[name])
    if x.ndim != 2 or x.shape[1] != n_channels or not np.issubdtype(x.dtype, np.number):
        raise BrainencInputError(
            path,
            f"'{name}' must be a numeric (T, {n_channels}) matrix (DB2 has {n_channels} "
            f"{name} channels), got {x.dtype} {x.shape}",
        )
    x = x.astype(np.float64, copy=False)
    bad = ~np.isfinite(x)
    if bad.any():
        row = int(np.argwhere(bad)[0, 0])
        raise BrainencInputError(
            path, f"'{name}' has {int(bad.sum())} NaN or infinite values (first at row {row})"
        )
    return x


def _labels(path: Path, mat: dict, name: str) -> np.ndarray | None:
    if name not in mat:
        return None
    x = np.asarray(mat[name])
    if x.ndim != 2 or x.shape[1] != 1 or not np.issubdtype(x.dtype, np.number):
        raise BrainencInputError(path, f"'{name}' must be a numeric (T, 1) column, got {x.dtype} {x.shape}")
    x = x[:, 0].astype(np.float64)
    bad = ~np.isfinite(x)
    if bad.any():
        raise BrainencInputError(
            path, f"'{name}' has {int(bad.sum())} NaN or infinite values (first at row {int(np.argmax(bad))})"
        )
    if (x < 0).any() or (x != np.round(x)).any():
        raise BrainencInputError(path, f"'{name}' must hold non-negative integers")
    return x.astype(np.int64)


def _scalar(path: Path, mat: dict, name: str) -> float | None:
    if name not in mat:
        return None
    x = np.asarray(mat[name])
    if x.size != 1 or not np.issubdtype(x.dtype, np.number):
        raise BrainencInputError(path, f"'{name}' must be a numeric scalar, got {x.dtype} {x.shape}")
    return float(x.reshape(()))


def _sampling_rate(path: Path, mat: dict) -> float:
    rates = {n: _scalar(path, mat, n) for n in _RATE_FIELDS if n in mat}
    if not rates:
        return DB2_FS
    values = set(rates.values())
    if len(values) > 1:
        raise BrainencInputError(path, f"sampling-rate variables disagree: {rates}")
    fs = values.pop()
    if not (math.isfinite(fs) and fs > 0):
        raise BrainencInputError(path, f"sampling rate must be positive, got {rates}")
    return fs


def load_ninapro_db2(path: str | Path) -> Recording:
    """Read a NinaPro DB2 exercise file (``S<k>_E<e>_A1.mat``).

    Parameters
    ----------
    path : str or pathlib.Path
        A MATLAB v5 file with ``emg`` ``(T, 12)``, ``acc`` ``(T, 36)``,
        ``restimulus`` and ``rerepetition`` ``(T, 1)``; ``stimulus``,
        ``repetition``, ``subject``, ``exercise`` and a ``frequency`` or ``fs``
        sampling rate are read when present. Other variables (``glove``,
        ``force``, ...) are ignored.

    Returns
    -------
    Recording
        Labels as ``(T,)`` int64; the sampling rate from the file or
        :data:`DB2_FS` (2000 Hz).

    Raises
    ------
    brainenc.errors.BrainencInputError
        When the file cannot be read or a variable is missing, has the wrong
        shape or channel count, a length that differs from ``emg``, NaN or
        infinite values, or labels that are not non-negative integers.
    """
    path = Path(path)
    try:
        mat = scipy.io.loadmat(str(path))
    except FileNotFoundError:
        raise BrainencInputError(path, "no such file") from None
    except NotImplementedError as err:  # MATLAB v7.3 (HDF5) files
        raise BrainencInputError(path, f"not a MATLAB v5 file ({err}); DB2 files are v5") from None
    except (ValueError, TypeError, OSError) as err:
        raise BrainencInputError(path, f"cannot read as a MATLAB .mat file: {err}") from None

    emg = _signal(path, mat, "emg", N_EMG)
    acc = _signal(path, mat, "acc", N_ACC)
    if "restimulus" not in mat:
        hint = (" The file has 'stimulus'," if "stimulus" in mat else "") + (
            " 'stimulus' is the unrefined, cue-timed label; DB2 provides 'restimulus' "
            "(movement boundaries refined to the real movement), which is the label used here."
        )
        raise BrainencInputError(path, "no 'restimulus' variable." + hint)
    if "rerepetition" not in mat:
        raise BrainencInputError(
            path,
            "no 'rerepetition' variable; DB2 provides 'rerepetition', the repetition of "
            "'restimulus' ('repetition' follows the unrefined 'stimulus')",
        )
    labels = {n: _labels(path, mat, n) for n in ("restimulus", "rerepetition", "stimulus", "repetition")}
    n = emg.shape[0]
    for name, x in [("acc", acc)] + list(labels.items()):
        if x is not None and x.shape[0] != n:
            raise BrainencInputError(
                path, f"'{name}' has {x.shape[0]} samples but 'emg' has {n}; DB2 variables share one time base"
            )
    subject = _scalar(path, mat, "subject")
    exercise = _scalar(path, mat, "exercise")
    return Recording(
        emg=emg,
        acc=acc,
        restimulus=labels["restimulus"],
        rerepetition=labels["rerepetition"],
        fs=_sampling_rate(path, mat),
        stimulus=labels["stimulus"],
        repetition=labels["repetition"],
        subject=None if subject is None else int(subject),
        exercise=None if exercise is None else int(exercise),
        path=path,
    )


def write_ninapro_db2(path: str | Path, recording: Recording) -> Path:
    """Write a recording as a DB2 exercise file (MATLAB v5).

    Signals are written as double matrices, labels as ``(T, 1)`` double
    columns and ``subject`` / ``exercise`` as ``1 x 1`` scalars, the layout
    :func:`load_ninapro_db2` reads. Optional fields that are None are left out.
    Like real DB2 files, the file has no sampling-rate variable unless
    ``recording.fs`` differs from :data:`DB2_FS`; then a ``frequency``
    variable keeps it.

    Parameters
    ----------
    path : str or pathlib.Path
        Output file (conventionally ``S<k>_E<e>_A1.mat``).
    recording : Recording
        What to write, e.g. from :func:`synthetic_recording`.

    Returns
    -------
    pathlib.Path
        ``path``.
    """
    path = Path(path)
    out: dict[str, np.ndarray] = {
        "emg": np.asarray(recording.emg, dtype=np.float64),
        "acc": np.asarray(recording.acc, dtype=np.float64),
    }
    for name in ("stimulus", "restimulus", "repetition", "rerepetition"):
        x = getattr(recording, name)
        if x is not None:
            out[name] = np.asarray(x, dtype=np.float64).reshape(-1, 1)
    for name in ("subject", "exercise"):
        x = getattr(recording, name)
        if x is not None:
            out[name] = np.array([[float(x)]])
    if float(recording.fs) != DB2_FS:
        out["frequency"] = np.array([[float(recording.fs)]])
    scipy.io.savemat(str(path), out, format="5", do_compression=False, oned_as="column")
    return path


def synthetic_recording(
    structure: str = "unimodal",
    n_movements: int = 4,
    n_repetitions: int = 6,
    movement_samples: int = 200,
    rest_samples: int = 100,
    signal: float = 1.0,
    subject: int = 1,
    exercise: int = 1,
    cue_lead: int = 10,
    fs: float = DB2_FS,
    seed: int = 0,
    block_samples: int | None = None,
) -> Recording:
    """A small DB2-like recording with planted gesture information.

    The protocol follows DB2: each movement is repeated ``n_repetitions``
    times in a row, every repetition preceded by rest, then the next movement;
    a final rest closes the file. ``restimulus`` / ``rerepetition`` mark the
    movement samples (0 during rest); ``stimulus`` / ``repetition`` are the
    same segments starting and ending ``cue_lead`` samples earlier (the cue
    precedes the movement).

    Signals are unit-variance noise, scaled like DB2 (EMG in volts, about
    1e-5; ACC around per-channel gravity offsets). On top, during each
    movement segment, a constant per-channel pattern of amplitude ``signal``
    (in noise units):

    * ``"unimodal"``: pattern ``P[m]`` of movement ``m`` in the EMG only; the
      ACC is noise, so the gesture can be read from the EMG alone.
    * ``"interaction"``: each segment draws ``e`` uniformly in
      ``{0..M-1}`` and sets ``a = (m - 1 - e) mod M``; the EMG shows pattern
      ``P[e]``, the ACC pattern ``Q[a]``. Each modality alone is independent
      of the movement (chance accuracy); both together determine it. With
      two movements this is the XOR of an EMG bit and an ACC bit. ``e`` is
      drawn again every ``block_samples`` samples of a segment (default: once
      per segment), so that a file of a few repetitions holds every
      combination many times.

    Parameters
    ----------
    structure : {"unimodal", "interaction"}
        Where the gesture information is.
    n_movements, n_repetitions : int
        Movements ``1..n_movements`` and repetitions ``1..n_repetitions``.
    movement_samples, rest_samples : int
        Length of each movement segment and of each rest.
    signal : float
        Pattern amplitude relative to the noise.
    subject, exercise : int
        Written to the recording.
    cue_lead : int
        How many samples the unrefined ``stimulus`` leads ``restimulus``.
    fs : float
        Sampling rate.
    seed : int
        Seed of the patterns, the noise and the interaction draws.
    block_samples : int, optional
        With ``"interaction"``: samples between draws of ``e`` within a
        segment, counted from its start (default ``movement_samples``). Windows
        whose length and stride equal it and divide the segment start hold one
        draw each.

    Returns
    -------
    Recording
    """
    if structure not in SYNTHETIC_STRUCTURES:
        raise ValueError(f"structure must be one of {SYNTHETIC_STRUCTURES}, got {structure!r}")
    if n_movements < 2 or n_repetitions < 1:
        raise ValueError("need at least 2 movements and 1 repetition")
    if movement_samples < 1 or rest_samples <= cue_lead or cue_lead < 0:
        raise ValueError("need movement_samples >= 1 and 0 <= cue_lead < rest_samples")
    block = movement_samples if block_samples is None else int(block_samples)
    if block < 1:
        raise ValueError(f"block_samples must be >= 1, got {block_samples}")
    rng = np.random.default_rng(seed)
    period = rest_samples + movement_samples
    n = n_movements * n_repetitions * period + rest_samples
    restimulus = np.zeros(n, dtype=np.int64)
    rerepetition = np.zeros(n, dtype=np.int64)
    stimulus = np.zeros(n, dtype=np.int64)
    repetition = np.zeros(n, dtype=np.int64)
    emg_pattern = np.zeros((n, N_EMG))
    acc_pattern = np.zeros((n, N_ACC))

    # +-1 per channel, so `signal` is the amplitude on every channel
    p = rng.choice([-1.0, 1.0], size=(n_movements, N_EMG))
    q = rng.choice([-1.0, 1.0], size=(n_movements, N_ACC))
    segment = 0
    for m in range(1, n_movements + 1):
        for r in range(1, n_repetitions + 1):
            start = segment * period + rest_samples
            stop = start + movement_samples
            restimulus[start:stop] = m
            rerepetition[start:stop] = r
            stimulus[start - cue_lead : stop - cue_lead] = m
            repetition[start - cue_lead : stop - cue_lead] = r
            if structure == "unimodal":
                emg_pattern[start:stop] = p[m - 1]
            else:
                for first in range(start, stop, block):
                    last = min(first + block, stop)
                    e = int(rng.integers(n_movements))
                    emg_pattern[first:last] = p[e]
                    acc_pattern[first:last] = q[(m - 1 - e) % n_movements]
            segment += 1

    emg = 1e-5 * (rng.standard_normal((n, N_EMG)) + signal * emg_pattern)
    gravity = rng.uniform(-1.0, 1.0, size=N_ACC)
    acc = gravity + 0.05 * (rng.standard_normal((n, N_ACC)) + signal * acc_pattern)
    return Recording(
        emg=emg,
        acc=acc,
        restimulus=restimulus,
        rerepetition=rerepetition,
        fs=float(fs),
        stimulus=stimulus,
        repetition=repetition,
        subject=int(subject),
        exercise=int(exercise),
    )

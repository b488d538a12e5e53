"""Labelled windows of NinaPro recordings, repetition splits and torch batches.

A window of ``length`` samples starts every ``stride`` samples. Its label is
the ``restimulus`` value shared by all its samples: **windows spanning a label
change are dropped** (as are windows spanning a repetition change), so no
window mixes a movement with rest or with another movement.

In DB2, ``rerepetition`` is 0 during rest. Each rest sample is given the
repetition of the movement before it (rest before the first movement: the
first repetition that follows), so rest windows go with the repetition they
close and repetition splits keep rest on both sides.

Windows keep the recording's signals once and materialise ``(N, length, C)``
arrays only on request (:attr:`Windows.emg`, :meth:`Windows.to_tensors`) or
one batch at a time (:meth:`Windows.batches`): at 2 kHz, overlapping windows
copied out would take tens of times the recording's memory.
"""
from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace

import numpy as np
import torch

from ..training import seeded_batches
from .ninapro import Recording

__all__ = [
    "REST_MODES",
    "TEST_REPETITIONS",
    "TRAIN_REPETITIONS",
    "Windows",
    "concat_windows",
    "ms_to_samples",
    "split_by_repetition",
    "windows",
]

REST_MODES = ("drop", "keep", "class")
TRAIN_REPETITIONS = (1, 3, 4, 6)
"""Training repetitions of the standard NinaPro protocol (Atzori et al. 2014)."""
TEST_REPETITIONS = (2, 5)
"""Test repetitions of the standard NinaPro protocol."""


@dataclass(frozen=True)
class Windows:
    """Windows over one or more recordings' signals.

    Window ``i`` covers samples ``starts[i] : starts[i] + length`` of
    :attr:`source_emg` / :attr:`source_acc` (the recordings, stacked in time).

    Attributes
    ----------
    source_emg : numpy.ndarray
        ``(T, 12)`` float32 signals the windows index.
    source_acc : numpy.ndarray
        ``(T, 36)`` float32.
    starts : numpy.ndarray
        ``(N,)`` int64 first sample of each window.
    labels : numpy.ndarray
        ``(N,)`` int64 movement (``restimulus``) of each window, 0 = rest.
    repetitions : numpy.ndarray
        ``(N,)`` int64 repetition of each window.
    subjects : numpy.ndarray
        ``(N,)`` int64 subject of each window (0 when unknown).
    length : int
        Window length in samples.
    fs : float
        Sampling rate in Hz.
    """

    source_emg: np.ndarray
    source_acc: np.ndarray
    starts: np.ndarray
    labels: np.ndarray
    repetitions: np.ndarray
    subjects: np.ndarray
    length: int
    fs: float

    def __len__(self) -> int:
        return int(self.starts.shape[0])

    @property
    def classes(self) -> np.ndarray:
        """Sorted distinct labels."""
        return np.unique(self.labels)

    def _index(self, rows: np.ndarray) -> np.ndarray:
        return self.starts[rows][:, None] + np.arange(self.length)[None, :]

    @property
    def emg(self) -> np.ndarray:
        """``(N, length, 12)`` EMG windows (a copy)."""
        return self.source_emg[self._index(np.arange(len(self)))]

    @property
    def acc(self) -> np.ndarray:
        """``(N, length, 36)`` ACC windows (a copy)."""
        return self.source_acc[self._index(np.arange(len(self)))]

    def select(self, mask: np.ndarray) -> Windows:
        """The windows where ``mask`` is True (or at the given indices), same signals."""
        rows = np.asarray(mask)
        return replace(
            self,
            starts=self.starts[rows],
            labels=self.labels[rows],
            repetitions=self.repetitions[rows],
            subjects=self.subjects[rows],
        )

    def coverage(self) -> np.ndarray:
        """``(T,)`` how many windows cover each source sample."""
        n = self.source_emg.shape[0]
        delta = np.zeros(n + 1, dtype=np.int64)
        np.add.at(delta, self.starts, 1)
        np.add.at(delta, self.starts + self.length, -1)
        return np.cumsum(delta[:-1])

    def _targets(self, rows: np.ndarray, classes: Sequence[int] | None) -> np.ndarray:
        labels = self.labels[rows]
        if classes is None:
            return labels
        classes = np.asarray(classes, dtype=np.int64)
        order = np.argsort(classes)
        pos = np.searchsorted(classes, labels, sorter=order)
        pos = np.minimum(pos, len(classes) - 1)
        index = order[pos]
        missing = classes[index] != labels
        if missing.any():
            raise ValueError(
                f"labels {sorted(set(labels[missing].tolist()))} are not in classes {classes.tolist()}"
            )
        return index

    def _tensors(self, rows, classes, device, dtype):
        index = self._index(rows)
        inputs = {
            "emg": torch.as_tensor(self.source_emg[index], device=device, dtype=dtype),
            "acc": torch.as_tensor(self.source_acc[index], device=device, dtype=dtype),
        }
        targets = torch.as_tensor(self._targets(rows, classes), device=device, dtype=torch.int64)
        return inputs, targets

    def to_tensors(
        self,
        classes: Sequence[int] | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """All windows as model inputs and targets.

        Parameters
        ----------
        classes : sequence of int, optional
            Targets are positions in ``classes`` (pass the training set's
            :attr:`classes` to train and test alike); default: the labels.
        device, dtype
            Of the returned tensors.

        Returns
        -------
        inputs : dict
            ``{"emg": (N, length, 12), "acc": (N, length, 36)}``, the input
            format of the models in :mod:`brainenc.fusion.models.isonet`.
        targets : torch.Tensor
            ``(N,)`` int64.
        """
        return self._tensors(np.arange(len(self)), classes, device, dtype)

    def batches(
        self,
        batch_size: int,
        seed: int,
        epoch: int,
        classes: Sequence[int] | None = None,
        shuffle: bool = True,
        drop_last: bool = False,
        device: torch.device | str | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> Iterator[tuple[dict[str, torch.Tensor], torch.Tensor]]:
        """Mini-batches as in :meth:`to_tensors`, in an order fixed by ``(seed, epoch)``.

        The same ``(seed, epoch)`` gives the same batches; epochs differ. Only
        one batch is materialised at a time.

        Parameters
        ----------
        batch_size : int
            Windows per batch.
        seed, epoch : int
            Seed of the order, as in :func:`brainenc.tasks.training.seeded_batches`
            (pass ``config.seed`` and the epoch given to ``train_batches``).
        classes, device, dtype
            As in :meth:`to_tensors`.
        shuffle : bool
            False keeps the stored order.
        drop_last : bool
            Drop a final batch smaller than ``batch_size``.

        Yields
        ------
        inputs : dict
            ``{"emg": (B, length, 12), "acc": (B, length, 36)}``.
        targets : torch.Tensor
            ``(B,)`` int64.
        """
        if shuffle:
            rows = seeded_batches(len(self), batch_size, seed, epoch, drop_last)
        else:
            if batch_size < 1:
                raise ValueError(f"batch_size must be >= 1, got {batch_size}")
            stop = len(self) - len(self) % batch_size if drop_last else len(self)
            rows = [np.arange(i, min(i + batch_size, stop)) for i in range(0, stop, batch_size)]
        for index in rows:
            yield self._tensors(index, classes, device, dtype)


def ms_to_samples(ms: float, fs: float) -> int:
    """Number of samples in ``ms`` milliseconds at ``fs`` Hz, rounded (at least 1).

    Examples
    --------
    >>> ms_to_samples(200, 2000)
    400
    """
    n = int(round(ms * fs / 1000.0))
    if n < 1:
        raise ValueError(f"{ms} ms at {fs} Hz is less than one sample")
    return n


def _fill_rest_repetitions(labels: np.ndarray, reps: np.ndarray) -> np.ndarray:
    """Rest samples with repetition 0 take the previous movement's repetition."""
    reps = reps.copy()
    unknown = (labels == 0) & (reps == 0)
    known = np.flatnonzero(~unknown)
    if known.size == 0:
        return reps
    # index of the last known sample at or before each sample (first known before it)
    last = np.maximum.accumulate(np.where(~unknown, np.arange(reps.size), -1))
    last[last < 0] = known[0]
    return reps[last]


def windows(
    recording: Recording,
    length: int,
    stride: int,
    rest: str = "drop",
    n_rest: int | None = None,
) -> Windows:
    """Cut a recording into labelled windows.

    Parameters
    ----------
    recording : Recording
        From :func:`~brainenc.tasks.gestures.load_ninapro_db2`.
    length, stride : int
        Window length and step in samples (:func:`ms_to_samples` converts
        milliseconds).
    rest : {"drop", "keep", "class"}
        Rest windows (label 0) are dropped (``"drop"``), all kept as class 0
        (``"keep"``) or kept as class 0 but subsampled (``"class"``) to
        ``n_rest`` windows evenly spread over the recording, so rest is a
        class of about the size of the others.
    n_rest : int, optional
        Rest windows kept with ``rest="class"``; default: the mean number of
        windows per movement, rounded.

    Returns
    -------
    Windows
        In time order. A window whose samples do not share one label and one
        repetition is dropped.
    """
    if rest not in REST_MODES:
        raise ValueError(f"rest must be one of {REST_MODES}, got {rest!r}")
    length, stride = int(length), int(stride)
    if length < 1 or stride < 1:
        raise ValueError(f"length and stride must be >= 1 sample, got {length}, {stride}")
    labels = recording.restimulus
    reps = _fill_rest_repetitions(labels, recording.rerepetition)
    n = labels.shape[0]
    starts = np.arange(0, max(n - length + 1, 0), stride, dtype=np.int64)
    # a window is valid when its first and last samples lie in the same run
    change = np.r_[False, (labels[1:] != labels[:-1]) | (reps[1:] != reps[:-1])]
    run = np.cumsum(change)
    starts = starts[run[starts] == run[starts + length - 1]]
    win_labels = labels[starts]

    is_rest = win_labels == 0
    if rest == "drop":
        starts = starts[~is_rest]
    elif rest == "class":
        moving = win_labels[~is_rest]
        if n_rest is None:
            n_rest = int(round(moving.size / max(np.unique(moving).size, 1)))
        if n_rest < 0:
            raise ValueError(f"n_rest must be >= 0, got {n_rest}")
        rest_rows = np.flatnonzero(is_rest)
        if n_rest < rest_rows.size:
            # evenly spaced positions: distinct, since rest_rows.size > n_rest
            pick = np.linspace(0, rest_rows.size - 1, n_rest).round().astype(np.int64)
            starts = starts[np.sort(np.r_[np.flatnonzero(~is_rest), rest_rows[pick]])]
    subject = 0 if recording.subject is None else int(recording.subject)
    return Windows(
        source_emg=np.ascontiguousarray(recording.emg, dtype=np.float32),
        source_acc=np.ascontiguousarray(recording.acc, dtype=np.float32),
        starts=starts,
        labels=labels[starts].astype(np.int64),
        repetitions=reps[starts].astype(np.int64),
        subjects=np.full(starts.shape, subject, dtype=np.int64),
        length=length,
        fs=float(recording.fs),
    )


def concat_windows(parts: Sequence[Windows]) -> Windows:
    """Windows of several recordings (e.g. subjects) as one set."""
    if not parts:
        raise ValueError("nothing to concatenate")
    first = parts[0]
    for w in parts[1:]:
        if w.length != first.length or w.fs != first.fs:
            raise ValueError(
                f"windows differ in length or rate: {w.length} at {w.fs} Hz vs "
                f"{first.length} at {first.fs} Hz"
            )
    offsets = np.cumsum([0] + [w.source_emg.shape[0] for w in parts[:-1]])
    return Windows(
        source_emg=np.concatenate([w.source_emg for w in parts]),
        source_acc=np.concatenate([w.source_acc for w in parts]),
        starts=np.concatenate([w.starts + o for w, o in zip(parts, offsets)]),
        labels=np.concatenate([w.labels for w in parts]),
        repetitions=np.concatenate([w.repetitions for w in parts]),
        subjects=np.concatenate([w.subjects for w in parts]),
        length=first.length,
        fs=first.fs,
    )


def split_by_repetition(
    windows: Windows,
    train: Sequence[int] = TRAIN_REPETITIONS,
    test: Sequence[int] = TEST_REPETITIONS,
) -> tuple[Windows, Windows]:
    """Train and test windows by repetition number, within every subject.

    The default is the standard NinaPro protocol: repetitions 1, 3, 4 and 6
    train, 2 and 5 test (Atzori et al. 2014, Scientific Data 1:140053; Atzori,
    Cognolato & Müller 2016, Front. Neurorobot. 10:9). Each subject's
    repetitions are split the same way, so every subject is on both sides.
    Windows of other repetitions are left out.

    Parameters
    ----------
    windows : Windows
    train, test : sequence of int
        Disjoint repetition numbers.

    Returns
    -------
    train_windows, test_windows : Windows
    """
    train_set, test_set = {int(r) for r in train}, {int(r) for r in test}
    if not train_set or not test_set:
        raise ValueError("train and test repetitions must not be empty")
    both = train_set & test_set
    if both:
        raise ValueError(f"repetitions {sorted(both)} are in both train and test")
    is_train = np.isin(windows.repetitions, sorted(train_set))
    is_test = np.isin(windows.repetitions, sorted(test_set))
    return windows.select(is_train), windows.select(is_test)

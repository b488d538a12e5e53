"""Gesture classification from NinaPro DB2 sEMG and accelerometers.

The pipeline: read an exercise file (:func:`load_ninapro_db2`), cut it into
labelled windows (:func:`windows`), split by repetition
(:func:`split_by_repetition`), standardise with training statistics
(:class:`ChannelScaler`), feed ``{"emg", "acc"}`` tensors to a model
(:meth:`Windows.to_tensors`, :meth:`Windows.batches`) and score
(:func:`accuracy`, :func:`macro_f1`). :func:`synthetic_recording` and
:func:`write_ninapro_db2` make small files in the DB2 format with gesture
information planted in the EMG only or in an EMG x ACC interaction.

Examples
--------
>>> from brainenc.tasks.gestures import (
...     ChannelScaler, concat_windows, load_ninapro_db2, ms_to_samples,
...     split_by_repetition, windows)
>>> rec = load_ninapro_db2("S1_E1_A1.mat")                       # doctest: +SKIP
>>> w = windows(rec, ms_to_samples(200, rec.fs), ms_to_samples(100, rec.fs))  # doctest: +SKIP
>>> train, test = split_by_repetition(w)                          # doctest: +SKIP
>>> scaler = ChannelScaler().fit(train)                           # doctest: +SKIP
>>> train, test = scaler.transform(train), scaler.transform(test)  # doctest: +SKIP
>>> batches = lambda epoch: train.batches(64, config.seed, epoch, classes=train.classes)  # doctest: +SKIP
>>> loss = lambda model, batch: cross_entropy(model(batch[0]), batch[1])  # doctest: +SKIP

``batches`` and ``loss`` are what :func:`brainenc.tasks.training.train` takes.
"""
from .metrics import accuracy, macro_f1
from .ninapro import (
    DB2_FS,
    N_ACC,
    N_EMG,
    SYNTHETIC_STRUCTURES,
    Recording,
    load_ninapro_db2,
    synthetic_recording,
    write_ninapro_db2,
)
from .normalise import ChannelScaler
from .windowing import (
    REST_MODES,
    TEST_REPETITIONS,
    TRAIN_REPETITIONS,
    Windows,
    concat_windows,
    ms_to_samples,
    split_by_repetition,
    windows,
)

__all__ = [
    "DB2_FS",
    "N_ACC",
    "N_EMG",
    "REST_MODES",
    "SYNTHETIC_STRUCTURES",
    "TEST_REPETITIONS",
    "TRAIN_REPETITIONS",
    "ChannelScaler",
    "Recording",
    "Windows",
    "accuracy",
    "concat_windows",
    "load_ninapro_db2",
    "macro_f1",
    "ms_to_samples",
    "split_by_repetition",
    "synthetic_recording",
    "windows",
    "write_ninapro_db2",
]

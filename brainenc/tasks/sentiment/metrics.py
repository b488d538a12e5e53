"""Sentiment-regression metrics as MMSA's ``MetricsTop`` computes them.

The definitions follow ``src/MMSA/utils/metricsTop.py`` of MMSA
(https://github.com/thuiar/MMSA), regression mode, for predictions and labels
flattened to ``(N,)``.

**MOSI and MOSEI** (:func:`mosi_metrics`; labels in ``[-3, 3]``):

* ``Has0_acc_2``, ``Has0_F1_score``: classes ``>= 0`` against ``< 0`` for
  predictions and labels alike (a label of 0 counts as non-negative);
* ``Non0_acc_2``, ``Non0_F1_score``: samples whose label is exactly 0 are
  dropped, then classes ``> 0`` against ``<= 0`` (a prediction of exactly 0
  counts as negative);
* ``Mult_acc_7``: predictions and labels clipped to ``[-3, 3]`` and rounded;
  ``Mult_acc_5``: clipped to ``[-2, 2]`` (not ``[-3, 3]``) and rounded. The
  rounding is NumPy's, half to even: 0.5 and -0.5 round to 0, 1.5 and 2.5 to 2;
* ``MAE``: mean absolute error of the unclipped values; ``Corr``: Pearson
  correlation of the unclipped values.

**CH-SIMS** (:func:`sims_metrics`; labels in ``[-1, 1]``): predictions and
labels are first clipped to ``[-1, 1]`` (``MAE`` and ``Corr`` use the clipped
values too), then binned into intervals open on the left and closed on the
right:

* ``Mult_acc_2``: ``[-1, 0]``, ``(0, 1]``;
* ``Mult_acc_3``: ``[-1, -0.1]``, ``(-0.1, 0.1]``, ``(0.1, 1]``;
* ``Mult_acc_5``: ``[-1, -0.7]``, ``(-0.7, -0.1]``, ``(-0.1, 0.1]``,
  ``(0.1, 0.7]``, ``(0.7, 1]``;
* ``F1_score``: weighted F1 of the two classes of ``Mult_acc_2``.

F1 scores are scikit-learn's ``average="weighted"``: the per-class F1 averaged
with weights equal to each class's number of true samples (a class never
predicted has F1 0). MMSA receives float32 tensors from its models, so the
values are compared and rounded in float32 here too: a prediction of
float32 ``0.1`` falls in the CH-SIMS bin ``(-0.1, 0.1]``, as in MMSA, where a
float64 comparison would put it in ``(0.1, 1]``. MMSA rounds the MOSI/MOSEI
values to 4 decimals for its reports; the functions here return them unrounded.
Undefined values (``Corr`` of a constant vector, ``Non0_*`` when every label
is 0) are NaN.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

__all__ = [
    "MOSI_METRICS",
    "SIMS_METRICS",
    "SIMS_THRESHOLDS",
    "accuracy",
    "mosi_metrics",
    "pearson",
    "sentiment_metrics",
    "sims_classes",
    "sims_metrics",
    "weighted_f1",
]

MOSI_METRICS = (
    "Has0_acc_2", "Has0_F1_score", "Non0_acc_2", "Non0_F1_score",
    "Mult_acc_5", "Mult_acc_7", "MAE", "Corr",
)
"""Keys of :func:`mosi_metrics` (MOSI and MOSEI), in MMSA's order."""
SIMS_METRICS = ("Mult_acc_2", "Mult_acc_3", "Mult_acc_5", "F1_score", "MAE", "Corr")
"""Keys of :func:`sims_metrics`, in MMSA's order."""
SIMS_THRESHOLDS = {2: (0.0,), 3: (-0.1, 0.1), 5: (-0.7, -0.1, 0.1, 0.7)}
"""Inner bin edges of the CH-SIMS classes; each bin is ``(lower, upper]``."""


def _vector(x: Any, name: str) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    x = np.asarray(x, dtype=np.float32).reshape(-1)
    if x.size == 0:
        raise ValueError(f"{name} is empty")
    if not np.all(np.isfinite(x)):
        raise ValueError(f"{name} has {int((~np.isfinite(x)).sum())} NaN or infinite values")
    return x


def _pair(preds: Any, labels: Any) -> tuple[np.ndarray, np.ndarray]:
    preds, labels = _vector(preds, "preds"), _vector(labels, "labels")
    if preds.shape != labels.shape:
        raise ValueError(
            f"preds and labels must hold the same number of values, got {preds.size} and {labels.size}"
        )
    return preds, labels


def accuracy(y_true: Sequence | np.ndarray, y_pred: Sequence | np.ndarray) -> float:
    """Fraction of equal entries (NaN when empty)."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    return float(np.mean(y_true == y_pred)) if y_true.size else float("nan")


def weighted_f1(y_true: Sequence | np.ndarray, y_pred: Sequence | np.ndarray) -> float:
    """F1 per class averaged with the true class sizes as weights.

    Equals scikit-learn's ``f1_score(y_true, y_pred, average="weighted")``
    (with its default of 0 for a class never predicted); NaN when empty.
    """
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    if y_true.size == 0:
        return float("nan")
    total = 0.0
    for c in np.union1d(y_true, y_pred):
        true_c, pred_c = y_true == c, y_pred == c
        tp = float(np.sum(true_c & pred_c))
        fp_fn = float(np.sum(true_c ^ pred_c))
        total += np.sum(true_c) * (2 * tp / (2 * tp + fp_fn))
    return float(total / y_true.size)


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation (``numpy.corrcoef``); NaN when either is constant."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.size < 2 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return float("nan")
    return float(np.corrcoef(a, b)[0, 1])


def sims_classes(x: np.ndarray, n_classes: int) -> np.ndarray:
    """CH-SIMS class of each value of ``x`` (already clipped to ``[-1, 1]``).

    Parameters
    ----------
    x : numpy.ndarray
        Values, compared in float32 as MMSA does.
    n_classes : {2, 3, 5}

    Returns
    -------
    numpy.ndarray
        int64 classes ``0 .. n_classes - 1``; class ``i`` is the bin
        ``(edge[i - 1], edge[i]]`` of :data:`SIMS_THRESHOLDS`.
    """
    edges = np.asarray(SIMS_THRESHOLDS[n_classes], dtype=np.float32)
    # number of edges strictly below x: x == edge falls in the lower bin
    return np.searchsorted(edges, np.asarray(x, dtype=np.float32), side="left").astype(np.int64)


def mosi_metrics(preds: Any, labels: Any) -> dict[str, float]:
    """MMSA's MOSI / MOSEI regression metrics.

    Parameters
    ----------
    preds, labels : array-like or torch.Tensor
        Predictions and labels, flattened to ``(N,)``.

    Returns
    -------
    dict
        :data:`MOSI_METRICS` to floats (see the module docstring).

    Raises
    ------
    ValueError
        Empty, of different sizes, or holding NaN or infinite values.
    """
    preds, labels = _pair(preds, labels)
    has0_true, has0_pred = labels >= 0, preds >= 0
    nonzero = labels != 0
    non0_true, non0_pred = labels[nonzero] > 0, preds[nonzero] > 0

    def mult_acc(bound: float) -> float:
        b = np.float32(bound)
        return accuracy(np.round(np.clip(labels, -b, b)), np.round(np.clip(preds, -b, b)))

    return {
        "Has0_acc_2": accuracy(has0_true, has0_pred),
        "Has0_F1_score": weighted_f1(has0_true, has0_pred),
        "Non0_acc_2": accuracy(non0_true, non0_pred),
        "Non0_F1_score": weighted_f1(non0_true, non0_pred),
        "Mult_acc_5": mult_acc(2.0),
        "Mult_acc_7": mult_acc(3.0),
        "MAE": float(np.mean(np.abs(preds.astype(np.float64) - labels.astype(np.float64)))),
        "Corr": pearson(preds, labels),
    }


def sims_metrics(preds: Any, labels: Any) -> dict[str, float]:
    """MMSA's CH-SIMS regression metrics.

    Parameters
    ----------
    preds, labels : array-like or torch.Tensor
        Predictions and labels, flattened to ``(N,)``.

    Returns
    -------
    dict
        :data:`SIMS_METRICS` to floats (see the module docstring).

    Raises
    ------
    ValueError
        Empty, of different sizes, or holding NaN or infinite values.
    """
    preds, labels = _pair(preds, labels)
    one = np.float32(1.0)
    preds, labels = np.clip(preds, -one, one), np.clip(labels, -one, one)
    out = {}
    for k in (2, 3, 5):
        out[f"Mult_acc_{k}"] = accuracy(sims_classes(labels, k), sims_classes(preds, k))
    out["F1_score"] = weighted_f1(sims_classes(labels, 2), sims_classes(preds, 2))
    out["MAE"] = float(np.mean(np.abs(preds.astype(np.float64) - labels.astype(np.float64))))
    out["Corr"] = pearson(preds, labels)
    return out


def sentiment_metrics(preds: Any, labels: Any, dataset: str) -> dict[str, float]:
    """:func:`mosi_metrics` for ``"mosi"`` / ``"mosei"``, :func:`sims_metrics` for ``"sims"``."""
    name = dataset.lower()
    if name in ("mosi", "mosei"):
        return mosi_metrics(preds, labels)
    if name == "sims":
        return sims_metrics(preds, labels)
    raise ValueError(f"dataset must be 'mosi', 'mosei' or 'sims', got {dataset!r}")

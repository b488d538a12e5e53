"""Classification metrics for gesture decoding: accuracy and macro-F1."""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["accuracy", "macro_f1"]


def _as_labels(y, name: str) -> np.ndarray:
    if hasattr(y, "detach"):  # torch tensors, on any device
        y = y.detach().cpu().numpy()
    y = np.asarray(y)
    if y.ndim != 1:
        raise ValueError(f"{name} must be 1-D class labels, got shape {y.shape}")
    return y


def _pair(y_true, y_pred) -> tuple[np.ndarray, np.ndarray]:
    t, p = _as_labels(y_true, "y_true"), _as_labels(y_pred, "y_pred")
    if t.shape != p.shape:
        raise ValueError(f"y_true and y_pred differ in length: {t.shape[0]} vs {p.shape[0]}")
    if t.size == 0:
        raise ValueError("no samples")
    return t, p


def accuracy(y_true, y_pred) -> float:
    """Fraction of samples whose predicted class equals the true class."""
    t, p = _pair(y_true, y_pred)
    return float(np.mean(t == p))


def macro_f1(y_true, y_pred, labels: Sequence | None = None) -> float:
    """Unweighted mean over classes of the F1 score.

    For class ``k``, ``F1_k = 2 TP_k / (2 TP_k + FP_k + FN_k)``, 0 when the
    class is neither true nor predicted; equal to
    ``sklearn.metrics.f1_score(..., average="macro")``.

    Parameters
    ----------
    y_true, y_pred : array-like or torch.Tensor
        ``(N,)`` class labels.
    labels : sequence, optional
        Classes to average over; default: every class in ``y_true`` or
        ``y_pred``.
    """
    t, p = _pair(y_true, y_pred)
    classes = np.union1d(t, p) if labels is None else np.asarray(labels)
    scores = []
    for k in classes:
        tp = np.sum((t == k) & (p == k))
        fp = np.sum((t != k) & (p == k))
        fn = np.sum((t == k) & (p != k))
        denominator = 2 * tp + fp + fn
        scores.append(2 * tp / denominator if denominator else 0.0)
    return float(np.mean(scores))

"""Retrieval metrics from a similarity matrix whose ground truth is the diagonal.

``similarity[i, j]`` scores query ``i`` against item ``j``; the correct item of
query ``i`` is item ``i``. The rank of query ``i`` is the 1-based position of
its correct item when the items are sorted by decreasing similarity. Ties count
against the query: the rank is the number of items scoring at least as high as
the correct one, so a constant similarity matrix ranks every query last rather
than first.
"""
from __future__ import annotations

import torch

__all__ = ["retrieval_ranks", "retrieval_metrics", "bidirectional_retrieval"]

RECALL_AT = (1, 5, 10)


def retrieval_ranks(similarity: torch.Tensor) -> torch.Tensor:
    """Rank of the correct item of every query.

    Parameters
    ----------
    similarity : torch.Tensor
        ``(Q, Q)`` scores of queries (rows) against items (columns); the
        correct item of query ``i`` is column ``i``.

    Returns
    -------
    torch.Tensor
        ``(Q,)`` int64 ranks in ``[1, Q]`` (1 is best); ties count against the
        query.

    Raises
    ------
    ValueError
        ``similarity`` is not square, is empty, or holds NaN or infinite values.
    """
    if similarity.dim() != 2 or similarity.shape[0] != similarity.shape[1]:
        raise ValueError(f"similarity must be square (Q, Q), got {tuple(similarity.shape)}")
    if similarity.shape[0] == 0:
        raise ValueError("similarity is empty")
    sim = similarity.detach()
    if not torch.isfinite(sim).all():
        bad = (~torch.isfinite(sim)).nonzero()[:3].tolist()
        raise ValueError(f"similarity holds {int((~torch.isfinite(sim)).sum())} NaN or infinite "
                         f"values (first at (query, item) {bad}); a NaN score cannot be ranked "
                         "(it would compare false with every item and count as a hit)")
    correct = sim.diagonal()[:, None]
    return (sim >= correct).sum(dim=1).to(torch.int64)


def retrieval_metrics(similarity: torch.Tensor) -> dict[str, float]:
    """Recall at 1/5/10, median rank and mean rank of one retrieval direction.

    Parameters
    ----------
    similarity : torch.Tensor
        ``(Q, Q)`` query-by-item scores, ground truth on the diagonal.

    Returns
    -------
    dict
        ``"R@1"``, ``"R@5"``, ``"R@10"`` (fractions in ``[0, 1]``), ``"MdR"``
        (median rank; the mean of the two middle ranks for even ``Q``) and
        ``"MnR"`` (mean rank).
    """
    ranks = retrieval_ranks(similarity).to(torch.float64)
    metrics = {f"R@{k}": float((ranks <= k).to(torch.float64).mean()) for k in RECALL_AT}
    # torch.median returns the lower middle value; the conventional median averages both
    ordered = ranks.sort().values
    n = ordered.numel()
    metrics["MdR"] = float((ordered[(n - 1) // 2] + ordered[n // 2]) / 2)
    metrics["MnR"] = float(ranks.mean())
    return metrics


def bidirectional_retrieval(similarity: torch.Tensor) -> dict[str, float]:
    """Metrics of video-to-text and text-to-video retrieval and their mean MnR.

    Parameters
    ----------
    similarity : torch.Tensor
        ``(Q, Q)`` scores with videos as rows and texts as columns, matching
        pairs on the diagonal.

    Returns
    -------
    dict
        Each key of :func:`retrieval_metrics` prefixed ``"v2t/"`` (rows as
        queries) and ``"t2v/"`` (columns as queries), plus ``"MnR"``: the mean
        of the two mean ranks.
    """
    v2t = retrieval_metrics(similarity)
    t2v = retrieval_metrics(similarity.T)
    out = {f"v2t/{k}": v for k, v in v2t.items()}
    out.update({f"t2v/{k}": v for k, v in t2v.items()})
    out["MnR"] = (v2t["MnR"] + t2v["MnR"]) / 2
    return out

"""RollingQ: rebalance a CLS query between two modalities by rotating it.

RollingQ (Ni et al., ICML 2025) runs a sequence ``[CLS | modality a |
modality b]`` through attention and applies a fixed rotation ``R`` (identity at
first) to the CLS query only. The attention imbalance rate::

    AIR = mean_b [cos(q_cls, k̄_a) - cos(q_cls, k̄_b)]

(``k̄`` the mean key of a modality in a sample) says which modality the CLS
query favours. At the end of an epoch where ``|AIR| > beta`` (and fewer than
``max_rotations`` rotations were used), the CLS query and the keys are
averaged over the epoch, a target query::

    alpha = (1 + tanh(-sigma * AIR)) / 2
    q* = alpha * k̄_a / |k̄_a| + (1 - alpha) * k̄_b / |k̄_b|, rescaled to |q̄|

is formed, and ``R <- R_new R`` with ``R_new`` the rotation taking ``q̄`` onto
``q*``.

Conventions
-----------
Queries and keys are model-width vectors: the heads of a
:class:`~brainenc.fusion.attention.ModalityAttention` concatenated in head
order (the layout of its ``qkv`` projection), so ``R`` is ``(dim, dim)`` and
may mix heads. With one head this is exactly the attention geometry; with
several heads the per-head scores follow the rotated per-head slices. ``R``
acts on column vectors: the rotated query is ``R @ q`` (``q @ R.T`` for rows).
The CLS query of a sample is the first token of its CLS segment; every token of
the CLS segment is rotated.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import torch
from torch import nn

from .attention import ModalityAttention
from .layout import ModalityLayout

__all__ = [
    "attention_imbalance_rate",
    "rolling_alpha",
    "target_query",
    "procrustes_rotation",
    "RotationReport",
    "RollingQ",
    "cls_query_and_mean_keys",
    "cls_attention_mass",
]

_EPS = 1e-12


def _cosine(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Row-wise cosine; a zero vector gives 0 rather than NaN."""
    num = (x * y).sum(dim=-1)
    den = x.norm(dim=-1) * y.norm(dim=-1)
    return num / den.clamp_min(_EPS)


def _per_sample_air(
    q_cls: torch.Tensor, k_mean_a: torch.Tensor, k_mean_b: torch.Tensor
) -> torch.Tensor:
    return _cosine(q_cls, k_mean_a) - _cosine(q_cls, k_mean_b)


def attention_imbalance_rate(
    q_cls: torch.Tensor, k_mean_a: torch.Tensor, k_mean_b: torch.Tensor
) -> float:
    """Attention imbalance rate of a batch.

    Parameters
    ----------
    q_cls : torch.Tensor
        ``(B, d)`` CLS queries.
    k_mean_a, k_mean_b : torch.Tensor
        ``(B, d)`` mean key of modality a and of modality b in each sample.

    Returns
    -------
    float
        ``mean_b cos(q_cls, k̄_a) - cos(q_cls, k̄_b)``, in ``[-2, 2]``;
        positive when the CLS query favours modality a.
    """
    if q_cls.shape != k_mean_a.shape or q_cls.shape != k_mean_b.shape or q_cls.dim() != 2:
        raise ValueError(
            "q_cls, k_mean_a and k_mean_b must all be (B, d), got "
            f"{tuple(q_cls.shape)}, {tuple(k_mean_a.shape)}, {tuple(k_mean_b.shape)}"
        )
    if q_cls.shape[0] == 0:
        raise ValueError("the batch is empty")
    air = _per_sample_air(q_cls.double(), k_mean_a.double(), k_mean_b.double())
    return float(air.mean())


def rolling_alpha(air: float, sigma: float) -> float:
    """Weight of modality a in the target query: ``(1 + tanh(-sigma * AIR)) / 2``."""
    return 0.5 * (1.0 + math.tanh(-sigma * air))


def target_query(
    q_mean: torch.Tensor,
    k_mean_a: torch.Tensor,
    k_mean_b: torch.Tensor,
    air: float,
    sigma: float,
) -> torch.Tensor:
    """Target CLS query that leans toward the under-attended modality.

    Parameters
    ----------
    q_mean : torch.Tensor
        ``(d,)`` mean CLS query.
    k_mean_a, k_mean_b : torch.Tensor
        ``(d,)`` mean keys of modality a and b.
    air : float
        Attention imbalance rate.
    sigma : float
        Sharpness of the rebalancing weight.

    Returns
    -------
    torch.Tensor
        ``(d,)`` ``q* = alpha k̄_a/|k̄_a| + (1 - alpha) k̄_b/|k̄_b|`` rescaled to
        ``|q_mean|``, with ``alpha = (1 + tanh(-sigma AIR)) / 2``.
    """
    alpha = rolling_alpha(air, sigma)
    unit_a = k_mean_a / k_mean_a.norm().clamp_min(_EPS)
    unit_b = k_mean_b / k_mean_b.norm().clamp_min(_EPS)
    mix = alpha * unit_a + (1.0 - alpha) * unit_b
    return mix * (q_mean.norm() / mix.norm().clamp_min(_EPS))


def _orthonormal_partner(u: torch.Tensor) -> torch.Tensor:
    """A unit vector orthogonal to unit vector ``u``."""
    # the axis least aligned with u gives a well-conditioned Gram-Schmidt step
    e = torch.zeros_like(u)
    e[int(u.abs().argmin())] = 1.0
    w = e - (e @ u) * u
    return w / w.norm()


def _kabsch(m: torch.Tensor) -> torch.Tensor:
    """Rotation ``R`` (det +1) maximising ``trace(R^T m)``, from the SVD of ``m``."""
    u, _, vh = torch.linalg.svd(m)
    d = torch.ones(m.shape[0], dtype=m.dtype, device=m.device)
    # flip the last singular direction when U V^T would be a reflection
    d[-1] = torch.sign(torch.linalg.det(u @ vh))
    if d[-1] == 0:
        d[-1] = 1.0
    return (u * d) @ vh


def procrustes_rotation(source: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Orthogonal Procrustes rotation (det +1) taking ``source`` onto ``target``.

    Parameters
    ----------
    source, target : torch.Tensor
        Either single vectors ``(d,)`` or matched point sets ``(n, d)``.

    Returns
    -------
    torch.Tensor
        ``(d, d)`` rotation ``R`` (``R^T R = I``, ``det R = +1``) in the dtype
        of ``source``, computed in float64. For point sets it minimises
        ``sum_i |R s_i - t_i|^2`` (SVD of the cross-covariance, last singular
        vector flipped when needed to keep ``det = +1``).

    Notes
    -----
    For a single vector pair the Procrustes problem is degenerate: any
    rotation mapping ``s/|s|`` to ``t/|t|`` is optimal, whatever it does to the
    orthogonal complement. This returns the minimal one: Procrustes solved in
    the plane spanned by ``s`` and ``t`` (a 2-D problem with a unique proper
    solution) and the identity on the complement of that plane. It maps
    ``s/|s|`` exactly onto ``t/|t|`` (up to rounding). Parallel vectors give
    the identity; antiparallel ones a half turn in a plane through ``s`` and a
    fixed coordinate-chosen orthogonal direction.
    """
    if source.shape != target.shape:
        raise ValueError(f"source {tuple(source.shape)} and target {tuple(target.shape)} differ")
    out_dtype = source.dtype if source.is_floating_point() else torch.get_default_dtype()
    s = source.detach().to(torch.float64)
    t = target.detach().to(torch.float64)
    if s.dim() == 2:
        return _kabsch(t.T @ s).to(out_dtype)
    if s.dim() != 1:
        raise ValueError(f"source must be (d,) or (n, d), got {tuple(source.shape)}")
    d = s.shape[0]
    if s.norm() <= _EPS or t.norm() <= _EPS:
        raise ValueError("source and target must be non-zero vectors")
    eye = torch.eye(d, dtype=torch.float64, device=s.device)
    if d == 1:
        if s[0] * t[0] < 0:
            raise ValueError("no rotation of a 1-D space reverses a vector")
        return eye.to(out_dtype)
    u = s / s.norm()
    t_unit = t / t.norm()
    residual = t_unit - (t_unit @ u) * u
    if residual.norm() <= 1e-12:
        if t_unit @ u > 0:
            return eye.to(out_dtype)
        w = _orthonormal_partner(u)
    else:
        w = residual / residual.norm()
    basis = torch.stack([u, w], dim=1)  # (d, 2) orthonormal basis of the plane
    s2 = basis.T @ u
    t2 = basis.T @ t_unit
    r2 = _kabsch(torch.outer(t2, s2))
    rotation = eye - basis @ basis.T + basis @ r2 @ basis.T
    return rotation.to(out_dtype)


def _rotation_angle(source: torch.Tensor, target: torch.Tensor) -> float:
    cos = float(_cosine(source.double(), target.double()).clamp(-1.0, 1.0))
    return math.acos(cos)


@dataclass(frozen=True)
class RotationReport:
    """Outcome of :meth:`RollingQ.on_epoch_end`.

    Attributes
    ----------
    air : float
        Attention imbalance rate over the epoch (NaN when nothing was observed).
    rotated : bool
        Whether a rotation was added this epoch.
    alpha : float
        Weight of modality a in the target query (NaN when nothing was observed).
    angle : float
        Angle in radians of the added rotation (0 when none).
    n_samples : int
        Number of samples observed during the epoch.
    n_rotations : int
        Rotations used so far, this one included.
    """

    air: float
    rotated: bool
    alpha: float
    angle: float
    n_samples: int
    n_rotations: int


class RollingQ(nn.Module):
    """Accumulated CLS-query rotation of RollingQ and its epoch-level update.

    Parameters
    ----------
    dim : int
        Query width (the model width of the attention layer: heads concatenated).
    cls_segment : int
        Segment index of the CLS token.
    segment_a, segment_b : int
        Segment indices of the two modalities being balanced.
    beta : float
        Rotate only when ``|AIR| > beta``.
    sigma : float
        Sharpness of the rebalancing weight ``alpha``.
    max_rotations : int
        Most rotations over training (``r_time``).

    Notes
    -----
    Usage per epoch: pass :meth:`query_hook` to the model's ``forward``
    (``query_hook=rollingq.query_hook, hook_layer=k``: every attention model of
    :mod:`brainenc.fusion.models` takes both and applies the hook in layer
    ``k`` only, the layer whose CLS query is rebalanced; default the last), or
    to ``ModalityAttention.forward`` of that layer; for each training batch call :meth:`observe` with the *rotated* CLS
    queries (e.g. :meth:`observe_attention`, which applies the current
    rotation); then :meth:`on_epoch_end`. The accumulators are local to the
    process: under data parallelism, reduce them across ranks before
    :meth:`on_epoch_end` or observe on one rank only.
    """

    def __init__(
        self,
        dim: int,
        cls_segment: int = 0,
        segment_a: int = 1,
        segment_b: int = 2,
        beta: float = 0.1,
        sigma: float = 1.0,
        max_rotations: int = 3,
    ) -> None:
        super().__init__()
        if len({cls_segment, segment_a, segment_b}) != 3:
            raise ValueError("cls_segment, segment_a and segment_b must be distinct")
        if beta < 0 or max_rotations < 0:
            raise ValueError("beta and max_rotations must be non-negative")
        self.dim = int(dim)
        self.cls_segment = int(cls_segment)
        self.segment_a = int(segment_a)
        self.segment_b = int(segment_b)
        self.beta = float(beta)
        self.sigma = float(sigma)
        self.max_rotations = int(max_rotations)
        # float64 so that composing a few rotations stays orthogonal to rounding
        self.register_buffer("rotation", torch.eye(self.dim, dtype=torch.float64))
        self.register_buffer("n_rotations", torch.zeros((), dtype=torch.int64))
        self.reset_statistics()

    def reset_statistics(self) -> None:
        """Clear the epoch accumulators."""
        self._sum_q = torch.zeros(self.dim, dtype=torch.float64)
        self._sum_a = torch.zeros(self.dim, dtype=torch.float64)
        self._sum_b = torch.zeros(self.dim, dtype=torch.float64)
        self._sum_air = 0.0
        self._count = 0

    @property
    def n_observed(self) -> int:
        """Samples observed since the last reset."""
        return self._count

    def rotate(self, q: torch.Tensor) -> torch.Tensor:
        """Apply ``R`` to ``(..., dim)`` row vectors."""
        return q @ self.rotation.to(device=q.device, dtype=q.dtype).T

    def query_hook(self, q: torch.Tensor, segment_ids: torch.Tensor) -> torch.Tensor:
        """Rotate the CLS query rows; a ``ModalityAttention`` query hook.

        Parameters
        ----------
        q : torch.Tensor
            ``(B, H, N, head_dim)`` queries with ``H * head_dim == dim``.
        segment_ids : torch.Tensor
            ``(B, N)`` segment of each token, -1 for padding.

        Returns
        -------
        torch.Tensor
            ``q`` with the rows of the CLS segment replaced by ``R q``; other
            rows are returned unchanged.
        """
        batch, heads, n_tokens, head_dim = q.shape
        if heads * head_dim != self.dim:
            raise ValueError(f"queries have width {heads * head_dim}, the rotation {self.dim}")
        full = q.transpose(1, 2).reshape(batch, n_tokens, self.dim)
        rotated = self.rotate(full).view(batch, n_tokens, heads, head_dim).transpose(1, 2)
        is_cls = (segment_ids.to(q.device) == self.cls_segment)[:, None, :, None]
        return torch.where(is_cls, rotated, q)

    @torch.no_grad()
    def observe(
        self,
        q_cls: torch.Tensor,
        k_mean_a: torch.Tensor,
        k_mean_b: torch.Tensor,
        mask: torch.Tensor | None = None,
    ) -> None:
        """Add a batch to the epoch statistics.

        Parameters
        ----------
        q_cls : torch.Tensor
            ``(B, dim)`` CLS queries as the attention sees them (rotated).
        k_mean_a, k_mean_b : torch.Tensor
            ``(B, dim)`` mean key of each modality per sample.
        mask : torch.Tensor, optional
            ``(B,)`` bool, samples to count (e.g. those with both modalities).
        """
        if q_cls.dim() != 2 or q_cls.shape[1] != self.dim:
            raise ValueError(f"q_cls must be (B, {self.dim}), got {tuple(q_cls.shape)}")
        if k_mean_a.shape != q_cls.shape or k_mean_b.shape != q_cls.shape:
            raise ValueError("k_mean_a and k_mean_b must have the shape of q_cls")
        q, ka, kb = (t.detach().to("cpu", torch.float64) for t in (q_cls, k_mean_a, k_mean_b))
        if mask is not None:
            keep = mask.detach().to("cpu", torch.bool)
            q, ka, kb = q[keep], ka[keep], kb[keep]
        self._sum_q += q.sum(dim=0)
        self._sum_a += ka.sum(dim=0)
        self._sum_b += kb.sum(dim=0)
        self._sum_air += float(_per_sample_air(q, ka, kb).sum())
        self._count += q.shape[0]

    def observe_attention(
        self, attn: ModalityAttention, x: torch.Tensor, layout: ModalityLayout
    ) -> None:
        """Observe a batch from the projections of ``attn`` on ``x``, under the current ``R``."""
        q_cls, (k_a, k_b), present = cls_query_and_mean_keys(
            attn, x, layout, self.cls_segment, (self.segment_a, self.segment_b), self.query_hook
        )
        self.observe(q_cls, k_a, k_b, mask=present)

    @torch.no_grad()
    def on_epoch_end(self) -> RotationReport:
        """Rotate the CLS query if the epoch was imbalanced, then reset the statistics.

        Returns
        -------
        RotationReport
            The epoch's AIR, whether a rotation was added, ``alpha`` and the
            rotation angle.
        """
        count = self._count
        if count == 0:
            self.reset_statistics()
            return RotationReport(math.nan, False, math.nan, 0.0, 0, int(self.n_rotations))
        air = self._sum_air / count
        q_mean = self._sum_q / count
        alpha = rolling_alpha(air, self.sigma)
        rotated, angle = False, 0.0
        if abs(air) > self.beta and int(self.n_rotations) < self.max_rotations:
            target = target_query(q_mean, self._sum_a / count, self._sum_b / count, air, self.sigma)
            r_new = procrustes_rotation(q_mean, target).to(self.rotation)
            self.rotation.copy_(r_new @ self.rotation)
            self.n_rotations += 1
            rotated, angle = True, _rotation_angle(q_mean, target)
        self.reset_statistics()
        return RotationReport(air, rotated, alpha, angle, count, int(self.n_rotations))

    def extra_repr(self) -> str:
        return (
            f"dim={self.dim}, cls_segment={self.cls_segment}, segments=({self.segment_a}, "
            f"{self.segment_b}), beta={self.beta}, sigma={self.sigma}, "
            f"max_rotations={self.max_rotations}"
        )


def cls_query_and_mean_keys(
    attn: ModalityAttention,
    x: torch.Tensor,
    layout: ModalityLayout,
    cls_segment: int,
    segments: Sequence[int],
    query_hook=None,
) -> tuple[torch.Tensor, tuple[torch.Tensor, ...], torch.Tensor]:
    """CLS query and per-segment mean keys from the projections of ``attn``.

    Parameters
    ----------
    attn : ModalityAttention
        Attention layer whose ``qkv`` projection gives queries and keys.
    x : torch.Tensor
        ``(B, N, dim)`` joint sequence laid out by ``layout``.
    layout : ModalityLayout
        Segment lengths of ``x``.
    cls_segment : int
        Segment of the CLS token (its first token is the CLS query).
    segments : sequence of int
        Segments whose mean keys are returned.
    query_hook : callable, optional
        Applied to the ``(B, H, N, head_dim)`` queries as in the forward pass
        (e.g. :meth:`RollingQ.query_hook`), so the CLS query is the one the
        attention uses.

    Returns
    -------
    q_cls : torch.Tensor
        ``(B, dim)`` CLS query (heads concatenated); zeros for samples
        without a CLS token.
    k_means : tuple of torch.Tensor
        One ``(B, dim)`` mean key per requested segment; zeros where the
        segment is empty.
    present : torch.Tensor
        ``(B,)`` bool, samples with a CLS token and every requested segment.
    """
    if x.dim() != 3 or x.shape[-1] != attn.dim:
        raise ValueError(f"x must be (B, N, {attn.dim}), got {tuple(x.shape)}")
    batch, n_tokens, dim = x.shape
    segment_ids = layout.segment_ids(n_tokens).to(x.device)
    qkv = attn.qkv(x).view(batch, n_tokens, 3, attn.n_heads, attn.head_dim)
    q = qkv[:, :, 0].transpose(1, 2)  # (B, H, N, head_dim), as in the forward pass
    if query_hook is not None:
        q = query_hook(q, segment_ids)
    q = q.transpose(1, 2).reshape(batch, n_tokens, dim)
    k = qkv[:, :, 1].reshape(batch, n_tokens, dim)

    lengths = layout.lengths.to(x.device)
    cls_pos = layout.offsets.to(x.device)[:, cls_segment]
    has_cls = lengths[:, cls_segment] > 0
    q_cls = q.gather(1, cls_pos.clamp(max=n_tokens - 1)[:, None, None].expand(-1, 1, dim))[:, 0]
    q_cls = q_cls * has_cls[:, None].to(q_cls.dtype)

    k_means = []
    present = has_cls.clone()
    for s in segments:
        member = (segment_ids == s).to(k.dtype)  # (B, N)
        count = member.sum(dim=1, keepdim=True)
        k_means.append((member[:, :, None] * k).sum(dim=1) / count.clamp_min(1.0))
        present &= lengths[:, s] > 0
    return q_cls, tuple(k_means), present


@torch.no_grad()
def cls_attention_mass(
    attn: ModalityAttention,
    x: torch.Tensor,
    layout: ModalityLayout,
    table: torch.Tensor,
    cls_segment: int,
    query_hook=None,
) -> torch.Tensor:
    """Attention mass of the CLS token on each segment, averaged over heads and batch.

    Parameters
    ----------
    attn : ModalityAttention
        Attention layer to run.
    x : torch.Tensor
        ``(B, N, dim)`` joint sequence.
    layout : ModalityLayout
        Segment lengths of ``x``.
    table : torch.Tensor
        ``(S, S)`` bool block table.
    cls_segment : int
        Segment of the CLS token (its first token is used).
    query_hook : callable, optional
        Passed to ``attn`` (e.g. :meth:`RollingQ.query_hook`).

    Returns
    -------
    torch.Tensor
        ``(S,)`` mean softmax mass of the CLS query on each key segment, over
        heads and over the samples that have a CLS token.
    """
    _, mass = attn(x, layout, table, query_hook=query_hook, return_segment_mass=True)
    batch, _, n_tokens, n_seg = mass.shape
    has_cls = layout.lengths[:, cls_segment].to(mass.device) > 0
    if not bool(has_cls.any()):
        raise ValueError("no sample has a CLS token")
    cls_pos = layout.offsets.to(mass.device)[:, cls_segment].clamp(max=n_tokens - 1)
    index = cls_pos[:, None, None, None].expand(-1, mass.shape[1], 1, n_seg)
    cls_mass = mass.gather(2, index)[:, :, 0].mean(dim=1)  # (B, S)
    return cls_mass[has_cls].mean(dim=0)

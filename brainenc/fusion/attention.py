"""Attention over a joint multimodal sequence restricted by a block table.

Shapes follow the shared representation: ``q`` is ``(B, H, Nq, D)``, ``k`` and
``v`` are ``(B, H, Nk, D)``; ``q_segment_ids`` ``(B, Nq)`` and
``k_segment_ids`` ``(B, Nk)`` give each token's segment (-1 for padding), each
sample's segments contiguous and in order; ``table`` ``(S, S)`` says which
query segment may attend which key segment: a bool table, or integer codes
where :data:`~brainenc.fusion.layout.CAUSAL` blocks apply MulT's future mask
inside the block (see :mod:`brainenc.fusion.layout`). A query that is padding
or has no allowed key gets output 0.
"""
from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from .layout import CAUSAL, ModalityLayout, has_causal, segment_positions, table_codes

__all__ = [
    "dense_attention",
    "block_attention",
    "ModalityAttention",
    "BACKENDS",
]

BACKENDS = ("auto", "dense", "block", "triton")

QueryHook = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def _check_inputs(q, k, v, q_segment_ids, k_segment_ids, table) -> torch.Tensor:
    """Validate shapes and the table; return the table's int8 codes."""
    if q.dim() != 4 or k.dim() != 4 or v.dim() != 4:
        raise ValueError("q, k, v must be (B, H, N, D)")
    if k.shape[:3] != v.shape[:3] or q.shape[:2] != k.shape[:2] or q.shape[3] != k.shape[3]:
        raise ValueError(
            f"incompatible shapes q {tuple(q.shape)}, k {tuple(k.shape)}, v {tuple(v.shape)}"
        )
    if q_segment_ids.shape != (q.shape[0], q.shape[2]):
        raise ValueError(f"q_segment_ids must be (B, Nq) = {(q.shape[0], q.shape[2])}")
    if k_segment_ids.shape != (k.shape[0], k.shape[2]):
        raise ValueError(f"k_segment_ids must be (B, Nk) = {(k.shape[0], k.shape[2])}")
    return table_codes(table)


def _causal_ok(
    q_position: torch.Tensor,
    q_length: torch.Tensor,
    k_position: torch.Tensor,
    k_length: torch.Tensor,
) -> torch.Tensor:
    """MulT's future rule ``r <= p + |L_k - L_q|`` broadcast over the inputs."""
    return k_position <= q_position + (k_length - q_length).abs()


def _segment_one_hot(segment_ids: torch.Tensor, n_segments: int, dtype) -> torch.Tensor:
    """``(B, N, S)`` indicator of each token's segment; padding rows are zero."""
    ids = segment_ids.long()
    hot = F.one_hot(ids.clamp(min=0), n_segments).to(dtype)
    return hot * (ids >= 0)[..., None].to(dtype)


def dense_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    q_segment_ids: torch.Tensor,
    k_segment_ids: torch.Tensor,
    table: torch.Tensor,
    scale: float | None = None,
    return_segment_mass: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Reference masked attention: the full ``(B, Nq, Nk)`` mask from the table.

    Parameters
    ----------
    q, k, v : torch.Tensor
        ``(B, H, Nq, D)``, ``(B, H, Nk, D)``, ``(B, H, Nk, Dv)``.
    q_segment_ids, k_segment_ids : torch.Tensor
        ``(B, Nq)`` and ``(B, Nk)`` segment indices, -1 for padding.
    table : torch.Tensor
        ``(S, S)`` bool block table or integer codes (causal blocks).
    scale : float, optional
        Softmax scale; defaults to ``1 / sqrt(D)``.
    return_segment_mass : bool
        Also return the attention mass on each key segment.

    Returns
    -------
    out : torch.Tensor
        ``(B, H, Nq, Dv)``; rows without any allowed key are 0.
    mass : torch.Tensor
        Only with ``return_segment_mass``: ``(B, H, Nq, S)``, the sum of the
        softmax weights over each key segment (rows sum to 1, or 0 when the
        query attends nothing).
    """
    codes = _check_inputs(q, k, v, q_segment_ids, k_segment_ids, table).to(q.device)
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else scale
    qs = q_segment_ids.long()
    ks = k_segment_ids.long()
    code = codes[qs.clamp(min=0)[:, :, None], ks.clamp(min=0)[:, None, :]]
    mask = (code != 0) & (qs >= 0)[:, :, None] & (ks >= 0)[:, None, :]
    if has_causal(codes):
        q_pos, q_len = segment_positions(qs, codes.shape[0])
        k_pos, k_len = segment_positions(ks, codes.shape[0])
        future_ok = _causal_ok(
            q_pos[:, :, None], q_len[:, :, None], k_pos[:, None, :], k_len[:, None, :]
        )
        mask = mask & ((code != CAUSAL) | future_ok)
    mask = mask[:, None]  # (B, 1, Nq, Nk), broadcast over heads

    compute = torch.promote_types(q.dtype, torch.float32)
    scores = torch.matmul(q.to(compute), k.to(compute).transpose(-1, -2)) * scale
    has_key = mask.any(dim=-1, keepdim=True)
    # fully masked rows: give softmax finite inputs, then zero the weights, so
    # neither the output nor its gradient becomes NaN
    scores = scores.masked_fill(~mask, float("-inf"))
    scores = torch.where(has_key, scores, torch.zeros_like(scores))
    weights = torch.softmax(scores, dim=-1) * has_key.to(compute)
    out = torch.matmul(weights, v.to(compute)).to(v.dtype)
    if not return_segment_mass:
        return out
    hot = _segment_one_hot(ks, table.shape[0], compute)  # (B, Nk, S)
    mass = torch.matmul(weights, hot[:, None])
    return out, mass


def _segment_offsets(segment_ids: torch.Tensor, n_segments: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Lengths ``(B, S)`` and offsets ``(B, S + 1)`` of contiguous, ordered segments."""
    lengths = _segment_one_hot(segment_ids, n_segments, torch.int64).sum(dim=1)
    offsets = torch.cat([torch.zeros_like(lengths[:, :1]), lengths.cumsum(dim=1)], dim=1)
    return lengths, offsets


def _gather_tokens(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """``x[b, h, index[b, t], :]`` for ``x`` ``(B, H, N, D)`` and ``index`` ``(B, T)``."""
    b, h, _, d = x.shape
    return x.gather(2, index[:, None, :, None].expand(b, h, index.shape[1], d))


def block_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    q_segment_ids: torch.Tensor,
    k_segment_ids: torch.Tensor,
    table: torch.Tensor,
    scale: float | None = None,
    return_segment_mass: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Block-sparse attention that only multiplies allowed blocks.

    For each query segment ``i`` the keys and values of its allowed key
    segments are gathered into one packed set per sample (padded to the
    longest sample, with a padding mask), segment ``i``'s queries attend that
    set, and the results are placed back at the query positions. Disallowed
    ``(query, key)`` segment blocks are never computed. Same parameters and
    results as :func:`dense_attention`; segments must be contiguous and in
    segment order within each sample. Inputs that no allowed block reads get
    no gradient (``None`` rather than zeros), and when the table leaves
    nothing to compute the output does not require grad.
    """
    codes_cpu = _check_inputs(q, k, v, q_segment_ids, k_segment_ids, table).cpu()
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else scale
    n_seg = table.shape[0]
    device = q.device
    batch, heads, n_q, _ = q.shape
    d_v = v.shape[-1]
    compute = torch.promote_types(q.dtype, torch.float32)
    q_len, q_off = _segment_offsets(q_segment_ids, n_seg)
    k_len, k_off = _segment_offsets(k_segment_ids, n_seg)
    # the same (B, H, Nk, D) key/value tensors are gathered for every segment,
    # so casting once is cheaper than per block
    kc, vc = k.to(compute), v.to(compute)

    pieces_out: list[torch.Tensor] = []
    pieces_mass: list[torch.Tensor] = []
    widths: list[int] = []
    for i in range(n_seg):
        width_q = int(q_len[:, i].max()) if batch else 0
        widths.append(width_q)
        keys_of_i = torch.nonzero(codes_cpu[i]).flatten().tolist()
        shape = (batch, heads, width_q)
        if width_q == 0 or not keys_of_i:
            pieces_out.append(q.new_zeros(*shape, d_v, dtype=compute))
            pieces_mass.append(q.new_zeros(*shape, n_seg, dtype=compute))
            continue
        # packed key set of segment i: its allowed key segments back to back
        allowed_len = k_len[:, keys_of_i]
        bounds = torch.cat(
            [torch.zeros_like(allowed_len[:, :1]), allowed_len.cumsum(dim=1)], dim=1
        )  # (B, A + 1)
        width_k = int(bounds[:, -1].max())
        if width_k == 0:
            pieces_out.append(q.new_zeros(*shape, d_v, dtype=compute))
            pieces_mass.append(q.new_zeros(*shape, n_seg, dtype=compute))
            continue
        t = torch.arange(width_k, device=device)[None, :]
        key_valid = t < bounds[:, -1:]
        # which allowed segment each packed slot falls in (empty segments skipped)
        which = (bounds[:, None, 1:] <= t[:, :, None]).sum(dim=2).clamp(max=len(keys_of_i) - 1)
        allowed_ids = torch.tensor(keys_of_i, device=device)
        key_seg = allowed_ids[which]  # (B, Tk) original segment index
        key_within = t - bounds.gather(1, which)  # position inside its own segment
        key_pos = torch.where(key_valid, k_off.gather(1, key_seg) + key_within, 0)

        tq = torch.arange(width_q, device=device)[None, :]
        query_valid = tq < q_len[:, i : i + 1]
        query_pos = torch.where(query_valid, q_off[:, i : i + 1] + tq, 0)

        qi = _gather_tokens(q, query_pos).to(compute)
        ki = _gather_tokens(kc, key_pos)
        vi = _gather_tokens(vc, key_pos)
        causal_keys = codes_cpu[i, keys_of_i] == CAUSAL
        if bool(causal_keys.any()):
            slot_causal = causal_keys.to(device)[which]  # (B, Tk)
            future_ok = _causal_ok(
                tq[:, :, None],
                q_len[:, i, None, None],
                key_within[:, None, :],
                k_len.gather(1, key_seg)[:, None, :],
            )  # (B, Tq, Tk)
            key_mask = (key_valid[:, None, :] & (~slot_causal[:, None, :] | future_ok))[:, None]
            has_key = key_mask.any(dim=-1, keepdim=True)
        else:
            key_mask = key_valid[:, None, None, :]
            has_key = key_valid.any(dim=1)[:, None, None, None]
        if return_segment_mass:
            scores = torch.matmul(qi, ki.transpose(-1, -2)) * scale  # (B, H, Tq, Tk)
            scores = scores.masked_fill(~key_mask, float("-inf"))
            scores = torch.where(has_key, scores, torch.zeros_like(scores))
            weights = torch.softmax(scores, dim=-1) * has_key.to(compute)
            pieces_out.append(torch.matmul(weights, vi))
            hot = F.one_hot(key_seg, n_seg).to(compute) * key_valid[..., None].to(compute)
            pieces_mass.append(torch.matmul(weights, hot[:, None]))
            continue
        # fused attention; a row without keys attends all slots and is then zeroed
        # (finite values, zero gradients), and a mask without holes is dropped
        mask = key_mask | ~has_key
        attended = F.scaled_dot_product_attention(
            qi, ki, vi, attn_mask=None if bool(mask.all()) else mask, scale=scale
        )
        pieces_out.append(attended * has_key.to(compute))

    # place every segment's rows back: one gather from [seg 0 rows | seg 1 rows | ... | zero row]
    bases = torch.tensor([0] + widths, device=device).cumsum(0)
    qs = q_segment_ids.long()
    valid = qs >= 0
    seg = qs.clamp(min=0)
    within = torch.arange(n_q, device=device)[None, :] - q_off.gather(1, seg)
    zero_row = int(bases[-1])
    index = torch.where(valid, bases[seg] + within, zero_row)

    def assemble(pieces: list[torch.Tensor], width: int) -> torch.Tensor:
        stacked = torch.cat(pieces + [q.new_zeros(batch, heads, 1, width, dtype=compute)], dim=2)
        return _gather_tokens(stacked, index)

    out = assemble(pieces_out, d_v).to(v.dtype)
    if not return_segment_mass:
        return out
    return out, assemble(pieces_mass, n_seg)


def _triton_attention():
    """Import the Triton block-sparse kernel on first use."""
    module = "brainenc.fusion.kernels.block_attention"
    try:
        from .kernels.block_attention import block_sparse_attention
    except ModuleNotFoundError as err:
        if err.name in {"triton", module, "brainenc.fusion.kernels"}:
            raise RuntimeError(
                f"the 'triton' attention backend needs triton and {module} "
                f"({err.name} is missing); use backend='block' or 'dense'"
            ) from err
        raise
    except ImportError as err:
        raise RuntimeError(
            f"the 'triton' attention backend could not load {module}: {err}"
        ) from err
    return block_sparse_attention


def _triton_available() -> bool:
    try:
        import triton  # noqa: F401
    except ImportError:
        return False
    return True


class ModalityAttention(nn.Module):
    """Multi-head self-attention over a joint multimodal sequence.

    Parameters
    ----------
    dim : int
        Model width; must be divisible by ``n_heads``.
    n_heads : int
        Number of heads.
    bias : bool
        Whether the projections have biases.
    backend : {"auto", "dense", "block", "triton"}
        Attention implementation. ``"auto"`` uses ``"triton"`` for CUDA inputs
        when triton is importable, else ``"block"``.
    dropout : float
        Dropout on the attention output (before the output projection) during
        training.
    """

    def __init__(
        self,
        dim: int,
        n_heads: int,
        bias: bool = True,
        backend: str = "auto",
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if dim % n_heads:
            raise ValueError(f"dim={dim} is not divisible by n_heads={n_heads}")
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
        self.dim = dim
        self.n_heads = n_heads
        self.head_dim = dim // n_heads
        self.backend = backend
        self.qkv = nn.Linear(dim, 3 * dim, bias=bias)
        self.out = nn.Linear(dim, dim, bias=bias)
        self.dropout = nn.Dropout(dropout)

    def resolve_backend(self, x: torch.Tensor) -> str:
        """Backend used for input ``x``: ``"auto"`` picks ``"triton"`` on CUDA
        when triton imports, else ``"block"``."""
        if self.backend == "auto":
            return "triton" if x.is_cuda and _triton_available() else "block"
        return self.backend

    def forward(
        self,
        x: torch.Tensor,
        layout: ModalityLayout,
        table: torch.Tensor,
        query_hook: QueryHook | None = None,
        return_segment_mass: bool = False,
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Attend over ``x`` with the block table.

        Parameters
        ----------
        x : torch.Tensor
            ``(B, N, dim)`` joint sequence laid out by ``layout``.
        layout : ModalityLayout
            Segment lengths of ``x``.
        table : torch.Tensor
            ``(S, S)`` block table (bool, or integer codes with causal blocks).
        query_hook : callable, optional
            ``query_hook(q, segment_ids) -> q`` applied to the ``(B, H, N,
            head_dim)`` queries before the softmax (e.g. rotating the CLS query).
        return_segment_mass : bool
            Also return the ``(B, H, N, S)`` attention mass per key segment
            (from the Triton backend without gradient).

        Returns
        -------
        out : torch.Tensor
            ``(B, N, dim)``; padding positions are 0.
        mass : torch.Tensor
            Only with ``return_segment_mass``.
        """
        if x.dim() != 3 or x.shape[-1] != self.dim:
            raise ValueError(f"x must be (B, N, {self.dim}), got {tuple(x.shape)}")
        if table.shape != (layout.n_segments, layout.n_segments):
            raise ValueError(
                f"table must be ({layout.n_segments}, {layout.n_segments}), got {tuple(table.shape)}"
            )
        batch, n_tokens, _ = x.shape
        segment_ids = layout.segment_ids(n_tokens).to(x.device)
        table = table.to(x.device)
        qkv = self.qkv(x).view(batch, n_tokens, 3, self.n_heads, self.head_dim)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each (B, H, N, head_dim)
        if query_hook is not None:
            q = query_hook(q, segment_ids)

        backend = self.resolve_backend(x)
        mass = None
        if backend == "dense":
            result = dense_attention(
                q, k, v, segment_ids, segment_ids, table, return_segment_mass=return_segment_mass
            )
        elif backend == "block":
            result = block_attention(
                q, k, v, segment_ids, segment_ids, table, return_segment_mass=return_segment_mass
            )
        else:
            result = _triton_attention()(
                q, k, v, segment_ids, segment_ids, table, return_segment_mass=return_segment_mass
            )
        if return_segment_mass:
            result, mass = result

        attended = result.transpose(1, 2).reshape(batch, n_tokens, self.dim)
        out = self.out(self.dropout(attended))
        # the output bias would otherwise leak into padding positions
        out = out * (segment_ids >= 0)[:, :, None].to(out.dtype)
        if return_segment_mass:
            return out, mass
        return out

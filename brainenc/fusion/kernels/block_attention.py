"""Block-sparse multi-modal attention: a FlashAttention-style Triton kernel.

Tokens of several modalities are packed into one sequence per sample; each token
carries a segment id (``-1`` for padding) and a boolean table ``table[i, j]``
says whether a query of segment ``i`` may attend keys of segment ``j``.

The sequence is cut into tiles of ``block_m`` queries and ``block_n`` keys.
Because segments are contiguous, a tile covers a contiguous range of segment
ids, so whether a (query tile, key tile) pair holds any allowed entry is a
rectangle lookup in ``table``. These pairs are listed on the host (a CSR per
sample and query tile, see :func:`build_tile_lists`); the kernels loop over the
listed key tiles only, so masked tiles are never computed. Inside a visited tile
the element mask is rebuilt from the segment ids and the table.

Integer tables may mark blocks :data:`~brainenc.fusion.layout.CAUSAL`: inside
such a block the element mask also applies MulT's future rule, from each
token's position in its segment and the segment lengths (per sample). A tile
pair lying inside one causal block is listed only when some entry passes the
rule.

The forward kernel can also accumulate each query's attention mass per key
segment in the same pass (a diagnostic output without gradient).

Queries that are padding, or that may attend no key, get output 0 and zero
gradients.
"""
from __future__ import annotations

import math
from typing import NamedTuple

import torch
import triton
import triton.language as tl

from ..layout import CAUSAL, has_causal, segment_positions, table_codes

__all__ = ["TileLists", "block_sparse_attention", "build_tile_lists", "default_tile_size"]

_LOG2E = 1.4426950408889634


class TileLists(NamedTuple):
    """Visited tile pairs as a CSR per sample and row tile.

    Attributes
    ----------
    ptr : torch.Tensor
        int32 (B, n_row_tiles + 1): the column tiles of row tile ``t`` of sample
        ``b`` are ``idx[ptr[b, t]:ptr[b, t + 1]]`` (offsets into the flat ``idx``).
    idx : torch.Tensor
        int32 (n_visited,), column tile indices in increasing order per row tile.
        Holds one dummy entry when nothing is visited, so it is never empty.
    n_visited : int
        Number of visited tile pairs over the batch.
    """

    ptr: torch.Tensor
    idx: torch.Tensor
    n_visited: int


def _tile_ranges(segment_ids: torch.Tensor, block: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Lowest and highest segment id of each tile, ignoring padding.

    Returns (lo, hi) of shape (B, n_tiles); a tile holding only padding has
    ``lo > hi``.
    """
    batch, length = segment_ids.shape
    n_tiles = triton.cdiv(length, block)
    pad = n_tiles * block - length
    ids = torch.nn.functional.pad(segment_ids.long(), (0, pad), value=-1)
    ids = ids.view(batch, n_tiles, block)
    valid = ids >= 0
    big = torch.iinfo(torch.int64).max
    lo = torch.where(valid, ids, torch.full_like(ids, big)).amin(-1)
    hi = torch.where(valid, ids, torch.full_like(ids, -1)).amax(-1)
    return lo, hi


def _tile_extreme(values: torch.Tensor, segment_ids: torch.Tensor, block: int, largest: bool):
    """Largest (or smallest) value over the non-padding tokens of each tile, (B, n_tiles)."""
    batch, length = values.shape
    n_tiles = triton.cdiv(length, block)
    pad = n_tiles * block - length
    # pad first with small exact values, then mask: F.pad takes its fill value as a float,
    # and int64's largest value does not survive the round trip (it becomes INT64_MIN)
    ids = torch.nn.functional.pad(segment_ids.long(), (0, pad), value=-1)
    padded = torch.nn.functional.pad(values.long(), (0, pad), value=0)
    fill = torch.full_like(padded, -1 if largest else torch.iinfo(torch.int64).max)
    masked = torch.where(ids >= 0, padded, fill).view(batch, n_tiles, block)
    return masked.amax(-1) if largest else masked.amin(-1)


class _Tokens(NamedTuple):
    """int32 (B, N) per-token tensors the kernels read."""

    seg: torch.Tensor  # segment id, -1 for padding
    pos: torch.Tensor  # position inside the segment
    length: torch.Tensor  # length of the token's segment


def _token_tensors(segment_ids: torch.Tensor, n_seg: int, causal: bool) -> _Tokens:
    """Segment ids, and with causal blocks positions and segment lengths, as int32.

    Without causal blocks the kernels never read positions or lengths, and
    the segment ids stand in for them.
    """
    seg = segment_ids.to(torch.int32).contiguous()
    if not causal:
        return _Tokens(seg, seg, seg)
    pos, length = segment_positions(segment_ids, n_seg)
    return _Tokens(seg, pos.to(torch.int32).contiguous(), length.to(torch.int32).contiguous())


def _allowed_tiles(
    q: _Tokens, k: _Tokens, codes: torch.Tensor, causal: bool, block_m: int, block_n: int
) -> torch.Tensor:
    """Boolean (B, n_q_tiles, n_k_tiles): which tile pairs hold an allowed entry.

    ``codes`` is a validated integer table; ``causal`` says whether it holds
    causal blocks (then ``q`` and ``k`` carry positions and lengths).
    """
    codes = codes.long()
    n_seg = codes.shape[0]
    q_lo, q_hi = _tile_ranges(q.seg, block_m)
    k_lo, k_hi = _tile_ranges(k.seg, block_n)
    # 2-D prefix sums turn "any allowed in table[a:b+1, c:d+1]" into four lookups
    prefix = torch.zeros(n_seg + 1, n_seg + 1, dtype=torch.int64, device=codes.device)
    prefix[1:, 1:] = (codes != 0).long().cumsum(0).cumsum(1)
    q_valid = q_lo <= q_hi
    k_valid = k_lo <= k_hi
    r0 = torch.where(q_valid, q_lo, 0)[:, :, None]
    r1 = torch.where(q_valid, q_hi + 1, 0)[:, :, None]
    c0 = torch.where(k_valid, k_lo, 0)[:, None, :]
    c1 = torch.where(k_valid, k_hi + 1, 0)[:, None, :]
    count = prefix[r1, c1] - prefix[r0, c1] - prefix[r1, c0] + prefix[r0, c0]
    allowed = (count > 0) & q_valid[:, :, None] & k_valid[:, None, :]
    if causal:
        # a tile pair inside one causal block holds an allowed entry only when
        # its earliest key passes the rule for its latest query
        q_last = _tile_extreme(q.pos, q.seg, block_m, largest=True)[:, :, None]
        k_first = _tile_extreme(k.pos, k.seg, block_n, largest=False)[:, None, :]
        q_len_tile = _tile_extreme(q.length, q.seg, block_m, largest=True)[:, :, None]
        k_len_tile = _tile_extreme(k.length, k.seg, block_n, largest=True)[:, None, :]
        single = (q_lo == q_hi)[:, :, None] & (k_lo == k_hi)[:, None, :]
        in_causal = single & (codes[r0, c0] == CAUSAL)
        reachable = k_first <= q_last + (k_len_tile - q_len_tile).abs()
        allowed = allowed & (~in_causal | reachable)
    return allowed


def _to_csr(allowed: torch.Tensor) -> TileLists:
    """CSR of a boolean (B, rows, cols) tile map, rows ordered sample-major."""
    batch, rows, _ = allowed.shape
    counts = allowed.sum(-1).reshape(-1)
    flat_ptr = torch.zeros(batch * rows + 1, dtype=torch.int64, device=allowed.device)
    flat_ptr[1:] = counts.cumsum(0)
    # row t of sample b reads flat_ptr[b*rows + t] and the next entry
    index = torch.arange(batch, device=allowed.device)[:, None] * rows + torch.arange(
        rows + 1, device=allowed.device
    )
    ptr = flat_ptr[index].to(torch.int32).contiguous()
    idx = allowed.nonzero()[:, 2].to(torch.int32)
    n_visited = int(idx.numel())
    if n_visited == 0:
        idx = torch.zeros(1, dtype=torch.int32, device=allowed.device)
    return TileLists(ptr, idx.contiguous(), n_visited)


def build_tile_lists(
    q_segment_ids: torch.Tensor,
    k_segment_ids: torch.Tensor,
    table: torch.Tensor,
    block_m: int,
    block_n: int,
    transpose: bool = False,
) -> TileLists:
    """List the (query tile, key tile) pairs that hold at least one allowed entry.

    Parameters
    ----------
    q_segment_ids, k_segment_ids : torch.Tensor
        Integer (B, Nq) and (B, Nk) segment ids, ``-1`` for padding.
    table : torch.Tensor
        (S, S) permission table (query segment, key segment): bool, or integer
        codes with causal blocks.
    block_m, block_n : int
        Query and key tile sizes.
    transpose : bool, default False
        False: per query tile, the key tiles to visit. True: per key tile, the
        query tiles to visit (used by the dK/dV backward kernel).

    Returns
    -------
    TileLists
        CSR of the visited tiles.
    """
    codes = table_codes(table)
    causal = has_causal(codes)
    n_seg = codes.shape[0]
    q = _token_tensors(q_segment_ids, n_seg, causal)
    k = _token_tensors(k_segment_ids, n_seg, causal)
    allowed = _allowed_tiles(q, k, codes.to(q.seg.device), causal, block_m, block_n)
    if transpose:
        allowed = allowed.transpose(1, 2)
    return _to_csr(allowed.contiguous())


@triton.jit
def _load_rows(base, offs, in_range, HEAD_DIM: tl.constexpr):
    """Load rows ``offs`` of a row-major (N, HEAD_DIM) block; rows out of range read 0."""
    cols = tl.arange(0, HEAD_DIM)
    ptrs = base + offs[:, None] * HEAD_DIM + cols[None, :]
    return tl.load(ptrs, mask=in_range[:, None], other=0.0)


@triton.jit
def _store_rows(base, offs, in_range, value, HEAD_DIM: tl.constexpr):
    """Store ``value`` (cast to the buffer's dtype) into rows ``offs`` of an (N, HEAD_DIM) block."""
    cols = tl.arange(0, HEAD_DIM)
    ptrs = base + offs[:, None] * HEAD_DIM + cols[None, :]
    tl.store(ptrs, value.to(base.dtype.element_ty), mask=in_range[:, None])


@triton.jit
def _token_info(seg_ptr, pos_ptr, len_ptr, b, n, offs, in_range, HAS_CAUSAL: tl.constexpr):
    """Segment ids of tokens ``offs`` of sample ``b``; with causal blocks also
    their positions in their segments and the segments' lengths (else zeros)."""
    seg = tl.load(seg_ptr + b * n + offs, mask=in_range, other=-1)
    pos = tl.zeros(offs.shape, tl.int32)
    length = tl.zeros(offs.shape, tl.int32)
    if HAS_CAUSAL:
        pos = tl.load(pos_ptr + b * n + offs, mask=in_range, other=0)
        length = tl.load(len_ptr + b * n + offs, mask=in_range, other=0)
    return seg, pos, length


@triton.jit
def _element_mask(qs, qp, ql, ks, kp, kl, table_ptr, n_seg, HAS_CAUSAL: tl.constexpr):
    """Element mask of one tile from the tokens' segment ids (and positions)."""
    valid = (qs[:, None] >= 0) & (ks[None, :] >= 0)
    entry = tl.load(table_ptr + qs[:, None] * n_seg + ks[None, :], mask=valid, other=0)
    allowed = valid & (entry != 0)
    if HAS_CAUSAL:
        gap = kl[None, :] - ql[:, None]
        gap = tl.where(gap < 0, -gap, gap)
        allowed = allowed & ((entry != 2) | (kp[None, :] <= qp[:, None] + gap))
    return allowed


@triton.jit
def _key_tile(k_base, v_base, kseg_ptr, kpos_ptr, klen_ptr, idx_ptr, i, b, n_k, qs, qp, ql,
              table_ptr, n_seg,
              BLOCK_N: tl.constexpr, HEAD_DIM: tl.constexpr, HAS_CAUSAL: tl.constexpr):
    """Keys, values, segment ids and element mask of the ``i``-th listed key tile of a query tile."""
    kt = tl.load(idx_ptr + i)
    offs_n = kt * BLOCK_N + tl.arange(0, BLOCK_N)
    col_in = offs_n < n_k
    k = _load_rows(k_base, offs_n, col_in, HEAD_DIM)
    v = _load_rows(v_base, offs_n, col_in, HEAD_DIM)
    ks, kp, kl = _token_info(kseg_ptr, kpos_ptr, klen_ptr, b, n_k, offs_n, col_in, HAS_CAUSAL)
    allowed = _element_mask(qs, qp, ql, ks, kp, kl, table_ptr, n_seg, HAS_CAUSAL)
    return k, v, ks, allowed


@triton.jit
def _query_tile(q_base, do_base, lse_base, delta_base, qseg_ptr, qpos_ptr, qlen_ptr, b, n_q,
                offs_m, row_in, HEAD_DIM: tl.constexpr, HAS_CAUSAL: tl.constexpr):
    """What the backward passes read of query rows ``offs_m``: q, dO, lse, D and token info."""
    q = _load_rows(q_base, offs_m, row_in, HEAD_DIM)
    do = _load_rows(do_base, offs_m, row_in, HEAD_DIM)
    lse = tl.load(lse_base + offs_m, mask=row_in, other=0.0)
    delta = tl.load(delta_base + offs_m, mask=row_in, other=0.0)
    qs, qp, ql = _token_info(qseg_ptr, qpos_ptr, qlen_ptr, b, n_q, offs_m, row_in, HAS_CAUSAL)
    return q, do, lse, delta, qs, qp, ql


@triton.jit
def _score_gradients(q, k, v, do, lse, delta, allowed, qk_scale, PRECISION: tl.constexpr):
    """Softmax weights P of one tile (from the saved lse) and dS = P * (dO V^T - D)."""
    s = tl.dot(q, tl.trans(k), input_precision=PRECISION) * qk_scale
    p = tl.where(allowed, tl.exp2(s - lse[:, None]), 0.0)
    dp = tl.dot(do, tl.trans(v), input_precision=PRECISION)
    return p, p * (dp - delta[:, None])


@triton.jit
def _forward_kernel(
    q_ptr, k_ptr, v_ptr, o_ptr, lse_ptr, mass_ptr,
    qseg_ptr, qpos_ptr, qlen_ptr, kseg_ptr, kpos_ptr, klen_ptr,
    table_ptr, ptr_ptr, idx_ptr,
    n_heads, n_q, n_k, n_seg, n_q_tiles, qk_scale,
    HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
    PRECISION: tl.constexpr, HAS_CAUSAL: tl.constexpr, WITH_MASS: tl.constexpr,
    SEG_BLOCK: tl.constexpr,
):
    pid_m = tl.program_id(0)
    pid_bh = tl.program_id(1)
    b = pid_bh // n_heads
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    row_in = offs_m < n_q
    q_base = q_ptr + pid_bh.to(tl.int64) * n_q * HEAD_DIM
    k_base = k_ptr + pid_bh.to(tl.int64) * n_k * HEAD_DIM
    v_base = v_ptr + pid_bh.to(tl.int64) * n_k * HEAD_DIM

    q = _load_rows(q_base, offs_m, row_in, HEAD_DIM)
    qs, qp, ql = _token_info(qseg_ptr, qpos_ptr, qlen_ptr, b, n_q, offs_m, row_in, HAS_CAUSAL)

    m_i = tl.full([BLOCK_M], float("-inf"), tl.float32)
    l_i = tl.zeros([BLOCK_M], tl.float32)
    acc = tl.zeros([BLOCK_M, HEAD_DIM], tl.float32)
    seg_cols = tl.arange(0, SEG_BLOCK)
    mass = tl.zeros([BLOCK_M, SEG_BLOCK], tl.float32)

    start = tl.load(ptr_ptr + b * (n_q_tiles + 1) + pid_m)
    end = tl.load(ptr_ptr + b * (n_q_tiles + 1) + pid_m + 1)
    for i in range(start, end):
        k, v, ks, allowed = _key_tile(k_base, v_base, kseg_ptr, kpos_ptr, klen_ptr, idx_ptr, i,
                                      b, n_k, qs, qp, ql, table_ptr, n_seg,
                                      BLOCK_N, HEAD_DIM, HAS_CAUSAL)

        # scores in base-2 units: exp2 is cheaper than exp
        s = tl.dot(q, tl.trans(k), input_precision=PRECISION) * qk_scale
        s = tl.where(allowed, s, float("-inf"))
        m_new = tl.maximum(m_i, tl.max(s, 1))
        # a row with nothing allowed so far keeps m = -inf; shift by 0 instead to avoid inf - inf
        m_safe = tl.where(m_new == float("-inf"), 0.0, m_new)
        alpha = tl.exp2(m_i - m_safe)
        p = tl.exp2(s - m_safe[:, None])
        l_i = l_i * alpha + tl.sum(p, 1)
        acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v, input_precision=PRECISION)
        if WITH_MASS:
            # per-segment sums of the same unnormalised weights, rescaled like acc
            hot = (ks[:, None] == seg_cols[None, :]).to(tl.float32)
            mass = mass * alpha[:, None] + tl.dot(p, hot, input_precision="ieee")
        m_i = m_new

    has_key = l_i > 0.0
    out = acc / tl.where(has_key, l_i, 1.0)[:, None]
    if WITH_MASS:
        mass = mass / tl.where(has_key, l_i, 1.0)[:, None]
        rows = pid_bh.to(tl.int64) * n_q + offs_m
        mass_ptrs = mass_ptr + rows[:, None] * n_seg + seg_cols[None, :]
        tl.store(mass_ptrs, mass, mask=row_in[:, None] & (seg_cols[None, :] < n_seg))
    # empty rows: lse is never used for them (their mask is all False in the backward)
    lse = tl.where(has_key, m_i + tl.log2(tl.where(has_key, l_i, 1.0)), 0.0)
    o_base = o_ptr + pid_bh.to(tl.int64) * n_q * HEAD_DIM
    _store_rows(o_base, offs_m, row_in, out, HEAD_DIM)
    tl.store(lse_ptr + pid_bh.to(tl.int64) * n_q + offs_m, lse, mask=row_in)


@triton.jit
def _backward_dkdv_kernel(
    q_ptr, k_ptr, v_ptr, do_ptr, lse_ptr, delta_ptr, dk_ptr, dv_ptr,
    qseg_ptr, qpos_ptr, qlen_ptr, kseg_ptr, kpos_ptr, klen_ptr,
    table_ptr, ptr_ptr, idx_ptr,
    n_heads, n_q, n_k, n_seg, n_k_tiles, qk_scale, scale,
    HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
    PRECISION: tl.constexpr, HAS_CAUSAL: tl.constexpr,
):
    pid_n = tl.program_id(0)
    pid_bh = tl.program_id(1)
    b = pid_bh // n_heads
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    col_in = offs_n < n_k
    q_off = pid_bh.to(tl.int64) * n_q * HEAD_DIM
    kv_off = pid_bh.to(tl.int64) * n_k * HEAD_DIM
    row_off = pid_bh.to(tl.int64) * n_q

    k = _load_rows(k_ptr + kv_off, offs_n, col_in, HEAD_DIM)
    v = _load_rows(v_ptr + kv_off, offs_n, col_in, HEAD_DIM)
    ks, kp, kl = _token_info(kseg_ptr, kpos_ptr, klen_ptr, b, n_k, offs_n, col_in, HAS_CAUSAL)
    dk = tl.zeros([BLOCK_N, HEAD_DIM], tl.float32)
    dv = tl.zeros([BLOCK_N, HEAD_DIM], tl.float32)

    start = tl.load(ptr_ptr + b * (n_k_tiles + 1) + pid_n)
    end = tl.load(ptr_ptr + b * (n_k_tiles + 1) + pid_n + 1)
    for i in range(start, end):
        qt = tl.load(idx_ptr + i)
        offs_m = qt * BLOCK_M + tl.arange(0, BLOCK_M)
        row_in = offs_m < n_q
        q, do, lse, delta, qs, qp, ql = _query_tile(
            q_ptr + q_off, do_ptr + q_off, lse_ptr + row_off, delta_ptr + row_off,
            qseg_ptr, qpos_ptr, qlen_ptr, b, n_q, offs_m, row_in, HEAD_DIM, HAS_CAUSAL,
        )
        allowed = _element_mask(qs, qp, ql, ks, kp, kl, table_ptr, n_seg, HAS_CAUSAL)
        p, ds = _score_gradients(q, k, v, do, lse, delta, allowed, qk_scale, PRECISION)
        dv += tl.dot(tl.trans(p.to(do.dtype)), do, input_precision=PRECISION)
        dk += tl.dot(tl.trans(ds.to(q.dtype)), q, input_precision=PRECISION)

    dk = dk * scale
    _store_rows(dk_ptr + kv_off, offs_n, col_in, dk, HEAD_DIM)
    _store_rows(dv_ptr + kv_off, offs_n, col_in, dv, HEAD_DIM)


@triton.jit
def _backward_dq_kernel(
    q_ptr, k_ptr, v_ptr, do_ptr, lse_ptr, delta_ptr, dq_ptr,
    qseg_ptr, qpos_ptr, qlen_ptr, kseg_ptr, kpos_ptr, klen_ptr,
    table_ptr, ptr_ptr, idx_ptr,
    n_heads, n_q, n_k, n_seg, n_q_tiles, qk_scale, scale,
    HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
    PRECISION: tl.constexpr, HAS_CAUSAL: tl.constexpr,
):
    pid_m = tl.program_id(0)
    pid_bh = tl.program_id(1)
    b = pid_bh // n_heads
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    row_in = offs_m < n_q
    q_off = pid_bh.to(tl.int64) * n_q * HEAD_DIM
    k_base = k_ptr + pid_bh.to(tl.int64) * n_k * HEAD_DIM
    v_base = v_ptr + pid_bh.to(tl.int64) * n_k * HEAD_DIM
    row_off = pid_bh.to(tl.int64) * n_q

    q, do, lse, delta, qs, qp, ql = _query_tile(
        q_ptr + q_off, do_ptr + q_off, lse_ptr + row_off, delta_ptr + row_off,
        qseg_ptr, qpos_ptr, qlen_ptr, b, n_q, offs_m, row_in, HEAD_DIM, HAS_CAUSAL,
    )
    dq = tl.zeros([BLOCK_M, HEAD_DIM], tl.float32)

    start = tl.load(ptr_ptr + b * (n_q_tiles + 1) + pid_m)
    end = tl.load(ptr_ptr + b * (n_q_tiles + 1) + pid_m + 1)
    for i in range(start, end):
        k, v, _, allowed = _key_tile(k_base, v_base, kseg_ptr, kpos_ptr, klen_ptr, idx_ptr, i,
                                     b, n_k, qs, qp, ql, table_ptr, n_seg,
                                     BLOCK_N, HEAD_DIM, HAS_CAUSAL)

        _, ds = _score_gradients(q, k, v, do, lse, delta, allowed, qk_scale, PRECISION)
        dq += tl.dot(ds.to(k.dtype), k, input_precision=PRECISION)

    dq = dq * scale
    _store_rows(dq_ptr + q_off, offs_m, row_in, dq, HEAD_DIM)


def _precision(dtype: torch.dtype) -> str:
    # fp32 inputs: exact fp32 products (tf32 would break 1e-4 agreement); fp16/bf16 ignore it
    return "ieee" if dtype == torch.float32 else "tf32"


class _BlockSparseAttention(torch.autograd.Function):
    """Autograd wrapper around the forward and backward kernels.

    Returns the output and the per-segment mass (an empty tensor unless
    requested); the mass carries no gradient.
    """

    @staticmethod
    def forward(ctx, q, k, v, q_seg, k_seg, table, scale, block_m, block_n, with_mass):
        batch, n_heads, n_q, head_dim = q.shape
        n_k = k.shape[2]
        n_seg = table.shape[0]
        causal = has_causal(table)
        q_tokens = _token_tensors(q_seg, n_seg, causal)
        k_tokens = _token_tensors(k_seg, n_seg, causal)
        n_q_tiles = triton.cdiv(n_q, block_m)
        # the tile map serves both passes: rows for the forward and dQ kernels,
        # its transpose for the dK/dV kernel
        allowed = _allowed_tiles(q_tokens, k_tokens, table, causal, block_m, block_n)
        lists = _to_csr(allowed)
        out = torch.empty_like(q)
        # log-sum-exp of the scaled scores in base 2 (the kernels use exp2), fp32
        lse = torch.empty(batch, n_heads, n_q, dtype=torch.float32, device=q.device)
        mass_shape = (batch, n_heads, n_q, n_seg) if with_mass else (0,)
        mass = torch.zeros(mass_shape, dtype=torch.float32, device=q.device)
        grid = (n_q_tiles, batch * n_heads)
        _forward_kernel[grid](
            q, k, v, out, lse, mass,
            *q_tokens, *k_tokens,
            table, lists.ptr, lists.idx,
            n_heads, n_q, n_k, n_seg, n_q_tiles, scale * _LOG2E,
            HEAD_DIM=head_dim, BLOCK_M=block_m, BLOCK_N=block_n,
            PRECISION=_precision(q.dtype), HAS_CAUSAL=causal, WITH_MASS=with_mass,
            SEG_BLOCK=max(16, triton.next_power_of_2(n_seg)),
        )
        ctx.save_for_backward(
            q, k, v, out, lse, *q_tokens, *k_tokens, table, lists.ptr, lists.idx, allowed
        )
        ctx.scale = scale
        ctx.block_m = block_m
        ctx.block_n = block_n
        ctx.causal = causal
        ctx.mark_non_differentiable(mass)
        return out, mass

    @staticmethod
    def backward(ctx, grad_out, grad_mass):
        q, k, v, out, lse, *rest = ctx.saved_tensors
        q_tokens, k_tokens = _Tokens(*rest[0:3]), _Tokens(*rest[3:6])
        table, ptr, idx, allowed = rest[6:]
        batch, n_heads, n_q, head_dim = q.shape
        n_k = k.shape[2]
        block_m, block_n, scale = ctx.block_m, ctx.block_n, ctx.scale
        grad_out = grad_out.contiguous()
        # D = rowsum(dO * O), shared by both backward kernels
        delta = (grad_out.float() * out.float()).sum(-1).contiguous()
        dq = torch.empty_like(q)
        dk = torch.empty_like(k)
        dv = torch.empty_like(v)
        n_q_tiles = triton.cdiv(n_q, block_m)
        n_k_tiles = triton.cdiv(n_k, block_n)
        lists_t = _to_csr(allowed.transpose(1, 2).contiguous())
        common = dict(
            HEAD_DIM=head_dim, BLOCK_M=block_m, BLOCK_N=block_n, PRECISION=_precision(q.dtype),
            HAS_CAUSAL=ctx.causal,
        )
        _backward_dkdv_kernel[(n_k_tiles, batch * n_heads)](
            q, k, v, grad_out, lse, delta, dk, dv,
            *q_tokens, *k_tokens, table, lists_t.ptr, lists_t.idx,
            n_heads, n_q, n_k, table.shape[0], n_k_tiles, scale * _LOG2E, scale,
            **common,
        )
        _backward_dq_kernel[(n_q_tiles, batch * n_heads)](
            q, k, v, grad_out, lse, delta, dq,
            *q_tokens, *k_tokens, table, ptr, idx,
            n_heads, n_q, n_k, table.shape[0], n_q_tiles, scale * _LOG2E, scale,
            **common,
        )
        return dq, dk, dv, None, None, None, None, None, None, None


def _padded_head_dim(head_dim: int) -> int:
    if head_dim > 128:
        raise ValueError(f"head dimension {head_dim} is not supported (at most 128)")
    return max(16, 1 << (head_dim - 1).bit_length())


def default_tile_size(dtype: torch.dtype, head_dim: int) -> int:
    """Tile size (queries and keys) used when none is given.

    64 while a row of ``head_dim`` elements takes at most 256 bytes (fp16/bf16
    up to 128, fp32 up to 64), else 32: the largest kernel (the dQ pass) then
    needs at most about 96 KiB of shared memory, within the 99 KiB per block of
    sm_86/sm_89 workstation GPUs (fp32 with head size 128 and 64-tiles would
    need 160 KiB).
    """
    return 64 if torch.empty((), dtype=dtype).element_size() * head_dim <= 256 else 32


def block_sparse_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    q_segment_ids: torch.Tensor,
    k_segment_ids: torch.Tensor,
    table: torch.Tensor,
    scale: float | None = None,
    block_m: int | None = None,
    block_n: int | None = None,
    return_segment_mass: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Block-sparse segment-masked attention (Triton, differentiable in q, k, v).

    Parameters
    ----------
    q : torch.Tensor
        Queries (B, H, Nq, D), float32 / float16 / bfloat16.
    k, v : torch.Tensor
        Keys and values (B, H, Nk, D), same dtype as ``q``.
    q_segment_ids, k_segment_ids : torch.Tensor
        Integer (B, Nq) and (B, Nk) segment ids, contiguous runs per segment,
        ``-1`` for padding.
    table : torch.Tensor
        (S, S); ``table[i, j]`` allows queries of segment ``i`` to attend keys
        of segment ``j``: bool, or integer codes of
        :mod:`brainenc.fusion.layout` (0 blocked, 1 attend, 2 causal).
    scale : float, optional
        Softmax scale, default ``1 / sqrt(D)``.
    block_m, block_n : int, optional
        Query and key tile sizes (powers of two, at least 16). Default:
        :func:`default_tile_size` for the dtype and head size.
    return_segment_mass : bool, default False
        Also return each query's attention mass per key segment, summed in the
        forward pass (no gradient flows through it).

    Returns
    -------
    out : torch.Tensor
        (B, H, Nq, D) attention output; 0 for padding queries and for queries
        that may attend no key.
    mass : torch.Tensor
        Only with ``return_segment_mass``: float32 (B, H, Nq, S), rows summing
        to 1 (or 0 for queries that attend nothing).

    Notes
    -----
    D is zero-padded to a power of two between 16 and 128; larger D raises
    ``ValueError``. Run on the CPU only under ``TRITON_INTERPRET=1`` (set before
    this module is imported), where bfloat16 is not supported.
    """
    if q.dim() != 4 or k.dim() != 4 or v.dim() != 4:
        raise ValueError("q, k and v must have shape (B, H, N, D)")
    if not (q.dtype == k.dtype == v.dtype):
        raise ValueError(f"q, k, v dtypes differ: {q.dtype}, {k.dtype}, {v.dtype}")
    if q.dtype not in (torch.float32, torch.float16, torch.bfloat16):
        raise ValueError(f"unsupported dtype {q.dtype}")
    batch, n_heads, n_q, head_dim = q.shape
    if k.shape[:2] != (batch, n_heads) or k.shape[3] != head_dim or v.shape != k.shape:
        shapes = f"q {tuple(q.shape)}, k {tuple(k.shape)}, v {tuple(v.shape)}"
        raise ValueError(f"shape mismatch: {shapes}")
    n_k = k.shape[2]
    if tuple(q_segment_ids.shape) != (batch, n_q) or tuple(k_segment_ids.shape) != (batch, n_k):
        raise ValueError("segment ids must have shapes (B, Nq) and (B, Nk)")
    codes = table_codes(table)
    padded = _padded_head_dim(head_dim)
    default = default_tile_size(q.dtype, padded)
    block_m = default if block_m is None else int(block_m)
    block_n = default if block_n is None else int(block_n)
    for block in (block_m, block_n):
        if block < 16 or block & (block - 1):
            raise ValueError(f"tile sizes must be powers of two >= 16, got {block}")
    n_seg = codes.shape[0]
    for ids in (q_segment_ids, k_segment_ids):
        # an id beyond the table would read outside it inside the kernel
        if ids.numel() and int(ids.max()) >= n_seg:
            bad = int(ids.max())
            raise ValueError(f"segment id {bad} out of range for a {n_seg}x{n_seg} table")
    if scale is None:
        scale = 1.0 / math.sqrt(head_dim)

    if padded != head_dim:
        # zero columns change neither scores nor the kept output columns
        extra = (0, padded - head_dim)
        q, k, v = (torch.nn.functional.pad(t, extra) for t in (q, k, v))
    device = q.device
    out, mass = _BlockSparseAttention.apply(
        q.contiguous(),
        k.contiguous(),
        v.contiguous(),
        q_segment_ids.to(device=device, dtype=torch.int32).contiguous(),
        k_segment_ids.to(device=device, dtype=torch.int32).contiguous(),
        codes.to(device=device, dtype=torch.int32).contiguous(),
        float(scale),
        block_m,
        block_n,
        bool(return_segment_mass),
    )
    if padded != head_dim:
        out = out[..., :head_dim]
    return (out, mass) if return_segment_mass else out


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

Queries that are padding, or that may attend no key, get output 0 and zero
gradients.
"""
from __future__ import annotations

import math
from typing import NamedTuple

import torch
import triton
import triton.language as tl

__all__ = ["TileLists", "block_sparse_attention", "build_tile_lists"]

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


def _allowed_tiles(
    q_segment_ids: torch.Tensor,
    k_segment_ids: torch.Tensor,
    table: torch.Tensor,
    block_m: int,
    block_n: int,
) -> torch.Tensor:
    """Boolean (B, n_q_tiles, n_k_tiles): which tile pairs hold an allowed entry."""
    n_seg = table.shape[0]
    q_lo, q_hi = _tile_ranges(q_segment_ids, block_m)
    k_lo, k_hi = _tile_ranges(k_segment_ids, block_n)
    # 2-D prefix sums turn "any True in table[a:b+1, c:d+1]" into four lookups
    prefix = torch.zeros(n_seg + 1, n_seg + 1, dtype=torch.int64, device=table.device)
    prefix[1:, 1:] = table.long().cumsum(0).cumsum(1)
    q_valid = q_lo <= q_hi
    k_valid = k_lo <= k_hi
    r0 = torch.where(q_valid, q_lo, 0)[:, :, None]
    r1 = torch.where(q_valid, q_hi + 1, 0)[:, :, None]
    c0 = torch.where(k_valid, k_lo, 0)[:, None, :]
    c1 = torch.where(k_valid, k_hi + 1, 0)[:, None, :]
    count = prefix[r1, c1] - prefix[r0, c1] - prefix[r1, c0] + prefix[r0, c0]
    return (count > 0) & q_valid[:, :, None] & k_valid[:, None, :]


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
        Boolean (S, S) permission table (query segment, key segment).
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
    allowed = _allowed_tiles(q_segment_ids, k_segment_ids, table.bool(), block_m, block_n)
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
def _element_mask(qs, ks, table_ptr, n_seg):
    """Element mask of one tile from the query and key segment ids."""
    valid = (qs[:, None] >= 0) & (ks[None, :] >= 0)
    entry = tl.load(table_ptr + qs[:, None] * n_seg + ks[None, :], mask=valid, other=0)
    return valid & (entry != 0)


@triton.jit
def _key_tile(k_base, v_base, kseg_ptr, idx_ptr, i, b, n_k, qs, table_ptr, n_seg,
              BLOCK_N: tl.constexpr, HEAD_DIM: tl.constexpr):
    """Keys, values and element mask of the ``i``-th listed key tile of a query tile."""
    kt = tl.load(idx_ptr + i)
    offs_n = kt * BLOCK_N + tl.arange(0, BLOCK_N)
    col_in = offs_n < n_k
    k = _load_rows(k_base, offs_n, col_in, HEAD_DIM)
    v = _load_rows(v_base, offs_n, col_in, HEAD_DIM)
    ks = tl.load(kseg_ptr + b * n_k + offs_n, mask=col_in, other=-1)
    return k, v, _element_mask(qs, ks, table_ptr, n_seg)


@triton.jit
def _forward_kernel(
    q_ptr, k_ptr, v_ptr, o_ptr, lse_ptr,
    qseg_ptr, kseg_ptr, table_ptr, ptr_ptr, idx_ptr,
    n_heads, n_q, n_k, n_seg, n_q_tiles, qk_scale,
    HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
    PRECISION: tl.constexpr,
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
    qs = tl.load(qseg_ptr + b * n_q + offs_m, mask=row_in, other=-1)

    m_i = tl.full([BLOCK_M], float("-inf"), tl.float32)
    l_i = tl.zeros([BLOCK_M], tl.float32)
    acc = tl.zeros([BLOCK_M, HEAD_DIM], tl.float32)

    start = tl.load(ptr_ptr + b * (n_q_tiles + 1) + pid_m)
    end = tl.load(ptr_ptr + b * (n_q_tiles + 1) + pid_m + 1)
    for i in range(start, end):
        k, v, allowed = _key_tile(k_base, v_base, kseg_ptr, idx_ptr, i, b, n_k, qs, table_ptr,
                                  n_seg, BLOCK_N, HEAD_DIM)

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
        m_i = m_new

    has_key = l_i > 0.0
    out = acc / tl.where(has_key, l_i, 1.0)[:, None]
    # empty rows: lse is never used for them (their mask is all False in the backward)
    lse = tl.where(has_key, m_i + tl.log2(tl.where(has_key, l_i, 1.0)), 0.0)
    o_base = o_ptr + pid_bh.to(tl.int64) * n_q * HEAD_DIM
    _store_rows(o_base, offs_m, row_in, out, HEAD_DIM)
    tl.store(lse_ptr + pid_bh.to(tl.int64) * n_q + offs_m, lse, mask=row_in)


@triton.jit
def _backward_dkdv_kernel(
    q_ptr, k_ptr, v_ptr, do_ptr, lse_ptr, delta_ptr, dk_ptr, dv_ptr,
    qseg_ptr, kseg_ptr, table_ptr, ptr_ptr, idx_ptr,
    n_heads, n_q, n_k, n_seg, n_k_tiles, qk_scale, scale,
    HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
    PRECISION: tl.constexpr,
):
    pid_n = tl.program_id(0)
    pid_bh = tl.program_id(1)
    b = pid_bh // n_heads
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    col_in = offs_n < n_k
    q_base = q_ptr + pid_bh.to(tl.int64) * n_q * HEAD_DIM
    do_base = do_ptr + pid_bh.to(tl.int64) * n_q * HEAD_DIM
    kv_off = pid_bh.to(tl.int64) * n_k * HEAD_DIM
    row_off = pid_bh.to(tl.int64) * n_q

    k = _load_rows(k_ptr + kv_off, offs_n, col_in, HEAD_DIM)
    v = _load_rows(v_ptr + kv_off, offs_n, col_in, HEAD_DIM)
    ks = tl.load(kseg_ptr + b * n_k + offs_n, mask=col_in, other=-1)
    dk = tl.zeros([BLOCK_N, HEAD_DIM], tl.float32)
    dv = tl.zeros([BLOCK_N, HEAD_DIM], tl.float32)

    start = tl.load(ptr_ptr + b * (n_k_tiles + 1) + pid_n)
    end = tl.load(ptr_ptr + b * (n_k_tiles + 1) + pid_n + 1)
    for i in range(start, end):
        qt = tl.load(idx_ptr + i)
        offs_m = qt * BLOCK_M + tl.arange(0, BLOCK_M)
        row_in = offs_m < n_q
        q = _load_rows(q_base, offs_m, row_in, HEAD_DIM)
        do = _load_rows(do_base, offs_m, row_in, HEAD_DIM)
        lse = tl.load(lse_ptr + row_off + offs_m, mask=row_in, other=0.0)
        delta = tl.load(delta_ptr + row_off + offs_m, mask=row_in, other=0.0)
        qs = tl.load(qseg_ptr + b * n_q + offs_m, mask=row_in, other=-1)
        allowed = _element_mask(qs, ks, table_ptr, n_seg)

        s = tl.dot(q, tl.trans(k), input_precision=PRECISION) * qk_scale
        p = tl.where(allowed, tl.exp2(s - lse[:, None]), 0.0)
        dv += tl.dot(tl.trans(p.to(do.dtype)), do, input_precision=PRECISION)
        dp = tl.dot(do, tl.trans(v), input_precision=PRECISION)
        ds = p * (dp - delta[:, None])
        dk += tl.dot(tl.trans(ds.to(q.dtype)), q, input_precision=PRECISION)

    dk = dk * scale
    _store_rows(dk_ptr + kv_off, offs_n, col_in, dk, HEAD_DIM)
    _store_rows(dv_ptr + kv_off, offs_n, col_in, dv, HEAD_DIM)


@triton.jit
def _backward_dq_kernel(
    q_ptr, k_ptr, v_ptr, do_ptr, lse_ptr, delta_ptr, dq_ptr,
    qseg_ptr, kseg_ptr, table_ptr, ptr_ptr, idx_ptr,
    n_heads, n_q, n_k, n_seg, n_q_tiles, qk_scale, scale,
    HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
    PRECISION: tl.constexpr,
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

    q = _load_rows(q_ptr + q_off, offs_m, row_in, HEAD_DIM)
    do = _load_rows(do_ptr + q_off, offs_m, row_in, HEAD_DIM)
    lse = tl.load(lse_ptr + row_off + offs_m, mask=row_in, other=0.0)
    delta = tl.load(delta_ptr + row_off + offs_m, mask=row_in, other=0.0)
    qs = tl.load(qseg_ptr + b * n_q + offs_m, mask=row_in, other=-1)
    dq = tl.zeros([BLOCK_M, HEAD_DIM], tl.float32)

    start = tl.load(ptr_ptr + b * (n_q_tiles + 1) + pid_m)
    end = tl.load(ptr_ptr + b * (n_q_tiles + 1) + pid_m + 1)
    for i in range(start, end):
        k, v, allowed = _key_tile(k_base, v_base, kseg_ptr, idx_ptr, i, b, n_k, qs, table_ptr,
                                  n_seg, BLOCK_N, HEAD_DIM)

        s = tl.dot(q, tl.trans(k), input_precision=PRECISION) * qk_scale
        p = tl.where(allowed, tl.exp2(s - lse[:, None]), 0.0)
        dp = tl.dot(do, tl.trans(v), input_precision=PRECISION)
        ds = p * (dp - delta[:, None])
        dq += tl.dot(ds.to(k.dtype), k, input_precision=PRECISION)

    dq = dq * scale
    _store_rows(dq_ptr + q_off, offs_m, row_in, dq, HEAD_DIM)


def _precision(dtype: torch.dtype) -> str:
    # fp32 inputs: exact fp32 products (tf32 would break 1e-4 agreement); fp16/bf16 ignore it
    return "ieee" if dtype == torch.float32 else "tf32"


class _BlockSparseAttention(torch.autograd.Function):
    """Autograd wrapper around the forward and backward kernels."""

    @staticmethod
    def forward(ctx, q, k, v, q_seg, k_seg, table, scale, block_m, block_n):
        batch, n_heads, n_q, head_dim = q.shape
        n_k = k.shape[2]
        n_q_tiles = triton.cdiv(n_q, block_m)
        lists = build_tile_lists(q_seg, k_seg, table, block_m, block_n)
        out = torch.empty_like(q)
        # log-sum-exp of the scaled scores in base 2 (the kernels use exp2), fp32
        lse = torch.empty(batch, n_heads, n_q, dtype=torch.float32, device=q.device)
        grid = (n_q_tiles, batch * n_heads)
        _forward_kernel[grid](
            q, k, v, out, lse,
            q_seg, k_seg, table, lists.ptr, lists.idx,
            n_heads, n_q, n_k, table.shape[0], n_q_tiles, scale * _LOG2E,
            HEAD_DIM=head_dim, BLOCK_M=block_m, BLOCK_N=block_n,
            PRECISION=_precision(q.dtype),
        )
        ctx.save_for_backward(q, k, v, out, lse, q_seg, k_seg, table, lists.ptr, lists.idx)
        ctx.scale = scale
        ctx.block_m = block_m
        ctx.block_n = block_n
        return out

    @staticmethod
    def backward(ctx, grad_out):
        q, k, v, out, lse, q_seg, k_seg, table, ptr, idx = ctx.saved_tensors
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
        lists_t = build_tile_lists(q_seg, k_seg, table, block_m, block_n, transpose=True)
        common = dict(
            HEAD_DIM=head_dim, BLOCK_M=block_m, BLOCK_N=block_n, PRECISION=_precision(q.dtype)
        )
        _backward_dkdv_kernel[(n_k_tiles, batch * n_heads)](
            q, k, v, grad_out, lse, delta, dk, dv,
            q_seg, k_seg, table, lists_t.ptr, lists_t.idx,
            n_heads, n_q, n_k, table.shape[0], n_k_tiles, scale * _LOG2E, scale,
            **common,
        )
        _backward_dq_kernel[(n_q_tiles, batch * n_heads)](
            q, k, v, grad_out, lse, delta, dq,
            q_seg, k_seg, table, ptr, idx,
            n_heads, n_q, n_k, table.shape[0], n_q_tiles, scale * _LOG2E, scale,
            **common,
        )
        return dq, dk, dv, None, None, None, None, None, None


def _padded_head_dim(head_dim: int) -> int:
    if head_dim > 128:
        raise ValueError(f"head dimension {head_dim} is not supported (at most 128)")
    return max(16, 1 << (head_dim - 1).bit_length())


def block_sparse_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    q_segment_ids: torch.Tensor,
    k_segment_ids: torch.Tensor,
    table: torch.Tensor,
    scale: float | None = None,
    block_m: int = 64,
    block_n: int = 64,
) -> torch.Tensor:
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
        Boolean (S, S); ``table[i, j]`` allows queries of segment ``i`` to
        attend keys of segment ``j``.
    scale : float, optional
        Softmax scale, default ``1 / sqrt(D)``.
    block_m, block_n : int, default 64
        Query and key tile sizes (powers of two, at least 16).

    Returns
    -------
    torch.Tensor
        (B, H, Nq, D) attention output; 0 for padding queries and for queries
        that may attend no key.

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
    if table.dim() != 2 or table.shape[0] != table.shape[1]:
        raise ValueError("table must be a square (S, S) boolean tensor")
    for block in (block_m, block_n):
        if block < 16 or block & (block - 1):
            raise ValueError(f"tile sizes must be powers of two >= 16, got {block}")
    n_seg = table.shape[0]
    for ids in (q_segment_ids, k_segment_ids):
        # an id beyond the table would read outside it inside the kernel
        if ids.numel() and int(ids.max()) >= n_seg:
            bad = int(ids.max())
            raise ValueError(f"segment id {bad} out of range for a {n_seg}x{n_seg} table")
    if scale is None:
        scale = 1.0 / math.sqrt(head_dim)

    padded = _padded_head_dim(head_dim)
    if padded != head_dim:
        # zero columns change neither scores nor the kept output columns
        extra = (0, padded - head_dim)
        q, k, v = (torch.nn.functional.pad(t, extra) for t in (q, k, v))
    device = q.device
    out = _BlockSparseAttention.apply(
        q.contiguous(),
        k.contiguous(),
        v.contiguous(),
        q_segment_ids.to(device=device, dtype=torch.int32).contiguous(),
        k_segment_ids.to(device=device, dtype=torch.int32).contiguous(),
        table.to(device=device, dtype=torch.int32).contiguous(),
        float(scale),
        block_m,
        block_n,
    )
    return out[..., :head_dim] if padded != head_dim else out


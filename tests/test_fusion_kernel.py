"""Block-sparse attention kernel against a dense PyTorch reference.

Without a GPU the kernels run under the Triton interpreter, which must be
enabled before the kernel module is imported.
"""
from __future__ import annotations

import os

import pytest
import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

pytest.importorskip("triton")

from brainenc.fusion.attention import dense_attention  # noqa: E402
from brainenc.fusion.layout import CAUSAL, causal_table  # noqa: E402
from brainenc.fusion.kernels.block_attention import (  # noqa: E402
    block_sparse_attention,
    build_tile_lists,
)

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
BLOCK = 16


def random_segments(
    gen: torch.Generator, batch: int, length: int, n_segments: int
) -> torch.Tensor:
    """Segment ids (B, length): contiguous segments of random lengths (zero allowed), padded."""
    ids = torch.full((batch, length), -1, dtype=torch.int64)
    for b in range(batch):
        used = int(torch.randint(length // 2, length + 1, (1,), generator=gen))
        # random cut points give random segment lengths, some of them zero
        cuts = torch.randint(0, used + 1, (n_segments - 1,), generator=gen).sort().values
        bounds = [0, *cuts.tolist(), used]
        for s in range(n_segments):
            ids[b, bounds[s] : bounds[s + 1]] = s
    return ids


def random_table(gen: torch.Generator, n_segments: int) -> torch.Tensor:
    """Random permission table with at least one all-False row."""
    table = torch.rand(n_segments, n_segments, generator=gen) < 0.5
    table[int(torch.randint(0, n_segments, (1,), generator=gen))] = False
    return table


def make_case(seed: int, dtype: torch.dtype = torch.float32, cross: bool = False):
    gen = torch.Generator().manual_seed(seed)
    batch = int(torch.randint(1, 3, (1,), generator=gen))
    heads = int(torch.randint(1, 3, (1,), generator=gen))
    n_segments = int(torch.randint(2, 5, (1,), generator=gen))
    head_dim = [16, 32][int(torch.randint(0, 2, (1,), generator=gen))]
    n_q = int(torch.randint(8, 81, (1,), generator=gen))
    n_k = int(torch.randint(8, 81, (1,), generator=gen)) if cross else n_q
    q_seg = random_segments(gen, batch, n_q, n_segments)
    k_seg = random_segments(gen, batch, n_k, n_segments) if cross else q_seg
    table = random_table(gen, n_segments)
    q = torch.randn(batch, heads, n_q, head_dim, generator=gen)
    k = torch.randn(batch, heads, n_k, head_dim, generator=gen)
    v = torch.randn(batch, heads, n_k, head_dim, generator=gen)
    tensors = [t.to(DEVICE, dtype).requires_grad_(True) for t in (q, k, v)]
    return tensors, q_seg.to(DEVICE), k_seg.to(DEVICE), table.to(DEVICE)


def dense_mask(q_seg, k_seg, table):
    valid = (q_seg[:, :, None] >= 0) & (k_seg[:, None, :] >= 0)
    return valid & table[q_seg.clamp(min=0)[:, :, None], k_seg.clamp(min=0)[:, None, :]]


@pytest.mark.parametrize(
    "seed, cross", [(0, False), (1, False), (2, False), (3, True), (4, True), (5, False)]
)
def test_forward_and_gradients_match_reference_fp32(seed, cross):
    assert_kernel_matches_dense(*make_case(seed, cross=cross))


def assert_kernel_matches_dense(qkv, q_seg, k_seg, table):
    """Kernel output and q/k/v gradients equal the dense reference to 1e-4 relative."""
    q, k, v = qkv
    out = block_sparse_attention(q, k, v, q_seg, k_seg, table, block_m=BLOCK, block_n=BLOCK)
    ref = dense_attention(q, k, v, q_seg, k_seg, table)
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-5)

    grad = torch.randn_like(out)
    got = torch.autograd.grad(out, (q, k, v), grad)
    want = torch.autograd.grad(ref, (q, k, v), grad)
    for name, g, w in zip("qkv", got, want):
        assert torch.isfinite(g).all(), name
        torch.testing.assert_close(g, w, rtol=1e-4, atol=1e-5, msg=f"grad {name}")


def test_rows_without_keys_give_zero_output_and_gradient():
    (q, k, v), q_seg, k_seg, table = make_case(6)
    q_seg = q_seg.clone()
    q_seg[:, -5:] = -1  # padding queries
    table = table.clone()
    table[0] = False  # segment 0 may attend nothing
    out = block_sparse_attention(q, k, v, q_seg, k_seg, table, block_m=BLOCK, block_n=BLOCK)
    out.sum().backward()
    empty = ~dense_mask(q_seg, k_seg, table).any(-1)  # (B, Nq)
    assert empty.any()
    assert torch.isfinite(out).all()
    assert (out.detach()[empty[:, None].expand(-1, out.shape[1], -1)] == 0).all()
    assert (q.grad[empty[:, None].expand(-1, q.shape[1], -1)] == 0).all()
    for t in (q, k, v):
        assert torch.isfinite(t.grad).all()


def test_all_false_table_gives_zeros():
    (q, k, v), q_seg, k_seg, table = make_case(7)
    table = torch.zeros_like(table)
    out = block_sparse_attention(q, k, v, q_seg, k_seg, table, block_m=BLOCK, block_n=BLOCK)
    out.sum().backward()
    assert (out == 0).all()
    for t in (q, k, v):
        assert (t.grad == 0).all()


@pytest.mark.parametrize("seed", [8, 9])
def test_forward_fp16_matches_reference(seed):
    (q, k, v), q_seg, k_seg, table = make_case(seed, dtype=torch.float16, cross=seed % 2 == 1)
    out = block_sparse_attention(q, k, v, q_seg, k_seg, table, block_m=BLOCK, block_n=BLOCK)
    ref = dense_attention(q, k, v, q_seg, k_seg, table)
    assert out.dtype == torch.float16
    torch.testing.assert_close(out.float(), ref.float(), rtol=1e-2, atol=5e-3)


def test_head_dim_is_padded_and_scale_respected():
    gen = torch.Generator().manual_seed(10)
    seg = random_segments(gen, 1, 40, 3).to(DEVICE)
    table = torch.tensor([[1, 1, 0], [0, 1, 1], [1, 0, 1]], dtype=torch.bool, device=DEVICE)
    q, k, v = (torch.randn(1, 2, 40, 24, generator=gen).to(DEVICE) for _ in range(3))
    out = block_sparse_attention(q, k, v, seg, seg, table, scale=0.3, block_m=BLOCK, block_n=BLOCK)
    ref = dense_attention(q, k, v, seg, seg, table, scale=0.3)
    assert out.shape == q.shape
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-5)


def test_rejects_head_dim_above_128():
    q = torch.zeros(1, 1, 16, 256, device=DEVICE)
    seg = torch.zeros(1, 16, dtype=torch.int64, device=DEVICE)
    table = torch.ones(1, 1, dtype=torch.bool, device=DEVICE)
    with pytest.raises(ValueError, match="head dimension"):
        block_sparse_attention(q, q, q, seg, seg, table, block_m=BLOCK, block_n=BLOCK)


def test_default_tiles_and_non_contiguous_inputs():
    (q, k, v), q_seg, k_seg, table = make_case(14, cross=True)
    # every other column of a wider tensor: a strided view
    q_t = q.detach().repeat_interleave(2, dim=-1)[..., ::2].requires_grad_(True)
    assert not q_t.is_contiguous()
    out = block_sparse_attention(q_t, k, v, q_seg.int(), k_seg, table)
    ref = dense_attention(q_t, k, v, q_seg, k_seg, table)
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-5)
    grad = torch.randn_like(out)
    got = torch.autograd.grad(out, (q_t, k, v), grad)
    want = torch.autograd.grad(ref, (q_t, k, v), grad)
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, rtol=1e-4, atol=1e-5)


def test_rejects_segment_ids_outside_table():
    q = torch.zeros(1, 1, 16, 16, device=DEVICE)
    seg = torch.full((1, 16), 2, dtype=torch.int64, device=DEVICE)
    table = torch.ones(2, 2, dtype=torch.bool, device=DEVICE)
    with pytest.raises(ValueError, match="out of range"):
        block_sparse_attention(q, q, q, seg, seg, table, block_m=BLOCK, block_n=BLOCK)


def visited_pairs(lists, n_rows: int) -> set[tuple[int, int, int]]:
    """Set of (sample, row tile, column tile) from a CSR."""
    ptr, idx = lists.ptr.cpu(), lists.idx.cpu()
    pairs = set()
    for b in range(ptr.shape[0]):
        for t in range(n_rows):
            for i in range(int(ptr[b, t]), int(ptr[b, t + 1])):
                pairs.add((b, t, int(idx[i])))
    return pairs


def test_block_diagonal_table_visits_only_diagonal_tiles():
    # two segments of 40 tokens: tiles 0-1 are segment 0, tile 2 straddles, tiles 3-4 segment 1
    seg = torch.tensor([[0] * 40 + [1] * 40], device=DEVICE)
    table = torch.eye(2, dtype=torch.bool, device=DEVICE)
    lists = build_tile_lists(seg, seg, table, BLOCK, BLOCK)
    expected = {(0, t, s) for t in range(3) for s in range(3)} | {
        (0, t, s) for t in range(2, 5) for s in range(2, 5)
    }
    assert lists.n_visited == len(expected) == 17  # of 25 tile pairs
    assert visited_pairs(lists, 5) == expected
    transposed = build_tile_lists(seg, seg, table, BLOCK, BLOCK, transpose=True)
    assert visited_pairs(transposed, 5) == {(b, s, t) for b, t, s in expected}


@pytest.mark.parametrize("seed", [11, 12, 13])
def test_tile_lists_cover_every_allowed_entry(seed):
    gen = torch.Generator().manual_seed(seed)
    n_segments = 4
    q_seg = random_segments(gen, 2, 75, n_segments)
    k_seg = random_segments(gen, 2, 60, n_segments)
    table = random_table(gen, n_segments)
    lists = build_tile_lists(q_seg, k_seg, table, BLOCK, BLOCK)
    n_q_tiles, n_k_tiles = -(-75 // BLOCK), -(-60 // BLOCK)
    mask = dense_mask(q_seg, k_seg, table)
    mask = torch.nn.functional.pad(mask, (0, n_k_tiles * BLOCK - 60, 0, n_q_tiles * BLOCK - 75))
    tile_any = mask.view(2, n_q_tiles, BLOCK, n_k_tiles, BLOCK).any(-1).any(2)
    needed = {tuple(x) for x in tile_any.nonzero().tolist()}
    visited = visited_pairs(lists, n_q_tiles)
    assert needed <= visited
    # exactly the pairs whose segment-id ranges meet an allowed block of the table
    rect = set()
    for b in range(2):
        for t in range(n_q_tiles):
            qs = [s for s in q_seg[b, t * BLOCK : (t + 1) * BLOCK].tolist() if s >= 0]
            for u in range(n_k_tiles):
                ks = [s for s in k_seg[b, u * BLOCK : (u + 1) * BLOCK].tolist() if s >= 0]
                if qs and ks and table[min(qs) : max(qs) + 1, min(ks) : max(ks) + 1].any():
                    rect.add((b, t, u))
    assert visited == rect
    assert lists.n_visited == len(rect)


# ----------------------------------------------------------------------------- causal blocks, mass


def causal_case(seed: int, cross: bool):
    (q, k, v), q_seg, k_seg, table = make_case(seed, cross=cross)
    gen = torch.Generator().manual_seed(200 + seed)
    n = table.shape[0]
    chosen = [(i, j) for i in range(n) for j in range(n) if torch.rand(1, generator=gen) < 0.7]
    return (q, k, v), q_seg, k_seg, causal_table(table.cpu(), chosen).to(DEVICE)


@pytest.mark.parametrize(
    "seed, cross", [(20, False), (21, False), (22, True), (25, True), (24, False)]
)
def test_causal_blocks_match_reference_fp32(seed, cross):
    case = causal_case(seed, cross)
    assert (case[-1] == CAUSAL).any()
    assert_kernel_matches_dense(*case)


@pytest.mark.parametrize("seed, causal", [(30, False), (31, True), (32, False), (33, True)])
def test_segment_mass_matches_reference(seed, causal):
    case = causal_case(seed, cross=True) if causal else make_case(seed, cross=True)
    (q, k, v), q_seg, k_seg, table = case
    out, mass = block_sparse_attention(
        q, k, v, q_seg, k_seg, table, block_m=BLOCK, block_n=BLOCK, return_segment_mass=True
    )
    ref, ref_mass = dense_attention(q, k, v, q_seg, k_seg, table, return_segment_mass=True)
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(mass, ref_mass, rtol=1e-4, atol=1e-6)
    assert mass.dtype == torch.float32 and not mass.requires_grad
    # the output keeps its gradient when the mass is requested too
    got = torch.autograd.grad(out.sum(), q)[0]
    torch.testing.assert_close(got, torch.autograd.grad(ref.sum(), q)[0], rtol=1e-4, atol=1e-5)


def test_causal_self_block_skips_tiles_above_the_diagonal():
    seg = torch.zeros(1, 128, dtype=torch.int64, device=DEVICE)
    codes = causal_table(torch.ones(1, 1, dtype=torch.bool)).to(DEVICE)
    lists = build_tile_lists(seg, seg, codes, BLOCK, BLOCK)
    assert visited_pairs(lists, 8) == {(0, t, u) for t in range(8) for u in range(t + 1)}
    assert lists.n_visited == 36  # of 64 tile pairs


@pytest.mark.parametrize("length", [130, 129, 143, 144])
def test_causal_tile_lists_with_a_partial_last_tile_stay_lower_triangular(length):
    # the padding of the last key tile must not count as a key at position "minus infinity"
    seg = torch.zeros(1, length, dtype=torch.int64, device=DEVICE)
    codes = causal_table(torch.ones(1, 1, dtype=torch.bool)).to(DEVICE)
    n_tiles = -(-length // 16)
    lists = build_tile_lists(seg, seg, codes, 16, 16)
    assert visited_pairs(lists, n_tiles) == {(0, t, u) for t in range(n_tiles) for u in range(t + 1)}
    assert lists.n_visited == n_tiles * (n_tiles + 1) // 2       # 45 for 130 tokens


@pytest.mark.parametrize("seed", [40, 41, 42])
def test_causal_tile_lists_cover_every_allowed_entry(seed):
    gen = torch.Generator().manual_seed(seed)
    q_seg = random_segments(gen, 2, 90, 3)
    k_seg = random_segments(gen, 2, 70, 3)
    codes = causal_table(random_table(gen, 3) | torch.eye(3, dtype=torch.bool))
    lists = build_tile_lists(q_seg, k_seg, codes, BLOCK, BLOCK)
    n_q_tiles, n_k_tiles = -(-90 // BLOCK), -(-70 // BLOCK)
    # element mask from an independent per-block construction (MulT's triu rule)
    keep = torch.zeros(2, 90, 70, dtype=torch.bool)
    for b in range(2):
        for i in range(3):
            rows = (q_seg[b] == i).nonzero().flatten()
            for j in range(3):
                cols = (k_seg[b] == j).nonzero().flatten()
                if codes[i, j] and len(rows) and len(cols):
                    diag = 1 + abs(len(cols) - len(rows))
                    block = ~torch.triu(torch.ones(len(rows), len(cols), dtype=torch.bool), diag)
                    keep[b, rows[:, None], cols[None, :]] = block
    keep = torch.nn.functional.pad(keep, (0, n_k_tiles * BLOCK - 70, 0, n_q_tiles * BLOCK - 90))
    tile_any = keep.view(2, n_q_tiles, BLOCK, n_k_tiles, BLOCK).any(-1).any(2)
    needed = {tuple(x) for x in tile_any.nonzero().tolist()}
    visited = visited_pairs(lists, n_q_tiles)
    assert needed <= visited
    # of the pairs the block rectangles allow, those lying inside one causal
    # block are listed exactly when they hold an allowed entry
    plain = visited_pairs(build_tile_lists(q_seg, k_seg, codes != 0, BLOCK, BLOCK), n_q_tiles)

    def tile_segments(seg, b, t):
        return {s for s in seg[b, t * BLOCK : (t + 1) * BLOCK].tolist() if s >= 0}

    expected = set()
    for b, t, u in plain:
        qs, ks = tile_segments(q_seg, b, t), tile_segments(k_seg, b, u)
        inside_causal = len(qs) == len(ks) == 1 and codes[min(qs), min(ks)] == CAUSAL
        if not inside_causal or (b, t, u) in needed:
            expected.add((b, t, u))
    assert visited == expected


# ----------------------------------------------------------------------------- compiled kernels (GPU)

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="compiled kernels need CUDA")


@needs_cuda
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("causal", [False, True])
def test_half_precision_forward_and_gradients_on_gpu(dtype, causal):
    """Default 64x64 tiles, half inputs: close to the fp32 dense result on the same inputs."""
    gen = torch.Generator().manual_seed(50)
    seg = random_segments(gen, 2, 700, 3).to(DEVICE)
    table = random_table(gen, 3) | torch.eye(3, dtype=torch.bool)
    table = (causal_table(table) if causal else table).to(DEVICE)
    q, k, v = (
        torch.randn(2, 4, 700, 64, generator=gen).to(DEVICE, dtype).requires_grad_(True)
        for _ in range(3)
    )
    out = block_sparse_attention(q, k, v, seg, seg, table)
    assert out.dtype == dtype
    q32, k32, v32 = (t.detach().float().requires_grad_(True) for t in (q, k, v))
    ref = dense_attention(q32, k32, v32, seg, seg, table)
    tol = dict(rtol=2e-2, atol=2e-2) if dtype == torch.bfloat16 else dict(rtol=1e-2, atol=5e-3)
    torch.testing.assert_close(out.float(), ref, **tol)
    grad = torch.randn_like(ref)
    got = torch.autograd.grad(out, (q, k, v), grad.to(dtype))
    want = torch.autograd.grad(ref, (q32, k32, v32), grad)
    for name, g, w in zip("qkv", got, want):
        scale = w.abs().max().clamp(min=1.0)
        assert (g.float() - w).abs().max() / scale < 5e-2, name


@needs_cuda
def test_long_sequence_fp32_on_gpu():
    gen = torch.Generator().manual_seed(51)
    seg = random_segments(gen, 1, 3000, 4).to(DEVICE)
    table = random_table(gen, 4).to(DEVICE)
    case = [torch.randn(1, 2, 3000, 32, generator=gen).to(DEVICE).requires_grad_(True)
            for _ in range(3)]
    out = block_sparse_attention(*case, seg, seg, table)
    ref = dense_attention(*case, seg, seg, table)
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-5)

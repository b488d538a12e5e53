"""Block-table attention: dense reference, block path and the attention module."""
from __future__ import annotations

import math
import sys

import pytest
import torch

from brainenc.fusion.attention import ModalityAttention, block_attention, dense_attention
from brainenc.fusion.layout import (
    ATTEND,
    CAUSAL,
    ModalityLayout,
    causal_table,
    cross_modal_blocks,
    full_table,
    gsit_forward_table,
    has_causal,
    segment_positions,
    silence,
    table_codes,
)

TOL = dict(atol=1e-5, rtol=1e-5)


def _random_case(seed: int):
    """Random layout (some empty segments), random table (some empty rows), q/k/v."""
    gen = torch.Generator().manual_seed(seed)
    batch = int(torch.randint(1, 4, (1,), generator=gen))
    n_seg = int(torch.randint(2, 5, (1,), generator=gen))
    heads = int(torch.randint(1, 4, (1,), generator=gen))
    head_dim = int(torch.randint(8, 33, (1,), generator=gen))
    lengths = torch.randint(0, 21, (batch, n_seg), generator=gen)
    lengths[torch.rand(batch, n_seg, generator=gen) < 0.25] = 0
    layout = ModalityLayout(tuple(f"m{s}" for s in range(n_seg)), lengths)
    table = torch.rand(n_seg, n_seg, generator=gen) < 0.5
    if seed % 3 == 0:
        table[int(torch.randint(0, n_seg, (1,), generator=gen))] = False  # a row attending nothing
    n_tokens = layout.max_length + int(torch.randint(0, 3, (1,), generator=gen))
    ids = layout.segment_ids(n_tokens)
    q, k, v = (torch.randn(batch, heads, n_tokens, head_dim, generator=gen) for _ in range(3))
    return layout, table, ids, q, k, v


def _loop_attention(q, k, v, q_ids, k_ids, table, scale):
    """One query at a time: softmax over the keys its segment may attend."""
    batch, heads, n_q, _ = q.shape
    out = torch.zeros(batch, heads, n_q, v.shape[-1], dtype=torch.float64)
    for b in range(batch):
        for i in range(n_q):
            s = int(q_ids[b, i])
            if s < 0:
                continue
            keys = [j for j in range(k.shape[2]) if k_ids[b, j] >= 0 and table[s, int(k_ids[b, j])]]
            if not keys:
                continue
            for h in range(heads):
                scores = torch.stack([q[b, h, i].double() @ k[b, h, j].double() for j in keys]) * scale
                weights = torch.exp(scores - scores.max())
                weights = weights / weights.sum()
                out[b, h, i] = sum(w * v[b, h, j].double() for w, j in zip(weights, keys))
    return out


@pytest.mark.parametrize("seed", range(4))
def test_dense_matches_per_query_loop(seed):
    gen = torch.Generator().manual_seed(100 + seed)
    layout = ModalityLayout(("a", "b", "c"), torch.tensor([[3, 0, 2], [1, 4, 0]]))
    table = torch.rand(3, 3, generator=gen) < 0.5
    table[1] = False
    ids = layout.segment_ids(layout.max_length + 1)
    q, k, v = (torch.randn(2, 2, ids.shape[1], 8, generator=gen) for _ in range(3))
    scale = 0.7 if seed % 2 else 1 / math.sqrt(8)
    out = dense_attention(q, k, v, ids, ids, table, scale=scale if seed % 2 else None)
    expected = _loop_attention(q, k, v, ids, ids, table, scale)
    torch.testing.assert_close(out.double(), expected, **TOL)


def test_dense_cross_attention_matches_loop():
    gen = torch.Generator().manual_seed(7)
    q_layout = ModalityLayout(("a", "b"), torch.tensor([[2, 3], [0, 1]]))
    k_layout = ModalityLayout(("a", "b"), torch.tensor([[4, 0], [2, 5]]))
    table = torch.tensor([[False, True], [True, True]])
    q_ids, k_ids = q_layout.segment_ids(), k_layout.segment_ids()
    q = torch.randn(2, 1, q_ids.shape[1], 8, generator=gen)
    k, v = (torch.randn(2, 1, k_ids.shape[1], 8, generator=gen) for _ in range(2))
    expected = _loop_attention(q, k, v, q_ids, k_ids, table, 1 / math.sqrt(8))
    torch.testing.assert_close(dense_attention(q, k, v, q_ids, k_ids, table).double(), expected, **TOL)
    torch.testing.assert_close(block_attention(q, k, v, q_ids, k_ids, table).double(), expected, **TOL)


@pytest.mark.parametrize("seed", range(12))
def test_block_matches_dense_forward_and_gradients(seed):
    layout, table, ids, q, k, v = _random_case(seed)
    grads = []
    outs = []
    upstream = torch.randn(q.shape[:3] + (v.shape[-1],), generator=torch.Generator().manual_seed(seed))
    for fn in (dense_attention, block_attention):
        qq, kk, vv = (t.clone().requires_grad_(True) for t in (q, k, v))
        out = fn(qq, kk, vv, ids, ids, table)
        outs.append(out.detach())
        if not out.requires_grad:  # the block path skipped every block: nothing depends on q, k, v
            grads.append([torch.zeros_like(t) for t in (q, k, v)])
            continue
        found = torch.autograd.grad((out * upstream).sum(), (qq, kk, vv), allow_unused=True)
        grads.append([torch.zeros_like(t) if g is None else g for g, t in zip(found, (q, k, v))])
    torch.testing.assert_close(outs[1], outs[0], **TOL)
    for g_block, g_dense in zip(grads[1], grads[0]):
        assert torch.isfinite(g_block).all() and torch.isfinite(g_dense).all()
        torch.testing.assert_close(g_block, g_dense, **TOL)
    # padding queries and queries whose segment attends no non-empty key segment get 0
    key_present = torch.stack(
        [(table[:, ids[b][ids[b] >= 0].unique()].any(dim=1)) for b in range(ids.shape[0])]
    )  # (B, S)
    attends = torch.stack([torch.where(ids[b] >= 0, key_present[b][ids[b].clamp(min=0)], False)
                           for b in range(ids.shape[0])])
    assert torch.all(outs[0][~attends[:, None].expand(-1, q.shape[1], -1)] == 0)
    assert torch.all(grads[0][0][~attends[:, None].expand(-1, q.shape[1], -1)] == 0)


@pytest.mark.parametrize("seed", range(6))
def test_segment_mass(seed):
    layout, table, ids, q, k, v = _random_case(seed)
    out_d, mass_d = dense_attention(q, k, v, ids, ids, table, return_segment_mass=True)
    out_b, mass_b = block_attention(q, k, v, ids, ids, table, return_segment_mass=True)
    torch.testing.assert_close(out_b, out_d, **TOL)
    torch.testing.assert_close(mass_b, mass_d, **TOL)
    assert mass_d.shape == q.shape[:3] + (layout.n_segments,)
    for b in range(q.shape[0]):
        present = torch.zeros(layout.n_segments, dtype=torch.bool)
        present[ids[b][ids[b] >= 0].unique()] = True
        for i in range(ids.shape[1]):
            s = int(ids[b, i])
            allowed = table[s] & present if s >= 0 else torch.zeros_like(present)
            row = mass_d[b, :, i]
            assert torch.all(row[:, ~allowed] == 0)
            total = row.sum(dim=-1)
            expected = torch.full_like(total, 1.0 if allowed.any() else 0.0)
            torch.testing.assert_close(total, expected, **TOL)


def test_all_false_table_gives_zeros_without_nan():
    layout = ModalityLayout(("a", "b"), torch.tensor([[3, 2]]))
    ids = layout.segment_ids()
    q, k, v = (torch.randn(1, 2, 5, 8, requires_grad=True) for _ in range(3))
    table = torch.zeros(2, 2, dtype=torch.bool)
    for fn in (dense_attention, block_attention):
        out = fn(q, k, v, ids, ids, table)
        assert torch.all(out == 0)
        if not out.requires_grad:  # the block path never touches the inputs
            continue
        out.sum().backward()
        for t in (q, k, v):
            assert torch.all(t.grad == 0)
            t.grad = None


def _module_case(seed: int, n_seg: int = 3):
    gen = torch.Generator().manual_seed(seed)
    lengths = torch.randint(0, 9, (3, n_seg), generator=gen)
    lengths[0] = torch.tensor([4, 0, 5])[:n_seg]
    layout = ModalityLayout(("text", "vision", "audio")[:n_seg], lengths)
    x = torch.randn(3, layout.max_length + 2, 24, generator=gen)
    return layout, x


@pytest.mark.parametrize("n_heads", [1, 2, 3])
def test_module_dense_and_block_backends_agree(n_heads):
    torch.manual_seed(n_heads)
    layout, x = _module_case(n_heads)
    dense = ModalityAttention(24, n_heads, backend="dense")
    block = ModalityAttention(24, n_heads, backend="block")
    block.load_state_dict(dense.state_dict())
    for table in (full_table(3), gsit_forward_table(), torch.tensor([[True, False, False]] * 3)):
        xd = x.clone().requires_grad_(True)
        xb = x.clone().requires_grad_(True)
        out_d, mass_d = dense(xd, layout, table, return_segment_mass=True)
        out_b, mass_b = block(xb, layout, table, return_segment_mass=True)
        torch.testing.assert_close(out_b, out_d, **TOL)
        torch.testing.assert_close(mass_b, mass_d, **TOL)
        out_d.square().sum().backward()
        out_b.square().sum().backward()
        torch.testing.assert_close(xb.grad, xd.grad, **TOL)
        ids = layout.segment_ids(x.shape[1])
        assert torch.all(out_d[ids < 0] == 0)


def test_silencing_cross_modal_blocks_isolates_modalities():
    torch.manual_seed(0)
    layout, x = _module_case(11)
    attn = ModalityAttention(24, 2, backend="block")
    ids = layout.segment_ids(x.shape[1])
    isolated = silence(full_table(3), cross_modal_blocks(3))
    for s in range(3):
        others = (ids >= 0) & (ids != s)
        perturbed = x.clone()
        perturbed[others] += torch.randn(int(others.sum()), x.shape[-1])
        with torch.no_grad():
            base = attn(x, layout, isolated)
            moved = attn(perturbed, layout, isolated)
            base_full = attn(x, layout, full_table(3))
            moved_full = attn(perturbed, layout, full_table(3))
        own = ids == s
        assert torch.equal(base[own], moved[own])
        assert not torch.allclose(base_full[own], moved_full[own])


def test_query_hook_zero_queries_give_mean_of_allowed_values():
    torch.manual_seed(3)
    layout, x = _module_case(5)
    table = gsit_forward_table()
    table[0, 0] = True  # text attends text and vision
    ids = layout.segment_ids(x.shape[1])
    seen = {}

    def zero_queries(q, segment_ids):
        seen["ids"] = segment_ids
        return torch.zeros_like(q)

    for backend in ("dense", "block"):
        attn = ModalityAttention(24, 2, backend=backend)
        with torch.no_grad():
            out = attn(x, layout, table, query_hook=zero_queries)
            _, _, v = attn.qkv(x).view(*x.shape[:2], 3, 2, 12).permute(2, 0, 3, 1, 4).unbind(0)
            expected_heads = torch.zeros_like(v)
            for b in range(x.shape[0]):
                for i in range(x.shape[1]):
                    s = int(ids[b, i])
                    if s < 0:
                        continue
                    keys = (ids[b] >= 0) & table[s][ids[b].clamp(min=0)]
                    if keys.any():
                        expected_heads[b, :, i] = v[b, :, keys].mean(dim=1)
            expected = attn.out(expected_heads.transpose(1, 2).reshape(x.shape))
            expected = expected * (ids >= 0)[:, :, None]
        torch.testing.assert_close(out, expected, **TOL)
        assert torch.equal(seen["ids"], ids)


def test_backend_selection_and_errors():
    attn = ModalityAttention(16, 2)
    x = torch.randn(1, 3, 16)
    assert attn.resolve_backend(x) == "block"  # CPU input
    with pytest.raises(ValueError):
        ModalityAttention(16, 3)
    with pytest.raises(ValueError):
        ModalityAttention(16, 2, backend="flash")
    layout = ModalityLayout(("a", "b"), torch.tensor([[2, 1]]))
    with pytest.raises(ValueError):
        attn(x, layout, full_table(3))


def test_triton_backend_matches_block(monkeypatch):
    device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cpu":
        # the interpreter flag is read when the kernels are defined, i.e. on first import
        monkeypatch.setenv("TRITON_INTERPRET", "1")
    pytest.importorskip("triton")
    pytest.importorskip("brainenc.fusion.kernels.block_attention")
    torch.manual_seed(4)
    layout = ModalityLayout(("text", "vision", "audio"), torch.tensor([[5, 0, 7], [3, 6, 2]]))
    layout = ModalityLayout(layout.names, layout.lengths.to(device))
    x = torch.randn(2, layout.max_length + 1, 32, device=device)
    block = ModalityAttention(32, 2, backend="block").to(device)
    triton_attn = ModalityAttention(32, 2, backend="triton").to(device)
    triton_attn.load_state_dict(block.state_dict())
    table = gsit_forward_table() | torch.eye(3, dtype=torch.bool)
    with torch.no_grad():
        for t in (table, causal_table(table, [(0, 1), (2, 2)])):
            expected, expected_mass = block(x, layout, t, return_segment_mass=True)
            out, mass = triton_attn(x, layout, t, return_segment_mass=True)
            torch.testing.assert_close(out, expected, atol=1e-4, rtol=1e-4)
            torch.testing.assert_close(mass, expected_mass, atol=1e-5, rtol=1e-4)


def test_triton_backend_without_kernel_module_raises(monkeypatch):
    monkeypatch.setitem(sys.modules, "brainenc.fusion.kernels.block_attention", None)
    attn = ModalityAttention(16, 2, backend="triton")
    layout = ModalityLayout(("a", "b"), torch.tensor([[2, 1]]))
    with pytest.raises(RuntimeError, match="triton"):
        attn(torch.randn(1, 3, 16), layout, full_table(2))


# ----------------------------------------------------------------------------- causal blocks


def _mult_future_allowed(n_query: int, n_key: int) -> torch.Tensor:
    """MulT's ``buffered_future_mask`` as a keep-mask: triu from ``1 + |Lk - Lq|`` is masked."""
    masked = torch.triu(torch.ones(n_query, n_key, dtype=torch.bool), 1 + abs(n_key - n_query))
    return ~masked


def _loop_attention_codes(q, k, v, ids, codes, scale):
    """Per sample and block: full blocks, or MulT's future mask on causal ones."""
    batch, heads, n, _ = q.shape
    out = torch.zeros(batch, heads, n, v.shape[-1], dtype=torch.float64)
    for b in range(batch):
        members = [(ids[b] == s).nonzero().flatten() for s in range(codes.shape[0])]
        keep = torch.zeros(n, n, dtype=torch.bool)
        for i, rows in enumerate(members):
            for j, cols in enumerate(members):
                if codes[i, j] == 0 or not len(rows) or not len(cols):
                    continue
                block = torch.ones(len(rows), len(cols), dtype=torch.bool)
                if codes[i, j] == CAUSAL:
                    block = _mult_future_allowed(len(rows), len(cols))
                keep[rows[:, None], cols[None, :]] = block
        for h in range(heads):
            scores = (q[b, h].double() @ k[b, h].double().T) * scale
            weights = torch.softmax(scores.masked_fill(~keep, float("-inf")), dim=-1)
            out[b, h] = weights.nan_to_num(0.0) @ v[b, h].double()
    return out


def _causal_case(seed: int):
    layout, table, ids, q, k, v = _random_case(seed)
    gen = torch.Generator().manual_seed(100 + seed)
    n = layout.n_segments
    chosen = [(i, j) for i in range(n) for j in range(n) if torch.rand(1, generator=gen) < 0.6]
    return layout, causal_table(table, chosen), ids, q, k, v


@pytest.mark.parametrize("seed", range(8))
def test_causal_blocks_follow_mult_future_mask(seed):
    layout, codes, ids, q, k, v = _causal_case(seed)
    q, k, v = (t.requires_grad_(True) for t in (q, k, v))
    scale = 1.0 / math.sqrt(q.shape[-1])
    expected = _loop_attention_codes(q.detach(), k.detach(), v.detach(), ids, codes, scale)
    dense, mass_d = dense_attention(q, k, v, ids, ids, codes, return_segment_mass=True)
    torch.testing.assert_close(dense.double(), expected, **TOL)

    block, mass_b = block_attention(q, k, v, ids, ids, codes, return_segment_mass=True)
    torch.testing.assert_close(block, dense, **TOL)
    torch.testing.assert_close(mass_b, mass_d, **TOL)
    if block.requires_grad:
        grad = torch.randn_like(dense)
        want = torch.autograd.grad(dense, (q, k, v), grad)
        got = torch.autograd.grad(block, (q, k, v), grad, allow_unused=True)
        for name, g, w in zip("qkv", got, want):
            g = torch.zeros_like(w) if g is None else g
            torch.testing.assert_close(g, w, **TOL, msg=f"grad {name}")


def test_causal_self_block_is_the_usual_causal_mask():
    torch.manual_seed(0)
    layout = ModalityLayout(("x",), torch.tensor([[9]]))
    ids = layout.segment_ids()
    q, k, v = (torch.randn(1, 2, 9, 8) for _ in range(3))
    out = dense_attention(q, k, v, ids, ids, causal_table(full_table(1)))
    mask = torch.ones(9, 9, dtype=torch.bool).tril()
    expected = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    torch.testing.assert_close(out, expected, **TOL)


def test_causal_table_codes_and_validation():
    table = gsit_forward_table()
    codes = causal_table(table)
    assert codes.dtype == torch.int8
    assert torch.equal(codes != 0, table)
    assert set(codes[table].tolist()) == {CAUSAL}
    one = causal_table(full_table(2), [(0, 1)])
    assert one.tolist() == [[ATTEND, CAUSAL], [ATTEND, ATTEND]]
    # silencing keeps the other codes
    assert silence(one, [(1, 0)]).tolist() == [[ATTEND, CAUSAL], [0, ATTEND]]
    assert has_causal(one) and not has_causal(full_table(2))
    with pytest.raises(ValueError, match="codes"):
        table_codes(torch.tensor([[0, 3], [1, 1]]))
    with pytest.raises(ValueError, match="bool or integer"):
        table_codes(torch.ones(2, 2))


def test_segment_positions_match_a_loop():
    layout = ModalityLayout(("a", "b", "c"), torch.tensor([[3, 0, 2], [1, 4, 0]]))
    ids = layout.segment_ids(7)
    position, length = segment_positions(ids, 3)
    for b in range(2):
        counts = [0, 0, 0]
        for t in range(7):
            s = int(ids[b, t])
            if s < 0:
                assert position[b, t] == 0 and length[b, t] == 0
                continue
            assert position[b, t] == counts[s]
            assert length[b, t] == layout.lengths[b, s]
            counts[s] += 1

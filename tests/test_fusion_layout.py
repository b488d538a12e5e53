"""Joint-sequence layouts and block-table builders of the fusion core."""
from __future__ import annotations

import itertools

import pytest
import torch

from brainenc.fusion.layout import (
    ModalityLayout,
    branch_table,
    cross_modal_blocks,
    dual_branch_layout,
    full_table,
    gsit_backward_table,
    gsit_forward_table,
    pack_modalities,
    pair_table,
    self_only_table,
    silence,
    unimodal_blocks,
)


def _random_layout(gen: torch.Generator, batch: int, n_seg: int, max_len: int = 20) -> ModalityLayout:
    lengths = torch.randint(0, max_len + 1, (batch, n_seg), generator=gen)
    lengths[torch.rand(batch, n_seg, generator=gen) < 0.25] = 0
    return ModalityLayout(tuple(f"m{s}" for s in range(n_seg)), lengths)


def test_offsets_and_segment_ids_match_a_loop():
    gen = torch.Generator().manual_seed(0)
    for _ in range(20):
        layout = _random_layout(gen, int(torch.randint(1, 4, (1,), generator=gen)),
                                int(torch.randint(2, 5, (1,), generator=gen)))
        n_tokens = layout.max_length + 3
        ids = layout.segment_ids(n_tokens)
        assert ids.shape == (layout.batch_size, n_tokens)
        for b in range(layout.batch_size):
            expected = [s for s in range(layout.n_segments) for _ in range(int(layout.lengths[b, s]))]
            expected += [-1] * (n_tokens - len(expected))
            assert ids[b].tolist() == expected
            assert layout.offsets[b, 0] == 0
            assert layout.offsets[b, -1] == layout.total_lengths[b]
        assert layout.max_length == int(layout.total_lengths.max())


def test_segment_ids_reject_short_length():
    layout = ModalityLayout(("a", "b"), torch.tensor([[3, 2]]))
    with pytest.raises(ValueError):
        layout.segment_ids(4)


def test_layout_validation_and_index():
    layout = ModalityLayout(("text", "audio"), torch.tensor([[1, 2]], dtype=torch.int32))
    assert layout.lengths.dtype == torch.int64
    assert layout.index("audio") == 1
    assert layout.n_segments == 2 and layout.batch_size == 1
    with pytest.raises(KeyError):
        layout.index("vision")
    with pytest.raises(ValueError):
        ModalityLayout(("a",), torch.tensor([[1, 2]]))
    with pytest.raises(ValueError):
        ModalityLayout(("a", "b"), torch.tensor([[1, -1]]))


def test_pack_unpack_round_trip():
    gen = torch.Generator().manual_seed(1)
    for _ in range(10):
        batch = int(torch.randint(1, 4, (1,), generator=gen))
        n_seg = int(torch.randint(2, 5, (1,), generator=gen))
        layout = _random_layout(gen, batch, n_seg)
        dim = 5
        # per-modality tensors with extra width and garbage past each sample's length
        tensors = [torch.randn(batch, int(layout.lengths[:, s].max()) + 2, dim, generator=gen)
                   for s in range(n_seg)]
        x = layout.pack(tensors, n_tokens=layout.max_length + 1)
        ids = layout.segment_ids(layout.max_length + 1)
        for b in range(batch):
            pieces = [tensors[s][b, : int(layout.lengths[b, s])] for s in range(n_seg)]
            joint = torch.cat(pieces, dim=0)
            assert torch.equal(x[b, : joint.shape[0]], joint)
            assert torch.all(x[b, joint.shape[0]:] == 0)
        assert torch.all(x[ids < 0] == 0)
        back = layout.unpack(x)
        for s in range(n_seg):
            width = int(layout.lengths[:, s].max())
            assert back[s].shape == (batch, width, dim)
            valid = torch.arange(width)[None, :] < layout.lengths[:, s : s + 1]
            assert torch.equal(back[s][valid], tensors[s][:, :width][valid])
            assert torch.all(back[s][~valid] == 0)
        # packing the unpacked tensors gives the same joint sequence
        assert torch.equal(layout.pack(back, n_tokens=x.shape[1]), x)


def test_pack_is_differentiable_and_rejects_short_tensors():
    layout = ModalityLayout(("a", "b"), torch.tensor([[2, 1], [1, 3]]))
    a = torch.randn(2, 2, 4, requires_grad=True)
    b = torch.randn(2, 3, 4, requires_grad=True)
    layout.pack([a, b]).sum().backward()
    assert torch.equal(a.grad[:, :, 0], torch.tensor([[1.0, 1.0], [1.0, 0.0]]))
    assert torch.equal(b.grad[:, :, 0], torch.tensor([[1.0, 0.0, 0.0], [1.0, 1.0, 1.0]]))
    with pytest.raises(ValueError):
        layout.pack([a, b[:, :2]])


def test_pack_modalities_builds_layout():
    a, b = torch.randn(2, 3, 4), torch.randn(2, 1, 4)
    x, layout = pack_modalities([a, b], [torch.tensor([3, 1]), torch.tensor([1, 0])], names=("t", "v"))
    assert layout.names == ("t", "v")
    assert torch.equal(layout.lengths, torch.tensor([[3, 1], [1, 0]]))
    assert torch.equal(x[0], torch.cat([a[0], b[0]]))
    assert torch.equal(x[1, :1], a[1, :1]) and torch.all(x[1, 1:] == 0)


def test_simple_tables():
    assert torch.equal(full_table(3), torch.ones(3, 3, dtype=torch.bool))
    assert torch.equal(self_only_table(3), torch.eye(3, dtype=torch.bool))
    table = pair_table(3, [(0, 1), (2, 0)])
    assert table.nonzero().tolist() == [[0, 1], [2, 0]]
    with pytest.raises(IndexError):
        pair_table(2, [(0, 2)])


def test_gsit_tables_cover_the_mult_pairs():
    forward, backward = gsit_forward_table(), gsit_backward_table()
    t, v, a = range(3)
    assert {tuple(p) for p in forward.nonzero().tolist()} == {(t, v), (v, a), (a, t)}
    assert {tuple(p) for p in backward.nonzero().tolist()} == {(t, a), (v, t), (a, v)}
    mult_pairs = {(i, j) for i, j in itertools.permutations(range(3), 2)}
    union = forward | backward
    assert {tuple(p) for p in union.nonzero().tolist()} == mult_pairs
    assert not (forward & backward).any()
    assert not forward.diagonal().any() and not backward.diagonal().any()
    # each modality attends exactly one other modality per direction
    assert torch.equal(forward.sum(1), torch.ones(3, dtype=torch.long))
    assert torch.equal(backward.sum(0), torch.ones(3, dtype=torch.long))
    # another segment order keeps the named pairs
    order = ("audio", "text", "vision")
    reordered = gsit_forward_table(order)
    named = {(order[i], order[j]) for i, j in reordered.nonzero().tolist()}
    assert named == {("text", "vision"), ("vision", "audio"), ("audio", "text")}


def test_gsit_tables_other_modalities_cycle_in_order():
    forward = gsit_forward_table(("a", "b", "c", "d"))
    backward = gsit_backward_table(("a", "b", "c", "d"))
    assert forward.nonzero().tolist() == [[0, 1], [1, 2], [2, 3], [3, 0]]
    assert backward.nonzero().tolist() == [[0, 3], [1, 0], [2, 1], [3, 2]]


def test_silence_and_block_helpers():
    table = full_table(3)
    cross = silence(table, cross_modal_blocks(3))
    assert torch.equal(cross, torch.eye(3, dtype=torch.bool))
    assert torch.equal(table, full_table(3))  # the input is not modified
    uni = silence(table, unimodal_blocks(3))
    assert torch.equal(uni, ~torch.eye(3, dtype=torch.bool))
    # isolating modalities 1 and 2 only leaves segment 0 (e.g. a CLS) untouched
    partial = silence(table, cross_modal_blocks(3, among=[1, 2]))
    assert partial.nonzero().tolist() == [[0, 0], [0, 1], [0, 2], [1, 0], [1, 1], [2, 0], [2, 2]]
    assert unimodal_blocks(3, among=[2]) == [(2, 2)]


def test_dual_branch_layout_and_table():
    layout = dual_branch_layout(7, batch_size=2)
    assert layout.names == ("cls_a", "half_a", "cls_b", "half_b")
    assert torch.equal(layout.lengths, torch.tensor([[1, 4, 1, 3], [1, 4, 1, 3]]))
    per_sample = dual_branch_layout(torch.tensor([4, 5]), n_cls=2)
    assert torch.equal(per_sample.lengths, torch.tensor([[2, 2, 2, 2], [2, 3, 2, 2]]))
    table = branch_table()
    expected = torch.zeros(4, 4, dtype=torch.bool)
    expected[:2, :2] = True
    expected[2:, 2:] = True
    assert torch.equal(table, expected)
    with pytest.raises(ValueError):
        dual_branch_layout(4)

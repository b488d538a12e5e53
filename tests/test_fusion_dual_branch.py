"""Dual-branch transformer and retrieval metrics."""
from __future__ import annotations

import pytest
import torch

from brainenc.fusion.models import DualBranchTransformer
from brainenc.fusion.retrieval import bidirectional_retrieval, retrieval_metrics, retrieval_ranks

IN_DIMS = {"video": 6, "audio": 5, "text": 7}
TOL = dict(atol=1e-5, rtol=1e-5)


def _model(backend="block", n_tokens=9, seed=0):
    torch.manual_seed(seed)
    return DualBranchTransformer(
        IN_DIMS, n_classes=4, n_pseudo_classes=3, dim=16, n_tokens=n_tokens,
        n_layers=2, n_heads=2, dropout=0.0, backend=backend,
    ).eval()


def _batch(seed=1):
    gen = torch.Generator().manual_seed(seed)
    widths = {"video": 8, "audio": 6, "text": 5}
    inputs = {m: torch.randn(3, widths[m], IN_DIMS[m], generator=gen) for m in IN_DIMS}
    # sample 1 lacks audio, sample 2 lacks text
    lengths = {
        "video": torch.tensor([8, 3, 5]),
        "audio": torch.tensor([6, 0, 2]),
        "text": torch.tensor([5, 4, 0]),
    }
    return inputs, lengths


def test_shapes_and_gradients_flow():
    model = _model()
    inputs, lengths = _batch()
    inputs = {m: x.requires_grad_() for m, x in inputs.items()}
    out = model(inputs, lengths)
    assert out.logits.shape == (3, 4)
    assert out.pseudo_logits.shape == (3, 3)
    assert out.embedding_a.shape == out.embedding_b.shape == (3, 16)
    assert all(torch.isfinite(t).all() for t in out)
    (out.logits.sum() + out.pseudo_logits.sum()).backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name
    # padding and missing tokens get no gradient; valid ones do
    grad = inputs["audio"].grad
    assert torch.equal(grad[1], torch.zeros_like(grad[1]))
    assert torch.equal(grad[2, 2:], torch.zeros_like(grad[2, 2:]))
    assert grad[0].abs().sum() > 0


@pytest.mark.parametrize("backend", ["dense", "block"])
@pytest.mark.parametrize("n_tokens", [8, 9])
def test_branches_are_independent(backend, n_tokens):
    model = _model(backend, n_tokens)
    gen = torch.Generator().manual_seed(2)
    common = torch.randn(2, n_tokens, 16, generator=gen)
    size_a, size_b = model.half_sizes
    assert (size_a, size_b) == ((n_tokens + 1) // 2, n_tokens // 2)
    a0, b0 = model.encode_common(common)
    changed_b = common.clone()
    changed_b[:, size_a:] += 3.0 * torch.randn(2, size_b, 16, generator=gen)
    a1, b1 = model.encode_common(changed_b)
    assert torch.equal(a0, a1)
    assert not torch.allclose(b0, b1)
    changed_a = common.clone()
    changed_a[:, :size_a] += 3.0 * torch.randn(2, size_a, 16, generator=gen)
    a2, b2 = model.encode_common(changed_a)
    assert torch.equal(b0, b2)
    assert not torch.allclose(a0, a2)


def test_missing_modality_equals_sum_of_present_ones():
    model = _model()
    inputs, lengths = _batch()
    out = model(inputs, lengths)
    for b in range(3):
        present = [m for m in IN_DIMS if lengths[m][b] > 0]
        common = sum(
            model.projectors[m](inputs[m][b : b + 1, : int(lengths[m][b])]) for m in present
        )
        emb_a, emb_b = model.encode_common(common)
        torch.testing.assert_close(out.embedding_a[b : b + 1], emb_a, **TOL)
        torch.testing.assert_close(out.embedding_b[b : b + 1], emb_b, **TOL)
    # a modality missing from the whole batch: None, absent key and zero lengths agree
    zero = dict(lengths, audio=torch.zeros(3, dtype=torch.int64))
    with_zero = model(inputs, zero)
    with_none = model(dict(inputs, audio=None), lengths)
    without = model({m: x for m, x in inputs.items() if m != "audio"}, lengths)
    torch.testing.assert_close(with_zero.logits, with_none.logits, **TOL)
    torch.testing.assert_close(with_none.logits, without.logits, **TOL)
    assert not torch.allclose(with_zero.logits, out.logits)


def test_projection_is_attention_pooling_over_valid_tokens():
    model = _model()
    proj = model.projectors["video"]
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(2, 7, 6, generator=gen)
    lengths = torch.tensor([7, 4])
    got = proj(x, lengths)
    for b in range(2):
        h = proj.proj(x[b, : int(lengths[b])])
        weights = torch.softmax(proj.queries @ h.T / 16**0.5, dim=-1)
        torch.testing.assert_close(got[b], weights @ h, **TOL)


def test_dense_and_block_backends_agree():
    inputs, lengths = _batch()
    dense, block = _model("dense"), _model("block")
    block.load_state_dict(dense.state_dict())
    for x, y in zip(dense(inputs, lengths), block(inputs, lengths)):
        torch.testing.assert_close(x, y, **TOL)


def test_rejects_unknown_or_no_modality():
    model = _model()
    with pytest.raises(KeyError):
        model({"smell": torch.zeros(1, 2, 3)})
    with pytest.raises(ValueError):
        model({"video": None})


def test_retrieval_metrics_hand_example():
    sim = torch.tensor(
        [
            [0.9, 0.1, 0.2, 0.0],  # correct item first: rank 1
            [0.8, 0.5, 0.7, 0.6],  # 0.8, 0.7, 0.6 above 0.5: rank 4
            [0.1, 0.9, 0.3, 0.2],  # 0.9 above: rank 2
            [0.4, 0.4, 0.4, 0.4],  # all tied: counts against, rank 4
        ]
    )
    assert retrieval_ranks(sim).tolist() == [1, 4, 2, 4]
    m = retrieval_metrics(sim)
    assert m["R@1"] == pytest.approx(0.25)
    assert m["R@5"] == pytest.approx(1.0) and m["R@10"] == pytest.approx(1.0)
    assert m["MdR"] == pytest.approx(3.0)
    assert m["MnR"] == pytest.approx(11 / 4)
    # columns as queries: col0 [.9,.8,.1,.4] -> 1; col1 [.1,.5,.9,.4] -> 2;
    # col2 [.2,.7,.3,.4] -> 3; col3 [0,.6,.2,.4] -> 2
    both = bidirectional_retrieval(sim)
    assert retrieval_ranks(sim.T).tolist() == [1, 2, 3, 2]
    assert both["t2v/MnR"] == pytest.approx(2.0)
    assert both["t2v/MdR"] == pytest.approx(2.0)
    assert both["v2t/R@1"] == pytest.approx(0.25)
    assert both["MnR"] == pytest.approx((11 / 4 + 2.0) / 2)


def test_retrieval_metrics_perfect_and_reversed():
    gen = torch.Generator().manual_seed(4)
    n = 12
    perfect = torch.rand(n, n, generator=gen) + 2.0 * torch.eye(n)
    m = bidirectional_retrieval(perfect)
    for d in ("v2t", "t2v"):
        assert m[f"{d}/R@1"] == 1.0 and m[f"{d}/MdR"] == 1.0 and m[f"{d}/MnR"] == 1.0
    assert m["MnR"] == 1.0
    worst = retrieval_metrics(-2.0 * torch.eye(n))
    assert worst["R@1"] == 0.0 and worst["R@10"] == 0.0
    assert worst["MdR"] == n and worst["MnR"] == n
    with pytest.raises(ValueError):
        retrieval_metrics(torch.zeros(2, 3))


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_retrieval_refuses_non_finite_similarities(bad):
    from brainenc.fusion.retrieval import bidirectional_retrieval, retrieval_ranks

    similarity = torch.eye(4)
    similarity[2, 2] = bad     # a NaN on the diagonal used to rank first and count as a hit
    with pytest.raises(ValueError, match=r"NaN or infinite values \(first at \(query, item\) \[\[2, 2\]\]"):
        retrieval_ranks(similarity)
    with pytest.raises(ValueError, match="cannot be ranked"):
        bidirectional_retrieval(similarity)

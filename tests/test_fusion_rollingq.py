"""RollingQ: imbalance rate, target query, Procrustes rotation and the epoch update."""
from __future__ import annotations

import math

import pytest
import torch

from brainenc.fusion.attention import ModalityAttention
from brainenc.fusion.layout import ModalityLayout, pair_table
from brainenc.fusion.rollingq import (
    RollingQ,
    attention_imbalance_rate,
    cls_attention_mass,
    cls_query_and_mean_keys,
    procrustes_rotation,
    rolling_alpha,
    target_query,
)


def _check_rotation(rotation: torch.Tensor, atol: float = 1e-10) -> None:
    eye = torch.eye(rotation.shape[0], dtype=rotation.dtype)
    torch.testing.assert_close(rotation.T @ rotation, eye, atol=atol, rtol=0)
    assert abs(float(torch.linalg.det(rotation)) - 1.0) < 1e-8


@pytest.mark.parametrize("seed", range(12))
def test_procrustes_maps_source_onto_target(seed):
    gen = torch.Generator().manual_seed(seed)
    d = int(torch.randint(4, 65, (1,), generator=gen))
    source = torch.randn(d, generator=gen, dtype=torch.float64) * 3.0
    target = torch.randn(d, generator=gen, dtype=torch.float64) * 0.5
    rotation = procrustes_rotation(source, target)
    assert rotation.shape == (d, d)
    _check_rotation(rotation)
    mapped = rotation @ source
    cos = float(mapped @ target / (mapped.norm() * target.norm()))
    assert abs(cos - 1.0) < 1e-6
    assert math.isclose(float(mapped.norm()), float(source.norm()), rel_tol=1e-10)
    # documented choice: the complement of span(source, target) is left fixed
    basis, _ = torch.linalg.qr(torch.stack([source, target], dim=1), mode="complete")
    complement = basis[:, 2:]
    torch.testing.assert_close(rotation @ complement, complement, atol=1e-10, rtol=0)


def test_procrustes_parallel_antiparallel_and_float32():
    gen = torch.Generator().manual_seed(0)
    s = torch.randn(7, generator=gen, dtype=torch.float64)
    torch.testing.assert_close(procrustes_rotation(s, 2 * s), torch.eye(7, dtype=torch.float64))
    rotation = procrustes_rotation(s, -s)
    _check_rotation(rotation)
    torch.testing.assert_close(rotation @ s, -s, atol=1e-10, rtol=0)
    r32 = procrustes_rotation(s.float(), torch.randn(7, generator=gen))
    assert r32.dtype == torch.float32
    with pytest.raises(ValueError):
        procrustes_rotation(torch.zeros(5), torch.ones(5))


@pytest.mark.parametrize("seed", range(3))
def test_procrustes_point_sets_recover_rotation(seed):
    gen = torch.Generator().manual_seed(100 + seed)
    d = int(torch.randint(4, 17, (1,), generator=gen))
    q, _ = torch.linalg.qr(torch.randn(d, d, generator=gen, dtype=torch.float64))
    if torch.linalg.det(q) < 0:
        q[:, 0] = -q[:, 0]
    points = torch.randn(3 * d, d, generator=gen, dtype=torch.float64)
    rotation = procrustes_rotation(points, points @ q.T)
    _check_rotation(rotation)
    torch.testing.assert_close(rotation, q, atol=1e-10, rtol=0)
    # a reflection target still gives a proper rotation (last singular vector flipped)
    reflection = torch.eye(d, dtype=torch.float64)
    reflection[0, 0] = -1.0
    _check_rotation(procrustes_rotation(points, points @ reflection.T))


def test_air_against_hand_computation():
    gen = torch.Generator().manual_seed(1)
    q, ka, kb = (torch.randn(5, 6, generator=gen, dtype=torch.float64) for _ in range(3))
    expected = 0.0
    for b in range(5):
        cos_a = sum(q[b, i] * ka[b, i] for i in range(6)) / (q[b].norm() * ka[b].norm())
        cos_b = sum(q[b, i] * kb[b, i] for i in range(6)) / (q[b].norm() * kb[b].norm())
        expected += float(cos_a - cos_b) / 5
    assert math.isclose(attention_imbalance_rate(q, ka, kb), expected, rel_tol=1e-12)
    # a query on modality a's key: cos 1 against a, 0 against an orthogonal b
    e = torch.eye(3, dtype=torch.float64)
    assert math.isclose(attention_imbalance_rate(e[:1] * 2, e[:1], e[1:2]), 1.0)


@pytest.mark.parametrize("air, sigma", [(0.0, 1.0), (0.4, 2.0), (-0.7, 0.5), (1.5, 3.0)])
def test_alpha_and_target_query(air, sigma):
    alpha = rolling_alpha(air, sigma)
    assert math.isclose(alpha, (1 + math.tanh(-sigma * air)) / 2)
    gen = torch.Generator().manual_seed(2)
    q, ka, kb = (torch.randn(9, generator=gen, dtype=torch.float64) for _ in range(3))
    target = target_query(q, ka, kb, air, sigma)
    mix = alpha * ka / ka.norm() + (1 - alpha) * kb / kb.norm()
    torch.testing.assert_close(target, mix / mix.norm() * q.norm())
    if air > 0:
        assert alpha < 0.5  # a favoured: the target leans to b
    if air == 0:
        assert alpha == 0.5


def _synthetic_batches(seed: int, dim: int, n_batches: int = 3, batch: int = 4):
    gen = torch.Generator().manual_seed(seed)
    return [
        tuple(torch.randn(batch, dim, generator=gen) + 1.0 for _ in range(3))
        for _ in range(n_batches)
    ]


def test_epoch_update_and_composition():
    dim = 12
    rq = RollingQ(dim, beta=0.0, sigma=1.5, max_rotations=5)
    expected_r = torch.eye(dim, dtype=torch.float64)
    for epoch in range(2):
        batches = _synthetic_batches(10 + epoch, dim)
        rows_q, rows_a, rows_b = [], [], []
        for q, ka, kb in batches:
            q_eff = rq.rotate(q)  # what the attention sees under the current R
            rq.observe(q_eff, ka, kb)
            rows_q.append(q_eff.double())
            rows_a.append(ka.double())
            rows_b.append(kb.double())
        q_all, a_all, b_all = (torch.cat(r) for r in (rows_q, rows_a, rows_b))
        air = attention_imbalance_rate(q_all, a_all, b_all)
        q_mean = q_all.mean(0)
        target = target_query(q_mean, a_all.mean(0), b_all.mean(0), air, 1.5)
        r_new = procrustes_rotation(q_mean, target)
        expected_r = r_new @ expected_r

        report = rq.on_epoch_end()
        assert report.rotated and report.n_rotations == epoch + 1
        assert report.n_samples == 12 and rq.n_observed == 0
        assert math.isclose(report.air, air, rel_tol=1e-6)
        assert math.isclose(report.alpha, rolling_alpha(air, 1.5), rel_tol=1e-6)
        cos = float(q_mean @ target / (q_mean.norm() * target.norm()))
        assert math.isclose(report.angle, math.acos(min(1.0, cos)), rel_tol=1e-5, abs_tol=1e-7)
        torch.testing.assert_close(rq.rotation, expected_r, atol=1e-6, rtol=0)
        _check_rotation(rq.rotation, atol=1e-10)
        # the new R maps the epoch's mean (rotated) query onto the target direction
        moved = r_new @ q_mean
        assert abs(float(moved @ target / (moved.norm() * target.norm())) - 1) < 1e-6
        torch.testing.assert_close(moved.norm(), q_mean.norm())


def test_no_rotation_below_beta_or_after_max_rotations():
    dim = 8
    batches = _synthetic_batches(20, dim)
    air = attention_imbalance_rate(*(torch.cat(t) for t in zip(*batches)))

    calm = RollingQ(dim, beta=abs(air) + 1e-3, max_rotations=3)
    for b in batches:
        calm.observe(*b)
    report = calm.on_epoch_end()
    assert not report.rotated and report.angle == 0.0 and report.n_rotations == 0
    torch.testing.assert_close(calm.rotation, torch.eye(dim, dtype=torch.float64))

    capped = RollingQ(dim, beta=0.0, max_rotations=1)
    for epoch in range(3):
        for q, ka, kb in batches:
            capped.observe(capped.rotate(q), ka, kb)
        report = capped.on_epoch_end()
        assert report.rotated == (epoch == 0)
        if epoch == 0:
            after_first = capped.rotation.clone()
    assert abs(report.air) > 0  # still imbalanced, but out of rotations
    torch.testing.assert_close(capped.rotation, after_first)
    assert int(capped.n_rotations) == 1

    empty = RollingQ(dim).on_epoch_end()
    assert math.isnan(empty.air) and not empty.rotated


def test_hook_changes_only_cls_rows():
    gen = torch.Generator().manual_seed(3)
    heads, head_dim = 2, 4
    dim = heads * head_dim
    rq = RollingQ(dim, cls_segment=0)
    source, target = torch.randn(2, dim, generator=gen)
    rq.rotation.copy_(procrustes_rotation(source, target))
    layout = ModalityLayout(("cls", "a", "b"), torch.tensor([[1, 3, 2], [1, 0, 4], [0, 2, 2]]))
    ids = layout.segment_ids(layout.max_length + 1)  # one padding column at least
    q = torch.randn(3, heads, ids.shape[1], head_dim, generator=gen)
    out = rq.query_hook(q, ids)
    not_cls = ids != 0
    assert torch.equal(out.transpose(1, 2)[not_cls], q.transpose(1, 2)[not_cls])
    for b, n in torch.nonzero(ids == 0).tolist():
        full = q[b, :, n, :].reshape(dim).double()
        expected = (rq.rotation @ full).view(heads, head_dim).float()
        torch.testing.assert_close(out[b, :, n, :], expected, atol=1e-6, rtol=1e-6)
        assert not torch.allclose(out[b, :, n, :], q[b, :, n, :])


def _imbalanced_example(dim: int = 16, batch: int = 6):
    """Identity projections; the CLS token points at modality a's key direction."""
    gen = torch.Generator().manual_seed(4)
    attn = ModalityAttention(dim, n_heads=1, bias=False, backend="block")
    with torch.no_grad():
        attn.qkv.weight.copy_(torch.cat([torch.eye(dim)] * 3, dim=0))
        attn.out.weight.copy_(torch.eye(dim))
    e_a, e_b = torch.eye(dim)[0], torch.eye(dim)[1]
    lengths = torch.tensor([[1, 5, 4]] * batch)
    lengths[1, 1] = 3
    lengths[2, 2] = 6
    layout = ModalityLayout(("cls", "a", "b"), lengths)
    noise = lambda n: 0.1 * torch.randn(batch, n, dim, generator=gen)  # noqa: E731
    cls = 4.0 * e_a + 0.5 * e_b + noise(1)
    tok_a = 4.0 * e_a + noise(5)
    tok_b = 4.0 * e_b + noise(6)
    x = layout.pack([cls, tok_a, tok_b])
    table = pair_table(3, [(0, 1), (0, 2), (1, 1), (2, 2)])
    return attn, x, layout, table


def test_cls_query_and_mean_keys_match_hand_projection():
    attn, x, layout, _ = _imbalanced_example()
    with torch.no_grad():
        attn.qkv.weight.add_(0.05 * torch.randn_like(attn.qkv.weight))
        q_cls, (k_a, k_b), present = cls_query_and_mean_keys(attn, x, layout, 0, (1, 2))
    assert present.all()
    dim = attn.dim
    w_q, w_k = attn.qkv.weight[:dim], attn.qkv.weight[dim : 2 * dim]
    for b, (n_cls, n_a, n_b) in enumerate(layout.lengths.tolist()):
        torch.testing.assert_close(q_cls[b], x[b, 0] @ w_q.T)
        torch.testing.assert_close(k_a[b], (x[b, n_cls : n_cls + n_a] @ w_k.T).mean(0))
        start = n_cls + n_a
        torch.testing.assert_close(k_b[b], (x[b, start : start + n_b] @ w_k.T).mean(0))


def test_rotation_rebalances_an_imbalanced_cls_query():
    attn, x, layout, table = _imbalanced_example()
    # a large sigma overshoots (the CLS query then favours b as much); 0.5 rebalances
    rq = RollingQ(attn.dim, cls_segment=0, segment_a=1, segment_b=2, beta=0.1, sigma=0.5)
    with torch.no_grad():
        q_cls, (k_a, k_b), _ = cls_query_and_mean_keys(attn, x, layout, 0, (1, 2), rq.query_hook)
    air_before = attention_imbalance_rate(q_cls, k_a, k_b)
    mass_before = cls_attention_mass(attn, x, layout, table, 0, rq.query_hook)
    assert air_before > 0.5 and mass_before[1] > 0.9

    with torch.no_grad():
        rq.observe_attention(attn, x, layout)
    report = rq.on_epoch_end()
    assert report.rotated and math.isclose(report.air, air_before, rel_tol=1e-5)

    with torch.no_grad():
        q_cls, (k_a, k_b), _ = cls_query_and_mean_keys(attn, x, layout, 0, (1, 2), rq.query_hook)
    air_after = attention_imbalance_rate(q_cls, k_a, k_b)
    mass_after = cls_attention_mass(attn, x, layout, table, 0, rq.query_hook)
    assert abs(air_after) < abs(air_before) - 0.1
    assert mass_after[2] > mass_before[2] + 0.2 and mass_after[1] < mass_before[1] - 0.2
    torch.testing.assert_close(mass_after.sum(), torch.tensor(1.0))
    assert mass_after[0] == 0  # the CLS token does not attend itself under this table
    # the rotation touches only the CLS query: other tokens' outputs are unchanged
    with torch.no_grad():
        plain = attn(x, layout, table)
        hooked = attn(x, layout, table, query_hook=rq.query_hook)
    ids = layout.segment_ids(x.shape[1])
    torch.testing.assert_close(hooked[ids != 0], plain[ids != 0])
    assert not torch.allclose(hooked[ids == 0], plain[ids == 0])

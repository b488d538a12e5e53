"""Fusion encoder and the MulT / GsiT models built on it."""
from __future__ import annotations

import math

import pytest
import torch

from brainenc.fusion.encoder import ModalityEncoder
from brainenc.fusion.layout import pack_modalities, pair_table
from brainenc.fusion.models import GsiT, MulT

TOL = dict(atol=1e-5, rtol=1e-5)
IN_DIMS = dict(text_dim=7, audio_dim=5, vision_dim=6)
SMALL = dict(dim=16, n_layers=2, n_heads=2, dropout=0.0)


def _encoder_params(model: torch.nn.Module) -> int:
    return sum(
        p.numel() for m in model.modules() if isinstance(m, ModalityEncoder) for p in m.parameters()
    )


def _batch(seed: int, lengths=None):
    gen = torch.Generator().manual_seed(seed)
    if lengths is None:
        # sample 1 has no audio; every modality is non-empty in some sample
        lengths = {"text": [9, 4, 1], "audio": [6, 0, 3], "vision": [2, 5, 5]}
    lengths = {m: torch.tensor(n) for m, n in lengths.items()}
    feats = {
        m: torch.randn(3, int(lengths[m].max()) + 2, IN_DIMS[f"{m}_dim"], generator=gen)
        for m in ("text", "audio", "vision")
    }
    return feats, lengths


def _run(model, feats, lengths):
    return model(
        feats["text"], feats["audio"], feats["vision"],
        lengths["text"], lengths["audio"], lengths["vision"],
    )


@pytest.mark.parametrize("dim,n_layers", [(16, 2), (30, 1)])
def test_gsit_has_one_third_of_mult_encoder_parameters(dim, n_layers):
    kwargs = dict(IN_DIMS, dim=dim, n_layers=n_layers, n_heads=2)
    mult, gsit = _encoder_params(MulT(**kwargs)), _encoder_params(GsiT(**kwargs))
    assert gsit > 0
    assert 3 * gsit == mult


@pytest.mark.parametrize("backend", ["dense", "block"])
@pytest.mark.parametrize("direction", ["forward", "backward"])
def test_gsit_joint_pass_equals_per_pair_computation(backend, direction):
    torch.manual_seed(0)
    model = GsiT(**IN_DIMS, dim=16, n_layers=1, n_heads=2, dropout=0.0, backend=backend)
    encoder = getattr(model, f"{direction}_encoder")
    table = getattr(model, f"{direction}_table")
    names = ("text", "vision", "audio")
    gen = torch.Generator().manual_seed(1)
    lengths = torch.randint(0, 8, (4, 3), generator=gen)
    lengths[0] = torch.tensor([5, 0, 3])  # a missing vision segment
    tokens = [torch.randn(4, int(lengths[:, s].max()), 16, generator=gen) for s in range(3)]
    x, layout = pack_modalities(tokens, lengths, names=names)
    joint = layout.unpack(encoder(x, layout, table))
    pairs = [(i, j) for i in range(3) for j in range(3) if table[i, j]]
    assert len(pairs) == 3
    for i, j in pairs:
        xp, lp = pack_modalities([tokens[i], tokens[j]], [lengths[:, i], lengths[:, j]])
        alone = lp.unpack(encoder(xp, lp, pair_table(2, [(0, 1)])))[0]
        torch.testing.assert_close(joint[i], alone, **TOL)


@pytest.mark.parametrize("causal", [True, False])
def test_cross_modal_transformer_matches_dense_reference(causal):
    """MulT's cross-modal stack: queries from LN(target), keys/values from LN(source),
    with MulT's ``buffered_future_mask`` when causal."""
    torch.manual_seed(2)
    model = MulT(
        **IN_DIMS, dim=16, n_layers=2, n_heads=2, dropout=0.0, backend="block", causal=causal
    )
    encoder = model.cross["text_from_audio"]
    gen = torch.Generator().manual_seed(3)
    len_t, len_s = torch.tensor([6, 3, 2]), torch.tensor([4, 0, 5])
    target = torch.randn(3, 6, 16, generator=gen)
    source = torch.randn(3, 5, 16, generator=gen)
    got = model.cross_modal(
        "text", "audio", {"text": target, "audio": source}, {"text": len_t, "audio": len_s}
    )

    for b in range(3):
        t, s = target[b, : len_t[b]], source[b, : len_s[b]]
        for layer in encoder.layers:
            attn = layer.attn
            w_q, w_k, w_v = attn.qkv.weight.chunk(3)
            b_q, b_k, b_v = attn.qkv.bias.chunk(3)
            qn, sn = layer.attn_norm(t), layer.attn_norm(s)
            heads = []
            for h in range(attn.n_heads):
                sl = slice(h * attn.head_dim, (h + 1) * attn.head_dim)
                q = qn @ w_q[sl].T + b_q[sl]
                k = sn @ w_k[sl].T + b_k[sl]
                v = sn @ w_v[sl].T + b_v[sl]
                if len(s) == 0:
                    heads.append(torch.zeros(len(t), attn.head_dim))
                else:
                    scores = q @ k.T / math.sqrt(attn.head_dim)
                    if causal:
                        future = torch.triu(
                            torch.ones(len(t), len(s), dtype=torch.bool), 1 + abs(len(s) - len(t))
                        )
                        scores = scores.masked_fill(future, float("-inf"))
                    w = torch.softmax(scores, dim=-1)
                    heads.append(w @ v)
            t = t + attn.out(torch.cat(heads, dim=1))
            t = t + layer.ff(layer.ff_norm(t))
        expected = encoder.norm(t)
        torch.testing.assert_close(got[b, : len_t[b]], expected, **TOL)
        assert not got[b, len_t[b] :].any()


@pytest.mark.parametrize("model_cls", [MulT, GsiT])
def test_forward_shapes_no_nan_and_padding_independent(model_cls):
    torch.manual_seed(4)
    model = model_cls(**IN_DIMS, **SMALL, out_dim=2, backend="block").eval()
    feats, lengths = _batch(5)
    out = _run(model, feats, lengths)
    assert out.shape == (3, 2)
    assert torch.isfinite(out).all()

    # changing padding content must not change anything
    noisy = {}
    for m, x in feats.items():
        valid = torch.arange(x.shape[1])[None, :, None] < lengths[m][:, None, None]
        noisy[m] = torch.where(valid, x, 100.0 * torch.randn_like(x))
    torch.testing.assert_close(_run(model, noisy, lengths), out, **TOL)

    # each sample is independent of the others (and of the batch's padding width)
    alone = _run(model, {m: x[1:2, : int(lengths[m][1])] for m, x in feats.items()},
                 {m: n[1:2] for m, n in lengths.items()})
    torch.testing.assert_close(alone, out[1:2], **TOL)


@pytest.mark.parametrize("model_cls", [MulT, GsiT])
def test_gradients_reach_every_parameter(model_cls):
    torch.manual_seed(6)
    model = model_cls(**IN_DIMS, **SMALL, backend="block")
    feats, lengths = _batch(7)
    loss = torch.nn.functional.l1_loss(_run(model, feats, lengths), torch.randn(3, 1))
    loss.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None, name
        assert torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name


@pytest.mark.parametrize("model_cls", [MulT, GsiT])
def test_dense_and_block_backends_agree(model_cls):
    torch.manual_seed(8)
    block = model_cls(**IN_DIMS, **SMALL, backend="block").eval()
    dense = model_cls(**IN_DIMS, **SMALL, backend="dense").eval()
    dense.load_state_dict(block.state_dict())
    feats, lengths = _batch(9)
    torch.testing.assert_close(_run(dense, feats, lengths), _run(block, feats, lengths), **TOL)


def test_encoder_per_layer_tables_and_frozen_segments():
    torch.manual_seed(10)
    encoder = ModalityEncoder(16, n_layers=2, n_heads=2, backend="block")
    gen = torch.Generator().manual_seed(11)
    lengths = torch.tensor([[3, 4], [2, 0]])
    tokens = [torch.randn(2, 3, 16, generator=gen), torch.randn(2, 4, 16, generator=gen)]
    x, layout = pack_modalities(tokens, lengths)
    full = torch.ones(2, 2, dtype=torch.bool)
    torch.testing.assert_close(encoder(x, layout, [full, full]), encoder(x, layout, full))
    # silencing the cross blocks at layer 0 only changes the result
    isolated = torch.eye(2, dtype=torch.bool)
    assert not torch.allclose(encoder(x, layout, [isolated, full]), encoder(x, layout, full))
    with pytest.raises(ValueError):
        encoder(x, layout, [full])
    # a frozen segment passes through unchanged
    out = encoder(x, layout, full, update=[True, False])
    frozen = layout.segment_ids() == 1
    torch.testing.assert_close(out[frozen], x[frozen])
    assert not out[layout.segment_ids() < 0].any()


def test_mult_self_attention_is_causal_by_default():
    """The last step sees everything; earlier steps do not see later ones."""
    torch.manual_seed(13)
    model = MulT(**IN_DIMS, dim=12, n_layers=1, n_heads=2, dropout=0.0, backend="block").eval()
    assert model.causal
    stack = model.self_attention["text"]
    gen = torch.Generator().manual_seed(14)
    x = torch.randn(1, 7, 24, generator=gen)
    layout = pack_modalities([x], torch.tensor([[7]]))[1]
    out = stack(x, layout, model.self_table)
    changed = x.clone()
    changed[0, 4:] += torch.randn(3, 24, generator=gen)
    out_changed = stack(changed, layout, model.self_table)
    torch.testing.assert_close(out_changed[0, :4], out[0, :4], **TOL)
    assert not torch.allclose(out_changed[0, 4:], out[0, 4:])
    # without the mask every step sees the change
    full = MulT(**IN_DIMS, dim=12, n_layers=1, n_heads=2, dropout=0.0, causal=False).eval()
    assert not full.causal and full.self_table.dtype == torch.bool


@pytest.mark.parametrize("model_cls", [MulT, GsiT])
def test_triton_backend_matches_dense_with_an_odd_head_size(model_cls):
    """The kernel path (interpreted on the CPU) runs the models, head size 6 padded to 16."""
    pytest.importorskip("triton")
    torch.manual_seed(11)
    options = dict(IN_DIMS, dim=12, n_layers=1, n_heads=2, dropout=0.0)
    dense = model_cls(**options, backend="dense").eval()
    kernel = model_cls(**options, backend="triton").eval()
    kernel.load_state_dict(dense.state_dict())
    feats, lengths = _batch(12)
    expected = _run(dense, feats, lengths)
    got = _run(kernel, feats, lengths)
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-4)
    # gradients through the kernel's backward equal the dense ones
    expected.sum().backward()
    got.sum().backward()
    for (name, p_dense), p_kernel in zip(dense.named_parameters(), kernel.parameters()):
        torch.testing.assert_close(p_kernel.grad, p_dense.grad, atol=1e-4, rtol=1e-3, msg=name)

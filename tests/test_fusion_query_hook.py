"""A query hook acts in the chosen layer only, and every attention model takes one."""
from __future__ import annotations

import pytest
import torch

from brainenc.fusion.encoder import ModalityEncoder
from brainenc.fusion.layout import ModalityLayout, full_table
from brainenc.fusion.models import DualBranchTransformer, GsiT, MulT
from brainenc.fusion.models.isonet import (
    HierarchicalTransformer,
    MultimodalMLP,
    MultimodalTransformer,
)


class CountingHook:
    """A query hook that leaves the queries alone and counts its calls."""

    def __init__(self):
        self.calls = 0

    def __call__(self, q, segment_ids):
        self.calls += 1
        return q


def _encoder_input(n_layers=3):
    torch.manual_seed(0)
    encoder = ModalityEncoder(8, n_layers=n_layers, n_heads=2, dropout=0.0).eval()
    layout = ModalityLayout(("a", "b"), torch.tensor([[3, 2], [2, 2]]))
    x = layout.pack([torch.randn(2, 3, 8), torch.randn(2, 2, 8)])
    return encoder, layout, x


@pytest.mark.parametrize("hook_layer, expected_calls", [(-1, 1), (0, 1), (2, 1), (None, 3)])
def test_encoder_applies_the_hook_in_the_chosen_layer_only(hook_layer, expected_calls):
    encoder, layout, x = _encoder_input()
    hook = CountingHook()
    encoder(x, layout, full_table(2), query_hook=hook, hook_layer=hook_layer)
    assert hook.calls == expected_calls


def test_a_rotating_hook_changes_only_the_layers_from_the_chosen_one():
    encoder, layout, x = _encoder_input()
    flip = lambda q, segment_ids: -q  # noqa: E731
    plain = encoder(x, layout, full_table(2))
    # a hook in the last layer gives the same output as running the first two layers
    # plainly and the last with the hook
    hooked = encoder(x, layout, full_table(2), query_hook=flip, hook_layer=-1)
    h = x
    for index, layer in enumerate(encoder.layers):
        h = layer(h, layout, full_table(2), query_hook=flip if index == 2 else None)
    h = encoder.norm(h) * (layout.segment_ids(h.shape[1]) >= 0)[:, :, None]
    torch.testing.assert_close(hooked, h)
    assert not torch.allclose(hooked, plain)


def test_hook_layer_out_of_range_is_refused():
    encoder, layout, x = _encoder_input()
    with pytest.raises(ValueError, match="hook_layer 3 is out of range for 3 layers"):
        encoder(x, layout, full_table(2), query_hook=CountingHook(), hook_layer=3)


def _trimodal_batch():
    gen = torch.Generator().manual_seed(1)
    return dict(text=torch.randn(2, 4, 7, generator=gen), audio=torch.randn(2, 3, 5, generator=gen),
                vision=torch.randn(2, 5, 6, generator=gen))


@pytest.mark.parametrize("model_class, encoders", [(MulT, 9), (GsiT, 3)])
def test_trimodal_models_pass_the_hook_to_each_encoder_once(model_class, encoders):
    torch.manual_seed(0)
    model = model_class(text_dim=7, audio_dim=5, vision_dim=6, dim=8, n_layers=2, n_heads=2,
                        dropout=0.0).eval()
    hook = CountingHook()
    model(**_trimodal_batch(), query_hook=hook)
    assert hook.calls == encoders              # one layer of each encoder
    hook = CountingHook()
    model(**_trimodal_batch(), query_hook=hook, hook_layer=None)
    assert hook.calls == 2 * encoders          # every layer


def test_isonet_and_dual_branch_models_take_the_hook():
    torch.manual_seed(0)
    inputs = {"emg": torch.randn(2, 4, 5), "acc": torch.randn(2, 4, 3)}
    for model in (MultimodalTransformer({"emg": 5, "acc": 3}, dim=8, n_layers=2, n_heads=2),
                  HierarchicalTransformer({"emg": 5, "acc": 3}, dim=8, n_layers=2, n_heads=2,
                                          fusion="attention")):
        hook = CountingHook()
        model.eval()(inputs, query_hook=hook, hook_layer=-1)
        assert hook.calls == 1
    dual = DualBranchTransformer({"video": 6, "text": 7}, n_classes=3, n_pseudo_classes=2, dim=8,
                                 n_tokens=4, n_layers=2, n_heads=2, dropout=0.0).eval()
    hook = CountingHook()
    dual({"video": torch.randn(2, 3, 6), "text": torch.randn(2, 4, 7)}, query_hook=hook)
    assert hook.calls == 1
    mlp = MultimodalMLP({"emg": (4, 5), "acc": (4, 3)})
    with pytest.raises(ValueError, match="no attention"):
        mlp(inputs, query_hook=CountingHook())

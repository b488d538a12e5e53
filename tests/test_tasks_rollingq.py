"""RollingQ as a training callback: observed in training passes, logged and rotated per epoch."""
from __future__ import annotations

import torch

from brainenc.fusion.rollingq import RollingQ
from brainenc.tasks.rollingq_callback import RollingQCallback, noise_test_batch
from test_fusion_rollingq import _imbalanced_example


def _training_pass(attn, x, layout, table, rq) -> None:
    attn.train()
    with torch.no_grad():
        attn(x, layout, table, rq.query_hook)   # the call an encoder layer makes


def test_callback_logs_the_imbalance_and_rebalances_the_cls_attention():
    attn, x, layout, table = _imbalanced_example()
    rq = RollingQ(attn.dim, cls_segment=0, segment_a=1, segment_b=2, beta=0.1, sigma=0.5)
    callback = RollingQCallback(rq, attn, names=("a", "b"))
    _training_pass(attn, x, layout, table, rq)
    first = callback.on_epoch_end()
    assert first["rollingq/air"] > 0.5 and first["rollingq/cls_mass_a"] > 0.9
    assert first["rollingq/rotated"] == 1.0 and first["rollingq/n_rotations"] == 1.0
    _training_pass(attn, x, layout, table, rq)
    second = callback.on_epoch_end()
    # the down-weighted modality b gets its share of the CLS attention back
    assert second["rollingq/cls_mass_b"] > first["rollingq/cls_mass_b"] + 0.2
    assert abs(second["rollingq/air"]) < abs(first["rollingq/air"]) - 0.1
    # evaluation passes are not observed
    attn.eval()
    with torch.no_grad():
        attn(x, layout, table, rq.query_hook)
    assert rq.n_observed == 0
    callback.remove()
    _training_pass(attn, x, layout, table, rq)
    assert rq.n_observed == 0


def test_noise_test_replaces_one_modality_with_matched_noise():
    gen = torch.Generator().manual_seed(0)
    inputs = {"emg": 3.0 + 2.0 * torch.randn(400, 5, 4, generator=gen),
              "acc": torch.randn(400, 5, 2, generator=gen)}
    noisy = noise_test_batch(inputs, "emg", torch.Generator().manual_seed(1))
    assert noisy["acc"] is inputs["acc"]
    assert not torch.allclose(noisy["emg"], inputs["emg"])
    torch.testing.assert_close(noisy["emg"].mean(dim=(0, 1)), torch.full((4,), 3.0), atol=0.15, rtol=0)
    torch.testing.assert_close(noisy["emg"].std(dim=(0, 1)), torch.full((4,), 2.0), atol=0.15, rtol=0)
    # the noise carries nothing of the sample: its correlation with the original is ~0
    corr = torch.corrcoef(torch.stack([noisy["emg"].flatten(), inputs["emg"].flatten()]))[0, 1]
    assert abs(float(corr)) < 0.05

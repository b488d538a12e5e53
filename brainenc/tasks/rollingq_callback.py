"""RollingQ as a callback of the training loop: observe, log, rotate once per epoch.

:class:`RollingQCallback` attaches to the attention of one layer of a model
(the layer whose CLS query is rebalanced; the model applies the RollingQ hook
there through ``forward(..., query_hook=rollingq.query_hook, hook_layer=k)``).
During training batches a forward pre-hook on that attention module sees its
input; from it the callback accumulates the CLS query and the mean keys of
the two modalities (:meth:`brainenc.fusion.rollingq.RollingQ.observe_attention`)
and the CLS attention mass on each modality. At the end of each epoch it asks
RollingQ to rotate (when the epoch's attention imbalance rate exceeds beta) and
returns the epoch's AIR, the masses and the rotation as extra metrics for the
loop's ``metrics.jsonl``.

The noise test of the paper (one modality replaced by noise at test time) is
:func:`noise_test_batch`: evaluate a model on batches from it, once per modality.
"""
from __future__ import annotations

import math
from collections.abc import Mapping

import torch

from brainenc.fusion.rollingq import RollingQ, cls_attention_mass

__all__ = ["RollingQCallback", "noise_test_batch"]


class RollingQCallback:
    """Observe a layer's CLS attention in training and rotate its query between epochs.

    Parameters
    ----------
    rollingq : RollingQ
        Its ``cls_segment``, ``segment_a`` and ``segment_b`` index the model's
        segments (e.g. ``("cls", "emg", "acc")`` → 0, 1, 2).
    attention : torch.nn.Module
        The :class:`~brainenc.fusion.attention.ModalityAttention` of the hooked
        layer (e.g. ``model.encoder.layers[-1].attn``).
    names : tuple of str
        Names of segments a and b in the logged metrics.
    """

    def __init__(self, rollingq: RollingQ, attention: torch.nn.Module,
                 names: tuple[str, str] = ("a", "b")):
        self.rollingq = rollingq
        self.attention = attention
        self.names = names
        self._mass = torch.zeros(2, dtype=torch.float64)
        self._mass_batches = 0
        self._observing = False
        self._handle = attention.register_forward_pre_hook(self._observe)

    def _observe(self, module, args) -> None:
        # the observation runs the module itself: its own calls are not observed again
        if self._observing or not module.training or len(args) < 3:
            return
        x, layout, table = args[0], args[1], args[2]
        self._observing = True
        try:
            with torch.no_grad():
                self.rollingq.observe_attention(module, x.detach(), layout)
                mass = cls_attention_mass(module, x.detach(), layout, table,
                                          self.rollingq.cls_segment, self.rollingq.query_hook)
        finally:
            self._observing = False
        segments = [self.rollingq.segment_a, self.rollingq.segment_b]
        self._mass += mass[segments].detach().to("cpu", torch.float64)
        self._mass_batches += 1

    def on_epoch_end(self, state=None, metrics: Mapping[str, float] | None = None) -> dict[str, float]:
        """Rotate if the epoch was imbalanced; the epoch's AIR, CLS masses and rotation."""
        masses = (self._mass / self._mass_batches if self._mass_batches
                  else torch.full((2,), math.nan, dtype=torch.float64))
        report = self.rollingq.on_epoch_end()
        self._mass.zero_()
        self._mass_batches = 0
        return {
            "rollingq/air": float(report.air),
            f"rollingq/cls_mass_{self.names[0]}": float(masses[0]),
            f"rollingq/cls_mass_{self.names[1]}": float(masses[1]),
            "rollingq/rotated": float(report.rotated),
            "rollingq/angle_deg": float(report.angle),
            "rollingq/n_rotations": float(report.n_rotations),
        }

    def remove(self) -> None:
        """Detach from the attention module."""
        self._handle.remove()


def noise_test_batch(inputs: Mapping[str, torch.Tensor], modality: str,
                     generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
    """``inputs`` with ``modality`` replaced by Gaussian noise of the same mean and standard
    deviation per feature (the test of RollingQ's paper: does the model still use the other
    modality, and how much did it rely on this one?)."""
    if modality not in inputs:
        raise KeyError(f"no modality {modality!r} in the inputs ({sorted(inputs)})")
    x = inputs[modality]
    dims = tuple(range(x.dim() - 1))
    noise = torch.randn(x.shape, generator=generator, dtype=x.dtype).to(x.device)
    replaced = x.mean(dim=dims, keepdim=True) + noise * x.std(dim=dims, keepdim=True)
    return {**inputs, modality: replaced}

"""Constructor arguments of MulT and GsiT for MOSI, MOSEI and CH-SIMS.

**MulT** settings are those of MMSA's ``src/MMSA/config/config_regression.json``
(key ``"mult"``), :data:`MMSA_MULT`. They map onto
:class:`~brainenc.fusion.models.MulT` as follows:

* ``dst_feature_dim_nheads = [d, h]`` -> ``dim = d``, ``n_heads = h``;
* ``nlevels`` -> ``n_layers``. MMSA's self-attention ("memory") transformers
  have ``max(nlevels, 3)`` layers; :class:`~brainenc.fusion.models.MulT` has
  one depth for all stacks, which differs only for CH-SIMS (``nlevels = 2``:
  2 layers everywhere here, 3 in MMSA's memory stacks);
* ``attn_mask = true`` -> ``causal = True``;
* the feed-forward width of MulT's layers is ``4 d`` -> ``ff_mult = 4``;
* the several dropout rates collapse into the one ``dropout`` of the fusion
  core: ``embed_dropout``, the rate every transformer applies to its input
  (MOSI 0.2, MOSEI 0.0, CH-SIMS 0.1). The others are kept in
  :class:`MMSAMulTSettings`;
* ``conv1d_kernel_size_{l,a,v}`` (MOSI 5/5/5, MOSEI 5/1/3, CH-SIMS 5/1/1) have
  no counterpart: the fusion core's projections have kernel 1.

**GsiT** settings are those of the GsiT authors' repository
(github.com/drewjin/GsiT, ``src/MMSA-GsiT/config/config_regression.json``,
key ``"gsit"``, its cross-modal block ``cmg_cfg``), :data:`GSIT_CMG`: width
128 with 4 heads, 4 levels, no attention mask, ``embed_dropout`` 0.2, for all
three datasets. (That repository also runs its MulT baseline at
``[128, 4]`` on MOSI and MOSEI.) Only this core of GsiT is built here, not the
BERT / xLSTM front ends of the authors' full model.

GsiT has one third of MulT's *encoder* parameters at equal width and depth
(2 + 1 stacks against 6 + 3); :func:`count_parameters` counts them. With the
settings above the widths differ (MulT 50 or 30, GsiT 128), so compare at one
width: e.g. ``GsiT(**{**gsit_config(dims, ds), "dim": 50, "n_heads": 10})``.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from numbers import Integral
from typing import Any

from torch import nn

from ...fusion.encoder import ModalityEncoder
from .mmsa import FeatureDims

__all__ = [
    "GSIT_CMG",
    "MMSA_MULT",
    "MMSAMulTSettings",
    "count_parameters",
    "gsit_config",
    "mult_config",
]


@dataclass(frozen=True)
class MMSAMulTSettings:
    """MulT hyper-parameters with MMSA's names (``config_regression.json``).

    ``dim`` and ``n_heads`` are the two entries of ``dst_feature_dim_nheads``;
    ``attn_mask`` is MMSA's causal mask switch.
    """

    dim: int
    n_heads: int
    nlevels: int
    attn_dropout: float
    attn_dropout_a: float
    attn_dropout_v: float
    relu_dropout: float
    embed_dropout: float
    res_dropout: float
    text_dropout: float
    output_dropout: float
    conv1d_kernel_size_l: int
    conv1d_kernel_size_a: int
    conv1d_kernel_size_v: int
    batch_size: int
    learning_rate: float
    weight_decay: float
    grad_clip: float
    patience: int
    attn_mask: bool


MMSA_MULT = {
    "mosi": MMSAMulTSettings(
        dim=50, n_heads=10, nlevels=4, attn_dropout=0.3, attn_dropout_a=0.2, attn_dropout_v=0.0,
        relu_dropout=0.0, embed_dropout=0.2, res_dropout=0.0, text_dropout=0.5,
        output_dropout=0.5, conv1d_kernel_size_l=5, conv1d_kernel_size_a=5,
        conv1d_kernel_size_v=5, batch_size=16, learning_rate=0.002, weight_decay=0.005,
        grad_clip=0.6, patience=5, attn_mask=True,
    ),
    "mosei": MMSAMulTSettings(
        dim=30, n_heads=6, nlevels=4, attn_dropout=0.4, attn_dropout_a=0.0, attn_dropout_v=0.0,
        relu_dropout=0.0, embed_dropout=0.0, res_dropout=0.0, text_dropout=0.3,
        output_dropout=0.5, conv1d_kernel_size_l=5, conv1d_kernel_size_a=1,
        conv1d_kernel_size_v=3, batch_size=4, learning_rate=0.0005, weight_decay=0.001,
        grad_clip=0.6, patience=20, attn_mask=True,
    ),
    "sims": MMSAMulTSettings(
        dim=50, n_heads=10, nlevels=2, attn_dropout=0.2, attn_dropout_a=0.1, attn_dropout_v=0.0,
        relu_dropout=0.0, embed_dropout=0.1, res_dropout=0.2, text_dropout=0.3,
        output_dropout=0.1, conv1d_kernel_size_l=5, conv1d_kernel_size_a=1,
        conv1d_kernel_size_v=1, batch_size=16, learning_rate=0.002, weight_decay=0.001,
        grad_clip=0.6, patience=10, attn_mask=True,
    ),
}
"""MMSA's MulT settings per dataset."""

_GSIT = MMSAMulTSettings(
    dim=128, n_heads=4, nlevels=4, attn_dropout=0.3, attn_dropout_a=0.2, attn_dropout_v=0.0,
    relu_dropout=0.0, embed_dropout=0.2, res_dropout=0.0, text_dropout=0.5, output_dropout=0.5,
    conv1d_kernel_size_l=5, conv1d_kernel_size_a=5, conv1d_kernel_size_v=5, batch_size=32,
    learning_rate=0.002, weight_decay=0.005, grad_clip=0.6, patience=5, attn_mask=False,
)
GSIT_CMG = {"mosi": _GSIT, "mosei": _GSIT, "sims": _GSIT}
"""The GsiT repository's ``cmg_cfg`` per dataset (the same for all three)."""


def _dims(dims: FeatureDims | Sequence[int]) -> tuple[int, int, int]:
    values = (dims.text, dims.audio, dims.vision) if isinstance(dims, FeatureDims) else tuple(dims)
    if len(values) != 3 or not all(isinstance(v, Integral) and v > 0 for v in values):
        raise ValueError(
            f"dims must be positive (text, audio, vision) feature sizes, got {values}; "
            "BERT token inputs (text=None) need the encoder's width, 768 for BERT-base"
        )
    return tuple(int(v) for v in values)  # type: ignore[return-value]


def _settings(table: dict[str, MMSAMulTSettings], dataset: str) -> MMSAMulTSettings:
    name = dataset.lower()
    if name not in table:
        raise ValueError(f"dataset must be one of {tuple(table)}, got {dataset!r}")
    return table[name]


def mult_config(dims: FeatureDims | Sequence[int], dataset: str) -> dict[str, Any]:
    """Keyword arguments of :class:`~brainenc.fusion.models.MulT` as MMSA sets MulT.

    Parameters
    ----------
    dims : FeatureDims or sequence of int
        Text, audio and vision feature sizes (``MMSADataset.dims``).
    dataset : {"mosi", "mosei", "sims"}

    Returns
    -------
    dict
        ``text_dim``, ``audio_dim``, ``vision_dim``, ``dim``, ``n_layers``,
        ``n_heads``, ``out_dim``, ``ff_mult``, ``dropout``, ``causal``; see the
        module docstring for the mapping.
    """
    text_dim, audio_dim, vision_dim = _dims(dims)
    s = _settings(MMSA_MULT, dataset)
    return dict(
        text_dim=text_dim, audio_dim=audio_dim, vision_dim=vision_dim, dim=s.dim,
        n_layers=s.nlevels, n_heads=s.n_heads, out_dim=1, ff_mult=4, dropout=s.embed_dropout,
        causal=s.attn_mask,
    )


def gsit_config(dims: FeatureDims | Sequence[int], dataset: str) -> dict[str, Any]:
    """Keyword arguments of :class:`~brainenc.fusion.models.GsiT` as its authors set them.

    Parameters
    ----------
    dims : FeatureDims or sequence of int
        Text, audio and vision feature sizes (``MMSADataset.dims``).
    dataset : {"mosi", "mosei", "sims"}

    Returns
    -------
    dict
        ``text_dim``, ``audio_dim``, ``vision_dim``, ``dim``, ``n_layers``,
        ``n_heads``, ``out_dim``, ``ff_mult``, ``dropout``.
    """
    text_dim, audio_dim, vision_dim = _dims(dims)
    s = _settings(GSIT_CMG, dataset)
    return dict(
        text_dim=text_dim, audio_dim=audio_dim, vision_dim=vision_dim, dim=s.dim,
        n_layers=s.nlevels, n_heads=s.n_heads, out_dim=1, ff_mult=4, dropout=s.embed_dropout,
    )


def count_parameters(model: nn.Module, encoder_only: bool = True) -> int:
    """Number of trainable parameters, each shared tensor counted once.

    Parameters
    ----------
    model : torch.nn.Module
    encoder_only : bool
        Count only the parameters inside
        :class:`~brainenc.fusion.encoder.ModalityEncoder` stacks (the
        transformers), leaving out projections and the head.

    Returns
    -------
    int
    """
    if encoder_only:
        modules = [m for m in model.modules() if isinstance(m, ModalityEncoder)]
    else:
        modules = [model]
    seen: dict[int, int] = {}
    for module in modules:
        for p in module.parameters():
            if p.requires_grad:
                seen[id(p)] = p.numel()
    return sum(seen.values())

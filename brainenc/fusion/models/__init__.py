"""Multimodal fusion models built on the fusion core.

:class:`MulT` (six pairwise cross-modal transformers, then three
self-attention transformers) and :class:`GsiT` (the same six pairs as two
interlaced block tables over one joint sequence, one third of the encoder
parameters) share inputs, widths and head for direct comparison.
:class:`DualBranchTransformer` projects any subset of modalities onto common
tokens and runs a label branch and a pseudo-label branch side by side.
The IsoNet family (:class:`MultimodalMLP`, :class:`MultimodalTransformer`,
:class:`HierarchicalTransformer`) takes per-layer tables for isolation analyses.
"""
from .dual_branch import DualBranchOutput, DualBranchTransformer, ModalityTokenProjector
from .gsit import GsiT
from .isonet import HierarchicalTransformer, MultimodalMLP, MultimodalTransformer
from .mult import MulT

__all__ = [
    "DualBranchOutput",
    "DualBranchTransformer",
    "GsiT",
    "HierarchicalTransformer",
    "ModalityTokenProjector",
    "MulT",
    "MultimodalMLP",
    "MultimodalTransformer",
]

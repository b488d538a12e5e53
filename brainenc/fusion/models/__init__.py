"""Multimodal fusion models built on the fusion core.

:class:`MulT` (six pairwise cross-modal transformers, then three
self-attention transformers) and :class:`GsiT` (the same six pairs as two
interlaced block tables over one joint sequence, one third of the encoder
parameters) share inputs, widths and head for direct comparison.
"""
from .gsit import GsiT
from .mult import MulT

__all__ = ["GsiT", "MulT"]

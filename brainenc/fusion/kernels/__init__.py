"""Triton kernels of the fusion core.

Importing this package needs ``triton``; it does not need a GPU (kernels run on
the CPU when ``TRITON_INTERPRET=1`` is set before import).
"""
from __future__ import annotations

from brainenc.fusion.kernels.block_attention import (
    TileLists,
    block_sparse_attention,
    build_tile_lists,
)

__all__ = ["TileLists", "block_sparse_attention", "build_tile_lists"]

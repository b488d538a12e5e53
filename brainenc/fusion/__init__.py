"""Fusion core: attention over a joint multimodal sequence with block tables.

Tokens of several modalities sit in one sequence (:class:`ModalityLayout`); a
``(S, S)`` block table says which modality segment may attend which, fully
or causally.
Builders cover MulT pairs, GsiT interlaced tables, isolation (silencing) and
dual-branch partitions; :class:`ModalityAttention` computes only the allowed
blocks. Models built on it live in :mod:`brainenc.fusion.models`; RollingQ in
:mod:`brainenc.fusion.rollingq`.
"""
from .attention import BACKENDS, ModalityAttention, block_attention, dense_attention
from .encoder import ModalityEncoder, ModalityEncoderLayer
from .layout import (
    ATTEND,
    BLOCKED,
    CAUSAL,
    ModalityLayout,
    branch_table,
    causal_table,
    cross_modal_blocks,
    dual_branch_layout,
    full_table,
    gsit_backward_table,
    gsit_forward_table,
    pack_modalities,
    pair_table,
    self_only_table,
    silence,
    unimodal_blocks,
)

__all__ = [
    "ATTEND",
    "BLOCKED",
    "CAUSAL",
    "BACKENDS",
    "ModalityAttention",
    "ModalityEncoder",
    "ModalityEncoderLayer",
    "ModalityLayout",
    "block_attention",
    "branch_table",
    "causal_table",
    "cross_modal_blocks",
    "dense_attention",
    "dual_branch_layout",
    "full_table",
    "gsit_backward_table",
    "gsit_forward_table",
    "pack_modalities",
    "pair_table",
    "self_only_table",
    "silence",
    "unimodal_blocks",
]

"""GsiT: graph-structured, interlaced multimodal transformer (Jin et al., ACL 2025).

The projected text, vision and audio tokens (width ``d``) form one sequence
``[text | vision | audio]``. Level 1 runs two encoders of width ``d`` over it:
a *forward* encoder with the interlaced table T->V, V->A, A->T (query -> key)
and a *backward* encoder with T->A, V->T, A->V; each is one stack of weights
shared by its three pairs, and together they cover MulT's six cross-modal
pairs. Their outputs are concatenated to width ``2d``. Level 2 is one encoder
of width ``2d`` with the block-diagonal (self-only) table. The last valid
token of each modality goes to the head. Blocks that the tables forbid are
never computed with the ``"block"`` and ``"triton"`` backends. With 2 + 1
stacks instead of MulT's 6 + 3, the encoders hold one third of MulT's
encoder parameters at equal width and depth.

For a like-for-like comparison this implementation reuses MulT's pieces:
kernel-1 Conv1d projections, the scaled sinusoidal input embedding at each
level (positions within each modality), pre-norm layers with a final
LayerNorm, and MulT's residual head; the same simplifications as in
:mod:`brainenc.fusion.models.mult` apply (one dropout rate, last *valid*
token). GsiT's tables are block-level: there is no causal (future) mask. Within the joint pass every modality is both query
(of its own pair) and key (of another pair), so from the second layer on the
keys are already updated tokens; in the first layer each pair's computation
equals the per-pair one exactly.
"""
from __future__ import annotations

import torch

from ..encoder import ModalityEncoder
from ..layout import gsit_backward_table, gsit_forward_table, pack_modalities, self_only_table
from .mult import TrimodalModel, embed_tokens, last_valid_token

__all__ = ["GsiT", "SEQUENCE"]

SEQUENCE = ("text", "vision", "audio")


class GsiT(TrimodalModel):
    """Two-level interlaced transformer over the joint [text | vision | audio] sequence.

    Parameters
    ----------
    text_dim, audio_dim, vision_dim : int
        Input feature sizes.
    dim : int
        Level-1 width ``d``; level 2 has width ``2d``.
    n_layers : int
        Layers per encoder (same as MulT for comparison: 5).
    n_heads : int
        Attention heads (MulT's 5).
    out_dim : int
        Output size.
    ff_mult : int
        Feed-forward width multiple.
    dropout : float
        Dropout rate used throughout.
    backend : {"auto", "dense", "block", "triton"}
        Attention backend.
    """

    def __init__(
        self,
        text_dim: int,
        audio_dim: int,
        vision_dim: int,
        dim: int = 30,
        n_layers: int = 5,
        n_heads: int = 5,
        out_dim: int = 1,
        ff_mult: int = 4,
        dropout: float = 0.1,
        backend: str = "auto",
    ) -> None:
        super().__init__(text_dim, audio_dim, vision_dim, dim, out_dim, dropout)
        encoder = dict(
            n_layers=n_layers, n_heads=n_heads, ff_mult=ff_mult, dropout=dropout, backend=backend
        )
        self.forward_encoder = ModalityEncoder(dim, **encoder)
        self.backward_encoder = ModalityEncoder(dim, **encoder)
        self.fusion_encoder = ModalityEncoder(2 * dim, **encoder)
        self.register_buffer("forward_table", gsit_forward_table(SEQUENCE), persistent=False)
        self.register_buffer("backward_table", gsit_backward_table(SEQUENCE), persistent=False)
        self.register_buffer("fusion_table", self_only_table(len(SEQUENCE)), persistent=False)

    def fuse(
        self, tokens: dict[str, torch.Tensor], lengths: dict[str, torch.Tensor],
        hook: dict | None = None,
    ) -> dict[str, torch.Tensor]:
        """Both interlaced encoders over ``[text | vision | audio]``, concatenated,
        then the self-only encoder; the last valid token of each modality."""
        seq_lengths = [lengths[m] for m in SEQUENCE]
        x, layout = pack_modalities([tokens[m] for m in SEQUENCE], seq_lengths, names=SEQUENCE)
        level1 = torch.cat(
            [
                self.forward_encoder(x, layout, self.forward_table, **(hook or {})),
                self.backward_encoder(x, layout, self.backward_table, **(hook or {})),
            ],
            dim=2,
        )
        # level 2 input: MulT-style embedding of each modality's 2d tokens
        parts = [
            embed_tokens(p, n, self.embed_dropout)
            for p, n in zip(layout.unpack(level1), seq_lengths)
        ]
        x2, layout2 = pack_modalities(parts, seq_lengths, names=SEQUENCE)
        out = layout2.unpack(self.fusion_encoder(x2, layout2, self.fusion_table, **(hook or {})))
        return {m: last_valid_token(o, n) for m, o, n in zip(SEQUENCE, out, seq_lengths)}

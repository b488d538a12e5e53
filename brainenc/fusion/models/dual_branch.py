"""Dual-branch transformer for unseen modality interaction (Zhang, Doughty, Snoek, NeurIPS 2023).

Every available modality is projected onto the same ``k`` common tokens of
width ``d`` and the projections are summed, so a modality missing from a sample
(length 0) or from the whole batch (``None``) simply contributes nothing and
any subset of modalities lands in one shared token space. The ``k`` tokens are
split into two halves, each with its own learned CLS token, laid out as
``[cls_a | half_a | cls_b | half_b]`` (:func:`~brainenc.fusion.layout.dual_branch_layout`);
one :class:`~brainenc.fusion.encoder.ModalityEncoder` runs over the sequence
with the block-diagonal :func:`~brainenc.fusion.layout.branch_table`, so
attention never crosses between the halves. Branch A's CLS feeds the label
head, branch B's CLS the pseudo-label head; both CLS embeddings are returned
for retrieval.

Projection onto the common tokens: attention pooling with ``k`` learned
queries per modality. A modality's features are mapped to width ``d`` by a
linear layer and each of its ``k`` queries takes a softmax-weighted average of
the modality's valid tokens (single head, scale ``1 / sqrt(d)``). Unlike a
learned ``(k x L)`` mixing matrix this handles any sequence length and ignores
padding; a modality with no valid token pools to zeros. A learned embedding of
the ``k`` common-token positions is added after the sum.
"""
from __future__ import annotations

import math
from typing import Mapping, NamedTuple

import torch
from torch import nn

from ..attention import dense_attention
from ..encoder import ModalityEncoder
from ..layout import branch_table, dual_branch_layout

__all__ = ["DualBranchOutput", "ModalityTokenProjector", "DualBranchTransformer"]


class DualBranchOutput(NamedTuple):
    """Outputs of :class:`DualBranchTransformer`.

    Attributes
    ----------
    logits : torch.Tensor
        ``(B, n_classes)`` label logits from branch A's CLS.
    pseudo_logits : torch.Tensor
        ``(B, n_pseudo_classes)`` pseudo-label logits from branch B's CLS.
    embedding_a, embedding_b : torch.Tensor
        ``(B, dim)`` final CLS embeddings of branch A and branch B.
    """

    logits: torch.Tensor
    pseudo_logits: torch.Tensor
    embedding_a: torch.Tensor
    embedding_b: torch.Tensor


class ModalityTokenProjector(nn.Module):
    """Attention pooling of one modality's tokens onto ``k`` common tokens.

    Parameters
    ----------
    in_dim : int
        Feature size of the modality.
    dim : int
        Common token width ``d``.
    n_tokens : int
        Number of common tokens ``k``.
    """

    def __init__(self, in_dim: int, dim: int, n_tokens: int) -> None:
        super().__init__()
        self.dim = dim
        self.n_tokens = n_tokens
        self.proj = nn.Linear(in_dim, dim)
        self.queries = nn.Parameter(torch.randn(n_tokens, dim) / math.sqrt(dim))

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """Pool ``(B, L, in_dim)`` tokens (valid first) to ``(B, k, dim)``.

        Parameters
        ----------
        x : torch.Tensor
            ``(B, L, in_dim)`` features, valid tokens first.
        lengths : torch.Tensor, optional
            ``(B,)`` valid tokens per sample; default: all ``L``. A sample with
            length 0 gets zeros.

        Returns
        -------
        torch.Tensor
            ``(B, k, dim)`` common-token contribution of this modality.
        """
        if x.dim() != 3:
            raise ValueError(f"x must be (B, L, F), got {tuple(x.shape)}")
        batch, width, _ = x.shape
        if lengths is None:
            lengths = torch.full((batch,), width, dtype=torch.int64, device=x.device)
        lengths = torch.as_tensor(lengths, device=x.device).to(torch.int64)
        if lengths.shape != (batch,) or (lengths > width).any() or (lengths < 0).any():
            raise ValueError(f"lengths must be (B,) in [0, {width}]")
        h = self.proj(x)[:, None]  # (B, 1, L, dim): one head
        q = self.queries.expand(batch, 1, -1, -1)
        key_ids = torch.where(
            torch.arange(width, device=x.device)[None, :] < lengths[:, None], 0, -1
        )
        query_ids = torch.zeros(batch, self.n_tokens, dtype=torch.int64, device=x.device)
        table = torch.ones(1, 1, dtype=torch.bool)
        # rows whose sample has no valid token come back as zeros, not NaN
        return dense_attention(q, h, h, query_ids, key_ids, table)[:, 0]


class DualBranchTransformer(nn.Module):
    """Common-token dual-branch transformer with label and pseudo-label heads.

    Parameters
    ----------
    in_dims : mapping of str to int
        Feature size of each modality the model accepts.
    n_classes : int
        Label classes (branch A head).
    n_pseudo_classes : int, optional
        Pseudo-label classes (branch B head); defaults to ``n_classes``.
    dim : int
        Token width ``d``.
    n_tokens : int
        Common tokens ``k`` (split ``ceil(k / 2)`` / ``floor(k / 2)``).
    n_layers, n_heads, ff_mult, dropout : int, int, int, float
        Encoder settings, see :class:`~brainenc.fusion.encoder.ModalityEncoder`.
    backend : {"auto", "dense", "block", "triton"}
        Attention backend; ``"block"`` and ``"triton"`` never compute the
        cross-branch blocks.
    """

    def __init__(
        self,
        in_dims: Mapping[str, int],
        n_classes: int,
        n_pseudo_classes: int | None = None,
        dim: int = 256,
        n_tokens: int = 512,
        n_layers: int = 4,
        n_heads: int = 4,
        ff_mult: int = 4,
        dropout: float = 0.1,
        backend: str = "auto",
    ) -> None:
        super().__init__()
        if not in_dims:
            raise ValueError("in_dims must name at least one modality")
        if n_tokens < 2:
            raise ValueError(f"n_tokens must be >= 2 (two halves), got {n_tokens}")
        self.modalities = tuple(in_dims)
        self.dim = dim
        self.n_tokens = n_tokens
        self.projectors = nn.ModuleDict(
            {m: ModalityTokenProjector(f, dim, n_tokens) for m, f in in_dims.items()}
        )
        self.token_embedding = nn.Parameter(torch.zeros(n_tokens, dim))
        self.cls_a = nn.Parameter(torch.randn(dim) * 0.02)
        self.cls_b = nn.Parameter(torch.randn(dim) * 0.02)
        self.encoder = ModalityEncoder(
            dim, n_layers, n_heads, ff_mult=ff_mult, dropout=dropout, backend=backend
        )
        self.head = nn.Linear(dim, n_classes)
        n_pseudo = n_classes if n_pseudo_classes is None else n_pseudo_classes
        self.pseudo_head = nn.Linear(dim, n_pseudo)
        self.register_buffer("table", branch_table(), persistent=False)

    @property
    def half_sizes(self) -> tuple[int, int]:
        """Common tokens in branch A and branch B."""
        first = (self.n_tokens + 1) // 2
        return first, self.n_tokens - first

    def common_tokens(
        self,
        inputs: Mapping[str, torch.Tensor | None],
        lengths: Mapping[str, torch.Tensor | None] | None = None,
    ) -> torch.Tensor:
        """Sum of the projections of the available modalities.

        Parameters
        ----------
        inputs : mapping of str to torch.Tensor or None
            ``(B, L_m, F_m)`` features per modality, valid tokens first; an
            absent key or ``None`` marks a modality missing from the batch.
        lengths : mapping of str to torch.Tensor, optional
            ``(B,)`` valid tokens per sample (0 for a missing modality);
            default: the full width.

        Returns
        -------
        torch.Tensor
            ``(B, k, dim)`` common tokens, position embedding excluded.
        """
        unknown = set(inputs) - set(self.modalities)
        if unknown:
            raise KeyError(f"unknown modalities {sorted(unknown)}; expected {self.modalities}")
        lengths = {} if lengths is None else lengths
        present = [m for m in self.modalities if inputs.get(m) is not None]
        if not present:
            raise ValueError("at least one modality must be given")
        parts = [self.projectors[m](inputs[m], lengths.get(m)) for m in present]
        return torch.stack(parts).sum(dim=0)

    def encode_common(self, common: torch.Tensor, query_hook=None,
                      hook_layer: int | None = -1) -> tuple[torch.Tensor, torch.Tensor]:
        """Run the two branches over given common tokens.

        Parameters
        ----------
        common : torch.Tensor
            ``(B, k, dim)`` common tokens (e.g. from :meth:`common_tokens`).
        query_hook : callable, optional
            Applied to the queries of layer ``hook_layer`` of the encoder
            (see :meth:`brainenc.fusion.encoder.ModalityEncoder.forward`).
        hook_layer : int or None

        Returns
        -------
        embedding_a, embedding_b : torch.Tensor
            ``(B, dim)`` final CLS embeddings of branch A and branch B.
        """
        batch = common.shape[0]
        if common.shape[1:] != (self.n_tokens, self.dim):
            raise ValueError(
                f"common must be (B, {self.n_tokens}, {self.dim}), got {tuple(common.shape)}"
            )
        tokens = common + self.token_embedding
        size_a, _ = self.half_sizes
        cls_a = self.cls_a.expand(batch, 1, -1).to(tokens.dtype)
        cls_b = self.cls_b.expand(batch, 1, -1).to(tokens.dtype)
        x = torch.cat([cls_a, tokens[:, :size_a], cls_b, tokens[:, size_a:]], dim=1)
        counts = torch.full((batch,), self.n_tokens, dtype=torch.int64, device=x.device)
        layout = dual_branch_layout(counts)
        out = self.encoder(x, layout, self.table, query_hook=query_hook, hook_layer=hook_layer)
        return out[:, 0], out[:, 1 + size_a]

    def forward(
        self,
        inputs: Mapping[str, torch.Tensor | None],
        lengths: Mapping[str, torch.Tensor | None] | None = None,
        query_hook=None,
        hook_layer: int | None = -1,
    ) -> DualBranchOutput:
        """Predict labels and pseudo-labels from any subset of modalities.

        Parameters
        ----------
        inputs, lengths
            See :meth:`common_tokens`.
        query_hook, hook_layer
            See :meth:`encode_common`.

        Returns
        -------
        DualBranchOutput
            Label logits, pseudo-label logits and both CLS embeddings.
        """
        emb_a, emb_b = self.encode_common(self.common_tokens(inputs, lengths), query_hook, hook_layer)
        return DualBranchOutput(self.head(emb_a), self.pseudo_head(emb_b), emb_a, emb_b)


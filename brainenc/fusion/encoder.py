"""Pre-norm transformer encoder over a joint multimodal sequence.

Every attention sublayer is restricted by a block table (see
:mod:`brainenc.fusion.layout`), so one encoder class covers plain
self-attention, MulT's cross-modal transformers, GsiT's interlaced encoders and
isolation analyses that silence blocks at chosen layers.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from .attention import ModalityAttention, QueryHook
from .layout import ModalityLayout

__all__ = ["ModalityEncoderLayer", "ModalityEncoder"]


def _update_mask(
    layout: ModalityLayout, n_tokens: int, update: torch.Tensor | None, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(B, N)`` masks of valid positions and of positions the layer may change."""
    segment_ids = layout.segment_ids(n_tokens).to(device)
    valid = segment_ids >= 0
    if update is None:
        return valid, valid
    update = torch.as_tensor(update, dtype=torch.bool, device=device)
    if update.shape != (layout.n_segments,):
        raise ValueError(f"update must be ({layout.n_segments},) bool, got {tuple(update.shape)}")
    return valid, valid & update[segment_ids.clamp(min=0)]


class ModalityEncoderLayer(nn.Module):
    """Pre-norm transformer layer: ``x + Attn(LN(x))`` then ``x + FFN(LN(x))``.

    Parameters
    ----------
    dim : int
        Model width.
    n_heads : int
        Attention heads (``dim`` must be divisible by it; any head size works
        with the ``"dense"`` and ``"block"`` backends).
    ff_mult : int
        Hidden width of the feed-forward block, as a multiple of ``dim``.
    dropout : float
        Dropout on the attention output, the feed-forward hidden layer and both
        residual branches.
    backend : {"auto", "dense", "block", "triton"}
        Attention backend, see :class:`~brainenc.fusion.attention.ModalityAttention`.

    Notes
    -----
    The feed-forward block is ``Linear -> ReLU -> Linear`` as in MulT. Attention
    dropout acts on the attention output rather than on the softmax weights.
    """

    def __init__(
        self,
        dim: int,
        n_heads: int,
        ff_mult: int = 4,
        dropout: float = 0.0,
        backend: str = "auto",
    ) -> None:
        super().__init__()
        self.dim = dim
        self.attn_norm = nn.LayerNorm(dim)
        self.attn = ModalityAttention(dim, n_heads, backend=backend, dropout=dropout)
        self.ff_norm = nn.LayerNorm(dim)
        self.ff = nn.Sequential(
            nn.Linear(dim, ff_mult * dim),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(ff_mult * dim, dim),
        )
        self.residual_dropout = nn.Dropout(dropout)

    def forward(
        self,
        x: torch.Tensor,
        layout: ModalityLayout,
        table: torch.Tensor,
        update: torch.Tensor | Sequence[bool] | None = None,
        query_hook: QueryHook | None = None,
    ) -> torch.Tensor:
        """Apply the layer.

        Parameters
        ----------
        x : torch.Tensor
            ``(B, N, dim)`` joint sequence laid out by ``layout``.
        layout : ModalityLayout
            Segment lengths of ``x``.
        table : torch.Tensor
            ``(S, S)`` block table of the attention (bool, or integer codes with
            causal blocks; see :mod:`brainenc.fusion.layout`).
        update : bool tensor or sequence of bool, optional
            ``(S,)``: segments whose tokens the layer updates; the tokens of the
            other segments pass through unchanged and serve only as keys and
            values (MulT's cross-modal source). Defaults to all segments.
        query_hook : callable, optional
            Passed to the attention (applied to the queries before the softmax).

        Returns
        -------
        torch.Tensor
            ``(B, N, dim)``; padding positions are 0.
        """
        valid, change = _update_mask(layout, x.shape[1], update, x.device)
        h = x + self.residual_dropout(self.attn(self.attn_norm(x), layout, table, query_hook))
        h = h + self.residual_dropout(self.ff(self.ff_norm(h)))
        # layer norm and linear biases would otherwise write into padding
        # and into the frozen (key/value only) segments
        return torch.where(change[:, :, None], h, x * valid[:, :, None].to(x.dtype))


class ModalityEncoder(nn.Module):
    """Stack of :class:`ModalityEncoderLayer` with an optional final LayerNorm.

    Parameters
    ----------
    dim : int
        Model width.
    n_layers : int
        Number of layers.
    n_heads : int
        Attention heads per layer.
    ff_mult : int
        Feed-forward hidden width as a multiple of ``dim``.
    dropout : float
        Dropout inside each layer.
    backend : {"auto", "dense", "block", "triton"}
        Attention backend of every layer.
    final_norm : bool
        Apply a LayerNorm to the output (as pre-norm transformers, MulT's
        included, do).
    """

    def __init__(
        self,
        dim: int,
        n_layers: int,
        n_heads: int,
        ff_mult: int = 4,
        dropout: float = 0.0,
        backend: str = "auto",
        final_norm: bool = True,
    ) -> None:
        super().__init__()
        if n_layers < 1:
            raise ValueError(f"n_layers must be >= 1, got {n_layers}")
        self.dim = dim
        self.layers = nn.ModuleList(
            ModalityEncoderLayer(dim, n_heads, ff_mult, dropout, backend) for _ in range(n_layers)
        )
        self.norm = nn.LayerNorm(dim) if final_norm else None

    @property
    def n_layers(self) -> int:
        """Number of layers."""
        return len(self.layers)

    def _hooked_layer(self, hook_layer: int | None) -> int | None:
        """The index of ``hook_layer`` among the layers (None: every layer)."""
        if hook_layer is None:
            return None
        if not -self.n_layers <= hook_layer < self.n_layers:
            raise ValueError(f"hook_layer {hook_layer} is out of range for {self.n_layers} layers")
        return hook_layer % self.n_layers

    def forward(
        self,
        x: torch.Tensor,
        layout: ModalityLayout,
        tables: torch.Tensor | Sequence[torch.Tensor],
        update: torch.Tensor | Sequence[bool] | None = None,
        query_hook: QueryHook | None = None,
        hook_layer: int | None = -1,
    ) -> torch.Tensor:
        """Run all layers.

        Parameters
        ----------
        x : torch.Tensor
            ``(B, N, dim)`` joint sequence laid out by ``layout``.
        layout : ModalityLayout
            Segment lengths of ``x``.
        tables : torch.Tensor or sequence of torch.Tensor
            One ``(S, S)`` table used by every layer, or one table per
            layer (e.g. blocks silenced only at some layers).
        update : bool tensor or sequence of bool, optional
            ``(S,)`` segments the layers (and the final norm) update; the others
            pass through unchanged. Defaults to all segments.
        query_hook : callable, optional
            Applied to the queries of the attention of layer ``hook_layer``
            only (e.g. :meth:`brainenc.fusion.rollingq.RollingQ.query_hook`,
            which rotates the CLS query of the layer it rebalances).
        hook_layer : int or None
            The layer the hook acts in (negative counts from the last; default
            the last layer); None applies it in every layer.

        Returns
        -------
        torch.Tensor
            ``(B, N, dim)``; padding positions are 0.
        """
        if isinstance(tables, torch.Tensor) and tables.dim() == 2:
            per_layer = [tables] * self.n_layers
        else:
            per_layer = list(tables)
            if len(per_layer) != self.n_layers:
                raise ValueError(
                    f"expected one table or {self.n_layers} tables, got {len(per_layer)}"
                )
        hooked = self._hooked_layer(hook_layer) if query_hook is not None else None
        for index, (layer, table) in enumerate(zip(self.layers, per_layer)):
            hook = query_hook if hook_layer is None or index == hooked else None
            x = layer(x, layout, table, update=update, query_hook=hook)
        if self.norm is None:
            return x
        valid, change = _update_mask(layout, x.shape[1], update, x.device)
        return torch.where(change[:, :, None], self.norm(x), x * valid[:, :, None].to(x.dtype))

"""IsoNet model family for multimodal biosignal tokens (Tyacke et al. 2025).

Inputs are groups of tokens, one group per modality (e.g. EMG and ACC
channels as tokens): a list (in the order of ``in_dims``) or a dict of
``(B, L_m, F_m)`` tensors. Every model returns ``(B, n_classes)`` logits.

* :class:`MultimodalMLP`: each modality flattened and passed through its own
  MLP, the modality vectors concatenated and classified.
* :class:`MultimodalTransformer`: all tokens in one joint sequence through a
  :class:`~brainenc.fusion.encoder.ModalityEncoder` with a full block table;
  a CLS token or mean pooling, then a linear classifier.
* :class:`HierarchicalTransformer`: one encoder per modality (self-only
  table), then fusion: ``"linear"`` (concatenated pooled modality vectors ->
  linear) or ``"attention"`` (a fusion encoder over the joint sequence).

The transformer models take ``tables`` in ``forward``: ``None`` (their
:meth:`base_tables`), one ``(S, S)`` table for every layer, or one table per
layer, over the segments :attr:`segment_names`. This is what
:mod:`brainenc.fusion.isolation` uses to silence blocks at chosen layers.
"""
from __future__ import annotations

from typing import Mapping, Sequence, Union

import torch
from torch import nn

from ..encoder import ModalityEncoder
from ..layout import ModalityLayout, full_table, self_only_table

__all__ = ["MultimodalMLP", "MultimodalTransformer", "HierarchicalTransformer"]

Inputs = Union[Sequence[torch.Tensor], Mapping[str, torch.Tensor]]
Lengths = Union[Sequence[torch.Tensor], Mapping[str, torch.Tensor], None]
Tables = Union[torch.Tensor, Sequence[torch.Tensor], None]


def _ordered(values, names: tuple[str, ...], what: str) -> list:
    """Values of a list (in ``names`` order) or a dict keyed by ``names``."""
    if isinstance(values, Mapping):
        missing = [n for n in names if n not in values]
        if missing:
            raise KeyError(f"{what} lacks modalities {missing}; expected {names}")
        return [values[n] for n in names]
    values = list(values)
    if len(values) != len(names):
        raise ValueError(f"expected {len(names)} {what} ({names}), got {len(values)}")
    return values


def _check_tokens(tokens: list[torch.Tensor], names, in_dims) -> None:
    batch = tokens[0].shape[0]
    for name, t in zip(names, tokens):
        if t.dim() != 3 or t.shape[0] != batch or t.shape[2] != in_dims[name]:
            raise ValueError(
                f"{name} tokens must be (B={batch}, L, {in_dims[name]}), got {tuple(t.shape)}"
            )


def _resolve_lengths(tokens: list[torch.Tensor], lengths: Lengths, names) -> list[torch.Tensor]:
    """``(B,)`` valid-token counts per modality; by default the full width."""
    if lengths is None:
        return [
            torch.full((t.shape[0],), t.shape[1], dtype=torch.int64, device=t.device)
            for t in tokens
        ]
    out = []
    for t, n in zip(tokens, _ordered(lengths, names, "lengths")):
        n = torch.as_tensor(n, device=t.device).to(torch.int64).reshape(-1)
        if n.shape[0] != t.shape[0] or (n > t.shape[1]).any() or (n < 0).any():
            raise ValueError(f"lengths must be (B,) within [0, {t.shape[1]}]")
        out.append(n)
    return out


def _masked_mean(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Mean of ``x`` ``(B, L, D)`` over the first ``lengths[b]`` tokens (0 when empty)."""
    valid = torch.arange(x.shape[1], device=x.device)[None, :] < lengths[:, None]
    total = (x * valid[:, :, None].to(x.dtype)).sum(dim=1)
    return total / lengths.clamp(min=1)[:, None].to(x.dtype)


class _TokenEmbedding(nn.Module):
    """Per-modality linear token embedding plus a learned modality-specific position."""

    def __init__(self, in_dims: Mapping[str, int], dim: int, max_tokens: int) -> None:
        super().__init__()
        self.max_tokens = max_tokens
        self.proj = nn.ModuleDict({m: nn.Linear(f, dim) for m, f in in_dims.items()})
        # one position table per modality doubles as the modality embedding
        self.position = nn.ParameterDict(
            {m: nn.Parameter(0.02 * torch.randn(max_tokens, dim)) for m in in_dims}
        )

    def forward(self, name: str, x: torch.Tensor) -> torch.Tensor:
        if x.shape[1] > self.max_tokens:
            raise ValueError(f"{name} has {x.shape[1]} tokens, more than max_tokens={self.max_tokens}")
        return self.proj[name](x) + self.position[name][: x.shape[1]]


def _per_layer(tables: Tables, default: list[torch.Tensor], n_segments: int) -> list[torch.Tensor]:
    """One ``(S, S)`` bool table per layer from ``None``, one table or a list."""
    if tables is None:
        return default
    if isinstance(tables, torch.Tensor) and tables.dim() == 2:
        per_layer = [tables] * len(default)
    else:
        per_layer = list(tables)
        if len(per_layer) != len(default):
            raise ValueError(f"expected one table or {len(default)} tables, got {len(per_layer)}")
    for t in per_layer:
        if t.shape != (n_segments, n_segments):
            raise ValueError(f"tables must be ({n_segments}, {n_segments}), got {tuple(t.shape)}")
    return [t.to(torch.bool) for t in per_layer]


class MultimodalMLP(nn.Module):
    """Per-modality MLPs on flattened tokens, fused by concatenation.

    Parameters
    ----------
    in_shapes : mapping of str to (int, int)
        ``name -> (L_m, F_m)`` token count and feature size of each modality,
        in input order.
    hidden : int
        Width of each modality MLP and of the fusion layer.
    n_classes : int
        Number of output logits.
    dropout : float
        Dropout after each hidden layer.
    """

    def __init__(
        self,
        in_shapes: Mapping[str, tuple[int, int]],
        hidden: int = 64,
        n_classes: int = 2,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.names = tuple(in_shapes)
        self.in_shapes = {m: (int(s[0]), int(s[1])) for m, s in in_shapes.items()}
        self.branches = nn.ModuleDict(
            {
                m: nn.Sequential(
                    nn.Flatten(), nn.Linear(l * f, hidden), nn.ReLU(), nn.Dropout(dropout)
                )
                for m, (l, f) in self.in_shapes.items()
            }
        )
        self.head = nn.Sequential(
            nn.Linear(len(self.names) * hidden, hidden),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(hidden, n_classes),
        )

    def forward(self, inputs: Inputs, query_hook=None, hook_layer: int | None = -1) -> torch.Tensor:
        """Logits ``(B, n_classes)`` from per-modality ``(B, L_m, F_m)`` tokens.

        ``query_hook`` and ``hook_layer`` are accepted so that every model of the
        family takes the same arguments; an MLP has no attention queries, so a
        hook is refused.
        """
        if query_hook is not None:
            raise ValueError("MultimodalMLP has no attention: a query hook has nothing to act on")
        tokens = _ordered(inputs, self.names, "inputs")
        for m, t in zip(self.names, tokens):
            if tuple(t.shape[1:]) != self.in_shapes[m]:
                raise ValueError(f"{m} tokens must be (B, {self.in_shapes[m]}), got {tuple(t.shape)}")
        return self.head(torch.cat([self.branches[m](t) for m, t in zip(self.names, tokens)], 1))


class MultimodalTransformer(nn.Module):
    """All modality tokens in one joint sequence through one encoder.

    Parameters
    ----------
    in_dims : mapping of str to int
        ``name -> F_m`` feature size of each modality's tokens, in sequence
        order.
    dim : int
        Model width.
    n_layers, n_heads : int
        Encoder depth and heads.
    n_classes : int
        Number of output logits.
    pooling : {"cls", "mean"}
        ``"cls"`` prepends a learned CLS token (segment ``"cls"``) whose final
        state is classified; ``"mean"`` classifies the mean over all valid
        modality tokens.
    max_tokens : int
        Most tokens per modality (size of the learned position tables).
    ff_mult, dropout, backend
        Passed to :class:`~brainenc.fusion.encoder.ModalityEncoder`.

    Notes
    -----
    In the base table every modality attends every modality. The CLS token
    attends everything, but modality tokens do not attend the CLS token: the
    CLS is a read-out only, so silencing the modality blocks leaves no
    indirect path between modalities through it.
    """

    def __init__(
        self,
        in_dims: Mapping[str, int],
        dim: int = 32,
        n_layers: int = 2,
        n_heads: int = 2,
        n_classes: int = 2,
        pooling: str = "cls",
        max_tokens: int = 64,
        ff_mult: int = 4,
        dropout: float = 0.0,
        backend: str = "auto",
    ) -> None:
        super().__init__()
        if pooling not in ("cls", "mean"):
            raise ValueError(f"pooling must be 'cls' or 'mean', got {pooling!r}")
        self.names = tuple(in_dims)
        if "cls" in self.names:
            raise ValueError("'cls' is reserved for the CLS segment")
        self.in_dims = dict(in_dims)
        self.pooling = pooling
        self.embed = _TokenEmbedding(self.in_dims, dim, max_tokens)
        self.cls = nn.Parameter(0.02 * torch.randn(dim)) if pooling == "cls" else None
        self.encoder = ModalityEncoder(dim, n_layers, n_heads, ff_mult, dropout, backend)
        self.head = nn.Linear(dim, n_classes)

    @property
    def segment_names(self) -> tuple[str, ...]:
        """Segments of the joint sequence, in order (``"cls"`` first with CLS pooling)."""
        return (("cls",) if self.pooling == "cls" else ()) + self.names

    @property
    def n_layers(self) -> int:
        """Number of encoder layers (one table each)."""
        return self.encoder.n_layers

    def base_tables(self) -> list[torch.Tensor]:
        """Per-layer tables of the intact model."""
        table = full_table(len(self.segment_names))
        if self.pooling == "cls":
            table[1:, 0] = False  # modality tokens do not read the CLS token
        return [table.clone() for _ in range(self.n_layers)]

    def encode(
        self, inputs: Inputs, lengths: Lengths = None, tables: Tables = None,
        query_hook=None, hook_layer: int | None = -1,
    ) -> tuple[torch.Tensor, ModalityLayout]:
        """Encoder output ``(B, N, dim)`` over :attr:`segment_names` and its layout;
        ``query_hook`` acts in layer ``hook_layer`` only
        (:meth:`brainenc.fusion.encoder.ModalityEncoder.forward`)."""
        tokens = _ordered(inputs, self.names, "inputs")
        _check_tokens(tokens, self.names, self.in_dims)
        counts = _resolve_lengths(tokens, lengths, self.names)
        parts = [self.embed(m, t) for m, t in zip(self.names, tokens)]
        if self.cls is not None:
            batch = tokens[0].shape[0]
            parts.insert(0, self.cls.expand(batch, 1, -1))
            counts.insert(0, torch.ones_like(counts[0]))
        layout = ModalityLayout(self.segment_names, torch.stack(counts, dim=1))
        x = layout.pack(parts)
        per_layer = _per_layer(tables, self.base_tables(), len(self.segment_names))
        return self.encoder(x, layout, per_layer, query_hook=query_hook, hook_layer=hook_layer), layout

    def modality_representations(
        self, inputs: Inputs, lengths: Lengths = None, tables: Tables = None
    ) -> dict[str, torch.Tensor]:
        """Mean final state ``(B, dim)`` of each modality's tokens (and of the CLS)."""
        out, layout = self.encode(inputs, lengths, tables)
        return {
            m: _masked_mean(part, layout.lengths[:, s])
            for s, (m, part) in enumerate(zip(layout.names, layout.unpack(out)))
        }

    def forward(self, inputs: Inputs, lengths: Lengths = None, tables: Tables = None,
                query_hook=None, hook_layer: int | None = -1) -> torch.Tensor:
        """Logits ``(B, n_classes)``.

        Parameters
        ----------
        inputs : sequence or mapping of torch.Tensor
            Per-modality ``(B, L_m, F_m)`` tokens, valid tokens first.
        lengths : sequence or mapping of torch.Tensor, optional
            ``(B,)`` valid tokens per modality; default: all.
        tables : torch.Tensor or sequence of torch.Tensor, optional
            One ``(S, S)`` table for all layers or one per layer, over
            :attr:`segment_names`; default :meth:`base_tables`.
        query_hook : callable, optional
            Applied to the queries of layer ``hook_layer`` only (e.g.
            :meth:`brainenc.fusion.rollingq.RollingQ.query_hook` on the CLS query).
        hook_layer : int or None
            Default: the last layer; None: every layer.
        """
        out, layout = self.encode(inputs, lengths, tables, query_hook, hook_layer)
        if self.cls is not None:
            pooled = out[:, 0]
        else:
            valid = (layout.segment_ids(out.shape[1]) >= 0).to(out.dtype)
            pooled = (out * valid[:, :, None]).sum(1) / valid.sum(1, keepdim=True).clamp(min=1)
        return self.head(pooled)


class HierarchicalTransformer(nn.Module):
    """Per-modality encoders, then linear or attention fusion.

    Parameters
    ----------
    in_dims : mapping of str to int
        ``name -> F_m``, in sequence order.
    dim : int
        Model width.
    n_layers : int
        Layers of each modality encoder.
    n_heads : int
        Attention heads.
    n_classes : int
        Number of output logits.
    fusion : {"linear", "attention"}
        ``"linear"``: concatenate the mean-pooled modality vectors, then a
        linear classifier. ``"attention"``: a fusion encoder with a full table
        over the joint sequence, mean-pooled over all tokens, then a linear
        classifier.
    n_fusion_layers : int
        Layers of the fusion encoder (``"attention"`` only).
    max_tokens, ff_mult, dropout, backend
        As in :class:`MultimodalTransformer`.

    Notes
    -----
    The model's layers, in the order ``tables`` indexes them, are the
    ``n_layers`` modality-encoder layers followed by the fusion layers. At a
    modality-encoder layer only the diagonal of the table is used (modality
    ``m``'s encoder attends ``m`` when ``table[m, m]``); off-diagonal entries
    there must be False.
    """

    def __init__(
        self,
        in_dims: Mapping[str, int],
        dim: int = 32,
        n_layers: int = 2,
        n_heads: int = 2,
        n_classes: int = 2,
        fusion: str = "linear",
        n_fusion_layers: int = 1,
        max_tokens: int = 64,
        ff_mult: int = 4,
        dropout: float = 0.0,
        backend: str = "auto",
    ) -> None:
        super().__init__()
        if fusion not in ("linear", "attention"):
            raise ValueError(f"fusion must be 'linear' or 'attention', got {fusion!r}")
        self.names = tuple(in_dims)
        self.in_dims = dict(in_dims)
        self.fusion = fusion
        self.embed = _TokenEmbedding(self.in_dims, dim, max_tokens)
        self.modality_encoders = nn.ModuleDict(
            {m: ModalityEncoder(dim, n_layers, n_heads, ff_mult, dropout, backend) for m in self.names}
        )
        self.n_unimodal_layers = n_layers
        if fusion == "attention":
            self.fusion_encoder = ModalityEncoder(
                dim, n_fusion_layers, n_heads, ff_mult, dropout, backend
            )
            self.head = nn.Linear(dim, n_classes)
        else:
            self.fusion_encoder = None
            self.head = nn.Linear(len(self.names) * dim, n_classes)

    @property
    def segment_names(self) -> tuple[str, ...]:
        """Segments of the joint sequence, in order."""
        return self.names

    @property
    def n_layers(self) -> int:
        """Modality-encoder layers plus fusion layers."""
        fused = self.fusion_encoder.n_layers if self.fusion_encoder is not None else 0
        return self.n_unimodal_layers + fused

    def base_tables(self) -> list[torch.Tensor]:
        """Self-only tables at the modality layers, full tables at the fusion layers."""
        s = len(self.names)
        n_fusion = self.n_layers - self.n_unimodal_layers
        return [self_only_table(s)] * self.n_unimodal_layers + [full_table(s)] * n_fusion

    def forward(self, inputs: Inputs, lengths: Lengths = None, tables: Tables = None,
                query_hook=None, hook_layer: int | None = -1) -> torch.Tensor:
        """Logits ``(B, n_classes)``; arguments as in :meth:`MultimodalTransformer.forward`
        (the hook acts in the fusion encoder)."""
        tokens = _ordered(inputs, self.names, "inputs")
        _check_tokens(tokens, self.names, self.in_dims)
        counts = _resolve_lengths(tokens, lengths, self.names)
        s = len(self.names)
        per_layer = _per_layer(tables, self.base_tables(), s)
        unimodal = per_layer[: self.n_unimodal_layers]
        eye = torch.eye(s, dtype=torch.bool)
        for t in unimodal:
            if (t.cpu() & ~eye).any():
                raise ValueError("modality-encoder layers allow only diagonal (self) blocks")

        layout = ModalityLayout(self.names, torch.stack(counts, dim=1))
        x = layout.pack([self.embed(m, t) for m, t in zip(self.names, tokens)])
        for i, m in enumerate(self.names):
            # each encoder updates only its modality and reads only it, so
            # running them one after another equals running them in parallel
            only = torch.zeros(s, s, dtype=torch.bool)
            only[i, i] = True
            update = only[i]
            x = self.modality_encoders[m](x, layout, [t.cpu() & only for t in unimodal], update)
        if self.fusion_encoder is None:
            pooled = [_masked_mean(p, layout.lengths[:, i]) for i, p in enumerate(layout.unpack(x))]
            return self.head(torch.cat(pooled, dim=1))
        x = self.fusion_encoder(x, layout, per_layer[self.n_unimodal_layers :],
                                query_hook=query_hook, hook_layer=hook_layer)
        valid = (layout.segment_ids(x.shape[1]) >= 0).to(x.dtype)
        pooled = (x * valid[:, :, None]).sum(1) / valid.sum(1, keepdim=True).clamp(min=1)
        return self.head(pooled)

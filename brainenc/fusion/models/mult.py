"""MulT: the Multimodal Transformer (Tsai et al., ACL 2019) on the fusion core.

Text, audio and vision features are projected to width ``d`` by kernel-1
Conv1d layers. Six cross-modal transformers, one per ordered (target, source)
pair and each with its own weights, let the target's tokens query the source's
tokens. Each target's two cross-modal outputs are concatenated along features
(width ``2d``) and run through a self-attention transformer; the last valid
token of each of the three streams is concatenated and fed to a residual MLP
head. MulT is trained with an L1 loss on the regression target (sentiment in
[-3, 3] on MOSI/MOSEI); no trainer lives here.

Each cross-modal transformer is a :class:`~brainenc.fusion.encoder.ModalityEncoder`
over the joint sequence ``[target | source]`` with the table allowing only
target -> source. As in MulT, the source tokens are keys/values only: the
layers never update them, so every layer reads the (layer-normed) projected
source, and only the target positions are outputs.

Simplifications against the reference implementation, stated here once:

* one ``dropout`` rate replaces MulT's separate attention / ReLU / residual /
  embedding / output rates, and attention dropout acts on the attention output
  rather than on the softmax weights;
* sequences may have different lengths per sample: "last time step" is the
  last *valid* token of each sample (zeros for an empty modality), and
  sinusoidal positions count from 0 within each modality. MulT's future mask
  (on by default, ``causal=True``) uses each sample's valid lengths: target
  step ``p`` attends source step ``r`` when ``r <= p + |L_source - L_target|``,
  the self-attention stacks use the plain causal mask; these are the
  :data:`~brainenc.fusion.layout.CAUSAL` blocks of the fusion core.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from ..encoder import ModalityEncoder
from ..layout import causal_table, full_table, pack_modalities, pair_table

__all__ = [
    "MulT",
    "TrimodalModel",
    "MODALITIES",
    "sinusoidal_positions",
    "embed_tokens",
    "last_valid_token",
    "ResidualHead",
    "resolve_lengths",
    "project",
]

MODALITIES = ("text", "audio", "vision")


def sinusoidal_positions(
    n_positions: int, dim: int, device=None, dtype=torch.float32
) -> torch.Tensor:
    """``(n_positions, dim)`` fixed sinusoidal position table (sines then cosines).

    Positions count from 0; an odd ``dim`` gets a zero last column.
    """
    half = dim // 2
    positions = torch.arange(n_positions, device=device, dtype=torch.float32)[:, None]
    step = math.log(10000.0) / max(half - 1, 1)
    freqs = torch.exp(-step * torch.arange(half, device=device, dtype=torch.float32))
    angles = positions * freqs[None, :]
    table = torch.cat([angles.sin(), angles.cos()], dim=1)
    if dim % 2:
        table = torch.cat([table, table.new_zeros(n_positions, 1)], dim=1)
    return table.to(dtype)


def project(conv: nn.Conv1d, x: torch.Tensor) -> torch.Tensor:
    """Apply a kernel-1 Conv1d to batch-first ``(B, L, F)`` tokens; ``L`` may be 0."""
    if x.shape[1] == 0:
        # Conv1d rejects empty sequences (a batch where the modality is missing)
        return x.new_zeros(x.shape[0], 0, conv.out_channels)
    return conv(x.transpose(1, 2)).transpose(1, 2)


def _valid_mask(lengths: torch.Tensor, width: int) -> torch.Tensor:
    return torch.arange(width, device=lengths.device)[None, :] < lengths[:, None]


def embed_tokens(
    x: torch.Tensor, lengths: torch.Tensor, dropout: nn.Module | None = None
) -> torch.Tensor:
    """MulT's transformer input: ``sqrt(dim) * x + positions``, zero past each length.

    Parameters
    ----------
    x : torch.Tensor
        ``(B, L, dim)`` tokens, valid tokens first.
    lengths : torch.Tensor
        ``(B,)`` valid tokens per sample.
    dropout : nn.Module, optional
        Embedding dropout.
    """
    batch, width, dim = x.shape
    out = math.sqrt(dim) * x + sinusoidal_positions(width, dim, x.device, x.dtype)[None]
    if dropout is not None:
        out = dropout(out)
    return out * _valid_mask(lengths, width)[:, :, None].to(out.dtype)


def last_valid_token(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """``(B, D)`` token at position ``lengths - 1`` of each sample; zeros when empty."""
    batch, width, dim = x.shape
    if width == 0:
        return x.new_zeros(batch, dim)
    index = (lengths - 1).clamp(min=0, max=width - 1)
    picked = x.gather(1, index[:, None, None].expand(batch, 1, dim))[:, 0]
    return picked * (lengths > 0)[:, None].to(x.dtype)


def resolve_lengths(
    tensors: dict[str, torch.Tensor], lengths: dict[str, torch.Tensor | None]
) -> dict[str, torch.Tensor]:
    """Per-modality ``(B,)`` int64 lengths; a missing entry means the full width."""
    out = {}
    for name, x in tensors.items():
        n = lengths.get(name)
        if n is None:
            n = torch.full((x.shape[0],), x.shape[1], dtype=torch.int64, device=x.device)
        n = torch.as_tensor(n, device=x.device).to(torch.int64)
        if n.shape != (x.shape[0],):
            raise ValueError(f"{name}_lengths must be (B,), got {tuple(n.shape)}")
        if (n < 0).any() or (n > x.shape[1]).any():
            raise ValueError(f"{name}_lengths must lie in [0, {x.shape[1]}]")
        out[name] = n
    return out


class ResidualHead(nn.Module):
    """MulT's output head: ``out(x + fc2(dropout(relu(fc1(x)))))``.

    Parameters
    ----------
    dim : int
        Input width.
    out_dim : int
        Output width.
    dropout : float
        Dropout before the second layer.
    """

    def __init__(self, dim: int, out_dim: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, dim)
        self.fc2 = nn.Linear(dim, dim)
        self.dropout = nn.Dropout(dropout)
        self.out = nn.Linear(dim, out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, dim) -> (B, out_dim)``."""
        hidden = self.fc2(self.dropout(torch.relu(self.fc1(x))))
        return self.out(x + hidden)


class TrimodalModel(nn.Module):
    """Input and output stages shared by :class:`MulT` and
    :class:`~brainenc.fusion.models.GsiT`.

    Bias-free kernel-1 Conv1d projections of text, audio and vision to width
    ``dim``, MulT's scaled sinusoidal embedding, and a residual head over the
    three pooled ``2 * dim`` streams in the order text, audio, vision.
    Subclasses implement :meth:`fuse`.

    Parameters
    ----------
    text_dim, audio_dim, vision_dim : int
        Input feature sizes.
    dim : int
        Projection width ``d``.
    out_dim : int
        Output size.
    dropout : float
        Embedding and head dropout.
    """

    def __init__(
        self, text_dim: int, audio_dim: int, vision_dim: int, dim: int, out_dim: int,
        dropout: float,
    ) -> None:
        super().__init__()
        in_dims = {"text": text_dim, "audio": audio_dim, "vision": vision_dim}
        self.dim = dim
        self.proj = nn.ModuleDict(
            {m: nn.Conv1d(in_dims[m], dim, kernel_size=1, bias=False) for m in MODALITIES}
        )
        self.embed_dropout = nn.Dropout(dropout)
        self.head = ResidualHead(6 * dim, out_dim, dropout)

    def fuse(
        self, tokens: dict[str, torch.Tensor], lengths: dict[str, torch.Tensor],
        hook: dict | None = None,
    ) -> dict[str, torch.Tensor]:
        """Pooled ``(B, 2 * dim)`` vector per modality from the embedded tokens; ``hook``
        (``query_hook`` and ``hook_layer``) goes to every encoder."""
        raise NotImplementedError

    def forward(
        self,
        text: torch.Tensor,
        audio: torch.Tensor,
        vision: torch.Tensor,
        text_lengths: torch.Tensor | None = None,
        audio_lengths: torch.Tensor | None = None,
        vision_lengths: torch.Tensor | None = None,
        query_hook=None,
        hook_layer: int | None = -1,
    ) -> torch.Tensor:
        """Predict from batch-first features.

        Parameters
        ----------
        text, audio, vision : torch.Tensor
            ``(B, L_m, F_m)`` features, valid tokens first.
        text_lengths, audio_lengths, vision_lengths : torch.Tensor, optional
            ``(B,)`` valid tokens per sample (0 for a missing modality);
            default: the full width.
        query_hook : callable, optional
            A query hook (:class:`~brainenc.fusion.attention.ModalityAttention`)
            applied in layer ``hook_layer`` of every encoder of the model.
        hook_layer : int or None
            See :meth:`brainenc.fusion.encoder.ModalityEncoder.forward`.

        Returns
        -------
        torch.Tensor
            ``(B, out_dim)``.
        """
        raw = {"text": text, "audio": audio, "vision": vision}
        lengths = resolve_lengths(
            raw, {"text": text_lengths, "audio": audio_lengths, "vision": vision_lengths}
        )
        tokens = {
            m: embed_tokens(project(self.proj[m], raw[m]), lengths[m], self.embed_dropout)
            for m in MODALITIES
        }
        hook = {"query_hook": query_hook, "hook_layer": hook_layer} if query_hook is not None else {}
        pooled = self.fuse(tokens, lengths, hook)
        return self.head(torch.cat([pooled[m] for m in MODALITIES], dim=1))


class MulT(TrimodalModel):
    """Multimodal Transformer with crossmodal attention for all six pairs.

    Parameters
    ----------
    text_dim, audio_dim, vision_dim : int
        Input feature sizes (MOSI: 768, 5, 20).
    dim : int
        Width ``d`` of the cross-modal transformers (MulT: 30); the
        self-attention transformers have width ``2d``.
    n_layers : int
        Layers per transformer (MulT: 5).
    n_heads : int
        Attention heads (MulT: 5, i.e. head size 6 at ``d = 30``; the
        ``"dense"`` and ``"block"`` backends accept any head size).
    out_dim : int
        Output size (1 for sentiment regression).
    ff_mult : int
        Feed-forward width multiple.
    dropout : float
        Dropout rate used throughout (see module notes).
    backend : {"auto", "dense", "block", "triton"}
        Attention backend.
    causal : bool
        MulT's future mask (its default): each target step attends source
        steps up to its own step plus the length difference, and each
        self-attention step the steps up to itself. False attends whole
        sequences.

    Notes
    -----
    Train with :func:`torch.nn.functional.l1_loss`, as MulT does.
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
        causal: bool = True,
    ) -> None:
        super().__init__(text_dim, audio_dim, vision_dim, dim, out_dim, dropout)
        self.causal = bool(causal)
        encoder = dict(
            n_layers=n_layers, n_heads=n_heads, ff_mult=ff_mult, dropout=dropout, backend=backend
        )
        self.cross = nn.ModuleDict(
            {
                f"{target}_from_{source}": ModalityEncoder(dim, **encoder)
                for target in MODALITIES
                for source in MODALITIES
                if source != target
            }
        )
        self.self_attention = nn.ModuleDict(
            {target: ModalityEncoder(2 * dim, **encoder) for target in MODALITIES}
        )
        # target -> source only; the source segment is frozen (keys/values)
        cross_table, self_table = pair_table(2, [(0, 1)]), full_table(1)
        if self.causal:
            cross_table, self_table = causal_table(cross_table), causal_table(self_table)
        self.register_buffer("cross_table", cross_table, persistent=False)
        self.register_buffer("self_table", self_table, persistent=False)
        self.register_buffer("cross_update", torch.tensor([True, False]), persistent=False)

    def cross_modal(
        self,
        target: str,
        source: str,
        tokens: dict[str, torch.Tensor],
        lengths: dict[str, torch.Tensor],
        hook: dict | None = None,
    ) -> torch.Tensor:
        """Target tokens after the (target, source) cross-modal transformer
        (``hook``: the ``query_hook`` and ``hook_layer`` of :meth:`forward`).

        Returns
        -------
        torch.Tensor
            ``(B, max target length, d)``, zeros past each sample's length.
        """
        x, layout = pack_modalities(
            [tokens[target], tokens[source]],
            [lengths[target], lengths[source]],
            names=(target, source),
        )
        encoder = self.cross[f"{target}_from_{source}"]
        out = encoder(x, layout, self.cross_table, update=self.cross_update, **(hook or {}))
        return layout.unpack(out)[0]

    def fuse(
        self, tokens: dict[str, torch.Tensor], lengths: dict[str, torch.Tensor],
        hook: dict | None = None,
    ) -> dict[str, torch.Tensor]:
        """Each target's two cross-modal outputs, concatenated, through its
        self-attention stack; the last valid token of each stream."""
        pooled = {}
        for target in MODALITIES:
            pair = [self.cross_modal(target, s, tokens, lengths, hook)
                    for s in MODALITIES if s != target]
            joint = embed_tokens(torch.cat(pair, dim=2), lengths[target], self.embed_dropout)
            x, layout = pack_modalities([joint], [lengths[target]], names=(target,))
            out = self.self_attention[target](x, layout, self.self_table, **(hook or {}))
            pooled[target] = last_valid_token(out, lengths[target])
        return pooled

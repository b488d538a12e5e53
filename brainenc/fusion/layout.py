"""Joint-sequence layout of several modalities and block tables between them.

A batch holds ``B`` samples; the tokens of each sample are packed into one
sequence padded to ``N`` positions. Segment ``s`` (modality ``s``, in order)
of sample ``b`` occupies positions ``[offsets[b, s], offsets[b, s + 1])``;
positions at or past ``offsets[b, S]`` are padding. Segments may be empty.

A block table is a tensor ``(S, S)`` saying how a query of segment ``i`` may
attend the keys of segment ``j``. A bool table allows (True) or blocks (False)
whole blocks. An integer table holds one code per block: :data:`BLOCKED` (0),
:data:`ATTEND` (1, every key of the block) or :data:`CAUSAL` (2, MulT's
future mask inside the block: the query at position ``p`` of its segment may
attend the key at position ``r`` of its segment when
``r <= p + |L_key - L_query|``, with ``L`` the two segments' lengths in that
sample; for a segment attending itself this is the usual causal mask
``r <= p``). Any non-zero code allows the block, so bool and integer tables
mean the same where no block is causal.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Sequence

import torch

__all__ = [
    "BLOCKED",
    "ATTEND",
    "CAUSAL",
    "ModalityLayout",
    "pack_modalities",
    "full_table",
    "self_only_table",
    "pair_table",
    "gsit_forward_table",
    "gsit_backward_table",
    "silence",
    "causal_table",
    "has_causal",
    "table_codes",
    "segment_positions",
    "cross_modal_blocks",
    "unimodal_blocks",
    "dual_branch_layout",
    "branch_table",
]

Block = tuple[int, int]

BLOCKED = 0
"""Table code: the query segment may not attend the key segment."""
ATTEND = 1
"""Table code: the query segment attends every key of the key segment."""
CAUSAL = 2
"""Table code: MulT's future mask inside the block (see the module notes)."""


@dataclass(frozen=True)
class ModalityLayout:
    """Per-sample segment lengths of a joint multimodal token sequence.

    Parameters
    ----------
    names : tuple of str
        Segment (modality) names, in sequence order.
    lengths : torch.Tensor
        ``(B, S)`` int64 number of tokens of each segment in each sample.
    """

    names: tuple[str, ...]
    lengths: torch.Tensor

    def __post_init__(self) -> None:
        lengths = torch.as_tensor(self.lengths)
        if lengths.dim() != 2:
            raise ValueError(f"lengths must be (B, S), got shape {tuple(lengths.shape)}")
        if lengths.shape[1] != len(self.names):
            raise ValueError(
                f"lengths has {lengths.shape[1]} segments but {len(self.names)} names were given"
            )
        if lengths.is_floating_point() or lengths.dtype == torch.bool:
            raise TypeError("lengths must be an integer tensor")
        if (lengths < 0).any():
            raise ValueError("segment lengths must be non-negative")
        if len(set(self.names)) != len(self.names):
            raise ValueError(f"segment names must be unique, got {self.names}")
        # frozen dataclass: normalise fields through object.__setattr__
        object.__setattr__(self, "names", tuple(self.names))
        object.__setattr__(self, "lengths", lengths.to(torch.int64))

    @property
    def n_segments(self) -> int:
        """Number of segments ``S``."""
        return len(self.names)

    @property
    def batch_size(self) -> int:
        """Number of samples ``B``."""
        return int(self.lengths.shape[0])

    @property
    def device(self) -> torch.device:
        """Device of the length tensor."""
        return self.lengths.device

    @property
    def offsets(self) -> torch.Tensor:
        """``(B, S + 1)`` start of each segment; the last column is the total length."""
        zero = torch.zeros_like(self.lengths[:, :1])
        return torch.cat([zero, self.lengths.cumsum(dim=1)], dim=1)

    @property
    def total_lengths(self) -> torch.Tensor:
        """``(B,)`` number of non-padding tokens of each sample."""
        return self.lengths.sum(dim=1)

    @property
    def max_length(self) -> int:
        """Longest joint sequence in the batch (the smallest valid ``N``)."""
        if self.batch_size == 0:
            return 0
        return int(self.total_lengths.max())

    def index(self, name: str) -> int:
        """Position of segment ``name`` in the sequence order."""
        try:
            return self.names.index(name)
        except ValueError:
            raise KeyError(f"no segment named {name!r}; segments are {self.names}") from None

    def segment_ids(self, n_tokens: int | None = None) -> torch.Tensor:
        """Segment of every position of the joint sequence.

        Parameters
        ----------
        n_tokens : int, optional
            Padded sequence length ``N``; defaults to :attr:`max_length`.

        Returns
        -------
        torch.Tensor
            ``(B, N)`` int64, the segment index of each token and -1 for padding.
        """
        n = self.max_length if n_tokens is None else int(n_tokens)
        if n < self.max_length:
            raise ValueError(f"n_tokens={n} is shorter than the longest sample ({self.max_length})")
        positions = torch.arange(n, device=self.device)
        ends = self.offsets[:, 1:]
        # position p lies in segment s when exactly s segment ends are <= p
        # (empty segments before it end at or before p, empty ones after it end past p)
        ids = (ends[:, None, :] <= positions[None, :, None]).sum(dim=2)
        return torch.where(positions[None, :] < self.total_lengths[:, None], ids, -1)

    def pack(self, tensors: Sequence[torch.Tensor], n_tokens: int | None = None) -> torch.Tensor:
        """Pack per-modality token tensors into the joint sequence.

        Parameters
        ----------
        tensors : sequence of torch.Tensor
            One ``(B, L_s, D)`` tensor per segment, valid tokens first
            (``L_s >= lengths[:, s].max()``; positions past a sample's length
            are ignored).
        n_tokens : int, optional
            Padded joint length ``N``; defaults to :attr:`max_length`.

        Returns
        -------
        torch.Tensor
            ``(B, N, D)`` joint sequence with zeros at padding positions.
        """
        if len(tensors) != self.n_segments:
            raise ValueError(f"expected {self.n_segments} tensors, got {len(tensors)}")
        batch, dim = self.batch_size, None
        for s, t in enumerate(tensors):
            if t.dim() != 3 or t.shape[0] != batch:
                raise ValueError(f"tensor {s} must be (B={batch}, L, D), got {tuple(t.shape)}")
            if dim is not None and t.shape[2] != dim:
                raise ValueError("all tensors must share the feature size D")
            dim = t.shape[2]
            if batch and t.shape[1] < int(self.lengths[:, s].max()):
                raise ValueError(
                    f"tensor {s} ({self.names[s]}) holds {t.shape[1]} tokens, "
                    f"fewer than its longest segment ({int(self.lengths[:, s].max())})"
                )
        ids = self.segment_ids(n_tokens)
        n = ids.shape[1]
        # gather from the concatenation of the padded per-modality tensors
        source = torch.cat(list(tensors), dim=1)
        widths = torch.tensor([t.shape[1] for t in tensors], device=self.device)
        bases = torch.cat([widths.new_zeros(1), widths.cumsum(0)[:-1]])
        valid = ids >= 0
        seg = ids.clamp(min=0)
        within = torch.arange(n, device=self.device)[None, :] - self.offsets.gather(1, seg)
        index = torch.where(valid, bases[seg] + within, 0)
        out = source.gather(1, index[:, :, None].expand(-1, -1, source.shape[2]))
        return out * valid[:, :, None].to(out.dtype)

    def unpack(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Split a joint sequence back into per-modality tensors.

        Parameters
        ----------
        x : torch.Tensor
            ``(B, N, D)`` joint sequence.

        Returns
        -------
        list of torch.Tensor
            One ``(B, max_b lengths[b, s], D)`` tensor per segment, valid tokens
            first and zeros after each sample's length.
        """
        if x.dim() != 3 or x.shape[0] != self.batch_size:
            raise ValueError(f"x must be (B={self.batch_size}, N, D), got {tuple(x.shape)}")
        if x.shape[1] < self.max_length:
            raise ValueError(f"x holds {x.shape[1]} positions, fewer than {self.max_length}")
        offsets = self.offsets
        out = []
        for s in range(self.n_segments):
            width = int(self.lengths[:, s].max()) if self.batch_size else 0
            t = torch.arange(width, device=self.device)[None, :]
            valid = t < self.lengths[:, s : s + 1]
            index = torch.where(valid, offsets[:, s : s + 1] + t, 0)
            part = x.gather(1, index[:, :, None].expand(-1, -1, x.shape[2]))
            out.append(part * valid[:, :, None].to(x.dtype))
        return out


def pack_modalities(
    tensors: Sequence[torch.Tensor],
    lengths: torch.Tensor | Sequence[torch.Tensor],
    names: Sequence[str] | None = None,
    n_tokens: int | None = None,
) -> tuple[torch.Tensor, ModalityLayout]:
    """Build a layout from per-modality lengths and pack the tensors with it.

    Parameters
    ----------
    tensors : sequence of torch.Tensor
        One ``(B, L_s, D)`` tensor per modality, valid tokens first.
    lengths : torch.Tensor or sequence of torch.Tensor
        ``(B, S)`` lengths, or one ``(B,)`` length tensor per modality.
    names : sequence of str, optional
        Segment names; defaults to ``"0", "1", ...``.
    n_tokens : int, optional
        Padded joint length.

    Returns
    -------
    x : torch.Tensor
        ``(B, N, D)`` joint sequence.
    layout : ModalityLayout
        The layout describing ``x``.
    """
    if not isinstance(lengths, torch.Tensor):
        lengths = torch.stack([torch.as_tensor(n) for n in lengths], dim=1)
    if names is None:
        names = tuple(str(s) for s in range(len(tensors)))
    layout = ModalityLayout(tuple(names), lengths.to(tensors[0].device))
    return layout.pack(tensors, n_tokens), layout


# ----------------------------------------------------------------------------- block tables


def _check_index(s: int, n_segments: int) -> None:
    if not 0 <= s < n_segments:
        raise IndexError(f"segment index {s} outside [0, {n_segments})")


def full_table(n_segments: int) -> torch.Tensor:
    """Every segment attends every segment: ``(S, S)`` all True."""
    return torch.ones(n_segments, n_segments, dtype=torch.bool)


def self_only_table(n_segments: int) -> torch.Tensor:
    """Block-diagonal table: each segment attends only itself."""
    return torch.eye(n_segments, dtype=torch.bool)


def pair_table(n_segments: int, pairs: Iterable[Block]) -> torch.Tensor:
    """Table allowing exactly the given ``(query, key)`` segment pairs.

    One pair per MulT cross-modal transformer: ``(target, source)`` lets the
    target modality's queries attend the source modality's keys.
    """
    table = torch.zeros(n_segments, n_segments, dtype=torch.bool)
    for i, j in pairs:
        _check_index(i, n_segments)
        _check_index(j, n_segments)
        table[i, j] = True
    return table


_GSIT_CYCLE = ("text", "vision", "audio")


def _gsit_pairs(names: Sequence[str], step: int) -> list[Block]:
    names = tuple(names)
    if len(set(names)) != len(names):
        raise ValueError(f"segment names must be unique, got {names}")
    # GsiT's interlacing follows the text -> vision -> audio cycle whatever the
    # sequence order; other modality sets cycle in their given order
    cycle = _GSIT_CYCLE if set(names) == set(_GSIT_CYCLE) else names
    n = len(cycle)
    if n < 2:
        raise ValueError("interlaced tables need at least two modalities")
    return [(names.index(cycle[c]), names.index(cycle[(c + step) % n])) for c in range(n)]


def gsit_forward_table(names: Sequence[str] = _GSIT_CYCLE) -> torch.Tensor:
    """GsiT forward interlaced table (query -> key): T->V, V->A, A->T.

    Parameters
    ----------
    names : sequence of str
        Modality names in sequence order. For {text, vision, audio} the pairs
        follow the text -> vision -> audio cycle in any order of the segments;
        for other names each modality attends the next one in ``names``
        (cyclically).

    Returns
    -------
    torch.Tensor
        ``(S, S)`` bool table; same-modality blocks are False.
    """
    return pair_table(len(names), _gsit_pairs(names, step=1))


def gsit_backward_table(names: Sequence[str] = _GSIT_CYCLE) -> torch.Tensor:
    """GsiT backward interlaced table (query -> key): T->A, V->T, A->V.

    The reverse cycle of :func:`gsit_forward_table`; for three modalities the
    two tables together hold the six MulT cross-modal pairs.
    """
    return pair_table(len(names), _gsit_pairs(names, step=-1))


def cross_modal_blocks(n_segments: int, among: Sequence[int] | None = None) -> list[Block]:
    """All ``(i, j)`` blocks with ``i != j``, optionally only among given segments."""
    segments = range(n_segments) if among is None else list(among)
    for s in segments:
        _check_index(s, n_segments)
    return [(i, j) for i in segments for j in segments if i != j]


def unimodal_blocks(n_segments: int, among: Sequence[int] | None = None) -> list[Block]:
    """All diagonal blocks ``(i, i)``, optionally only for given segments."""
    segments = range(n_segments) if among is None else list(among)
    for s in segments:
        _check_index(s, n_segments)
    return [(i, i) for i in segments]


def silence(table: torch.Tensor, blocks: Iterable[Block]) -> torch.Tensor:
    """Copy of ``table`` with the given ``(query, key)`` blocks disallowed.

    Used for isolation analyses: silencing all cross-modal blocks leaves each
    modality computing from its own tokens only.
    """
    out = table.clone()
    n = out.shape[0]
    for i, j in blocks:
        _check_index(i, n)
        _check_index(j, n)
        out[i, j] = BLOCKED
    return out


def causal_table(table: torch.Tensor, blocks: Iterable[Block] | None = None) -> torch.Tensor:
    """Integer copy of ``table`` with allowed blocks made :data:`CAUSAL`.

    Parameters
    ----------
    table : torch.Tensor
        ``(S, S)`` bool or integer block table.
    blocks : iterable of (int, int), optional
        The ``(query, key)`` blocks to make causal; default: every allowed
        block. Blocked entries stay blocked.

    Returns
    -------
    torch.Tensor
        ``(S, S)`` int8 table of :data:`BLOCKED` / :data:`ATTEND` / :data:`CAUSAL`.
    """
    out = table_codes(table).clone()
    n = out.shape[0]
    if blocks is None:
        chosen = out != BLOCKED
    else:
        chosen = torch.zeros(out.shape, dtype=torch.bool, device=out.device)
        for i, j in blocks:
            _check_index(i, n)
            _check_index(j, n)
            chosen[i, j] = True
    out[chosen & (out != BLOCKED)] = CAUSAL
    return out


def table_codes(table: torch.Tensor) -> torch.Tensor:
    """``(S, S)`` int8 codes of a bool or integer block table.

    Raises
    ------
    ValueError
        If the table is not square or holds a code other than
        :data:`BLOCKED`, :data:`ATTEND` and :data:`CAUSAL`.
    """
    if table.dim() != 2 or table.shape[0] != table.shape[1]:
        raise ValueError(f"table must be (S, S), got {tuple(table.shape)}")
    if table.dtype == torch.bool:
        return table.to(torch.int8)
    if table.is_floating_point() or table.is_complex():
        raise ValueError(f"table must be bool or integer, got {table.dtype}")
    bad = (table < BLOCKED) | (table > CAUSAL)
    if bool(bad.any()):
        raise ValueError(
            f"table codes must be {BLOCKED} (blocked), {ATTEND} (attend) or {CAUSAL} (causal), "
            f"got {sorted(set(table[bad].tolist()))}"
        )
    return table.to(torch.int8)


def has_causal(table: torch.Tensor) -> bool:
    """Whether any block of ``table`` is :data:`CAUSAL`."""
    return table.dtype != torch.bool and bool((table == CAUSAL).any())


def segment_positions(
    segment_ids: torch.Tensor, n_segments: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Each token's position inside its segment and that segment's length.

    Parameters
    ----------
    segment_ids : torch.Tensor
        ``(B, N)`` segment index per token, -1 for padding; segments
        contiguous and in order within each sample.
    n_segments : int
        Number of segments ``S``.

    Returns
    -------
    position : torch.Tensor
        ``(B, N)`` int64 position counted from the segment's first token
        (0 for padding).
    length : torch.Tensor
        ``(B, N)`` int64 length of the token's segment in its sample (0 for
        padding).
    """
    ids = segment_ids.long()
    valid = ids >= 0
    seg = ids.clamp(min=0)
    hot = torch.nn.functional.one_hot(seg, n_segments) * valid[..., None]
    lengths = hot.sum(dim=1)  # (B, S)
    starts = lengths.cumsum(dim=1) - lengths
    index = torch.arange(ids.shape[1], device=ids.device)[None, :]
    position = torch.where(valid, index - starts.gather(1, seg), 0)
    length = torch.where(valid, lengths.gather(1, seg), 0)
    return position, length


# ----------------------------------------------------------------------------- dual branch

DUAL_BRANCH_NAMES = ("cls_a", "half_a", "cls_b", "half_b")


def dual_branch_layout(
    n_tokens: int | torch.Tensor,
    batch_size: int | None = None,
    n_cls: int = 1,
    names: Sequence[str] = DUAL_BRANCH_NAMES,
) -> ModalityLayout:
    """Layout ``[cls_a | half_a | cls_b | half_b]`` splitting tokens into two halves.

    Parameters
    ----------
    n_tokens : int or torch.Tensor
        Number of (common) tokens to split, one int for the whole batch or a
        ``(B,)`` tensor per sample. The first half gets the extra token when
        the count is odd.
    batch_size : int, optional
        Required when ``n_tokens`` is an int.
    n_cls : int
        CLS tokens per branch.
    names : sequence of str
        Names of the four segments.

    Returns
    -------
    ModalityLayout
        Four segments; pair it with :func:`branch_table`.
    """
    if len(names) != 4:
        raise ValueError("a dual-branch layout has four segments")
    if isinstance(n_tokens, torch.Tensor):
        counts = n_tokens.to(torch.int64).reshape(-1)
    else:
        if batch_size is None:
            raise ValueError("batch_size is required when n_tokens is an int")
        counts = torch.full((batch_size,), int(n_tokens), dtype=torch.int64)
    first = (counts + 1) // 2
    cls = torch.full_like(counts, n_cls)
    return ModalityLayout(tuple(names), torch.stack([cls, first, cls, counts - first], dim=1))


def branch_table(n_branches: int = 2, segments_per_branch: int = 2) -> torch.Tensor:
    """Block-diagonal table over branches: attention only within a branch.

    With the defaults it matches :func:`dual_branch_layout`: ``{cls_a, half_a}``
    attend each other, ``{cls_b, half_b}`` attend each other, nothing crosses.
    """
    block = torch.ones(segments_per_branch, segments_per_branch, dtype=torch.bool)
    return torch.block_diag(*([block] * n_branches))

"""Paired video and text features for retrieval, in one ``.npz`` file.

Format (keys of the ``.npz``; ``<split>`` is ``train``, ``valid`` and ``test``)::

    <split>/video            (N, L_v, D_v) float   video tokens (e.g. frame features), valid first
    <split>/text             (N, L_t, D_t) float   text tokens (e.g. word features), valid first
    <split>/video_lengths    (N,) int              optional: valid video tokens (default L_v)
    <split>/text_lengths     (N,) int              optional: valid text tokens (default L_t)

Row ``i`` of ``video`` and row ``i`` of ``text`` describe the same clip: the
pairs are the ground truth of retrieval. Every split needs both modalities,
the same number of rows in each, lengths in ``[1, L]``, and finite values;
``D_v`` and ``D_t`` must agree across splits.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from brainenc.errors import BrainencInputError
from brainenc.io.atomic import atomic_path

SPLITS = ("train", "valid", "test")
MODALITIES = ("video", "text")


@dataclass
class PairedSplit:
    """One split as tensors."""

    video: torch.Tensor
    text: torch.Tensor
    video_lengths: torch.Tensor
    text_lengths: torch.Tensor

    def __len__(self) -> int:
        return int(self.video.shape[0])

    def inputs(self, rows=slice(None), modality: str | None = None):
        """``(inputs, lengths)`` of the dual-branch model for ``rows``: both modalities, or
        only ``modality`` (the other absent)."""
        inputs = {m: getattr(self, m)[rows] if modality in (None, m) else None for m in MODALITIES}
        lengths = {m: getattr(self, f"{m}_lengths")[rows] if modality in (None, m) else None
                   for m in MODALITIES}
        return inputs, lengths


@dataclass
class PairedFeatures:
    """The three splits of a paired-feature file."""

    path: Path
    splits: dict[str, PairedSplit]

    @property
    def dims(self) -> dict[str, int]:
        return {m: int(getattr(self.splits["train"], m).shape[2]) for m in MODALITIES}

    def split(self, name: str) -> PairedSplit:
        return self.splits[name]


def _check_split(data, path: Path, split: str, dims: dict[str, int]) -> PairedSplit:
    arrays = {}
    for m in MODALITIES:
        key = f"{split}/{m}"
        if key not in data:
            raise BrainencInputError(path, f"no {key!r} array: a paired-feature file needs "
                                           f"{[f'{s}/{n}' for s in SPLITS for n in MODALITIES]}")
        value = np.asarray(data[key])
        if value.ndim != 3:
            raise BrainencInputError(path, f"{key} must be (N, tokens, features), got {value.shape}")
        if not np.isfinite(value).all():
            raise BrainencInputError(path, f"{key} holds NaN or infinite values")
        if dims.setdefault(m, value.shape[2]) != value.shape[2]:
            raise BrainencInputError(path, f"{key} has {value.shape[2]} features but train/{m} "
                                           f"has {dims[m]}")
        arrays[m] = value
    if len(arrays["video"]) != len(arrays["text"]):
        raise BrainencInputError(path, f"{split}/video has {len(arrays['video'])} rows but "
                                       f"{split}/text has {len(arrays['text'])}; row i of each is a pair")
    lengths = {}
    for m in MODALITIES:
        key, width = f"{split}/{m}_lengths", arrays[m].shape[1]
        values = np.asarray(data[key]) if key in data else np.full(len(arrays[m]), width)
        if values.shape != (len(arrays[m]),) or values.min(initial=1) < 1 or values.max(initial=1) > width:
            raise BrainencInputError(path, f"{key} must hold one length in [1, {width}] per row")
        lengths[m] = torch.as_tensor(values, dtype=torch.int64)
    return PairedSplit(torch.as_tensor(arrays["video"], dtype=torch.float32),
                       torch.as_tensor(arrays["text"], dtype=torch.float32),
                       lengths["video"], lengths["text"])


def load_pairs(path: str | Path) -> PairedFeatures:
    """Read and check a paired-feature file (see the module notes)."""
    path = Path(path)
    if not path.is_file():
        raise BrainencInputError(path, "paired-feature file not found")
    try:
        with np.load(path, allow_pickle=False) as data:
            dims: dict[str, int] = {}
            splits = {s: _check_split(data, path, s, dims) for s in SPLITS}
    except (OSError, ValueError) as error:
        if isinstance(error, BrainencInputError):
            raise
        raise BrainencInputError(path, f"cannot read as an .npz of paired features ({error})") from None
    return PairedFeatures(path, splits)


def write_pairs(path: str | Path, arrays: dict[str, np.ndarray]) -> Path:
    """Write ``{"<split>/<key>": array}`` as a paired-feature file (through a temporary name)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez_compressed(f, **arrays)
    return path


def synthetic_pairs(n: tuple[int, int, int] = (256, 64, 64), dims: tuple[int, int] = (12, 10),
                    tokens: tuple[int, int] = (6, 5), latent: int = 8, noise: float = 1.0,
                    seed: int = 0) -> dict[str, np.ndarray]:
    """Splits whose video and text rows share a latent ``z`` (each token ``z @ M_m`` plus noise),
    so that a pair can be retrieved; random lengths."""
    rng = np.random.default_rng(seed)
    mix = {m: rng.standard_normal((latent, d)) for m, d in zip(MODALITIES, dims)}
    arrays = {}
    for split, count in zip(SPLITS, n):
        z = rng.standard_normal((count, latent))
        for m, width in zip(MODALITIES, tokens):
            values = z[:, None, :] @ mix[m] + noise * rng.standard_normal((count, width, mix[m].shape[1]))
            lengths = rng.integers(max(1, width // 2), width + 1, count)
            values[np.arange(width)[None, :] >= lengths[:, None]] = 0.0
            arrays[f"{split}/{m}"] = values.astype(np.float32)
            arrays[f"{split}/{m}_lengths"] = lengths
    return arrays

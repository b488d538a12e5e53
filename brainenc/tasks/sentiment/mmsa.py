"""MMSA feature files of MOSI, MOSEI and CH-SIMS: reading, writing, synthetic files.

MMSA (https://github.com/thuiar/MMSA) distributes the features of the three
multimodal sentiment datasets as pickled dicts, one file per alignment:
``MOSI/Processed/aligned_50.pkl``, ``MOSI/Processed/unaligned_50.pkl``, the
same two for MOSEI, and ``SIMS/Processed/unaligned_39.pkl``. Each file is::

    {"train": {...}, "valid": {...}, "test": {...}}

and every split a dict with the keys (N samples, padded lengths ``L``)

* ``text``: ``(N, L_t, D_t)`` float text features. In MMSA's own files these
  are **BERT** features, ``D_t = 768`` (its README: "the pre-extracted text
  features are from BERT, different from the original glove features in the
  CMU-Multimodal-SDK"); a file built from the SDK's GloVe vectors has
  ``D_t = 300``. :func:`load_mmsa` takes whatever width the file has.
* ``text_bert``: ``(N, 3, L_t)`` BERT inputs, rows ``input_ids``,
  ``attention_mask``, ``token_type_ids`` (the order MMSA's
  ``BertTextEncoder`` reads); the mask gives each sample's valid tokens.
* ``audio``: ``(N, L_a, D_a)``, ``vision``: ``(N, L_v, D_v)``, zero-padded.
* ``audio_lengths``, ``vision_lengths``: ``(N,)`` valid steps, in the
  unaligned files (MMSA reads them only when the data are not aligned).
* ``regression_labels``: ``(N,)`` sentiment, in ``[-3, 3]`` for MOSI and
  MOSEI, ``[-1, 1]`` for CH-SIMS; CH-SIMS adds the unimodal labels
  ``regression_labels_T``, ``regression_labels_A``, ``regression_labels_V``.
* optional: ``id`` (``"video$_$clip"``), ``raw_text``, ``annotations``,
  ``classification_labels`` (0 negative, 1 neutral, 2 positive; deprecated by
  MMSA).

Feature sizes ``(D_t, D_a, D_v)`` and padded lengths ``(L_t, L_a, L_v)`` as
MMSA's ``config_regression.json`` lists them:

* MOSI: feature sizes 768, 5, 20; padded lengths 50, 50, 50 (aligned) or
  50, 500, 375 (unaligned); 1284 / 229 / 686 train / valid / test samples.
* MOSEI: 768, 74, 35; lengths as MOSI; 16326 / 1871 / 4659.
* CH-SIMS: 768, 33, 709; lengths 39, 400, 55; 1368 / 456 / 457.

MOSI's audio is MMSA's 5-feature COVAREP subset, MOSEI's the 74 COVAREP
features; vision is FACET (20 MOSI, 35 MOSEI); CH-SIMS has 33 LibROSA audio
features and 709 OpenFace features. The loader reads sizes and lengths from
the file and records them (:class:`FeatureDims`) rather than assuming them.

Cleaning follows MMSA's ``data_loader.py``: ``-inf`` entries of ``audio``
(COVAREP writes them) are set to 0; here with a warning that counts them. Any
other NaN or infinite feature, and labels outside the dataset's range, are
errors. MMSA itself never masks padding (it feeds the padded sequences and
takes the last position); the lengths recorded here let the models of
:mod:`brainenc.fusion.models` skip it.
"""
from __future__ import annotations

import pickle
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from ...errors import BrainencInputError, warn_input
from ...io.atomic import atomic_path

__all__ = [
    "DATASETS",
    "LABEL_BOUND",
    "MMSA_DIMS",
    "SPLITS",
    "FeatureDims",
    "MMSABatch",
    "MMSADataset",
    "MMSASplit",
    "load_mmsa",
    "synthetic_mmsa",
    "write_mmsa",
]

DATASETS = ("mosi", "mosei", "sims")
SPLITS = ("train", "valid", "test")
LABEL_BOUND = {"mosi": 3.0, "mosei": 3.0, "sims": 1.0}
"""Labels lie in ``[-bound, bound]``."""
MODALITY_LABEL_KEYS = {"text": "regression_labels_T", "audio": "regression_labels_A",
                       "vision": "regression_labels_V"}
TextKind = Literal["features", "tokens"]
_OPTIONAL_LIST_KEYS = ("id", "raw_text", "annotations", "classification_labels")


@dataclass(frozen=True)
class FeatureDims:
    """Feature sizes of the three modalities.

    Attributes
    ----------
    text : int or None
        Text feature size; None when the text is BERT token ids (its size is
        the encoder's, 768 for BERT-base).
    audio, vision : int
        Audio and vision feature sizes.
    """

    text: int | None
    audio: int
    vision: int


MMSA_DIMS = {
    "mosi": FeatureDims(768, 5, 20),
    "mosei": FeatureDims(768, 74, 35),
    "sims": FeatureDims(768, 33, 709),
}
"""Feature sizes of MMSA's own files (``feature_dims`` of its config)."""


def _to(x: torch.Tensor | None, device: torch.device | str) -> torch.Tensor | None:
    return None if x is None else x.to(device)


@dataclass(frozen=True)
class MMSABatch:
    """A batch of samples, cut to the longest valid sequence of each modality.

    Attributes
    ----------
    index : torch.Tensor
        ``(B,)`` int64 sample indices in the split.
    text : torch.Tensor
        ``(B, L_t, D_t)`` float32 features, or ``(B, 3, L_t)`` int64 BERT
        inputs.
    audio, vision : torch.Tensor
        ``(B, L_m, D_m)`` float32.
    text_lengths, audio_lengths, vision_lengths : torch.Tensor
        ``(B,)`` int64 valid steps.
    labels : torch.Tensor
        ``(B,)`` float32 sentiment.
    labels_text, labels_audio, labels_vision : torch.Tensor or None
        ``(B,)`` CH-SIMS unimodal labels.
    """

    index: torch.Tensor
    text: torch.Tensor
    audio: torch.Tensor
    vision: torch.Tensor
    text_lengths: torch.Tensor
    audio_lengths: torch.Tensor
    vision_lengths: torch.Tensor
    labels: torch.Tensor
    labels_text: torch.Tensor | None = None
    labels_audio: torch.Tensor | None = None
    labels_vision: torch.Tensor | None = None

    def __len__(self) -> int:
        return int(self.index.shape[0])

    def model_inputs(self) -> dict[str, torch.Tensor]:
        """Keyword arguments of :class:`~brainenc.fusion.models.MulT` and
        :class:`~brainenc.fusion.models.GsiT` (text features only)."""
        return {
            "text": self.text, "audio": self.audio, "vision": self.vision,
            "text_lengths": self.text_lengths, "audio_lengths": self.audio_lengths,
            "vision_lengths": self.vision_lengths,
        }

    def to(self, device: torch.device | str) -> MMSABatch:
        """Copy of the batch with every tensor on ``device``."""
        return MMSABatch(**{f.name: _to(getattr(self, f.name), device) for f in fields(self)})


@dataclass(frozen=True)
class MMSASplit:
    """One split of an MMSA file as tensors.

    Attributes
    ----------
    name : str
        ``"train"``, ``"valid"`` or ``"test"``.
    text : torch.Tensor
        ``(N, L_t, D_t)`` float32 features, or ``(N, 3, L_t)`` int64 BERT
        inputs (ids, attention mask, token types).
    audio, vision : torch.Tensor
        ``(N, L_m, D_m)`` float32, ``-inf`` audio entries set to 0.
    text_lengths, audio_lengths, vision_lengths : torch.Tensor
        ``(N,)`` int64 valid steps: the BERT attention mask for text (the full
        width when the file has no ``text_bert``), the file's lengths for audio
        and vision (the full width for aligned files without them).
    labels : torch.Tensor
        ``(N,)`` float32 ``regression_labels``.
    labels_text, labels_audio, labels_vision : torch.Tensor or None
        ``(N,)`` CH-SIMS unimodal labels.
    ids, raw_text : tuple of str or None
        From the file, when present.
    """

    name: str
    text: torch.Tensor
    audio: torch.Tensor
    vision: torch.Tensor
    text_lengths: torch.Tensor
    audio_lengths: torch.Tensor
    vision_lengths: torch.Tensor
    labels: torch.Tensor
    labels_text: torch.Tensor | None = None
    labels_audio: torch.Tensor | None = None
    labels_vision: torch.Tensor | None = None
    ids: tuple[str, ...] | None = None
    raw_text: tuple[str, ...] | None = None

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def batch(self, index: Sequence[int] | np.ndarray | torch.Tensor) -> MMSABatch:
        """The samples ``index``, each modality cut to its longest valid length.

        Cutting changes nothing for models that use the lengths, as those of
        :mod:`brainenc.fusion.models` do: positions past a sample's length are
        padding either way.
        """
        index = torch.as_tensor(np.asarray(index), dtype=torch.int64)
        lengths = {m: getattr(self, f"{m}_lengths")[index] for m in ("text", "audio", "vision")}
        width = {m: int(n.max()) if len(n) else 0 for m, n in lengths.items()}
        text = self.text[index]
        text = text[:, :, : width["text"]] if text.dtype == torch.int64 else text[:, : width["text"]]
        extra = {
            f"labels_{m}": None if getattr(self, f"labels_{m}") is None
            else getattr(self, f"labels_{m}")[index]
            for m in ("text", "audio", "vision")
        }
        return MMSABatch(
            index=index,
            text=text,
            audio=self.audio[index, : width["audio"]],
            vision=self.vision[index, : width["vision"]],
            text_lengths=lengths["text"],
            audio_lengths=lengths["audio"],
            vision_lengths=lengths["vision"],
            labels=self.labels[index],
            **extra,
        )

    def batches(
        self,
        batch_size: int,
        *,
        seed: int = 0,
        epoch: int = 0,
        shuffle: bool = True,
        drop_last: bool = False,
    ) -> Iterator[MMSABatch]:
        """Iterate over the split in batches.

        Parameters
        ----------
        batch_size : int
            Samples per batch (the last batch may be smaller).
        seed, epoch : int
            The order is a permutation drawn from ``(seed, epoch)``: the same
            pair gives the same order, each epoch a new one.
        shuffle : bool
            False keeps the file's order.
        drop_last : bool
            Skip a last batch smaller than ``batch_size``.

        Yields
        ------
        MMSABatch
        """
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        n = len(self)
        order = np.random.default_rng([seed, epoch]).permutation(n) if shuffle else np.arange(n)
        for start in range(0, n, batch_size):
            index = order[start : start + batch_size]
            if drop_last and len(index) < batch_size:
                return
            yield self.batch(index)


@dataclass(frozen=True)
class MMSADataset:
    """The three splits of an MMSA feature file.

    Attributes
    ----------
    train, valid, test : MMSASplit
    dataset : {"mosi", "mosei", "sims"}
    aligned : bool
        Word-aligned file (no ``audio_lengths`` / ``vision_lengths`` read).
    text_kind : {"features", "tokens"}
        Whether ``text`` holds features (the ``text`` key) or BERT inputs
        (the ``text_bert`` key).
    dims : FeatureDims
        Feature sizes, for the model configurations of
        :mod:`brainenc.tasks.sentiment.configs`.
    seq_lens : tuple of int
        Padded lengths ``(L_t, L_a, L_v)`` of the training split.
    n_audio_neg_inf : int
        ``-inf`` audio entries set to 0, over all splits.
    path : pathlib.Path or None
        The file it was read from.
    """

    train: MMSASplit
    valid: MMSASplit
    test: MMSASplit
    dataset: str
    aligned: bool
    text_kind: str
    dims: FeatureDims
    seq_lens: tuple[int, int, int]
    n_audio_neg_inf: int = 0
    path: Path | None = None

    @property
    def label_bound(self) -> float:
        """Labels lie in ``[-label_bound, label_bound]``."""
        return LABEL_BOUND[self.dataset]

    def split(self, name: str) -> MMSASplit:
        """The split called ``name``."""
        if name not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {name!r}")
        return getattr(self, name)

    def batches(
        self,
        split: str,
        batch_size: int,
        seed: int = 0,
        epoch: int = 0,
        shuffle: bool | None = None,
        drop_last: bool = False,
    ) -> Iterator[MMSABatch]:
        """Batches of one split; see :meth:`MMSASplit.batches`.

        ``shuffle`` defaults to True for ``"train"`` and False otherwise.
        """
        if shuffle is None:
            shuffle = split == "train"
        return self.split(split).batches(
            batch_size, seed=seed, epoch=epoch, shuffle=shuffle, drop_last=drop_last
        )


# --------------------------------------------------------------------------- reading


def _where(split: str, key: str) -> str:
    return f"{split}[{key!r}]"


def _numeric(path: Path, split: str, key: str, value: Any, shape: str) -> np.ndarray:
    try:
        x = np.asarray(value)
    except Exception as error:  # ragged lists and the like
        raise BrainencInputError(
            path, f"{_where(split, key)} must be a numeric {shape} array ({error})"
        ) from None
    if not (np.issubdtype(x.dtype, np.number) or x.dtype == bool):
        raise BrainencInputError(
            path, f"{_where(split, key)} must be a numeric {shape} array, got dtype {x.dtype}"
        )
    return x


def _required(path: Path, split: str, data: Mapping, key: str, expected: str) -> Any:
    if key not in data:
        found = ", ".join(sorted(map(str, data)))
        raise BrainencInputError(
            path, f"split {split!r} has no {key!r} (expected {expected}); it has: {found}"
        )
    return data[key]


def _features(
    path: Path, split: str, key: str, value: Any, zero_neg_inf: bool
) -> tuple[np.ndarray, int]:
    x = _numeric(path, split, key, value, "(N, L, D)")
    if x.ndim != 3:
        raise BrainencInputError(
            path, f"{_where(split, key)} must be (N, L, D) features, got shape {x.shape}"
        )
    x = x.astype(np.float32, copy=False)
    n_fixed = 0
    if zero_neg_inf:
        neg_inf = np.isneginf(x)
        n_fixed = int(neg_inf.sum())
        if n_fixed:
            if not x.flags.writeable:
                x = x.copy()
            x[neg_inf] = 0.0
    bad = ~np.isfinite(x)
    if bad.any():
        first = int(np.argwhere(bad)[0, 0])
        note = " (MMSA replaces only -inf in 'audio', by 0)" if key != "audio" else ""
        raise BrainencInputError(
            path,
            f"{_where(split, key)} has {int(bad.sum())} NaN or infinite values "
            f"(first in sample {first}){note}",
        )
    return x, n_fixed


def _lengths(path: Path, split: str, key: str, value: Any, n: int, width: int) -> np.ndarray:
    x = _numeric(path, split, key, value, "(N,)")
    if x.ndim == 2 and x.shape[1] == 1:
        x = x[:, 0]
    if x.ndim != 1:
        raise BrainencInputError(path, f"{_where(split, key)} must be (N,), got shape {x.shape}")
    if len(x) != n:
        raise BrainencInputError(
            path, f"{_where(split, key)} has {len(x)} entries, expected N = {n} (one per sample)"
        )
    if not np.all(np.isfinite(x)) or np.any(x != np.round(x)):
        raise BrainencInputError(path, f"{_where(split, key)} must hold whole numbers")
    x = x.astype(np.int64)
    bad = (x < 1) | (x > width)
    if bad.any():
        first = int(np.argmax(bad))
        raise BrainencInputError(
            path,
            f"{_where(split, key)} must lie in [1, {width}] (the padded length); "
            f"{int(bad.sum())} samples do not (first: sample {first}, length {int(x[first])})",
        )
    return x


def _labels(path: Path, split: str, key: str, value: Any, n: int | None, dataset: str) -> np.ndarray:
    x = _numeric(path, split, key, value, "(N,)")
    if x.ndim == 2 and x.shape[1] == 1:
        x = x[:, 0]
    if x.ndim != 1:
        raise BrainencInputError(path, f"{_where(split, key)} must be (N,), got shape {x.shape}")
    if n is not None and len(x) != n:
        raise BrainencInputError(
            path, f"{_where(split, key)} has {len(x)} entries, expected N = {n} (one per sample)"
        )
    x = x.astype(np.float32)
    bound = LABEL_BOUND[dataset]
    bad = ~np.isfinite(x) | (np.abs(x) > bound)
    if bad.any():
        first = int(np.argmax(bad))
        raise BrainencInputError(
            path,
            f"{_where(split, key)} must lie in [{-bound:g}, {bound:g}] for {dataset.upper()}; "
            f"{int(bad.sum())} values do not (first: sample {first}, {x[first]!r})",
        )
    return x


def _tokens(path: Path, split: str, value: Any) -> tuple[np.ndarray, np.ndarray]:
    key = "text_bert"
    x = _numeric(path, split, key, value, "(N, 3, L)")
    if x.ndim != 3 or x.shape[1] != 3:
        raise BrainencInputError(
            path,
            f"{_where(split, key)} must be (N, 3, L): input ids, attention mask, token types; "
            f"got shape {x.shape}",
        )
    if not np.all(np.isfinite(x)) or np.any(x != np.round(x)) or np.any(x < 0):
        raise BrainencInputError(path, f"{_where(split, key)} must hold non-negative whole numbers")
    x = x.astype(np.int64)
    mask = x[:, 1]
    if np.any((mask != 0) & (mask != 1)):
        raise BrainencInputError(path, f"{_where(split, key)}[:, 1] (attention mask) must be 0 or 1")
    lengths = mask.sum(axis=1)
    empty = lengths < 1
    if empty.any():
        raise BrainencInputError(
            path,
            f"{_where(split, key)}: {int(empty.sum())} samples have no valid token "
            f"(first: sample {int(np.argmax(empty))})",
        )
    return x, lengths


def _strings(path: Path, split: str, key: str, value: Any, n: int) -> tuple[str, ...]:
    items = list(np.asarray(value, dtype=object).reshape(-1)) if np.ndim(value) else []
    if len(items) != n:
        raise BrainencInputError(
            path, f"{_where(split, key)} has {len(items)} entries, expected N = {n} (one per sample)"
        )
    return tuple(str(item) for item in items)


def _read_split(
    path: Path, split: str, data: Mapping, dataset: str, aligned: bool, text: str
) -> tuple[MMSASplit, int]:
    labels = _labels(
        path, split, "regression_labels",
        _required(path, split, data, "regression_labels", "(N,) sentiment labels"), None, dataset,
    )
    n = len(labels)

    def check_n(key: str, x: np.ndarray) -> None:
        if x.shape[0] != n:
            raise BrainencInputError(
                path,
                f"{_where(split, key)} has {x.shape[0]} samples but "
                f"{_where(split, 'regression_labels')} has {n}; every array must have N first",
            )

    tokens = token_lengths = None
    if "text_bert" in data or text == "tokens":
        tokens, token_lengths = _tokens(
            path, split, _required(path, split, data, "text_bert", "(N, 3, L) BERT inputs")
        )
        check_n("text_bert", tokens)
    if text == "tokens":
        text_x, text_lengths = tokens, token_lengths
    else:
        text_x, _ = _features(
            path, split, "text",
            _required(path, split, data, "text", "(N, L, D) text features; pass "
                      "text='tokens' to read 'text_bert' instead"), False,
        )
        check_n("text", text_x)
        if tokens is not None and tokens.shape[2] == text_x.shape[1]:
            text_lengths = token_lengths
        else:
            text_lengths = np.full(n, text_x.shape[1], dtype=np.int64)
    audio, n_fixed = _features(
        path, split, "audio", _required(path, split, data, "audio", "(N, L_a, D_a)"), True
    )
    vision, _ = _features(
        path, split, "vision", _required(path, split, data, "vision", "(N, L_v, D_v)"), False
    )
    check_n("audio", audio)
    check_n("vision", vision)
    text_width = text_x.shape[2] if text == "tokens" else text_x.shape[1]
    if aligned and not (audio.shape[1] == vision.shape[1] == text_width):
        raise BrainencInputError(
            path,
            f"aligned data need equal padded lengths, got text {text_width}, "
            f"audio {audio.shape[1]}, vision {vision.shape[1]} in split {split!r}; "
            "pass aligned=False for an unaligned file",
        )
    lengths = {}
    for m, x in (("audio", audio), ("vision", vision)):
        key = f"{m}_lengths"
        if key in data:
            lengths[m] = _lengths(path, split, key, data[key], n, x.shape[1])
        elif aligned:
            lengths[m] = np.full(n, x.shape[1], dtype=np.int64)
        else:
            _required(path, split, data, key, "(N,) valid steps of an unaligned file")
    modality_labels = {
        m: torch.from_numpy(_labels(path, split, key, data[key], n, dataset))
        if key in data else None
        for m, key in MODALITY_LABEL_KEYS.items()
    }
    if dataset == "sims":
        missing = [key for m, key in MODALITY_LABEL_KEYS.items() if modality_labels[m] is None]
        if missing:
            raise BrainencInputError(
                path, f"split {split!r} has no {', '.join(map(repr, missing))} (CH-SIMS unimodal labels)"
            )
    for key in _OPTIONAL_LIST_KEYS:
        if key in data and np.ndim(data[key]) and len(data[key]) != n:
            raise BrainencInputError(
                path, f"{_where(split, key)} has {len(data[key])} entries, expected N = {n}"
            )
    result = MMSASplit(
        name=split,
        text=torch.from_numpy(np.ascontiguousarray(text_x)),
        audio=torch.from_numpy(audio),
        vision=torch.from_numpy(vision),
        text_lengths=torch.from_numpy(np.asarray(text_lengths, dtype=np.int64)),
        audio_lengths=torch.from_numpy(lengths["audio"]),
        vision_lengths=torch.from_numpy(lengths["vision"]),
        labels=torch.from_numpy(labels),
        labels_text=modality_labels["text"],
        labels_audio=modality_labels["audio"],
        labels_vision=modality_labels["vision"],
        ids=_strings(path, split, "id", data["id"], n) if "id" in data else None,
        raw_text=_strings(path, split, "raw_text", data["raw_text"], n) if "raw_text" in data else None,
    )
    return result, n_fixed


def _infer_dataset(path: Path, data: Mapping, dataset: str | None) -> str:
    if dataset is not None:
        if dataset not in DATASETS:
            raise ValueError(f"dataset must be one of {DATASETS}, got {dataset!r}")
        return dataset
    if all(key in data["train"] for key in MODALITY_LABEL_KEYS.values()):
        return "sims"
    words = set(re.split(r"[^a-z0-9]+", str(path).lower()))
    # directory or file names such as MOSI/Processed/..., CMU-MOSEI/..., sims_unaligned_39.pkl
    found = [name for name in DATASETS if name in words or f"ch{name}" in words]
    if len(found) == 1:
        return found[0]
    raise BrainencInputError(
        path,
        "cannot tell whether this is MOSI, MOSEI or CH-SIMS from its path or keys; "
        "pass dataset='mosi', 'mosei' or 'sims'",
    )


def load_mmsa(
    path: str | Path,
    aligned: bool | None = None,
    text: TextKind = "features",
    dataset: str | None = None,
) -> MMSADataset:
    """Read an MMSA feature file (MOSI, MOSEI or CH-SIMS) into tensors.

    Parameters
    ----------
    path : path-like
        The pickle, e.g. ``MOSI/Processed/unaligned_50.pkl``. Unpickling runs
        code from the file: load only files you trust.
    aligned : bool, optional
        Whether the file is word-aligned. Default: aligned exactly when the
        training split has no ``audio_lengths`` / ``vision_lengths``. An
        unaligned file must have them; an aligned one must have equal padded
        lengths in the three modalities.
    text : {"features", "tokens"}
        ``"features"`` reads the ``text`` key (BERT features, 768 wide, in
        MMSA's files; 300-wide GloVe in SDK-derived files), ``"tokens"`` the
        ``text_bert`` BERT inputs ``(N, 3, L)``, as MMSA does with
        ``use_bert``.
    dataset : {"mosi", "mosei", "sims"}, optional
        Sets the label range. Default: ``"sims"`` when the file has the
        unimodal labels ``regression_labels_T/A/V``, else the dataset named in
        the path (``MOSI/Processed/...``).

    Returns
    -------
    MMSADataset

    Raises
    ------
    BrainencInputError
        The file is missing or not an MMSA dict; a split or a key is missing;
        arrays disagree on the number of samples ``N``; lengths lie outside
        ``[1, padded length]``; features hold NaN or infinite values (other
        than ``-inf`` in audio); labels lie outside ``[-3, 3]`` (MOSI, MOSEI)
        or ``[-1, 1]`` (CH-SIMS). Messages name the split and key.

    Warns
    -----
    BrainencInputWarning
        ``-inf`` audio values were set to 0 (as MMSA does); the message counts
        them.
    """
    if text not in ("features", "tokens"):
        raise ValueError(f"text must be 'features' or 'tokens', got {text!r}")
    path = Path(path)
    if not path.is_file():
        raise BrainencInputError(path, "no such file (an MMSA feature file such as unaligned_50.pkl)")
    try:
        with open(path, "rb") as handle:
            data = pickle.load(handle)
    except Exception as error:
        raise BrainencInputError(
            path, f"cannot be unpickled ({type(error).__name__}: {error}); MMSA files are pickled dicts"
        ) from None
    if not isinstance(data, Mapping):
        raise BrainencInputError(
            path, f"holds a {type(data).__name__}; an MMSA file is a dict with splits {SPLITS}"
        )
    for split in SPLITS:
        if split not in data:
            raise BrainencInputError(
                path,
                f"has no split {split!r}; an MMSA file has {SPLITS}, this one has "
                f"{sorted(map(str, data))}",
            )
        if not isinstance(data[split], Mapping):
            raise BrainencInputError(
                path, f"split {split!r} is a {type(data[split]).__name__}, expected a dict of arrays"
            )
    dataset = _infer_dataset(path, data, dataset)
    if aligned is None:
        aligned = not ("audio_lengths" in data["train"] or "vision_lengths" in data["train"])
    splits, n_fixed = {}, 0
    for split in SPLITS:
        splits[split], fixed = _read_split(path, split, data[split], dataset, bool(aligned), text)
        n_fixed += fixed
    train = splits["train"]
    for split in ("valid", "test"):
        for m in (("text",) if text == "features" else ()) + ("audio", "vision"):
            a, b = getattr(train, m).shape[2], getattr(splits[split], m).shape[2]
            if a != b:
                raise BrainencInputError(
                    path, f"{_where(split, m)} has {b} features but {_where('train', m)} has {a}"
                )
    if n_fixed:
        warn_input(f"{path}: set {n_fixed} -inf audio values to 0 (as MMSA's data loader does)")
    text_len = train.text.shape[2] if text == "tokens" else train.text.shape[1]
    return MMSADataset(
        train=train,
        valid=splits["valid"],
        test=splits["test"],
        dataset=dataset,
        aligned=bool(aligned),
        text_kind=text,
        dims=FeatureDims(
            None if text == "tokens" else int(train.text.shape[2]),
            int(train.audio.shape[2]),
            int(train.vision.shape[2]),
        ),
        seq_lens=(int(text_len), int(train.audio.shape[1]), int(train.vision.shape[1])),
        n_audio_neg_inf=n_fixed,
        path=path,
    )


# --------------------------------------------------------------------------- writing


def write_mmsa(path: str | Path, splits: Mapping[str, Mapping[str, Any]]) -> Path:
    """Pickle ``splits`` as an MMSA feature file, atomically.

    Parameters
    ----------
    path : path-like
        Output file; parent folders are created.
    splits : mapping
        ``{"train": {...}, "valid": {...}, "test": {...}}`` with MMSA's keys
        (see the module docstring), e.g. from :func:`synthetic_mmsa`. Written
        as given, without checks, so that malformed files can be made too.

    Returns
    -------
    pathlib.Path
    """
    path = Path(path)
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        pickle.dump({name: dict(split) for name, split in splits.items()}, handle, protocol=4)
    return path


def _grid(x: np.ndarray, bound: float) -> np.ndarray:
    """Round to MOSI / CH-SIMS's 0.2 grid of annotator means, inside the range."""
    return np.clip(np.round(x / 0.2) * 0.2, -bound, bound).astype(np.float32)


def synthetic_mmsa(
    dataset: str = "mosi",
    *,
    aligned: bool = False,
    n_samples: tuple[int, int, int] = (64, 16, 16),
    dims: FeatureDims | None = None,
    seq_lens: tuple[int, int, int] | None = None,
    signal: float = 2.0,
    noise: float = 1.0,
    seed: int = 0,
) -> dict[str, dict[str, Any]]:
    """Small splits in MMSA's format whose labels a linear read-out can learn.

    Each sample has a latent sentiment ``z ~ N(0, 1)``; every valid step of
    modality ``m`` is ``z * u_m + noise * e`` with a fixed direction ``u_m``
    of norm ``signal`` and white noise ``e``; padding is 0. The label is
    ``z * bound / 2`` rounded to the 0.2 grid and clipped to the dataset's
    range (so some labels are exactly 0); CH-SIMS's unimodal labels are noisy
    copies of it.

    Parameters
    ----------
    dataset : {"mosi", "mosei", "sims"}
        Sets the label range and the CH-SIMS keys.
    aligned : bool
        Aligned files share one padded length and have no
        ``audio_lengths`` / ``vision_lengths``.
    n_samples : tuple of int
        Samples in train, valid, test.
    dims : FeatureDims, optional
        Feature sizes; default: text 32 and the dataset's audio and vision
        sizes (:data:`MMSA_DIMS`).
    seq_lens : tuple of int, optional
        Padded lengths ``(L_t, L_a, L_v)``; default ``(12, 20, 16)``
        (``(12, 12, 12)`` aligned). ``L_t`` must be at least 3 (CLS, one word,
        SEP).
    signal, noise : float
        Norm of the planted directions and standard deviation of the noise.
    seed : int
        Random seed.

    Returns
    -------
    dict
        ``{"train": {...}, "valid": {...}, "test": {...}}`` for
        :func:`write_mmsa`.
    """
    if dataset not in DATASETS:
        raise ValueError(f"dataset must be one of {DATASETS}, got {dataset!r}")
    dims = dims or replace(MMSA_DIMS[dataset], text=32)
    if dims.text is None:
        raise ValueError("dims.text must be an int for synthetic features")
    if seq_lens is None:
        seq_lens = (12, 12, 12) if aligned else (12, 20, 16)
    if aligned and len(set(seq_lens)) != 1:
        raise ValueError(f"aligned data share one padded length, got {seq_lens}")
    if seq_lens[0] < 3:
        raise ValueError(f"the padded text length must be at least 3, got {seq_lens[0]}")
    rng = np.random.default_rng(seed)
    bound = LABEL_BOUND[dataset]
    sizes = {"text": dims.text, "audio": dims.audio, "vision": dims.vision}
    widths = dict(zip(("text", "audio", "vision"), seq_lens))
    directions = {}
    for m, size in sizes.items():
        u = rng.standard_normal(size)
        directions[m] = signal * u / np.linalg.norm(u)
    out = {}
    for split, n in zip(SPLITS, n_samples):
        z = rng.standard_normal(n)
        labels = _grid(z * bound / 2, bound)
        text_len = rng.integers(max(3, widths["text"] // 2), widths["text"] + 1, size=n)
        lengths = {"text": text_len}
        for m in ("audio", "vision"):
            lengths[m] = text_len if aligned else rng.integers(
                max(1, widths[m] // 4), widths[m] + 1, size=n
            )
        arrays = {}
        for m in ("text", "audio", "vision"):
            x = z[:, None, None] * directions[m] + noise * rng.standard_normal((n, widths[m], sizes[m]))
            x[np.arange(widths[m])[None, :] >= lengths[m][:, None]] = 0.0
            arrays[m] = x.astype(np.float32)
        tokens = np.zeros((n, 3, widths["text"]), dtype=np.int64)
        for i, k in enumerate(text_len):
            tokens[i, 0, :k] = np.concatenate([[101], rng.integers(1000, 30000, k - 2), [102]])
            tokens[i, 1, :k] = 1
        cls = np.where(labels < 0, 0, np.where(labels > 0, 2, 1))
        data = {
            "raw_text": [f"synthetic utterance {split} {i}" for i in range(n)],
            "audio": arrays["audio"],
            "vision": arrays["vision"],
            "id": [f"{split}{i // 4:03d}$_${i % 4}" for i in range(n)],
            "text": arrays["text"],
            "text_bert": tokens,
            "annotations": [("Negative", "Neutral", "Positive")[c] for c in cls],
            "classification_labels": cls.astype(np.float32),
            "regression_labels": labels,
        }
        if not aligned:
            data["audio_lengths"] = lengths["audio"].astype(np.int64)
            data["vision_lengths"] = lengths["vision"].astype(np.int64)
        if dataset == "sims":
            for key in MODALITY_LABEL_KEYS.values():
                data[key] = _grid(labels + 0.2 * rng.standard_normal(n), bound)
        out[split] = data
    return out

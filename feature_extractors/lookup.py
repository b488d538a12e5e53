"""Static word embeddings (GloVe, word2vec, fastText vectors) read from a file.

The simplest story baseline: each word's vector is looked up in a table,
without context. Two file formats are read:

* text: one word per line followed by its values, separated by single spaces
  (GloVe; word2vec and fastText ``.vec`` text files, whose first line
  ``"<n_words> <dim>"`` is recognised and skipped); ``.gz`` files are
  decompressed on the fly;
* HDF5: a dataset ``vocab`` (strings) and a dataset ``data`` or ``matrix``
  (words × dim).
"""
from __future__ import annotations

import gzip
import hashlib
import os
import warnings
from collections.abc import Sequence
from pathlib import Path

import h5py
import numpy as np

from brainenc.errors import BrainencInputError
from feature_extractors.base import FeatureExtractor, LayerPair, slugify

LAYER = "embedding"


def file_sha256(path: str | os.PathLike, chunk_size: int = 1 << 20) -> str:
    """SHA-256 of a file's content, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()


def _is_count_header(parts: list[str]) -> bool:
    return len(parts) == 2 and all(p.isdigit() for p in parts)


def read_text_vectors(path: str | os.PathLike) -> tuple[list[str], np.ndarray]:
    """Words and vectors of a GloVe / word2vec text file.

    A word may contain spaces (some GloVe releases have such entries): the
    last ``dim`` fields of a line are the values, the rest is the word.

    Raises
    ------
    BrainencInputError
        An empty file, a line with too few or non-numeric values.
    """
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    words: list[str] = []
    rows: list[np.ndarray] = []
    dim: int | None = None
    with opener(path, "rt", encoding="utf-8") as handle:
        for lineno, line in enumerate(handle, 1):
            parts = line.rstrip("\r\n").rstrip(" ").split(" ")
            if parts == [""]:
                continue
            if lineno == 1 and _is_count_header(parts):
                dim = int(parts[1])
                continue
            if dim is None:
                dim = len(parts) - 1
            if dim < 1 or len(parts) < dim + 1:
                raise BrainencInputError(path, f"line {lineno} has {len(parts) - 1} values after the word; "
                                               f"expected {dim}")
            try:
                rows.append(np.asarray(parts[-dim:], dtype=np.float32))
            except ValueError:
                raise BrainencInputError(path, f"line {lineno}: the values after the word are not all "
                                               "numbers") from None
            words.append(" ".join(parts[:-dim]))
    if not words:
        raise BrainencInputError(path, "the file holds no word vectors")
    return words, np.stack(rows)


def read_hdf5_vectors(path: str | os.PathLike) -> tuple[list[str], np.ndarray]:
    """Words and vectors of an HDF5 file with datasets ``vocab`` and ``data`` (or ``matrix``).

    Raises
    ------
    BrainencInputError
        A missing dataset, a matrix that is not 2-D, or row and word counts that differ.
    """
    with h5py.File(path, "r") as handle:
        if "vocab" not in handle:
            raise BrainencInputError(path, f"no dataset 'vocab' (found {sorted(handle)})")
        key = next((k for k in ("data", "matrix") if k in handle), None)
        if key is None:
            raise BrainencInputError(path, f"no dataset 'data' or 'matrix' (found {sorted(handle)})")
        vocab = handle["vocab"][()]
        matrix = np.asarray(handle[key][()], dtype=np.float32)
    words = [w.decode("utf-8") if isinstance(w, bytes) else str(w) for w in np.ravel(vocab)]
    if matrix.ndim != 2 or matrix.shape[0] != len(words) or not words:
        raise BrainencInputError(path, f"dataset {key!r} has shape {matrix.shape}; expected "
                                       f"({len(words)} words, dim) to match 'vocab'")
    return words, matrix


class WordEmbeddingExtractor(FeatureExtractor):
    """Story words → vectors of a static word-embedding table.

    Layer (story only): ``embedding``, the word's row of the table. Words are
    looked up lower-cased (by default); a word missing from the table gets a
    zero vector, and :meth:`embed_words` warns once per call with the number of
    such words and a few examples.

    Parameters
    ----------
    path : path-like
        A text file (GloVe or word2vec text format, optionally gzipped) or an
        HDF5 file (``vocab`` + ``data``/``matrix``).
    lowercase : bool
        Look words up lower-cased. Table entries are matched lower-cased as
        well; where several entries only differ in case, the lower-case entry
        wins, else the first one in the file.

    Raises
    ------
    BrainencInputError
        The file does not exist.
    """

    modalities = ("story",)

    def __init__(self, path: str | os.PathLike, lowercase: bool = True):
        self.path = Path(path)
        if not self.path.is_file():
            raise BrainencInputError(self.path, "no such word-embedding file")
        self.lowercase = bool(lowercase)
        self._table: tuple[np.ndarray, dict[str, int]] | None = None
        self._sha256: str | None = None

    @property
    def name(self) -> str:
        stem = self.path.name
        for suffix in (".gz", ".txt", ".vec", ".h5", ".hdf5", ".hf5"):
            stem = stem.removesuffix(suffix)
        return slugify(stem)

    def layers(self, modality: str) -> list[str]:
        if modality != "story":
            raise BrainencInputError(None, f"word embeddings embed story words only, not {modality!r}")
        return [LAYER]

    def pairing(self, label: str) -> LayerPair:
        """Static word embeddings have no movie part: never aligned."""
        return LayerPair(False, "unaligned: word embeddings only")

    def identity(self) -> dict:
        if self._sha256 is None:
            self._sha256 = file_sha256(self.path)
        return {
            "extractor": type(self).__name__,
            "path": str(self.path.resolve()),
            "size": self.path.stat().st_size,
            "sha256": self._sha256,
            "lowercase": self.lowercase,
        }

    def table(self) -> tuple[np.ndarray, dict[str, int]]:
        """The vectors (words × dim, float32) and the row of each lookup key, read on first use."""
        if self._table is None:
            reader = read_hdf5_vectors if h5py.is_hdf5(self.path) else read_text_vectors
            words, vectors = reader(self.path)
            index: dict[str, int] = {}
            exact: set[str] = set()  # keys filled by an entry spelled exactly like the key
            for row, word in enumerate(words):
                key = word.lower() if self.lowercase else word
                if key not in index or (word == key and key not in exact):
                    index[key] = row
                    if word == key:
                        exact.add(key)
            self._table = (vectors, index)
        return self._table

    def embed_words(self, words: Sequence[str], layers: Sequence[str]) -> dict[str, np.ndarray]:
        unknown_layers = [name for name in layers if name != LAYER]
        if unknown_layers:
            raise BrainencInputError(None, f"unknown layers {unknown_layers}; word embeddings have only {LAYER!r}")
        vectors, index = self.table()
        rows = np.array([index.get(w.lower() if self.lowercase else w, -1) for w in words], dtype=np.int64)
        out = np.zeros((len(rows), vectors.shape[1]), dtype=np.float32)
        known = rows >= 0
        out[known] = vectors[rows[known]]
        if not known.all():
            missing = [w for w, hit in zip(words, known) if not hit]
            examples = list(dict.fromkeys(missing))[:5]
            warnings.warn(
                f"{len(missing)} of {len(rows)} words are not in {self.path.name} and get zero vectors "
                f"(e.g. {', '.join(map(repr, examples))})",
                stacklevel=2,
            )
        return {name: out for name in dict.fromkeys(layers)}

"""The extractor contract: what every feature extractor provides.

An extractor turns the words of a story (each with its preceding context) or
the frames of a movie into one vector per event for each of its layers. Layer
names are strings (``"text.3"``, ``"vision.12"``, ``"cross.text.2"``,
``"embedding"``...) documented by each extractor; a feature space is one layer
of one extractor. Each extractor also declares, per layer label, whether the
story and movie layers of that label share a space (:meth:`FeatureExtractor.pairing`):
only then is cross-modal transfer between them meaningful.

The pipeline (:mod:`feature_extractors.pipeline`) owns timing, caching and
writing; an extractor only computes vectors.
"""
from __future__ import annotations

import abc
import hashlib
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from brainenc.errors import BrainencInputError

#: Identity entries that only one modality's vectors depend on: the word
#: windows and the tokenizer for stories, the frame pooling and the image
#: processor for movies. :meth:`FeatureExtractor.modality_identity` leaves the
#: other modality's entries out, so changing a story setting keeps the cached
#: movie features and the other way round.
MODALITY_ENTRIES: dict[str, tuple[str, ...]] = {
    "story": ("context_words", "token_pooling", "max_tokens", "tokenizer_hash"),
    "movie": ("frame_pooling", "processor_class", "processor_hash"),
}


#: ``pair`` description of the default :meth:`FeatureExtractor.pairing`, by the
#: modalities an extractor embeds.
UNALIGNED_PAIRS: dict[tuple[str, ...], str] = {
    ("story",): "unaligned: language model only",
    ("movie",): "unaligned: vision model only",
}


@dataclass(frozen=True)
class LayerPair:
    """Whether the story and movie layers of one label share a space, and how.

    Written to every feature file as the attributes ``aligned_pair`` and
    ``pair`` (:mod:`brainenc.io.features`).

    Attributes
    ----------
    aligned : bool
        True when coordinate *k* of the story vectors corresponds to
        coordinate *k* of the movie vectors because multimodal training shaped
        them together (BridgeTower's cross-modal layers, CLIP's projections);
        False for separately trained encoders or towers: a baseline, not a
        transfer space.
    description : str
        Short description (``"bridgetower cross-modal layer 3"``,
        ``"unaligned: separate encoders (text tower layer 8, vision tower layer 8)"``).
    """

    aligned: bool
    description: str


class FeatureExtractor(abc.ABC):
    """Base class of all extractors.

    Subclasses set :attr:`modalities` and implement :meth:`layers`,
    :meth:`identity` and the ``embed_*`` method of each modality they support.
    """

    #: Modalities this extractor can embed: a subset of ``("story", "movie")``.
    modalities: tuple[str, ...] = ()

    @property
    @abc.abstractmethod
    def name(self) -> str:
        """Short name used in feature-space names (``bridgetower-base``)."""

    @abc.abstractmethod
    def layers(self, modality: str) -> list[str]:
        """Names of the layers exported for ``modality``, in model order."""

    @abc.abstractmethod
    def identity(self) -> dict:
        """Everything that determines the vectors: model id, a hash of its
        configuration and weights' origin, and every setting (context length,
        token and patch pooling, input mode...). JSON-serialisable. Part of the
        cache key: two extractors with equal identities give equal features."""

    def pairing(self, label: str) -> LayerPair:
        """Whether the story and movie layers with the label ``label`` share a space.

        Parameters
        ----------
        label : str
            A layer label (:func:`layer_label`).

        Returns
        -------
        LayerPair
            Unaligned by default: an extractor declares aligned layers itself.
        """
        return LayerPair(False, UNALIGNED_PAIRS.get(tuple(self.modalities), "unaligned: separate encoders"))

    def modality_entries(self, modality: str) -> tuple[str, ...]:
        """Identity entries that only the vectors of ``modality`` depend on.

        :data:`MODALITY_ENTRIES` by default; an extractor whose vectors of one
        modality also depend on the other modality's inputs (BridgeTower's
        neutral mode) narrows it.
        """
        return MODALITY_ENTRIES.get(modality, ())

    def modality_identity(self, modality: str) -> dict:
        """The part of :meth:`identity` the vectors of ``modality`` depend on.

        :meth:`identity` without the entries that only the *other* modality
        depends on (:meth:`modality_entries`). This is what the cache key of a
        stimulus of ``modality`` covers.
        """
        dropped = {key for other in MODALITY_ENTRIES if other != modality
                   for key in self.modality_entries(other)}
        return {key: value for key, value in self.identity().items() if key not in dropped}

    def embed_words(self, words: Sequence[str], layers: Sequence[str]) -> dict[str, np.ndarray]:
        """One vector per word, each computed from the word and its preceding context.

        Parameters
        ----------
        words : sequence of str
            The transcript's words in order.
        layers : sequence of str
            Layer names from :meth:`layers` ("story").

        Returns
        -------
        dict of str to ndarray of shape (len(words), dim), float32
        """
        raise NotImplementedError(f"{type(self).__name__} does not embed words")

    def embed_frames(self, frames: Sequence[np.ndarray], layers: Sequence[str]) -> dict[str, np.ndarray]:
        """One vector per frame.

        Parameters
        ----------
        frames : sequence of ndarray of shape (height, width, 3), uint8
            RGB frames.
        layers : sequence of str
            Layer names from :meth:`layers` ("movie").

        Returns
        -------
        dict of str to ndarray of shape (len(frames), dim), float32
        """
        raise NotImplementedError(f"{type(self).__name__} does not embed frames")


def identity_hash(identity: dict) -> str:
    """Stable short hash of an identity dictionary."""
    text = json.dumps(identity, sort_keys=True, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def slugify(text: str) -> str:
    """A file-name-safe lower-case version of ``text`` (``org/Model-1`` → ``org-model-1``)."""
    return re.sub(r"[^a-z0-9.]+", "-", text.lower()).strip("-.") or "model"


def select_layers(available: Sequence[str], spec: str | Sequence[str] | None) -> list[str]:
    """Resolve a layer selection against the available layer names.

    Parameters
    ----------
    available : sequence of str
        The extractor's layers for one modality, in model order.
    spec : None, "all", str or sequence
        ``None`` or ``"all"``: every layer. Otherwise comma-separated items or
        a sequence, each a layer name (``"text.3"``), an integer index into
        ``available`` (negative from the end: ``-1`` is the last layer), or a
        name prefix ending in ``*`` (``"cross.*"``).

    Raises
    ------
    BrainencInputError
        An index out of range or an unknown name, listing what is available.
    """
    available = list(available)
    if spec is None or spec == "all":
        return available
    items = [s.strip() for s in spec.split(",")] if isinstance(spec, str) else [str(s) for s in spec]
    chosen: list[str] = []
    for item in items:
        if not item:
            continue
        if re.fullmatch(r"-?\d+", item):
            index = int(item)
            if not -len(available) <= index < len(available):
                raise BrainencInputError(
                    None,
                    f"layer index {index} is out of range: this model has {len(available)} "
                    f"layers ({available[0]} … {available[-1]})",
                )
            matches = [available[index]]
        elif item.endswith("*"):
            matches = [name for name in available if name.startswith(item[:-1])]
        else:
            matches = [item] if item in available else []
        if not matches:
            raise BrainencInputError(None, f"unknown layer {item!r}; available layers: {available}")
        chosen += [m for m in matches if m not in chosen]
    return chosen


def layer_label(layer: str) -> str:
    """The modality-free label of a layer, shared by paired story and movie layers.

    ``text.8`` and ``vision.8`` (tower layers of a two-tower model) →
    ``tower8``; ``cross.text.3`` and ``cross.vision.3`` → ``cross3``;
    ``layer.8`` (a one-modality model) → ``layer8``; ``text.projection`` and
    ``vision.projection`` → ``projection``; ``embedding`` → ``embedding``. A
    feature space gathers the story files of one layer and the movie files of
    the layer with the same label; whether the two share a space is the
    extractor's :meth:`FeatureExtractor.pairing` of the label.
    """
    parts = layer.split(".")
    if len(parts) == 2 and parts[0] in ("text", "vision") and parts[1].isdigit():
        return f"tower{parts[1]}"
    label = "".join(p for p in parts if p not in ("text", "vision", "layer"))
    return f"layer{label}" if label.isdigit() else label or layer


def layer_index(layer: str) -> int:
    """The number ending a layer name: ``text.8`` → 8, ``cross.vision.3`` → 3, ``layer.0`` → 0."""
    return int(layer.rsplit(".", 1)[1])

"""Hugging Face models: the plumbing every model extractor shares, and the unimodal baselines.

:class:`PretrainedExtractor` is what every extractor of a Hugging Face model
does alike: the model id and short name, the device (``"auto"``: CUDA when
available), the precision, the batch size, loading the model (offline-safe,
through :func:`feature_extractors.loading.load_pretrained`) and the model part
of the identity. :class:`TextVisionExtractor` adds the word and frame loops of
models with a text and a vision tower (BridgeTower, CLIP).

:class:`LanguageModelExtractor` embeds story words in context with a text
model loaded by ``transformers.AutoModel`` (BERT, RoBERTa, GPT-2, Llama-style
decoders...); :class:`VisionModelExtractor` embeds movie frames with a vision
model (ViT, DeiT, DINOv2, ConvNeXt, ResNet...). Both export every hidden state
the model returns: ``layer.0`` is the embedding output and ``layer.N`` the
last layer, exactly as listed in the model's ``hidden_states``.

They give the unimodal references of the cross-modal comparison (RoBERTa-like
text, ViT-like vision models): each embeds the stimuli of one modality only.
"""
from __future__ import annotations

import json
import os
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from brainenc.errors import BrainencInputError
from feature_extractors.base import FeatureExtractor, LayerPair, identity_hash, layer_index, slugify
from feature_extractors.loading import load_pretrained
from feature_extractors.text import (
    WordWindow,
    check_window_settings,
    length_sorted_batches,
    pad_windows,
    pool_word,
    window_token_limit,
    word_windows,
)
from feature_extractors.weights import weights_fingerprint
from feature_extractors.vision import (
    check_frame_pooling,
    check_frames,
    patch_count,
    pool_frame_states,
    preprocess_frames,
    processor_identity,
)

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def resolve_device(device: str) -> torch.device:
    """The torch device for ``device``: ``"auto"`` is CUDA when available, else CPU.

    Raises
    ------
    BrainencInputError
        An unknown device name, or CUDA requested on a machine without it.
    """
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError) as error:
        raise BrainencInputError(None, f"unknown device {device!r} ({error})") from None
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise BrainencInputError(None, f"device {device!r} was requested but CUDA is not available")
    return resolved


def resolve_dtype(dtype: str, device: torch.device) -> torch.dtype:
    """The torch dtype named ``dtype``; half precisions only on a GPU.

    Raises
    ------
    BrainencInputError
        An unknown name, or float16/bfloat16 on the CPU.
    """
    if dtype not in DTYPES:
        raise BrainencInputError(None, f"dtype must be one of {list(DTYPES)}, got {dtype!r}")
    if dtype != "float32" and device.type == "cpu":
        raise BrainencInputError(None, f"dtype {dtype!r} needs a GPU; use dtype='float32' on the CPU")
    return DTYPES[dtype]


def model_name(model_id: str) -> str:
    """Short name of a model: its id's last path component, slugified."""
    parts = [p for p in re.split(r"[\\/]", model_id) if p]
    return slugify(parts[-1] if parts else model_id)


def config_hash(config) -> str:
    """Hash of a model configuration, independent of the transformers version and path."""
    values = json.loads(config.to_json_string(use_diff=False))
    for key in ("transformers_version", "_name_or_path", "_commit_hash"):
        values.pop(key, None)
    return identity_hash(values)


def load_fast_tokenizer(model_id: str, revision: str | None = None):
    """The model's tokenizer (at hub ``revision`` when given), which must be a fast one.

    Raises
    ------
    BrainencInputError
        As :func:`feature_extractors.loading.load_pretrained`, or a slow
        (Python) tokenizer: word windows need its character offsets.
    """
    from transformers import AutoTokenizer

    tokenizer = load_pretrained(model_id, AutoTokenizer, **revision_option(revision))
    if not getattr(tokenizer, "is_fast", False):
        raise BrainencInputError(
            None, f"the tokenizer of {model_id!r} ({type(tokenizer).__name__}) is not a fast "
                  "tokenizer; word windows need the character offsets only fast (Rust) tokenizers give")
    return tokenizer


def revision_option(revision: str | None) -> dict:
    """``{"revision": revision}`` for ``from_pretrained``, or nothing when no revision is asked for."""
    return {} if revision is None else {"revision": revision}


def window_identity(tokenizer, context_words: int, token_pooling: str, max_tokens: int | None) -> dict:
    """The identity entries of word windows: a hash of the fast tokenizer's full
    definition (vocabulary, merges, normalisation, special tokens) and the window settings."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    return {
        "tokenizer_hash": identity_hash({"tokenizer": backend.to_str()}) if backend is not None else None,
        "context_words": context_words,
        "token_pooling": token_pooling,
        "max_tokens": max_tokens,
    }


class PretrainedExtractor(FeatureExtractor):
    """Model id, device, precision and batch size of an extractor of a Hugging Face model.

    Parameters
    ----------
    model : str or path-like
        Hub id or local folder.
    device : str
        ``"auto"`` (CUDA when available, else CPU), ``"cpu"``, ``"cuda"``, ``"cuda:1"``...
    dtype : {"float32", "float16", "bfloat16"}
        Precision of the forward passes; half precisions need a GPU.
    batch_size : int
        Inputs per forward pass.
    revision : str, optional
        Hub revision (branch, tag or commit hash) of a hub id; every file of
        the model is loaded at it. Recorded in the identity with the commit
        the files came from.

    Raises
    ------
    BrainencInputError
        A bad batch size, device or dtype, or a revision for a local folder
        (a folder has no revisions).
    """

    def __init__(self, model: str | os.PathLike, device: str, dtype: str, batch_size: int,
                 revision: str | None = None):
        if not isinstance(batch_size, int) or batch_size < 1:
            raise BrainencInputError(None, f"batch_size must be a positive integer, got {batch_size!r}")
        self.model_id = os.fspath(model)
        if revision is not None and Path(self.model_id).expanduser().is_dir():
            raise BrainencInputError(self.model_id, f"revision {revision!r} was given for a local model "
                                                    "folder; revisions apply to hub ids only")
        self.revision = revision
        self._weights: dict | None = None
        self.device = resolve_device(device)
        self.dtype = dtype
        self.torch_dtype = resolve_dtype(dtype, self.device)
        self.batch_size = batch_size

    @property
    def name(self) -> str:
        return model_name(self.model_id)

    def _load_model(self, loader):
        """``loader.from_pretrained`` of the model, in evaluation mode on the chosen device and dtype."""
        return self._load(loader).to(device=self.device, dtype=self.torch_dtype).eval()

    def _load(self, loader):
        """``loader.from_pretrained`` of this model at its revision, offline-safe."""
        return load_pretrained(self.model_id, loader, **revision_option(self.revision))

    def _model_identity(self, model_class: str, config) -> dict:
        # device and batch size change nothing beyond rounding: left out so that caches travel
        if self._weights is None:
            self._weights = weights_fingerprint(self.model_id, config, self.revision)
        return {
            "extractor": type(self).__name__,
            "model": self.model_id,
            "model_class": model_class,
            "config_hash": config_hash(config),
            "revision": self.revision,
            **self._weights,
            "dtype": self.dtype,
        }


class TextVisionExtractor(PretrainedExtractor):
    """Loading, identity and the word and frame loops of a model with a text and a vision tower.

    Loads the model with ``model_class``, its fast tokenizer and its image
    processor. Subclasses set ``pad_id`` and ``max_tokens`` and give
    :meth:`layers`, ``_word_states(windows, layers)`` and
    ``_frame_states(pixels, layers)``, and ``_layer_dim(layer)`` for layers
    outside the two towers. A layer's states are either token states (batch ×
    tokens × dim), pooled here by ``token_pooling`` or ``frame_pooling``, or
    already one vector per input (batch × dim), kept as they are. The other
    parameters are those of :class:`PretrainedExtractor` and of the word
    windows (:mod:`feature_extractors.text`).

    The towers' layers ``text.k`` and ``vision.k`` share the label ``towerk``
    but not a space: the two towers are separate encoders, so their pair is
    unaligned (:meth:`pairing`); subclasses declare their aligned layers.

    Raises
    ------
    BrainencInputError
        Bad settings or a slow tokenizer.
    """

    modalities = ("story", "movie")

    def __init__(self, model: str | os.PathLike, model_class, context_words: int, token_pooling: str,
                 frame_pooling: str, device: str, dtype: str, batch_size: int, max_tokens: int | None,
                 revision: str | None = None):
        from transformers import AutoImageProcessor

        check_window_settings(context_words, token_pooling, max_tokens)
        check_frame_pooling(frame_pooling)
        super().__init__(model, device, dtype, batch_size, revision)
        self.context_words = context_words
        self.token_pooling = token_pooling
        self.frame_pooling = frame_pooling
        self.tokenizer = load_fast_tokenizer(self.model_id, self.revision)
        # without torchvision, transformers picks the PIL implementation; its class is in identity()
        self.image_processor = self._load(AutoImageProcessor)
        self.model = self._load_model(model_class)
        self.config = self.model.config
        self.image_size = int(self.config.vision_config.image_size)
        self._n_patches = patch_count(self.config.vision_config, self.image_size, self.image_size)

    def identity(self) -> dict:
        return {
            **self._model_identity(type(self.model).__name__, self.config),
            **window_identity(self.tokenizer, self.context_words, self.token_pooling, self.max_tokens),
            **processor_identity(self.image_processor),
            "frame_pooling": self.frame_pooling,
        }

    def pairing(self, label: str) -> LayerPair:
        """Tower layers (``towerk``) pair two separate encoders: unaligned."""
        match = re.fullmatch(r"tower(\d+)", label)
        if match:
            k = match.group(1)
            return LayerPair(False, f"unaligned: separate encoders (text tower layer {k}, "
                                    f"vision tower layer {k})")
        return super().pairing(label)

    def embed_words(self, words: Sequence[str], layers: Sequence[str]) -> dict[str, np.ndarray]:
        layers = self._check_layers("story", layers)
        windows = word_windows(list(words), self.tokenizer, self.context_words, self.max_tokens)
        out = {layer: np.zeros((len(windows), self._layer_dim(layer)), np.float32) for layer in layers}
        for batch in length_sorted_batches(windows, self.batch_size):
            chunk = [windows[k] for k in batch]
            for layer, states in self._word_states(chunk, layers).items():
                states = states.float().cpu().numpy()
                out[layer][batch] = states if states.ndim == 2 else pool_word(states, chunk, self.token_pooling)
        return out

    def embed_frames(self, frames: Sequence[np.ndarray], layers: Sequence[str]) -> dict[str, np.ndarray]:
        layers = self._check_layers("movie", layers)
        frames = check_frames(frames)
        out = {layer: np.zeros((len(frames), self._layer_dim(layer)), np.float32) for layer in layers}
        for start in range(0, len(frames), self.batch_size):
            chunk = frames[start : start + self.batch_size]
            pixels = preprocess_frames(self.image_processor, chunk, self.image_size)
            for layer, states in self._frame_states(pixels, layers).items():
                if states.ndim != 2:
                    states = pool_frame_states(states, self.frame_pooling, self._n_patches)
                out[layer][start : start + len(chunk)] = states.float().cpu().numpy()
        return out

    def _check_layers(self, modality: str, layers: Sequence[str]) -> list[str]:
        """The requested layer names, or an error naming the unknown ones and listing those available."""
        available = self.layers(modality)
        layers = [str(layer) for layer in layers]
        unknown = [layer for layer in layers if layer not in available]
        if unknown:
            raise BrainencInputError(None, f"unknown {modality} layer(s) {unknown}{self._layer_hint(layers)}; "
                                           f"available layers: {list(available)}")
        return layers

    def _layer_hint(self, layers: Sequence[str]) -> str:
        """Why some requested layers may be missing (a setting that would add them), or ``""``."""
        return ""

    def _layer_dim(self, layer: str) -> int:
        """Vector size of a layer: the hidden size of its tower (``text.*``: text, else vision)."""
        tower = self.config.text_config if layer.startswith("text.") else self.config.vision_config
        return int(tower.hidden_size)

    def _word_states(self, windows: Sequence[WordWindow], layers: Sequence[str]) -> dict[str, torch.Tensor]:
        """States of the requested story layers for a batch of word windows."""
        raise NotImplementedError

    def _frame_states(self, pixels: torch.Tensor, layers: Sequence[str]) -> dict[str, torch.Tensor]:
        """States of the requested movie layers for a batch of preprocessed frames."""
        raise NotImplementedError


class _HuggingFaceExtractor(PretrainedExtractor):
    """Shared loading and layer bookkeeping of the ``AutoModel`` extractors."""

    #: The one modality this extractor embeds.
    modality: str = ""

    def __init__(self, model: str | os.PathLike, device: str, dtype: str, batch_size: int,
                 revision: str | None = None):
        from transformers import AutoConfig

        super().__init__(model, device, dtype, batch_size, revision)
        self.config = self._load(AutoConfig)
        n_layers = getattr(self.config, "num_hidden_layers", None)
        self._n_layers: int | None = n_layers if isinstance(n_layers, int) else None
        self._model = None

    def model_class(self) -> str:
        """Name of the class ``AutoModel`` builds for this configuration."""
        from transformers.models.auto.modeling_auto import MODEL_MAPPING

        try:
            return MODEL_MAPPING[type(self.config)].__name__
        except (KeyError, ValueError):
            return type(self.config).__name__

    def model(self):
        """The model, loaded on first use, in evaluation mode on the chosen device and dtype."""
        if self._model is None:
            from transformers import AutoModel

            model = self._load_model(AutoModel)
            if hasattr(model.config, "use_cache"):
                model.config.use_cache = False  # no key/value cache: one forward pass per window
            self._model = model
        return self._model

    def n_layers(self) -> int:
        """Number of layers after the embedding output (``layer.N`` is the last)."""
        if self._n_layers is None:
            self._n_layers = len(self._probe_hidden_states()) - 1
        return self._n_layers

    def layers(self, modality: str) -> list[str]:
        if modality != self.modality:
            raise BrainencInputError(
                None, f"{type(self).__name__} embeds {self.modality} stimuli only, not {modality!r}")
        return [f"layer.{k}" for k in range(self.n_layers() + 1)]

    def _base_identity(self) -> dict:
        return self._model_identity(self.model_class(), self.config)

    def _check_layers(self, layers: Sequence[str]) -> list[str]:
        available = self.layers(self.modality)
        names = list(layers)
        unknown = [name for name in names if name not in available]
        if unknown:
            raise BrainencInputError(None, f"unknown layers {unknown} for {self.model_id!r}; available layers: "
                                           f"{available[0]} … {available[-1]}")
        return names

    def _hidden_states(self, outputs) -> tuple:
        hidden = getattr(outputs, "hidden_states", None)
        if hidden is None:
            raise BrainencInputError(
                None, f"the model {self.model_id!r} ({self.model_class()}) returned no hidden states "
                      "with output_hidden_states=True; it cannot be used for layer-wise features")
        if self._n_layers is not None and len(hidden) != self._n_layers + 1:
            raise BrainencInputError(
                None, f"the model {self.model_id!r} returned {len(hidden)} hidden states; its configuration "
                      f"has {self._n_layers} layers, so {self._n_layers + 1} were expected")
        return hidden

    def _probe_hidden_states(self) -> tuple:
        """Hidden states of one small input, for models whose configuration gives no layer count."""
        raise NotImplementedError


def _position_limit(config) -> int | None:
    """Most tokens the model's position table accepts, or None when unknown.

    RoBERTa-style models number positions from ``padding_idx + 1``, so their
    table of ``max_position_embeddings`` rows holds ``padding_idx + 1`` fewer
    tokens. The model is built on the meta device (no memory, no weights) to
    read that offset from its position embedding instead of from a list of
    model families.
    """
    from transformers import AutoModel

    limit = getattr(config, "max_position_embeddings", None)
    if not isinstance(limit, int) or limit <= 0:
        return None
    try:
        with torch.device("meta"):
            skeleton = AutoModel.from_config(config)
    except Exception:  # noqa: BLE001 - any failure leaves the configured limit
        return limit
    for module_name, module in skeleton.named_modules():
        if (isinstance(module, torch.nn.Embedding) and "position" in module_name
                and module.padding_idx is not None):
            limit = min(limit, module.num_embeddings - module.padding_idx - 1)
    return limit


class LanguageModelExtractor(_HuggingFaceExtractor):
    """Story words in context through a Hugging Face text model.

    Each word is embedded from one forward pass over the word and its
    ``context_words`` preceding words (see :mod:`feature_extractors.text`);
    windows are batched with right padding and an attention mask.

    Layers (story): ``layer.0`` is the embedding output, ``layer.k`` the output
    of transformer layer ``k``, up to ``layer.N`` — the model's
    ``hidden_states`` as returned with ``output_hidden_states=True`` (for
    GPT-2-style models the last one includes the final layer norm).

    Parameters
    ----------
    model : str or path-like
        Hub id or local folder of an encoder-only or decoder-only model with a
        fast tokenizer.
    context_words : int
        Preceding words in each window (default 20).
    token_pooling : {"last", "mean"}
        The word's vector is its last token's hidden state, or the mean over
        its tokens.
    device : str
        ``"auto"`` (CUDA when available, else CPU), ``"cpu"``, ``"cuda"``, ``"cuda:1"``...
    dtype : {"float32", "float16", "bfloat16"}
        Precision of the forward pass; half precisions need a GPU. Vectors are
        returned as float32.
    batch_size : int
        Windows per forward pass.
    max_tokens : int, optional
        Token limit of a window, special tokens included; the earliest context
        words are dropped until a window fits. Default: the smaller of the
        tokenizer's ``model_max_length`` (when set) and the model's position
        limit (``max_position_embeddings``, less the position offset of
        RoBERTa-style models: 514 → 512).
    revision : str, optional
        Hub revision (branch, tag or commit) of a hub id; an error for a local folder.

    Raises
    ------
    BrainencInputError
        A slow (Python) tokenizer, no padding or end-of-sequence token, a
        ``max_tokens`` above the model's limit, or bad settings.
    """

    modality = "story"
    modalities = ("story",)

    def __init__(
        self,
        model: str | os.PathLike,
        context_words: int = 20,
        token_pooling: str = "last",
        device: str = "auto",
        dtype: str = "float32",
        batch_size: int = 32,
        max_tokens: int | None = None,
        revision: str | None = None,
    ):
        check_window_settings(context_words, token_pooling, max_tokens)
        super().__init__(model, device, dtype, batch_size, revision)
        self.context_words = context_words
        self.token_pooling = token_pooling
        self.tokenizer = load_fast_tokenizer(self.model_id, self.revision)
        pad_id = self.tokenizer.pad_token_id
        if pad_id is None:
            pad_id = self.tokenizer.eos_token_id  # GPT-2 style: padding is masked, any id will do
        if pad_id is None:
            raise BrainencInputError(None, f"the tokenizer of {self.model_id!r} has neither a padding nor an "
                                           "end-of-sequence token to pad batches with")
        self.pad_id = int(pad_id)
        self.max_tokens = window_token_limit(max_tokens, self.tokenizer, _position_limit(self.config), self.model_id)

    def identity(self) -> dict:
        return {
            **self._base_identity(),
            **window_identity(self.tokenizer, self.context_words, self.token_pooling, self.max_tokens),
        }

    def embed_words(self, words: Sequence[str], layers: Sequence[str]) -> dict[str, np.ndarray]:
        names = self._check_layers(layers)
        words = list(words)
        if not words:
            return {name: np.zeros((0, self.config.hidden_size), dtype=np.float32) for name in names}
        windows = word_windows(words, self.tokenizer, self.context_words, self.max_tokens)
        model = self.model()
        out: dict[str, np.ndarray] = {}
        with torch.inference_mode():
            for batch in length_sorted_batches(windows, self.batch_size):
                chunk = [windows[k] for k in batch]
                ids, mask = pad_windows(chunk, self.pad_id)
                outputs = model(
                    input_ids=torch.from_numpy(ids).to(self.device),
                    attention_mask=torch.from_numpy(mask).to(self.device),
                    output_hidden_states=True,
                )
                hidden = self._hidden_states(outputs)
                for name in names:
                    states = hidden[layer_index(name)].float().cpu().numpy()
                    vectors = pool_word(states, chunk, self.token_pooling)
                    if name not in out:
                        out[name] = np.empty((len(words), vectors.shape[1]), dtype=np.float32)
                    out[name][batch] = vectors
        return out

    def _probe_hidden_states(self) -> tuple:
        ids = self.tokenizer("a", return_tensors="pt")
        with torch.inference_mode():
            outputs = self.model()(**{k: v.to(self.device) for k, v in ids.items()}, output_hidden_states=True)
        return self._hidden_states(outputs)


class VisionModelExtractor(_HuggingFaceExtractor):
    """Movie frames through a Hugging Face vision model.

    Frames are prepared by the model's own image processor
    (``AutoImageProcessor``: its resizing, cropping and normalisation) and run
    in batches; each layer gives one vector per frame.

    Layers (movie): ``layer.0`` is the embedding output (patch embeddings, or a
    convolutional stem), ``layer.k`` the output of block or stage ``k``, up to
    ``layer.N`` — the model's ``hidden_states`` with ``output_hidden_states=True``.
    As vision configurations count blocks and stages in different ways, the
    layers are counted on one forward pass of a blank frame: :meth:`layers`
    loads the model.

    Parameters
    ----------
    model : str or path-like
        Hub id or local folder of a vision model that ``AutoModel`` loads and
        that takes ``pixel_values`` alone.
    frame_pooling : {"cls", "mean"}
        ``"cls"``: the class token (token 0); ``"mean"``: the mean of the patch
        tokens, without class, distillation or register tokens. Layers whose
        hidden states are feature maps ``(batch, channels, height, width)``
        (convolutional networks) are average-pooled over space instead.
    device : str
        ``"auto"`` (CUDA when available, else CPU), ``"cpu"``, ``"cuda"``...
    dtype : {"float32", "float16", "bfloat16"}
        Precision of the forward pass; half precisions need a GPU.
    batch_size : int
        Frames per forward pass.
    revision : str, optional
        Hub revision (branch, tag or commit) of a hub id; an error for a local folder.
    """

    modality = "movie"
    modalities = ("movie",)

    def __init__(
        self,
        model: str | os.PathLike,
        frame_pooling: str = "cls",
        device: str = "auto",
        dtype: str = "float32",
        batch_size: int = 16,
        revision: str | None = None,
    ):
        from transformers import AutoImageProcessor

        check_frame_pooling(frame_pooling)
        super().__init__(model, device, dtype, batch_size, revision)
        self.frame_pooling = frame_pooling
        # layer counts of vision configurations are not uniform (blocks, stages, depths...):
        # count the hidden states of a forward pass instead
        self._n_layers = None
        # without torchvision, transformers picks the PIL implementation of the processor
        self.processor = self._load(AutoImageProcessor)

    def identity(self) -> dict:
        return {
            **self._base_identity(),
            **processor_identity(self.processor),
            "frame_pooling": self.frame_pooling,
        }

    def embed_frames(self, frames: Sequence[np.ndarray], layers: Sequence[str]) -> dict[str, np.ndarray]:
        names = self._check_layers(layers)
        frames = check_frames(frames)
        if not frames:
            # the vector sizes of a layer are only known from a forward pass
            hidden, (height, width) = self._forward([np.zeros((64, 64, 3), dtype=np.uint8)])
            return {name: np.zeros((0, self._pool(hidden[layer_index(name)], height, width).shape[1]),
                                   dtype=np.float32) for name in names}
        out: dict[str, np.ndarray] = {}
        for start in range(0, len(frames), self.batch_size):
            chunk = frames[start : start + self.batch_size]
            hidden, (height, width) = self._forward(chunk)
            for name in names:
                vectors = self._pool(hidden[layer_index(name)], height, width).float().cpu().numpy()
                if name not in out:
                    out[name] = np.empty((len(frames), vectors.shape[1]), dtype=np.float32)
                out[name][start : start + len(chunk)] = vectors
        return out

    def _pool(self, states: torch.Tensor, height: int, width: int) -> torch.Tensor:
        return pool_frame_states(states, self.frame_pooling, patch_count(self.config, height, width))

    def _forward(self, frames: list[np.ndarray]) -> tuple[tuple, tuple[int, int]]:
        pixels = preprocess_frames(self.processor, frames).to(device=self.device, dtype=self.torch_dtype)
        with torch.inference_mode():
            outputs = self.model()(pixel_values=pixels, output_hidden_states=True)
        return self._hidden_states(outputs), tuple(pixels.shape[-2:])

    def _probe_hidden_states(self) -> tuple:
        hidden, _ = self._forward([np.zeros((64, 64, 3), dtype=np.uint8)])
        return hidden


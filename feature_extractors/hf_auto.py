"""Unimodal baselines: any Hugging Face text or vision model, every layer.

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

import numpy as np
import torch

from brainenc.errors import BrainencInputError
from feature_extractors.base import FeatureExtractor, identity_hash, slugify
from feature_extractors.loading import load_pretrained
from feature_extractors.text import TOKEN_POOLING, length_sorted_batches, pad_windows, pool_word, word_windows

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
FRAME_POOLING = ("cls", "mean")

# A tokenizer without a configured limit reports a huge sentinel (about 1e30).
_NO_TOKENIZER_LIMIT = 1_000_000


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


def _layer_index(name: str) -> int:
    return int(name.split(".", 1)[1])


class _HuggingFaceExtractor(FeatureExtractor):
    """Shared loading, device handling and layer bookkeeping of the ``AutoModel`` extractors."""

    #: The one modality this extractor embeds.
    modality: str = ""

    def __init__(self, model: str | os.PathLike, device: str, dtype: str, batch_size: int):
        from transformers import AutoConfig

        if not isinstance(batch_size, int) or batch_size < 1:
            raise BrainencInputError(None, f"batch_size must be a positive integer, got {batch_size!r}")
        self.model_id = os.fspath(model)
        self.device = resolve_device(device)
        self.dtype = dtype
        self.torch_dtype = resolve_dtype(dtype, self.device)
        self.batch_size = batch_size
        self.config = load_pretrained(self.model_id, AutoConfig)
        n_layers = getattr(self.config, "num_hidden_layers", None)
        self._n_layers: int | None = n_layers if isinstance(n_layers, int) else None
        self._model = None

    @property
    def name(self) -> str:
        return model_name(self.model_id)

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

            model = load_pretrained(self.model_id, AutoModel)
            if hasattr(model.config, "use_cache"):
                model.config.use_cache = False  # no key/value cache: one forward pass per window
            self._model = model.to(device=self.device, dtype=self.torch_dtype).eval()
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
        return {
            "extractor": type(self).__name__,
            "model": self.model_id,
            "revision": getattr(self.config, "_commit_hash", None),
            "model_class": self.model_class(),
            "config_hash": config_hash(self.config),
            "dtype": self.dtype,
        }

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
    ):
        from transformers import AutoTokenizer

        if not isinstance(context_words, int) or context_words < 0:
            raise BrainencInputError(None, f"context_words must be an integer >= 0, got {context_words!r}")
        if token_pooling not in TOKEN_POOLING:
            raise BrainencInputError(None, f"token_pooling must be one of {TOKEN_POOLING}, got {token_pooling!r}")
        if max_tokens is not None and (not isinstance(max_tokens, int) or max_tokens < 1):
            raise BrainencInputError(None, f"max_tokens must be a positive integer, got {max_tokens!r}")
        super().__init__(model, device, dtype, batch_size)
        self.context_words = context_words
        self.token_pooling = token_pooling
        self.tokenizer = load_pretrained(self.model_id, AutoTokenizer)
        if not getattr(self.tokenizer, "is_fast", False):
            raise BrainencInputError(
                None, f"the tokenizer of {self.model_id!r} ({type(self.tokenizer).__name__}) is not a fast "
                      "tokenizer; word windows need the character offsets only fast (Rust) tokenizers give")
        pad_id = self.tokenizer.pad_token_id
        if pad_id is None:
            pad_id = self.tokenizer.eos_token_id  # GPT-2 style: padding is masked, any id will do
        if pad_id is None:
            raise BrainencInputError(None, f"the tokenizer of {self.model_id!r} has neither a padding nor an "
                                           "end-of-sequence token to pad batches with")
        self.pad_id = int(pad_id)
        model_limit = _position_limit(self.config)
        if max_tokens is None:
            limits = [model_limit]
            tokenizer_limit = getattr(self.tokenizer, "model_max_length", None)
            if isinstance(tokenizer_limit, int) and 0 < tokenizer_limit < _NO_TOKENIZER_LIMIT:
                limits.append(tokenizer_limit)
            known = [limit for limit in limits if limit is not None]
            max_tokens = min(known) if known else None
        elif model_limit is not None and max_tokens > model_limit:
            raise BrainencInputError(None, f"max_tokens={max_tokens} exceeds the {model_limit} positions "
                                           f"of {self.model_id!r}")
        self.max_tokens = max_tokens

    def identity(self) -> dict:
        backend = getattr(self.tokenizer, "backend_tokenizer", None)
        return {
            **self._base_identity(),
            "tokenizer_hash": identity_hash({"tokenizer": backend.to_str()}) if backend is not None else None,
            "context_words": self.context_words,
            "token_pooling": self.token_pooling,
            "max_tokens": self.max_tokens,
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
                    states = hidden[_layer_index(name)].float().cpu().numpy()
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


def _patch_grid(config, height: int, width: int) -> int | None:
    """Number of image patches a ViT-style model makes of a ``height × width`` input."""
    patch = getattr(config, "patch_size", None)
    if isinstance(patch, int) and patch > 0:
        return (height // patch) * (width // patch)
    if isinstance(patch, (list, tuple)) and len(patch) == 2 and all(isinstance(p, int) and p > 0 for p in patch):
        return (height // patch[0]) * (width // patch[1])
    return None


def pool_frame_states(states: torch.Tensor, pooling: str, n_patches: int | None) -> torch.Tensor:
    """One vector per frame from one layer's hidden states.

    Parameters
    ----------
    states : tensor
        ``(batch, tokens, dim)`` for transformers, ``(batch, channels, height,
        width)`` for convolutional networks.
    pooling : {"cls", "mean"}
        For token states: ``"cls"`` takes token 0; ``"mean"`` averages the
        patch tokens, leaving out the leading class, distillation or register
        tokens (the tokens beyond ``n_patches``; one when ``n_patches`` is
        unknown). Spatial states are always averaged over height and width
        (global average pooling), whatever ``pooling`` says.
    n_patches : int or None
        Patch tokens of the input, from the model's patch size.

    Raises
    ------
    BrainencInputError
        ``"cls"`` for a layer without a class token (every token is a patch),
        or states of another rank.
    """
    if states.ndim == 4:
        return states.mean(dim=(2, 3))
    if states.ndim != 3:
        raise BrainencInputError(None, f"hidden states of shape {tuple(states.shape)} are neither "
                                       "(batch, tokens, dim) nor (batch, channels, height, width)")
    n_tokens = states.shape[1]
    n_prefix = 1 if n_patches is None else max(n_tokens - n_patches, 0)
    if pooling == "cls":
        if n_prefix == 0:
            raise BrainencInputError(None, "this layer has no class token (all its tokens are image patches); "
                                           "use frame_pooling='mean'")
        return states[:, 0]
    if n_prefix >= n_tokens:
        raise BrainencInputError(None, f"no patch tokens to average among {n_tokens} tokens")
    return states[:, n_prefix:].mean(dim=1)


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
    ):
        from transformers import AutoImageProcessor

        if frame_pooling not in FRAME_POOLING:
            raise BrainencInputError(None, f"frame_pooling must be one of {FRAME_POOLING}, got {frame_pooling!r}")
        super().__init__(model, device, dtype, batch_size)
        self.frame_pooling = frame_pooling
        # layer counts of vision configurations are not uniform (blocks, stages, depths...):
        # count the hidden states of a forward pass instead
        self._n_layers = None
        # without torchvision, transformers picks the PIL implementation of the processor
        self.processor = load_pretrained(self.model_id, AutoImageProcessor)

    def identity(self) -> dict:
        return {
            **self._base_identity(),
            "processor_class": type(self.processor).__name__,
            "processor_hash": identity_hash(self.processor.to_dict()),
            "frame_pooling": self.frame_pooling,
        }

    def embed_frames(self, frames: Sequence[np.ndarray], layers: Sequence[str]) -> dict[str, np.ndarray]:
        names = self._check_layers(layers)
        frames = [_check_frame(frame, k) for k, frame in enumerate(frames)]
        if not frames:
            # the vector sizes of a layer are only known from a forward pass
            hidden, (height, width) = self._forward([np.zeros((64, 64, 3), dtype=np.uint8)])
            return {name: np.zeros((0, self._pool(hidden[_layer_index(name)], height, width).shape[1]),
                                   dtype=np.float32) for name in names}
        out: dict[str, np.ndarray] = {}
        for start in range(0, len(frames), self.batch_size):
            chunk = frames[start : start + self.batch_size]
            hidden, (height, width) = self._forward(chunk)
            for name in names:
                vectors = self._pool(hidden[_layer_index(name)], height, width).float().cpu().numpy()
                if name not in out:
                    out[name] = np.empty((len(frames), vectors.shape[1]), dtype=np.float32)
                out[name][start : start + len(chunk)] = vectors
        return out

    def _pool(self, states: torch.Tensor, height: int, width: int) -> torch.Tensor:
        return pool_frame_states(states, self.frame_pooling, _patch_grid(self.config, height, width))

    def _forward(self, frames: list[np.ndarray]) -> tuple[tuple, tuple[int, int]]:
        inputs = self.processor(images=frames, return_tensors="pt", input_data_format="channels_last")
        pixels = inputs["pixel_values"].to(device=self.device, dtype=self.torch_dtype)
        with torch.inference_mode():
            outputs = self.model()(pixel_values=pixels, output_hidden_states=True)
        return self._hidden_states(outputs), tuple(pixels.shape[-2:])

    def _probe_hidden_states(self) -> tuple:
        hidden, _ = self._forward([np.zeros((64, 64, 3), dtype=np.uint8)])
        return hidden


def _check_frame(frame, index: int) -> np.ndarray:
    array = np.asarray(frame)
    if array.ndim != 3 or array.shape[-1] != 3 or array.dtype != np.uint8:
        raise BrainencInputError(None, f"frame {index} has shape {array.shape} and dtype {array.dtype}; "
                                       "frames must be (height, width, 3) uint8 RGB arrays")
    return array

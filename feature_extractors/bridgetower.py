"""BridgeTower features of story words and movie frames, every layer.

BridgeTower (Xu et al., AAAI 2023) has a text tower (RoBERTa layers), a vision
tower (CLIP-style ViT blocks) and ``K`` cross-modal layers; cross-modal layer
``k`` is fed by layer ``N - K + k`` of both towers through "bridges". Its ``forward`` needs both a
text and an image, while stories have no images and movies no text. Two
input modes make the missing modality explicit:

``"towers"`` (default)
    Words go through the text tower alone and frames through the vision tower
    alone. The towers never see the other modality in BridgeTower (the
    cross-modal layers sit on top of them), so these are exactly the tower
    states of a full forward pass, whatever the other input. Cross-modal layers
    are not available.
``"neutral"``
    The full model runs with a neutral input for the missing modality: a
    uniform mid-grey image (RGB 128, 128, 128, at the vision tower's input
    size, through the image processor) for words, and the empty text (the
    tokenizer's special tokens only) for frames. Adds the cross-modal layers.

Layers (``N`` text-tower layers, ``M`` vision-tower layers, ``K`` cross-modal
layers; base: 12, 12, 6):

* story: ``text.0`` (token + position embeddings, after their LayerNorm),
  ``text.k`` (output of text layer ``k``), then in neutral mode
  ``cross.text.1 … cross.text.K`` (text stream of cross-modal layer ``k``);
  each pooled over the word's tokens like every text extractor
  (:mod:`feature_extractors.text`).
* movie: ``vision.0`` (patch + position embeddings after ``ln_pre``: the
  input of the first vision block), ``vision.k`` (output of vision block
  ``k``; the raw residual stream, before ``ln_post``), then in neutral mode
  ``cross.vision.1 … cross.vision.K`` (image stream of cross-modal layer
  ``k``); each pooled over tokens by ``frame_pooling``: the class token or the
  mean of the patch tokens. In neutral mode the vision layers are those the
  full forward pass computes, ``vision.0 … vision.N`` (it runs as many vision
  blocks as there are text layers; base: 12).

``BridgeTowerModel.forward`` (transformers 5.x) returns ``hidden_states`` as
a tuple ``(text, image, cross)``: ``N + 1`` text states (batch × tokens ×
hidden), ``N + 1`` image states stored *sequence-first* (tokens × batch ×
hidden) and ``K`` pairs ``(text stream, image stream)``, both batch-first.
``BridgeTowerVisionModel.forward`` instead returns ``ln_post`` applied to the
outputs of blocks ``1 … M``; the vision layers here keep the raw residual
stream so that they equal the full model's image states in both modes.
"""
from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
import torch

from brainenc.errors import BrainencInputError
from feature_extractors.base import FeatureExtractor, identity_hash
from feature_extractors.hf_auto import (
    FRAME_POOLING,
    config_hash,
    model_name,
    pool_frame_states,
    resolve_device,
    resolve_dtype,
)
from feature_extractors.loading import load_pretrained
from feature_extractors.text import (
    TOKEN_POOLING,
    WordWindow,
    length_sorted_batches,
    pad_windows,
    pool_word,
    word_windows,
)

INPUT_MODES = ("towers", "neutral")

#: BridgeTower was pretrained on captions cut at 50 tokens (``max_text_len`` of
#: the original code); its position table, inherited from RoBERTa, is longer.
BRIDGETOWER_PRETRAINING_TEXT_TOKENS = 50

#: Grey level (0-255, all three channels) of the neutral image given with words.
NEUTRAL_GREY = 128

#: Tokenizers that set no limit report a huge ``model_max_length``.
_NO_TOKENIZER_LIMIT = 1_000_000


class BridgeTowerExtractor(FeatureExtractor):
    """Every layer of a BridgeTower model for story words and movie frames.

    Parameters
    ----------
    model : str or path-like
        Hub id (``"BridgeTower/bridgetower-base"``) or local folder holding the
        model, its fast tokenizer and its image processor.
    context_words : int
        Preceding words in each word's window (default 20).
    token_pooling : {"last", "mean"}
        A word's vector: its last token or the mean of its tokens.
    frame_pooling : {"cls", "mean"}
        A frame's vector: the class token or the mean of the patch tokens.
    input_mode : {"towers", "neutral"}
        ``"towers"``: each modality through its own tower; ``"neutral"``: the
        full model with a neutral input for the missing modality, adding the
        cross-modal layers (see the module notes).
    device : str
        ``"auto"`` (CUDA when available, else CPU), ``"cpu"``, ``"cuda"``, ``"cuda:1"``...
    dtype : {"float32", "float16", "bfloat16"}
        Precision of the forward passes (half precisions need a GPU); vectors
        are returned as float32.
    batch_size : int
        Windows or frames per forward pass; does not change the vectors.
    max_tokens : int, optional
        Token limit of a window, special tokens included: the earliest context
        words are dropped until a window fits. Default: the smallest of the
        text position table (514 rows less RoBERTa's offset of 2 in the base
        model), the tokenizer's ``model_max_length`` and the pretraining
        caption length (the configuration's ``max_text_len`` when it stores
        one, else :data:`BRIDGETOWER_PRETRAINING_TEXT_TOKENS` = 50).

    Raises
    ------
    BrainencInputError
        Bad settings, a slow tokenizer, or a ``max_tokens`` beyond the position table.

    Examples
    --------
    >>> extractor = BridgeTowerExtractor("BridgeTower/bridgetower-base",
    ...                                  input_mode="neutral")  # doctest: +SKIP
    >>> extractor.layers("story")[-1]  # doctest: +SKIP
    'cross.text.6'
    >>> vectors = extractor.embed_words(words, ["text.8", "cross.text.3"])  # doctest: +SKIP
    """

    modalities = ("story", "movie")

    def __init__(
        self,
        model: str | os.PathLike,
        context_words: int = 20,
        token_pooling: str = "last",
        frame_pooling: str = "cls",
        input_mode: str = "towers",
        device: str = "auto",
        dtype: str = "float32",
        batch_size: int = 16,
        max_tokens: int | None = None,
    ):
        from transformers import AutoImageProcessor, AutoTokenizer, BridgeTowerModel

        check_text_and_frame_settings(context_words, token_pooling, frame_pooling, batch_size, max_tokens)
        if input_mode not in INPUT_MODES:
            raise BrainencInputError(None, f"input_mode must be one of {INPUT_MODES}, got {input_mode!r}")
        self.model_id = os.fspath(model)
        self.context_words = context_words
        self.token_pooling = token_pooling
        self.frame_pooling = frame_pooling
        self.input_mode = input_mode
        self.device = resolve_device(device)
        self.dtype = dtype
        self.batch_size = batch_size

        torch_dtype = resolve_dtype(dtype, self.device)
        self.tokenizer = load_pretrained(self.model_id, AutoTokenizer)
        if not getattr(self.tokenizer, "is_fast", False):
            raise BrainencInputError(
                None, f"the tokenizer of {self.model_id!r} ({type(self.tokenizer).__name__}) is not a fast "
                      "tokenizer; word windows need the character offsets only fast tokenizers give")
        # without torchvision, transformers picks the PIL implementation; its class is in identity()
        self.image_processor = load_pretrained(self.model_id, AutoImageProcessor)
        self.model = load_pretrained(self.model_id, BridgeTowerModel)
        self.model.to(device=self.device, dtype=torch_dtype).eval()

        config = self.model.config
        pad_id = self.tokenizer.pad_token_id
        self.pad_id = int(pad_id if pad_id is not None else config.text_config.pad_token_id or 0)
        # RoBERTa numbers positions from padding_idx + 1: that many rows are never used
        positions = self.model.text_model.embeddings.position_embeddings
        offset = 0 if positions.padding_idx is None else positions.padding_idx + 1
        position_limit = positions.num_embeddings - offset
        if max_tokens is None:
            pretraining_limit = getattr(config, "max_text_len", None) or BRIDGETOWER_PRETRAINING_TEXT_TOKENS
            limits = [position_limit, tokenizer_token_limit(self.tokenizer), int(pretraining_limit)]
            max_tokens = min(limit for limit in limits if limit is not None)
        elif max_tokens > position_limit:
            raise BrainencInputError(None, f"max_tokens={max_tokens} exceeds the {position_limit} text positions "
                                           f"of {self.model_id!r}")
        self.max_tokens = int(max_tokens)

        self.n_text_layers = len(self.model.text_model.encoder.layer)
        self.n_vision_blocks = len(self.model.vision_model.visual.transformer.resblocks)
        self.n_cross_layers = len(self.model.cross_modal_text_layers)
        self.image_size = int(config.vision_config.image_size)
        self._n_patches = (self.image_size // int(config.vision_config.patch_size)) ** 2
        self._neutral_pixels = None

    # -- contract ---------------------------------------------------------- #
    @property
    def name(self) -> str:
        return model_name(self.model_id)

    def layers(self, modality: str) -> list[str]:
        if modality == "story":
            names = [f"text.{k}" for k in range(self.n_text_layers + 1)]
            if self.input_mode == "neutral":
                names += [f"cross.text.{k}" for k in range(1, self.n_cross_layers + 1)]
            return names
        if modality == "movie":
            # the full forward pass runs one vision block per text layer
            n_vision = self.n_vision_blocks if self.input_mode == "towers" else self.n_text_layers
            names = [f"vision.{k}" for k in range(n_vision + 1)]
            if self.input_mode == "neutral":
                names += [f"cross.vision.{k}" for k in range(1, self.n_cross_layers + 1)]
            return names
        raise BrainencInputError(None, f"modality must be 'story' or 'movie', got {modality!r}")

    def identity(self) -> dict:
        # device and batch size change nothing beyond rounding: left out so that caches travel
        return {
            "extractor": type(self).__name__,
            "model": self.model_id,
            "model_class": type(self.model).__name__,
            "config_hash": config_hash(self.model.config),
            "tokenizer_hash": identity_hash({"tokenizer": self.tokenizer.backend_tokenizer.to_str()}),
            "processor_class": type(self.image_processor).__name__,
            "processor_hash": identity_hash(self.image_processor.to_dict()),
            "input_mode": self.input_mode,
            "neutral_inputs": ({"image_grey": NEUTRAL_GREY, "text": ""}
                               if self.input_mode == "neutral" else None),
            "context_words": self.context_words,
            "token_pooling": self.token_pooling,
            "max_tokens": self.max_tokens,
            "frame_pooling": self.frame_pooling,
            "dtype": self.dtype,
        }

    def embed_words(self, words: Sequence[str], layers: Sequence[str]) -> dict[str, np.ndarray]:
        layers = self._check_layers("story", layers)
        windows = word_windows(list(words), self.tokenizer, self.context_words, self.max_tokens)
        out = {layer: np.zeros((len(windows), self._layer_dim(layer)), np.float32) for layer in layers}
        for batch in length_sorted_batches(windows, self.batch_size):
            chunk = [windows[k] for k in batch]
            for layer, states in self._word_states(chunk, layers).items():
                out[layer][batch] = pool_word(states.float().cpu().numpy(), chunk, self.token_pooling)
        return out

    def embed_frames(self, frames: Sequence[np.ndarray], layers: Sequence[str]) -> dict[str, np.ndarray]:
        layers = self._check_layers("movie", layers)
        frames = check_frames(frames)
        out = {layer: np.zeros((len(frames), self._layer_dim(layer)), np.float32) for layer in layers}
        for start in range(0, len(frames), self.batch_size):
            chunk = frames[start : start + self.batch_size]
            pixels = preprocess_frames(self.image_processor, chunk, self.image_size)
            for layer, states in self._frame_states(pixels, layers).items():
                pooled = pool_frame_states(states, self.frame_pooling, self._n_patches)
                out[layer][start : start + len(chunk)] = pooled.float().cpu().numpy()
        return out

    # -- forward passes ---------------------------------------------------- #
    def _check_layers(self, modality: str, layers: Sequence[str]) -> list[str]:
        hint = ""
        if self.input_mode == "towers" and any(str(layer).startswith("cross.") for layer in layers):
            hint = " (cross-modal layers need input_mode='neutral')"
        return check_requested_layers(self.layers(modality), layers, modality, hint)

    def _layer_dim(self, layer: str) -> int:
        config = self.model.config
        if layer.startswith("cross."):
            return int(config.hidden_size)
        if layer.startswith("text."):
            return int(config.text_config.hidden_size)
        return int(config.vision_config.hidden_size)

    def _neutral_image(self) -> torch.Tensor:
        """Pixel values (1 × 3 × size × size) of the uniform grey image."""
        if self._neutral_pixels is None:
            grey = np.full((self.image_size, self.image_size, 3), NEUTRAL_GREY, dtype=np.uint8)
            self._neutral_pixels = preprocess_frames(self.image_processor, [grey], self.image_size)
        return self._neutral_pixels

    def _word_states(self, windows: Sequence[WordWindow], layers: Sequence[str]) -> dict[str, torch.Tensor]:
        """Hidden states (batch × tokens × dim) of the requested story layers."""
        ids, mask = pad_windows(windows, self.pad_id)
        ids = torch.from_numpy(ids).to(self.device)
        mask = torch.from_numpy(mask).to(self.device)
        with torch.inference_mode():
            if self.input_mode == "towers":
                text_states = self.model.text_model(
                    input_ids=ids, attention_mask=mask, output_hidden_states=True).hidden_states
                cross_text = []
            else:
                pixels = self._neutral_image().to(self.device, self.model.vision_model.dtype)
                text_states, _, cross = self.model(
                    input_ids=ids, attention_mask=mask, pixel_values=pixels.expand(len(windows), -1, -1, -1),
                    output_hidden_states=True).hidden_states
                cross_text = [text for text, _ in cross]
        return {layer: (cross_text[_layer_index(layer) - 1] if layer.startswith("cross.")
                        else text_states[_layer_index(layer)]) for layer in layers}

    def _frame_states(self, pixels: torch.Tensor, layers: Sequence[str]) -> dict[str, torch.Tensor]:
        """Hidden states (batch × tokens × dim) of the requested movie layers."""
        visual = self.model.vision_model.visual
        pixels = pixels.to(device=self.device, dtype=self.model.vision_model.dtype)
        with torch.inference_mode():
            if self.input_mode == "towers":
                # the tower's own forward applies ln_post and drops the input
                # states: run its blocks to keep the raw residual stream
                hidden = visual.forward_pre(pixels)  # tokens × batch × hidden
                image_states = [hidden]
                for block in visual.transformer.resblocks:
                    hidden = block(hidden)
                    image_states.append(hidden)
                cross_image = []
            else:
                neutral_text = self.tokenizer("", add_special_tokens=True)["input_ids"]
                ids = torch.tensor([neutral_text] * len(pixels), dtype=torch.long, device=self.device)
                _, image_states, cross = self.model(
                    input_ids=ids, attention_mask=torch.ones_like(ids), pixel_values=pixels,
                    output_hidden_states=True).hidden_states
                cross_image = [image for _, image in cross]
        return {layer: (cross_image[_layer_index(layer) - 1] if layer.startswith("cross.")
                        else image_states[_layer_index(layer)].permute(1, 0, 2))  # to batch-first
                for layer in layers}


# --------------------------------------------------------------------------- #
# Helpers shared with the CLIP extractor
# --------------------------------------------------------------------------- #
def _layer_index(layer: str) -> int:
    return int(layer.rsplit(".", 1)[1])


def tokenizer_token_limit(tokenizer) -> int | None:
    """The tokenizer's ``model_max_length``, or None when it sets no limit."""
    limit = getattr(tokenizer, "model_max_length", None)
    return int(limit) if isinstance(limit, int) and 0 < limit < _NO_TOKENIZER_LIMIT else None


def check_text_and_frame_settings(context_words: int, token_pooling: str, frame_pooling: str,
                                  batch_size: int, max_tokens: int | None) -> None:
    """Validate the settings of an extractor that embeds both words and frames.

    Raises
    ------
    BrainencInputError
        A setting out of its range, naming what was expected.
    """
    if not isinstance(context_words, int) or context_words < 0:
        raise BrainencInputError(None, f"context_words must be an integer >= 0, got {context_words!r}")
    if token_pooling not in TOKEN_POOLING:
        raise BrainencInputError(None, f"token_pooling must be one of {TOKEN_POOLING}, got {token_pooling!r}")
    if frame_pooling not in FRAME_POOLING:
        raise BrainencInputError(None, f"frame_pooling must be one of {FRAME_POOLING}, got {frame_pooling!r}")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise BrainencInputError(None, f"batch_size must be a positive integer, got {batch_size!r}")
    if max_tokens is not None and (not isinstance(max_tokens, int) or max_tokens < 1):
        raise BrainencInputError(None, f"max_tokens must be a positive integer, got {max_tokens!r}")


def check_requested_layers(available: Sequence[str], layers: Sequence[str], modality: str,
                           hint: str = "") -> list[str]:
    """The requested layer names, or an error naming the unknown ones and listing those available."""
    layers = [str(layer) for layer in layers]
    unknown = [layer for layer in layers if layer not in available]
    if unknown:
        raise BrainencInputError(
            None, f"unknown {modality} layer(s) {unknown}{hint}; available layers: {list(available)}")
    return layers


def check_frames(frames: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Frames as a list of (height, width, 3) uint8 arrays, or a clear error."""
    checked = []
    for k, frame in enumerate(frames):
        array = np.asarray(frame)
        if array.ndim != 3 or array.shape[-1] != 3 or array.dtype != np.uint8:
            raise BrainencInputError(None, f"frame {k} has shape {array.shape} and dtype {array.dtype}; "
                                           "frames must be (height, width, 3) uint8 RGB arrays")
        checked.append(array)
    return checked


def preprocess_frames(image_processor, frames: Sequence[np.ndarray], image_size: int) -> torch.Tensor:
    """Pixel values (frames × 3 × size × size) from the model's image processor.

    Raises
    ------
    BrainencInputError
        The processor gives images of another size than the vision tower takes.
    """
    pixels = image_processor(images=list(frames), return_tensors="pt",
                             input_data_format="channels_last")["pixel_values"]
    if tuple(pixels.shape[-2:]) != (image_size, image_size):
        raise BrainencInputError(
            None, f"the image processor gives {tuple(pixels.shape[-2:])} images but the vision tower takes "
                  f"{image_size} × {image_size}: the processor's size and crop settings do not match the model")
    return pixels

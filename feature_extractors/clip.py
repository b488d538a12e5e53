"""CLIP features of story words and movie frames: both towers, every layer.

CLIP (Radford et al. 2021) is a dual encoder: a text transformer and a vision
transformer trained to agree on image–caption pairs, meeting only in a shared
projection space. Words go through the text tower and frames through the
vision tower; there is nothing cross-modal to run, so no input mode is needed.

Layers (``N`` text layers, ``M`` vision layers):

* story: ``text.0`` (token + position embeddings), ``text.k`` (output of
  text layer ``k``, before the tower's ``final_layer_norm``), pooled over the
  word's tokens as in :mod:`feature_extractors.text`. The text tower is causal,
  so a word's tokens see only the word and its preceding context.
* movie: ``vision.0`` (patch + position embeddings after ``pre_layrnorm``:
  the input of the first layer), ``vision.k`` (output of vision layer ``k``,
  before ``post_layernorm``), pooled by ``frame_pooling``: the class token or
  the mean of the patch tokens.
* with ``projections=True``, two extra layers in the shared space:
  ``text.projection``: ``text_projection`` of the final-layer-normed state at
  the window's end-of-text token (what ``CLIPModel.get_text_features``
  returns). That token comes *after* the target word, at the end of the
  window, so it summarises the whole window (context + word) rather than the
  word; ``token_pooling`` does not apply. ``vision.projection``:
  ``visual_projection`` of the post-layer-normed class token
  (``get_image_features``); ``frame_pooling`` does not apply.

The text tower's position table bounds a window (77 tokens for the released
CLIP models, special tokens included); longer windows lose their earliest
context words.
"""
from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
import torch

from brainenc.errors import BrainencInputError
from feature_extractors.base import FeatureExtractor, identity_hash
from feature_extractors.bridgetower import (
    check_frames,
    check_requested_layers,
    check_text_and_frame_settings,
    preprocess_frames,
    tokenizer_token_limit,
)
from feature_extractors.hf_auto import config_hash, model_name, pool_frame_states, resolve_device, resolve_dtype
from feature_extractors.loading import load_pretrained
from feature_extractors.text import WordWindow, length_sorted_batches, pad_windows, pool_word, word_windows

TEXT_PROJECTION = "text.projection"
VISION_PROJECTION = "vision.projection"


class CLIPExtractor(FeatureExtractor):
    """Every layer of a CLIP model's text tower (story words) and vision tower (movie frames).

    Parameters
    ----------
    model : str or path-like
        Hub id (``"openai/clip-vit-base-patch32"``) or local folder holding a
        ``CLIPModel``, its fast tokenizer and its image processor.
    context_words : int
        Preceding words in each word's window (default 20).
    token_pooling : {"last", "mean"}
        A word's vector: its last token or the mean of its tokens.
    frame_pooling : {"cls", "mean"}
        A frame's vector: the class token or the mean of the patch tokens.
    projections : bool
        Also list ``text.projection`` and ``vision.projection`` (see the module
        notes); off by default, so that "all layers" means the tower layers.
    device : str
        ``"auto"`` (CUDA when available, else CPU), ``"cpu"``, ``"cuda"``...
    dtype : {"float32", "float16", "bfloat16"}
        Precision of the forward passes (half precisions need a GPU); vectors
        are returned as float32.
    batch_size : int
        Windows or frames per forward pass; does not change the vectors.
    max_tokens : int, optional
        Token limit of a window, special tokens included. Default: the smaller
        of the text position table (77 for the released models) and the
        tokenizer's ``model_max_length``.

    Raises
    ------
    BrainencInputError
        Bad settings, a slow tokenizer, or a ``max_tokens`` beyond the position table.
    """

    modalities = ("story", "movie")

    def __init__(
        self,
        model: str | os.PathLike,
        context_words: int = 20,
        token_pooling: str = "last",
        frame_pooling: str = "cls",
        projections: bool = False,
        device: str = "auto",
        dtype: str = "float32",
        batch_size: int = 16,
        max_tokens: int | None = None,
    ):
        from transformers import AutoImageProcessor, AutoTokenizer, CLIPModel

        check_text_and_frame_settings(context_words, token_pooling, frame_pooling, batch_size, max_tokens)
        self.model_id = os.fspath(model)
        self.context_words = context_words
        self.token_pooling = token_pooling
        self.frame_pooling = frame_pooling
        self.projections = bool(projections)
        self.device = resolve_device(device)
        self.dtype = dtype
        self.batch_size = batch_size

        torch_dtype = resolve_dtype(dtype, self.device)
        self.tokenizer = load_pretrained(self.model_id, AutoTokenizer)
        if not getattr(self.tokenizer, "is_fast", False):
            raise BrainencInputError(
                None, f"the tokenizer of {self.model_id!r} ({type(self.tokenizer).__name__}) is not a fast "
                      "tokenizer; word windows need the character offsets only fast tokenizers give")
        self.image_processor = load_pretrained(self.model_id, AutoImageProcessor)
        self.model = load_pretrained(self.model_id, CLIPModel)
        self.model.to(device=self.device, dtype=torch_dtype).eval()

        pad_id = self.tokenizer.pad_token_id
        if pad_id is None:
            pad_id = self.tokenizer.eos_token_id  # padding is masked: any id will do
        self.pad_id = int(pad_id if pad_id is not None else 0)
        position_limit = self.model.text_model.embeddings.position_embedding.num_embeddings
        if max_tokens is None:
            limits = [position_limit, tokenizer_token_limit(self.tokenizer)]
            max_tokens = min(limit for limit in limits if limit is not None)
        elif max_tokens > position_limit:
            raise BrainencInputError(None, f"max_tokens={max_tokens} exceeds the {position_limit} text positions "
                                           f"of {self.model_id!r}")
        self.max_tokens = int(max_tokens)

        config = self.model.config
        self.n_text_layers = len(self.model.text_model.encoder.layers)
        self.n_vision_layers = len(self.model.vision_model.encoder.layers)
        self.image_size = int(config.vision_config.image_size)
        self._n_patches = (self.image_size // int(config.vision_config.patch_size)) ** 2

    # -- contract ---------------------------------------------------------- #
    @property
    def name(self) -> str:
        return model_name(self.model_id)

    def layers(self, modality: str) -> list[str]:
        if modality == "story":
            names = [f"text.{k}" for k in range(self.n_text_layers + 1)]
            return names + [TEXT_PROJECTION] if self.projections else names
        if modality == "movie":
            names = [f"vision.{k}" for k in range(self.n_vision_layers + 1)]
            return names + [VISION_PROJECTION] if self.projections else names
        raise BrainencInputError(None, f"modality must be 'story' or 'movie', got {modality!r}")

    def identity(self) -> dict:
        # ``projections`` only adds layers and device / batch size change nothing
        # beyond rounding: none of them changes a layer's vectors
        return {
            "extractor": type(self).__name__,
            "model": self.model_id,
            "model_class": type(self.model).__name__,
            "config_hash": config_hash(self.model.config),
            "tokenizer_hash": identity_hash({"tokenizer": self.tokenizer.backend_tokenizer.to_str()}),
            "processor_class": type(self.image_processor).__name__,
            "processor_hash": identity_hash(self.image_processor.to_dict()),
            "context_words": self.context_words,
            "token_pooling": self.token_pooling,
            "max_tokens": self.max_tokens,
            "frame_pooling": self.frame_pooling,
            "dtype": self.dtype,
        }

    def embed_words(self, words: Sequence[str], layers: Sequence[str]) -> dict[str, np.ndarray]:
        layers = check_requested_layers(self.layers("story"), layers, "story", self._projection_hint(layers))
        windows = word_windows(list(words), self.tokenizer, self.context_words, self.max_tokens)
        out = {layer: np.zeros((len(windows), self._layer_dim(layer)), np.float32) for layer in layers}
        for batch in length_sorted_batches(windows, self.batch_size):
            chunk = [windows[k] for k in batch]
            for layer, states in self._word_states(chunk, layers).items():
                if layer == TEXT_PROJECTION:
                    out[layer][batch] = states.float().cpu().numpy()
                else:
                    out[layer][batch] = pool_word(states.float().cpu().numpy(), chunk, self.token_pooling)
        return out

    def embed_frames(self, frames: Sequence[np.ndarray], layers: Sequence[str]) -> dict[str, np.ndarray]:
        layers = check_requested_layers(self.layers("movie"), layers, "movie", self._projection_hint(layers))
        frames = check_frames(frames)
        out = {layer: np.zeros((len(frames), self._layer_dim(layer)), np.float32) for layer in layers}
        for start in range(0, len(frames), self.batch_size):
            chunk = frames[start : start + self.batch_size]
            pixels = preprocess_frames(self.image_processor, chunk, self.image_size)
            for layer, states in self._frame_states(pixels, layers).items():
                if layer != VISION_PROJECTION:
                    states = pool_frame_states(states, self.frame_pooling, self._n_patches)
                out[layer][start : start + len(chunk)] = states.float().cpu().numpy()
        return out

    # -- forward passes ---------------------------------------------------- #
    def _projection_hint(self, layers: Sequence[str]) -> str:
        if not self.projections and any(str(layer).endswith(".projection") for layer in layers):
            return " (projection layers need projections=True)"
        return ""

    def _layer_dim(self, layer: str) -> int:
        config = self.model.config
        if layer.endswith(".projection"):
            return int(config.projection_dim)
        if layer.startswith("text."):
            return int(config.text_config.hidden_size)
        return int(config.vision_config.hidden_size)

    def _word_states(self, windows: Sequence[WordWindow], layers: Sequence[str]) -> dict[str, torch.Tensor]:
        """Token states (batch × tokens × dim) of the text layers; window vectors of the projection."""
        ids, mask = pad_windows(windows, self.pad_id)
        with torch.inference_mode():
            outputs = self.model.text_model(
                input_ids=torch.from_numpy(ids).to(self.device),
                attention_mask=torch.from_numpy(mask).to(self.device),
                output_hidden_states=True,
            )
            states = {}
            for layer in layers:
                if layer == TEXT_PROJECTION:
                    # CLIP pools at the end-of-text token (pooler_output), here the window's end
                    states[layer] = self.model.text_projection(outputs.pooler_output)
                else:
                    states[layer] = outputs.hidden_states[int(layer.split(".")[1])]
        return states

    def _frame_states(self, pixels: torch.Tensor, layers: Sequence[str]) -> dict[str, torch.Tensor]:
        """Token states (batch × tokens × dim) of the vision layers; frame vectors of the projection."""
        vision_dtype = self.model.vision_model.embeddings.patch_embedding.weight.dtype
        with torch.inference_mode():
            outputs = self.model.vision_model(
                pixel_values=pixels.to(device=self.device, dtype=vision_dtype), output_hidden_states=True)
            states = {}
            for layer in layers:
                if layer == VISION_PROJECTION:
                    states[layer] = self.model.visual_projection(outputs.pooler_output)
                else:
                    states[layer] = outputs.hidden_states[int(layer.split(".")[1])]
        return states

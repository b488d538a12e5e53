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

Labels and alignment (:func:`feature_extractors.base.layer_label`,
:meth:`CLIPExtractor.pairing`): ``text.k`` and ``vision.k`` share the label
``towerk`` but are *unaligned* (the towers are separate encoders that meet only
in the projection space); ``text.projection`` and ``vision.projection`` share
the label ``projection`` and are *aligned*: the contrastive objective trains
them into one space.

The text tower's position table bounds a window (77 tokens for the released
CLIP models, special tokens included); longer windows lose their earliest
context words.
"""
from __future__ import annotations

import os
from collections.abc import Sequence

import torch

from brainenc.errors import BrainencInputError
from feature_extractors.base import LayerPair, layer_index, layer_label
from feature_extractors.hf_auto import TextVisionExtractor
from feature_extractors.text import WordWindow, pad_windows, window_token_limit

TEXT_PROJECTION = "text.projection"
VISION_PROJECTION = "vision.projection"
PROJECTION_LABEL = layer_label(TEXT_PROJECTION)


class CLIPExtractor(TextVisionExtractor):
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
    revision : str, optional
        Hub revision (branch, tag or commit) of a hub id; an error for a local folder.

    Raises
    ------
    BrainencInputError
        Bad settings, a slow tokenizer, or a ``max_tokens`` beyond the position table.
    """

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
        revision: str | None = None,
    ):
        from transformers import CLIPModel

        super().__init__(model, CLIPModel, context_words, token_pooling, frame_pooling, device, dtype,
                         batch_size, max_tokens, revision)
        self.projections = bool(projections)  # only adds layers: not part of identity()
        pad_id = self.tokenizer.pad_token_id
        if pad_id is None:
            pad_id = self.tokenizer.eos_token_id  # padding is masked: any id will do
        self.pad_id = int(pad_id if pad_id is not None else 0)
        self.max_tokens = window_token_limit(
            max_tokens, self.tokenizer, self.model.text_model.embeddings.position_embedding.num_embeddings,
            self.model_id)
        self.n_text_layers = len(self.model.text_model.encoder.layers)
        self.n_vision_layers = len(self.model.vision_model.encoder.layers)

    # -- contract ---------------------------------------------------------- #
    def layers(self, modality: str) -> list[str]:
        if modality == "story":
            names = [f"text.{k}" for k in range(self.n_text_layers + 1)]
            return names + [TEXT_PROJECTION] if self.projections else names
        if modality == "movie":
            names = [f"vision.{k}" for k in range(self.n_vision_layers + 1)]
            return names + [VISION_PROJECTION] if self.projections else names
        raise BrainencInputError(None, f"modality must be 'story' or 'movie', got {modality!r}")

    def pairing(self, label: str) -> LayerPair:
        """The projections (label ``projection``) are aligned; tower layers are not."""
        if label == PROJECTION_LABEL:
            return LayerPair(True, "clip projection")
        return super().pairing(label)

    # -- forward passes ---------------------------------------------------- #
    def _layer_hint(self, layers: Sequence[str]) -> str:
        if not self.projections and any(layer.endswith(".projection") for layer in layers):
            return " (projection layers need projections=True)"
        return ""

    def _layer_dim(self, layer: str) -> int:
        return int(self.config.projection_dim) if layer.endswith(".projection") else super()._layer_dim(layer)

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
                    states[layer] = outputs.hidden_states[layer_index(layer)]
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
                    states[layer] = outputs.hidden_states[layer_index(layer)]
        return states

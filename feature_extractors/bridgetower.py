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

Labels and alignment (:func:`feature_extractors.base.layer_label`,
:meth:`BridgeTowerExtractor.pairing`): ``text.k`` and ``vision.k`` share the
label ``towerk`` but are *unaligned*: the text tower starts from RoBERTa and
the vision tower from a ViT, two encoders trained separately, so coordinate
*i* of one has no built-in correspondence with coordinate *i* of the other; a
tower space is a baseline, not a transfer space. ``cross.text.k`` and
``cross.vision.k`` (label ``crossk``) are *aligned*: the cross-modal layers
process both streams together under the image–text objectives.

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
import re
from collections.abc import Sequence

import numpy as np
import torch

from brainenc.errors import BrainencInputError
from feature_extractors.base import LayerPair, layer_index
from feature_extractors.hf_auto import TextVisionExtractor
from feature_extractors.text import WordWindow, pad_windows, window_token_limit
from feature_extractors.vision import preprocess_frames

INPUT_MODES = ("towers", "neutral")

#: BridgeTower was pretrained on captions cut at 50 tokens (``max_text_len`` of
#: the original code); its position table, inherited from RoBERTa, is longer.
BRIDGETOWER_PRETRAINING_TEXT_TOKENS = 50

#: Grey level (0-255, all three channels) of the neutral image given with words.
NEUTRAL_GREY = 128


class BridgeTowerExtractor(TextVisionExtractor):
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
    revision : str, optional
        Hub revision (branch, tag or commit) of a hub id; an error for a local folder.

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
        revision: str | None = None,
    ):
        from transformers import BridgeTowerModel

        if input_mode not in INPUT_MODES:
            raise BrainencInputError(None, f"input_mode must be one of {INPUT_MODES}, got {input_mode!r}")
        self.input_mode = input_mode
        super().__init__(model, BridgeTowerModel, context_words, token_pooling, frame_pooling, device, dtype,
                         batch_size, max_tokens, revision)

        config = self.config
        pad_id = self.tokenizer.pad_token_id
        self.pad_id = int(pad_id if pad_id is not None else config.text_config.pad_token_id or 0)
        # RoBERTa numbers positions from padding_idx + 1: that many rows are never used
        positions = self.model.text_model.embeddings.position_embeddings
        offset = 0 if positions.padding_idx is None else positions.padding_idx + 1
        pretraining_limit = getattr(config, "max_text_len", None) or BRIDGETOWER_PRETRAINING_TEXT_TOKENS
        self.max_tokens = window_token_limit(max_tokens, self.tokenizer, positions.num_embeddings - offset,
                                             self.model_id, [int(pretraining_limit)])

        self.n_text_layers = len(self.model.text_model.encoder.layer)
        self.n_vision_blocks = len(self.model.vision_model.visual.transformer.resblocks)
        self.n_cross_layers = len(self.model.cross_modal_text_layers)
        self._neutral_pixels = None

    # -- contract ---------------------------------------------------------- #
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
        return {
            **super().identity(),
            "input_mode": self.input_mode,
            "neutral_inputs": ({"image_grey": NEUTRAL_GREY, "text": ""}
                               if self.input_mode == "neutral" else None),
        }

    def pairing(self, label: str) -> LayerPair:
        """Cross-modal layers (``crossk``) are aligned; tower layers are not (module notes)."""
        match = re.fullmatch(r"cross(\d+)", label)
        if match:
            return LayerPair(True, f"bridgetower cross-modal layer {match.group(1)}")
        return super().pairing(label)

    def modality_entries(self, modality: str) -> tuple[str, ...]:
        """In neutral mode a word's vector also depends on the image processor (the grey
        image) and a frame's on the tokenizer (the empty text): only the window and
        pooling settings then belong to one modality."""
        entries = super().modality_entries(modality)
        if self.input_mode == "neutral":
            shared = ("tokenizer_hash", "processor_class", "processor_hash")
            entries = tuple(key for key in entries if key not in shared)
        return entries

    # -- forward passes ---------------------------------------------------- #
    def _layer_hint(self, layers: Sequence[str]) -> str:
        if self.input_mode == "towers" and any(layer.startswith("cross.") for layer in layers):
            return " (cross-modal layers need input_mode='neutral')"
        return ""

    def _layer_dim(self, layer: str) -> int:
        return int(self.config.hidden_size) if layer.startswith("cross.") else super()._layer_dim(layer)

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
        return {layer: (cross_text[layer_index(layer) - 1] if layer.startswith("cross.")
                        else text_states[layer_index(layer)]) for layer in layers}

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
        return {layer: (cross_image[layer_index(layer) - 1] if layer.startswith("cross.")
                        else image_states[layer_index(layer)].permute(1, 0, 2))  # to batch-first
                for layer in layers}

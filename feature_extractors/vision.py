"""Movie frames into a vision model: checks, preprocessing and pooling every vision extractor shares.

A frame is a ``(height, width, 3)`` uint8 RGB array. The model's own image
processor resizes, crops and normalises it; each layer's hidden states are
then pooled to one vector per frame: the class token or the mean of the
patch tokens for transformers, the spatial mean for convolutional networks.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from brainenc.errors import BrainencInputError
from feature_extractors.base import identity_hash

FRAME_POOLING = ("cls", "mean")


def check_frame_pooling(frame_pooling: str) -> None:
    """Raise :class:`BrainencInputError` unless ``frame_pooling`` is one of :data:`FRAME_POOLING`."""
    if frame_pooling not in FRAME_POOLING:
        raise BrainencInputError(None, f"frame_pooling must be one of {FRAME_POOLING}, got {frame_pooling!r}")


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


def preprocess_frames(image_processor, frames: Sequence[np.ndarray], image_size: int | None = None) -> torch.Tensor:
    """Pixel values (frames × 3 × height × width) from the model's image processor.

    Parameters
    ----------
    image_processor
        The model's Hugging Face image processor.
    frames : sequence of ndarray of shape (height, width, 3), uint8
    image_size : int, optional
        The square input size the vision tower takes; when given, the
        processor's output must have it.

    Raises
    ------
    BrainencInputError
        The processor gives images of another size than ``image_size``.
    """
    pixels = image_processor(images=list(frames), return_tensors="pt",
                             input_data_format="channels_last")["pixel_values"]
    if image_size is not None and tuple(pixels.shape[-2:]) != (image_size, image_size):
        raise BrainencInputError(
            None, f"the image processor gives {tuple(pixels.shape[-2:])} images but the vision tower takes "
                  f"{image_size} × {image_size}: the processor's size and crop settings do not match the model")
    return pixels


def processor_identity(image_processor) -> dict:
    """The image processor's class and a hash of its settings, for an extractor's identity."""
    return {
        "processor_class": type(image_processor).__name__,
        "processor_hash": identity_hash(image_processor.to_dict()),
    }


def patch_count(config, height: int, width: int) -> int | None:
    """Number of image patches a ViT-style model makes of a ``height × width`` input.

    None when the configuration has no usable ``patch_size`` (convolutional networks).
    """
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

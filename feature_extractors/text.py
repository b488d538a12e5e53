"""Word-in-context windows: the definition every text extractor follows.

The vector of word ``i`` is computed from one forward pass over the text
``" ".join(words[i - n : i + 1])`` with ``n = min(context_words, i)`` preceding
words, tokenised with the model's tokenizer and its special tokens. If that
text has more tokens than the model accepts, the earliest context words are
dropped until it fits (so the target word always ends the window). The word's
vector is taken from its own tokens: the last one (default) or their mean.

Windows are independent forward passes; batching pads them on the right with
an attention mask, which leaves the real tokens' hidden states unchanged for
both bidirectional and causal models.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from brainenc.errors import BrainencInputError

TOKEN_POOLING = ("last", "mean")


@dataclass(frozen=True)
class WordWindow:
    """Tokens of one word with its context.

    Attributes
    ----------
    input_ids : tuple of int
        Token ids of the window, special tokens included.
    target : tuple of (int, int)
        ``[start, stop)`` positions of the target word's tokens in ``input_ids``.
    n_context : int
        Context words actually used (after any truncation to the token limit).
    """

    input_ids: tuple[int, ...]
    target: tuple[int, int]
    n_context: int


def _encode(tokenizer, words: Sequence[str]) -> tuple[list[int], tuple[int, int]]:
    text = " ".join(words)
    start_char = len(text) - len(words[-1])
    encoded = tokenizer(text, return_offsets_mapping=True, add_special_tokens=True)
    ids = list(encoded["input_ids"])
    positions = [
        k for k, (a, b) in enumerate(encoded["offset_mapping"])
        if b > a and b > start_char  # a real token that ends inside the target word
    ]
    if not positions:
        raise BrainencInputError(None, f"the tokenizer produced no token for the word {words[-1]!r}")
    return ids, (positions[0], positions[-1] + 1)


def word_windows(
    words: Sequence[str],
    tokenizer,
    context_words: int = 20,
    max_tokens: int | None = None,
) -> list[WordWindow]:
    """Token windows of every word with up to ``context_words`` preceding words.

    Parameters
    ----------
    words : sequence of str
    tokenizer
        A Hugging Face *fast* tokenizer (offsets are needed to find the word's tokens).
    context_words : int
        Preceding words in each window (default 20).
    max_tokens : int, optional
        Token limit of the model, special tokens included; the earliest context
        words are dropped until a window fits.

    Returns
    -------
    list of WordWindow, one per word
    """
    if not getattr(tokenizer, "is_fast", False):
        raise TypeError("word_windows needs a fast tokenizer (offset mapping)")
    if context_words < 0:
        raise ValueError(f"context_words must be >= 0, got {context_words}")
    windows = []
    for i in range(len(words)):
        n = min(context_words, i)
        while True:
            ids, target = _encode(tokenizer, words[i - n : i + 1])
            if max_tokens is None or len(ids) <= max_tokens or n == 0:
                break
            n -= 1
        if max_tokens is not None and len(ids) > max_tokens:
            raise BrainencInputError(
                None, f"the word {words[i]!r} alone needs {len(ids)} tokens, over the limit {max_tokens}")
        windows.append(WordWindow(tuple(ids), target, n))
    return windows


def pad_windows(windows: Sequence[WordWindow], pad_id: int) -> tuple[np.ndarray, np.ndarray]:
    """Right-padded ``input_ids`` and ``attention_mask`` arrays (batch × longest window)."""
    length = max(len(w.input_ids) for w in windows)
    ids = np.full((len(windows), length), pad_id, dtype=np.int64)
    mask = np.zeros((len(windows), length), dtype=np.int64)
    for row, window in enumerate(windows):
        ids[row, : len(window.input_ids)] = window.input_ids
        mask[row, : len(window.input_ids)] = 1
    return ids, mask


def pool_word(hidden: np.ndarray, windows: Sequence[WordWindow], pooling: str = "last") -> np.ndarray:
    """Each window's word vector from hidden states of shape (batch, tokens, dim)."""
    if pooling not in TOKEN_POOLING:
        raise ValueError(f"token pooling must be one of {TOKEN_POOLING}, got {pooling!r}")
    out = np.empty((len(windows), hidden.shape[-1]), dtype=np.float32)
    for row, window in enumerate(windows):
        start, stop = window.target
        out[row] = hidden[row, stop - 1] if pooling == "last" else hidden[row, start:stop].mean(axis=0)
    return out


def length_sorted_batches(windows: Sequence[WordWindow], batch_size: int) -> list[list[int]]:
    """Window indices in batches of similar length (less padding, same results)."""
    order = sorted(range(len(windows)), key=lambda k: len(windows[k].input_ids))
    return [order[k : k + batch_size] for k in range(0, len(order), batch_size)]

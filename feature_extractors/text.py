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

# Tokenizers that set no limit report a huge sentinel ``model_max_length`` (about 1e30).
_NO_TOKENIZER_LIMIT = 1_000_000


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


class UntokenisableWordError(BrainencInputError):
    """A word for which the tokenizer gives no token (its text normalises to nothing).

    Attributes
    ----------
    position : int
        Index of the word in the sequence given to :func:`word_windows`.
    word : str
        The word.
    """

    def __init__(self, position: int, word: str):
        self.position = position
        self.word = word
        super().__init__(None, f"word {position} ({word!r}): the tokenizer produced no token for it "
                               "(its text normalises to nothing); remove or correct it in the transcript")


def _encode(tokenizer, words: Sequence[str], position: int) -> tuple[list[int], tuple[int, int]]:
    """Token ids of ``" ".join(words)`` and the span of the last word's tokens
    (``position``: that word's index, for the error)."""
    text = " ".join(words)
    start_char = len(text) - len(words[-1])
    encoded = tokenizer(text, return_offsets_mapping=True, add_special_tokens=True)
    ids = list(encoded["input_ids"])
    positions = [
        k for k, (a, b) in enumerate(encoded["offset_mapping"])
        if b > a and b > start_char  # a real token that ends inside the target word
    ]
    if not positions:
        raise UntokenisableWordError(position, words[-1])
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

    Raises
    ------
    UntokenisableWordError
        A word gives no token (e.g. only characters the tokenizer's
        normaliser removes); the error holds the word's position.
    BrainencInputError
        A word alone needs more than ``max_tokens`` tokens.
    """
    if not getattr(tokenizer, "is_fast", False):
        raise TypeError("word_windows needs a fast tokenizer (offset mapping)")
    if context_words < 0:
        raise ValueError(f"context_words must be >= 0, got {context_words}")
    windows = []
    for i in range(len(words)):
        n = min(context_words, i)
        while True:
            ids, target = _encode(tokenizer, words[i - n : i + 1], i)
            if max_tokens is None or len(ids) <= max_tokens or n == 0:
                break
            n -= 1
        if max_tokens is not None and len(ids) > max_tokens:
            raise BrainencInputError(
                None, f"word {i} ({words[i]!r}) alone needs {len(ids)} tokens, over the limit {max_tokens}")
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


def check_window_settings(context_words: int, token_pooling: str, max_tokens: int | None) -> None:
    """Validate the word-window settings an extractor takes.

    Raises
    ------
    BrainencInputError
        ``context_words`` not an integer >= 0, ``token_pooling`` not one of
        :data:`TOKEN_POOLING`, or ``max_tokens`` neither None nor a positive integer.
    """
    if not isinstance(context_words, int) or context_words < 0:
        raise BrainencInputError(None, f"context_words must be an integer >= 0, got {context_words!r}")
    if token_pooling not in TOKEN_POOLING:
        raise BrainencInputError(None, f"token_pooling must be one of {TOKEN_POOLING}, got {token_pooling!r}")
    if max_tokens is not None and (not isinstance(max_tokens, int) or max_tokens < 1):
        raise BrainencInputError(None, f"max_tokens must be a positive integer, got {max_tokens!r}")


def tokenizer_token_limit(tokenizer) -> int | None:
    """The tokenizer's ``model_max_length``, or None when it sets no limit."""
    limit = getattr(tokenizer, "model_max_length", None)
    return int(limit) if isinstance(limit, int) and 0 < limit < _NO_TOKENIZER_LIMIT else None


def window_token_limit(
    max_tokens: int | None,
    tokenizer,
    position_limit: int | None,
    model_id: str,
    other_limits: Sequence[int | None] = (),
) -> int | None:
    """The token limit of a model's word windows (``max_tokens`` of :func:`word_windows`).

    ``max_tokens`` when given, checked against ``position_limit`` (the most
    tokens the model's position table accepts; None when unknown). By default
    the smallest known limit among ``position_limit``, the tokenizer's
    ``model_max_length`` and ``other_limits`` (a pretraining length...); None
    when none is known.

    Raises
    ------
    BrainencInputError
        ``max_tokens`` above ``position_limit`` (the message names ``model_id``).
    """
    if max_tokens is None:
        known = [limit for limit in (position_limit, tokenizer_token_limit(tokenizer), *other_limits)
                 if limit is not None]
        return min(known) if known else None
    if position_limit is not None and max_tokens > position_limit:
        raise BrainencInputError(None, f"max_tokens={max_tokens} exceeds the {position_limit} positions "
                                       f"of {model_id!r}")
    return max_tokens

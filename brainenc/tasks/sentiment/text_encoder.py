"""A Hugging Face text encoder in front of MulT or GsiT, fine-tuned with them.

MMSA's files carry BERT inputs (``text_bert``: ids, attention mask, segment
ids) beside the precomputed text features. With ``text_encoder`` in the
spec's ``[model]`` table, :class:`FineTunedText` runs the encoder
(``transformers.AutoModel.from_pretrained`` on a hub id or a local folder)
on those inputs and gives its last hidden states to the fusion model as the
text tokens, so that the encoder trains with the rest; a learning-rate group
such as ``[train] lr_groups = {"text_encoder." = 0.1}`` fine-tunes it at a
tenth of the fusion layers' rate, as the papers do with a pretrained encoder.
"""
from __future__ import annotations

import torch
from torch import nn


class FineTunedText(nn.Module):
    """``text_encoder`` (a transformers model) feeding ``fusion`` (MulT or GsiT).

    Parameters
    ----------
    text_encoder : torch.nn.Module
        Called as ``text_encoder(input_ids=..., attention_mask=..., token_type_ids=...)``,
        returning ``last_hidden_state`` ``(B, L, hidden)``.
    fusion : torch.nn.Module
        A trimodal model whose ``text_dim`` is the encoder's hidden size.
    """

    def __init__(self, text_encoder: nn.Module, fusion: nn.Module):
        super().__init__()
        self.text_encoder = text_encoder
        self.fusion = fusion

    def forward(self, text: torch.Tensor, audio: torch.Tensor, vision: torch.Tensor,
                text_lengths=None, audio_lengths=None, vision_lengths=None, **hook) -> torch.Tensor:
        """Predict from BERT inputs ``text`` ``(B, 3, L)`` and audio and vision features."""
        ids, mask, segments = text[:, 0], text[:, 1], text[:, 2]
        hidden = self.text_encoder(input_ids=ids, attention_mask=mask,
                                   token_type_ids=segments).last_hidden_state
        return self.fusion(hidden, audio, vision, text_lengths, audio_lengths, vision_lengths, **hook)


def load_text_encoder(name_or_path: str, revision: str | None = None) -> nn.Module:
    """``transformers.AutoModel.from_pretrained`` of a hub id or a local folder."""
    from transformers import AutoModel

    return AutoModel.from_pretrained(name_or_path, revision=revision)

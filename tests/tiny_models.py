"""Tiny randomly initialised models saved like real checkpoints, for tests."""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers


def roberta_tokenizer(sentences: Sequence[str]):
    """A byte-level BPE tokenizer with RoBERTa's special tokens (pad = 1).

    Byte-level: any word can be tokenised, whatever the training sentences.
    """
    from transformers import RobertaTokenizerFast

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=320, special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tokenizer.train_from_iterator(list(sentences), trainer)
    tokenizer.post_processor = processors.RobertaProcessing(("</s>", 2), ("<s>", 0), trim_offsets=True)
    return RobertaTokenizerFast(tokenizer_object=tokenizer, bos_token="<s>", eos_token="</s>", sep_token="</s>",
                                cls_token="<s>", unk_token="<unk>", pad_token="<pad>", mask_token="<mask>",
                                model_max_length=512)


def save_tiny_bridgetower(folder: Path, sentences: Sequence[str], seed: int = 0) -> Path:
    """A BridgeTower with hidden size 64, 2 text / vision / cross-modal layers, 32 px images,
    22 usable text positions, saved with its tokenizer and image processor."""
    from transformers import BridgeTowerConfig, BridgeTowerImageProcessorPil, BridgeTowerModel

    tokenizer = roberta_tokenizer(sentences)
    config = BridgeTowerConfig(
        text_config=dict(vocab_size=len(tokenizer), hidden_size=64, num_hidden_layers=2, num_attention_heads=2,
                         intermediate_size=128, max_position_embeddings=24),  # 22 usable positions
        vision_config=dict(hidden_size=64, num_hidden_layers=2, patch_size=16, image_size=32),
        hidden_size=64, num_attention_heads=2, num_hidden_layers=2,
    )
    torch.manual_seed(seed)
    BridgeTowerModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    BridgeTowerImageProcessorPil(size={"shortest_edge": 32}, crop_size={"shortest_edge": 32}).save_pretrained(folder)
    return folder

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


def clip_tokenizer(sentences: Sequence[str]):
    """A whitespace BPE tokenizer framing each text as CLIP does."""
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE(unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    trainer = trainers.BpeTrainer(vocab_size=150, special_tokens=["<pad>", "<unk>", "<|startoftext|>",
                                                                  "<|endoftext|>"])
    tokenizer.train_from_iterator(list(sentences), trainer)
    bos, eos = tokenizer.token_to_id("<|startoftext|>"), tokenizer.token_to_id("<|endoftext|>")
    tokenizer.post_processor = processors.TemplateProcessing(
        single="<|startoftext|> $A <|endoftext|>", special_tokens=[("<|startoftext|>", bos), ("<|endoftext|>", eos)])
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, bos_token="<|startoftext|>",
                                   eos_token="<|endoftext|>", pad_token="<pad>", unk_token="<unk>",
                                   model_max_length=77)


def save_tiny_clip(folder: Path, sentences: Sequence[str], seed: int = 1) -> Path:
    """A CLIP with 2 text and 3 vision layers of width 32, projections of 16, 32 px images,
    16 text positions, saved with its tokenizer and image processor."""
    from transformers import CLIPConfig, CLIPImageProcessorPil, CLIPModel

    tokenizer = clip_tokenizer(sentences)
    text = dict(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                num_attention_heads=2, max_position_embeddings=16, pad_token_id=tokenizer.pad_token_id,
                bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id)
    vision = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=3, num_attention_heads=2,
                  image_size=32, patch_size=16)
    torch.manual_seed(seed)
    CLIPModel(CLIPConfig(text_config=text, vision_config=vision, projection_dim=16)).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    CLIPImageProcessorPil(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(folder)
    return folder

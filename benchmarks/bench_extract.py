"""Extraction throughput against the bare batched forward pass of the same model.

For a text model (RoBERTa-base dimensions) and a vision model (ViT-base
dimensions), randomly initialised and saved locally, this times

* the extractor: ``embed_words`` / ``embed_frames`` for all layers — tokenising
  word windows or preprocessing frames, forward passes, pooling;
* the bare pass: the same batches, already tokenised / preprocessed, through
  ``model(..., output_hidden_states=True)`` and nothing else;

and prints words/s, frames/s and the ratio extractor / bare (target ≥ 0.8).

Usage: ``python benchmarks/bench_extract.py [--quick] [--device auto]``
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch


def build_text_model(folder: Path, quick: bool) -> None:
    from tokenizers import Tokenizer, models, pre_tokenizers, processors, trainers
    from transformers import RobertaConfig, RobertaModel, RobertaTokenizerFast

    from brainenc.simulate import VOCABULARY

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(vocab_size=2000, special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"])
    rng = np.random.default_rng(0)
    corpus = [" ".join(rng.choice(VOCABULARY, 30)) for _ in range(500)]
    tok.train_from_iterator(corpus, trainer)
    tok.post_processor = processors.RobertaProcessing(("</s>", 2), ("<s>", 0))
    tokenizer = RobertaTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>",
                                     pad_token="<pad>", unk_token="<unk>", mask_token="<mask>")
    size = dict(hidden_size=256, num_hidden_layers=4, num_attention_heads=4, intermediate_size=1024) \
        if quick else dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
                           intermediate_size=3072)
    config = RobertaConfig(vocab_size=tokenizer.vocab_size + 8, max_position_embeddings=130,
                           pad_token_id=1, **size)
    torch.manual_seed(0)
    RobertaModel(config).eval().save_pretrained(folder)
    tokenizer.save_pretrained(folder)


def build_vision_model(folder: Path, quick: bool) -> None:
    from transformers import ViTConfig, ViTImageProcessor, ViTModel

    size = dict(hidden_size=256, num_hidden_layers=4, num_attention_heads=4, intermediate_size=1024) \
        if quick else dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
                           intermediate_size=3072)
    config = ViTConfig(image_size=224, patch_size=16, **size)
    torch.manual_seed(0)
    ViTModel(config).eval().save_pretrained(folder)
    ViTImageProcessor(size={"height": 224, "width": 224}).save_pretrained(folder)


def timed(function, repeats: int = 2) -> float:
    function()  # warm-up: thread pools, first-call dispatch
    best = np.inf
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        best = min(best, time.perf_counter() - start)
    return best


def bench_text(folder: Path, n_words: int, device: str) -> tuple[float, float]:
    from brainenc.simulate import VOCABULARY
    from feature_extractors.hf_auto import LanguageModelExtractor
    from feature_extractors.text import length_sorted_batches, pad_windows, word_windows

    words = list(np.random.default_rng(1).choice(VOCABULARY, n_words))
    extractor = LanguageModelExtractor(str(folder), context_words=20, device=device, batch_size=32)
    layers = extractor.layers("story")
    model = extractor.model()
    windows = word_windows(words, extractor.tokenizer, 20, extractor.max_tokens)
    batches = []
    for batch in length_sorted_batches(windows, 32):
        ids, mask = pad_windows([windows[k] for k in batch], extractor.pad_id)
        batches.append((torch.from_numpy(ids).to(extractor.device),
                        torch.from_numpy(mask).to(extractor.device)))

    def bare():
        with torch.inference_mode():
            for ids, mask in batches:
                model(input_ids=ids, attention_mask=mask, output_hidden_states=True)
        if extractor.device.type == "cuda":
            torch.cuda.synchronize()

    t_bare = timed(bare)
    t_extract = timed(lambda: extractor.embed_words(words, layers))
    return t_extract, t_bare


def bench_vision(folder: Path, n_frames: int, device: str) -> tuple[float, float]:
    from transformers import AutoImageProcessor

    from feature_extractors.hf_auto import VisionModelExtractor

    rng = np.random.default_rng(2)
    frames = [rng.integers(0, 255, (240, 320, 3), dtype=np.uint8) for _ in range(n_frames)]
    extractor = VisionModelExtractor(str(folder), device=device, batch_size=16)
    layers = extractor.layers("movie")
    model = extractor.model()
    processor = AutoImageProcessor.from_pretrained(folder)
    pixels = [processor(images=frames[k:k + 16], return_tensors="pt")["pixel_values"].to(extractor.device)
              for k in range(0, n_frames, 16)]

    def bare():
        with torch.inference_mode():
            for batch in pixels:
                model(pixel_values=batch, output_hidden_states=True)
        if extractor.device.type == "cuda":
            torch.cuda.synchronize()

    t_bare = timed(bare)
    t_extract = timed(lambda: extractor.embed_frames(frames, layers))
    return t_extract, t_bare


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small models and inputs")
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    n_words, n_frames = (200, 32) if args.quick else (600, 96)
    with tempfile.TemporaryDirectory() as tmp:
        text_dir, vision_dir = Path(tmp) / "text", Path(tmp) / "vision"
        build_text_model(text_dir, args.quick)
        build_vision_model(vision_dir, args.quick)
        size = "small (4 layers, hidden 256)" if args.quick else "base (12 layers, hidden 768)"
        print(f"models: random RoBERTa-{size} and ViT-{size}, device {args.device}, "
              f"torch threads {torch.get_num_threads()}")
        t_extract, t_bare = bench_text(text_dir, n_words, args.device)
        print(f"words  ({n_words}, 20 words of context, all layers): extractor "
              f"{n_words / t_extract:8.1f} words/s, bare forward {n_words / t_bare:8.1f} words/s, "
              f"ratio {t_bare / t_extract:.2f}")
        t_extract, t_bare = bench_vision(vision_dir, n_frames, args.device)
        print(f"frames ({n_frames}, 240x320 -> 224 px, all layers): extractor "
              f"{n_frames / t_extract:8.1f} frames/s, bare forward {n_frames / t_bare:8.1f} frames/s, "
              f"ratio {t_bare / t_extract:.2f}")
        print("target: ratio >= 0.80 (extractor throughput relative to the bare forward pass)")


if __name__ == "__main__":
    main()

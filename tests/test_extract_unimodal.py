"""Unimodal extractors: text and vision AutoModels, static word embeddings.

Tiny randomly initialised models are saved to folders and loaded back through
``from_pretrained`` (the path users take); every feature is compared with a
direct forward pass of the same model on the same input, computed here with
plain transformers calls.
"""
from __future__ import annotations

import json
import re
import shutil

import h5py
import numpy as np
import pytest
import torch

transformers = pytest.importorskip("transformers")
tokenizers = pytest.importorskip("tokenizers")

from brainenc.errors import BrainencInputError  # noqa: E402
from feature_extractors.base import select_layers  # noqa: E402
from feature_extractors.hf_auto import (  # noqa: E402
    LanguageModelExtractor,
    VisionModelExtractor,
    resolve_device,
    resolve_dtype,
)
from feature_extractors.lookup import WordEmbeddingExtractor  # noqa: E402

CORPUS = [
    "the quick brown fox jumps over the lazy dog",
    "a story about the brain and its encoding models",
    "words in context are embedded by transformers one layer at a time",
    "she walked home through the rain and thought about the long summer",
]
STORY = ("so i walked home through the rain and the quick fox followed me "
         "past the lazy dog while she thought about brains zebras and transformers").split()


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    # the models are tiny: more threads only add synchronisation, which is slow on a busy machine
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _bpe_vocab_merges():
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(vocab_size=330, special_tokens=["<s>", "<pad>", "</s>", "<unk>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    bpe.train_from_iterator(CORPUS * 3, trainer)
    merges = json.loads(bpe.to_str())["model"]["merges"]
    merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in merges]
    return bpe.get_vocab(), merges


@pytest.fixture(scope="module")
def bpe():
    return _bpe_vocab_merges()


@pytest.fixture(scope="module")
def roberta_dir(tmp_path_factory, bpe):
    folder = tmp_path_factory.mktemp("tiny-roberta")
    tokenizer = transformers.RobertaTokenizer(vocab=bpe[0], merges=bpe[1])
    config = transformers.RobertaConfig(
        vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=64, max_position_embeddings=40, pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, initializer_range=0.3)
    torch.manual_seed(0)
    transformers.RobertaModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def gpt2_dir(tmp_path_factory, bpe):
    folder = tmp_path_factory.mktemp("tiny-gpt2")
    tokenizer = transformers.GPT2Tokenizer(vocab=bpe[0], merges=bpe[1])
    assert tokenizer.pad_token_id is None  # batches are padded with the end-of-text token
    config = transformers.GPT2Config(
        vocab_size=len(tokenizer), n_embd=32, n_layer=2, n_head=2, n_positions=64,
        bos_token_id=tokenizer.eos_token_id, eos_token_id=tokenizer.eos_token_id, initializer_range=0.3)
    torch.manual_seed(1)
    transformers.GPT2Model(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def vit_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny-vit")
    config = transformers.ViTConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                    intermediate_size=64, image_size=32, patch_size=8)
    torch.manual_seed(2)
    transformers.ViTModel(config).save_pretrained(folder)
    transformers.ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(folder)
    return folder


def _load(folder):
    model = transformers.AutoModel.from_pretrained(folder).eval()
    tokenizer = transformers.AutoTokenizer.from_pretrained(folder)
    return model, tokenizer


def _direct(model, tokenizer, context: list[str], pooling: str) -> list[np.ndarray]:
    """Every layer's vector of the last word of ``context``, from one unpadded forward pass."""
    text = " ".join(context)
    encoded = tokenizer(text, return_tensors="pt")
    with torch.no_grad():
        hidden = model(**encoded, output_hidden_states=True).hidden_states
    start = len(text) - len(context[-1])
    tokens = sorted({encoded.char_to_token(0, c) for c in range(start, len(text))} - {None})
    assert tokens == list(range(tokens[0], tokens[-1] + 1))
    if pooling == "last":
        return [h[0, tokens[-1]].numpy() for h in hidden]
    return [h[0, tokens].mean(0).numpy() for h in hidden]


def _n_tokens(tokenizer, words) -> int:
    return len(tokenizer(" ".join(words))["input_ids"])


@pytest.mark.parametrize("which", ["roberta", "gpt2"])
@pytest.mark.parametrize("pooling", ["last", "mean"])
def test_language_model_matches_direct_forward(request, which, pooling):
    folder = request.getfixturevalue(f"{which}_dir")
    context_words = 5
    extractor = LanguageModelExtractor(folder, context_words=context_words, token_pooling=pooling,
                                       batch_size=4, device="auto")
    layers = extractor.layers("story")
    assert layers == ["layer.0", "layer.1", "layer.2"]
    features = extractor.embed_words(STORY, layers)
    model, tokenizer = _load(folder)
    assert set(features) == set(layers)
    for layer in layers:
        assert features[layer].shape == (len(STORY), 32)
        assert features[layer].dtype == np.float32
    for i in [0, 1, 4, 9, 17, len(STORY) - 1]:
        context = STORY[max(0, i - context_words) : i + 1]
        assert _n_tokens(tokenizer, context) <= extractor.max_tokens  # no truncation here
        for layer, expected in zip(layers, _direct(model, tokenizer, context, pooling)):
            np.testing.assert_allclose(features[layer][i], expected, atol=1e-5, rtol=1e-5)
    # the vectors carry information: words (and layers) differ clearly
    assert np.abs(features["layer.2"][3] - features["layer.2"][4]).max() > 1e-2
    again = extractor.embed_words(STORY, ["layer.1"])
    np.testing.assert_array_equal(again["layer.1"], features["layer.1"])


def test_gpt2_right_padding_leaves_real_tokens_unchanged(gpt2_dir):
    one = LanguageModelExtractor(gpt2_dir, context_words=6, batch_size=1).embed_words(STORY, ["layer.2"])
    batched = LanguageModelExtractor(gpt2_dir, context_words=6, batch_size=11).embed_words(STORY, ["layer.2"])
    np.testing.assert_allclose(batched["layer.2"], one["layer.2"], atol=1e-5, rtol=1e-5)


def test_truncation_drops_earliest_words(roberta_dir):
    max_tokens = 9
    extractor = LanguageModelExtractor(roberta_dir, context_words=20, max_tokens=max_tokens, batch_size=8)
    features = extractor.embed_words(STORY, ["layer.0", "layer.2"])
    model, tokenizer = _load(roberta_dir)
    truncated = 0
    for i in [3, 12, len(STORY) - 1]:
        n = min(20, i)
        while n > 0 and _n_tokens(tokenizer, STORY[i - n : i + 1]) > max_tokens:
            n -= 1
        truncated += n < min(20, i)
        expected = _direct(model, tokenizer, STORY[i - n : i + 1], "last")
        np.testing.assert_allclose(features["layer.0"][i], expected[0], atol=1e-5, rtol=1e-5)
        np.testing.assert_allclose(features["layer.2"][i], expected[2], atol=1e-5, rtol=1e-5)
    assert truncated == 3


def test_default_token_limit(roberta_dir, gpt2_dir, tmp_path):
    # RoBERTa numbers positions from padding_idx + 1: 40 position rows hold 38 tokens
    roberta = LanguageModelExtractor(roberta_dir, context_words=20)
    assert roberta.max_tokens == 38
    assert LanguageModelExtractor(gpt2_dir).max_tokens == 64
    # full windows of 20 context words need more than 38 tokens: they are cut, and run
    model, tokenizer = _load(roberta_dir)
    i = len(STORY) - 1
    assert _n_tokens(tokenizer, STORY[i - 20 : i + 1]) > 38
    features = roberta.embed_words(STORY, ["layer.2"])
    n = 20
    while _n_tokens(tokenizer, STORY[i - n : i + 1]) > 38:
        n -= 1
    np.testing.assert_allclose(features["layer.2"][i], _direct(model, tokenizer, STORY[i - n : i + 1], "last")[2],
                               atol=1e-5, rtol=1e-5)
    # a tokenizer limit below the model's wins
    limited = tmp_path / "limited"
    shutil.copytree(roberta_dir, limited)
    config_path = limited / "tokenizer_config.json"
    settings = json.loads(config_path.read_text())
    settings["model_max_length"] = 16
    config_path.write_text(json.dumps(settings))
    assert LanguageModelExtractor(limited).max_tokens == 16
    with pytest.raises(BrainencInputError, match="exceeds the 38 positions"):
        LanguageModelExtractor(roberta_dir, max_tokens=39)


def test_language_model_identity_and_name(roberta_dir):
    a = LanguageModelExtractor(roberta_dir, context_words=5)
    b = LanguageModelExtractor(roberta_dir, context_words=5)
    c = LanguageModelExtractor(roberta_dir, context_words=6)
    assert a.identity() == b.identity()
    assert a.identity() != c.identity()
    identity = json.loads(json.dumps(a.identity()))
    assert identity["model"] == str(roberta_dir)
    assert identity["model_class"] == "RobertaModel"
    assert identity["max_tokens"] == 38 and identity["token_pooling"] == "last" and identity["dtype"] == "float32"
    assert re.fullmatch(r"[0-9a-f]{16}", identity["config_hash"])
    assert a.name == roberta_dir.name.lower()
    assert a.modalities == ("story",)
    with pytest.raises(BrainencInputError, match="story stimuli only"):
        a.layers("movie")


def test_layer_errors(roberta_dir):
    extractor = LanguageModelExtractor(roberta_dir)
    assert select_layers(extractor.layers("story"), "-1") == ["layer.2"]
    with pytest.raises(BrainencInputError, match="out of range"):
        select_layers(extractor.layers("story"), "3")
    with pytest.raises(BrainencInputError, match="unknown layers"):
        extractor.embed_words(STORY[:3], ["layer.3"])


def test_model_without_hidden_states_is_named(gpt2_dir, monkeypatch):
    original = transformers.GPT2Model.forward

    def forward_without_hidden_states(self, *args, **kwargs):
        kwargs["output_hidden_states"] = False
        return original(self, *args, **kwargs)

    monkeypatch.setattr(transformers.GPT2Model, "forward", forward_without_hidden_states)
    extractor = LanguageModelExtractor(gpt2_dir)
    with pytest.raises(BrainencInputError, match="returned no hidden states") as error:
        extractor.embed_words(STORY[:4], ["layer.1"])
    assert str(gpt2_dir) in str(error.value)


def test_slow_tokenizer_is_refused(tmp_path):
    transformers.RobertaConfig(vocab_size=300, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                               intermediate_size=64).save_pretrained(tmp_path)
    transformers.ByT5Tokenizer().save_pretrained(tmp_path)
    with pytest.raises(BrainencInputError, match="not a fast tokenizer"):
        LanguageModelExtractor(tmp_path)


def test_device_and_dtype_choice():
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == expected
    assert resolve_dtype("float32", torch.device("cpu")) is torch.float32
    with pytest.raises(BrainencInputError, match="needs a GPU"):
        resolve_dtype("float16", torch.device("cpu"))
    with pytest.raises(BrainencInputError, match="dtype must be one of"):
        resolve_dtype("float64", torch.device("cpu"))


@pytest.fixture(scope="module")
def frames():
    rng = np.random.default_rng(3)
    return [rng.integers(0, 256, (40, 48, 3), dtype=np.uint8) for _ in range(5)]


def _direct_vision(folder, frames):
    processor = transformers.AutoImageProcessor.from_pretrained(folder)
    model = transformers.AutoModel.from_pretrained(folder).eval()
    with torch.no_grad():
        pixels = processor(images=frames, return_tensors="pt")["pixel_values"]
        return model(pixel_values=pixels, output_hidden_states=True).hidden_states


def test_vision_model_matches_direct_forward(vit_dir, frames):
    hidden = _direct_vision(vit_dir, frames)
    assert hidden[0].shape == (5, 1 + 16, 32)  # class token + 4 × 4 patches
    for pooling in ("cls", "mean"):
        extractor = VisionModelExtractor(vit_dir, frame_pooling=pooling, batch_size=2, device="cpu")
        layers = extractor.layers("movie")
        assert layers == ["layer.0", "layer.1", "layer.2"]
        features = extractor.embed_frames(frames, layers)
        for k, layer in enumerate(layers):
            expected = hidden[k][:, 0] if pooling == "cls" else hidden[k][:, 1:].mean(1)
            assert features[layer].shape == (5, 32) and features[layer].dtype == np.float32
            np.testing.assert_allclose(features[layer], expected.numpy(), atol=1e-5, rtol=1e-5)
        again = extractor.embed_frames(frames, ["layer.2"])
        np.testing.assert_array_equal(again["layer.2"], features["layer.2"])
    assert not np.allclose(features["layer.2"], hidden[2][:, 0].numpy(), atol=1e-3)  # mean is not CLS
    identity = extractor.identity()
    assert identity["frame_pooling"] == "mean" and identity["model_class"] == "ViTModel"
    assert extractor.name == vit_dir.name.lower()
    assert extractor.embed_frames([], ["layer.1"])["layer.1"].shape == (0, 32)
    with pytest.raises(BrainencInputError, match="uint8"):
        extractor.embed_frames([np.zeros((8, 8, 3), dtype=np.float32)], ["layer.1"])
    with pytest.raises(BrainencInputError, match="out of range"):
        select_layers(extractor.layers("movie"), "5")


def test_convolutional_model_is_average_pooled(tmp_path, frames):
    config = transformers.ResNetConfig(embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1])
    torch.manual_seed(4)
    transformers.ResNetModel(config).save_pretrained(tmp_path)
    transformers.ConvNextImageProcessor(size={"shortest_edge": 32}).save_pretrained(tmp_path)
    hidden = _direct_vision(tmp_path, frames)
    assert hidden[-1].ndim == 4
    extractor = VisionModelExtractor(tmp_path, frame_pooling="cls", batch_size=3, device="cpu")
    layers = extractor.layers("movie")
    assert layers == [f"layer.{k}" for k in range(len(hidden))]
    features = extractor.embed_frames(frames, layers)
    for k, layer in enumerate(layers):
        np.testing.assert_allclose(features[layer], hidden[k].mean(dim=(2, 3)).numpy(), atol=1e-5, rtol=1e-5)
    assert features["layer.2"].shape == (5, 16)


def _write_glove(path, rows, header=False):
    lines = [f"{len(rows)} {len(rows[0][1])}"] if header else []
    lines += [word + " " + " ".join(f"{v:.6f}" for v in vector) for word, vector in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


@pytest.fixture
def table():
    rng = np.random.default_rng(5)
    words = ["the", "Fox", "fox", "dog", "Rain", "brain", "The", "dog"]
    return words, rng.standard_normal((len(words), 4)).astype(np.float32).round(6)


@pytest.mark.parametrize("kind", ["glove", "word2vec", "hdf5"])
def test_word_embeddings_exact_vectors(tmp_path, table, kind):
    words, vectors = table
    if kind == "hdf5":
        path = tmp_path / "vectors.h5"
        with h5py.File(path, "w") as handle:
            handle.create_dataset("vocab", data=words, dtype=h5py.string_dtype())
            handle.create_dataset("matrix", data=vectors)
    else:
        path = tmp_path / "glove.6B.4d.txt"
        _write_glove(path, list(zip(words, vectors)), header=kind == "word2vec")
    extractor = WordEmbeddingExtractor(path)
    assert extractor.layers("story") == ["embedding"]
    story = ["The", "fox", "FOX", "rain", "brain", "dog"]
    out = extractor.embed_words(story, ["embedding"])["embedding"]
    assert out.shape == (6, 4) and out.dtype == np.float32
    # lower-cased lookup; "fox" and "the" beat "Fox" and "The" wherever they are; "Rain" is found
    # as "rain"; of two "dog" entries the first wins
    expected = vectors[[0, 2, 2, 4, 5, 3]]
    np.testing.assert_allclose(out, expected, atol=1e-6)
    identity = extractor.identity()
    assert identity["size"] == path.stat().st_size and identity["lowercase"] is True
    assert len(identity["sha256"]) == 64


def test_unknown_words_are_zero_with_one_warning(tmp_path, table):
    words, vectors = table
    path = tmp_path / "vecs.txt"
    _write_glove(path, list(zip(words, vectors)))
    extractor = WordEmbeddingExtractor(path)
    assert extractor.name == "vecs"
    with pytest.warns(UserWarning, match=r"3 of 5 words .*'zebra', 'qux'") as record:
        out = extractor.embed_words(["zebra", "the", "qux", "zebra", "dog"], ["embedding"])["embedding"]
    assert len(record) == 1
    np.testing.assert_array_equal(out[[0, 2, 3]], 0.0)
    np.testing.assert_allclose(out[[1, 4]], vectors[[0, 3]], atol=1e-6)
    exact_case = WordEmbeddingExtractor(path, lowercase=False)
    with pytest.warns(UserWarning, match="1 of 2 words"):
        out = exact_case.embed_words(["Fox", "rain"], ["embedding"])["embedding"]
    np.testing.assert_allclose(out[0], vectors[1], atol=1e-6)
    assert exact_case.identity() != extractor.identity()


def test_word_embedding_errors(tmp_path, table):
    words, vectors = table
    path = tmp_path / "vecs.txt"
    _write_glove(path, list(zip(words, vectors)))
    before = WordEmbeddingExtractor(path).identity()
    with pytest.raises(BrainencInputError, match="unknown layers"):
        WordEmbeddingExtractor(path).embed_words(["the"], ["layer.1"])
    with pytest.raises(BrainencInputError, match="story words only"):
        WordEmbeddingExtractor(path).layers("movie")
    with path.open("a") as handle:
        handle.write("cat 1.0 2.0\n")
    with pytest.raises(BrainencInputError, match="line 9 has 2 values"):
        WordEmbeddingExtractor(path).embed_words(["the"], ["embedding"])
    assert WordEmbeddingExtractor(path).identity()["sha256"] != before["sha256"]
    with pytest.raises(BrainencInputError, match="no such word-embedding file"):
        WordEmbeddingExtractor(tmp_path / "missing.txt")
    bad = tmp_path / "bad.h5"
    with h5py.File(bad, "w") as handle:
        handle.create_dataset("vocab", data=["a", "b"], dtype=h5py.string_dtype())
        handle.create_dataset("data", data=np.zeros((3, 2)))
    with pytest.raises(BrainencInputError, match="expected \\(2 words"):
        WordEmbeddingExtractor(bad).embed_words(["a"], ["embedding"])

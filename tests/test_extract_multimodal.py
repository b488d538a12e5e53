"""BridgeTower and CLIP extractors against direct forward passes of tiny random models.

Each model is built from a small configuration, saved with a tokenizer trained
here and an image processor, and loaded back through the extractor's public
path (``from_pretrained`` on a local folder). References are computed with
plain transformers calls on one window or one frame at a time.
"""
from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("transformers")
import torch  # noqa: E402

from brainenc.errors import BrainencInputError  # noqa: E402
from feature_extractors.base import select_layers  # noqa: E402
from feature_extractors.bridgetower import BridgeTowerExtractor  # noqa: E402
from feature_extractors.clip import CLIPExtractor  # noqa: E402
from feature_extractors.loading import load_extractor  # noqa: E402
from tests.tiny_models import save_tiny_bridgetower, save_tiny_clip  # noqa: E402

SENTENCES = [
    "the quick brown fox jumps over the lazy dog",
    "a man walked into the room and sat down by the window",
    "she said that it was raining in the city tonight",
    "we looked at the river and the boats went slowly past",
]
STORY = ("she said the man walked into the room and sat down by the window while the quick "
         "brown fox jumps over the lazy dog and we looked at the river tonight").split()
ATOL = 1e-5


@pytest.fixture(scope="module")
def bridgetower_dir(tmp_path_factory):
    return save_tiny_bridgetower(tmp_path_factory.mktemp("models") / "BridgeTower-Tiny", SENTENCES)


@pytest.fixture(scope="module")
def bridgetower_reference(bridgetower_dir):
    from transformers import AutoImageProcessor, AutoTokenizer, BridgeTowerModel

    return (BridgeTowerModel.from_pretrained(bridgetower_dir).eval(), AutoTokenizer.from_pretrained(bridgetower_dir),
            AutoImageProcessor.from_pretrained(bridgetower_dir))


@pytest.fixture(scope="module")
def towers(bridgetower_dir):
    return BridgeTowerExtractor(bridgetower_dir, device="cpu", batch_size=4)


@pytest.fixture(scope="module")
def neutral(bridgetower_dir):
    return BridgeTowerExtractor(bridgetower_dir, input_mode="neutral", device="cpu", batch_size=4)


@pytest.fixture(scope="module")
def towers_story(towers):
    return towers.embed_words(STORY, towers.layers("story"))


@pytest.fixture(scope="module")
def neutral_story(neutral):
    return neutral.embed_words(STORY, neutral.layers("story"))


@pytest.fixture(scope="module")
def clip_dir(tmp_path_factory):
    return save_tiny_clip(tmp_path_factory.mktemp("models") / "clip-tiny", SENTENCES)


@pytest.fixture(scope="module")
def clip_reference(clip_dir):
    from transformers import AutoImageProcessor, AutoTokenizer, CLIPModel

    return (CLIPModel.from_pretrained(clip_dir).eval(), AutoTokenizer.from_pretrained(clip_dir),
            AutoImageProcessor.from_pretrained(clip_dir))


@pytest.fixture(scope="module")
def frames():
    rng = np.random.default_rng(3)
    return [rng.integers(0, 256, size=(40, 48, 3), dtype=np.uint8) for _ in range(5)]


def window_text(tokenizer, i: int, limit: int, context_words: int = 20) -> tuple[str, int]:
    """The text of word ``i``'s window: as many preceding words as fit in ``limit`` tokens."""
    n = min(context_words, i)
    while len(tokenizer(" ".join(STORY[i - n : i + 1]))["input_ids"]) > limit:
        n -= 1
    return " ".join(STORY[i - n : i + 1]), n


def ids_of(tokenizer, text: str) -> torch.Tensor:
    return torch.tensor([tokenizer(text)["input_ids"]])


# --------------------------------------------------------------------------- #
# BridgeTower
# --------------------------------------------------------------------------- #
def test_bridgetower_layers_names_and_shapes(towers, neutral, frames):
    assert towers.name == "bridgetower-tiny"
    assert towers.layers("story") == ["text.0", "text.1", "text.2"]
    assert towers.layers("movie") == ["vision.0", "vision.1", "vision.2"]
    assert neutral.layers("story") == ["text.0", "text.1", "text.2", "cross.text.1", "cross.text.2"]
    assert neutral.layers("movie") == ["vision.0", "vision.1", "vision.2", "cross.vision.1", "cross.vision.2"]
    words = neutral.embed_words(STORY[:6], neutral.layers("story"))
    assert {k: v.shape for k, v in words.items()} == {k: (6, 64) for k in neutral.layers("story")}
    assert all(v.dtype == np.float32 for v in words.values())
    pictures = neutral.embed_frames(frames[:3], neutral.layers("movie"))
    assert {k: v.shape for k, v in pictures.items()} == {k: (3, 64) for k in neutral.layers("movie")}
    assert towers.embed_words([], ["text.1"])["text.1"].shape == (0, 64)


def test_bridgetower_towers_words_equal_text_tower_pass(towers, towers_story, bridgetower_reference):
    model, tokenizer, _ = bridgetower_reference
    # 24 position rows less RoBERTa's offset (padding index 1, + 1)
    assert towers.max_tokens == 22
    vectors = towers_story
    for i in (0, 3, 12, len(STORY) - 1):
        text, n_context = window_text(tokenizer, i, 22)
        ids = ids_of(tokenizer, text)
        with torch.no_grad():
            hidden = model.text_model(input_ids=ids, output_hidden_states=True).hidden_states
        assert len(hidden) == 3
        for k in range(3):
            # the word's last token sits just before the closing </s>
            np.testing.assert_allclose(vectors[f"text.{k}"][i], hidden[k][0, -2].numpy(), atol=ATOL)
    # the last words' 20-word windows do not fit: their earliest context was dropped
    full_window = " ".join(STORY[len(STORY) - 21 :])
    assert len(tokenizer(full_window)["input_ids"]) > 22
    assert window_text(tokenizer, len(STORY) - 1, 22)[1] < 20


def test_bridgetower_mean_token_pooling(bridgetower_dir, bridgetower_reference):
    model, tokenizer, _ = bridgetower_reference
    extractor = BridgeTowerExtractor(bridgetower_dir, token_pooling="mean", context_words=3, device="cpu")
    vectors = extractor.embed_words(STORY[:8], ["text.2"])["text.2"]
    i = 7
    context = " ".join(STORY[i - 3 : i])
    start = len(tokenizer(context)["input_ids"]) - 1  # the word's tokens replace the closing </s>
    ids = ids_of(tokenizer, " ".join(STORY[i - 3 : i + 1]))
    assert ids.shape[1] - 1 - start >= 2  # a word of several tokens (space and word pieces)
    with torch.no_grad():
        hidden = model.text_model(input_ids=ids, output_hidden_states=True).hidden_states[2][0]
    tokens = hidden[start : ids.shape[1] - 1]
    offsets = tokenizer(" ".join(STORY[i - 3 : i + 1]), return_offsets_mapping=True)["offset_mapping"]
    real = [k - start for k in range(start, ids.shape[1] - 1) if offsets[k][1] > offsets[k][0]]
    np.testing.assert_allclose(vectors[i], tokens[real].mean(0).numpy(), atol=ATOL)


def test_bridgetower_neutral_words_equal_full_model_with_grey_image(neutral_story, towers_story,
                                                                   bridgetower_reference):
    model, tokenizer, processor = bridgetower_reference
    grey = processor(images=[np.full((32, 32, 3), 128, np.uint8)], return_tensors="pt")["pixel_values"]
    vectors = neutral_story
    for i in (1, 9, len(STORY) - 1):
        ids = ids_of(tokenizer, window_text(tokenizer, i, 22)[0])
        with torch.no_grad():
            text, image, cross = model(input_ids=ids, pixel_values=grey, output_hidden_states=True).hidden_states
        assert image[0].shape[:2] == (5, 1)  # image states are tokens × batch × hidden
        for k in range(3):
            np.testing.assert_allclose(vectors[f"text.{k}"][i], text[k][0, -2].numpy(), atol=ATOL)
        for k in (1, 2):
            np.testing.assert_allclose(vectors[f"cross.text.{k}"][i], cross[k - 1][0][0, -2].numpy(), atol=ATOL)
    # the text tower never sees the image: both modes give the same tower layers
    np.testing.assert_allclose(vectors["text.2"], towers_story["text.2"], atol=ATOL)
    # and the cross-modal layers do depend on the text
    assert np.abs(vectors["cross.text.2"][1] - vectors["cross.text.2"][9]).max() > 1e-3


def test_bridgetower_towers_frames_equal_vision_tower(towers, bridgetower_reference, frames):
    model, tokenizer, processor = bridgetower_reference
    vectors = towers.embed_frames(frames, towers.layers("movie"))
    pixels = processor(images=frames, return_tensors="pt")["pixel_values"]
    assert pixels.shape == (5, 3, 32, 32)
    ids = ids_of(tokenizer, "a man").expand(len(frames), -1)
    with torch.no_grad():
        image = model(input_ids=ids, pixel_values=pixels, output_hidden_states=True).hidden_states[1]
        tower = model.vision_model(pixels)  # ln_post of blocks 1..M, batch-first
    for k in range(3):
        np.testing.assert_allclose(vectors[f"vision.{k}"], image[k][0].numpy(), atol=ATOL)
    ln_post = model.vision_model.visual.ln_post
    for k in (1, 2):
        with torch.no_grad():
            expected = tower[k - 1][:, 0]
            got = ln_post(torch.from_numpy(vectors[f"vision.{k}"]))
        np.testing.assert_allclose(got.numpy(), expected.numpy(), atol=ATOL)


def test_bridgetower_neutral_frames_equal_full_model_with_empty_text(bridgetower_dir, neutral, towers,
                                                                     bridgetower_reference, frames):
    model, tokenizer, processor = bridgetower_reference
    pixels = processor(images=frames, return_tensors="pt")["pixel_values"]
    ids = torch.tensor([[tokenizer.bos_token_id, tokenizer.eos_token_id]] * len(frames))
    with torch.no_grad():
        _, image, cross = model(input_ids=ids, pixel_values=pixels, output_hidden_states=True).hidden_states
    vectors = neutral.embed_frames(frames, neutral.layers("movie"))
    for k in range(3):
        np.testing.assert_allclose(vectors[f"vision.{k}"], image[k][0].numpy(), atol=ATOL)
    for k in (1, 2):
        np.testing.assert_allclose(vectors[f"cross.vision.{k}"], cross[k - 1][1][:, 0].numpy(), atol=ATOL)
    np.testing.assert_allclose(vectors["vision.2"], towers.embed_frames(frames, ["vision.2"])["vision.2"],
                               atol=ATOL)
    mean = BridgeTowerExtractor(bridgetower_dir, input_mode="neutral", frame_pooling="mean", device="cpu")
    pooled = mean.embed_frames(frames, ["vision.1", "cross.vision.2"])
    np.testing.assert_allclose(pooled["vision.1"], image[1][1:].mean(0).numpy(), atol=ATOL)
    np.testing.assert_allclose(pooled["cross.vision.2"], cross[1][1][:, 1:].mean(1).numpy(), atol=ATOL)


def test_bridgetower_batching_and_repeats_do_not_change_vectors(bridgetower_dir, neutral, neutral_story, frames):
    one_by_one = BridgeTowerExtractor(bridgetower_dir, input_mode="neutral", device="cpu", batch_size=1)
    layers = ["text.1", "cross.text.2"]
    words = STORY[:10]  # windows of 1 to 10 words: batches of 4 mix lengths and padding
    first, again = neutral.embed_words(words, layers), neutral.embed_words(words, layers)
    single = one_by_one.embed_words(words, layers)
    for layer in layers:
        np.testing.assert_array_equal(first[layer], again[layer])
        # the same windows inside the whole story's batches, and one at a time
        np.testing.assert_allclose(first[layer], neutral_story[layer][:10], atol=ATOL)
        np.testing.assert_allclose(single[layer], neutral_story[layer][:10], atol=ATOL)
    np.testing.assert_allclose(neutral.embed_frames(frames, ["cross.vision.1"])["cross.vision.1"],
                               one_by_one.embed_frames(frames, ["cross.vision.1"])["cross.vision.1"], atol=ATOL)


def test_bridgetower_identity(bridgetower_dir, towers, neutral):
    identity = towers.identity()
    json.dumps(identity)
    assert identity["model"] == str(bridgetower_dir)
    assert identity["model_class"] == "BridgeTowerModel"
    assert identity["input_mode"] == "towers" and identity["context_words"] == 20
    assert identity != neutral.identity()
    assert BridgeTowerExtractor(bridgetower_dir, device="cpu", batch_size=7).identity() == identity
    assert BridgeTowerExtractor(bridgetower_dir, device="cpu", context_words=5).identity() != identity
    # the generic loader dispatches on the configuration's model type
    chosen = load_extractor(str(bridgetower_dir), input_mode="neutral", device="cpu", projections=None)
    assert isinstance(chosen, BridgeTowerExtractor) and chosen.identity() == neutral.identity()


def test_bridgetower_layer_errors(bridgetower_dir, towers):
    with pytest.raises(BrainencInputError, match="input_mode='neutral'.*text.0"):
        towers.embed_words(STORY[:3], ["cross.text.1"])
    with pytest.raises(BrainencInputError, match="vision.2"):
        towers.embed_frames([np.zeros((32, 32, 3), np.uint8)], ["cross.vision.1"])
    with pytest.raises(BrainencInputError, match="available layers"):
        select_layers(towers.layers("story"), "cross.*")
    with pytest.raises(BrainencInputError, match="text.3"):
        select_layers(towers.layers("story"), "text.3")
    assert select_layers(towers.layers("story"), "-1") == ["text.2"]
    with pytest.raises(BrainencInputError, match="uint8"):
        towers.embed_frames([np.zeros((32, 32), np.uint8)], ["vision.1"])
    with pytest.raises(BrainencInputError, match="input_mode"):
        BridgeTowerExtractor(bridgetower_dir, input_mode="both", device="cpu")
    with pytest.raises(BrainencInputError, match="exceeds"):
        BridgeTowerExtractor(bridgetower_dir, max_tokens=40, device="cpu")


# --------------------------------------------------------------------------- #
# CLIP
# --------------------------------------------------------------------------- #
@pytest.fixture(scope="module")
def clip(clip_dir):
    return CLIPExtractor(clip_dir, projections=True, device="cpu", batch_size=4)


def test_clip_layers_and_shapes(clip_dir, clip, frames):
    assert clip.name == "clip-tiny"
    assert clip.layers("story") == ["text.0", "text.1", "text.2", "text.projection"]
    assert clip.layers("movie") == ["vision.0", "vision.1", "vision.2", "vision.3", "vision.projection"]
    plain = CLIPExtractor(clip_dir, device="cpu")
    assert plain.layers("story") == ["text.0", "text.1", "text.2"]
    assert plain.identity() == clip.identity()
    assert isinstance(load_extractor(str(clip_dir), device="cpu"), CLIPExtractor)
    words = clip.embed_words(STORY[:4], clip.layers("story"))
    assert {k: v.shape for k, v in words.items()} == {"text.0": (4, 32), "text.1": (4, 32), "text.2": (4, 32),
                                                       "text.projection": (4, 16)}
    pictures = clip.embed_frames(frames[:2], ["vision.3", "vision.projection"])
    assert pictures["vision.3"].shape == (2, 32) and pictures["vision.projection"].shape == (2, 16)
    with pytest.raises(BrainencInputError, match="projections=True"):
        plain.embed_words(STORY[:2], ["text.projection"])


def test_clip_words_equal_text_tower_pass(clip, clip_reference):
    model, tokenizer, _ = clip_reference
    assert clip.max_tokens == 16
    vectors = clip.embed_words(STORY, clip.layers("story"))
    for i in (0, 4, len(STORY) - 1):
        ids = ids_of(tokenizer, window_text(tokenizer, i, 16)[0])
        with torch.no_grad():
            hidden = model.text_model(input_ids=ids, output_hidden_states=True).hidden_states
            projected = model.get_text_features(input_ids=ids).pooler_output
        for k in range(3):
            np.testing.assert_allclose(vectors[f"text.{k}"][i], hidden[k][0, -2].numpy(), atol=ATOL)
        np.testing.assert_allclose(vectors["text.projection"][i], projected[0].numpy(), atol=ATOL)
    assert len(tokenizer(" ".join(STORY[-21:]))["input_ids"]) > 16  # truncation happened
    assert window_text(tokenizer, len(STORY) - 1, 16)[1] < 20


def test_clip_frames_equal_vision_tower_pass(clip_dir, clip, clip_reference, frames):
    model, _, processor = clip_reference
    pixels = processor(images=frames, return_tensors="pt")["pixel_values"]
    with torch.no_grad():
        hidden = model.vision_model(pixel_values=pixels, output_hidden_states=True).hidden_states
        projected = model.get_image_features(pixel_values=pixels).pooler_output
    vectors = clip.embed_frames(frames, clip.layers("movie"))
    for k in range(4):
        np.testing.assert_allclose(vectors[f"vision.{k}"], hidden[k][:, 0].numpy(), atol=ATOL)
    np.testing.assert_allclose(vectors["vision.projection"], projected.numpy(), atol=ATOL)
    mean = CLIPExtractor(clip_dir, frame_pooling="mean", device="cpu", batch_size=2)
    np.testing.assert_allclose(mean.embed_frames(frames, ["vision.2"])["vision.2"],
                               hidden[2][:, 1:].mean(1).numpy(), atol=ATOL)

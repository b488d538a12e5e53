"""Offline-safe model loading and the choice of extractor by model type."""
from __future__ import annotations

import importlib
import socket
import sys
import time
import types

import numpy as np
import pytest

transformers = pytest.importorskip("transformers")
torch = pytest.importorskip("torch")

from brainenc.errors import BrainencInputError  # noqa: E402
from feature_extractors import loading  # noqa: E402
from feature_extractors.loading import (  # noqa: E402
    hub_reachable,
    is_vision_config,
    load_extractor,
    load_pretrained,
    model_type,
)

HUB_ID = "brainenc-tests/no-such-model"


def tiny_bert_config():
    return transformers.BertConfig(vocab_size=60, hidden_size=32, num_hidden_layers=2,
                                   num_attention_heads=2, intermediate_size=37,
                                   max_position_embeddings=64)


@pytest.fixture(scope="module")
def bert_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("models") / "tiny-bert"
    torch.manual_seed(0)
    transformers.BertModel(tiny_bert_config()).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def config_folders(tmp_path_factory):
    """Saved configurations (no weights) of one model of each kind."""
    root = tmp_path_factory.mktemp("configs")
    configs = {
        "bert": tiny_bert_config(),
        "gpt2": transformers.GPT2Config(n_embd=32, n_layer=1, n_head=2, vocab_size=50),
        "vit": transformers.ViTConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                                      intermediate_size=37, image_size=32, patch_size=8),
        "beit": transformers.BeitConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                                        intermediate_size=37, image_size=32, patch_size=8),
        "clip": transformers.CLIPConfig(),
        "bridgetower": transformers.BridgeTowerConfig(),
    }
    folders = {}
    for name, config in configs.items():
        config.save_pretrained(root / name)
        folders[name] = root / name
    return folders


@pytest.fixture
def offline_env(monkeypatch, tmp_path):
    """No proxy, an empty Hugging Face home, offline switches unset."""
    for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HTTPS_PROXY", "https_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    return monkeypatch


# --------------------------------------------------------------------------- #
# load_pretrained
# --------------------------------------------------------------------------- #
def test_local_folder_loads_the_saved_model(bert_folder):
    model = load_pretrained(str(bert_folder), transformers.AutoModel)
    assert isinstance(model, transformers.BertModel)
    reference = transformers.BertModel.from_pretrained(bert_folder).state_dict()
    loaded = model.state_dict()
    assert loaded.keys() == reference.keys()
    for key in reference:
        torch.testing.assert_close(loaded[key], reference[key], rtol=0, atol=0)
    # keyword arguments reach from_pretrained
    config = load_pretrained(bert_folder, transformers.AutoConfig, num_hidden_layers=1)
    assert config.num_hidden_layers == 1 and config.hidden_size == 32


def test_home_relative_folder(bert_folder, monkeypatch):
    monkeypatch.setenv("HOME", str(bert_folder.parent))
    config = load_pretrained(f"~/{bert_folder.name}", transformers.AutoConfig)
    assert config.model_type == "bert"


def test_paths_that_are_not_folders(tmp_path, bert_folder):
    for missing in (str(tmp_path / "absent" / "model"), "./absent-model", "models/a/b"):
        with pytest.raises(BrainencInputError, match="does not exist") as info:
            load_pretrained(missing, transformers.AutoModel)
        assert "absent" in str(info.value) or "models/a/b" in str(info.value)
    a_file = bert_folder / "config.json"
    with pytest.raises(BrainencInputError, match="is a file") as info:
        load_pretrained(str(a_file), transformers.AutoConfig)
    assert info.value.path == a_file


def test_folder_the_loader_cannot_read(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(BrainencInputError, match="cannot load AutoModel") as info:
        load_pretrained(tmp_path / "empty", transformers.AutoModel)
    assert info.value.path == tmp_path / "empty"


def test_uncached_hub_id_offline_fails_at_once(offline_env):
    offline_env.setenv("HF_HUB_OFFLINE", "1")
    start = time.monotonic()
    with pytest.raises(BrainencInputError, match="local folder") as info:
        load_pretrained(HUB_ID, transformers.AutoModel)
    assert time.monotonic() - start < 5
    assert HUB_ID in str(info.value) and "HF_HUB_OFFLINE" in str(info.value)


def test_uncached_hub_id_unreachable_hub_fails_at_once(offline_env):
    offline_env.setattr(loading, "hub_reachable", lambda timeout=2.0: False)
    start = time.monotonic()
    with pytest.raises(BrainencInputError, match="local folder") as info:
        load_pretrained(HUB_ID, transformers.AutoTokenizer)
    assert time.monotonic() - start < 5
    assert "cannot be reached" in str(info.value)


class RecordingLoader:
    """A loader whose cache holds the ids in ``cached``; records every call."""

    cached: set = set()
    calls: list = []

    @classmethod
    def from_pretrained(cls, model_id, **kwargs):
        cls.calls.append((model_id, kwargs))
        if kwargs.get("local_files_only") and model_id not in cls.cached:
            raise OSError("not in the cache")
        return ("loaded", model_id)


def test_hub_id_order_cache_then_download(offline_env):
    RecordingLoader.cached, RecordingLoader.calls = {"org/cached"}, []
    offline_env.setattr(loading, "hub_reachable", lambda timeout=2.0: pytest.fail("no check needed"))
    assert load_pretrained("org/cached", RecordingLoader, revision="main") == ("loaded", "org/cached")
    assert RecordingLoader.calls == [("org/cached", {"revision": "main", "local_files_only": True})]

    RecordingLoader.calls = []
    offline_env.setattr(loading, "hub_reachable", lambda timeout=2.0: True)
    assert load_pretrained("org/remote", RecordingLoader, revision="main") == ("loaded", "org/remote")
    assert RecordingLoader.calls == [("org/remote", {"revision": "main", "local_files_only": True}),
                                     ("org/remote", {"revision": "main"})]

    # Asking for cached files only never downloads.
    RecordingLoader.calls = []
    with pytest.raises(BrainencInputError, match="local_files_only"):
        load_pretrained("org/remote", RecordingLoader, local_files_only=True)
    assert len(RecordingLoader.calls) == 1


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_hub_reachable_tests_a_tcp_connection(offline_env):
    closed = _closed_port()
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(2)
        listening = server.getsockname()[1]
        offline_env.setenv("HF_ENDPOINT", f"http://127.0.0.1:{listening}")
        assert hub_reachable(timeout=2.0)
        offline_env.setenv("HF_ENDPOINT", f"http://127.0.0.1:{closed}")
        start = time.monotonic()
        assert not hub_reachable(timeout=2.0)
        assert time.monotonic() - start < 3
        # A proxy, when set, is what gets tested instead of the endpoint.
        offline_env.setenv("HTTPS_PROXY", f"http://127.0.0.1:{listening}")
        assert hub_reachable(timeout=2.0)


# --------------------------------------------------------------------------- #
# model_type and load_extractor
# --------------------------------------------------------------------------- #
def test_model_type_and_vision_check(config_folders):
    expected_vision = {"bert": False, "gpt2": False, "vit": True, "beit": True,
                       "clip": False, "bridgetower": False}
    for name, folder in config_folders.items():
        assert model_type(str(folder)) == name
        config = transformers.AutoConfig.from_pretrained(folder)
        assert is_vision_config(config) is expected_vision[name], name


def test_model_type_errors(tmp_path):
    (tmp_path / "no-config").mkdir()
    with pytest.raises(BrainencInputError, match="no-config"):
        model_type(str(tmp_path / "no-config"))
    with pytest.raises(BrainencInputError, match="does not exist"):
        model_type(str(tmp_path / "missing"))


class _FakeExtractor:
    """Stands in for an extractor class: records its arguments."""

    def __init__(self, model, device="auto", context_words=20):
        self.model, self.device, self.context_words = model, device, context_words


@pytest.fixture
def fake_extractors(monkeypatch):
    """Replace the extractor modules with fakes: one class per dispatch target."""
    targets = {"bridgetower": ["BridgeTowerExtractor"], "clip": ["CLIPExtractor"],
               "hf_auto": ["VisionModelExtractor", "LanguageModelExtractor"],
               "lookup": ["WordEmbeddingExtractor"]}
    classes = {}
    for module_name, class_names in targets.items():
        module = types.ModuleType(f"feature_extractors.{module_name}")
        for class_name in class_names:
            classes[class_name] = type(class_name, (_FakeExtractor,), {})
            setattr(module, class_name, classes[class_name])
        monkeypatch.setitem(sys.modules, module.__name__, module)
    return classes


def test_load_extractor_dispatch(config_folders, fake_extractors, tmp_path):
    expected = {"bridgetower": "BridgeTowerExtractor", "clip": "CLIPExtractor",
                "vit": "VisionModelExtractor", "beit": "VisionModelExtractor",
                "bert": "LanguageModelExtractor", "gpt2": "LanguageModelExtractor"}
    for name, class_name in expected.items():
        extractor = load_extractor(str(config_folders[name]), device="cpu")
        assert type(extractor) is fake_extractors[class_name], name
        assert extractor.model == str(config_folders[name]) and extractor.device == "cpu"
    vectors = tmp_path / "vectors.txt"
    vectors.write_text("2 3\nthe 1 2 3\ncat 4 5 6\n")
    assert type(load_extractor(str(vectors))) is fake_extractors["WordEmbeddingExtractor"]
    with pytest.raises(BrainencInputError, match="word-embedding file not found"):
        load_extractor(str(tmp_path / "missing.vec"))


def test_load_extractor_options(config_folders, fake_extractors):
    folder = str(config_folders["bert"])
    extractor = load_extractor(folder, context_words=5, device=None)
    assert extractor.context_words == 5 and extractor.device == "auto"   # None: not given
    with pytest.raises(BrainencInputError, match="frame_pooling") as info:
        load_extractor(folder, frame_pooling="mean")
    assert "LanguageModelExtractor" in str(info.value) and "context_words" in str(info.value)


def _real(module: str, name: str):
    try:
        return getattr(importlib.import_module(f"feature_extractors.{module}"), name)
    except (ImportError, AttributeError):
        pytest.skip(f"feature_extractors.{module}.{name} is not available")


def test_load_extractor_builds_real_extractors(tmp_path, config_folders):
    vision_class = _real("hf_auto", "VisionModelExtractor")
    lookup_class = _real("lookup", "WordEmbeddingExtractor")
    folder = tmp_path / "tiny-vit"
    transformers.ViTModel(transformers.AutoConfig.from_pretrained(config_folders["vit"])) \
        .save_pretrained(folder)
    transformers.ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(folder)
    extractor = load_extractor(str(folder), frame_pooling="mean", device="cpu", context_words=None)
    assert isinstance(extractor, vision_class) and extractor.frame_pooling == "mean"
    with pytest.raises(BrainencInputError, match="context_words"):
        load_extractor(str(folder), context_words=3)

    vectors = tmp_path / "vectors.txt"
    vectors.write_text("2 3\nthe 1 2 3\ncat 4 5 6\n")
    extractor = load_extractor(str(vectors), lowercase=False)
    assert isinstance(extractor, lookup_class) and extractor.lowercase is False
    out = extractor.embed_words(["the", "cat"], ["embedding"])["embedding"]
    np.testing.assert_allclose(out, [[1, 2, 3], [4, 5, 6]])

"""Loading pretrained models without hanging offline, and choosing an extractor.

A model is named by a local folder (written with ``save_pretrained``) or by a
Hugging Face hub id. :func:`load_pretrained` resolves the name in this order:

1. an existing folder: loaded from it;
2. something that is clearly a path (starts with ``.``, ``/`` or ``~``, or is
   not a valid hub id) but not a folder: an error saying so;
3. a hub id found in the local Hugging Face cache: loaded offline;
4. a hub id while downloads are switched off (``HF_HUB_OFFLINE`` or
   ``TRANSFORMERS_OFFLINE``) or the hub is unreachable: an error at once;
5. otherwise: loaded (downloaded) from the hub.

Reachability is a TCP connection to the hub host (``HF_ENDPOINT``, default
``https://huggingface.co``; the proxy of ``HTTPS_PROXY`` when set) with a 2 s
limit, so a machine without network gets an answer in seconds, not after the
download library's retries.
"""
from __future__ import annotations

import inspect
import os
import socket
import threading
from pathlib import Path
from urllib.parse import urlsplit

from brainenc.errors import BrainencInputError
from feature_extractors.base import FeatureExtractor

DEFAULT_ENDPOINT = "https://huggingface.co"
#: Seconds allowed for the connection test (DNS lookup included).
CONNECT_TIMEOUT_S = 2.0
#: Files that :func:`load_extractor` reads as static word embeddings.
WORD_EMBEDDING_SUFFIXES = (".txt", ".vec", ".txt.gz", ".vec.gz", ".h5", ".hdf5", ".hf5")
_TRUE_VALUES = {"1", "on", "yes", "true"}


# --------------------------------------------------------------------------- #
# Offline-safe loading
# --------------------------------------------------------------------------- #
def hub_offline_requested() -> bool:
    """Whether ``HF_HUB_OFFLINE`` or ``TRANSFORMERS_OFFLINE`` switches downloads off."""
    return any(os.environ.get(name, "").strip().lower() in _TRUE_VALUES
               for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


def _connect_target() -> tuple[str, int] | None:
    """Host and port to test: the HTTPS proxy when one is set, else the hub endpoint."""
    for name in ("HTTPS_PROXY", "https_proxy"):
        proxy = os.environ.get(name)
        if proxy:
            parts = urlsplit(proxy if "://" in proxy else f"http://{proxy}")
            if parts.hostname:
                return parts.hostname, parts.port or (443 if parts.scheme == "https" else 80)
    parts = urlsplit(os.environ.get("HF_ENDPOINT") or DEFAULT_ENDPOINT)
    if not parts.hostname:
        return None
    return parts.hostname, parts.port or (80 if parts.scheme == "http" else 443)


def hub_reachable(timeout: float = CONNECT_TIMEOUT_S) -> bool:
    """Whether a TCP connection to the hub (or the HTTPS proxy) opens within ``timeout`` s.

    The test runs in a background thread so that a slow DNS lookup, which the
    socket timeout does not cover, cannot hold the caller longer than ``timeout``.
    """
    target = _connect_target()
    if target is None:
        return False
    result = {"ok": False}

    def attempt():
        try:
            with socket.create_connection(target, timeout=timeout):
                result["ok"] = True
        except OSError:
            pass

    thread = threading.Thread(target=attempt, name="hub-connect-test", daemon=True)
    thread.start()
    thread.join(timeout)
    return result["ok"]


def _is_hub_id(name: str) -> bool:
    if name.startswith((".", "/", "~")) or (os.altsep and os.altsep in name) or "\\" in name:
        return False
    try:
        from huggingface_hub.utils import validate_repo_id
    except ImportError:   # very old huggingface_hub: accept ``name`` or ``org/name``
        return name.count("/") <= 1 and " " not in name
    try:
        validate_repo_id(name)
    except ValueError:
        return False
    return True


def _loader_name(loader) -> str:
    return getattr(loader, "__name__", type(loader).__name__)


def load_pretrained(model_id: str, loader, **kwargs):
    """``loader.from_pretrained`` on a local folder or a hub id, never hanging offline.

    Parameters
    ----------
    model_id : str
        A folder written with ``save_pretrained`` or a hub id (``org/name``).
    loader : class
        Anything with ``from_pretrained`` (``AutoModel``, ``AutoTokenizer``,
        ``AutoConfig``...).
    **kwargs
        Passed to ``from_pretrained``. ``local_files_only=True`` forbids the
        download step.

    Returns
    -------
    Whatever ``loader.from_pretrained`` returns.

    Raises
    ------
    BrainencInputError
        A path that is not a folder; a folder the loader cannot read; a hub id
        that is not cached while downloads are off or the hub is unreachable.
    """
    model_id = str(model_id)
    local = Path(model_id).expanduser()
    if local.is_dir():
        try:
            return loader.from_pretrained(str(local), **kwargs)
        except (OSError, ValueError) as error:
            # transformers reports missing or unrecognised files with either.
            if isinstance(error, BrainencInputError):
                raise
            raise BrainencInputError(
                local, f"cannot load {_loader_name(loader)} from this model folder ({error})"
            ) from error
    if local.exists():
        raise BrainencInputError(
            local, "is a file, not a model folder: pass the folder written by save_pretrained"
        )
    if not _is_hub_id(model_id):
        raise BrainencInputError(
            local, "model folder does not exist (and the name is not a Hugging Face hub id)"
        )

    # The cache first: loading with local_files_only never touches the network.
    try:
        return loader.from_pretrained(model_id, **{**kwargs, "local_files_only": True})
    except OSError as cache_error:
        offline_error = cache_error
    if kwargs.get("local_files_only"):
        reason = "local_files_only is set"
    elif hub_offline_requested():
        reason = "downloads are switched off (HF_HUB_OFFLINE / TRANSFORMERS_OFFLINE)"
    elif not hub_reachable():
        reason = "the hub cannot be reached"
    else:
        return loader.from_pretrained(model_id, **kwargs)
    raise BrainencInputError(
        None, f"model {model_id!r} is not a local folder and not in the Hugging Face cache, "
        f"and {reason}: pass a local folder (a model saved with save_pretrained)"
    ) from offline_error


# --------------------------------------------------------------------------- #
# Model type and extractor choice
# --------------------------------------------------------------------------- #
def load_config(model_id: str, revision: str | None = None):
    """The model's ``transformers`` configuration (at hub ``revision``), through :func:`load_pretrained`.

    Raises
    ------
    BrainencInputError
        As :func:`load_pretrained`; also when the configuration cannot be read
        (no ``config.json``, or a model type this ``transformers`` lacks).
    """
    from transformers import AutoConfig

    try:
        return load_pretrained(model_id, AutoConfig, **({} if revision is None else {"revision": revision}))
    except (OSError, ValueError) as error:
        if isinstance(error, BrainencInputError):
            raise
        raise BrainencInputError(
            None, f"cannot read the configuration of model {model_id!r} ({error})"
        ) from error


def model_type(model_id: str) -> str:
    """``model_type`` from the model's ``config.json`` (``"bert"``, ``"bridgetower"``...)."""
    return load_config(model_id).model_type


def _mapping_names(*names: str) -> set[str]:
    from transformers.models.auto import modeling_auto

    found: set[str] = set()
    for name in names:
        found |= set(getattr(modeling_auto, name, {}))
    return found


def is_vision_config(config) -> bool:
    """Whether a configuration describes an image-only model (ViT, DINOv2, ConvNeXt...).

    True for model types with an image model or image-classification head in
    ``transformers`` that are neither language models nor carry a text
    configuration; for unknown types, when the configuration has
    ``image_size`` and ``num_channels`` and no ``vocab_size``.
    """
    kind = config.model_type
    has_text = getattr(config, "text_config", None) is not None
    vision_types = _mapping_names("MODEL_FOR_IMAGE_MAPPING_NAMES",
                                  "MODEL_FOR_IMAGE_CLASSIFICATION_MAPPING_NAMES")
    text_types = _mapping_names("MODEL_FOR_CAUSAL_LM_MAPPING_NAMES",
                                "MODEL_FOR_MASKED_LM_MAPPING_NAMES",
                                "MODEL_FOR_SEQ_TO_SEQ_CAUSAL_LM_MAPPING_NAMES")
    if kind in vision_types or kind in text_types:
        return kind in vision_types and kind not in text_types and not has_text
    return (hasattr(config, "image_size") and hasattr(config, "num_channels")
            and not hasattr(config, "vocab_size") and not has_text)


def _extractor_class(model: str, revision: str | None = None) -> type[FeatureExtractor]:
    """The extractor class for ``model`` (imported only when chosen)."""
    name = str(model).lower()
    if name.endswith(WORD_EMBEDDING_SUFFIXES):
        if not Path(model).expanduser().is_file():
            raise BrainencInputError(model, "word-embedding file not found")
        if revision is not None:
            raise BrainencInputError(model, f"revision {revision!r} was given for a word-embedding file; "
                                            "revisions apply to hub models only")
        from feature_extractors.lookup import WordEmbeddingExtractor
        return WordEmbeddingExtractor
    config = load_config(model, revision)
    if config.model_type == "bridgetower":
        from feature_extractors.bridgetower import BridgeTowerExtractor
        return BridgeTowerExtractor
    if config.model_type == "clip":
        from feature_extractors.clip import CLIPExtractor
        return CLIPExtractor
    if is_vision_config(config):
        from feature_extractors.hf_auto import VisionModelExtractor
        return VisionModelExtractor
    from feature_extractors.hf_auto import LanguageModelExtractor
    return LanguageModelExtractor


def _accepted_options(cls) -> tuple[list[str], bool]:
    """Keyword options of ``cls`` after its first argument, and whether it takes ``**kwargs``."""
    parameters = list(inspect.signature(cls.__init__).parameters.values())[2:]   # self, model
    names = [p.name for p in parameters
             if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    return names, any(p.kind == p.VAR_KEYWORD for p in parameters)


def load_extractor(model: str, *, revision: str | None = None, **options) -> FeatureExtractor:
    """The feature extractor for a model, chosen from its files.

    Parameters
    ----------
    model : str
        A word-embedding file (``.txt``, ``.vec``: word2vec/GloVe text;
        ``.h5``, ``.hdf5``, ``.hf5``) or a model folder / hub id. Models are
        dispatched on ``model_type`` of their configuration: ``bridgetower`` →
        :class:`feature_extractors.bridgetower.BridgeTowerExtractor`, ``clip``
        → :class:`feature_extractors.clip.CLIPExtractor`, image-only models
        (:func:`is_vision_config`) →
        :class:`feature_extractors.hf_auto.VisionModelExtractor`, anything
        else → :class:`feature_extractors.hf_auto.LanguageModelExtractor`.
    revision : str, optional
        Hub revision (branch, tag or commit hash) of a hub id: the
        configuration, weights, tokenizer and image processor are all loaded
        at it, and the extractor's identity (so each feature file) records it
        with the commit the files came from. An error for a local folder or a
        word-embedding file.
    **options
        Constructor options of the chosen extractor (``device``,
        ``context_words``...). An option set to ``None`` counts as not given,
        so callers can pass every option they know of, unset.

    Returns
    -------
    FeatureExtractor

    Raises
    ------
    BrainencInputError
        The model cannot be found or read, or an option is not one the chosen
        extractor takes (the message lists the ones it does).
    """
    cls = _extractor_class(model, revision)
    given = {key: value for key, value in {**options, "revision": revision}.items() if value is not None}
    accepted, takes_any = _accepted_options(cls)
    unknown = sorted(set(given) - set(accepted))
    if unknown and not takes_any:
        raise BrainencInputError(
            None, f"{cls.__name__} (chosen for model {str(model)!r}) does not take the "
            f"option(s) {unknown}; it takes {accepted}"
        )
    return cls(str(model), **given)

"""Fingerprints of a model's weights, for the cache key of its features.

Two models with the same configuration but different weights (a model re-saved
after more training, another seed) must not share cached features, so an
extractor's identity holds a fingerprint of the weights themselves:

* a **local folder**: the SHA-256 of each weight file directly in the folder
  (:data:`WEIGHT_SUFFIXES`: ``*.safetensors``, ``*.bin``... and their shard
  indexes), combined over the sorted file names. Hashing a large checkpoint
  on every run would cost seconds to minutes, so each file's hash is kept in a
  small JSON sidecar (:func:`hash_cache_path`) keyed by the file's resolved
  path, size, modification and change times (ns) and inode: a file that is
  rewritten gets a new key and is hashed again; an unchanged one is not
  re-read. The sidecar is an optimisation only: when it cannot be read or
  written, the files are hashed every time.
* a **hub id**: the commit hash of the snapshot the files were loaded from
  (a snapshot never changes), as transformers records it on the
  configuration (``config._commit_hash``).
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from brainenc.io.atomic import write_text_atomic

#: Suffixes of the files holding weights (transformers, PyTorch, TensorFlow, Flax).
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".h5", ".msgpack", ".index.json")

#: Environment variable naming the folder of the hash sidecar.
CACHE_DIR_VARIABLE = "BRAINENC_CACHE_DIR"
_SIDECAR_NAME = "weight-hashes.json"


def hash_cache_path() -> Path:
    """The sidecar of weight-file hashes.

    ``$BRAINENC_CACHE_DIR/weight-hashes.json``, else
    ``$XDG_CACHE_HOME/brainenc/weight-hashes.json``, else
    ``~/.cache/brainenc/weight-hashes.json``.
    """
    folder = os.environ.get(CACHE_DIR_VARIABLE)
    if not folder:
        base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        folder = os.path.join(base, "brainenc")
    return Path(folder) / _SIDECAR_NAME


def file_sha256(path: Path, chunk_size: int = 1 << 22) -> str:
    """SHA-256 of a file's bytes, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(chunk_size), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _stat_key(path: Path) -> str:
    """What identifies one version of a file without reading it."""
    info = path.stat()
    return f"{path.resolve()}|{info.st_size}|{info.st_mtime_ns}|{info.st_ctime_ns}|{info.st_ino}"


def _read_sidecar(path: Path) -> dict[str, str]:
    try:
        content = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return content if isinstance(content, dict) else {}


def _write_sidecar(path: Path, hashes: dict[str, str]) -> None:
    try:
        write_text_atomic(path, json.dumps(hashes, sort_keys=True))
    except OSError:
        pass  # a read-only cache costs speed, not correctness


def weight_files(folder: Path) -> list[Path]:
    """The weight files directly in ``folder`` (see :data:`WEIGHT_SUFFIXES`), sorted by name."""
    return sorted(p for p in folder.iterdir() if p.is_file() and p.name.endswith(WEIGHT_SUFFIXES))


def folder_weights_hash(folder: str | os.PathLike) -> str | None:
    """Fingerprint of the weights in a model folder; None when it holds no weight file.

    Parameters
    ----------
    folder : path-like
        A folder written with ``save_pretrained``.

    Returns
    -------
    str or None
        SHA-256 over the sorted ``(file name, file SHA-256)`` pairs.
    """
    files = weight_files(Path(folder))
    if not files:
        return None
    sidecar = hash_cache_path()
    known = _read_sidecar(sidecar)
    # drop entries of files that are gone or changed, so the sidecar stays small
    known = {key: value for key, value in known.items() if _entry_is_current(key)}
    digest = hashlib.sha256()
    changed = False
    for path in files:
        key = _stat_key(path)
        if key not in known:
            known[key] = file_sha256(path)
            changed = True
        digest.update(f"{path.name}\0{known[key]}\n".encode("utf-8"))
    if changed:
        _write_sidecar(sidecar, known)
    return digest.hexdigest()


def _entry_is_current(key: str) -> bool:
    path = Path(key.split("|", 1)[0])
    try:
        return _stat_key(path) == key
    except OSError:
        return False


def _cached_snapshot_commit(model_id: str, revision: str | None) -> str | None:
    """The commit of the cached hub snapshot holding the model's ``config.json``, if any."""
    try:
        from huggingface_hub import try_to_load_from_cache
        found = try_to_load_from_cache(model_id, "config.json", revision=revision)
    except Exception:  # noqa: BLE001 - an unusual cache layout leaves the commit unknown
        return None
    return Path(found).parent.name if isinstance(found, str) else None


def weights_fingerprint(model_id: str, config, revision: str | None = None) -> dict:
    """The weights part of an extractor's identity.

    Parameters
    ----------
    model_id : str
        A local folder or a hub id.
    config
        The model's loaded ``transformers`` configuration.
    revision : str, optional
        The hub revision asked for (a branch, tag or commit).

    Returns
    -------
    dict
        ``commit``: the hub snapshot's commit hash (from the configuration,
        else from the cached snapshot's folder name; None for a local folder
        or when unknown); ``weights_hash``: the folder's
        :func:`folder_weights_hash` for a local folder, else the commit.
    """
    local = Path(model_id).expanduser()
    if local.is_dir():
        return {"commit": None, "weights_hash": folder_weights_hash(local)}
    commit = getattr(config, "_commit_hash", None) or _cached_snapshot_commit(model_id, revision)
    return {"commit": commit, "weights_hash": commit}

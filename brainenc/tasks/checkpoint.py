"""Checkpoint files of the training loop: atomic writes, RNG states, metric lines.

A training run in ``out_dir`` holds three files:

``last.pt``
    Everything needed to continue bit for bit after the last finished epoch:
    model, optimiser and gradient-scaler states, the config as a dict, the
    epoch, the best monitored value and its epoch, the patience counter, the
    random-number-generator states of torch, numpy and :mod:`random`, the
    metric history and the state of callbacks that have ``state_dict``.
``best.pt``
    Model weights of the best epoch (as evaluated) with that epoch's
    validation metrics.
``metrics.jsonl``
    One JSON object per finished epoch.

Checkpoints are written to a temporary file in the same folder and moved into
place with :func:`os.replace`, so an interruption never leaves a half-written
file. They hold tensors and plain Python values only and load with
``torch.load(..., weights_only=True)``.
"""
from __future__ import annotations

import json
import math
import os
import random
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

__all__ = [
    "BEST",
    "LAST",
    "METRICS",
    "append_jsonl",
    "atomic_save",
    "load_checkpoint",
    "load_model_weights",
    "read_jsonl",
    "rng_state",
    "set_rng_state",
    "write_jsonl",
]

LAST = "last.pt"
BEST = "best.pt"
METRICS = "metrics.jsonl"


def _replace_atomically(path: Path, write: Any) -> None:
    """Call ``write(file)`` on a temporary file beside ``path``, then move it onto ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_save(obj: Any, path: str | Path) -> None:
    """``torch.save`` ``obj`` to ``path`` through a temporary file and :func:`os.replace`.

    Parameters
    ----------
    obj : object
        What to save (tensors and plain Python values).
    path : path-like
        Destination; its folder is created if needed.
    """
    _replace_atomically(Path(path), lambda handle: torch.save(obj, handle))


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict:
    """Load a checkpoint written by :func:`atomic_save` (``weights_only=True``).

    Parameters
    ----------
    path : path-like
        ``last.pt`` or ``best.pt``.
    map_location : str or torch.device
        Where tensors are loaded.

    Returns
    -------
    dict
        The checkpoint's content.
    """
    return torch.load(Path(path), map_location=map_location, weights_only=True)


def load_model_weights(model: torch.nn.Module, path: str | Path) -> dict[str, float]:
    """Load the weights of a checkpoint into ``model`` and return its metrics.

    Parameters
    ----------
    model : torch.nn.Module
        Model of the architecture that was trained.
    path : path-like
        ``best.pt`` or ``last.pt``.

    Returns
    -------
    dict of str to float
        The validation metrics stored with the weights (``best.pt``) or the
        last epoch's record (``last.pt``).
    """
    checkpoint = load_checkpoint(path, map_location=next(model.parameters()).device)
    model.load_state_dict(checkpoint["model"])
    if "metrics" in checkpoint:
        return dict(checkpoint["metrics"])
    history = checkpoint.get("history", [])
    return dict(history[-1]) if history else {}


def rng_state() -> dict[str, Any]:
    """States of the torch (CPU and CUDA), numpy-global and :mod:`random` generators.

    Returns
    -------
    dict
        Plain values and tensors only, restorable with :func:`set_rng_state`.
    """
    numpy_state = np.random.get_state(legacy=False)
    numpy_state = {
        "bit_generator": numpy_state["bit_generator"],
        "state": {
            "key": numpy_state["state"]["key"].tolist(),
            "pos": int(numpy_state["state"]["pos"]),
        },
        "has_gauss": int(numpy_state["has_gauss"]),
        "gauss": float(numpy_state["gauss"]),
    }
    state = {"torch": torch.get_rng_state(), "numpy": numpy_state, "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: Mapping[str, Any]) -> None:
    """Restore generator states captured by :func:`rng_state`.

    Parameters
    ----------
    state : mapping
        Output of :func:`rng_state`. CUDA states are restored only when CUDA is
        available.
    """
    torch.set_rng_state(state["torch"].cpu())
    numpy_state = dict(state["numpy"])
    numpy_state["state"] = {
        "key": np.asarray(numpy_state["state"]["key"], dtype=np.uint32),
        "pos": int(numpy_state["state"]["pos"]),
    }
    np.random.set_state(numpy_state)
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available():
        cuda_states = list(state["cuda"])[: torch.cuda.device_count()]
        for index, cuda_state in enumerate(cuda_states):
            torch.cuda.set_rng_state(cuda_state.cpu(), index)


def _json_value(value: Any) -> Any:
    # strict JSON has no NaN or infinity
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _json_line(record: Mapping[str, Any]) -> str:
    return json.dumps({key: _json_value(value) for key, value in record.items()}) + "\n"


def append_jsonl(path: str | Path, record: Mapping[str, Any]) -> None:
    """Append one record as a JSON line (non-finite floats become ``null``).

    Parameters
    ----------
    path : path-like
        The ``.jsonl`` file; created if missing.
    record : mapping
        JSON-serialisable values.
    """
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(_json_line(record))
        handle.flush()


def write_jsonl(path: str | Path, records: Iterable[Mapping[str, Any]]) -> None:
    """Replace ``path`` atomically by one JSON line per record.

    Parameters
    ----------
    path : path-like
        The ``.jsonl`` file.
    records : iterable of mapping
        JSON-serialisable records.
    """
    text = "".join(_json_line(record) for record in records).encode("utf-8")
    _replace_atomically(Path(path), lambda handle: handle.write(text))


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    """Records of a ``.jsonl`` file (``null`` read back as ``None``).

    Parameters
    ----------
    path : path-like
        The ``.jsonl`` file.

    Returns
    -------
    list of dict
        One dict per non-empty line.
    """
    with open(path, encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]

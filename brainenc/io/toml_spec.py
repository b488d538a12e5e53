"""Reading the TOML specification files of ``brainenc task`` and ``brainenc sweep``."""
from __future__ import annotations

import tomllib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from brainenc.errors import BrainencInputError

__all__ = ["read_toml_spec"]


def read_toml_spec(path: str | Path, keys: Sequence[str], what: str) -> tuple[Path, dict[str, Any]]:
    """The resolved path and content of a TOML spec whose top-level keys are among ``keys``.

    Raises
    ------
    BrainencInputError
        The file is missing, is not TOML, or has a key not in ``keys`` (naming ``what``).
    """
    path = Path(path).expanduser().resolve()
    if not path.is_file():
        raise BrainencInputError(path, f"{what} not found")
    try:
        content = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise BrainencInputError(path, f"not a valid TOML file ({error})") from None
    unknown = sorted(set(content) - set(keys))
    if unknown:
        raise BrainencInputError(path, f"unknown keys {unknown}; a {what} has {list(keys)}")
    return path, content

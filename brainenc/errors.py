"""Exceptions raised on bad input."""
from __future__ import annotations

import warnings
from pathlib import Path


class BrainencInputError(ValueError):
    """Input data that cannot be used, with the file it came from.

    Parameters
    ----------
    path : path-like or None
        The file (or folder) whose content is wrong.
    problem : str
        What is wrong, in words a user can act on.
    """

    def __init__(self, path: str | Path | None, problem: str):
        self.path = None if path is None else Path(path)
        self.problem = problem
        where = f"{self.path}: " if self.path is not None else ""
        super().__init__(f"{where}{problem}")


class BrainencInputWarning(UserWarning):
    """Input that can be used but may give a wrong answer; the message names the file(s)."""


def warn_input(message: str) -> None:
    """Emit a :class:`BrainencInputWarning` shown at the caller's caller."""
    warnings.warn(message, BrainencInputWarning, stacklevel=3)

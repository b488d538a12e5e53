"""Helpers for the safety tests: a fingerprint of a folder, and a refused command."""
from __future__ import annotations

import hashlib
from pathlib import Path


def tree_state(root: Path) -> dict[str, str]:
    """``{relative path: sha256 or 'dir'}`` of everything under ``root`` (itself included)."""
    root = Path(root)
    if root.is_file():
        return {".": hashlib.sha256(root.read_bytes()).hexdigest()}
    state = {".": "dir"} if root.is_dir() else {}
    for path in sorted(root.rglob("*")):
        key = path.relative_to(root).as_posix()
        state[key] = "dir" if path.is_dir() else hashlib.sha256(path.read_bytes()).hexdigest()
    return state


def assert_refused(capsys, code: int, *fragments: str) -> str:
    """A command ended with exit status 2, no traceback, and each fragment in its message."""
    err = capsys.readouterr().err
    assert code == 2, err
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment in err, err
    return err

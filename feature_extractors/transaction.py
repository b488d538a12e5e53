"""All-or-nothing writes into a feature root, one extraction at a time.

An extraction writes every new or recomputed feature file into a staging
folder inside the feature root, ``<root>/.brainenc-extract-<pid>.tmp/`` (same
file system, so the final moves are renames), mirroring ``<space>/<stimulus>.hf5``.
Only when every stimulus succeeded are the staged files moved into place, one
``os.replace`` each; files that were cached are never touched. A failure or an
interruption (``KeyboardInterrupt``) removes the staging folder, so the store
is byte-for-byte what it was before the run; folders the run created for the
feature root are removed again if they are left empty.

A lock file ``<root>/.brainenc-extract.lock`` (``fcntl.flock``, exclusive)
keeps two extractions from writing into one root at once: the second waits,
saying so on stderr, and checks the cache only once it holds the lock, so it
finds what the first one wrote instead of computing it again. The lock file is
removed when the lock is released. Holding the lock also proves that any
staging folder left in the root belongs to a run that was killed: those are
removed (and listed) at the start of the next run. On systems without
``fcntl`` (Windows) there is no lock.
"""
from __future__ import annotations

import contextlib
import os
import re
import shutil
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

from brainenc.errors import BrainencInputError, BrainencInputWarning

LOCK_NAME = ".brainenc-extract.lock"
STAGING_PATTERN = re.compile(r"\.brainenc-extract-(\d+)\.tmp")
#: Seconds between two attempts to take a lock held by another extraction.
LOCK_POLL_S = 0.2


def staging_name(pid: int) -> str:
    """Name of the staging folder of process ``pid``."""
    return f".brainenc-extract-{pid}.tmp"


def _announce(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- #
# Lock
# --------------------------------------------------------------------------- #
def _holder(fd: int) -> str:
    """The pid written in a lock file by its holder, or ``"unknown"``."""
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    except OSError:
        return "unknown"
    return text or "unknown"


def _is_current_file(fd: int, path: Path) -> bool:
    """Whether ``fd`` is still the file at ``path`` (a releasing holder unlinks it)."""
    try:
        return os.path.samestat(os.fstat(fd), os.stat(path))
    except FileNotFoundError:
        return False


@contextlib.contextmanager
def feature_root_lock(root: Path, timeout_s: float | None = None,
                      announce: Callable[[str], None] = _announce) -> Iterator[None]:
    """Hold the exclusive extraction lock of ``root`` (an existing folder).

    Parameters
    ----------
    root : Path
        The feature root.
    timeout_s : float, optional
        Give up after waiting this long for another extraction (default: wait
        until it finishes).
    announce : callable
        Called once with a message when the lock is held by another process.

    Raises
    ------
    BrainencInputError
        ``timeout_s`` passed while another extraction held the lock.
    """
    try:
        import fcntl
    except ImportError:  # no flock on this system: no protection against a second run
        yield
        return
    path = root / LOCK_NAME
    fd = _acquire(fcntl, path, timeout_s, announce)
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
        yield
    finally:
        # unlink while holding the lock, so a waiter that then gets it sees the
        # file is gone and opens a fresh one
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        os.close(fd)


def _acquire(fcntl, path: Path, timeout_s: float | None, announce) -> int:
    started = time.monotonic()
    announced = False
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(fd)
            os.close(fd)
            if timeout_s is not None and time.monotonic() - started >= timeout_s:
                raise BrainencInputError(
                    path.parent, f"another extraction (pid {holder}) is writing into this feature "
                    f"root; gave up after waiting {timeout_s:g} s") from None
            if not announced:
                announce(f"waiting for another extraction (pid {holder}) writing into {path.parent} "
                         "to finish...")
                announced = True
            time.sleep(LOCK_POLL_S)
            continue
        if _is_current_file(fd, path):
            return fd
        os.close(fd)


# --------------------------------------------------------------------------- #
# Staging
# --------------------------------------------------------------------------- #
class StagedWrites:
    """Feature files of one extraction, staged and moved into place together.

    Parameters
    ----------
    root : Path
        The feature root; the staging folder is ``root / staging_name(pid)``.
    """

    def __init__(self, root: Path):
        self.root = root
        self.folder = root / staging_name(os.getpid())
        self.moves: list[tuple[Path, Path]] = []

    def path_for(self, target: Path) -> Path:
        """Where to write the file that will become ``target`` (a path inside the root)."""
        staged = self.folder / target.relative_to(self.root)
        staged.parent.mkdir(parents=True, exist_ok=True)
        self.moves.append((staged, target))
        return staged

    def commit(self) -> list[Path]:
        """Move every staged file onto its target; the targets, in staging order."""
        for staged, target in self.moves:
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(staged, target)
        self.discard()
        return [target for _, target in self.moves]

    def discard(self) -> None:
        """Remove the staging folder and whatever is still in it."""
        shutil.rmtree(self.folder, ignore_errors=True)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def remove_stale_staging(root: Path) -> list[Path]:
    """Remove staging folders of killed extractions; call only while holding the lock.

    A folder whose process is still running (a reused pid, or a run that
    took no lock) is left in place with a warning.

    Returns
    -------
    list of Path
        The folders removed.
    """
    removed = []
    for folder in sorted(root.iterdir()):
        match = STAGING_PATTERN.fullmatch(folder.name)
        if match is None or not folder.is_dir():
            continue
        pid = int(match.group(1))
        if pid != os.getpid() and _pid_alive(pid):
            warnings.warn(f"{folder}: staging folder of process {pid}, which is still running but "
                          "holds no extraction lock; left in place", BrainencInputWarning, stacklevel=3)
            continue
        shutil.rmtree(folder, ignore_errors=True)
        removed.append(folder)
    return removed


@contextlib.contextmanager
def extraction_transaction(root: Path, lock_timeout_s: float | None = None,
                           announce: Callable[[str], None] = _announce
                           ) -> Iterator[tuple[StagedWrites, list[Path]]]:
    """Lock ``root``, clean stale staging folders and stage the run's writes.

    Yields ``(staging, removed)``: the :class:`StagedWrites` of this run and
    the stale staging folders that were removed. On a normal exit the staged
    files are committed; on any exception (``KeyboardInterrupt`` included)
    they are discarded, and the folders this call created for ``root`` are
    removed again while empty.
    """
    created = _missing_folders(root)
    root.mkdir(parents=True, exist_ok=True)
    try:
        with feature_root_lock(root, lock_timeout_s, announce):
            removed = remove_stale_staging(root)
            staging = StagedWrites(root)
            try:
                yield staging, removed
            except BaseException:
                staging.discard()
                raise
            staging.commit()
    except BaseException:
        for folder in created:  # deepest first; rmdir only removes an empty folder
            with contextlib.suppress(OSError):
                folder.rmdir()
        raise


def _missing_folders(root: Path) -> list[Path]:
    """``root`` and its ancestors that do not exist yet, deepest first."""
    missing = []
    for folder in (root, *root.parents):
        if folder.exists():
            break
        missing.append(folder)
    return missing

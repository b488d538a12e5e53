"""All-or-nothing writes into a feature root, shared by concurrent extractions.

Each transaction writes its new or recomputed feature files into a staging
folder inside the feature root (same file system, so the final moves are
renames), mirroring ``<space>/<stimulus>.hf5``: every process has one folder,
``<root>/.brainenc-extract-<host>-<pid>.tmp/``, holding one sub-folder per
open transaction. Only when the transaction's body succeeded are the staged
files moved into place, one ``os.replace`` each; files that were cached are
never touched. A failure or an interruption (``KeyboardInterrupt``) removes
the transaction's staging sub-folder, so the store is byte-for-byte what it
was before (files committed meanwhile by *other* extractions excepted: they
are theirs); folders the transaction created for the feature root are removed
again if they are left empty.

A lock file ``<root>/.brainenc-extract.lock`` (``fcntl.flock``, exclusive)
guards only two short critical sections: the removal of stale staging
folders at the start, and the commit. The embedding runs without it, so
several processes, on one host or several (where the file system supports
``flock`` across clients), extract different stimuli into one root at once.
At commit, a target that another extraction committed after this one checked
it, with the same cache key (``keep_existing``, e.g.
:func:`feature_extractors.pipeline.is_cached`), is kept and the staged
duplicate dropped: results are deterministic, and another's finished file is
never replaced needlessly. The lock file is removed when the lock is released.
On systems without ``fcntl`` (Windows) there is no lock.

Stale staging folders: at the start of a transaction, the folders of this
host whose process is dead are removed (and listed), as are staging
sub-folders of this process that belong to no open transaction (a dead
process with the same pid). A pid says nothing about another host, so the
folders of other hosts are left alone, with a warning once they are older
than :data:`FOREIGN_STAGING_WARN_S`. Folders named in the older
``.brainenc-extract-<pid>.tmp`` form count as this host's.
"""
from __future__ import annotations

import contextlib
import os
import re
import shutil
import socket
import sys
import threading
import time
import uuid
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from brainenc.errors import BrainencInputError, BrainencInputWarning

LOCK_NAME = ".brainenc-extract.lock"
#: Staging folder names: ``.brainenc-extract-<host>-<pid>.tmp``, or the older ``-<pid>.tmp``.
STAGING_PATTERN = re.compile(r"\.brainenc-extract-(?:(?P<host>.+)-)?(?P<pid>\d+)\.tmp")
#: Seconds between two attempts to take a lock held by another extraction.
LOCK_POLL_S = 0.2
#: Age (seconds since the last change) from which another host's staging folder is reported.
FOREIGN_STAGING_WARN_S = 24 * 3600.0

#: Staging sub-folders of the transactions open in this process.
_ACTIVE: set[str] = set()
_ACTIVE_LOCK = threading.Lock()


def host_name() -> str:
    """This host's name as used in staging folder names (characters other than
    letters, digits, ``.``, ``_`` and ``-`` replaced by ``_``)."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", socket.gethostname()) or "localhost"


def staging_name(pid: int | None = None, host: str | None = None) -> str:
    """Name of the staging folder of process ``pid`` (default: this one) on ``host``
    (default: this one)."""
    pid = os.getpid() if pid is None else pid
    return f".brainenc-extract-{host_name() if host is None else host}-{pid}.tmp"


def staging_owner(name: str) -> tuple[str | None, int] | None:
    """``(host, pid)`` of a staging folder's name (host None for the older ``<pid>``
    form), or None when ``name`` is not one."""
    match = STAGING_PATTERN.fullmatch(name)
    if match is None:
        return None
    return match.group("host"), int(match.group("pid"))


def _announce(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- #
# Lock
# --------------------------------------------------------------------------- #
def _holder(fd: int) -> str:
    """The pid (and host) written in a lock file by its holder, or ``"unknown"``."""
    try:
        text = os.pread(fd, 256, 0).decode("ascii", "replace").strip()
    except OSError:
        return "unknown"
    fields = text.split()
    if len(fields) == 2:
        return f"{fields[0]} on {fields[1]}"
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
        until it releases the lock).
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
        os.pwrite(fd, f"{os.getpid()} {host_name()}\n".encode("ascii"), 0)
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
                announce(f"waiting for another extraction (pid {holder}) to release the lock of "
                         f"{path.parent}...")
                announced = True
            time.sleep(LOCK_POLL_S)
            continue
        if _is_current_file(fd, path):
            return fd
        os.close(fd)


# --------------------------------------------------------------------------- #
# Staging
# --------------------------------------------------------------------------- #
def file_signature(path: Path) -> tuple[int, int, int, int] | None:
    """``(device, inode, size, mtime_ns)`` of the file at ``path``, None when there is none.

    A file that another extraction moved into place has another signature.
    """
    try:
        stat = path.stat()
    except FileNotFoundError:
        return None
    return stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns


#: Default of ``seen`` in :meth:`StagedWrites.path_for`: the target's signature at that call.
_NOW = object()


@dataclass(frozen=True)
class StagedFile:
    """A staged file, its target, the target's cache key and its signature when checked."""

    staged: Path
    target: Path
    key: str | None
    seen: tuple[int, int, int, int] | None


class StagedWrites:
    """Feature files of one transaction, staged and moved into place together.

    Parameters
    ----------
    root : Path
        The feature root; files are staged in a sub-folder of this process'
        staging folder, ``root / staging_name()``.
    keep_existing : callable, optional
        ``keep_existing(target, key) -> bool``, asked at commit about a target
        that changed since it was checked: True keeps that file (another
        extraction committed the same result) and drops the staged one.
    """

    def __init__(self, root: Path, keep_existing: Callable[[Path, str], bool] | None = None):
        self.root = root
        self.process_folder = root / staging_name()
        name = uuid.uuid4().hex[:12]
        with _ACTIVE_LOCK:
            _ACTIVE.add(name)
        self.folder = self.process_folder / name
        self.keep_existing = keep_existing
        self.files: list[StagedFile] = []
        self.committed: list[Path] = []
        self.kept: list[Path] = []

    @property
    def moves(self) -> list[tuple[Path, Path]]:
        """``(staged, target)`` of every staged file, in staging order."""
        return [(item.staged, item.target) for item in self.files]

    def path_for(self, target: Path, key: str | None = None, seen=_NOW) -> Path:
        """Where to write the file that will become ``target`` (a path inside the root).

        Parameters
        ----------
        target : Path
            The file's final place.
        key : str, optional
            Its cache key, passed to ``keep_existing`` at commit.
        seen : tuple or None, optional
            :func:`file_signature` of ``target`` when the caller found it was
            not cached (default: its signature now).
        """
        staged = self.folder / target.relative_to(self.root)
        staged.parent.mkdir(parents=True, exist_ok=True)
        seen = file_signature(target) if seen is _NOW else seen
        self.files.append(StagedFile(staged, target, key, seen))
        return staged

    def commit(self) -> list[Path]:
        """Move the staged files onto their targets; call while holding the lock.

        A target committed meanwhile by another extraction under the same key
        is kept (listed in :attr:`kept`). Returns the targets written
        (:attr:`committed`), in staging order.
        """
        for item in self.files:
            if self._committed_elsewhere(item):
                self.kept.append(item.target)
                continue
            item.target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(item.staged, item.target)
            self.committed.append(item.target)
        self.discard()
        return self.committed

    def _committed_elsewhere(self, item: StagedFile) -> bool:
        if self.keep_existing is None or item.key is None:
            return False
        return file_signature(item.target) != item.seen and self.keep_existing(item.target, item.key)

    def discard(self) -> None:
        """Remove this transaction's staging sub-folder and whatever is still in it."""
        shutil.rmtree(self.folder, ignore_errors=True)
        with contextlib.suppress(OSError):   # only while no other transaction of this process stages
            self.process_folder.rmdir()
        with _ACTIVE_LOCK:
            _ACTIVE.discard(self.folder.name)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def _newest_change(folder: Path) -> float:
    """Latest modification time of ``folder`` and everything in it (seconds since the epoch)."""
    newest = folder.stat().st_mtime
    for parent, names, files in os.walk(folder):
        for name in (*names, *files):
            with contextlib.suppress(OSError):
                newest = max(newest, os.lstat(os.path.join(parent, name)).st_mtime)
    return newest


def _warn_if_old(folder: Path, host: str, pid: int) -> None:
    age = time.time() - _newest_change(folder)
    if age > FOREIGN_STAGING_WARN_S:
        warnings.warn(f"{folder}: staging folder of process {pid} on host {host}, unchanged for "
                      f"{age / 3600:.0f} h; left in place (whether that process still runs cannot be "
                      "checked from here): remove it if no extraction runs there any more",
                      BrainencInputWarning, stacklevel=4)


def _remove_inactive(folder: Path) -> list[Path]:
    """Sub-folders of this process' staging folder that no open transaction owns (left by a
    dead process with the same pid), removed."""
    with _ACTIVE_LOCK:   # a new transaction registers before it creates its sub-folder
        stale = [child for child in sorted(folder.iterdir()) if child.name not in _ACTIVE]
        for child in stale:
            if child.is_dir() and not child.is_symlink():
                shutil.rmtree(child, ignore_errors=True)
            else:
                child.unlink(missing_ok=True)
    return stale


def remove_stale_staging(root: Path) -> list[Path]:
    """Remove the staging folders of dead processes of this host; call only while holding the lock.

    Folders of live processes are left alone (they are extracting now), and
    so are those of other hosts, whose processes cannot be checked from here:
    those are reported once older than :data:`FOREIGN_STAGING_WARN_S`. In
    this process' own folder, sub-folders of no open transaction are removed.

    Returns
    -------
    list of Path
        The folders removed.
    """
    removed: list[Path] = []
    here = host_name()
    for folder in sorted(root.iterdir()):
        owner = staging_owner(folder.name)
        if owner is None or not folder.is_dir():
            continue
        host, pid = owner
        if host is not None and host != here:
            _warn_if_old(folder, host, pid)
        elif pid == os.getpid() and host is not None:
            removed += _remove_inactive(folder)
        elif pid == os.getpid() or not _pid_alive(pid):
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
    return removed


@contextlib.contextmanager
def prepared_root(root: Path, lock_timeout_s: float | None = None,
                  announce: Callable[[str], None] = _announce) -> Iterator[list[Path]]:
    """Create ``root`` where missing and remove stale staging folders under the lock.

    Yields the stale staging folders removed (:func:`remove_stale_staging`).
    On any exception (``KeyboardInterrupt`` included) the folders this call
    created for ``root`` are removed again while empty.
    """
    created = _missing_folders(root)
    root.mkdir(parents=True, exist_ok=True)
    try:
        with feature_root_lock(root, lock_timeout_s, announce):
            removed = remove_stale_staging(root)
        yield removed
    except BaseException:
        for folder in created:  # deepest first; rmdir only removes an empty folder
            with contextlib.suppress(OSError):
                folder.rmdir()
        raise


@contextlib.contextmanager
def extraction_transaction(root: Path, lock_timeout_s: float | None = None,
                           announce: Callable[[str], None] = _announce,
                           keep_existing: Callable[[Path, str], bool] | None = None,
                           ) -> Iterator[tuple[StagedWrites, list[Path]]]:
    """Clean stale staging folders, stage the transaction's writes and commit them.

    The lock of ``root`` is held only while stale folders are removed and
    while the staged files are committed, not while the body runs.

    Parameters
    ----------
    root : Path
        The feature root (created where missing).
    lock_timeout_s : float, optional
        Seconds to wait for the lock, at each of the two critical sections.
    announce : callable
        Called with a message when the lock is held by another process.
    keep_existing : callable, optional
        See :class:`StagedWrites`.

    Yields
    ------
    (StagedWrites, list of Path)
        The transaction's staging and the stale staging folders removed. On a
        normal exit the staged files are committed; on any exception
        (``KeyboardInterrupt`` included) they are discarded, and the folders
        this call created for ``root`` are removed again while empty.
    """
    with prepared_root(root, lock_timeout_s, announce) as removed:
        staging = StagedWrites(root, keep_existing)
        try:
            yield staging, removed
            if staging.files:
                root.mkdir(parents=True, exist_ok=True)
                with feature_root_lock(root, lock_timeout_s, announce):
                    staging.commit()
        finally:
            staging.discard()


def _missing_folders(root: Path) -> list[Path]:
    """``root`` and its ancestors that do not exist yet, deepest first."""
    missing = []
    for folder in (root, *root.parents):
        if folder.exists():
            break
        missing.append(folder)
    return missing

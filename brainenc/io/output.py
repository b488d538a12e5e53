"""The safe-output guard: every command that writes a folder goes through here.

Rules (see ``docs/outputs.md``):

* A results folder carries a marker file (:data:`MARKER_NAME`) listing the
  files brainenc wrote into it. It is the only kind of existing folder a writer
  may replace, only when asked to (``overwrite=True``, ``--overwrite``), and
  only while it holds no file brainenc did not write.
* An existing ``OUT`` that is a file, a non-empty folder without the marker,
  the current folder, or a folder holding the current folder is refused.
* ``OUT`` may never be, contain, or lie inside an input being read (the
  dataset, a feature space, a response or stimulus file).
* The new content is built in a staging folder beside ``OUT``
  (``.OUT.<random>.tmp``) and renamed onto ``OUT`` when complete; a replaced
  result is first renamed to ``.OUT.<random>.old`` and removed afterwards. A
  failure or an interruption removes the staging folder and leaves ``OUT`` as
  it was. Leftovers of a killed run are cleaned (or reported) on the next run.

Every check runs before any computation, so a bad location costs nothing.
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import time
import warnings
from collections.abc import Iterable, Iterator
from pathlib import Path

from brainenc.errors import BrainencInputError

#: The marker file of a folder written by brainenc.
MARKER_NAME = ".brainenc-output.json"
#: Written into a staging folder while it is being built: the owner's pid.
STAGING_NAME = ".brainenc-staging"

__all__ = [
    "MARKER_NAME",
    "check_feature_root",
    "check_input_distance",
    "check_output_folder",
    "clean_leftovers",
    "output_folder",
    "read_marker",
]


def read_marker(folder: str | Path) -> dict | None:
    """The marker of a brainenc output folder, or None when there is none."""
    path = Path(folder) / MARKER_NAME
    if not path.is_file():
        return None
    try:
        content = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return content if isinstance(content, dict) and "kind" in content else None


def _resolved(path: str | Path) -> Path:
    return Path(os.path.abspath(os.path.expanduser(str(path)))).resolve()


def _is_within(inner: Path, outer: Path) -> bool:
    return inner == outer or outer in inner.parents


def check_input_distance(out: Path, inputs: Iterable[str | Path], what: str) -> None:
    """Refuse an ``out`` that is, contains or lies inside one of ``inputs``.

    Parameters
    ----------
    out : Path
        The resolved output location.
    inputs : iterable of path-like
        Inputs being read (dataset root, feature spaces, response files...).
    what : str
        How the output is named in messages (``"--out"``).
    """
    for item in inputs:
        source = _resolved(item)
        if out == source:
            raise BrainencInputError(out, f"{what} is an input being read ({source}); "
                                          "choose a new folder for the results")
        if _is_within(out, source):
            raise BrainencInputError(out, f"{what} lies inside an input being read ({source}); "
                                          "choose a folder outside the dataset and the features")
        if _is_within(source, out):
            raise BrainencInputError(out, f"{what} contains an input being read ({source}); "
                                          "choose a folder that holds none of the inputs")


def _foreign_files(folder: Path, marker: dict) -> list[str]:
    """Files and folders in ``folder`` that its marker does not list as brainenc's."""
    files = set(marker.get("files", [])) | {MARKER_NAME}
    folders = {parent.as_posix() for name in files for parent in Path(name).parents}
    found = []
    for path in sorted(folder.rglob("*")):
        relative = path.relative_to(folder).as_posix()
        is_folder = path.is_dir() and not path.is_symlink()
        if relative not in (folders if is_folder else files):
            found.append(relative + ("/" if is_folder else ""))
    return found


def _check_existing(out: Path, kind: str, overwrite: bool, what: str) -> None:
    if out.is_symlink() or (out.exists() and not out.is_dir()):
        raise BrainencInputError(out, f"{what} exists and is not a folder; refusing to replace "
                                      "it: choose a new folder")
    if not out.is_dir() or not any(out.iterdir()):
        return
    marker = read_marker(out)
    if marker is None:
        raise BrainencInputError(
            out, f"{what} exists, is not empty and is not a brainenc result folder (no "
            f"{MARKER_NAME}); refusing to touch it: choose a new or empty folder")
    if marker.get("kind") != kind:
        raise BrainencInputError(
            out, f"{what} holds a brainenc {marker.get('kind')!r} output, not a {kind!r} one; "
            "choose another folder")
    if not overwrite:
        raise BrainencInputError(
            out, f"{what} holds a previous brainenc {kind} result; pass --overwrite "
            "(overwrite=True) to replace it, or choose a new folder")
    foreign = _foreign_files(out, marker)
    if foreign:
        shown = ", ".join(foreign[:5]) + (f" and {len(foreign) - 5} more" if len(foreign) > 5 else "")
        raise BrainencInputError(
            out, f"{what} holds files or folders brainenc did not write ({shown}); move them away "
            "before replacing the result, or choose a new folder")


def _existing_ancestor(path: Path) -> Path:
    for parent in path.parents:
        if parent.exists():
            return parent
    return Path(path.anchor)


def _check_parent(out: Path, what: str) -> None:
    ancestor = _existing_ancestor(out)
    if not ancestor.is_dir():
        raise BrainencInputError(out, f"cannot create {what}: {ancestor} is a file, not a folder")
    if out.parent.exists():
        try:
            probe = tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".probe", dir=out.parent)
        except OSError as error:
            raise BrainencInputError(
                out, f"cannot write {what}: the folder {out.parent} is not writable "
                f"({error.strerror or error})") from None
        os.rmdir(probe)
    elif not os.access(ancestor, os.W_OK | os.X_OK):
        raise BrainencInputError(out, f"cannot create {what}: {ancestor} is not writable")


def check_output_folder(
    out: str | Path,
    *,
    kind: str,
    overwrite: bool = False,
    inputs: Iterable[str | Path] = (),
    what: str = "--out",
) -> Path:
    """Check that ``out`` may receive a new ``kind`` output; return it resolved.

    Parameters
    ----------
    out : path-like
        The output folder.
    kind : str
        What is written (``"transfer"``, ``"demo"``, ``"simulate"``): a result
        of another kind is never replaced.
    overwrite : bool
        Allow replacing a previous result of the same kind.
    inputs : iterable of path-like
        Inputs that ``out`` may not be, contain or lie inside.
    what : str
        How the location is named in messages.

    Returns
    -------
    Path
        The absolute, resolved output folder.

    Raises
    ------
    BrainencInputError
        When any rule of the module notes is broken; the message says which.
    """
    if str(out).strip() == "":
        raise BrainencInputError(None, f"{what} is empty: name an output folder")
    path = _resolved(out)
    here = _resolved(os.getcwd())
    if path == here:
        raise BrainencInputError(path, f"{what} is the current folder; name a new sub-folder")
    if _is_within(here, path):
        raise BrainencInputError(path, f"{what} holds the current folder ({here}); "
                                       "name a folder elsewhere")
    if path == Path(path.anchor) or path == _resolved(Path.home()):
        raise BrainencInputError(path, f"{what} may not be a file-system root or the home folder")
    check_input_distance(path, inputs, what)
    _check_existing(path, kind, overwrite, what)
    _check_parent(path, what)
    return path


def check_feature_root(
    out: str | Path,
    *,
    dataset_root: str | Path,
    default_root: str | Path | None,
    inputs: Iterable[str | Path] = (),
    what: str = "--out",
) -> Path:
    """Check a folder that ``brainenc extract`` adds feature spaces to; return it resolved.

    Extraction only adds files (``<out>/<space>/<stimulus>.hf5``), so an
    existing feature root is fine. Refused: the current folder or a folder
    holding it, a file, the dataset root or a folder holding it, a folder inside
    the dataset other than its own feature root (``default_root``) itself, a folder
    inside a feature space (one that holds ``.hf5`` files), a folder holding
    the ``inputs``, and an existing folder holding anything but sub-folders and
    hidden files (it is not a feature root).
    """
    path = _resolved(out)
    here = _resolved(os.getcwd())
    if _is_within(here, path):
        raise BrainencInputError(path, f"{what} is or holds the current folder; name the "
                                       "folder that holds the feature spaces")
    if path == Path(path.anchor) or path == _resolved(Path.home()):
        raise BrainencInputError(path, f"{what} may not be a file-system root or the home folder")
    dataset_root = _resolved(dataset_root)
    features_home = None if default_root is None else _resolved(default_root)
    if _is_within(dataset_root, path):
        raise BrainencInputError(path, f"{what} is or holds the dataset {dataset_root}; "
                                       f"use the default ({features_home}) or a folder elsewhere")
    for folder in [path, *path.parents]:
        if folder.is_dir() and any(folder.glob("*.hf5")):
            raise BrainencInputError(
                path, f"{folder} holds .hf5 files: it is a feature space (or a response "
                f"folder), not the folder that holds feature spaces; name its parent")
    if _is_within(path, dataset_root) and path != features_home:
        raise BrainencInputError(path, f"{what} lies inside the dataset {dataset_root}; use "
                                       f"the default ({features_home}) or a folder outside it")
    for item in inputs:
        if _is_within(_resolved(item), path):
            raise BrainencInputError(path, f"{what} holds an input being read ({item})")
    if path.exists() and not path.is_dir():
        raise BrainencInputError(path, f"{what} exists and is not a folder")
    if path.is_dir():
        strays = sorted(p.name for p in path.iterdir()
                        if not p.is_dir() and not p.name.startswith("."))
        if strays:
            raise BrainencInputError(
                path, f"{what} holds files ({', '.join(strays[:5])}), so it is not a folder of "
                "feature spaces; name an empty or new folder, or an earlier feature root")
    else:
        _check_parent(path, what)
    return path


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _staging_owner(folder: Path) -> int | None:
    try:
        return int((folder / STAGING_NAME).read_text(encoding="utf-8").strip())
    except (OSError, ValueError):
        return None


def clean_leftovers(out: str | Path) -> list[str]:
    """Remove what a killed run left beside ``out``; return one line per finding.

    Staging folders (``.OUT.*.tmp`` holding :data:`STAGING_NAME`) whose process
    is gone are removed; one whose process still runs is reported. A replaced
    result (``.OUT.*.old``) is removed when ``OUT`` exists, and renamed back
    onto ``OUT`` when the run was killed between the two renames. Folders of
    these names that brainenc did not write are reported, never touched.
    """
    out = _resolved(out)
    notes: list[str] = []
    if not out.parent.is_dir():
        return notes
    for candidate in sorted(out.parent.glob(f".{out.name}.*.tmp")):
        owner = _staging_owner(candidate) if candidate.is_dir() else None
        if owner is None:
            notes.append(f"{candidate} looks like a leftover but was not written by brainenc; "
                         "left as it is")
        elif _pid_alive(owner) and owner != os.getpid():
            notes.append(f"{candidate} is being written by another brainenc run (pid {owner})")
        else:
            shutil.rmtree(candidate, ignore_errors=True)
            notes.append(f"removed {candidate}, left by an interrupted run")
    for candidate in sorted(out.parent.glob(f".{out.name}.*.old")):
        if not candidate.is_dir() or read_marker(candidate) is None:
            notes.append(f"{candidate} looks like a leftover but was not written by brainenc; "
                         "left as it is")
        elif not out.exists():
            os.replace(candidate, out)
            notes.append(f"restored the previous result {out} from {candidate.name} "
                         "(a run was interrupted while replacing it)")
        else:
            shutil.rmtree(candidate, ignore_errors=True)
            notes.append(f"removed {candidate}, a replaced result left by an interrupted run")
    return notes


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _make_staging(out: Path, created: list[Path]) -> Path:
    missing = [p for p in reversed(out.parents) if not p.exists()]
    try:
        for parent in missing:
            parent.mkdir()
            created.append(parent)
        staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    except OSError as error:
        raise BrainencInputError(out, f"cannot create the output folder "
                                      f"({error.strerror or error})") from None
    (staging / STAGING_NAME).write_text(str(os.getpid()), encoding="utf-8")
    return staging


def _write_marker(staging: Path, kind: str) -> None:
    from brainenc import __version__

    files = sorted(p.relative_to(staging).as_posix() for p in staging.rglob("*")
                   if not p.is_dir() and p.name != STAGING_NAME)
    marker = {"kind": kind, "brainenc_version": __version__,
              "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "files": files}
    (staging / MARKER_NAME).write_text(json.dumps(marker, indent=1), encoding="utf-8")


def _commit(staging: Path, out: Path) -> None:
    (staging / STAGING_NAME).unlink()
    os.chmod(staging, 0o777 & ~_umask())
    if out.is_dir() and any(out.iterdir()):
        old = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".old", dir=out.parent))
        os.rmdir(old)
        os.replace(out, old)
        os.replace(staging, out)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(staging, out)


def _discard(staging: Path | None, created: list[Path]) -> None:
    if staging is not None:
        shutil.rmtree(staging, ignore_errors=True)
    for parent in reversed(created):
        with contextlib.suppress(OSError):
            parent.rmdir()


@contextlib.contextmanager
def output_folder(
    out: str | Path,
    *,
    kind: str,
    overwrite: bool = False,
    inputs: Iterable[str | Path] = (),
    what: str = "--out",
) -> Iterator[Path]:
    """Check ``out``, yield a staging folder, and make it ``out`` on success.

    Parameters are those of :func:`check_output_folder`. The checks run again
    when the body is done (something may have appeared at ``out`` meanwhile).
    If the body raises (or is interrupted), the staging folder and any parent
    folders this call created are removed and ``out`` is left as it was.

    Examples
    --------
    >>> with output_folder("results/UTS02", kind="transfer") as tmp:   # doctest: +SKIP
    ...     (tmp / "summary.json").write_text("{}")
    """
    inputs = list(inputs)
    path = check_output_folder(out, kind=kind, overwrite=overwrite, inputs=inputs, what=what)
    for note in clean_leftovers(path):
        warnings.warn(note, stacklevel=3)
    created: list[Path] = []
    staging = None
    try:
        staging = _make_staging(path, created)
        yield staging
        _check_existing(path, kind, overwrite, what)
        _write_marker(staging, kind)
        _commit(staging, path)
    except BaseException:
        _discard(staging, created)
        raise

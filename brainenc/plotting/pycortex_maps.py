"""Flatmaps of a subject's own cortex with pycortex (optional: ``pip install brainenc[pycortex]``).

The Huth story dataset (OpenNeuro ds003020) gives responses of *cortical
voxels* in each subject's functional space, and ships the pycortex database of
every subject (``derivative/pycortex-db/<SUBJ>/``: surfaces, flat patches,
transforms). A voxel map goes back into the volume through the cortical mask
of a transform (``transforms/<xfm>/mask_<type>.nii.gz``, whose voxels are the
response columns, :class:`~brainenc.io.pycortex_db.PycortexSubject`) and onto the subject's flattened cortex
with :func:`cortex.quickflat.make_figure`.

pycortex writes caches (flatmap pixel maps, masks, curvature) into its
database. So that nothing is written into the user's dataset, brainenc reads
the database through a *shadow* copy in its own cache folder
(``~/.cache/brainenc/pycortex-db/``, or ``$BRAINENC_CACHE_DIR``): the same
tree, with a link to each file, in which pycortex writes its caches.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np

from brainenc.errors import BrainencInputError
from brainenc.io.pycortex_db import PycortexSubject, find_pycortex_subject, huth_pycortex_subject

__all__ = ["PycortexSubject", "find_pycortex_subject", "huth_pycortex_subject", "plot_pycortex_flatmap",
           "pycortex_available", "shadow_filestore"]


def pycortex_available() -> bool:
    """Whether pycortex can be imported."""
    try:
        import cortex  # noqa: F401
    except ImportError:
        return False
    return True


def cache_root() -> Path:
    """Where brainenc keeps caches of its own: ``$BRAINENC_CACHE_DIR``, else
    ``$XDG_CACHE_HOME/brainenc``, else ``~/.cache/brainenc``."""
    if os.environ.get("BRAINENC_CACHE_DIR"):
        return Path(os.environ["BRAINENC_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "brainenc"


def shadow_filestore(subject: PycortexSubject) -> Path:
    """A copy of the subject's database tree in brainenc's cache (:func:`cache_root`),
    folders real and files linked, in which pycortex writes its caches (kept there, so
    the flatmap pixel maps are computed once per subject); returns its filestore."""
    source = (Path(subject.filestore) / subject.subject).resolve()
    key = hashlib.sha1(str(source).encode()).hexdigest()[:12]
    store = cache_root() / "pycortex-db" / key
    for folder, _, files in os.walk(source):
        target = store / subject.subject / Path(folder).relative_to(source)
        target.mkdir(parents=True, exist_ok=True)
        for name in files:
            link = target / name
            if not link.is_symlink() and not link.exists():
                link.symlink_to(Path(folder, name))
    return store


def plot_pycortex_flatmap(values: np.ndarray, subject: PycortexSubject, title: str | None = None,
                          vmax: float | None = None, cmap: str = "RdBu_r", filestore: Path | None = None):
    """A flatmap of one value per cortical voxel (NaN: the curvature shows).

    Parameters
    ----------
    values : ndarray of shape (n_voxels,)
        In the order of the subject's mask (see :class:`PycortexSubject`).
    subject : PycortexSubject
    title : str, optional
    vmax : float, optional
        The colour scale runs from ``-vmax`` to ``vmax`` (default: the largest
        absolute finite value).
    cmap : str
        A diverging colour map with a visible zero.
    filestore : Path, optional
        The database to read (default: the shadow of ``subject.filestore``,
        :func:`shadow_filestore`).

    Returns
    -------
    matplotlib.figure.Figure

    Raises
    ------
    BrainencInputError
        pycortex is not installed, or ``values`` does not match the mask.
    """
    if not pycortex_available():
        raise BrainencInputError(None, "pycortex flatmaps need pycortex: pip install 'brainenc[pycortex]'")
    if filestore is None:
        filestore = shadow_filestore(subject)
    import cortex
    import cortex.quickflat

    mask = subject.mask()
    values = np.asarray(values, dtype=float)
    if values.shape != (int(mask.sum()),):
        raise BrainencInputError(subject.mask_path, f"holds {int(mask.sum())} voxels but "
                                 f"{values.size} values were given")
    finite = values[np.isfinite(values)]
    if vmax is None:
        vmax = float(np.abs(finite).max()) if finite.size else 1.0
    previous = cortex.db
    cortex.db = cortex.database.Database(str(filestore))
    try:
        volume = cortex.Volume(values.astype(np.float32), subject.subject, subject.transform,
                               mask=mask, vmin=-vmax, vmax=vmax, cmap=cmap)
        figure = cortex.quickflat.make_figure(
            volume, with_rois=False, with_curvature=True, with_sulci=False, with_labels=False,
            with_colorbar=True, with_dropout=False)
    finally:
        cortex.db = previous
    if title:
        figure.suptitle(title)
    return figure

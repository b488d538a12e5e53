"""Dataset layouts: find the runs of a dataset folder, whatever its organisation.

Discovery order (see ``docs/data_layouts.md``): a manifest (``DIR`` is a
``.tsv`` file or holds ``brainenc_manifest.tsv``), then the Huth layout
(``derivative[s]/preprocessed_data``, or ``DIR`` is that ``derivative``
folder), then BIDS with fMRIPrep derivatives (``derivatives/fmriprep``).
"""
from __future__ import annotations

from pathlib import Path

from brainenc.errors import BrainencInputError
from brainenc.io.dataset import Dataset
from brainenc.io.layouts.bids import FMRIPREP_FOLDER, read_bids
from brainenc.io.layouts.huth import find_huth_derivative, read_huth
from brainenc.io.layouts.manifest import MANIFEST_NAME, manifest_path, read_manifest

__all__ = ["load_dataset", "detect_layout", "read_bids", "read_huth", "read_manifest"]


def detect_layout(path: str | Path) -> str:
    """The layout of ``path``: ``"manifest"``, ``"huth"`` or ``"bids"``.

    Raises
    ------
    BrainencInputError
        ``path`` does not exist or matches no layout; the message lists what
        was looked for.
    """
    path = Path(path)
    if not path.exists():
        raise BrainencInputError(path, "dataset not found")
    if manifest_path(path) is not None:
        return "manifest"
    if path.is_dir():
        if find_huth_derivative(path) is not None:
            return "huth"
        if (path / FMRIPREP_FOLDER).is_dir():
            return "bids"
    raise BrainencInputError(
        path,
        "unknown dataset layout: looked for a manifest (a .tsv file, or "
        f"{MANIFEST_NAME} in the folder), a Huth layout (derivative/preprocessed_data, "
        "derivatives/preprocessed_data, or preprocessed_data/ when the folder is the "
        f"derivative folder) and a BIDS dataset ({FMRIPREP_FOLDER}/)",
    )


def load_dataset(path: str | Path, feature_root: str | Path | None = None,
                 cleaning=None) -> Dataset:
    """Discover the runs of the dataset at ``path``.

    Parameters
    ----------
    path : path-like
        A dataset folder, or a manifest ``.tsv`` file (made absolute: the dataset
        records its resolved location).
    feature_root : path-like or None
        Folder holding the feature spaces; default ``<path>/features`` (for a
        manifest file, ``features/`` beside it).
    cleaning : ResponseCleaning, optional
        Confound regression, detrending and high-pass filtering of every run's
        responses on loading (:mod:`brainenc.io.confounds`; BIDS/fMRIPrep
        confounds files). Every run's confounds are read here, so a missing or
        unsuitable confounds file fails before any fit.

    Returns
    -------
    Dataset
    """
    readers = {"manifest": read_manifest, "huth": read_huth, "bids": read_bids}
    path = Path(path).expanduser().resolve()
    dataset = readers[detect_layout(path)](path)
    if feature_root is not None:
        dataset.feature_root = Path(feature_root)
    if cleaning is not None:
        dataset = dataset.with_cleaning(cleaning)
    return dataset

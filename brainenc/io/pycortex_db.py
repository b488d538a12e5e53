"""Where a subject's voxels lie in a pycortex database (read without pycortex).

The Huth story dataset (ds003020) ships each subject's pycortex database in
``derivative/pycortex-db/<SUBJ>/``; the response columns are the voxels of a
cortical mask of one of its transforms (``transforms/<xfm>/mask_<type>.nii.gz``).
:mod:`brainenc.plotting.pycortex_maps` draws flatmaps from it and
:mod:`brainenc.io.maps` writes the maps as NIfTI volumes in that transform's
reference space.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

#: Mask types pycortex makes (``cortex.db.get_mask``), in the order they are looked for.
MASK_TYPES: tuple[str, ...] = ("thick", "thin", "cortical")


@dataclass(frozen=True)
class PycortexSubject:
    """Where a subject's voxels lie in a pycortex database.

    Attributes
    ----------
    filestore : Path
        The database folder (holding ``<subject>/``).
    subject : str
    transform : str
        The transform (``transforms/<transform>/``) from the functional volume.
    mask_path : Path
        Its cortical mask: the response columns are its nonzero voxels in
        pycortex's order (C order of the (slice, row, column) array, as
        ``cortex.Volume(values, subject, transform, mask=mask)`` takes them).
    """

    filestore: Path
    subject: str
    transform: str
    mask_path: Path

    def reference_affine(self) -> np.ndarray:
        """The affine of the transform's reference volume (the functional space)."""
        import nibabel as nib

        return nib.load(str(self.mask_path)).affine

    def mask(self) -> np.ndarray:
        """The mask as a boolean array in pycortex's (slice, row, column) order."""
        import nibabel as nib

        data = np.asanyarray(nib.load(str(self.mask_path)).dataobj)
        # pycortex stores volumes in (x, y, z) NIfTI order and works in (z, y, x)
        return np.asarray(data).T > 0


def find_pycortex_subject(filestore: str | Path, subject: str, n_voxels: int) -> PycortexSubject | None:
    """The transform and mask of ``subject`` in ``filestore`` whose voxels number ``n_voxels``.

    Returns None when the database has no such subject or no such mask.
    """
    import nibabel as nib

    transforms = Path(filestore) / subject / "transforms"
    if not transforms.is_dir():
        return None
    for folder in sorted(p for p in transforms.iterdir() if p.is_dir()):
        for kind in MASK_TYPES:
            path = folder / f"mask_{kind}.nii.gz"
            if path.is_file() and int((np.asanyarray(nib.load(str(path)).dataobj) > 0).sum()) == n_voxels:
                return PycortexSubject(Path(filestore), subject, folder.name, path)
    return None


def huth_pycortex_subject(result) -> PycortexSubject | None:
    """The pycortex database entry of a Huth-layout result's subject, when the dataset
    ships one (``derivative/pycortex-db/<SUBJ>``) with a mask of the result's voxels."""
    settings = result.settings
    if settings.get("layout") != "huth" or not settings.get("dataset"):
        return None
    from brainenc.io.layouts.huth import find_huth_derivative

    derivative = find_huth_derivative(settings["dataset"])
    if derivative is None:
        return None
    return find_pycortex_subject(derivative / "pycortex-db", result.subject, result.n_voxels)

"""Per-voxel maps of a result as standard neuroimaging files: GIFTI on fsaverage, NIfTI in volumes.

``scores.npz`` holds every per-voxel array of a result; the same maps are
written beside it so that they open in Connectome Workbench, FSLeyes, nilearn
or pycortex without brainenc:

* surface results (``fsaverage5``, ``fsaverage6``): one
  ``maps/<quantity>_hemi-L.func.gii`` and ``maps/<quantity>_hemi-R.func.gii``
  per quantity, with one data array per direction (or per training modality
  for ``alphas``), named by it (``Name`` metadata) and tagged with the
  hemisphere (``AnatomicalStructurePrimary``: ``CortexLeft``/``CortexRight``);
* volume results (``volume``, ``native_volume``): one 4-D
  ``maps/<quantity>.nii.gz`` per quantity, one volume per direction, in the
  grid and affine of the subject's brain mask (voxels outside it are 0 in
  masks and NaN in values);
* Huth-layout results whose dataset ships the subject's pycortex database
  (:mod:`brainenc.io.pycortex_db`): the same NIfTI files in the reference
  volume of the transform whose cortical mask the voxels are;
* ``maps/maps.json`` lists, per file, the name of each array or volume in order.

A result in an ``unknown`` space gets no map files (its voxels have no place in
any standard space). Values are float32 (``significant`` masks uint8).
"""
from __future__ import annotations

import gzip
import json
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from brainenc.io.atomic import atomic_path
from brainenc.io.dataset import SURFACE_VERTICES, VOLUME_SPACES
from brainenc.io.pycortex_db import huth_pycortex_subject

#: The per-voxel quantities written, in file order.
QUANTITIES: tuple[str, ...] = ("r", "r2", "z", "pvalues", "significant", "alignment_pvalues",
                               "transfer_pvalues", "transfer_significant", "alphas")
MAPS_FOLDER = "maps"
INDEX_FILE = "maps.json"
_INTENTS = {"z": "NIFTI_INTENT_ZSCORE", "pvalues": "NIFTI_INTENT_PVAL",
            "alignment_pvalues": "NIFTI_INTENT_PVAL", "transfer_pvalues": "NIFTI_INTENT_PVAL",
            "r": "NIFTI_INTENT_CORREL"}
_HEMISPHERES = (("L", "CortexLeft"), ("R", "CortexRight"))


def result_maps(result) -> dict[str, dict[str, np.ndarray]]:
    """``{quantity: {direction or modality: per-voxel array}}`` of a
    :class:`~brainenc.results.TransferResult`, the quantities that it holds."""
    maps = {}
    for quantity in QUANTITIES:
        values = getattr(result, quantity)
        if values:
            maps[quantity] = {name: np.asarray(array) for name, array in values.items()}
    return maps


def _stored(values: np.ndarray, quantity: str) -> np.ndarray:
    return values.astype(np.uint8) if quantity.endswith("significant") else values.astype(np.float32)


def _write_gifti(path: Path, arrays: Mapping[str, np.ndarray], quantity: str, structure: str) -> None:
    import nibabel as nib

    image = nib.gifti.GiftiImage(meta=nib.gifti.GiftiMetaData({"AnatomicalStructurePrimary": structure}))
    for name, values in arrays.items():
        image.add_gifti_data_array(nib.gifti.GiftiDataArray(
            _stored(values, quantity), intent=_INTENTS.get(quantity, "NIFTI_INTENT_NONE"),
            meta=nib.gifti.GiftiMetaData({"Name": name})))
    _write_bytes(path, image.to_bytes())


def _write_bytes(path: Path, content: bytes) -> None:
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        f.write(content)


def _write_nifti(path: Path, arrays: Mapping[str, np.ndarray], quantity: str, inside: np.ndarray,
                 affine: np.ndarray, pycortex_order: bool = False) -> None:
    """A 4-D NIfTI of ``arrays`` put back at the voxels ``inside`` (in its C order); with
    ``pycortex_order``, ``inside`` is a (z, y, x) pycortex mask, turned to (x, y, z)."""
    import nibabel as nib

    fill = 0 if quantity.endswith("significant") else np.nan
    volume = np.full((*inside.shape, len(arrays)), fill, dtype=_stored(np.zeros(1), quantity).dtype)
    for k, values in enumerate(arrays.values()):
        if values.shape != (int(inside.sum()),):
            raise ValueError(f"{quantity} has {values.size} values but the mask holds "
                             f"{int(inside.sum())} voxels")
        volume[inside, k] = _stored(values, quantity)
    if pycortex_order:
        volume = volume.transpose(2, 1, 0, 3)
    image = nib.Nifti1Image(volume, affine)
    image.header.set_xyzt_units("mm")
    _write_bytes(path, gzip.compress(image.to_bytes(), compresslevel=6))


def _volume_grid(result) -> tuple[np.ndarray, np.ndarray, bool] | None:
    """(voxels, affine, pycortex order) of a volume result's mask, or of the pycortex mask of
    a Huth-layout subject whose database ships one; None without either."""
    import nibabel as nib

    if result.space in VOLUME_SPACES and result.mask_path:
        mask = nib.load(result.mask_path)
        inside = np.asanyarray(mask.dataobj) > 0
        return (inside[..., 0] if inside.ndim == 4 else inside), mask.affine, False
    if result.space == "unknown":
        subject = huth_pycortex_subject(result)
        if subject is not None:
            return subject.mask(), subject.reference_affine(), True
    return None


def map_file_names(space: str, quantity: str) -> list[str]:
    """The file names of one quantity's maps in a response ``space`` (none for ``unknown``)."""
    if space in SURFACE_VERTICES:
        return [f"{quantity}_hemi-{hemi}.func.gii" for hemi, _ in _HEMISPHERES]
    if space in VOLUME_SPACES:
        return [f"{quantity}.nii.gz"]
    return []


def write_maps(result, folder: str | Path) -> list[Path]:
    """Write the maps of ``result`` under ``folder/maps`` (see the module notes).

    Parameters
    ----------
    result : TransferResult
    folder : path-like
        The result's folder (where its ``scores.npz`` lies).

    Returns
    -------
    list of Path
        The files written; empty for a result in an ``unknown`` space without
        a pycortex database, or a volume result whose brain mask is not
        recorded.
    """
    space = result.space
    grid = None if space in SURFACE_VERTICES else _volume_grid(result)
    if space not in SURFACE_VERTICES and grid is None:
        return []
    out = Path(folder) / MAPS_FOLDER
    out.mkdir(parents=True, exist_ok=True)
    index, written = {}, []
    for quantity, arrays in result_maps(result).items():
        if grid is None:
            n = SURFACE_VERTICES[space]
            for (hemi, structure), name in zip(_HEMISPHERES, map_file_names(space, quantity)):
                part = {key: values[:n] if hemi == "L" else values[n:] for key, values in arrays.items()}
                _write_gifti(out / name, part, quantity, structure)
                index[name] = list(arrays)
                written.append(out / name)
        else:
            name = f"{quantity}.nii.gz"
            _write_nifti(out / name, arrays, quantity, *grid)
            index[name] = list(arrays)
            written.append(out / name)
    with atomic_path(out / INDEX_FILE) as tmp:
        Path(tmp).write_text(json.dumps({"space": space, "files": index}, indent=2), encoding="utf-8")
    return written


def read_maps(folder: str | Path) -> dict[str, dict[str, np.ndarray]]:
    """Read the maps written by :func:`write_maps` back: ``{quantity: {name: values}}``.

    Surface maps come back per vertex, the hemispheres joined (left then
    right); volume maps as 3-D arrays in the mask's grid.
    """
    import nibabel as nib

    out = Path(folder) / MAPS_FOLDER
    index = json.loads((out / INDEX_FILE).read_text(encoding="utf-8"))
    maps: dict[str, dict[str, np.ndarray]] = {}
    for name, names in index["files"].items():
        quantity = name.split("_hemi-")[0].removesuffix(".nii.gz")
        image = nib.load(str(out / name))
        if name.endswith(".func.gii"):
            parts = {key: darray.data for key, darray in zip(names, image.darrays)}
            for key, values in parts.items():
                previous = maps.setdefault(quantity, {}).get(key)
                maps[quantity][key] = values if previous is None else np.concatenate([previous, values])
        else:
            data = np.asanyarray(image.dataobj)
            maps[quantity] = {key: data[..., k] for k, key in enumerate(names)}
    return maps

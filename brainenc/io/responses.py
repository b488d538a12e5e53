"""Reading fMRI responses of a run as a (TRs × voxels) matrix.

Formats, chosen by file suffix:

``.hf5`` / ``.h5``
    HDF5 with a 2-D dataset ``data``, rows = TRs.
``.npy``
    A 2-D NumPy array, rows = TRs.
``.nii`` / ``.nii.gz``
    A 4-D volume, masked with ``Run.mask_path``; columns are the voxels inside
    the mask in C order (as nilearn's maskers give them).
``.func.gii`` (two files)
    Left then right hemisphere; each file holds one data array per TR or one
    2-D array of vertices × TRs. Columns are the left vertices then the right.
"""
from __future__ import annotations

import warnings
from pathlib import Path

import h5py
import nibabel as nib
import numpy as np

from brainenc.errors import BrainencInputError
from brainenc.io.dataset import Run

HDF5_SUFFIXES = (".hf5", ".h5")
NUMPY_SUFFIXES = (".npy",)
NIFTI_SUFFIXES = (".nii", ".nii.gz")
GIFTI_SUFFIXES = (".func.gii", ".gii")

#: Vertices of one fsaverage5 hemisphere; used to tell the orientation of a
#: single 2-D GIFTI array.
FSAVERAGE5_HEMISPHERE_VERTICES = 10242


def response_format(path: str | Path) -> str | None:
    """The response format of ``path`` from its suffix.

    Returns ``"hdf5"``, ``"npy"``, ``"nifti"``, ``"gifti"`` or None when the
    suffix is not a response format.
    """
    name = Path(path).name.lower()
    for kind, suffixes in (
        ("hdf5", HDF5_SUFFIXES), ("npy", NUMPY_SUFFIXES),
        ("nifti", NIFTI_SUFFIXES), ("gifti", GIFTI_SUFFIXES),
    ):
        if name.endswith(suffixes):
            return kind
    return None


def read_response_shape(
    paths: tuple[Path, ...] | list[Path], mask_path: Path | None = None
) -> tuple[int, int]:
    """Rows (TRs) and columns (voxels) held by response files, reading headers only.

    Parameters
    ----------
    paths : sequence of Path
        One response file, or the left and right GIFTI files.
    mask_path : Path or None
        Brain mask, required for NIfTI responses.

    Returns
    -------
    (n_rows_in_file, n_voxels) : tuple of int
        Rows as stored in the file(s), before any trimming.
    """
    paths = tuple(Path(p) for p in paths)
    kind = _checked_format(paths, mask_path)
    if kind == "hdf5":
        shape = _hdf5_shape(paths[0])
    elif kind == "npy":
        shape = _npy_shape(paths[0])
    elif kind == "nifti":
        n_rows = _nifti_image(paths[0]).shape[3]
        shape = (n_rows, int(_load_mask(mask_path, paths[0]).sum()))
    else:
        blocks = _gifti_blocks(paths)
        shape = (blocks[0].shape[0], sum(block.shape[1] for block in blocks))
    return int(shape[0]), int(shape[1])


def response_shape(run: Run) -> tuple[int, int]:
    """Rows and voxels of ``run``'s response file(s), before trimming; see :func:`read_response_shape`."""
    return read_response_shape(run.response_paths, run.mask_path)


def load_responses(run: Run, dtype=np.float32) -> np.ndarray:
    """Load the analysed responses of ``run``.

    Parameters
    ----------
    run : Run
        The run; when ``run.response_is_trimmed`` is False the file holds every
        volume of ``run.tr_grid`` and the trims are applied here, otherwise it
        must already hold exactly ``run.n_trs`` rows.
    dtype : numpy dtype
        Type of the returned array.

    Returns
    -------
    ndarray of shape (run.n_trs, n_voxels)

    Raises
    ------
    BrainencInputError
        Missing or unreadable file, a row count that does not match the TR
        grid, NaN or infinite values, or a mask that does not fit the volume.
        Constant voxels are allowed.
    """
    paths = tuple(Path(p) for p in run.response_paths)
    kind = _checked_format(paths, run.mask_path)
    if kind == "hdf5":
        blocks = [_read_hdf5(paths[0])]
    elif kind == "npy":
        blocks = [_read_npy(paths[0])]
    elif kind == "nifti":
        blocks = [_read_nifti(paths[0], run.mask_path)]
    else:
        blocks = _gifti_blocks(paths)

    n_rows = blocks[0].shape[0]
    _check_row_count(run, paths[0], n_rows)
    start, stop = (0, n_rows) if run.response_is_trimmed else (
        run.trim_start, n_rows - run.trim_end)

    kept = []
    first_column = 0
    for path, block in zip(paths, blocks):
        # Values too large for ``dtype`` become inf and are reported just below.
        with np.errstate(over="ignore"):
            values = np.asarray(block[start:stop], dtype=dtype)
        _check_finite(values, path, first_column)
        kept.append(values)
        first_column += values.shape[1]
    data = kept[0] if len(kept) == 1 else np.concatenate(kept, axis=1)
    return np.ascontiguousarray(data)


# -- checks -------------------------------------------------------------------

def _checked_format(paths: tuple[Path, ...], mask_path: Path | None) -> str:
    if not paths:
        raise BrainencInputError(None, "the run names no response file")
    for path in paths:
        if not path.is_file():
            raise BrainencInputError(path, "response file not found")
    kinds = {response_format(path) for path in paths}
    if None in kinds or len(kinds) != 1:
        raise BrainencInputError(
            paths[0], "unsupported response format: expected .hf5/.h5, .npy, .nii/.nii.gz "
            "or a pair of .func.gii (left, right)"
        )
    kind = kinds.pop()
    if kind == "gifti" and len(paths) != 2:
        raise BrainencInputError(
            paths[0], f"GIFTI responses need two files (left then right hemisphere), got {len(paths)}"
        )
    if kind != "gifti" and len(paths) != 1:
        raise BrainencInputError(paths[0], f"expected one response file, got {len(paths)}")
    if kind == "nifti":
        if mask_path is None:
            raise BrainencInputError(paths[0], "NIfTI responses need a brain mask (none given)")
        if not Path(mask_path).is_file():
            raise BrainencInputError(mask_path, "brain mask file not found")
    return kind


def _check_row_count(run: Run, path: Path, n_rows: int) -> None:
    n_grid = len(run.tr_grid)
    if run.response_is_trimmed:
        expected = run.n_trs
        if n_rows != expected:
            raise BrainencInputError(
                path,
                f"has {n_rows} rows (TRs) but the stimulus TR grid gives {expected} "
                f"({n_grid} volumes - {run.trim_start} trim_start - {run.trim_end} trim_end); "
                "this file should already be trimmed",
            )
    elif n_rows != n_grid:
        raise BrainencInputError(
            path,
            f"has {n_rows} rows (TRs) but the stimulus TR grid gives {n_grid} volumes; the file "
            f"should hold every volume ({run.trim_start} trim_start and {run.trim_end} trim_end "
            "volumes are dropped on loading)",
        )


def _check_finite(values: np.ndarray, path: Path, first_column: int) -> None:
    finite = np.isfinite(values)
    if finite.all():
        return
    bad = ~finite
    n_bad = int(bad.sum())
    column = int(np.flatnonzero(bad.any(axis=0))[0])
    raise BrainencInputError(
        path,
        f"{n_bad} NaN or infinite values among the analysed rows; the first is in voxel "
        f"column {first_column + column}",
    )


def _check_matrix_shape(shape: tuple[int, ...], path: Path, what: str) -> tuple[int, int]:
    shape = tuple(int(size) for size in shape)
    if len(shape) != 2:
        raise BrainencInputError(path, f"{what} must be 2-D (TRs x voxels), got shape {shape}")
    if shape[0] == 0 or shape[1] == 0:
        raise BrainencInputError(path, f"{what} is empty (shape {shape})")
    return shape


def _as_matrix(array: np.ndarray, path: Path, what: str) -> np.ndarray:
    _check_matrix_shape(array.shape, path, what)
    return array


# -- formats ------------------------------------------------------------------

def _hdf5_shape(path: Path) -> tuple[int, ...]:
    try:
        with h5py.File(path, "r") as handle:
            return _check_matrix_shape(_hdf5_data(handle, path).shape, path, "'data'")
    except OSError as error:
        raise BrainencInputError(path, f"cannot read the HDF5 file ({error})") from error


def _read_hdf5(path: Path) -> np.ndarray:
    try:
        with h5py.File(path, "r") as handle:
            dataset = _hdf5_data(handle, path)
            _check_matrix_shape(dataset.shape, path, "'data'")
            return dataset[()]
    except OSError as error:
        raise BrainencInputError(path, f"cannot read the HDF5 file ({error})") from error


def _hdf5_data(handle: h5py.File, path: Path) -> h5py.Dataset:
    dataset = handle.get("data")
    if not isinstance(dataset, h5py.Dataset):
        raise BrainencInputError(
            path, f"no dataset 'data' in the HDF5 file (it holds {sorted(handle.keys())})"
        )
    return dataset


def _npy_shape(path: Path) -> tuple[int, ...]:
    return _check_matrix_shape(_open_npy(path, mmap_mode="r").shape, path, "the array")


def _read_npy(path: Path) -> np.ndarray:
    return _as_matrix(_open_npy(path, mmap_mode=None), path, "the array")


def _open_npy(path: Path, mmap_mode) -> np.ndarray:
    try:
        return np.load(path, mmap_mode=mmap_mode, allow_pickle=False)
    except (OSError, ValueError) as error:
        raise BrainencInputError(path, f"cannot read the .npy file ({error})") from error


def _nifti_image(path: Path):
    try:
        image = nib.load(str(path))
    except Exception as error:  # nibabel raises several types for bad files
        raise BrainencInputError(path, f"cannot read the NIfTI file ({error})") from error
    if len(image.shape) != 4:
        raise BrainencInputError(
            path, f"a NIfTI response must be 4-D (x, y, z, TRs), got shape {image.shape}"
        )
    return image


def _load_mask(mask_path: Path, bold_path: Path) -> np.ndarray:
    from nilearn.masking import load_mask_img

    try:
        mask_header = nib.load(str(mask_path))
    except Exception as error:
        raise BrainencInputError(mask_path, f"cannot read the brain mask ({error})") from error
    bold_shape = _nifti_image(bold_path).shape[:3]
    mask_shape = tuple(mask_header.shape)
    # A trailing singleton axis (x, y, z, 1) is still a 3-D mask.
    if mask_shape[:3] != bold_shape or any(size != 1 for size in mask_shape[3:]):
        raise BrainencInputError(
            mask_path,
            f"the brain mask has shape {mask_shape} but the volumes of {bold_path.name} "
            f"have shape {bold_shape}",
        )
    try:
        mask, _ = load_mask_img(str(mask_path))
    except (ValueError, TypeError) as error:
        raise BrainencInputError(mask_path, f"not a usable brain mask ({error})") from error
    return mask


def _read_nifti(path: Path, mask_path: Path) -> np.ndarray:
    from nilearn.masking import apply_mask

    _load_mask(mask_path, path)  # shape and content checks with clear messages
    try:
        # ensure_finite=False: NaNs must reach the finiteness check, not become 0.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            data = apply_mask(str(path), str(mask_path), dtype=None, ensure_finite=False)
    except ValueError as error:
        raise BrainencInputError(
            mask_path, f"cannot mask {path.name} with this brain mask ({error})"
        ) from error
    return _as_matrix(np.asarray(data), path, "the masked volume")


def _gifti_blocks(paths: tuple[Path, Path]) -> list[np.ndarray]:
    blocks = [_read_gifti(path) for path in paths]
    left, right = blocks
    if left.shape[0] != right.shape[0]:
        raise BrainencInputError(
            paths[1],
            f"has {right.shape[0]} TRs but the left hemisphere {paths[0].name} has {left.shape[0]}",
        )
    return blocks


def _read_gifti(path: Path) -> np.ndarray:
    """One hemisphere as a (TRs × vertices) matrix."""
    try:
        image = nib.load(str(path))
    except Exception as error:
        raise BrainencInputError(path, f"cannot read the GIFTI file ({error})") from error
    if not isinstance(image, nib.gifti.GiftiImage):
        raise BrainencInputError(path, "not a GIFTI image")
    arrays = [np.asarray(darray.data) for darray in image.darrays]
    if not arrays:
        raise BrainencInputError(path, "the GIFTI file holds no data arrays")
    if len(arrays) == 1 and arrays[0].ndim == 2:
        matrix = arrays[0]
        # GIFTI time series are vertices × TRs; only a second axis of exactly one
        # fsaverage5 hemisphere reveals a file written the other way round.
        vertices_last = (
            matrix.shape[1] == FSAVERAGE5_HEMISPHERE_VERTICES
            and matrix.shape[0] != FSAVERAGE5_HEMISPHERE_VERTICES
        )
        matrix = matrix if vertices_last else matrix.T
    else:
        squeezed = [array.reshape(-1) if array.ndim == 2 and 1 in array.shape else array
                    for array in arrays]
        lengths = {array.shape for array in squeezed}
        if any(array.ndim != 1 for array in squeezed) or len(lengths) != 1:
            raise BrainencInputError(
                path,
                "expected one data array per TR (all of the same length) or a single 2-D "
                f"array; found arrays of shapes {sorted(lengths)}",
            )
        matrix = np.stack(squeezed, axis=0)
    return _as_matrix(matrix, path, "the surface data")

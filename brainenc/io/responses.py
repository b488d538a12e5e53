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

Values must be real numbers (integer or floating point); strings, complex
values, NaN, infinities and values beyond the float32 range are errors naming
the file. A file whose every voxel is constant over the run warns
(:class:`~brainenc.errors.BrainencInputWarning`).
"""
from __future__ import annotations

import warnings
import zlib
from pathlib import Path

import h5py
import nibabel as nib
import numpy as np

from brainenc.errors import BrainencInputError, BrainencInputWarning
from brainenc.io.dataset import SURFACE_VERTICES, Run

HDF5_SUFFIXES = (".hf5", ".h5")
NUMPY_SUFFIXES = (".npy",)
NIFTI_SUFFIXES = (".nii", ".nii.gz")
GIFTI_SUFFIXES = (".func.gii", ".gii")

#: Vertices of one fsaverage5 hemisphere; used to tell the orientation of a
#: single 2-D GIFTI array.
FSAVERAGE5_HEMISPHERE_VERTICES = 10242

#: numpy dtype kinds read as responses: booleans, integers, floats.
REAL_KINDS = frozenset("biuf")
#: Errors raised when compressed or binary data ends early.
TRUNCATION_ERRORS = (EOFError, zlib.error, OSError)


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

    Raises
    ------
    BrainencInputError
        A missing, unreadable or truncated file, a value type that is not real
        numbers, an array that is not 2-D, or a mask that does not fit. GIFTI
        files are read whole (the format has no separate header); compressed
        NIfTI data is not decompressed, so a truncated ``.nii.gz`` is only
        found by :func:`load_responses`.
    """
    shapes = read_response_shapes(paths, mask_path)
    return shapes[0][0], sum(n_columns for _, n_columns in shapes)


def read_response_shapes(
    paths: tuple[Path, ...] | list[Path], mask_path: Path | None = None
) -> list[tuple[int, int]]:
    """Rows and columns of each response file (for GIFTI, each hemisphere).

    Same reading and checks as :func:`read_response_shape`, one shape per file.
    """
    paths = tuple(Path(p) for p in paths)
    kind = _checked_format(paths, mask_path)
    if kind == "hdf5":
        shapes = [_hdf5_shape(paths[0])]
    elif kind == "npy":
        shapes = [_npy_shape(paths[0])]
    elif kind == "nifti":
        n_rows = _nifti_image(paths[0]).shape[3]
        shapes = [(n_rows, int(_load_mask(mask_path, paths[0]).sum()))]
    else:
        shapes = [block.shape for block in _gifti_blocks(paths)]
    return [(int(rows), int(columns)) for rows, columns in shapes]


def response_shape(run: Run) -> tuple[int, int]:
    """Rows and voxels of ``run``'s response file(s), before trimming; see :func:`read_response_shape`."""
    return read_response_shape(run.response_paths, run.mask_path)


def check_run_responses(run: Run) -> tuple[int, int]:
    """Check ``run``'s response files against the run without loading the data.

    Header-level checks only, cheap enough to run on every run of a dataset
    before any model is fitted: the checks of :func:`read_response_shape`, the
    row count against the run's TR grid and trims, and the column count against
    the declared response space (:func:`check_response_space`).

    Parameters
    ----------
    run : Run

    Returns
    -------
    (n_rows, n_voxels) : tuple of int
        The shape :func:`load_responses` returns: ``n_rows == run.n_trs``.

    Raises
    ------
    BrainencInputError
        The first problem found, naming the file.
    """
    paths = tuple(Path(p) for p in run.response_paths)
    shapes = read_response_shapes(paths, run.mask_path)
    _check_row_count(run, paths[0], shapes[0][0])
    n_voxels = sum(n_columns for _, n_columns in shapes)
    check_response_space(run, n_voxels, [n_columns for _, n_columns in shapes])
    return run.n_trs, n_voxels


def check_response_space(run: Run, n_voxels: int,
                         columns_per_file: list[int] | None = None) -> None:
    """Raise when ``run.space`` declares a column count the responses do not have.

    Parameters
    ----------
    run : Run
    n_voxels : int
        Columns of the run's response matrix.
    columns_per_file : list of int or None
        Columns of each response file; for a GIFTI pair each hemisphere must
        hold the vertices of one hemisphere of the run's fsaverage mesh.

    Raises
    ------
    BrainencInputError
        ``run.space`` is an fsaverage mesh (``fsaverage5``: 20 484 columns,
        10 242 per hemisphere; ``fsaverage6``: 2 × 40 962) but the columns
        are not its vertices; the error names ``run.space_source``, the file that
        declared the space.
    """
    if run.space not in SURFACE_VERTICES:
        return
    per_hemisphere = SURFACE_VERTICES[run.space]
    expected = 2 * per_hemisphere
    files = [Path(p).name for p in run.response_paths]
    if columns_per_file is not None and len(columns_per_file) == 2:
        if all(n == per_hemisphere for n in columns_per_file):
            return
        found = " and ".join(f"{name} has {n}" for name, n in zip(files, columns_per_file))
        held = f"{found} columns"
    elif n_voxels == expected:
        return
    else:
        held = f"{' + '.join(files)} has {n_voxels} columns"
    source = run.space_source if run.space_source is not None else Path(run.response_paths[0])
    declares = ("its name declares" if source in tuple(Path(p) for p in run.response_paths)
                else "declares")
    raise BrainencInputError(
        source, f"{declares} space {run.space} ({expected:,} vertices: {per_hemisphere:,} per "
        f"hemisphere) but {held}".replace(",", " ")
    )


def load_responses(run: Run, dtype=np.float32, columns: slice | None = None) -> np.ndarray:
    """Load the analysed responses of ``run``, all voxels or the voxels ``columns``.

    Parameters
    ----------
    run : Run
        The run; when ``run.response_is_trimmed`` is False the file holds every
        volume of ``run.tr_grid`` and the trims are applied here, otherwise it
        must already hold exactly ``run.n_trs`` rows.
    dtype : numpy dtype
        Type of the returned array.
    columns : slice, optional
        Only these voxel columns (step 1). HDF5 and ``.npy`` files are read for
        these columns only; NIfTI and GIfTI files are read whole and cut.

    Returns
    -------
    ndarray of shape (run.n_trs, n_voxels)
        After the run's cleaning (confounds, detrending, high-pass filter;
        :mod:`brainenc.io.confounds`) when ``run.cleaning`` is set.

    Raises
    ------
    BrainencInputError
        Missing, unreadable or truncated file, values that are not real
        numbers, a row count that does not match the TR grid, a column count
        that contradicts ``run.space`` (:func:`check_response_space`), NaN or
        infinite values, values beyond the range of ``dtype``, or a mask that
        does not fit the volume.

    Warns
    -----
    BrainencInputWarning
        Every voxel of a file is constant over the analysed rows (a file of
        zeros, say). Single constant voxels are allowed.
    """
    paths = tuple(Path(p) for p in run.response_paths)
    kind = _checked_format(paths, run.mask_path)
    if columns is not None:
        return _load_columns(run, paths, kind, dtype, columns)
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
    check_response_space(run, sum(block.shape[1] for block in blocks),
                         [block.shape[1] for block in blocks])
    kept = []
    first_column = 0
    for path, block in zip(paths, blocks):
        values = _checked_rows(run, block, path, dtype, first_column)
        _warn_if_constant(values, path)
        kept.append(values)
        first_column += values.shape[1]
    data = kept[0] if len(kept) == 1 else np.concatenate(kept, axis=1)
    return _cleaned(run, data)


def _checked_rows(run: Run, block, path: Path, dtype, first_column: int) -> np.ndarray:
    """The analysed rows of ``block`` (the trims applied) as ``dtype``, checked finite."""
    n_rows = block.shape[0]
    start, stop = (0, n_rows) if run.response_is_trimmed else (run.trim_start, n_rows - run.trim_end)
    raw = block[start:stop]
    # Values too large for ``dtype`` become inf and are told apart just below.
    with np.errstate(over="ignore"):
        values = np.asarray(raw, dtype=dtype)
    _check_finite(values, raw, path, first_column)
    return values


def _load_columns(run: Run, paths: tuple[Path, ...], kind: str, dtype, columns: slice) -> np.ndarray:
    """:func:`load_responses` for the voxel columns ``columns`` (no all-constant warning)."""
    n_rows, n_voxels = read_response_shape(paths, run.mask_path)
    _check_row_count(run, paths[0], n_rows)
    start, stop, step = columns.indices(n_voxels)
    if step != 1:
        raise ValueError("columns must be a slice of step 1")
    if kind in ("hdf5", "npy"):
        check_response_space(run, n_voxels)
        read = _read_hdf5 if kind == "hdf5" else _read_npy
        block = read(paths[0], slice(start, stop))
    else:
        whole = [_read_nifti(paths[0], run.mask_path)] if kind == "nifti" else _gifti_blocks(paths)
        check_response_space(run, n_voxels, [b.shape[1] for b in whole])
        block = (whole[0] if len(whole) == 1 else np.concatenate(whole, axis=1))[:, start:stop]
        del whole
    values = _checked_rows(run, block, paths[0], dtype, start)
    return _cleaned(run, np.ascontiguousarray(values))


def _cleaned(run: Run, data: np.ndarray) -> np.ndarray:
    """``data`` after the run's cleaning, if any."""
    if run.cleaning is not None:
        from brainenc.io.confounds import clean_run_responses

        data = clean_run_responses(data, run, run.cleaning)
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


def _check_finite(values: np.ndarray, raw: np.ndarray, path: Path, first_column: int) -> None:
    """NaN/inf in the file, and values that overflowed on the cast, as separate errors."""
    finite = np.isfinite(values)
    if finite.all():
        return
    bad = ~finite
    stored = np.asarray(raw)[bad]
    stored_finite = np.isfinite(stored) if stored.dtype.kind in "fc" else np.ones(stored.shape, bool)
    columns = np.nonzero(bad)[1]
    if not stored_finite.all():
        n_bad = int((~stored_finite).sum())
        column = int(columns[~stored_finite].min())
        raise BrainencInputError(
            path,
            f"{n_bad} NaN or infinite values among the analysed rows; the first is in voxel "
            f"column {first_column + column}",
        )
    largest = float(np.max(np.abs(stored.astype(np.float64))))
    raise BrainencInputError(
        path,
        f"{stored.size} values outside the {values.dtype} range (max |x| = {largest:.3g}, "
        f"limit {float(np.finfo(values.dtype).max):.3g}) among the analysed rows; the first is "
        f"in voxel column {first_column + int(columns.min())}; rescale the responses",
    )


def _warn_if_constant(values: np.ndarray, path: Path) -> None:
    if values.shape[0] > 1 and np.all(values.max(axis=0) == values.min(axis=0)):
        warnings.warn(
            f"{path}: every voxel is constant over the {values.shape[0]} analysed rows "
            f"(all values {values.flat[0]:g} in the first voxel); is this the right file?",
            BrainencInputWarning, stacklevel=3,
        )


def _check_dtype(dtype: np.dtype, path: Path, what: str) -> None:
    """Refuse value types that would be silently cast: complex, strings, objects."""
    dtype = np.dtype(dtype)
    if dtype.kind in REAL_KINDS:
        return
    if dtype.kind == "c":
        raise BrainencInputError(
            path, f"{what} holds complex values (dtype {dtype}); expected real values "
            "(take the magnitude or the real part before saving)"
        )
    raise BrainencInputError(
        path, f"{what} has dtype {dtype} ({_KIND_NAMES.get(dtype.kind, 'not numbers')}); "
        "expected a numeric array (TRs x voxels)"
    )


_KIND_NAMES = {"S": "byte strings", "U": "strings", "O": "Python objects",
               "V": "structured records", "M": "dates", "m": "time deltas"}


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
        raise BrainencInputError(
            path, f"cannot read the HDF5 file: truncated or corrupt ({error})") from error


def _read_hdf5(path: Path, columns: slice | None = None) -> np.ndarray:
    try:
        with h5py.File(path, "r") as handle:
            dataset = _hdf5_data(handle, path)
            _check_matrix_shape(dataset.shape, path, "'data'")
            return dataset[()] if columns is None else dataset[:, columns]
    except OSError as error:
        raise BrainencInputError(
            path, f"cannot read the HDF5 file: truncated or corrupt ({error})") from error


def _hdf5_data(handle: h5py.File, path: Path) -> h5py.Dataset:
    """The ``data`` dataset, checked to hold real numbers."""
    entry = handle.get("data")
    if isinstance(entry, h5py.Group):
        raise BrainencInputError(
            path, f"'data' is a group (holding {sorted(entry.keys())}), not a dataset; expected "
            "a 2-D numeric dataset 'data' (TRs x voxels)"
        )
    if not isinstance(entry, h5py.Dataset):
        raise BrainencInputError(
            path, f"no dataset 'data' in the HDF5 file (it holds {sorted(handle.keys())}); "
            "expected a 2-D numeric dataset 'data' (TRs x voxels)"
        )
    _check_dtype(entry.dtype, path, "dataset 'data'")
    return entry


def _npy_shape(path: Path) -> tuple[int, ...]:
    shape, dtype, data_offset = _npy_header(path)
    shape = _check_matrix_shape(shape, path, "the array")
    expected = data_offset + int(np.prod(shape)) * dtype.itemsize
    size = path.stat().st_size
    if size < expected:
        raise BrainencInputError(
            path, f"truncated or corrupt: the header announces {shape} {dtype} values "
            f"({expected} bytes with the header) but the file has {size} bytes"
        )
    return shape


def _read_npy(path: Path, columns: slice | None = None) -> np.ndarray:
    _npy_header(path)
    try:
        if columns is not None:
            _npy_shape(path)   # a truncated file is an error, not a short map
            mapped = np.load(path, mmap_mode="r", allow_pickle=False)
            return np.array(mapped[:, columns])
        array = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as error:
        raise BrainencInputError(
            path, f"cannot read the .npy file: truncated or corrupt ({error})") from error
    return _as_matrix(array, path, "the array")


def _npy_header(path: Path) -> tuple[tuple[int, ...], np.dtype, int]:
    """Shape, dtype (checked to be real numbers) and data offset of a ``.npy`` file."""
    try:
        with open(path, "rb") as handle:
            version = np.lib.format.read_magic(handle)
            if version == (1, 0):
                shape, _, dtype = np.lib.format.read_array_header_1_0(handle)
            else:
                shape, _, dtype = np.lib.format.read_array_header_2_0(handle)
            offset = handle.tell()
    except (OSError, ValueError, EOFError) as error:
        raise BrainencInputError(
            path, f"cannot read the .npy header: not a .npy file, truncated or corrupt ({error})"
        ) from error
    _check_dtype(dtype, path, "the array")
    return tuple(shape), np.dtype(dtype), offset


def _nifti_image(path: Path):
    try:
        image = nib.load(str(path))
    except Exception as error:  # nibabel raises several types for bad files
        raise BrainencInputError(
            path, f"cannot read the NIfTI file: truncated or corrupt ({error})") from error
    if len(image.shape) != 4:
        raise BrainencInputError(
            path, f"a NIfTI response must be 4-D (x, y, z, TRs), got shape {image.shape}"
        )
    _check_dtype(image.get_data_dtype(), path, "the volume")
    return image


def _load_mask(mask_path: Path, bold_path: Path) -> np.ndarray:
    from nilearn.masking import load_mask_img

    try:
        mask_header = nib.load(str(mask_path))
    except Exception as error:
        raise BrainencInputError(
            mask_path, f"cannot read the brain mask: truncated or corrupt ({error})") from error
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
    except TRUNCATION_ERRORS as error:
        raise BrainencInputError(
            mask_path, f"cannot read the brain mask: truncated or corrupt ({error})") from error
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
    except TRUNCATION_ERRORS as error:
        raise BrainencInputError(
            path, f"cannot read the volume data: truncated or corrupt ({error})") from error
    return _as_matrix(np.asarray(data), path, "the masked volume")


#: fMRIPrep/Connectome-Workbench names of the hemispheres in GIFTI metadata.
HEMISPHERE_STRUCTURES = ("CortexLeft", "CortexRight")


def _check_hemisphere(image, path: Path, expected: str) -> None:
    """A hemisphere file whose metadata names the other hemisphere is an error."""
    metas = [image.meta] + [darray.meta for darray in image.darrays[:1]]
    stated = next((meta["AnatomicalStructurePrimary"] for meta in metas
                   if meta is not None and "AnatomicalStructurePrimary" in meta), None)
    if stated in HEMISPHERE_STRUCTURES and stated != expected:
        raise BrainencInputError(
            path, f"is used as the {'left' if expected == 'CortexLeft' else 'right'} "
            f"hemisphere but its metadata says AnatomicalStructurePrimary={stated}; the "
            "hemisphere files look swapped")


def _gifti_blocks(paths: tuple[Path, Path]) -> list[np.ndarray]:
    blocks = [_read_gifti(path, expected)
              for path, expected in zip(paths, HEMISPHERE_STRUCTURES)]
    left, right = blocks
    if left.shape[0] != right.shape[0]:
        raise BrainencInputError(
            paths[1],
            f"has {right.shape[0]} TRs but the left hemisphere {paths[0].name} has {left.shape[0]}",
        )
    return blocks


def open_gifti(path: Path):
    """The GIFTI image at ``path``; an unreadable file or another image type is a user error."""
    try:
        image = nib.load(str(path))
    except Exception as error:  # XML, base64 and zlib errors alike
        raise BrainencInputError(
            path, f"cannot read the GIFTI file: truncated or corrupt ({error})") from error
    if not isinstance(image, nib.gifti.GiftiImage):
        raise BrainencInputError(path, "not a GIFTI image")
    return image


def _read_gifti(path: Path, hemisphere: str | None = None) -> np.ndarray:
    """One hemisphere as a (TRs × vertices) matrix; ``hemisphere`` is checked against the metadata."""
    image = open_gifti(path)
    if hemisphere is not None:
        _check_hemisphere(image, path, hemisphere)
    arrays = [np.asarray(darray.data) for darray in image.darrays]
    if not arrays:
        raise BrainencInputError(path, "the GIFTI file holds no data arrays")
    for array in arrays:
        _check_dtype(array.dtype, path, "the surface data")
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

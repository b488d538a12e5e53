"""Regions of interest: label files read into voxel sets, and per-region summaries of results.

Label inputs (``docs/rois.md``):

* fsaverage5 surfaces: two files, left hemisphere then right, each a GIFTI
  label file (``*.label.gii``) or a FreeSurfer annotation (``lh.*.annot``,
  ``rh.*.annot``). ROIs are per hemisphere and named ``"L <name>"`` /
  ``"R <name>"``.
* volumes: an integer NIfTI atlas, read at the voxels of the analysis's brain
  mask in the order the responses use (the mask's nonzero voxels in C order,
  as :func:`nilearn.masking.apply_mask` gives them); names from a lookup
  table (TSV with ``index`` and ``name`` columns) or ``"label <k>"``.
* a simulated subject: one ROI per ground-truth region, e.g. ``"shared L 1"``.

Label values of 0 and below mean *unlabelled*. ROIs are sets of voxel
indices and may overlap (simulated regions do), so a voxel may count in
several rows of a table.
"""
from __future__ import annotations

import html
import itertools
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import nibabel as nib
import numpy as np

from brainenc.errors import BrainencInputError, warn_input
from brainenc.io.dataset import VOLUME_SPACES
from brainenc.io.responses import FSAVERAGE5_HEMISPHERE_VERTICES, HEMISPHERE_STRUCTURES, open_gifti
from brainenc.results import (
    CROSS,
    DIRECTIONS,
    TransferResult,
    direction_label,
    format_fraction,
    format_r,
)
from brainenc.stats import summarize_direction

if TYPE_CHECKING:
    from brainenc.simulate.truth import GroundTruth

#: Label values up to this one (0, and negative values such as the -1 of
#: FreeSurfer annotations) mark unlabelled vertices and voxels.
UNLABELLED = 0
HEMISPHERE_VERTICES = FSAVERAGE5_HEMISPHERE_VERTICES
HEMISPHERES: tuple[str, ...] = ("left", "right")
#: ``AnatomicalStructurePrimary`` of each hemisphere in GIFTI metadata.
GIFTI_STRUCTURES = dict(zip(HEMISPHERES, HEMISPHERE_STRUCTURES))
#: Prefix of a surface ROI's name.
HEMISPHERE_PREFIX = {"left": "L", "right": "R"}
ANNOT_SUFFIXES = (".annot",)
GIFTI_SUFFIXES = (".gii",)
NIFTI_SUFFIXES = (".nii", ".nii.gz")
LOOKUP_SUFFIXES = (".tsv",)
# Names that say a label-0 region is background; any other name warns that it is dropped.
_BACKGROUND_WORDS = ("unknown", "???", "background", "medial", "wall", "none", "unlabel",
                     "unassigned", "unused", "clear label")
# Hemisphere stated by a file name: lh./rh. (FreeSurfer), hemi-L/R (BIDS), .L./.R. (HCP).
_NAME_HEMISPHERE = (
    (re.compile(r"^lh[._]|[._-]hemi-L[._]|\.L\.", re.IGNORECASE), "left"),
    (re.compile(r"^rh[._]|[._-]hemi-R[._]|\.R\.", re.IGNORECASE), "right"),
)


# -- ROI sets -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Roi:
    """One region of interest.

    Parameters
    ----------
    name : str
        Name shown in tables (``"L precentral"``, ``"label 7"``, ``"shared L 1"``).
    indices : ndarray of int64
        Sorted indices of its voxels (response columns).
    label : int or None
        Its value in the label file; None for simulated regions.
    hemisphere : str or None
        ``"left"`` or ``"right"`` on surfaces; None in volumes.
    """

    name: str
    indices: np.ndarray
    label: int | None = None
    hemisphere: str | None = None

    @property
    def size(self) -> int:
        """Number of voxels in the ROI."""
        return int(self.indices.size)


@dataclass(frozen=True)
class RoiSet:
    """Regions of interest over the voxels (or vertices) of one response space.

    ROIs may overlap. Voxels in no ROI are simply left out of every summary.

    Parameters
    ----------
    rois : tuple of Roi
        In table order: surfaces left hemisphere first, then by label value;
        volumes by label value; simulated regions in their ground-truth order.
    n_voxels : int
        Number of voxels of the response space (20 484 on fsaverage5).
    space : str
        ``"fsaverage5"`` or ``"volume"``.
    source : str
        What the ROIs were read from, in words.
    paths : tuple of Path
        The files read (label files, lookup table, brain mask).
    """

    rois: tuple[Roi, ...]
    n_voxels: int
    space: str
    source: str
    paths: tuple[Path, ...] = ()

    @property
    def names(self) -> list[str]:
        """ROI names, in table order."""
        return [roi.name for roi in self.rois]

    def __len__(self) -> int:
        return len(self.rois)

    def membership(self) -> np.ndarray:
        """Boolean matrix (n_rois, n_voxels): True where a voxel lies in an ROI."""
        matrix = np.zeros((len(self.rois), self.n_voxels), dtype=bool)
        for row, roi in zip(matrix, self.rois):
            row[roi.indices] = True
        return matrix


def rois_from_labels(labels: np.ndarray, names: Mapping[int, str], *, space: str, source: str,
                     paths: Sequence[str | Path] = ()) -> RoiSet:
    """Turn one integer label per voxel into an :class:`RoiSet`, one ROI per label value.

    Parameters
    ----------
    labels : ndarray of int, shape (n_voxels,)
        Values of :data:`UNLABELLED` and below belong to no ROI.
    names : mapping of int to str
        Name of each label; a label without one is named ``"label <k>"``.
    space, source, paths
        As in :class:`RoiSet`.

    Returns
    -------
    RoiSet
        ROIs in increasing label order; labels that no voxel carries give none.
    """
    labels = np.asarray(labels)
    return RoiSet(rois=tuple(_label_rois(labels, names)), n_voxels=len(labels), space=space,
                  source=source, paths=tuple(Path(p) for p in paths))


def _label_rois(labels: np.ndarray, names: Mapping[int, str], offset: int = 0,
                hemisphere: str | None = None) -> list[Roi]:
    """One ROI per label value of ``labels`` (indices shifted by ``offset``), in value order;
    on a hemisphere, names get its prefix (``"L "``, ``"R "``)."""
    prefix = "" if hemisphere is None else HEMISPHERE_PREFIX[hemisphere] + " "
    rois = []
    for value in np.unique(labels[labels > UNLABELLED]):
        value = int(value)
        indices = offset + np.flatnonzero(labels == value).astype(np.int64)
        rois.append(Roi(name=prefix + (names.get(value) or f"label {value}"), indices=indices,
                        label=value, hemisphere=hemisphere))
    return rois


# -- surfaces -----------------------------------------------------------------------------


def read_surface_labels(left: str | Path, right: str | Path) -> RoiSet:
    """ROIs on fsaverage5 from one label file per hemisphere.

    Each file is a GIFTI label file (``.label.gii``: one integer array and its
    label table) or a FreeSurfer annotation (``.annot``; its -1 entries,
    vertices without a colour-table entry, are unlabelled).

    Parameters
    ----------
    left, right : path-like
        The left hemisphere's file, then the right's.

    Returns
    -------
    RoiSet
        Over 20 484 vertices, left then right; one ROI per label and hemisphere.

    Raises
    ------
    BrainencInputError
        A file is missing, unreadable or of another kind, does not hold 10 242
        integer labels, or says (in its GIFTI ``AnatomicalStructurePrimary`` or
        its name: ``lh.``/``rh.``, ``hemi-L``/``hemi-R``, ``.L.``/``.R.``) that
        it is the other hemisphere.
    """
    paths = (Path(left), Path(right))
    if paths[0].resolve() == paths[1].resolve():
        raise BrainencInputError(paths[1], "is given for both hemispheres; expected the left "
                                           "hemisphere's label file, then the right's")
    rois = []
    for index, (path, hemi) in enumerate(zip(paths, HEMISPHERES)):
        labels, names = _read_hemisphere(path, hemi)
        # Each hemisphere's ROIs take the names of its own file's table.
        rois += _label_rois(labels, names, offset=index * HEMISPHERE_VERTICES, hemisphere=hemi)
    return RoiSet(rois=tuple(rois), n_voxels=2 * HEMISPHERE_VERTICES, space="fsaverage5",
                  source=f"{paths[0].name} + {paths[1].name}", paths=paths)


def _read_hemisphere(path: Path, hemi: str) -> tuple[np.ndarray, dict[int, str]]:
    """One hemisphere's labels (10 242 integers, unlabelled ≤ 0) and names."""
    if not path.is_file():
        raise BrainencInputError(path, f"{hemi} hemisphere label file not found")
    _check_name_hemisphere(path, hemi)
    if path.name.lower().endswith(ANNOT_SUFFIXES):
        labels, names = _read_annot(path)
    elif path.name.lower().endswith(GIFTI_SUFFIXES):
        labels, names = _read_gifti_labels(path, hemi)
    else:
        raise BrainencInputError(path, "unknown label file type; expected a GIFTI label file "
                                       "(.label.gii) or a FreeSurfer annotation (.annot)")
    if labels.shape != (HEMISPHERE_VERTICES,):
        raise BrainencInputError(
            path, f"holds {labels.size} labels, but an fsaverage5 hemisphere has "
                  f"{HEMISPHERE_VERTICES} vertices (labels on another mesh, e.g. fsaverage or "
                  "fsaverage6, must be resampled to fsaverage5 first)")
    _warn_if_zero_is_named(labels, names, path)
    return labels, names


def _check_name_hemisphere(path: Path, hemi: str) -> None:
    for pattern, stated in _NAME_HEMISPHERE:
        if stated != hemi and pattern.search(path.name):
            raise BrainencInputError(
                path, f"is given as the {hemi} hemisphere but its name says {stated}; expected "
                      "the left hemisphere's file first, then the right's")


def _read_annot(path: Path) -> tuple[np.ndarray, dict[int, str]]:
    from nibabel.freesurfer import read_annot

    try:
        labels, _, raw_names = read_annot(str(path))
    except Exception as error:  # nibabel raises several types for bad files
        raise BrainencInputError(
            path, f"cannot read the FreeSurfer annotation: truncated or corrupt ({error})") from error
    names = {index: name.decode("utf-8", "replace") if isinstance(name, bytes) else str(name)
             for index, name in enumerate(raw_names)}
    return np.asarray(labels, dtype=np.int64), names


def _read_gifti_labels(path: Path, hemi: str) -> tuple[np.ndarray, dict[int, str]]:
    image = open_gifti(path)
    _check_gifti_hemisphere(image, path, hemi)
    if len(image.darrays) != 1:
        raise BrainencInputError(
            path, f"holds {len(image.darrays)} data arrays; a label file needs exactly one "
                  "(one integer label per vertex)")
    values = np.asarray(image.darrays[0].data)
    if values.ndim == 2 and 1 in values.shape:
        values = values.reshape(-1)
    labels = _integer_labels(values, path, "the GIFTI label array")
    names = {int(key): str(name) for key, name in image.labeltable.get_labels_as_dict().items()
             if name is not None}
    unnamed = sorted(set(np.unique(labels[labels > UNLABELLED]).tolist()) - set(names))
    if names and unnamed:
        warn_input(f"{path}: labels {_short_list(unnamed)} are not in the file's label table; "
                   "they are named 'label <k>'")
    return labels, names


def _check_gifti_hemisphere(image, path: Path, hemi: str) -> None:
    """A file whose GIFTI metadata names the other hemisphere is an error."""
    metas = [image.meta] + [darray.meta for darray in image.darrays[:1]]
    stated = next((meta["AnatomicalStructurePrimary"] for meta in metas
                   if meta is not None and "AnatomicalStructurePrimary" in meta), None)
    other = GIFTI_STRUCTURES["right" if hemi == "left" else "left"]
    if stated == other:
        raise BrainencInputError(
            path, f"is given as the {hemi} hemisphere but its metadata says "
                  f"AnatomicalStructurePrimary={stated}; expected {GIFTI_STRUCTURES[hemi]} (the "
                  "left hemisphere's file first, then the right's)")


# -- volumes ------------------------------------------------------------------------------


def read_volume_labels(atlas: str | Path, mask: str | Path,
                       lookup: str | Path | None = None) -> RoiSet:
    """ROIs at the voxels of a brain mask from an integer NIfTI atlas.

    Voxels are the mask's nonzero voxels in C order, the response columns of
    a volume analysis (:func:`nilearn.masking.apply_mask`). An atlas on
    another grid than the mask (shape or affine) is resampled to the mask's
    grid with nearest-neighbour interpolation
    (:func:`nilearn.image.resample_to_img`), with a warning; mask voxels
    outside the atlas's field of view are unlabelled.

    Parameters
    ----------
    atlas : path-like
        3-D NIfTI image of integer labels (float storage of whole numbers is
        accepted); values ≤ 0 are unlabelled.
    mask : path-like
        The analysis's brain mask (``TransferResult.mask_path``).
    lookup : path-like, optional
        Tab-separated table with ``index`` and ``name`` columns (other
        columns are ignored), as BIDS ``dseg.tsv`` files. By default the
        sidecar ``<atlas name>.tsv`` beside the atlas is read if it exists;
        without a table, ROIs are named ``"label <k>"``.

    Returns
    -------
    RoiSet
        One ROI per label that at least one mask voxel carries.

    Raises
    ------
    BrainencInputError
        A file is missing or unreadable, the atlas is not 3-D or holds values
        that are not whole numbers, the mask is not a usable mask, no mask
        voxel carries a label, or the lookup table lacks its columns or has a
        bad or repeated index.
    """
    atlas, mask = Path(atlas), Path(mask)
    inside, mask_image = _read_mask(mask)
    atlas_image = _read_atlas(atlas)
    if atlas_image.shape[:3] != inside.shape or not np.allclose(atlas_image.affine, mask_image.affine,
                                                                atol=1e-4):
        atlas_image = _resample_nearest(atlas_image, mask_image, atlas, mask)
    data = np.asanyarray(atlas_image.dataobj).reshape(atlas_image.shape[:3])
    labels = np.rint(data[inside]).astype(np.int64)
    if not (labels > UNLABELLED).any():
        raise BrainencInputError(
            atlas, f"no voxel of the brain mask {mask} carries a label; is the atlas in the "
                   "mask's space?")
    lookup = _sidecar_lookup(atlas) if lookup is None else Path(lookup)
    names = read_lookup_table(lookup) if lookup is not None else {}
    if lookup is not None:
        unnamed = sorted(set(np.unique(labels[labels > UNLABELLED]).tolist()) - set(names))
        if unnamed:
            warn_input(f"{lookup}: labels {_short_list(unnamed)} of {atlas.name} are not in the "
                       "lookup table; they are named 'label <k>'")
        _warn_if_zero_is_named(labels, names, lookup)
    paths = (atlas, mask) if lookup is None else (atlas, lookup, mask)
    return rois_from_labels(labels, names, space="volume", source=atlas.name, paths=paths)


def read_lookup_table(path: str | Path) -> dict[int, str]:
    """Label names from a TSV with ``index`` and ``name`` columns.

    Empty names and ``n/a`` give no name (the label is then ``"label <k>"``).

    Raises
    ------
    BrainencInputError
        The file is missing or unreadable, lacks a column, or an index is not
        an integer or appears twice.
    """
    from brainenc.io.layouts._common import read_tsv

    path = Path(path)
    if not path.is_file():
        raise BrainencInputError(path, "label lookup table not found")
    header, rows = read_tsv(path)
    missing = [column for column in ("index", "name") if column not in header]
    if missing:
        raise BrainencInputError(path, f"the lookup table lacks the column(s) {missing}; "
                                       f"expected 'index' and 'name', found {header}")
    names: dict[int, str] = {}
    for line, row in rows:
        try:
            index = int(row["index"])
        except ValueError:
            raise BrainencInputError(path, f"line {line}: index {row['index']!r} is not an "
                                           "integer") from None
        if index in names:
            raise BrainencInputError(path, f"line {line}: index {index} appears twice")
        name = row["name"]
        names[index] = "" if name.lower() == "n/a" else name
    return names


def _sidecar_lookup(atlas: Path) -> Path | None:
    stem = atlas.name[: -len(".nii.gz")] if atlas.name.endswith(".nii.gz") else atlas.stem
    candidate = atlas.with_name(stem + ".tsv")
    return candidate if candidate.is_file() else None


def _read_mask(path: Path) -> tuple[np.ndarray, nib.Nifti1Image]:
    """The mask as booleans (nilearn's rule: nonzero voxels) and a 3-D image on its grid."""
    from nilearn.masking import load_mask_img

    if not path.is_file():
        raise BrainencInputError(path, "brain mask not found")
    try:
        inside, affine = load_mask_img(str(path))
    except (ValueError, TypeError) as error:
        raise BrainencInputError(path, f"not a usable brain mask ({error})") from error
    except Exception as error:  # nibabel raises several types for bad files
        raise BrainencInputError(
            path, f"cannot read the brain mask: truncated or corrupt ({error})") from error
    inside = np.asarray(inside, dtype=bool)
    return inside, nib.Nifti1Image(inside.astype(np.uint8), affine)


def _read_atlas(path: Path) -> nib.Nifti1Image:
    if not path.is_file():
        raise BrainencInputError(path, "atlas not found")
    try:
        image = nib.load(str(path))
        data = np.asanyarray(image.dataobj)
    except Exception as error:  # nibabel raises several types for bad files
        raise BrainencInputError(
            path, f"cannot read the atlas as NIfTI: truncated or corrupt ({error})") from error
    if data.ndim == 4 and data.shape[3] == 1:
        data = data[..., 0]
    if data.ndim != 3:
        raise BrainencInputError(
            path, f"an atlas must be a 3-D image of integer labels, this one has shape {data.shape} "
                  "(a 4-D probabilistic atlas must be turned into labels first)")
    labels = _integer_labels(data, path, "the atlas")
    return nib.Nifti1Image(labels.astype(np.int32), image.affine)


def _resample_nearest(atlas_image, mask_image, atlas: Path, mask: Path) -> nib.Nifti1Image:
    from nilearn.image import resample_to_img

    warn_input(f"{atlas}: the atlas's grid (shape {atlas_image.shape}) differs from the brain "
               f"mask {mask} (shape {mask_image.shape}); the atlas is resampled to the mask's "
               "grid with nearest-neighbour interpolation")
    return resample_to_img(atlas_image, mask_image, interpolation="nearest",
                           force_resample=True, copy_header=True)


# -- simulated subject ---------------------------------------------------------------------


def ground_truth_rois(ground_truth: GroundTruth) -> RoiSet:
    """One ROI per region of a simulated subject's ground truth.

    A region is named by its component, hemisphere and rank among the
    regions of that component in that hemisphere (``"shared L 1"``,
    ``"vision R 2"``); its voxels are those that take that component from it
    (``region_of``). Regions of a pair overlap, so a vertex of a mixed
    category (``shared+language``...) lies in two ROIs.

    Parameters
    ----------
    ground_truth : GroundTruth
        Or any object with ``region_of``, ``region_category``, ``region_hemi``
        and ``category_names`` as in :class:`brainenc.simulate.truth.GroundTruth`.

    Returns
    -------
    RoiSet
    """
    from brainenc.simulate.cortex import COMPONENTS

    region_of = np.asarray(ground_truth.region_of)
    names = tuple(ground_truth.category_names)
    counts: dict[tuple[str, str], int] = {}
    rois = []
    for index, (code, hemi) in enumerate(zip(ground_truth.region_category, ground_truth.region_hemi)):
        component = names[int(code)]
        counts[component, hemi] = counts.get((component, hemi), 0) + 1
        members = np.flatnonzero(region_of[:, COMPONENTS.index(component)] == index)
        rois.append(Roi(name=f"{component} {HEMISPHERE_PREFIX[hemi]} {counts[component, hemi]}",
                        indices=members.astype(np.int64), hemisphere=hemi))
    path = getattr(ground_truth, "path", None)
    return RoiSet(rois=tuple(rois), n_voxels=len(region_of), space="fsaverage5",
                  source="ground truth" + (f" {path}" if path else ""),
                  paths=(Path(path),) if path else ())


# -- one entry point for a result ----------------------------------------------------------


def load_rois(paths: Sequence[str | Path], result: TransferResult) -> RoiSet:
    """The ROIs named by ``paths``, read for the response space of ``result``.

    Accepted: two surface label files (left then right: ``.label.gii`` or
    ``.annot``); a NIfTI atlas, optionally followed by its lookup ``.tsv``
    (volume results; the mask is ``result.mask_path``); a simulated subject's
    ``ground_truth.npz`` or its dataset folder.

    Raises
    ------
    BrainencInputError
        Files of another kind or number, a volume atlas for a result that is
        not a volume or whose mask is not recorded, or any error of the readers.
    """
    paths = [Path(p) for p in paths]
    kinds = [_file_kind(p) for p in paths]
    if kinds == ["surface", "surface"]:
        return read_surface_labels(*paths)
    if kinds in (["volume"], ["volume", "lookup"]):
        if result.space not in VOLUME_SPACES or not result.mask_path:
            raise BrainencInputError(
                paths[0], f"a volume atlas needs a volume result with its brain mask; this result's "
                          f"space is '{result.space}' (mask: {result.mask_path or 'none recorded'})")
        lookup = paths[1] if len(paths) == 2 else None
        return read_volume_labels(paths[0], result.mask_path, lookup)
    if kinds == ["ground_truth"]:
        from brainenc.simulate.truth import load_ground_truth

        return ground_truth_rois(load_ground_truth(paths[0]))
    if kinds == ["surface"]:
        raise BrainencInputError(paths[0], "surface labels need two files: the left hemisphere's, "
                                           "then the right's")
    raise BrainencInputError(
        paths[0] if paths else None,
        f"cannot use {[str(p) for p in paths]} as ROI labels; expected two surface label files "
        "(left then right, .label.gii or .annot), a NIfTI atlas (.nii/.nii.gz) optionally "
        "followed by its lookup .tsv, or a simulated subject's ground_truth.npz")


def _file_kind(path: Path) -> str:
    name = path.name.lower()
    if path.is_dir() or name.endswith(".npz"):
        return "ground_truth"
    for kind, suffixes in (("surface", ANNOT_SUFFIXES + GIFTI_SUFFIXES), ("volume", NIFTI_SUFFIXES),
                           ("lookup", LOOKUP_SUFFIXES)):
        if name.endswith(suffixes):
            return kind
    return "other"


# -- summaries ----------------------------------------------------------------------------


@dataclass(frozen=True)
class RoiRow:
    """Scores of one direction in one ROI.

    Only voxels with a defined (finite) r count. NaN marks what is undefined:
    means and maxima of no voxel, fractions of an untested direction, and
    ``fraction_transfer`` of a within-modality direction.

    Parameters
    ----------
    roi, direction : str
    size : int
        Voxels in the ROI.
    n_voxels : int
        Voxels of the ROI with a defined r.
    mean_r, median_r, max_r : float
    fraction_significant : float
        Fraction of ``n_voxels`` in the direction's FDR mask (``significant``).
    mean_r_significant : float
        Mean r of those voxels.
    fraction_transfer : float
        Cross-modal directions: fraction of ``n_voxels`` in the transfer map
        (``transfer_significant``).
    """

    roi: str
    direction: str
    size: int
    n_voxels: int
    mean_r: float
    median_r: float
    fraction_significant: float
    mean_r_significant: float
    max_r: float
    fraction_transfer: float = math.nan

    def as_dict(self) -> dict:
        """The row as strict-JSON values (NaN → None)."""
        return {key: None if isinstance(value, float) and not math.isfinite(value) else value
                for key, value in asdict(self).items()}


def roi_table(result: TransferResult, rois: RoiSet) -> list[RoiRow]:
    """Per ROI and per direction of ``result``, the scores of its voxels.

    FDR masks are those of the whole analysis (``significant`` and
    ``transfer_significant``), not recomputed within each ROI.

    Parameters
    ----------
    result : TransferResult
    rois : RoiSet
        Over the same voxels as ``result``.

    Returns
    -------
    list of RoiRow
        ROI by ROI, each with the directions in :data:`brainenc.results.DIRECTIONS` order.

    Raises
    ------
    BrainencInputError
        The ROIs cover another number of voxels or another space than ``result``.
    """
    check_rois(result, rois)
    directions = [d for d in DIRECTIONS if d in result.r]
    tested = {d: _tested(result.pvalues.get(d)) for d in directions}
    transfer_tested = {d: _tested(result.transfer_pvalues.get(d)) for d in CROSS}
    rows = []
    for roi in rois.rois:
        for direction in directions:
            rows.append(_roi_row(result, roi, direction, tested[direction],
                                 transfer_tested.get(direction, False)))
    return rows


def _roi_row(result: TransferResult, roi: Roi, direction: str, tested: bool,
             transfer_tested: bool) -> RoiRow:
    r = np.asarray(result.r[direction], dtype=np.float64)[roi.indices]
    significant = np.asarray(result.significant[direction], dtype=bool)[roi.indices]
    # The FDR level only labels the summary; the masks are the analysis's own.
    summary = summarize_direction(direction, r, significant, 0.05)
    defined = r[np.isfinite(r)]
    fraction_transfer = math.nan
    if transfer_tested:
        in_map = np.asarray(result.transfer_significant[direction], dtype=bool)[roi.indices]
        fraction_transfer = summarize_direction(direction, r, in_map, 0.05).fraction_significant
    return RoiRow(
        roi=roi.name, direction=direction, size=roi.size, n_voxels=summary.n_voxels,
        mean_r=summary.mean_r, median_r=float(np.median(defined)) if defined.size else math.nan,
        fraction_significant=summary.fraction_significant if tested else math.nan,
        mean_r_significant=summary.mean_r_significant if tested else math.nan,
        max_r=summary.max_r, fraction_transfer=fraction_transfer,
    )


def _tested(pvalues) -> bool:
    """Whether a direction's test was run: it has at least one finite p-value."""
    return pvalues is not None and bool(np.isfinite(np.asarray(pvalues, dtype=np.float64)).any())


def check_rois(result: TransferResult, rois: RoiSet) -> None:
    """Raise unless ``rois`` cover the voxels of ``result``; warn when its space is unknown."""
    where = rois.paths[0] if rois.paths else None
    if rois.n_voxels != result.n_voxels:
        raise BrainencInputError(
            where, f"the ROIs ({rois.source}) cover {rois.n_voxels} voxels but the result of "
                   f"{result.subject} / {result.feature_space} has {result.n_voxels}")
    if result.space == "unknown":
        warn_input(f"{rois.source}: the response space of {result.subject} / "
                   f"{result.feature_space} is unknown; ROIs in {rois.space} are assumed to match "
                   "its voxels")
    elif result.space != rois.space:
        raise BrainencInputError(
            where, f"the ROIs ({rois.source}) are in {rois.space} space but the result of "
                   f"{result.subject} / {result.feature_space} is in {result.space} space")


def roi_summary(rows: Sequence[RoiRow], rois: RoiSet) -> dict:
    """Strict-JSON content for a summary file: the ROI source, files and rows."""
    return {"source": rois.source, "space": rois.space,
            "files": [str(path.resolve()) for path in rois.paths],
            "rows": [row.as_dict() for row in rows]}


def roi_means(values: Mapping[str, np.ndarray], rois: RoiSet) -> dict[str, np.ndarray]:
    """Mean of per-voxel maps in each ROI, over the voxels where the map is finite.

    Parameters
    ----------
    values : mapping of str to ndarray of shape (..., n_voxels)
        Maps whose last axis is the voxel (e.g. ceilings, or PCA loadings as
        components × voxels).
    rois : RoiSet

    Returns
    -------
    dict of str to ndarray of shape (..., n_rois)
        NaN where an ROI has no finite value.
    """
    means = {}
    for key, array in values.items():
        array = np.asarray(array, dtype=np.float64)
        if array.shape[-1:] != (rois.n_voxels,):
            raise ValueError(f"{key!r} has shape {array.shape}; its last axis must be the "
                             f"{rois.n_voxels} voxels of the ROIs ({rois.source})")
        out = np.full(array.shape[:-1] + (len(rois),), np.nan)
        for i, roi in enumerate(rois.rois):
            part = array[..., roi.indices]
            finite = np.isfinite(part)
            count = finite.sum(axis=-1)
            total = np.where(finite, part, 0.0).sum(axis=-1)
            out[..., i] = np.where(count > 0, total / np.maximum(count, 1), np.nan)
        means[key] = out
    return means


# -- tables -------------------------------------------------------------------------------

_COLUMNS = ("ROI", "direction", "voxels", "mean r", "median r", "significant",
            "mean r (significant)", "max r", "transfer map")


def _cells(row: RoiRow) -> list[str]:
    return [row.roi, direction_label(row.direction), str(row.n_voxels), format_r(row.mean_r),
            format_r(row.median_r), format_fraction(row.fraction_significant),
            format_r(row.mean_r_significant), format_r(row.max_r),
            format_fraction(row.fraction_transfer)]


def format_roi_table(rows: Sequence[RoiRow]) -> str:
    """A plain-text table of ``rows``, one line per ROI and direction ("–" for NaN)."""
    lines = [list(_COLUMNS)] + [_cells(row) for row in rows]
    widths = [max(len(line[i]) for line in lines) for i in range(len(_COLUMNS))]
    text = ["  ".join(cell.ljust(w) if i < 2 else cell.rjust(w)
                      for i, (cell, w) in enumerate(zip(line, widths))).rstrip() for line in lines]
    text.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(text)


def roi_table_html(rows: Sequence[RoiRow]) -> str:
    """An HTML ``<table>`` of ``rows``: one block of rows per ROI, cross-modal rows marked
    with the class ``cross`` ("–" for NaN)."""
    header = "".join(f"<th class='label'>{html.escape(c)}</th>" if i < 2
                     else f"<th>{html.escape(c)}</th>" for i, c in enumerate(_COLUMNS))
    body = []
    for _, group in itertools.groupby(rows, key=lambda row: row.roi):
        group = list(group)
        for index, row in enumerate(group):
            cells = [html.escape(cell) for cell in _cells(row)]
            roi_cell = f"<th class='label' rowspan='{len(group)}'>{cells[0]}</th>" if index == 0 else ""
            kind = "cross" if row.direction in CROSS else "within"
            body.append(f"<tr class='{kind}'>{roi_cell}<td class='label'>{cells[1]}</td>"
                        + "".join(f"<td>{cell}</td>" for cell in cells[2:]) + "</tr>")
    return f"<table class='rois'><tr>{header}</tr>" + "".join(body) + "</table>"


# -- checks -------------------------------------------------------------------------------


def _integer_labels(values: np.ndarray, path: Path, what: str) -> np.ndarray:
    """``values`` as int64, or an error naming ``path`` if they are not whole numbers."""
    values = np.asarray(values)
    if values.dtype.kind in "biu":
        return values.astype(np.int64)
    if values.dtype.kind != "f":
        raise BrainencInputError(path, f"{what} holds {values.dtype} values; expected integer labels")
    whole = np.isfinite(values) & (values == np.round(values))
    if not whole.all():
        raise BrainencInputError(
            path, f"{what} holds values that are not whole numbers (e.g. {values[~whole].flat[0]}); "
                  "expected integer labels (a probabilistic map must be turned into labels first)")
    return values.astype(np.int64)


def _warn_if_zero_is_named(labels: np.ndarray, names: Mapping[int, str], path: Path) -> None:
    """Label 0 is unlabelled; warn when the file names it like a real region."""
    name = names.get(0, "")
    if name and (labels == 0).any() and not any(w in name.lower() for w in _BACKGROUND_WORDS):
        warn_input(f"{path}: label 0 is named {name!r}; label 0 always means unlabelled, so its "
                   f"{int((labels == 0).sum())} voxels belong to no ROI (renumber the labels to "
                   "keep it)")


def _short_list(values: Sequence[int], limit: int = 10) -> str:
    shown = ", ".join(str(v) for v in values[:limit])
    return shown + (f" and {len(values) - limit} more" if len(values) > limit else "")

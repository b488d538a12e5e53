"""Datasets described by a manifest: a tab-separated table with one row per run.

Columns (``*`` required): ``subject*``, ``run*``, ``modality*`` (story/movie),
``response*`` (``.hf5``/``.h5``, ``.npy``, ``.nii``/``.nii.gz`` or
``left.func.gii;right.func.gii``), ``stimulus*``, ``stimulus_file``, ``tr*``,
``trim_start``, ``trim_end``, ``stimulus_onset``, ``mask``, ``space``. Paths are
relative to the manifest. See ``docs/data_layouts.md``.
"""
from __future__ import annotations

import math
from pathlib import Path

from brainenc.errors import BrainencInputError
from brainenc.io.dataset import MODALITIES, Dataset, Run
from brainenc.io.layouts._common import (
    MISSING_CELLS,
    SPACES,
    read_tsv,
    scan_grid,
    sorted_runs,
)
from brainenc.io.responses import (
    FSAVERAGE5_HEMISPHERE_VERTICES,
    read_response_shape,
    response_format,
)

MANIFEST_NAME = "brainenc_manifest.tsv"
REQUIRED_COLUMNS = ("subject", "run", "modality", "response", "stimulus", "tr")
OPTIONAL_COLUMNS = ("stimulus_file", "trim_start", "trim_end", "stimulus_onset", "mask", "space")
GIFTI_SEPARATOR = ";"


def manifest_path(path: str | Path) -> Path | None:
    """The manifest that ``path`` designates (a ``.tsv`` file or a folder holding one), or None."""
    path = Path(path)
    if path.is_file() and path.suffix.lower() == ".tsv":
        return path
    if path.is_dir() and (path / MANIFEST_NAME).is_file():
        return path / MANIFEST_NAME
    return None


def read_manifest(path: str | Path) -> Dataset:
    """Read the runs listed in a manifest.

    Parameters
    ----------
    path : path-like
        A ``.tsv`` manifest, or a folder holding ``brainenc_manifest.tsv``.

    Returns
    -------
    Dataset
        Layout ``"manifest"``, preset ``"default"``, rooted at the manifest's
        folder (``feature_root`` ``<folder>/features``), runs sorted by subject
        then run. Response files hold every volume (``response_is_trimmed`` is
        False); the grid has as many volumes as the response file, volume ``k``
        at ``tr·k − stimulus_onset + tr/2``.

    Notes
    -----
    When ``space`` is empty it follows the file type: ``volume`` for NIfTI,
    ``fsaverage5`` for a GIFTI pair with 2 × 10 242 vertices, else ``unknown``.
    A ``stimulus_file`` that does not exist is an error, as is a missing
    response or mask file; each error names the manifest and the line.
    """
    manifest = manifest_path(path)
    if manifest is None:
        raise BrainencInputError(
            path, f"no manifest: expected a .tsv file or a folder holding {MANIFEST_NAME}"
        )
    header, rows = read_tsv(manifest)
    missing = [column for column in REQUIRED_COLUMNS if column not in header]
    if missing:
        raise BrainencInputError(
            manifest, f"missing required column(s) {missing}; the header has {header}"
        )
    if not rows:
        raise BrainencInputError(manifest, "the manifest lists no runs")
    base = manifest.parent
    runs = []
    seen: dict[tuple[str, str], int] = {}
    for line, row in rows:
        run = _row_to_run(row, line, manifest, base)
        key = (run.subject, run.name)
        if key in seen:
            raise BrainencInputError(
                manifest, f"line {line}: run {run.name!r} of subject {run.subject!r} is "
                f"already listed on line {seen[key]}"
            )
        seen[key] = line
        runs.append(run)
    return Dataset(
        root=base, layout="manifest", runs=sorted_runs(runs), preset="default",
        feature_root=base / "features", meta={"manifest": manifest},
    )


def _row_to_run(row: dict[str, str], line: int, manifest: Path, base: Path) -> Run:
    def fail(problem: str):
        raise BrainencInputError(manifest, f"line {line}: {problem}")

    def cell(column: str) -> str:
        value = row.get(column, "")
        return "" if value.lower() in MISSING_CELLS else value

    for column in REQUIRED_COLUMNS:
        if not cell(column):
            fail(f"'{column}' is empty")

    modality = cell("modality").lower()
    if modality not in MODALITIES:
        fail(f"unknown modality {cell('modality')!r}; expected 'story' or 'movie'")

    responses = tuple(base / part.strip() for part in cell("response").split(GIFTI_SEPARATOR)
                      if part.strip())
    for response in responses:
        if not response.is_file():
            fail(f"response file not found: {response}")
    kinds = {response_format(response) for response in responses}
    if None in kinds or len(kinds) != 1:
        fail(f"unsupported response {cell('response')!r}: expected .hf5/.h5, .npy, "
             ".nii/.nii.gz or two .func.gii separated by ';'")
    kind = kinds.pop()
    if kind == "gifti" and len(responses) != 2:
        fail(f"GIFTI responses need two files 'left.func.gii;right.func.gii', got {len(responses)}")
    if kind != "gifti" and len(responses) != 1:
        fail(f"expected one response file, got {len(responses)}")

    mask = base / cell("mask") if cell("mask") else None
    if mask is not None and not mask.is_file():
        fail(f"mask file not found: {mask}")
    if kind == "nifti" and mask is None:
        fail("NIfTI responses need a 'mask' (brain mask) column value")

    stimulus_path = base / cell("stimulus_file") if cell("stimulus_file") else None
    if stimulus_path is not None and not stimulus_path.is_file():
        fail(f"stimulus file not found: {stimulus_path}")

    tr = _number(cell("tr"), "tr", fail)
    if tr <= 0:
        fail(f"'tr' must be positive, got {tr}")
    onset = _number(cell("stimulus_onset") or "0", "stimulus_onset", fail)
    trim_start = _count(cell("trim_start") or "0", "trim_start", fail)
    trim_end = _count(cell("trim_end") or "0", "trim_end", fail)

    try:
        n_volumes, n_columns = read_response_shape(responses, mask)
    except BrainencInputError as error:
        raise BrainencInputError(
            error.path, f"{error.problem} (run on line {line} of {manifest.name})"
        ) from error
    if n_volumes - trim_start - trim_end <= 0:
        fail(f"the response has {n_volumes} volumes; none are left after trimming "
             f"{trim_start} + {trim_end}")

    if cell("space"):
        space = cell("space")
        if space not in SPACES:
            fail(f"unknown space {space!r}; expected one of {SPACES}")
    elif kind == "nifti":
        space = "volume"
    elif kind == "gifti" and n_columns == 2 * FSAVERAGE5_HEMISPHERE_VERTICES:
        space = "fsaverage5"
    else:
        space = "unknown"

    return Run(
        subject=cell("subject"),
        name=cell("run"),
        modality=modality,
        stimulus=cell("stimulus"),
        stimulus_path=stimulus_path,
        tr_grid=scan_grid(tr, n_volumes, onset),
        trim_start=trim_start,
        trim_end=trim_end,
        response_paths=responses,
        mask_path=mask,
        space=space,
        response_is_trimmed=False,
    )


def _number(text: str, column: str, fail) -> float:
    try:
        value = float(text)
    except ValueError:
        fail(f"'{column}' must be a number, got {text!r}")
    if not math.isfinite(value):
        fail(f"'{column}' must be finite, got {text!r}")
    return value


def _count(text: str, column: str, fail) -> int:
    try:
        value = int(text)
    except ValueError:
        fail(f"'{column}' must be a non-negative whole number, got {text!r}")
    if value < 0:
        fail(f"'{column}' must be a non-negative whole number, got {text!r}")
    return value

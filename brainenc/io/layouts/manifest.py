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

from brainenc.errors import BrainencInputError, warn_input
from brainenc.io.dataset import MODALITIES, Dataset, Run
from brainenc.io.layouts._common import (
    KIND_MODALITY,
    MISSING_CELLS,
    SPACES,
    check_tr,
    read_tsv,
    scan_grid,
    sorted_runs,
    stimulus_kind,
)
from brainenc.io.responses import (
    FSAVERAGE5_HEMISPHERE_VERTICES,
    check_response_space,
    read_response_shapes,
    response_format,
)

MANIFEST_NAME = "brainenc_manifest.tsv"
REQUIRED_COLUMNS = ("subject", "run", "modality", "response", "stimulus", "tr")
OPTIONAL_COLUMNS = ("stimulus_file", "trim_start", "trim_end", "stimulus_onset", "mask", "space")
KNOWN_COLUMNS = REQUIRED_COLUMNS + OPTIONAL_COLUMNS
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
    A ``stimulus_file`` that does not exist is an error, as are a missing
    response or mask file, a ``tr`` outside 0.1–10 s, a row with more or fewer
    cells than the header, a duplicate run, a ``stimulus_file`` of the other
    modality and a ``space`` of ``fsaverage5`` whose response does not hold
    2 × 10 242 columns; each error names the manifest and the line.

    Warns (:class:`~brainenc.errors.BrainencInputWarning`) about columns that
    are not read, rows with no ``stimulus_onset`` (0 s is assumed: write 0
    where the stimulus began with the first volume) and negative onsets.
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
    unknown = [column for column in header if column not in KNOWN_COLUMNS]
    if unknown:
        warn_input(f"{manifest}: column(s) {unknown} are not read; known columns are "
                   f"{list(KNOWN_COLUMNS)}")
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
    _warn_onsets(manifest, rows)
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
    implied = KIND_MODALITY.get(stimulus_kind(stimulus_path)) if stimulus_path else None
    if implied not in (None, modality):
        fail(f"modality is {modality!r} but stimulus_file {cell('stimulus_file')!r} is a "
             f"{implied} stimulus")

    try:
        tr = check_tr(cell("tr"), manifest, "'tr'")
    except BrainencInputError as error:
        fail(error.problem)
    onset = _number(cell("stimulus_onset") or "0", "stimulus_onset", fail)
    trim_start = _count(cell("trim_start") or "0", "trim_start", fail)
    trim_end = _count(cell("trim_end") or "0", "trim_end", fail)

    try:
        shapes = read_response_shapes(responses, mask)
    except BrainencInputError as error:
        raise BrainencInputError(
            error.path, f"{error.problem} (run on line {line} of {manifest.name})"
        ) from error
    n_volumes, n_columns = shapes[0][0], sum(columns for _, columns in shapes)
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

    run = Run(
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
        space_source=manifest if cell("space") else None,
    )
    try:
        check_response_space(run, n_columns, [columns for _, columns in shapes])
    except BrainencInputError as error:
        fail(error.problem)
    return run


def _warn_onsets(manifest: Path, rows: list[tuple[int, dict[str, str]]]) -> None:
    """One warning for rows without an onset, one for negative onsets (rows already checked)."""
    missing, negative = [], []
    for line, row in rows:
        text = row.get("stimulus_onset", "")
        if text.lower() in MISSING_CELLS:
            missing.append(line)
        elif float(text) < 0:
            negative.append(f"line {line}: {float(text):g} s")
    if missing:
        where = ("the manifest has no 'stimulus_onset' column" if rows and
                 "stimulus_onset" not in rows[0][1] else f"lines {missing} have no value")
        warn_input(
            f"{manifest}: stimulus onset 0 s assumed for {len(missing)} run(s) ({where}), i.e. "
            "each stimulus is taken to start with the first volume; if it did not, every TR "
            "is misaligned. Fix: fill 'stimulus_onset' (seconds after the first volume; 0 "
            "when the stimulus began with it)"
        )
    if negative:
        warn_input(
            f"{manifest}: negative stimulus_onset ({'; '.join(negative)}), i.e. the stimulus "
            "began before the first volume; check the sign (seconds from the first volume "
            "to the stimulus start)"
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

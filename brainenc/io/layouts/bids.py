"""BIDS datasets with fMRIPrep derivatives.

::

    DIR/sub-01/[ses-1/]func/sub-01_task-<task>[_run-<n>]_events.tsv    optional
    DIR/derivatives/fmriprep/sub-01/[ses-1/]func/
        ..._hemi-L_space-fsaverage5_bold.func.gii  (and hemi-R)
        ..._space-<vol>_desc-preproc_bold.nii.gz  with  ..._space-<vol>_desc-brain_mask.nii.gz
        ..._bold.json                                RepetitionTime
    DIR/stimuli/<stimulus>.TextGrid | <stimulus>_frames.tsv | <stimulus>.mp4
    DIR/brainenc.json                                optional: prefer, trim_start, trim_end

See ``docs/data_layouts.md`` for the rules.
"""
from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import nibabel as nib

from brainenc.errors import BrainencInputError, warn_input
from brainenc.io.dataset import Dataset, Run
from brainenc.io.layouts._common import (
    KIND_MODALITY,
    MISSING_CELLS,
    TR_UNITS,
    check_tr,
    read_json_object,
    read_tsv,
    scan_grid,
    sorted_runs,
    stimulus_kind,
    stimulus_name,
    warn_unknown_keys,
)
from brainenc.io.responses import check_response_space, read_response_shapes

FMRIPREP_FOLDER = Path("derivatives") / "fmriprep"

#: Entities that identify a run; the others (space, hemi, desc, res, den...)
#: tell apart the outputs of one run.
RUN_ENTITIES = ("sub", "ses", "task", "acq", "ce", "rec", "dir", "run", "echo")

#: fsaverage meshes read as surfaces, in order of preference (``surface_space`` in
#: ``brainenc.json`` picks one).
SURFACE_SPACES = ("fsaverage5", "fsaverage6")
PREFERRED_VOLUME_SPACE = "MNI152NLin2009cAsym"
PREFER_CHOICES = ("surface", "volume")
CONFIG_KEYS = ("prefer", "surface_space", "trim_start", "trim_end")
#: NIfTI ``xyzt_units`` time units, as :func:`~brainenc.io.layouts._common.check_tr` units.
NIFTI_TIME_UNITS = {"sec": "s", "msec": "ms", "usec": "us"}


@dataclass(frozen=True)
class BidsName:
    """A BIDS file name split into entities, suffix and extension."""

    entities: dict[str, str]
    suffix: str | None
    extension: str


def parse_bids_name(filename: str) -> BidsName:
    """Split ``sub-01_task-x_run-1_bold.nii.gz`` into its parts, with nilearn's BIDS parser
    (:func:`nilearn.interfaces.bids.parse_bids_filename`).

    Entities are the ``key-value`` pieces in order; the suffix is a last piece
    without ``-`` (``bold``, ``mask``, ``events``) or None: the fMRIPrep 1.x
    surface names end with an entity (``..._hemi-L.func.gii``), which nilearn
    reads as a suffix and which is an entity here. The extension is lower-case,
    with its leading dot.
    """
    from nilearn.interfaces.bids import parse_bids_filename

    parsed = parse_bids_filename(filename)
    entities = dict(parsed["entities"])
    suffix = parsed["suffix"] or None
    if suffix is not None and "-" in suffix:
        key, value = suffix.split("-", 1)
        entities[key] = value
        suffix = None
    extension = f".{parsed['extension']}" if parsed["extension"] else ""
    return BidsName(entities, suffix, extension.lower())


@dataclass
class _RunFiles:
    """fMRIPrep outputs of one run, keyed by output variant (space, res, den...)."""

    directory: Path
    surfaces: dict = field(default_factory=lambda: defaultdict(dict))  # -> {"L": .., "R": ..}
    volumes: dict = field(default_factory=dict)  # -> bold path
    masks: dict = field(default_factory=dict)  # -> brain mask path
    sidecars: list = field(default_factory=list)

    def all_files(self) -> list[Path]:
        files = [p for pair in self.surfaces.values() for p in pair.values()]
        return sorted(files + list(self.volumes.values()) + list(self.masks.values()))


def read_bids(path: str | Path) -> Dataset:
    """Discover the runs of a BIDS dataset with fMRIPrep derivatives.

    Parameters
    ----------
    path : path-like
        The BIDS root (holding ``derivatives/fmriprep``).

    Returns
    -------
    Dataset
        Layout ``"bids"``, preset ``"default"``, runs sorted by subject then
        name; run names are the run's entities without ``sub``
        (``task-<task>[_run-<n>]``, with ``ses-`` first when present); subjects
        are the ``sub-`` values without the prefix.

    Notes
    -----
    The response of a run is its fsaverage5 surface pair when present, else
    its fsaverage6 pair, else its ``desc-preproc`` volume with the matching
    ``desc-brain`` mask (an ``MNI152NLin2009cAsym`` volume first when several
    exist), else another surface pair (space ``unknown``). In ``brainenc.json``,
    ``{"prefer": "volume"}`` puts the volume first and ``{"surface_space":
    "fsaverage6"}`` takes that mesh only. A volume's space is read from its
    ``space-`` entity: a template (``MNI...``) gives space ``volume``, which
    maps project onto fsaverage; any other (``T1w``) gives ``native_volume``,
    kept in the subject's space (NIfTI maps only). The number of volumes comes
    from the response file headers; a ``space-fsaverage5`` pair must hold
    10 242 vertices per hemisphere, a ``space-fsaverage6`` pair 40 962. The stimulus path is the one the events file names
    (``stimuli/<stim_file>``), kept even when the file is absent (features may
    be precomputed). TRs outside 0.1–10 s are errors.

    A run without an events file with ``onset`` and ``stim_file`` columns
    takes onset 0 s; one :class:`~brainenc.errors.BrainencInputWarning` lists
    those runs, as another lists negative onsets.
    """
    root = Path(path)
    fmriprep = root / FMRIPREP_FOLDER
    if not fmriprep.is_dir():
        raise BrainencInputError(root, f"not a BIDS layout: {FMRIPREP_FOLDER} not found")
    config_path = root / "brainenc.json"
    config = read_json_object(config_path) if config_path.is_file() else {}
    warn_unknown_keys(config, CONFIG_KEYS, config_path)
    prefer = config.get("prefer", "surface")
    if prefer not in PREFER_CHOICES:
        raise BrainencInputError(
            config_path, f"'prefer' must be one of {PREFER_CHOICES}, got {prefer!r}"
        )
    trims = tuple(_config_trim(config, name, config_path) for name in ("trim_start", "trim_end"))
    surface_space = config.get("surface_space")
    if surface_space is not None and surface_space not in SURFACE_SPACES:
        raise BrainencInputError(
            config_path, f"'surface_space' must be one of {SURFACE_SPACES}, got {surface_space!r}")

    made = [
        _make_run(key, files, root, prefer, trims, surface_space)
        for key, files in sorted(_collect_run_files(fmriprep).items())
    ]
    if not made:
        raise BrainencInputError(
            fmriprep, "no fMRIPrep BOLD outputs found (sub-*/[ses-*/]func/*_bold.func.gii "
            "or *_desc-preproc_bold.nii.gz)"
        )
    _warn_onsets([stimulus for _, stimulus in made])
    runs = [run for run, _ in made]
    return Dataset(
        root=root, layout="bids", runs=sorted_runs(runs), preset="default",
        feature_root=root / "features", meta={"fmriprep": fmriprep, "config": config},
    )


def _config_trim(config: dict, name: str, path: Path) -> int:
    value = config.get(name, 0)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0 or (
        isinstance(value, float) and not value.is_integer()
    ):
        raise BrainencInputError(path, f"{name!r} must be a non-negative whole number, got {value!r}")
    return int(value)


def _collect_run_files(fmriprep: Path) -> dict[tuple, _RunFiles]:
    runs: dict[tuple, _RunFiles] = {}
    func_dirs = sorted(fmriprep.glob("sub-*/func")) + sorted(fmriprep.glob("sub-*/ses-*/func"))
    for func_dir in func_dirs:
        for file in sorted(func_dir.iterdir()):
            if not file.is_file():
                continue
            name = parse_bids_name(file.name)
            entities = name.entities
            if "sub" not in entities or "task" not in entities:
                continue
            key = tuple((k, entities[k]) for k in RUN_ENTITIES if k in entities)
            variant = tuple((k, v) for k, v in entities.items()
                            if k not in RUN_ENTITIES and k not in ("desc", "hemi"))
            is_volume = name.extension in (".nii", ".nii.gz")
            # fMRIPrep 1.x named surfaces without the _bold suffix.
            if name.extension == ".func.gii" and name.suffix in ("bold", None) \
                    and entities.get("hemi") in ("L", "R"):
                files = runs.setdefault(key, _RunFiles(func_dir))
                _add_once(files.surfaces[variant], entities["hemi"], file)
            elif is_volume and name.suffix == "bold" and entities.get("desc") == "preproc":
                _add_once(runs.setdefault(key, _RunFiles(func_dir)).volumes, variant, file)
            elif is_volume and name.suffix == "mask" and entities.get("desc") == "brain":
                _add_once(runs.setdefault(key, _RunFiles(func_dir)).masks, variant, file)
            elif name.extension == ".json" and name.suffix == "bold":
                runs.setdefault(key, _RunFiles(func_dir)).sidecars.append(file)
    # Keys holding only masks or sidecars are not runs.
    return {key: files for key, files in runs.items() if files.surfaces or files.volumes}


def _add_once(files: dict, key, file: Path) -> None:
    """``files[key] = file``, refusing a second file for the same run output."""
    if key in files:
        raise BrainencInputError(
            file, f"is a second file for the same run output as {files[key].name} "
            "(same entities, e.g. .nii beside .nii.gz); keep one"
        )
    files[key] = file


def _make_run(key: tuple, files: _RunFiles, root: Path, prefer: str, trims: tuple[int, int],
              surface_space: str | None = None) -> tuple[Run, "_Stimulus"]:
    entities = dict(key)
    paths, mask, space = _choose_response(files, prefer, surface_space)
    tr = _repetition_time(key, files, paths, root)
    stimulus = _find_stimulus(key, root, paths[0])
    shapes = read_response_shapes(paths, mask)
    n_volumes = shapes[0][0]
    trim_start, trim_end = trims
    if n_volumes - trim_start - trim_end <= 0:
        raise BrainencInputError(
            paths[0], f"has {n_volumes} volumes; none are left after trimming "
            f"{trim_start} + {trim_end} (brainenc.json)"
        )
    run = Run(
        subject=entities["sub"],
        name="_".join(f"{k}-{v}" for k, v in key if k != "sub"),
        modality=stimulus.modality,
        stimulus=stimulus.name,
        stimulus_path=stimulus.path,
        tr_grid=scan_grid(tr, n_volumes, stimulus.onset),
        trim_start=trim_start,
        trim_end=trim_end,
        response_paths=paths,
        mask_path=mask,
        space=space,
        response_is_trimmed=False,
        space_source=paths[0] if space in SURFACE_SPACES else None,
    )
    check_response_space(run, sum(columns for _, columns in shapes),
                         [columns for _, columns in shapes])
    return run, stimulus


def volume_space(template: str | None) -> str:
    """The response space of a volume whose ``space-`` entity is ``template``: ``volume``
    for a template space (``MNI152...``, ``MNI305``...), whose coordinates fsaverage
    shares, else ``native_volume`` (``T1w``, ``boldref``, none), which is not projected."""
    return "volume" if template is not None and template.upper().startswith("MNI") else "native_volume"


def _choose_response(files: _RunFiles, prefer: str, surface_space: str | None = None
                     ) -> tuple[tuple[Path, ...], Path | None, str]:
    pairs = {variant: pair for variant, pair in files.surfaces.items()
             if "L" in pair and "R" in pair}
    wanted = (surface_space,) if surface_space is not None else SURFACE_SPACES
    meshes = [((pair["L"], pair["R"]), None, mesh) for mesh in wanted
              for variant, pair in sorted(pairs.items()) if dict(variant).get("space") == mesh]
    other_surfaces = [(pair["L"], pair["R"]) for variant, pair in sorted(pairs.items())
                      if dict(variant).get("space") not in SURFACE_SPACES]

    def volume_rank(variant):
        space = dict(variant).get("space", "")
        return (space != PREFERRED_VOLUME_SPACE, not space.startswith("MNI152"), variant)

    volume_choice = [((files.volumes[variant],), files.masks[variant],
                      volume_space(dict(variant).get("space")))
                     for variant in sorted(files.volumes, key=volume_rank) if variant in files.masks]
    ordered = meshes + volume_choice if prefer == "surface" else volume_choice + meshes
    if surface_space is None:
        ordered += [(pair, None, "unknown") for pair in other_surfaces]
    if not ordered:
        found = ", ".join(p.name for p in files.all_files())
        expected = (f"a space-{surface_space} hemi-L/hemi-R pair ('surface_space' in brainenc.json)"
                    if surface_space is not None else "a hemi-L/hemi-R surface pair")
        raise BrainencInputError(
            files.directory,
            f"no usable response for this run among {found}: expected {expected} "
            "or a desc-preproc bold volume with its desc-brain mask",
        )
    return ordered[0]


def _raw_bids_files(key: tuple, root: Path, suffix: str) -> list[Path]:
    """Where the raw BIDS dataset may hold a run's ``<suffix>`` file, most specific first.

    The run's own file in ``sub-*/[ses-*/]func/``, then the files at the
    dataset root that BIDS inheritance applies to every subject.
    """
    entities = dict(key)
    raw_func = root / f"sub-{entities['sub']}"
    if "ses" in entities:
        raw_func = raw_func / f"ses-{entities['ses']}"
    run_prefix = "_".join(f"{k}-{v}" for k, v in key)
    task_level = "_".join(f"{k}-{v}" for k, v in key if k not in ("sub", "ses"))
    return list(dict.fromkeys([
        raw_func / "func" / f"{run_prefix}_{suffix}",
        root / f"{task_level}_{suffix}",
        root / f"task-{entities['task']}_{suffix}",
    ]))


def _sidecar_of(path: Path) -> Path:
    name = path.name
    extension = parse_bids_name(name).extension
    return path.with_name(name[: len(name) - len(extension)] + ".json")


def _repetition_time(key: tuple, files: _RunFiles, paths: tuple[Path, ...], root: Path) -> float:
    """The run's TR: every sidecar of the run must agree; raw-level sidecars are inherited."""
    stated = _stated_trs(list(dict.fromkeys([_sidecar_of(p) for p in paths]
                                            + sorted(files.sidecars))))
    if not stated:
        inherited = _stated_trs(_raw_bids_files(key, root, "bold.json"))
        stated = dict(list(inherited.items())[:1])
    if stated:
        values = list(stated.values())
        if max(values) - min(values) > 0.01 * min(values):
            listed = ", ".join(f"{path.name}: {tr:g} s" for path, tr in stated.items())
            raise BrainencInputError(
                paths[0], f"the sidecars of this run state different RepetitionTime values "
                f"({listed}); fix the wrong one")
        sidecar, tr = next(iter(stated.items()))
        _warn_if_header_disagrees(tr, sidecar, paths)
        return tr

    volumes = [p for p in paths if p.name.endswith((".nii", ".nii.gz"))] + sorted(
        files.volumes.values())
    for volume in dict.fromkeys(volumes):
        tr = _nifti_tr(volume)
        if tr is not None:
            return tr
    surfaces = [p for p in paths if p.name.endswith(".func.gii")] + sorted(
        p for pair in files.surfaces.values() for p in pair.values())
    for surface in dict.fromkeys(surfaces):
        tr = gifti_time_step(surface)
        if tr is not None:
            return tr
    raise BrainencInputError(
        paths[0], "no repetition time found: looked for RepetitionTime in the sidecar JSON "
        "files, the NIfTI header and the GIFTI TimeStep metadata"
    )


def _stated_trs(sidecars: list[Path]) -> dict[Path, float]:
    """``RepetitionTime`` of each existing sidecar that states one (a bad file is an error)."""
    stated = {}
    for sidecar in sidecars:
        if sidecar.is_file():
            content = read_json_object(sidecar)
            if "RepetitionTime" in content:
                stated[sidecar] = check_tr(content["RepetitionTime"], sidecar, "RepetitionTime")
    return stated


def _warn_if_header_disagrees(tr: float, sidecar: Path, paths: tuple[Path, ...]) -> None:
    """Warn when a response file's header (NIfTI pixdim, GIFTI TimeStep) states another TR."""
    for path in paths:
        header_tr = _header_tr(path)
        if header_tr is not None and abs(header_tr - tr) > 0.01 * tr:
            kind = "GIFTI TimeStep" if path.name.endswith(".func.gii") else "NIfTI header"
            warn_input(
                f"{sidecar}: RepetitionTime {tr:g} s but the {kind} of {path.name} gives "
                f"{header_tr:g} s; the sidecar's value is used"
            )


def _header_tr(path: Path) -> float | None:
    """The TR a response file's header states, or None (unreadable headers are reported later)."""
    if path.name.endswith(".func.gii"):
        try:
            return gifti_time_step(path)
        except BrainencInputError:
            return None
    if not path.name.endswith((".nii", ".nii.gz")):
        return None
    try:
        header = nib.load(str(path)).header
    except Exception:
        return None
    zooms = header.get_zooms()
    unit = NIFTI_TIME_UNITS.get(header.get_xyzt_units()[1])
    if len(zooms) < 4 or not zooms[3] > 0 or unit is None:
        return None
    return float(zooms[3]) * TR_UNITS[unit]


def _nifti_tr(path: Path) -> float | None:
    """The TR in the NIfTI header (``pixdim[4]`` in its time unit), or None when unset.

    A header without a time unit is read as seconds, with a warning.
    """
    try:
        header = nib.load(str(path)).header
    except Exception as error:
        raise BrainencInputError(path, f"cannot read the NIfTI header ({error})") from error
    zooms = header.get_zooms()
    if len(zooms) < 4 or not zooms[3] > 0:
        return None
    unit_name = header.get_xyzt_units()[1]
    unit = NIFTI_TIME_UNITS.get(unit_name)
    if unit is None:
        warn_input(
            f"{path}: the NIfTI header gives pixdim[4] = {float(zooms[3]):g} without a time "
            f"unit ({unit_name!r}); read as seconds. Add RepetitionTime (seconds) to the "
            "sidecar JSON to state the TR"
        )
        unit = "s"
    return check_tr(float(zooms[3]), path, f"pixdim[4] (time unit {unit_name!r})", unit)


def gifti_time_step(path: Path) -> float | None:
    """The ``TimeStep`` metadata of a GIFTI file in seconds (stored in ms), or None.

    Raises
    ------
    BrainencInputError
        The file cannot be read, or the TR is outside 0.1–10 s (a TimeStep
        written in seconds is named as such).
    """
    try:
        image = nib.load(str(path))
    except Exception as error:
        raise BrainencInputError(path, f"cannot read the GIFTI file ({error})") from error
    metas = [image.meta] + [darray.meta for darray in getattr(image, "darrays", [])[:1]]
    for meta in metas:
        if meta is not None and "TimeStep" in meta:
            return check_tr(meta["TimeStep"], path, "TimeStep (milliseconds)", "ms")
    return None


@dataclass(frozen=True)
class _Stimulus:
    name: str
    path: Path | None
    onset: float
    modality: str
    #: Why onset 0 s was assumed (the file and what it lacks); None when read.
    onset_fallback: str | None = None
    #: Where a negative onset was read (file and line); None otherwise.
    negative_onset: str | None = None


def _find_stimulus(key: tuple, root: Path, response: Path) -> _Stimulus:
    looked_for = _raw_bids_files(key, root, "events.tsv")
    events = next((p for p in looked_for if p.is_file()), None)
    header, rows = read_tsv(events) if events is not None else ([], [])
    chosen = _stimulus_row(events, header, rows) if events is not None else None
    modality = _events_modality(events, header, rows, chosen) if events is not None else None

    fallback = negative = None
    if chosen is not None:
        line, row = chosen
        file_name = row["stim_file"]
        onset = _events_onset(events, header, line, row)
        if onset < 0:
            negative = f"{events} line {line}: onset {onset:g} s"
        candidates = [root / "stimuli" / file_name, root / file_name]
        # The expected path is kept when absent: features may be precomputed.
        path = next((p for p in candidates if p.is_file()), candidates[0])
        kind, name, source = stimulus_kind(file_name), stimulus_name(file_name), events
    else:
        onset = 0.0
        fallback = (f"{looked_for[0]}: not found" if events is None else
                    f"{events}: no 'stim_file' column" if "stim_file" not in header else
                    f"{events}: no row with a 'stim_file' value")
        path = _stimulus_by_task(dict(key), root / "stimuli", response)
        kind, name, source = stimulus_kind(path), stimulus_name(path), path
    if modality is None:
        if kind is None:
            raise BrainencInputError(
                source, f"cannot tell whether stimulus {name!r} is a story or a movie: "
                "add a 'modality' column (story or movie) to the events file"
            )
        modality = KIND_MODALITY[kind]
    return _Stimulus(name=name, path=path, onset=onset, modality=modality,
                     onset_fallback=fallback, negative_onset=negative)


def _stimulus_row(events: Path, header: list[str], rows: list) -> tuple[int, dict] | None:
    """The events row naming the run's stimulus; several different stimuli are an error."""
    if "stim_file" not in header:
        return None
    named = [(line, row) for line, row in rows if row["stim_file"] not in MISSING_CELLS]
    distinct = list(dict.fromkeys(row["stim_file"] for _, row in named))
    if len(distinct) > 1:
        raise BrainencInputError(
            events, f"'stim_file' names {len(distinct)} different stimuli {distinct} (lines "
            f"{[line for line, _ in named]}); a run has one stimulus: split the run or keep "
            "one stim_file value"
        )
    return named[0] if named else None


def _events_onset(events: Path, header: list[str], line: int, row: dict) -> float:
    if "onset" not in header:
        raise BrainencInputError(events, "has a 'stim_file' column but no 'onset' column")
    try:
        onset = float(row["onset"])
    except ValueError:
        raise BrainencInputError(
            events, f"line {line}: onset {row['onset']!r} is not a number (seconds after the "
            "first volume)"
        ) from None
    if not math.isfinite(onset):
        raise BrainencInputError(events, f"line {line}: onset must be finite")
    return onset


def _events_modality(events: Path, header: list[str], rows: list, chosen) -> str | None:
    if "modality" not in header:
        return None
    values = ([chosen[1]["modality"]] if chosen is not None else []) + [
        row["modality"] for _, row in rows]
    modality = next((v for v in values if v not in MISSING_CELLS), None)
    if modality is None:
        return None
    modality = modality.lower()
    if modality not in KIND_MODALITY.values():
        raise BrainencInputError(
            events, f"unknown modality {modality!r}; expected 'story' or 'movie'"
        )
    return modality


def _warn_onsets(stimuli: list[_Stimulus]) -> None:
    """One warning for the runs whose onset was assumed, one for negative onsets."""
    assumed = [s.onset_fallback for s in stimuli if s.onset_fallback is not None]
    if assumed:
        warn_input(
            f"stimulus onset 0 s assumed for {len(assumed)} run(s), i.e. the stimulus is taken "
            "to start with the first volume; if it did not, every TR is misaligned:\n  "
            + "\n  ".join(assumed)
            + "\nFix: give each run an events.tsv with 'onset' (seconds after the first "
            "volume) and 'stim_file' columns."
        )
    negative = [s.negative_onset for s in stimuli if s.negative_onset is not None]
    if negative:
        warn_input(
            f"negative stimulus onset for {len(negative)} run(s), i.e. the stimulus began "
            "before the first volume (check the sign: onset is seconds from the first "
            "volume to the stimulus start):\n  " + "\n  ".join(negative)
        )


def _stimulus_by_task(entities: dict, stimuli: Path, response: Path) -> Path:
    names = [entities["task"]]
    if "run" in entities:
        names.insert(0, f"{entities['task']}_run-{entities['run']}")
    files = sorted(p for p in stimuli.iterdir() if p.is_file()) if stimuli.is_dir() else []
    for name in names:
        matches = [p for p in files if stimulus_kind(p) is not None and stimulus_name(p) == name]
        if len(matches) > 1:
            raise BrainencInputError(
                stimuli, f"several stimulus files for {name!r}: {[p.name for p in matches]}; "
                "name the right one in the run's events file (stim_file column)"
            )
        if matches:
            return matches[0]
    raise BrainencInputError(
        response, "no stimulus found for this run: no events file with a stim_file column, "
        f"and no stimuli/{{{', '.join(names)}}}.TextGrid|_frames.tsv|video file"
    )

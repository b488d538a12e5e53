"""The Huth story layout (OpenNeuro ds003020), extended with movie runs.

::

    DIR/derivative/                     (or derivatives/, or DIR is that folder)
        preprocessed_data/<SUBJ>/<run>.hf5   (or .h5; lower case)
        TextGrids/<story>.TextGrid
        respdict.json                   story -> volumes acquired
        brainenc.json                   optional: response space and movie runs

See ``docs/data_layouts.md`` for the timing conventions.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from brainenc.errors import BrainencInputError, warn_input
from brainenc.io.dataset import Dataset, Run
from brainenc.io.layouts._common import (
    check_onset,
    check_space,
    check_tr,
    read_json_object,
    scan_grid,
    sorted_runs,
    warn_unknown_keys,
)
from brainenc.timing import TRGrid, huth_story_grid

DERIVATIVE_NAMES = ("derivative", "derivatives")
RESPONSES_FOLDER = "preprocessed_data"
RESPONSE_SUFFIX = ".hf5"
#: Response suffixes read, matched exactly; other spellings (``.HF5``) are errors.
RESPONSE_SUFFIXES = (".hf5", ".h5")
#: Keys of ``brainenc.json`` and of one of its movie entries.
CONFIG_KEYS = ("space", "movies")
MOVIE_KEYS = ("frames", "video", "n_trs", "tr", "start", "trim_start", "trim_end")

#: Huth story conventions: volumes trimmed at the start and the end.
STORY_TRIM_START = 10
STORY_TRIM_END = 5

#: Defaults of a movie entry in ``brainenc.json``.
MOVIE_DEFAULTS = {"tr": 2.0, "start": 10.0, "trim_start": 10, "trim_end": 5}


@dataclass(frozen=True)
class _MovieSpec:
    grid: TRGrid
    trim_start: int
    trim_end: int
    stimulus_path: Path | None


#: The story held out for testing in the Huth lab's analyses (presented repeatedly in the
#: scanner); the default test story of a Huth-layout subject that has it.
HUTH_TEST_STORY = "wheretheressmoke"


def find_huth_derivative(root: str | Path) -> Path | None:
    """The ``derivative`` folder of a Huth layout rooted at ``root``, or None."""
    root = Path(root)
    for name in DERIVATIVE_NAMES:
        if (root / name / RESPONSES_FOLDER).is_dir():
            return root / name
    if (root / RESPONSES_FOLDER).is_dir():
        return root
    return None


def read_huth(path: str | Path) -> Dataset:
    """Discover the runs of a Huth-layout dataset.

    Parameters
    ----------
    path : path-like
        The dataset folder (holding ``derivative/`` or ``derivatives/``) or the
        ``derivative`` folder itself.

    Returns
    -------
    Dataset
        Layout ``"huth"``, preset ``"huth"``, runs sorted by subject then name,
        ``feature_root`` ``<path>/features``.

    Notes
    -----
    Story runs: every ``<run>.hf5`` (or ``.h5``) named in ``respdict.json``;
    with ``N = respdict[story]`` the grid is
    :func:`brainenc.timing.huth_story_grid` (``N − 5`` volumes), trimmed by 10
    and 5 volumes, and the file already holds the ``N − 20`` kept rows. The
    stimulus path is ``TextGrids/<story>.TextGrid``, kept even when the file is
    missing (features may be precomputed). Movie runs are declared under
    ``movies`` in ``brainenc.json``; the stimulus name of a movie is its key
    there and its stimulus path the declared ``frames``/``video`` file.

    A subject with a story run named :data:`HUTH_TEST_STORY` has it as its
    default test story (:meth:`~brainenc.io.dataset.Dataset.default_test_runs`);
    its other stories are then the training stories.

    A response suffix spelled in another case (``.HF5``) is an error. Warnings
    (:class:`~brainenc.errors.BrainencInputWarning`) name the stories and
    movies a subject has no response file for, files in ``preprocessed_data``
    that are not read, and unknown keys of ``brainenc.json``.
    """
    root = Path(path)
    derivative = find_huth_derivative(root)
    if derivative is None:
        raise BrainencInputError(
            root, f"not a Huth layout: looked for derivative/{RESPONSES_FOLDER}, "
            f"derivatives/{RESPONSES_FOLDER} and {RESPONSES_FOLDER}/"
        )
    respdict_path = derivative / "respdict.json"
    story_volumes = _read_respdict(respdict_path) if respdict_path.is_file() else {}
    config_path = derivative / "brainenc.json"
    config = read_json_object(config_path) if config_path.is_file() else {}
    warn_unknown_keys(config, CONFIG_KEYS, config_path)
    space = check_space(config.get("space", "unknown"), config_path)
    space_source = config_path if "space" in config else None
    movies = _read_movies(config.get("movies", {}), config_path, derivative)
    both = sorted(set(movies) & set(story_volumes))
    if both:
        raise BrainencInputError(
            config_path, f"{both} are declared as movies but are stories in {respdict_path.name}"
        )

    responses = derivative / RESPONSES_FOLDER
    found = _find_responses(responses)
    runs = []
    for (subject, name), response in sorted(found.items()):
        if name in story_volumes:
            runs.append(_story_run(subject, name, story_volumes[name], response, derivative,
                                   space, space_source))
        elif name in movies:
            spec = movies[name]
            runs.append(Run(
                subject=subject, name=name, modality="movie", stimulus=name,
                stimulus_path=spec.stimulus_path, tr_grid=spec.grid,
                trim_start=spec.trim_start, trim_end=spec.trim_end,
                response_paths=(response,), space=space, response_is_trimmed=True,
                space_source=space_source,
            ))
        else:
            where = (f"{respdict_path.name}" if respdict_path.is_file()
                     else f"{respdict_path.name} (not found)")
            raise BrainencInputError(
                response, f"run {name!r} is listed neither in {where} nor under 'movies' "
                f"in {config_path.name}"
            )
    if not runs:
        raise BrainencInputError(
            responses, f"no <SUBJECT>/<run>{RESPONSE_SUFFIX} response files"
        )
    _warn_missing_runs(responses, found, [*story_volumes, *movies], respdict_path, config_path)
    return Dataset(
        root=root, layout="huth", runs=sorted_runs(runs), preset="huth",
        feature_root=root / "features",
        meta={"derivative": derivative, "respdict": story_volumes, "config": config,
              "default_test_runs": {"story": [HUTH_TEST_STORY]}},
    )


def _find_responses(responses: Path) -> dict[tuple[str, str], Path]:
    """``(subject, run) -> response file`` under ``preprocessed_data``.

    Raises on a response suffix in another case and on two files for one run;
    warns about files that are not read.
    """
    found: dict[tuple[str, str], Path] = {}
    unread = []
    for entry in sorted(p for p in responses.iterdir() if not p.name.startswith(".")):
        if not entry.is_dir():
            unread.append(entry)
            continue
        for file in sorted(p for p in entry.iterdir() if not p.name.startswith(".")):
            suffix = next((x for x in RESPONSE_SUFFIXES if file.name.lower().endswith(x)), None)
            if suffix is None or not file.is_file():
                unread.append(file)
                continue
            if not file.name.endswith(suffix):
                raise BrainencInputError(
                    file, f"response suffix {file.name[-len(suffix):]!r} is not read: the Huth "
                    f"layout matches {RESPONSE_SUFFIXES} in lower case; rename it to "
                    f"{file.name[:-len(suffix)] + suffix}"
                )
            key = (entry.name, file.name[: -len(suffix)])
            if key in found:
                raise BrainencInputError(
                    file, f"run {key[1]!r} of subject {key[0]} has two response files: "
                    f"{found[key].name} and {file.name}; keep one"
                )
            found[key] = file
    if unread:
        warn_input(
            f"{responses}: {len(unread)} file(s) not read (the Huth layout reads "
            f"<SUBJECT>/<run>{RESPONSE_SUFFIX} files): " + ", ".join(str(p) for p in unread)
        )
    return found


def _warn_missing_runs(responses: Path, found: dict, declared: list[str],
                       respdict_path: Path, config_path: Path) -> None:
    """Warn, per subject, about declared stories and movies with no response file."""
    subjects = sorted({subject for subject, _ in found} | {
        p.name for p in responses.iterdir() if p.is_dir() and not p.name.startswith(".")})
    lines = []
    for subject in subjects:
        missing = [name for name in declared if (subject, name) not in found]
        if missing:
            lines.append(
                f"subject {subject}: no {responses / subject}/<run>{RESPONSE_SUFFIX} for "
                f"{len(missing)} run(s): {', '.join(missing)}"
            )
    if lines:
        warn_input(
            f"runs declared in {respdict_path} or {config_path} have no response file; "
            "they are left out:\n  " + "\n  ".join(lines)
        )


def _story_run(subject: str, story: str, n_volumes: int, response: Path,
               derivative: Path, space: str, space_source: Path | None) -> Run:
    return Run(
        subject=subject, name=story, modality="story", stimulus=story,
        stimulus_path=derivative / "TextGrids" / f"{story}.TextGrid",
        tr_grid=huth_story_grid(n_volumes), trim_start=STORY_TRIM_START,
        trim_end=STORY_TRIM_END, response_paths=(response,), space=space,
        response_is_trimmed=True, space_source=space_source,
    )


def _read_respdict(path: Path) -> dict[str, int]:
    volumes = {}
    for story, value in read_json_object(path).items():
        n = _whole_number(value, path, f"story {story!r}")
        # N − 5 grid volumes minus 10 + 5 trimmed must leave at least one row.
        if n - 5 - STORY_TRIM_START - STORY_TRIM_END <= 0:
            raise BrainencInputError(
                path, f"story {story!r} has {n} volumes; more than 20 are needed "
                "(N - 5 grid volumes, 10 and 5 of them trimmed)"
            )
        volumes[story] = n
    return volumes


def _read_movies(movies, config_path: Path, derivative: Path) -> dict[str, _MovieSpec]:
    if not isinstance(movies, dict):
        raise BrainencInputError(config_path, "'movies' must be an object {name: {...}}")
    specs = {}
    for name, entry in movies.items():
        what = f"movie {name!r}"
        if not isinstance(entry, dict):
            raise BrainencInputError(config_path, f"{what} must be an object")
        warn_unknown_keys(entry, MOVIE_KEYS, config_path, f"of {what}")
        if "n_trs" not in entry:
            raise BrainencInputError(config_path, f"{what} needs 'n_trs' (volumes of its TR grid)")
        settings = {**MOVIE_DEFAULTS, **entry}
        n_trs = _whole_number(settings["n_trs"], config_path, f"{what} 'n_trs'")
        tr = check_tr(settings["tr"], config_path, f"{what} 'tr'")
        start = _real_number(settings["start"], config_path, f"{what} 'start'")
        trim_start = _whole_number(settings["trim_start"], config_path, f"{what} 'trim_start'")
        trim_end = _whole_number(settings["trim_end"], config_path, f"{what} 'trim_end'")
        check_onset(start, config_path, f"{what} 'start'")
        if n_trs - trim_start - trim_end <= 0:
            raise BrainencInputError(
                config_path, f"{what}: {n_trs} volumes leave none after trimming "
                f"{trim_start} + {trim_end}"
            )
        if "frames" in entry and "video" in entry:
            raise BrainencInputError(config_path, f"{what} declares both 'frames' and 'video'")
        declared = entry.get("frames", entry.get("video"))
        # Kept even when missing: features may be precomputed, and extraction names it.
        stimulus_path = None if declared is None else derivative / str(declared)
        specs[str(name)] = _MovieSpec(
            grid=scan_grid(tr, n_trs, start), trim_start=trim_start, trim_end=trim_end,
            stimulus_path=stimulus_path,
        )
    return specs


def _whole_number(value, path: Path, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (
        isinstance(value, float) and not value.is_integer()
    ) or value < 0:
        raise BrainencInputError(path, f"{what} must be a non-negative whole number, got {value!r}")
    return int(value)


def _real_number(value, path: Path, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise BrainencInputError(path, f"{what} must be a number, got {value!r}")
    return float(value)

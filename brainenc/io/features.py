"""The feature store: precomputed features of each stimulus, one HDF5 file each.

A *feature space* is a folder ``<feature_root>/<name>/`` holding one file
``<stimulus>.hf5`` per stimulus with:

``data``
    float32 array (n_events × n_features): one row per word, frame or TR.
``times``
    float64 array (n_events,): seconds on the stimulus clock (word midpoints,
    frame times). Absent for TR-level features.

File attributes: ``level`` is ``"event"`` (default) or ``"tr"``. TR-level
features have one row per *response* row of the run (after trimming) and are
not resampled. Two attributes say whether the story part and the movie part of
the space share coordinates, which is what makes cross-modal transfer
meaningful:

``aligned_pair``
    bool: True when coordinate *k* of the story vectors corresponds to
    coordinate *k* of the movie vectors (BridgeTower's cross-modal layers,
    CLIP's projections), False for separately trained encoders or towers (a
    baseline, not a transfer space).
``pair``
    str: how, in a few words (``"bridgetower cross-modal layer 3"``,
    ``"clip projection"``, ``"unaligned: separate encoders (text tower layer 8,
    vision tower layer 8)"``, ``"unaligned: language model only"``).

``brainenc extract`` and the simulation write both; a file without
``aligned_pair`` has *unknown* alignment (:func:`feature_pair`). Any other
attributes (model, layer, settings) are kept as metadata.
"""
from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np

from brainenc.errors import BrainencInputError
from brainenc.io.atomic import atomic_path

FEATURE_SUFFIX = ".hf5"
LEVELS = ("event", "tr")
FLOAT32_MAX = float(np.finfo(np.float32).max)
ALIGNED_PAIR_ATTR = "aligned_pair"
PAIR_ATTR = "pair"
_TRUE_TEXT = ("true", "1", "yes")
_FALSE_TEXT = ("false", "0", "no")


@dataclass(frozen=True)
class StimulusFeatures:
    """Features of one stimulus.

    Parameters
    ----------
    data : ndarray of shape (n_events, n_features), float32
    times : ndarray of shape (n_events,) or None
        Event times on the stimulus clock; None for TR-level features.
    level : {"event", "tr"}
    attrs : dict
        Metadata stored with the features (model, layer, ...).
    path : Path or None
        The file the features were read from.
    """

    data: np.ndarray
    times: np.ndarray | None
    level: str = "event"
    attrs: dict = field(default_factory=dict)
    path: Path | None = None

    @property
    def n_features(self) -> int:
        return self.data.shape[1]


def _numeric_array(values, path, field: str) -> np.ndarray:
    """``values`` as a real float64 array, or an error naming ``field``."""
    array = np.asarray(values)
    if np.iscomplexobj(array):
        raise BrainencInputError(path, f"{field!r} holds complex numbers; expected real values")
    if array.dtype.kind not in "biuf":
        raise BrainencInputError(
            path, f"{field!r} holds {array.dtype} values; expected a numeric (float) array")
    return array.astype(np.float64, copy=False)


def _check(data, times, level, path) -> tuple[np.ndarray, np.ndarray | None]:
    if level not in LEVELS:
        raise BrainencInputError(path, f"level must be one of {LEVELS}, got {level!r}")
    data = _numeric_array(data, path, "data")
    if data.ndim != 2:
        raise BrainencInputError(
            path, f"'data' must be 2-D (events x features), got shape {data.shape}"
        )
    if data.shape[0] == 0 or data.shape[1] == 0:
        raise BrainencInputError(path, f"'data' is empty (shape {data.shape})")
    if not np.all(np.isfinite(data)):
        raise BrainencInputError(path, "'data' contains NaN or infinite values")
    largest = float(np.max(np.abs(data)))
    if largest > FLOAT32_MAX:
        raise BrainencInputError(
            path, f"'data' holds values outside the float32 range (max |x| = {largest:.3g}); "
            "rescale the features")
    if level == "event":
        if times is None:
            raise BrainencInputError(path, "event-level features need a 'times' dataset")
        times = _numeric_array(times, path, "times")
        if times.shape != (data.shape[0],):
            raise BrainencInputError(
                path,
                f"'times' has shape {times.shape} but 'data' has {data.shape[0]} rows; "
                "expected one time per row",
            )
        if not np.all(np.isfinite(times)):
            raise BrainencInputError(path, "'times' contains NaN or infinite values")
        _check_sorted(times, path)
    return data.astype(np.float32), times


def _check_sorted(times: np.ndarray, path) -> None:
    steps = np.diff(times)
    if np.any(steps < 0):
        first = int(np.flatnonzero(steps < 0)[0])
        raise BrainencInputError(
            path, f"'times' must be sorted (seconds on the stimulus clock, in stimulus order): "
            f"row {first + 1} has time {times[first + 1]:g} after {times[first]:g} in row "
            f"{first}; {int(np.sum(steps < 0))} times go backwards")


def write_stimulus_features(
    path: str | Path,
    data: np.ndarray,
    times: np.ndarray | None = None,
    level: str = "event",
    **attrs,
) -> Path:
    """Write one stimulus' features atomically (nothing partial is ever left).

    Parameters
    ----------
    path : path-like
        Destination, normally ``<feature_root>/<space>/<stimulus>.hf5``.
    data : array of shape (n_events, n_features)
    times : array of shape (n_events,), optional
        Required for ``level="event"``.
    level : {"event", "tr"}
    **attrs
        Scalars or strings stored as HDF5 attributes.
    """
    path = Path(path)
    data, times = _check(data, times, level, path)
    with atomic_path(path) as tmp:
        with h5py.File(tmp, "w") as f:
            f.create_dataset("data", data=data)
            if times is not None:
                f.create_dataset("times", data=times)
            f.attrs["level"] = level
            for key, value in attrs.items():
                f.attrs[key] = value
    return path


def read_stimulus_features(path: str | Path) -> StimulusFeatures:
    """Read and validate one feature file.

    Raises
    ------
    BrainencInputError
        If the file is missing, unreadable, or its datasets have wrong shapes.
    """
    path = Path(path)
    if not path.is_file():
        raise BrainencInputError(path, "feature file not found")
    try:
        with h5py.File(path, "r") as f:
            data = _dataset_values(f, "data", path, required=True)
            times = _dataset_values(f, "times", path, required=False)
            attrs = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in f.attrs.items()}
    except OSError as exc:
        raise BrainencInputError(path, f"cannot read feature file as HDF5 ({exc})") from exc
    level = str(attrs.pop("level", "event"))
    data, times = _check(data, times, level, path)
    return StimulusFeatures(data=data, times=times, level=level, attrs=attrs, path=path)


def _dataset_values(handle: h5py.File, name: str, path: Path, required: bool):
    item = handle.get(name)
    if item is None:
        if required:
            raise BrainencInputError(path, f"feature file has no {name!r} dataset")
        return None
    if not isinstance(item, h5py.Dataset):
        raise BrainencInputError(path, f"{name!r} is an HDF5 group; expected a dataset (array)")
    return item[()]


@dataclass(frozen=True)
class FeatureSpace:
    """A folder of feature files, one per stimulus.

    Parameters
    ----------
    root : Path
        The feature-space folder (``<feature_root>/<name>``).
    """

    root: Path

    @property
    def name(self) -> str:
        return self.root.name

    def path_for(self, stimulus: str) -> Path:
        return self.root / f"{stimulus}{FEATURE_SUFFIX}"

    def stimuli(self) -> list[str]:
        """Stimulus names with a feature file, sorted."""
        return sorted(p.name[: -len(FEATURE_SUFFIX)] for p in self.root.glob(f"*{FEATURE_SUFFIX}"))

    def load(self, stimulus: str) -> StimulusFeatures:
        """Features of one stimulus (validated)."""
        path = self.path_for(stimulus)
        if not path.is_file():
            raise BrainencInputError(
                path, f"feature space {self.name!r} has no features for stimulus {stimulus!r}"
            )
        return read_stimulus_features(path)


def _looks_like_path(text: str) -> bool:
    return (os.sep in text or (os.altsep is not None and os.altsep in text)
            or text.startswith((".", "~")))


def find_feature_space(name_or_path: str | Path, feature_root: Path | None = None) -> FeatureSpace:
    """Resolve ``--features``: a feature-space name under ``feature_root``, or a folder path.

    A bare name (no path separator, not starting with ``.`` or ``~``) is looked
    up under ``feature_root`` only, so a folder of the same name in the current
    folder is never taken by accident; pass ``./name`` for that one. The
    returned space holds the absolute, resolved folder.
    """
    text = str(name_or_path)
    if isinstance(name_or_path, Path) or _looks_like_path(text):
        candidate = Path(text).expanduser()
        if not candidate.is_dir():
            raise BrainencInputError(candidate, "feature-space folder not found")
        return FeatureSpace(candidate.resolve())
    if feature_root is not None and (feature_root / text).is_dir():
        return FeatureSpace((feature_root / text).resolve())
    known = sorted(p.name for p in feature_root.iterdir() if p.is_dir()) if (
        feature_root is not None and feature_root.is_dir()) else []
    hint = (f"; a folder {text!r} exists in the current folder: pass ./{text} to use it"
            if Path(text).is_dir() else "")
    raise BrainencInputError(
        feature_root if feature_root is not None else Path(text),
        f"no feature space named {text!r}; available: {known or 'none'}{hint}",
    )


@dataclass(frozen=True)
class FeaturePair:
    """Whether the story and movie parts of a feature space share coordinates.

    Attributes
    ----------
    aligned : bool or None
        The ``aligned_pair`` attribute; None when unknown (not recorded).
    description : str or None
        The ``pair`` attribute; None when not recorded.
    """

    aligned: bool | None
    description: str | None


def pair_attrs(aligned: bool, description: str) -> dict:
    """The ``aligned_pair`` and ``pair`` attributes, for :func:`write_stimulus_features`."""
    return {ALIGNED_PAIR_ATTR: bool(aligned), PAIR_ATTR: str(description)}


def feature_pair(attrs: Mapping, path: Path | None = None) -> FeaturePair:
    """The pairing recorded in a feature file's attributes.

    ``aligned_pair`` may be a bool, 0 or 1, or the text ``true``/``false``;
    a missing attribute means unknown.

    Raises
    ------
    BrainencInputError
        ``aligned_pair`` holds anything else.
    """
    value = attrs.get(ALIGNED_PAIR_ATTR)
    description = attrs.get(PAIR_ATTR)
    if isinstance(description, bytes):
        description = description.decode()
    description = None if description is None else str(description)
    if value is None:
        return FeaturePair(None, description)
    if isinstance(value, bytes):
        value = value.decode()
    if isinstance(value, str) and value.strip().lower() in _TRUE_TEXT + _FALSE_TEXT:
        return FeaturePair(value.strip().lower() in _TRUE_TEXT, description)
    if isinstance(value, (bool, np.bool_, int, np.integer)) and int(value) in (0, 1):
        return FeaturePair(bool(value), description)
    raise BrainencInputError(
        path, f"attribute {ALIGNED_PAIR_ATTR!r} is {value!r}; expected true or false")


def read_feature_pair(path: str | Path) -> FeaturePair:
    """The pairing recorded in the feature file at ``path`` (its attributes only)."""
    path = Path(path)
    try:
        with h5py.File(path, "r") as f:
            attrs = dict(f.attrs.items())
    except OSError as exc:
        raise BrainencInputError(path, f"cannot read feature file as HDF5 ({exc})") from exc
    return feature_pair(attrs, path)


def space_pair(paths: Mapping[str, Sequence[Path]]) -> FeaturePair:
    """The pairing of a feature space, from its files, which must agree.

    Parameters
    ----------
    paths : mapping of str to sequence of Path
        Feature files by modality (``{"story": [...], "movie": [...]}``).

    Returns
    -------
    FeaturePair
        ``aligned`` shared by every file; ``description`` shared by every
        file, or ``"story: …; movie: …"`` when an unaligned space pairs two
        different sources (a language model and a vision model).

    Raises
    ------
    BrainencInputError
        Two files disagree on ``aligned_pair``, two files of one modality on
        ``pair``, or the two modalities of an aligned space on ``pair``;
        the message names both files.
    """
    read = {modality: [(Path(p), read_feature_pair(p)) for p in files]
            for modality, files in paths.items()}
    everything = [item for items in read.values() for item in items]
    if not everything:
        return FeaturePair(None, None)
    _check_agreement(everything, "aligned")
    for items in read.values():
        _check_agreement(items, "description")
    aligned = everything[0][1].aligned
    if aligned:
        _check_agreement(everything, "description")
    described = {modality: items[0][1].description for modality, items in read.items() if items}
    texts = list(dict.fromkeys(described.values()))
    if len(texts) == 1:
        return FeaturePair(aligned, texts[0])
    return FeaturePair(aligned, "; ".join(f"{m}: {text or 'not recorded'}" for m, text in described.items()))


def _check_agreement(items: Sequence[tuple[Path, FeaturePair]], field_name: str) -> None:
    """Raise naming the first file whose ``field_name`` differs from the first file's."""
    first_path, first = items[0]
    for path, pair in items[1:]:
        mine, theirs = getattr(first, field_name), getattr(pair, field_name)
        if mine != theirs:
            attr = ALIGNED_PAIR_ATTR if field_name == "aligned" else PAIR_ATTR
            raise BrainencInputError(
                path, f"attribute {attr!r} is {_shown(theirs)} here but {_shown(mine)} in "
                f"{first_path}: the files of one feature space must agree on whether and how "
                "their story and movie parts share a space; re-extract them or fix the attributes")


def _shown(value) -> str:
    return "missing" if value is None else repr(value)

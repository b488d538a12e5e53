"""Per-voxel results of a transfer analysis, and how they are stored on disk.

Storage (``scores.npz``, documented in ``docs/outputs.md``): one array per
``<quantity>/<direction>`` key, e.g. ``r/story_to_movie`` or
``transfer_significant/movie_to_story``, plus metadata arrays.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from brainenc.errors import BrainencInputError
from brainenc.io.atomic import atomic_path

#: The four directions of a transfer analysis: ``<train modality>_to_<test modality>``.
DIRECTIONS: tuple[str, ...] = ("story_to_story", "movie_to_movie", "story_to_movie", "movie_to_story")
WITHIN: tuple[str, ...] = ("story_to_story", "movie_to_movie")
CROSS: tuple[str, ...] = ("story_to_movie", "movie_to_story")
#: Label of a result whose feature space pairs unaligned story and movie features.
BASELINE_NOTE = "unaligned baseline"
#: Label of a result whose feature space does not record its alignment.
UNKNOWN_PAIR_NOTE = "alignment unknown"
#: Per-voxel quantities stored as ``<quantity>/<direction>`` in ``scores.npz``.
_PER_DIRECTION: tuple[str, ...] = ("r", "r2", "z", "pvalues", "significant", "alignment_pvalues",
                                   "transfer_pvalues", "transfer_significant")


def split_direction(direction: str) -> tuple[str, str]:
    """``"story_to_movie"`` → ``("story", "movie")``."""
    train, _, test = direction.partition("_to_")
    if direction not in DIRECTIONS:
        raise ValueError(f"unknown direction {direction!r}; expected one of {DIRECTIONS}")
    return train, test


def direction_label(direction: str) -> str:
    """``"story_to_movie"`` → ``"story → movie"``."""
    train, test = split_direction(direction)
    return f"{train} → {test}"


def format_r(value: float) -> str:
    """Correlations in tables: three decimals, an en dash for NaN."""
    if not np.isfinite(value):
        return "–"
    text = f"{value:.3f}"
    return "0.000" if text == "-0.000" else text


def format_fraction(value: float) -> str:
    """Fractions in tables: a percentage with one decimal, an en dash for NaN."""
    return "–" if not np.isfinite(value) else f"{value:.1%}"


@dataclass(frozen=True)
class DirectionSummary:
    """Summary of one direction over all voxels.

    ``mean_r_significant`` is NaN where no voxel is significant;
    ``n_significant`` is None (and the fraction NaN) when significance was not
    tested.
    """

    direction: str
    n_voxels: int
    n_significant: int | None
    fraction_significant: float
    mean_r: float
    mean_r_significant: float
    max_r: float
    fdr_q: float


@dataclass
class TransferResult:
    """Scores of one subject and one feature space in the four directions.

    Every array is indexed by voxel (response column). Dictionaries are keyed
    by direction name (see :data:`DIRECTIONS`); ``alphas`` is keyed by the
    training modality (``"story"``, ``"movie"``).

    Parameters
    ----------
    subject, feature_space : str
    r, r2 : dict of str to ndarray of shape (n_voxels,)
        Pearson correlation and coefficient of determination between predicted
        and measured responses on the test runs (NaN for constant voxels).
    pvalues : dict of str to ndarray
        One-sided p-values of each direction's test that the predictions
        correlate positively with the responses (:mod:`brainenc.inference`,
        ``docs/statistics.md``); NaN when significance was not tested.
    significant : dict of str to ndarray of bool
        Benjamini–Hochberg FDR masks of ``pvalues`` at ``fdr_q``.
    alphas : dict of str to ndarray
        Regularisation selected per voxel by the model trained on each modality.
    summaries : list of DirectionSummary
        One per direction, from ``r`` and ``significant``.
    z : dict of str to ndarray
        The test statistics behind ``pvalues`` (standard normal under the null).
    alignment_pvalues : dict of str to ndarray
        Cross-modal directions only: the test that the cross-modal prediction
        depends on which story feature is paired with which movie feature
        (random pairings as the null).
    transfer_pvalues : dict of str to ndarray
        Cross-modal directions only: the transfer test, whose null is "the
        training-modality model carries no signal, or its predictions of the
        other modality do not correlate, or they would correlate as well under
        a random pairing of the features": the largest of the training
        modality's within p-value, the cross-modal p-value and the alignment
        p-value (``docs/statistics.md``).
    transfer_significant : dict of str to ndarray of bool
        Benjamini–Hochberg FDR masks of ``transfer_pvalues``: the transfer maps.
    transfer_summaries : list of DirectionSummary
        One per cross-modal direction, from ``r`` and ``transfer_significant``.
    weights_path : str or None
        The ``weights.h5`` of the fitted models (:mod:`brainenc.io.weights`),
        when they were written; :meth:`weights` reads it.
    space : str
        Response space (``fsaverage5``, ``volume`` or ``unknown``).
    mask_path : str or None
        Brain mask for volume spaces (to map voxels back to an image).
    settings : dict
        Analysis settings (preset, delays, alpha grid, significance tests, test runs,
        ``aligned_pair`` and ``pair`` of the feature space...).
    """

    subject: str
    feature_space: str
    r: dict[str, np.ndarray]
    r2: dict[str, np.ndarray]
    pvalues: dict[str, np.ndarray]
    significant: dict[str, np.ndarray]
    alphas: dict[str, np.ndarray]
    summaries: list[DirectionSummary] = field(default_factory=list)
    z: dict[str, np.ndarray] = field(default_factory=dict)
    alignment_pvalues: dict[str, np.ndarray] = field(default_factory=dict)
    transfer_pvalues: dict[str, np.ndarray] = field(default_factory=dict)
    transfer_significant: dict[str, np.ndarray] = field(default_factory=dict)
    transfer_summaries: list[DirectionSummary] = field(default_factory=list)
    weights_path: str | None = None
    space: str = "unknown"
    mask_path: str | None = None
    settings: dict = field(default_factory=dict)

    @property
    def n_voxels(self) -> int:
        return len(next(iter(self.r.values())))

    @property
    def directions(self) -> tuple[str, ...]:
        """The directions scored, in the order of :data:`DIRECTIONS` (the within direction
        alone for a one-modality analysis)."""
        return tuple(d for d in DIRECTIONS if d in self.r)

    @property
    def cross_modal(self) -> bool:
        """Whether both cross-modal directions were scored (a transfer analysis)."""
        return all(d in self.r for d in CROSS)

    @property
    def pair_note(self) -> str:
        """:data:`BASELINE_NOTE` when the settings record an unaligned feature space,
        :data:`UNKNOWN_PAIR_NOTE` when they record an unknown alignment, else ``""``."""
        if "aligned_pair" not in self.settings:
            return ""
        aligned = self.settings["aligned_pair"]
        if aligned is None:
            return UNKNOWN_PAIR_NOTE
        return "" if aligned else BASELINE_NOTE

    @property
    def feature_space_label(self) -> str:
        """The feature-space name, followed by its :attr:`pair_note` in brackets if any."""
        note = self.pair_note
        return f"{self.feature_space} ({note})" if note else self.feature_space

    def weights(self):
        """The fitted weights, read lazily (:class:`brainenc.io.weights.WeightsFile`).

        Raises
        ------
        BrainencInputError
            No weights were written for this result, or the file is gone.
        """
        from brainenc.io.weights import WeightsFile

        if self.weights_path is None:
            raise BrainencInputError(None, f"no weights were written for {self.subject} / "
                                           f"{self.feature_space}")
        return WeightsFile(self.weights_path)

    @property
    def tested(self) -> bool:
        """Whether significance was tested (``settings["significance"]``; True when not recorded)."""
        return bool(self.settings.get("significance", True))

    def map_significant(self, direction: str) -> np.ndarray:
        """The mask a map of ``direction`` shows: the transfer map of a cross-modal
        direction (when tested), the direction's own FDR mask otherwise."""
        if direction in self.transfer_significant:
            return np.asarray(self.transfer_significant[direction], dtype=bool)
        return np.asarray(self.significant[direction], dtype=bool)

    def summary(self, direction: str, transfer: bool = False) -> DirectionSummary:
        """The summary of ``direction``; of its transfer map with ``transfer=True``."""
        for item in self.transfer_summaries if transfer else self.summaries:
            if item.direction == direction:
                return item
        raise KeyError(direction)

    # -- storage ---------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        """Write all per-voxel arrays to one ``.npz`` file (atomically)."""
        arrays: dict[str, np.ndarray] = {}
        for quantity in _PER_DIRECTION:
            for direction, values in getattr(self, quantity).items():
                arrays[f"{quantity}/{direction}"] = np.asarray(values)
        for modality, values in self.alphas.items():
            arrays[f"alphas/{modality}"] = np.asarray(values)
        meta = {
            "subject": self.subject,
            "feature_space": self.feature_space,
            "space": self.space,
            "mask_path": self.mask_path,
            "settings": self.settings,
            "summaries": [asdict(s) for s in self.summaries],
            "transfer_summaries": [asdict(s) for s in self.transfer_summaries],
            "weights_file": _relative_to(self.weights_path, Path(path).parent),
        }
        return write_npz(path, arrays, meta)

    @classmethod
    def load(cls, path: str | Path) -> "TransferResult":
        """Read a result written by :meth:`save` (its weights file, if any, is found again
        beside it or where it was)."""
        with np.load(path, allow_pickle=False) as data:
            meta = json.loads(str(data["meta_json"]))
            parts = grouped_arrays(data, (*_PER_DIRECTION, "alphas"))
        return cls(
            subject=meta["subject"],
            feature_space=meta["feature_space"],
            summaries=[DirectionSummary(**s) for s in meta["summaries"]],
            transfer_summaries=[DirectionSummary(**s) for s in meta.get("transfer_summaries", [])],
            weights_path=(None if meta.get("weights_file") is None
                          else str(Path(path).parent / meta["weights_file"])),
            space=meta["space"],
            mask_path=meta["mask_path"],
            settings=meta["settings"],
            **parts,
        )


def _relative_to(path: str | None, folder: Path) -> str | None:
    """``path`` relative to ``folder`` when it lies inside it, else as given."""
    if path is None:
        return None
    try:
        return str(Path(path).resolve().relative_to(folder.resolve()))
    except ValueError:
        return str(path)


def write_npz(path: str | Path, arrays: dict, meta: dict | None = None, *,
              allow_nan: bool = True) -> Path:
    """Write ``arrays`` to one compressed ``.npz`` through a temporary name; ``meta``, when
    given, goes in as the JSON string ``meta_json`` (:func:`json_default` for numpy values)."""
    arrays = dict(arrays)
    if meta is not None:
        arrays["meta_json"] = np.array(json.dumps(meta, default=json_default, allow_nan=allow_nan))
    path = Path(path)
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez_compressed(f, **arrays)
    return path


def grouped_arrays(data, quantities) -> dict[str, dict[str, np.ndarray]]:
    """The ``<quantity>/<name>`` arrays of an open ``.npz``, as ``{quantity: {name: array}}``."""
    parts: dict[str, dict[str, np.ndarray]] = {q: {} for q in quantities}
    for key in data.files:
        if "/" in key:
            quantity, name = key.split("/", 1)
            parts[quantity][name] = data[key]
    return parts


def json_default(value):
    """``json.dumps`` fallback for numpy values and paths."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot store {type(value).__name__} in JSON")

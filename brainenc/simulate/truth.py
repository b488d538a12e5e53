"""The ground truth of a simulated subject: ``ground_truth.npz``, written and read back.

Also the noise-free ceilings: per vertex, the correlation that a perfect model
reaches in each analysis direction, accumulated run by run; and the true
explainable variance of the repeated stimulus of each modality.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from brainenc.errors import BrainencInputError
from brainenc.io.dataset import MODALITIES
from brainenc.simulate.cortex import CATEGORY_NAMES, COMPONENTS, N_VERTICES, Cortex

#: Analysis directions with a noise-free ceiling (``max_r_<direction>`` in the file).
CEILING_DIRECTIONS: tuple[str, ...] = (
    "story_to_story", "movie_to_movie", "story_to_movie", "movie_to_story")
#: Per-vertex component SNRs (``snr_<name>`` in the file) and the component of each.
COMPONENT_SNRS: dict[str, str] = {
    "shared_story": "shared", "shared_movie": "shared", "language": "language", "vision": "vision"}
_NEEDED = ("category", "category_names", "region_of", "region_center", "region_hemi",
           "region_category", "region_radius_deg", "region_group", "region_snr",
           "region_hrf_shape", "hrf_shape", "stimuli", "n_trs", "params",
           *(f"max_r_{d}" for d in CEILING_DIRECTIONS),
           *(f"snr_{name}" for name in COMPONENT_SNRS))


@dataclass(frozen=True)
class GroundTruth:
    """The ground truth of a simulated subject (``ground_truth.npz``).

    Per-vertex arrays have one row per fsaverage5 vertex (left hemisphere then
    right); per-region arrays one row per region, in the order the regions
    were placed (left hemisphere first, pair by pair).

    Parameters
    ----------
    category : ndarray of int8, shape (20484,)
        Category code per vertex; the codes index ``category_names``.
    category_names : tuple of str
        ``("noise", "shared", "language", "vision", "shared+language",
        "shared+vision", "language+vision")``.
    region_of : ndarray of int16, shape (20484, 3)
        Index of the region that gives the vertex its shared, language and
        vision component (columns in that order); -1 where absent.
    region_center : ndarray of shape (n_regions, 3)
        Region centres on the fsaverage5 sphere (mesh coordinates).
    region_hemi : tuple of str
        ``"left"`` or ``"right"`` per region.
    region_category : ndarray of int8, shape (n_regions,)
        Category code of each region's component (1, 2 or 3).
    region_radius_deg : ndarray of shape (n_regions,)
        Angular radius of each region on the sphere.
    region_group : ndarray of int16, shape (n_regions,)
        Index of the pair (or lone cap) each region belongs to.
    region_snr : ndarray of shape (n_regions,)
        Each region's SNR at its centre.
    region_hrf_shape : ndarray of shape (n_regions,)
        Each region's HRF peak shape at its centre (before quantisation).
    hrf_shape : ndarray of shape (20484,)
        Peak shape ``a`` of each vertex's HRF (peak near ``a - 1`` s); NaN on
        pure-noise vertices.
    weights : dict of str to ndarray
        ``"shared"``, ``"language"``, ``"vision"``: per-vertex weights on the
        latent dimensions (20484 × k), zero where a vertex lacks the component.
    feature_mixing : dict of str to ndarray
        Mixing matrices (n_features × k) from latents to features:
        ``concept`` (both modalities of ``multimodal``, stories of
        ``unimodal``), ``concept_unimodal_movie``, ``language``, ``vision``.
    max_r : dict of str to ndarray
        Per analysis direction (``story_to_story``, ``movie_to_movie``,
        ``story_to_movie``, ``movie_to_story``), the correlation that a perfect
        model reaches at each vertex; 0 where there is nothing to reach.
    component_snr : dict of str to ndarray
        ``shared_story``, ``shared_movie``, ``language``, ``vision``: per
        vertex, the variance of that component over the rows of its modality
        (the noise has unit variance); 0 where absent.
    params : dict
        Parameters of the simulation (``snr``, ``noise_rho``, ``seed``...).
    stimuli : tuple of str
        Stimulus names, stories then movies, each once however often it was presented.
    n_trs : ndarray of int, shape (n_stimuli,)
        Analysed volumes of each stimulus's runs, in the order of ``stimuli``.
    explainable_variance : dict of str to ndarray
        ``"story"``, ``"movie"``: per vertex, the true explainable variance of
        the runs of the last stimulus of that modality (the one repeated with
        ``story_repeats`` / ``movie_repeats``): ``var(s) / (var(s) + 1)`` with
        ``var(s)`` the variance (ddof 1) of the noiseless signal over the run's
        written rows and 1 the noise variance. Empty for files written before
        it was recorded.
    ev_stimulus : dict of str to str
        ``"story"``, ``"movie"``: the stimulus ``explainable_variance`` refers to.
    path : Path or None
        The file read.
    """

    category: np.ndarray
    category_names: tuple[str, ...]
    region_of: np.ndarray
    region_center: np.ndarray
    region_hemi: tuple[str, ...]
    region_category: np.ndarray
    region_radius_deg: np.ndarray
    region_group: np.ndarray
    region_snr: np.ndarray
    region_hrf_shape: np.ndarray
    hrf_shape: np.ndarray
    weights: dict = field(default_factory=dict)
    feature_mixing: dict = field(default_factory=dict)
    max_r: dict = field(default_factory=dict)
    component_snr: dict = field(default_factory=dict)
    params: dict = field(default_factory=dict)
    stimuli: tuple[str, ...] = ()
    n_trs: np.ndarray | None = None
    explainable_variance: dict = field(default_factory=dict)
    ev_stimulus: dict = field(default_factory=dict)
    path: Path | None = None

    def mask(self, name: str) -> np.ndarray:
        """Boolean mask of the vertices whose category is ``name`` (``"shared"``...)."""
        if name not in self.category_names:
            raise KeyError(f"unknown category {name!r}; expected one of {self.category_names}")
        return self.category == self.category_names.index(name)

    def component(self, name: str) -> np.ndarray:
        """Boolean mask of the vertices that carry a component (``"shared"``, ``"language"``,
        ``"vision"``), alone or mixed with another."""
        if name not in COMPONENTS:
            raise KeyError(f"unknown component {name!r}; expected one of {COMPONENTS}")
        return self.region_of[:, COMPONENTS.index(name)] >= 0

    @property
    def snr_range(self) -> tuple[float, float]:
        """``(low, high)`` of the regions' SNRs (equal for a single SNR)."""
        snr = self.params["snr"]
        low, high = (snr, snr) if np.isscalar(snr) else snr
        return float(low), float(high)


class CorrelationAccumulator:
    """Per-column Pearson correlation of two arrays, accumulated over runs (pooled rows)."""

    def __init__(self) -> None:
        self.n = 0
        self.sums: np.ndarray | None = None

    def add(self, x: np.ndarray, y: np.ndarray) -> None:
        """Add rows: ``x`` and ``y`` of shape (n_rows, n_columns)."""
        a, b = x.astype(np.float64), y.astype(np.float64)
        parts = np.stack([a.sum(0), b.sum(0), (a * a).sum(0), (b * b).sum(0), (a * b).sum(0)])
        self.sums = parts if self.sums is None else self.sums + parts
        self.n += len(a)

    def result(self) -> np.ndarray:
        """Correlation per column, float32; 0 where ``x`` has no variance."""
        a, b, aa, bb, ab = self.sums / self.n
        cov = ab - a * b
        den = np.sqrt(np.clip(aa - a * a, 0, None) * np.clip(bb - b * b, 0, None))
        out = np.zeros(len(cov))
        # Columns without signal have zero variance (up to rounding): report 0.
        ok = den > 1e-12 * np.maximum(bb, 1.0)
        out[ok] = cov[ok] / den[ok]
        return out.astype(np.float32)


def true_explainable_variance(signal: np.ndarray) -> np.ndarray:
    """``var(s) / (var(s) + 1)`` per column: the share of a unit-noise response that repeats.

    Parameters
    ----------
    signal : ndarray of shape (n_rows, n_vertices)
        The noiseless signal of one run (shared by every presentation of its stimulus).

    Returns
    -------
    ndarray of float32, shape (n_vertices,)
        The variance is over rows with ddof 1, as the explainable-variance
        estimator of :mod:`brainenc.analyses.ceilings` computes variances; the
        noise has unit variance by construction.
    """
    variance = np.asarray(signal, dtype=np.float64).var(axis=0, ddof=1)
    return (variance / (variance + 1.0)).astype(np.float32)


def write_ground_truth(path: Path, cortex: Cortex, feature_mixing: dict[str, np.ndarray],
                       max_r: dict[str, np.ndarray], params: dict, stimuli: list[str],
                       n_trs: list[int], explainable_variance: dict[str, np.ndarray],
                       ev_stimulus: dict[str, str]) -> None:
    """Write ``ground_truth.npz`` (compressed; ``docs/simulation.md`` lists the keys)."""
    snr = cortex.component_snr
    arrays = {
        "category": cortex.category,
        "category_names": np.array(CATEGORY_NAMES),
        "region_of": cortex.region_of,
        "region_center": cortex.region_center,
        "region_hemi": np.array(cortex.region_hemi, dtype=str),
        "region_category": cortex.region_category,
        "region_radius_deg": cortex.region_radius_deg,
        "region_group": cortex.region_group,
        "region_snr": cortex.region_snr,
        "region_hrf_shape": cortex.region_hrf_shape,
        "hrf_shape": cortex.hrf_shape.astype(np.float32),
        "stimuli": np.array(stimuli),
        "n_trs": np.array(n_trs, dtype=np.int64),
        "params": np.array(json.dumps(params)),
    }
    arrays.update({f"weights_{k}": v.astype(np.float32) for k, v in cortex.weights.items()})
    arrays.update({f"mixing_{k}": v for k, v in feature_mixing.items()})
    arrays.update({f"max_r_{d}": max_r[d].astype(np.float32) for d in CEILING_DIRECTIONS})
    arrays.update({f"ev_{m}": explainable_variance[m].astype(np.float32) for m in MODALITIES})
    arrays["ev_stimuli"] = np.array([ev_stimulus[m] for m in MODALITIES])
    arrays.update({f"snr_{name}": snr[:, COMPONENTS.index(component)].astype(np.float32)
                   for name, component in COMPONENT_SNRS.items()})
    for key, value in params.items():
        if isinstance(value, (int, float)):
            arrays[key] = np.array(value)
    np.savez_compressed(path, **arrays)


def load_ground_truth(path_or_root: str | Path) -> GroundTruth:
    """Read ``ground_truth.npz`` (or the one inside a simulated dataset folder).

    Parameters
    ----------
    path_or_root : path-like
        The file, or the dataset folder holding it.

    Returns
    -------
    GroundTruth

    Raises
    ------
    BrainencInputError
        If the file is missing or lacks the expected arrays.
    """
    path = Path(path_or_root)
    if path.is_dir():
        path = path / "ground_truth.npz"
    if not path.is_file():
        raise BrainencInputError(path, "ground-truth file not found")
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {key: f[key] for key in f.files}
    except (OSError, ValueError) as exc:
        raise BrainencInputError(path, f"cannot read ground truth as .npz ({exc})") from exc
    missing = [k for k in _NEEDED if k not in arrays]
    if missing:
        raise BrainencInputError(path, f"ground truth lacks {missing}")
    if arrays["category"].shape != (N_VERTICES,):
        raise BrainencInputError(
            path, f"'category' has shape {arrays['category'].shape}, expected ({N_VERTICES},)")

    def prefixed(prefix):
        return {k[len(prefix):]: v for k, v in arrays.items() if k.startswith(prefix)}

    return GroundTruth(
        category=arrays["category"],
        category_names=tuple(str(x) for x in arrays["category_names"]),
        region_of=arrays["region_of"],
        region_center=arrays["region_center"],
        region_hemi=tuple(str(x) for x in arrays["region_hemi"]),
        region_category=arrays["region_category"],
        region_radius_deg=arrays["region_radius_deg"],
        region_group=arrays["region_group"],
        region_snr=arrays["region_snr"],
        region_hrf_shape=arrays["region_hrf_shape"],
        hrf_shape=arrays["hrf_shape"],
        weights=prefixed("weights_"),
        feature_mixing=prefixed("mixing_"),
        max_r={d: arrays[f"max_r_{d}"] for d in CEILING_DIRECTIONS},
        component_snr={name: arrays[f"snr_{name}"] for name in COMPONENT_SNRS},
        params=json.loads(str(arrays["params"])),
        stimuli=tuple(str(x) for x in arrays["stimuli"]),
        n_trs=arrays["n_trs"],
        explainable_variance={m: arrays[f"ev_{m}"] for m in MODALITIES if f"ev_{m}" in arrays},
        ev_stimulus=(dict(zip(MODALITIES, (str(x) for x in arrays["ev_stimuli"])))
                     if "ev_stimuli" in arrays else {}),
        path=path,
    )

"""How well an analysis recovered a simulated subject: per map, category and ceiling bin.

Every map has a set of vertices where its null hypothesis holds by
construction, read off the ground truth:

* a within map (``story_to_story``...): no signal in that modality
  (``max_r[direction] == 0``);
* a cross-modal map (the plain test of ``story_to_movie``...): no signal at all
  in the modality predicted (``max_r`` of that modality's within direction is
  0), so that nothing can correlate with the prediction;
* a transfer map: no shared-concept component (``GroundTruth.component("shared")``
  is False) — the vertices where finding transfer would be wrong.

A vertex "to find" has a positive ceiling in the map's direction (for a
transfer map, a shared component too). Recovery is scored continuously by the
ceiling: the noise-free correlation a perfect model reaches there
(``GroundTruth.max_r``), binned.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
from scipy import sparse
from scipy.sparse.csgraph import connected_components
from sklearn.metrics import roc_auc_score

from brainenc.errors import BrainencInputError
from brainenc.results import CROSS, DIRECTIONS, TransferResult, split_direction
from brainenc.simulate.cortex import (
    HEMISPHERES,
    N_VERTICES_PER_HEMI,
    fsaverage5_sphere,
    mesh_adjacency,
)
from brainenc.simulate.truth import GroundTruth

#: Bins of the noise-free ceiling used to report recovery.
CEILING_BINS: tuple[float, ...] = (0.0, 0.05, 0.1, 0.2, 0.4, 1.0)
#: The maps scored: the four directions' own tests, then the two transfer maps.
MAPS: tuple[str, ...] = (*DIRECTIONS, *(f"transfer_{d}" for d in CROSS))


@dataclass(frozen=True)
class MapRecovery:
    """Recovery of one map.

    Attributes
    ----------
    map : str
        A direction, or ``transfer_<cross direction>``.
    n_significant, n_false : int
        Significant vertices, and those where the map's null holds.
    false_discovery_proportion : float
        ``n_false / n_significant`` (0 when nothing is significant).
    false_clump_size : float
        How the false discoveries clump on the mesh: ``Σ s² / Σ s`` over the
        sizes ``s`` of their connected groups (1 when each stands alone, 1 when
        there are none). Spatially smooth noise makes neighbouring null
        vertices fail together, which inflates the Monte-Carlo variance of
        ``n_false`` by about this factor over the binomial one.
    null_fractions : tuple of float
        Fraction of the null vertices with p below .05, .01 and .001.
    n_null : int
    recall : dict of str to float
        Per ceiling bin (``"0.10-0.20"``...), the fraction of the vertices to
        find that are significant; NaN for an empty bin.
    auc : dict of str to float
        Per ceiling bin, the ROC AUC of r for telling those vertices from the
        null vertices.
    n_per_bin : dict of str to int
    by_category : dict of str to tuple of (int, float)
        Per ground-truth category: its vertex count and the fraction significant.
    """

    map: str
    n_significant: int
    n_false: int
    false_discovery_proportion: float
    false_clump_size: float
    null_fractions: tuple[float, float, float]
    n_null: int
    recall: dict[str, float]
    auc: dict[str, float]
    n_per_bin: dict[str, int]
    by_category: dict[str, tuple[int, float]]


def _bin_label(low: float, high: float) -> str:
    return f"{low:.2f}-{high:.2f}"


def _map_arrays(result: TransferResult, name: str):
    """(direction, r, p-values, mask) of a map."""
    if name.startswith("transfer_"):
        direction = name[len("transfer_"):]
        return (direction, result.r[direction], result.transfer_pvalues[direction],
                result.transfer_significant[direction])
    return name, result.r[name], result.pvalues[name], result.significant[name]


def null_vertices(truth: GroundTruth, name: str) -> np.ndarray:
    """Vertices where the null hypothesis of map ``name`` holds (module notes)."""
    if name.startswith("transfer_"):
        return ~truth.component("shared")
    train, test = split_direction(name)
    return truth.max_r[f"{test}_to_{test}"] == 0


def to_find(truth: GroundTruth, name: str) -> np.ndarray:
    """Vertices map ``name`` should find: a positive ceiling (and a shared component
    for a transfer map)."""
    direction = name[len("transfer_"):] if name.startswith("transfer_") else name
    found = truth.max_r[direction] > 0
    return found & truth.component("shared") if name.startswith("transfer_") else found


def map_recovery(result: TransferResult, truth: GroundTruth, name: str) -> MapRecovery:
    """Score map ``name`` of ``result`` against ``truth`` (see the module notes)."""
    direction, r, p, significant = _map_arrays(result, name)
    significant = np.asarray(significant, dtype=bool)
    null = null_vertices(truth, name)
    positive = to_find(truth, name)
    ceiling = truth.max_r[direction]
    recall, auc, counts = {}, {}, {}
    for low, high in zip(CEILING_BINS[:-1], CEILING_BINS[1:], strict=True):
        label = _bin_label(low, high)
        members = positive & (ceiling > low) & (ceiling <= high)
        counts[label] = int(members.sum())
        recall[label] = float(significant[members].mean()) if members.any() else float("nan")
        pair = (members | null) & np.isfinite(r)
        auc[label] = (float(roc_auc_score(members[pair], r[pair]))
                      if members[pair].any() and null[pair].any() else float("nan"))
    n_sig = int(significant.sum())
    n_false = int((significant & null).sum())
    tested = null & np.isfinite(p)
    fractions = tuple(float(np.mean(p[tested] < level)) if tested.any() else float("nan")
                      for level in (0.05, 0.01, 0.001))
    by_category = {category: (int(np.sum(truth.category == code)),
                              float(significant[truth.category == code].mean())
                              if np.any(truth.category == code) else float("nan"))
                   for code, category in enumerate(truth.category_names)}
    return MapRecovery(name, n_sig, n_false, n_false / n_sig if n_sig else 0.0,
                       clump_size(significant & null), fractions, int(null.sum()), recall, auc,
                       counts, by_category)


@functools.lru_cache(maxsize=1)
def _fsaverage5_adjacency() -> sparse.csr_matrix:
    """Edges of both fsaverage5 hemispheres, left then right."""
    spheres = fsaverage5_sphere()
    return sparse.block_diag([mesh_adjacency(spheres[hemi][1], N_VERTICES_PER_HEMI)
                              for hemi in HEMISPHERES], format="csr")


def clump_size(marked: np.ndarray) -> float:
    """``Σ s² / Σ s`` over the connected groups (mesh edges) of the marked vertices; 1 if none."""
    members = np.flatnonzero(marked)
    if members.size == 0:
        return 1.0
    sub = _fsaverage5_adjacency()[members][:, members]
    _, labels = connected_components(sub, directed=False)
    sizes = np.bincount(labels).astype(float)
    return float((sizes**2).sum() / sizes.sum())


def recovery(result: TransferResult, truth: GroundTruth) -> dict[str, MapRecovery]:
    """:func:`map_recovery` of every map of ``result`` (:data:`MAPS`).

    Raises
    ------
    BrainencInputError
        ``result`` was not tested for significance: it has no maps to score.
    """
    if not result.tested:
        raise BrainencInputError(None, f"{result.subject} / {result.feature_space} was analysed "
                                       "without significance tests: it has no maps to score")
    names = [name for name in MAPS
             if not name.startswith("transfer_") or name[len("transfer_"):] in result.transfer_pvalues]
    return {name: map_recovery(result, truth, name) for name in names}


def format_recovery(scores: dict[str, MapRecovery]) -> str:
    """A plain-text table of :func:`recovery`: one line per map, then recall and AUC by bin."""
    lines = [f"{'map':<26}{'signif.':>8}{'false':>7}{'FDP':>7}{'clump':>7}   null p<.05/.01/.001"]
    for name, s in scores.items():
        fractions = "/".join(f"{f:.4f}" for f in s.null_fractions)
        lines.append(f"{name:<26}{s.n_significant:>8}{s.n_false:>7}"
                     f"{s.false_discovery_proportion:>7.3f}{s.false_clump_size:>7.2f}   {fractions}")
    labels = list(next(iter(scores.values())).recall)
    lines.append("")
    lines.append(f"{'recall (n) by ceiling':<26}" + "".join(f"{label:>17}" for label in labels))
    for name, s in scores.items():
        cells = "".join(f"{s.recall[label]:>10.2f} ({s.n_per_bin[label]:>4})" for label in labels)
        lines.append(f"{name:<26}{cells}")
    lines.append("")
    lines.append(f"{'AUC of r by ceiling':<26}" + "".join(f"{label:>17}" for label in labels))
    for name, s in scores.items():
        lines.append(f"{name:<26}" + "".join(f"{s.auc[label]:>17.3f}" for label in labels))
    return "\n".join(lines)

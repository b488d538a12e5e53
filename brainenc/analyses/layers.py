"""Layer sweeps: the four directions across the layers of one model.

Every layer is a feature space of the same subject, so the sweep runs them
through one plan (:mod:`brainenc.transfer`): the responses, the splits and the
tests' noise estimates of each voxel batch are computed once for all layers;
each layer adds its own designs and fits. Per layer and direction the sweep
keeps the mean r over all voxels, the mean r over the voxels of the direction's
map (its FDR mask, the transfer map for the cross-modal directions) and their
number, optionally per ROI; per voxel, the best layer (largest r among the
layers whose map holds the voxel).
"""
from __future__ import annotations

import fnmatch
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from brainenc.errors import BrainencInputError
from brainenc.io.dataset import Dataset
from brainenc.results import DIRECTIONS, TransferResult, grouped_arrays, write_npz
from brainenc.transfer import analyse_spaces, plan_transfer, prepare_space

_TRAILING_NUMBER = re.compile(r"(\d+)$")


def layer_number(name: str) -> int | None:
    """The trailing integer of a feature-space name (``bridgetower-base_cross3`` → 3)."""
    match = _TRAILING_NUMBER.search(name)
    return int(match.group(1)) if match else None


def find_layer_spaces(feature_root: str | Path, pattern: str) -> list[str]:
    """Feature spaces under ``feature_root`` whose names match ``pattern`` (shell-style, e.g.
    ``bridgetower-base_cross*``), ordered by their trailing layer number.

    Raises
    ------
    BrainencInputError
        Fewer than two spaces match, a match has no trailing number, the matches
        are the layers of several models (different names before the number) or
        two of them have the same number.
    """
    root = Path(feature_root)
    if Path(pattern).parent != Path("."):
        raise BrainencInputError(root, f"{pattern!r}: the pattern matches feature-space names under "
                                       f"{root}, not paths")
    names = sorted(p.name for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
    matched = [name for name in names if fnmatch.fnmatchcase(name, pattern)]
    if len(matched) < 2:
        raise BrainencInputError(root, f"a layer sweep needs at least 2 feature spaces matching "
                                       f"{pattern!r}; found {matched or 'none'} among {names or 'none'}")
    unnumbered = [name for name in matched if layer_number(name) is None]
    if unnumbered:
        raise BrainencInputError(root, f"feature spaces {unnumbered} match {pattern!r} but do not end "
                                       "with a layer number")
    prefixes = sorted({name.rstrip("0123456789") for name in matched})
    if len(prefixes) > 1:
        raise BrainencInputError(root, f"{pattern!r} matches the layers of several models "
                                       f"({', '.join(p + '<k>' for p in prefixes)}); narrow the pattern")
    numbers = [layer_number(name) for name in matched]
    twice = sorted({name for name, k in zip(matched, numbers) if numbers.count(k) > 1})
    if twice:
        raise BrainencInputError(root, f"feature spaces {', '.join(twice)} have the same layer number")
    return sorted(matched, key=layer_number)


@dataclass
class LayerSweep:
    """The four directions across the layers of one model, for one subject.

    Attributes
    ----------
    subject : str
    layers : list of str
        Feature-space names, in layer order.
    mean_r, mean_r_map : dict of str to ndarray of shape (n_layers,)
        Per direction: mean r over all voxels with a defined r, and over the
        voxels of the direction's map (NaN when it is empty).
    n_map : dict of str to ndarray of int, shape (n_layers,)
        Per direction, the number of voxels in the map.
    best_layer : dict of str to ndarray of shape (n_voxels,)
        Per direction, the index into ``layers`` of the layer with the largest
        r among those whose map holds the voxel; NaN where no map does.
    best_r : dict of str to ndarray of shape (n_voxels,)
        That largest r.
    roi_mean_r : dict of str to ndarray of shape (n_rois, n_layers), optional
        Per direction, mean r per ROI (with ``roi_names``).
    roi_names : list of str
    settings : dict
    """

    subject: str
    layers: list[str]
    mean_r: dict[str, np.ndarray]
    mean_r_map: dict[str, np.ndarray]
    n_map: dict[str, np.ndarray]
    best_layer: dict[str, np.ndarray]
    best_r: dict[str, np.ndarray]
    roi_mean_r: dict[str, np.ndarray] = field(default_factory=dict)
    roi_names: list[str] = field(default_factory=list)
    settings: dict = field(default_factory=dict)

    def save(self, path: str | Path) -> Path:
        """Write every array to one ``.npz`` (``<quantity>/<direction>`` keys)."""
        arrays = {f"{q}/{d}": np.asarray(getattr(self, q)[d])
                  for q in ("mean_r", "mean_r_map", "n_map", "best_layer", "best_r", "roi_mean_r")
                  for d in getattr(self, q)}
        meta = {"subject": self.subject, "layers": self.layers, "roi_names": self.roi_names,
                "settings": self.settings}
        return write_npz(path, arrays, meta)

    @classmethod
    def load(cls, path: str | Path) -> "LayerSweep":
        with np.load(path, allow_pickle=False) as data:
            meta = json.loads(str(data["meta_json"]))
            parts = grouped_arrays(data, ("mean_r", "mean_r_map", "n_map", "best_layer", "best_r",
                                          "roi_mean_r"))
        return cls(meta["subject"], meta["layers"], settings=meta["settings"],
                   roi_names=meta["roi_names"], **parts)


def summarise_layers(results: Sequence[TransferResult], rois=None) -> LayerSweep:
    """The :class:`LayerSweep` of per-layer results (one per layer, in layer order).

    ``rois``, a :class:`brainenc.analyses.rois.RoiSet`, adds per-ROI curves.
    """
    layers = [result.feature_space for result in results]
    mean_r, mean_r_map, n_map, best_layer, best_r, roi_mean_r = {}, {}, {}, {}, {}, {}
    for d in DIRECTIONS:
        r = np.stack([np.asarray(result.r[d], dtype=float) for result in results])
        in_map = np.stack([result.map_significant(d) for result in results]) & np.isfinite(r)
        with np.errstate(invalid="ignore"):
            mean_r[d] = np.array([np.nanmean(row) if np.isfinite(row).any() else np.nan for row in r])
            n_map[d] = in_map.sum(axis=1)
            mean_r_map[d] = np.array([row[mask].mean() if mask.any() else np.nan
                                      for row, mask in zip(r, in_map, strict=True)])
        candidates = np.where(in_map, r, -np.inf)
        best = np.argmax(candidates, axis=0).astype(float)
        anywhere = in_map.any(axis=0)
        best[~anywhere] = np.nan
        best_layer[d] = best
        best_r[d] = np.where(anywhere, candidates.max(axis=0), np.nan)
        if rois is not None:
            from brainenc.analyses.rois import roi_means

            roi_mean_r[d] = roi_means({"r": r}, rois)["r"].T
    settings = dict(results[0].settings)
    settings.pop("feature_space_path", None)
    settings["layers"] = layers
    return LayerSweep(results[0].subject, layers, mean_r, mean_r_map, n_map, best_layer, best_r,
                      roi_mean_r, [roi.name for roi in rois.rois] if rois is not None else [],
                      settings)


def sweep_layers(dataset: Dataset, subject: str, layers: Sequence[str], *,
                 weights_paths: Mapping[str, str | Path] | None = None, rois=None,
                 progress: bool = True, **options) -> tuple[list[TransferResult], LayerSweep]:
    """Analyse every layer of a model through one plan and summarise them.

    Parameters
    ----------
    dataset : Dataset
    subject : str
    layers : sequence of str
        Feature-space names, in layer order (:func:`find_layer_spaces`).
    weights_paths : mapping, optional
        As in :func:`brainenc.transfer.run_transfers`.
    rois : RoiSet, optional
    progress : bool
    **options
        The options of :func:`brainenc.transfer.run_transfer`.

    Returns
    -------
    results : list of TransferResult
        One per layer.
    sweep : LayerSweep
    """
    plan = plan_transfer(dataset, subject, **options)
    spaces = [prepare_space(plan, name, progress) for name in layers]
    results = analyse_spaces(plan, spaces, weights_paths=weights_paths, progress=progress)
    return results, summarise_layers(results, rois)

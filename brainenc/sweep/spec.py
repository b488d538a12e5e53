"""The sweep specification: a TOML file naming subjects × feature spaces and the analysis.

::

    dataset = "ds003020"            # relative to the spec file
    out = "sweep"                   # the sweep root: one folder per (subject, feature space)
    subjects = ["UTS01", "UTS02"]   # optional: every subject of the dataset
    features = ["bridgetower-base_cross3", "gpt2_6"]
    # and/or every layer of a model: feature spaces matching a pattern
    layers = ["bridgetower-base_cross*"]

    [analysis]                      # options of `brainenc transfer`
    modalities = ["story", "movie"] # one modality: the within analysis (`brainenc encode`)
    max_lag = 4
    fdr_q = 0.05
    significance = true
    alphas = [1.0, 10.0, 100.0]
    report = true                   # each folder's report.html
    memory = "8GB"                  # optional: the bound of each job (--memory of transfer)
    chunk_voxels = 100000           # optional: a larger subject's job runs as voxel chunks
    spaces_per_task = 3             # optional: a subject's feature spaces 3 at a time per task

    [analysis.test_runs]            # optional: named test runs (default: the layout's)
    story = ["wheretheressmoke"]

Every key is checked when the spec is read; the dataset and feature spaces are
checked by :func:`brainenc.sweep.run.plan_sweep` before the first fit.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from brainenc.errors import BrainencInputError
from brainenc.io.toml_spec import read_toml_spec

__all__ = ["SweepSpec", "load_sweep_spec", "SPEC_KEYS", "ANALYSIS_KEYS"]

SPEC_KEYS = ("dataset", "out", "subjects", "features", "layers", "analysis")
ANALYSIS_KEYS = ("modalities", "max_lag", "fdr_q", "significance", "alphas", "seed",
                 "n_targets_batch", "backend", "report", "test_runs", "memory", "chunk_voxels",
                 "spaces_per_task")
#: Settings that change how a job runs but not its results: left out of the sweep's identity.
RUN_ONLY_KEYS = ("memory", "chunk_voxels", "spaces_per_task")


@dataclass(frozen=True)
class SweepSpec:
    """A checked sweep specification (paths absolute)."""

    path: Path
    dataset: Path
    out: Path
    subjects: tuple[str, ...] | None
    features: tuple[str, ...]
    layers: tuple[str, ...]
    analysis: dict[str, Any] = field(default_factory=dict)

    def fail(self, where: str, message: str) -> BrainencInputError:
        """An input error naming the spec file and the key."""
        return BrainencInputError(self.path, f"{where}: {message}")

    @property
    def report(self) -> bool:
        return bool(self.analysis.get("report", True))

    def transfer_options(self) -> dict[str, Any]:
        """Keyword arguments of :func:`brainenc.workflows.transfer_to_folder`."""
        options = {k: v for k, v in self.analysis.items()
                   if k not in ("report", "chunk_voxels", "spaces_per_task")}
        if "modalities" in options:
            options["modalities"] = tuple(options["modalities"])
        if "alphas" in options:
            options["alphas"] = [float(a) for a in options["alphas"]]
        return options

    @property
    def memory(self) -> str | int | None:
        """The memory bound of each job, if any."""
        return self.analysis.get("memory")

    def with_memory(self, memory: str | int | None) -> SweepSpec:
        """This spec with the memory bound ``memory`` (None: the spec's own)."""
        if memory is None:
            return self
        return replace(self, analysis={**self.analysis, "memory": memory})

    def identity(self) -> dict[str, Any]:
        """What makes two sweeps the same analysis (stored in the sweep root), as JSON values."""
        analysis = {k: v for k, v in self.analysis.items() if k not in RUN_ONLY_KEYS}
        return json.loads(json.dumps({"dataset": str(self.dataset), "analysis": analysis},
                                     default=str))


def _strings(path: Path, content: dict, key: str) -> tuple[str, ...] | None:
    value = content.get(key)
    if value is None:
        return None
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value or not all(isinstance(v, str) and v for v in value):
        raise BrainencInputError(path, f"{key}: expected a list of names, got {value!r}")
    if len(set(value)) != len(value):
        raise BrainencInputError(path, f"{key}: names repeat in {value}")
    return tuple(value)


def _analysis(path: Path, content: dict) -> dict[str, Any]:
    analysis = content.get("analysis", {})
    if not isinstance(analysis, dict):
        raise BrainencInputError(path, "analysis must be a table ([analysis])")
    unknown = sorted(set(analysis) - set(ANALYSIS_KEYS))
    if unknown:
        raise BrainencInputError(path, f"[analysis]: unknown keys {unknown}; expected some of "
                                       f"{list(ANALYSIS_KEYS)}")
    modalities = analysis.get("modalities")
    if modalities is not None and (not isinstance(modalities, list) or not modalities
                                   or not set(modalities) <= {"story", "movie"}):
        raise BrainencInputError(path, "[analysis] modalities: expected a list of 'story' and/or "
                                       f"'movie', got {modalities!r}")
    alphas = analysis.get("alphas")
    if alphas is not None and (not isinstance(alphas, list) or not alphas
                               or not all(isinstance(a, (int, float)) and a > 0 for a in alphas)):
        raise BrainencInputError(path, f"[analysis] alphas: expected positive numbers, got {alphas!r}")
    for key, what in (("chunk_voxels", "voxels"), ("spaces_per_task", "feature spaces")):
        value = analysis.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise BrainencInputError(path, f"[analysis] {key}: expected a whole number of {what} "
                                           f">= 1, got {value!r}")
    memory = analysis.get("memory")
    if memory is not None and not isinstance(memory, str):
        raise BrainencInputError(path, f"[analysis] memory: expected a size with its unit, such as "
                                       f"\"8GB\", got {memory!r}")
    test_runs = analysis.get("test_runs")
    if test_runs is not None and (
            not isinstance(test_runs, dict) or not set(test_runs) <= {"story", "movie"}
            or not all(isinstance(v, list) and v and all(isinstance(r, str) for r in v)
                       for v in test_runs.values())):
        raise BrainencInputError(path, "[analysis] test_runs: expected a table of run names per "
                                       "modality, e.g. story = [\"wheretheressmoke\"], got "
                                       f"{test_runs!r}")
    return dict(analysis)


def load_sweep_spec(path: str | Path) -> SweepSpec:
    """Read and check a sweep spec; paths in it are relative to the spec's folder.

    Raises
    ------
    BrainencInputError
        The file is missing or not TOML, a key is unknown or of the wrong type,
        or neither ``features`` nor ``layers`` is given.
    """
    path, content = read_toml_spec(path, SPEC_KEYS, "sweep spec")
    for key in ("dataset", "out"):
        if not isinstance(content.get(key), str) or not content[key]:
            raise BrainencInputError(path, f"{key}: expected a path (a string)")
    features = _strings(path, content, "features") or ()
    layers = _strings(path, content, "layers") or ()
    if not features and not layers:
        raise BrainencInputError(path, "features / layers: name at least one feature space "
                                       "(features = [...]) or layer pattern (layers = [...])")

    def resolve(value: str) -> Path:
        candidate = Path(value).expanduser()
        return (candidate if candidate.is_absolute() else path.parent / candidate).resolve()

    return SweepSpec(path, resolve(content["dataset"]), resolve(content["out"]),
                     _strings(path, content, "subjects"), features, layers, _analysis(path, content))

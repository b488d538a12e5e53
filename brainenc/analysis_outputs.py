"""The optional analyses of a transfer run: requested, checked, run, written and reported.

``brainenc transfer`` can add, beside the transfer maps of every feature space,

- paired comparisons of feature spaces (``--compare A:B``, :mod:`brainenc.analyses.comparison`),
- shared semantic dimensions of each space's weights (``--dimensions``,
  :mod:`brainenc.analyses.dimensions`),
- per-ROI tables (``--roi-labels``, :mod:`brainenc.analyses.rois`),
- noise ceilings, computed whenever a modality presents a stimulus more than
  once (:mod:`brainenc.analyses.ceilings`).

Files (``docs/outputs.md``)::

    OUT/comparisons/<A>_vs_<B>.npz     ModelComparison.save
    OUT[/<space>]/dimensions.npz       SharedDimensions.save, beside the space's scores.npz
    OUT/noise_ceilings.npz             <modality>/ev, <modality>/ev_corrected,
                                       <space>/<direction>/r_normalised
    OUT/rois.tsv                       one row per result, ROI and direction

and entries ``comparisons``, ``dimensions``, ``noise_ceilings`` and ``rois`` of
``summary.json``.
"""
from __future__ import annotations

import csv
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from brainenc.errors import BrainencInputError
from brainenc.io.atomic import atomic_path
from brainenc.io.dataset import MODALITIES, Dataset
from brainenc.results import TransferResult, split_direction, write_npz

#: Voxels whose bias-corrected explainable variance is at most this get no normalised r:
#: where EV_c is small its estimate is noisy and r / sqrt(EV_c) unstable (it can exceed 1).
NORMALISE_MIN_EV = 0.05

#: Shuffles of the null of the principal angles unless a request says otherwise.
DEFAULT_PERMUTATIONS = 200

#: Folders of a results folder that a feature space may not be named after.
RESERVED_NAMES = ("figures", "comparisons")

#: Fewest permutations whose smallest p-value, 1 / (1 + n), can fall below 0.05.
MIN_PERMUTATIONS = 19


@dataclass(frozen=True)
class AnalysisRequest:
    """Which optional analyses to run.

    Attributes
    ----------
    compare : tuple of (str, str)
        Feature-space pairs ``(A, B)`` to compare (A − B).
    dimensions : bool
        Shared semantic dimensions of every feature space.
    n_permutations : int, optional
        Shuffles of the null of the principal angles (default :data:`DEFAULT_PERMUTATIONS`).
    roi_labels : tuple of Path
        Label files (:func:`brainenc.analyses.rois.load_rois`).
    ceilings : bool
        Noise ceilings where a modality repeats a stimulus.
    """

    compare: tuple[tuple[str, str], ...] = ()
    dimensions: bool = False
    n_permutations: int | None = None
    roi_labels: tuple[Path, ...] = ()
    ceilings: bool = True


def parse_pairs(values: Sequence[str] | None) -> tuple[tuple[str, str], ...]:
    """``["A:B", ...]`` → ``(("A", "B"), ...)``; a malformed item is a user error."""
    pairs = []
    for value in values or ():
        parts = value.split(":")
        if len(parts) != 2 or not all(parts):
            raise BrainencInputError(None, f"--compare takes pairs A:B of feature-space names, got "
                                           f"{value!r}")
        pairs.append((parts[0], parts[1]))
    return tuple(pairs)


def check_request(request: AnalysisRequest, feature_spaces: Sequence[str], significance: bool) -> None:
    """Refuse requests that cannot run, or whose files would collide, before anything is computed."""
    problems = _pair_problems(request.compare, feature_spaces)
    if len(feature_spaces) > 1:
        problems += [f"a feature space named {name!r} would write its results into the folder "
                     f"OUT/{name} that holds the report's {name}; rename or link the feature space"
                     for name in feature_spaces if name in RESERVED_NAMES]
    if not significance and (request.compare or request.dimensions):
        problems.append("--compare and --dimensions rest on the significance tests; they cannot "
                        "be combined with --no-significance")
    if request.n_permutations is not None and not request.dimensions:
        problems.append("--n-permutations sets the null of --dimensions; it has no effect without it")
    elif request.dimensions and request.n_permutations is not None \
            and request.n_permutations < MIN_PERMUTATIONS:
        problems.append(f"--n-permutations must be at least {MIN_PERMUTATIONS} (the smallest "
                        f"p-value is 1/(1 + n), and a shared dimension needs p <= 0.05), got "
                        f"{request.n_permutations}")
    if problems:
        raise BrainencInputError(None, "; ".join(problems))


def comparison_file(a: str, b: str) -> str:
    """File name of the comparison of ``a`` with ``b``, under ``OUT/comparisons``."""
    return f"{a}_vs_{b}.npz"


def _pair_problems(pairs: Sequence[tuple[str, str]], feature_spaces: Sequence[str]) -> list[str]:
    problems, seen, files = [], set(), {}
    for a, b in pairs:
        unknown = [name for name in (a, b) if name not in feature_spaces]
        if unknown:
            problems.append(f"--compare {a}:{b} names {', '.join(unknown)}, which --features does "
                            f"not list ({', '.join(feature_spaces)})")
        elif a == b:
            problems.append(f"--compare {a}:{b} compares a feature space with itself")
        elif (a, b) in seen or (b, a) in seen:
            problems.append(f"--compare names the pair {a}:{b} twice (B:A is A:B with the sign "
                            "of the difference turned)")
        elif comparison_file(a, b) in files:
            other = files[comparison_file(a, b)]
            problems.append(f"--compare {a}:{b} and {other[0]}:{other[1]} would both write "
                            f"comparisons/{comparison_file(a, b)}")
        seen.add((a, b))
        files.setdefault(comparison_file(a, b), (a, b))
    return problems


def read_roi_labels(request: AnalysisRequest, dataset: Dataset, subject: str):
    """The ROIs of ``request`` for the subject's response space (None without labels)."""
    if not request.roi_labels:
        return None
    from brainenc.analyses.rois import load_rois

    for path in request.roi_labels:
        if not Path(path).is_file():
            raise BrainencInputError(path, "--roi-labels: no such file" if not Path(path).exists()
                                     else "--roi-labels takes label files, not a folder")
    rois = load_rois(request.roi_labels, dataset.runs_for(subject)[0])
    if len(rois) == 0:
        raise BrainencInputError(request.roi_labels[0], "--roi-labels: no voxel carries a label "
                                 "other than 0 (unlabelled); these files define no ROI")
    return rois


def repeated_modalities(dataset: Dataset, subject: str) -> list[str]:
    """Modalities of the subject in which some stimulus is presented more than once."""
    found = []
    for modality in MODALITIES:
        stimuli = [run.stimulus for run in dataset.runs_for(subject, modality)]
        if len(set(stimuli)) < len(stimuli):
            found.append(modality)
    return found


@dataclass
class AnalysisOutputs:
    """What the optional analyses produced for one subject."""

    comparisons: list = field(default_factory=list)
    dimensions: dict = field(default_factory=dict)      # feature space → SharedDimensions
    ceilings: dict = field(default_factory=dict)        # modality → NoiseCeiling
    rois: object = None                                 # RoiSet

    def __bool__(self) -> bool:
        return bool(self.comparisons or self.dimensions or self.ceilings or self.rois is not None)

    def normalised(self, result: TransferResult) -> dict:
        """Ceiling-normalised r of each direction of ``result`` tested on a repeating modality
        (voxels with ``EV_c > NORMALISE_MIN_EV``)."""
        out = {}
        for direction in result.r:
            ceiling = self.ceilings.get(split_direction(direction)[1])
            if ceiling is not None:
                out[direction] = ceiling.normalise(result.r[direction], min_ev=NORMALISE_MIN_EV)
        return out

    def roi_rows(self, results: Sequence[TransferResult]) -> dict:
        from brainenc.analyses.rois import check_rois, roi_table

        rows = {}
        for result in results:
            check_rois(result, self.rois)
            rows[result.feature_space] = roi_table(result, self.rois)
        return rows


def run_analyses(request: AnalysisRequest, dataset: Dataset, subject: str,
                 results: Sequence[TransferResult], comparisons: Sequence, rois=None,
                 seed: int = 0) -> AnalysisOutputs:
    """The dimensions and ceilings of ``request`` for ``results`` (comparisons come
    from :func:`brainenc.analyses.comparison.compare_feature_spaces`)."""
    outputs = AnalysisOutputs(comparisons=list(comparisons), rois=rois)
    if request.dimensions:
        from brainenc.analyses.dimensions import shared_dimensions

        for result in results:
            outputs.dimensions[result.feature_space] = shared_dimensions(
                result, dataset, n_permutations=request.n_permutations or DEFAULT_PERMUTATIONS,
                seed=seed)
    if request.ceilings:
        from brainenc.analyses.ceilings import noise_ceiling

        scored = {split_direction(d)[1] for result in results for d in result.directions}
        for modality in repeated_modalities(dataset, subject):
            if modality in scored:
                outputs.ceilings[modality] = noise_ceiling(dataset, subject, modality)
    return outputs


def save_analyses(outputs: AnalysisOutputs, results: Sequence[TransferResult], folder: Path,
                  result_folder) -> None:
    """Write the files of the module notes into ``folder``; ``result_folder(space)`` is
    where a space's ``scores.npz`` lies."""
    for comparison in outputs.comparisons:
        comparison.save(folder / "comparisons" / comparison_file(comparison.space_a, comparison.space_b))
    for space, dimensions in outputs.dimensions.items():
        dimensions.save(result_folder(space) / "dimensions.npz")
    if outputs.ceilings:
        _save_ceilings(outputs, results, folder / "noise_ceilings.npz")
    if outputs.rois is not None:
        _save_roi_rows(outputs.roi_rows(results), folder / "rois.tsv")


def _save_ceilings(outputs: AnalysisOutputs, results, path: Path) -> None:
    arrays = {}
    for modality, ceiling in outputs.ceilings.items():
        arrays[f"{modality}/ev"] = ceiling.ev
        arrays[f"{modality}/ev_corrected"] = ceiling.ev_corrected
    for result in results:
        for direction, normalised in outputs.normalised(result).items():
            arrays[f"{result.feature_space}/{direction}/r_normalised"] = normalised.values
    path.parent.mkdir(parents=True, exist_ok=True)
    write_npz(path, arrays)


def _save_roi_rows(rows_by_space: dict, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = [{"feature_space": space, **row.as_dict()}
            for space, rows in rows_by_space.items() for row in rows]
    if not rows:
        return
    with atomic_path(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]), delimiter="\t", lineterminator="\n")
        writer.writeheader()
        for row in rows:
            writer.writerow({key: "n/a" if value is None else value for key, value in row.items()})


def summary_entries(outputs: AnalysisOutputs, results: Sequence[TransferResult]) -> dict:
    """The ``summary.json`` entries of the analyses that ran (JSON-ready, NaN still possible)."""
    entries = {}
    if outputs.comparisons:
        entries["comparisons"] = [
            {"space_a": c.space_a, "space_b": c.space_b,
             "directions": {s.direction: asdict(s) for s in c.summaries}}
            for c in outputs.comparisons]
    if outputs.dimensions:
        from brainenc.analyses.dimensions import summary_dict

        entries["dimensions"] = {space: summary_dict(d) for space, d in outputs.dimensions.items()}
    if outputs.ceilings:
        entries["noise_ceilings"] = _ceiling_entries(outputs, results)
    if outputs.rois is not None:
        from brainenc.analyses.rois import roi_summary

        entries["rois"] = {space: roi_summary(rows, outputs.rois)
                           for space, rows in outputs.roi_rows(results).items()}
    return entries


def _ceiling_entries(outputs: AnalysisOutputs, results) -> dict:
    entries = {}
    for modality, ceiling in outputs.ceilings.items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            median_ev = float(np.nanmedian(ceiling.ev_corrected))
        entries[modality] = {
            "stimuli": list(ceiling.stimuli), "runs": [list(r) for r in ceiling.runs],
            "n_repeats": list(ceiling.n_repeats), "median_ev_corrected": median_ev,
            "n_voxels_normalised": int(np.sum(ceiling.ev_corrected > NORMALISE_MIN_EV)),
            "min_ev_normalised": NORMALISE_MIN_EV,
            "mean_r_normalised": {
                result.feature_space: {
                    direction: (float(np.nanmean(n.values)) if n.n_kept else None)
                    for direction, n in outputs.normalised(result).items()
                    if split_direction(direction)[1] == modality}
                for result in results},
        }
    return entries


def report_sections(outputs: AnalysisOutputs, results: Sequence[TransferResult], fig_dir: Path,
                    dpi: int = 90) -> list:
    """The report sections of the analyses that ran (:mod:`brainenc.plotting.analyses`)."""
    from brainenc.plotting import analyses as sections

    reference = results[0]
    found = []
    if outputs.comparisons:
        found.append(sections.comparison_section(outputs.comparisons, reference, fig_dir, dpi=dpi))
    for space, dimensions in outputs.dimensions.items():
        found.append(sections.dimensions_section(dimensions, reference, fig_dir, dpi=dpi))
    if outputs.ceilings:
        normalised = {f"{result.feature_space}: {direction}": value for result in results
                      for direction, value in outputs.normalised(result).items()}
        found.append(sections.ceilings_section(outputs.ceilings, normalised, reference, fig_dir,
                                               dpi=dpi))
    if outputs.rois is not None:
        found.append(sections.rois_section(outputs.roi_rows(results)))
    return found

"""The dataset model every layout reader produces: runs of one or more subjects."""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

from brainenc.timing import TRGrid

Modality = Literal["story", "movie"]
MODALITIES: tuple[str, str] = ("story", "movie")

#: Spaces responses can live in. ``fsaverage5``, ``fsaverage6``: one column per
#: vertex of that fsaverage mesh, left hemisphere then right (2 × 10 242 and
#: 2 × 40 962 columns). ``volume``: voxels of a volume in a template (MNI) space
#: inside ``Run.mask_path``, in the mask's C order (nilearn's NiftiMasker);
#: ``native_volume``: the same in the subject's own space (fMRIPrep ``space-T1w``),
#: which cannot be projected onto fsaverage. ``unknown``: columns with no known
#: anatomy (e.g. pycortex cortical voxels).
ResponseSpace = Literal["fsaverage5", "fsaverage6", "volume", "native_volume", "unknown"]
#: Vertices per hemisphere of the fsaverage spaces.
SURFACE_VERTICES: dict[str, int] = {"fsaverage5": 10_242, "fsaverage6": 40_962}
#: Spaces whose columns are voxels of a brain mask.
VOLUME_SPACES: tuple[str, ...] = ("volume", "native_volume")


@dataclass(frozen=True)
class Run:
    """One fMRI run: a subject hearing a story or watching a movie.

    Parameters
    ----------
    subject : str
        Subject identifier (``UTS01``, ``01``...).
    name : str
        Run identifier, unique within the subject.
    modality : {"story", "movie"}
    stimulus : str
        Stimulus name; its features are ``<feature space>/<stimulus>.hf5``.
    stimulus_path : Path or None
        Where the TextGrid (story), frame-time table or video (movie) is or is
        expected to be. Layouts keep the expected path even when the file is
        missing (features may be precomputed), so a reader must test
        ``stimulus_path.is_file()`` first; None when no stimulus file is named.
    tr_grid : TRGrid
        Times of the volumes on the stimulus clock, *before* trimming.
    trim_start, trim_end : int
        Volumes of ``tr_grid`` dropped at the start and end; the analysed
        responses have ``len(tr_grid) - trim_start - trim_end`` rows.
    response_paths : tuple of Path
        The response file; for GIFTI surfaces the left then the right hemisphere.
    mask_path : Path or None
        Brain mask for NIfTI responses.
    space : {"fsaverage5", "fsaverage6", "volume", "native_volume", "unknown"}
        Where the response columns live (see :data:`ResponseSpace`).
    response_is_trimmed : bool
        True when the response file already holds only the kept rows (Huth
        ``.hf5`` files); False when it holds every volume of ``tr_grid`` and the
        trims are applied on loading (BIDS, manifest).
    space_source : Path or None
        The file that declared ``space`` (``brainenc.json``, the manifest, a
        ``space-fsaverage5`` file name), named when the responses contradict
        it; None when the space was not declared.
    cleaning : ResponseCleaning or None
        Confound regression, detrending and filtering applied on loading
        (:mod:`brainenc.io.confounds`); None for the responses as stored.
    """

    subject: str
    name: str
    modality: Modality
    stimulus: str
    stimulus_path: Path | None
    tr_grid: TRGrid
    trim_start: int
    trim_end: int
    response_paths: tuple[Path, ...]
    mask_path: Path | None = None
    space: ResponseSpace = "unknown"
    response_is_trimmed: bool = True
    space_source: Path | None = None
    cleaning: object | None = None

    def __post_init__(self):
        if self.modality not in MODALITIES:
            raise ValueError(f"modality must be 'story' or 'movie', got {self.modality!r}")
        if self.trim_start < 0 or self.trim_end < 0:
            raise ValueError("trims must be non-negative")

    @property
    def n_trs(self) -> int:
        """Rows of the (trimmed) response matrix."""
        return len(self.tr_grid) - self.trim_start - self.trim_end

    @property
    def response_grid(self) -> TRGrid:
        """The TR grid of the response rows (after trimming)."""
        return self.tr_grid.trimmed(self.trim_start, self.trim_end)


@dataclass
class Dataset:
    """Runs discovered in a dataset folder.

    Parameters
    ----------
    root : Path
        The folder the dataset was discovered in.
    layout : {"huth", "bids", "manifest"}
    runs : list of Run
    preset : str
        Name of the design-matrix preset that suits this layout (``"huth"`` or
        ``"default"``), see :mod:`brainenc.design`.
    feature_root : Path
        Folder holding feature spaces, one sub-folder each.
    """

    root: Path
    layout: str
    runs: list[Run]
    preset: str = "default"
    feature_root: Path | None = None
    meta: dict = field(default_factory=dict)

    @property
    def subjects(self) -> list[str]:
        """Subjects in order of first appearance."""
        return list(dict.fromkeys(run.subject for run in self.runs))

    def with_cleaning(self, cleaning) -> "Dataset":
        """This dataset with every run's responses cleaned on loading by ``cleaning``
        (a :class:`~brainenc.io.confounds.ResponseCleaning`; None or an inactive one
        leaves them as stored)."""
        from brainenc.io.confounds import check_cleaning

        if cleaning is not None and not cleaning.active:
            cleaning = None
        check_cleaning(self.runs, cleaning)
        runs = [replace(run, cleaning=cleaning) for run in self.runs]
        return replace(self, runs=runs)

    def default_test_runs(self, subject: str) -> dict[str, list[str]]:
        """Test runs the layout holds out by default, per modality (runs of ``subject`` only).

        The Huth layout names its repeated test story (``wheretheressmoke``) in
        ``meta["default_test_runs"]``; a modality without default test runs is
        split leave-one-run-out.
        """
        names = {m: {run.name for run in self.runs_for(subject, m)}
                 for m in self.meta.get("default_test_runs", {})}
        return {m: list(runs) for m, runs in self.meta.get("default_test_runs", {}).items()
                if runs and set(runs) <= names[m]}

    def runs_for(self, subject: str, modality: str | None = None) -> list[Run]:
        """Runs of one subject (optionally one modality), in dataset order."""
        if subject not in self.subjects:
            raise KeyError(f"subject {subject!r} not in dataset {self.root} (has {self.subjects})")
        return [
            run for run in self.runs
            if run.subject == subject and (modality is None or run.modality == modality)
        ]

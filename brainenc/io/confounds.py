"""Confound regression, detrending and high-pass filtering of fMRIPrep responses.

fMRIPrep writes, beside each run's BOLD outputs, a table of nuisance signals
(``*_desc-confounds_timeseries.tsv``: motion parameters, white-matter and CSF
signals, CompCor components, cosine drift terms, framewise displacement...).
Which of them to regress out is a choice the field makes with nilearn's
fMRIPrep interface, and brainenc uses it as it is:

* a **named strategy** of :func:`nilearn.interfaces.fmriprep.load_confounds_strategy`
  (``"simple"``: motion, white matter and CSF, cosine high-pass terms;
  ``"compcor"``; ``"ica_aroma"``), or
* a **list of components** for :func:`nilearn.interfaces.fmriprep.load_confounds`
  (``motion``, ``wm_csf``, ``global_signal``, ``compcor``, ``high_pass``...),

with keyword options passed through (``motion="basic"``...). The chosen
columns, the response rows and the run's TR then go to
:func:`nilearn.signal.clean` with ``detrend`` and ``high_pass`` (Butterworth,
in Hz) as asked, ``standardize=None`` (brainenc z-scores each run itself).

Cleaning works on the analysed rows: the volumes left after trimming, and the
same rows of the confounds. Strategies that censor volumes (``scrubbing``,
``scrub``) would break the TR grid the features are resampled to; they are
refused, and so is a non-steady-state volume inside the analysed rows
(``trim_start`` must cover them).
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from brainenc.errors import BrainencInputError

#: Strategies of :func:`nilearn.interfaces.fmriprep.load_confounds_strategy` that keep every volume.
NAMED_STRATEGIES: tuple[str, ...] = ("simple", "compcor", "ica_aroma")
#: Components of :func:`nilearn.interfaces.fmriprep.load_confounds` that keep every volume.
COMPONENTS: tuple[str, ...] = ("motion", "high_pass", "wm_csf", "global_signal", "compcor",
                               "ica_aroma", "tedana", "non_steady_state")
_CENSORING = ("scrubbing", "scrub")


@dataclass(frozen=True)
class ResponseCleaning:
    """How each run's responses are cleaned before the analysis.

    Parameters
    ----------
    strategy : str, sequence of str or None
        A name in :data:`NAMED_STRATEGIES`, or components from
        :data:`COMPONENTS`; None regresses out no confounds.
    detrend : bool
        Remove a linear trend per run.
    high_pass : float or None
        Butterworth high-pass cut-off in Hz (e.g. 0.008, a 125 s period).
    options : dict
        Further keyword arguments of the nilearn loader (``motion="basic"``,
        ``n_compcor=5``...).
    """

    strategy: str | tuple[str, ...] | None = None
    detrend: bool = False
    high_pass: float | None = None
    options: dict = field(default_factory=dict)

    def __post_init__(self):
        strategy = self.strategy
        if isinstance(strategy, (list, tuple)):
            strategy = tuple(strategy)
            object.__setattr__(self, "strategy", strategy)
            censoring = [c for c in strategy if c in _CENSORING]
            unknown = [c for c in strategy if c not in COMPONENTS and c not in _CENSORING]
            if unknown or not strategy:
                raise BrainencInputError(None, f"unknown confound components {unknown or '(none)'}; "
                                               f"expected some of {list(COMPONENTS)}")
        elif strategy is not None:
            censoring = [strategy] if strategy in _CENSORING else []
            if strategy not in NAMED_STRATEGIES and not censoring:
                raise BrainencInputError(None, f"unknown confound strategy {strategy!r}; expected one "
                                               f"of {list(NAMED_STRATEGIES)} or a list of components "
                                               f"from {list(COMPONENTS)}")
        else:
            censoring = []
        if censoring:
            raise BrainencInputError(None, f"confound strategy {censoring[0]!r} censors high-motion "
                                           "volumes, which would break the TR grid the features are "
                                           "resampled to; use a strategy that keeps every volume")
        if self.high_pass is not None and not (np.isfinite(self.high_pass) and self.high_pass > 0):
            raise BrainencInputError(None, f"high_pass must be a positive frequency in Hz, got "
                                           f"{self.high_pass}")

    @property
    def active(self) -> bool:
        """Whether the cleaning changes anything."""
        return self.strategy is not None or self.detrend or self.high_pass is not None

    def settings(self) -> dict:
        """The cleaning as recorded in a result's settings."""
        strategy = list(self.strategy) if isinstance(self.strategy, tuple) else self.strategy
        return {"confounds": strategy, "confound_options": dict(self.options),
                "detrend": self.detrend, "high_pass_hz": self.high_pass}


def load_run_confounds(run, cleaning: ResponseCleaning) -> np.ndarray | None:
    """The confounds of ``run``'s analysed rows (volumes × regressors), or None without a strategy.

    Raises
    ------
    BrainencInputError
        No fMRIPrep confounds file beside the response, a column the strategy
        needs is missing, or a volume the strategy would censor lies in the
        analysed rows.
    """
    if cleaning.strategy is None:
        return None
    from nilearn.interfaces.fmriprep import load_confounds, load_confounds_strategy

    image = str(run.response_paths[0])
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            if isinstance(cleaning.strategy, str):
                table, sample_mask = load_confounds_strategy(
                    image, denoise_strategy=cleaning.strategy, **cleaning.options)
            else:
                table, sample_mask = load_confounds(image, strategy=cleaning.strategy,
                                                    **cleaning.options)
    except (ValueError, FileNotFoundError, KeyError) as error:
        raise BrainencInputError(run.response_paths[0], f"confounds for strategy "
                                 f"{cleaning.strategy!r}: {error}") from None
    n_volumes = len(run.tr_grid)
    if len(table) != n_volumes:
        raise BrainencInputError(run.response_paths[0], f"its confounds file has {len(table)} rows "
                                 f"but the run has {n_volumes} volumes")
    stop = n_volumes - run.trim_end
    if sample_mask is not None:
        dropped = np.setdiff1d(np.arange(n_volumes), sample_mask)
        inside = dropped[(dropped >= run.trim_start) & (dropped < stop)]
        if inside.size:
            raise BrainencInputError(
                run.response_paths[0], f"the confounds mark volumes {inside.tolist()} as to be "
                "censored (non-steady-state or high motion) inside the analysed rows; trim them "
                "(trim_start) or choose a strategy without censoring")
    return table.to_numpy(dtype=np.float64)[run.trim_start:stop]


def clean_run_responses(values: np.ndarray, run, cleaning: ResponseCleaning) -> np.ndarray:
    """``values`` (the analysed rows of ``run``) after :func:`nilearn.signal.clean` with the
    run's confounds, ``detrend`` and ``high_pass``, in the dtype of ``values``."""
    if not cleaning.active:
        return values
    from nilearn import signal

    confounds = load_run_confounds(run, cleaning)
    try:
        cleaned = signal.clean(
            np.asarray(values, dtype=np.float64), confounds=confounds, detrend=cleaning.detrend,
            standardize=None, filter="butterworth" if cleaning.high_pass is not None else False,
            high_pass=cleaning.high_pass, t_r=run.tr_grid.tr)
    except ValueError as error:
        if "padlen" not in str(error):
            raise
        raise BrainencInputError(run.response_paths[0], f"{len(values)} analysed volumes are too "
                                 f"short for the high-pass filter ({error})") from None
    return cleaned.astype(values.dtype)


def check_cleaning(runs, cleaning: ResponseCleaning | None) -> None:
    """Read every run's confounds once (before any response is loaded or model fitted)."""
    if cleaning is None or cleaning.strategy is None:
        return
    for run in runs:
        if not Path(run.response_paths[0]).name.endswith((".nii.gz", ".nii", ".func.gii")):
            raise BrainencInputError(run.response_paths[0], "confound regression reads the "
                                     "fMRIPrep confounds file of a BIDS run (a .nii.gz or "
                                     ".func.gii BOLD output); this response is not one")
        load_run_confounds(run, cleaning)

"""Which feature space predicts a voxel better: paired comparisons of two spaces, per direction.

Both spaces go through one plan (the same runs, splits and responses,
:mod:`brainenc.transfer`), so their predictions of every test run are paired.
For each direction the statistic is

    D = Σ_t (p̂_A − p̂_B)_t y_t,

with ``p̂`` each prediction centred within its runs and scaled to unit norm over
the test rows: ``D`` is the difference of the two correlations with the
response, up to its scale. The prediction difference is made without the
responses it is tested on (direct on named test runs and across modalities,
the sequential steps with leave-one-run-out splits, as in
``docs/statistics.md``), so ``D`` has a null variance of ``Σ_k c_d(k) γ(k)``
given the response autocovariance: under the null that both spaces predict the
voxel's signal equally well, ``D / sd`` is standard normal. ``γ`` estimated
from the response includes the signal, which only inflates the variance (the
test is conservative where there is signal).

Each side is a one-sided test ("A better", "B better"). Across modalities a
better prediction is not yet better *transfer*: two models that carry nothing
of the training modality still predict a driven response of the other modality
with different chance alignments (``docs/statistics.md``, transfer maps). A
cross-modal side therefore also requires the winning space's transfer test:
its p-value is the larger of the paired test's and that space's transfer
p-value (an intersection–union test). The two sides are combined into one
p-value per voxel, ``min(1, 2 · min(p_A, p_B))``, which Benjamini–Hochberg
controls at ``q``; the significant voxels are split by the side that won.
Identical predictions (the same features in both spaces) give no test (NaN).
"""
from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from scipy import stats as scipy_stats

from brainenc.inference import NoiseAutocovariance, prediction_zscores, stouffer
from brainenc.io.dataset import MODALITIES, Dataset
from brainenc.io.features import FeatureSpace
from brainenc.results import DIRECTIONS, TransferResult, grouped_arrays, write_npz
from brainenc.stats import fdr_bh
from brainenc.transfer import BatchPredictions, TransferPlan, analyse_spaces, plan_transfer, prepare_space
from brainenc.transfer.plan import other_modality
from brainenc.transfer.scores import within_test_data


@dataclass(frozen=True)
class ComparisonSummary:
    """One direction of a comparison over all tested voxels."""

    direction: str
    n_voxels: int
    n_a_better: int
    n_b_better: int
    mean_delta_r: float
    mean_delta_r_a_better: float
    fdr_q: float


@dataclass
class ModelComparison:
    """Per-voxel paired comparison of two feature spaces of one subject.

    Attributes
    ----------
    subject, space_a, space_b : str
    delta_r : dict of str to ndarray
        Per direction, ``r_A − r_B`` (the scores of the two results).
    z : dict of str to ndarray
        The paired test's statistic: positive where A predicts better.
    pvalues : dict of str to ndarray
        Per direction, ``min(1, 2 · min(p_A, p_B))`` of the two one-sided sides
        (module notes): across modalities each side includes the winning
        space's transfer test.
    a_better, b_better : dict of str to ndarray of bool
        Benjamini–Hochberg FDR mask of ``pvalues`` at ``fdr_q``, split by the
        side that won.
    summaries : list of ComparisonSummary
    settings : dict
    """

    subject: str
    space_a: str
    space_b: str
    delta_r: dict[str, np.ndarray]
    z: dict[str, np.ndarray]
    pvalues: dict[str, np.ndarray]
    a_better: dict[str, np.ndarray]
    b_better: dict[str, np.ndarray]
    summaries: list[ComparisonSummary] = field(default_factory=list)
    settings: dict = field(default_factory=dict)

    @property
    def label(self) -> str:
        return f"{self.space_a} vs {self.space_b}"

    def summary(self, direction: str) -> ComparisonSummary:
        for item in self.summaries:
            if item.direction == direction:
                return item
        raise KeyError(direction)

    def save(self, path: str | Path) -> Path:
        """Write every per-voxel array to one ``.npz`` (``<quantity>/<direction>`` keys)."""
        arrays = {f"{quantity}/{d}": np.asarray(getattr(self, quantity)[d])
                  for quantity in ("delta_r", "z", "pvalues", "a_better", "b_better")
                  for d in DIRECTIONS}
        meta = {"subject": self.subject, "space_a": self.space_a, "space_b": self.space_b,
                "summaries": [asdict(s) for s in self.summaries], "settings": self.settings}
        return write_npz(path, arrays, meta)

    @classmethod
    def load(cls, path: str | Path) -> "ModelComparison":
        with np.load(path, allow_pickle=False) as data:
            meta = json.loads(str(data["meta_json"]))
            parts = grouped_arrays(data, ("delta_r", "z", "pvalues", "a_better", "b_better"))
        return cls(meta["subject"], meta["space_a"], meta["space_b"],
                   summaries=[ComparisonSummary(**s) for s in meta["summaries"]],
                   settings=meta["settings"], **parts)


def _unit_columns(pred: np.ndarray, lengths: Sequence[int]) -> np.ndarray:
    """``pred`` centred within each run and scaled to unit norm per column (float64)."""
    out = np.asarray(pred, dtype=np.float64).copy()
    start = 0
    for n in lengths:
        out[start:start + n] -= out[start:start + n].mean(axis=0)
        start += n
    norm = np.sqrt(np.einsum("tv,tv->v", out, out))
    with np.errstate(invalid="ignore", divide="ignore"):
        out /= np.where(norm > 0, norm, np.nan)
    return out


def _paired_parts(plan: TransferPlan, spaces, predictions, modality: str, direction: str, columns):
    """(prediction A, prediction B, target modality, runs) of each independent test of a direction."""
    a, b = spaces
    pa, pb = predictions[a.name][modality], predictions[b.name][modality]
    if direction == f"{modality}_to_{modality}":
        parts_a = within_test_data(plan, a, modality, pa, columns)
        parts_b = within_test_data(plan, b, modality, pb, columns)
        return [(x, y, modality, runs) for (x, runs), (y, _) in zip(parts_a, parts_b, strict=True)]
    return [(pa.across, pb.across, other_modality(modality), a.models[modality].cross_idx)]


def paired_zscores(plan: TransferPlan, spaces, predictions: dict[str, dict[str, BatchPredictions]],
                   noise: dict[str, NoiseAutocovariance], columns: slice) -> dict[str, np.ndarray]:
    """The paired test's z per direction for the voxels ``columns`` (module notes)."""
    z = {}
    for modality in MODALITIES:
        for direction in (f"{modality}_to_{modality}", f"{modality}_to_{other_modality(modality)}"):
            parts, weights = [], []
            for pred_a, pred_b, target, runs in _paired_parts(plan, spaces, predictions, modality,
                                                              direction, columns):
                lengths = [plan.run_lengths(target)[i] for i in runs]
                difference = _unit_columns(pred_a, lengths) - _unit_columns(pred_b, lengths)
                Y = plan.stack_responses(target, runs, columns)
                with np.errstate(invalid="ignore"):
                    parts.append(prediction_zscores(difference, Y, noise[target].runs(runs)))
                weights.append(np.sqrt(sum(lengths)))
            z[direction] = parts[0] if len(parts) == 1 else stouffer(np.stack(parts), weights)
    return z


def _summaries(delta_r, z, a_better, b_better, q) -> list[ComparisonSummary]:
    rows = []
    for d in DIRECTIONS:
        tested = np.isfinite(z[d])
        better = a_better[d]
        rows.append(ComparisonSummary(
            direction=d, n_voxels=int(tested.sum()), n_a_better=int(better.sum()),
            n_b_better=int(b_better[d].sum()),
            mean_delta_r=float(np.nanmean(delta_r[d][tested])) if tested.any() else float("nan"),
            mean_delta_r_a_better=float(delta_r[d][better].mean()) if better.any() else float("nan"),
            fdr_q=float(q)))
    return rows


def side_pvalues(result_a: TransferResult, result_b: TransferResult, direction: str,
                 z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One-sided p-values of "A better" and "B better" for one direction; across modalities
    each includes the winning space's transfer test (module notes)."""
    p_a, p_b = scipy_stats.norm.sf(z), scipy_stats.norm.sf(-z)
    if direction in result_a.transfer_pvalues and direction in result_b.transfer_pvalues:
        p_a = np.fmax(p_a, result_a.transfer_pvalues[direction])
        p_b = np.fmax(p_b, result_b.transfer_pvalues[direction])
        p_a[np.isnan(z)] = np.nan
        p_b[np.isnan(z)] = np.nan
    return p_a, p_b


def comparison_from_scores(result_a: TransferResult, result_b: TransferResult,
                           z: dict[str, np.ndarray], fdr_q: float) -> ModelComparison:
    """Assemble a :class:`ModelComparison` from the two results and the paired z-scores."""
    delta_r = {d: np.asarray(result_a.r[d]) - np.asarray(result_b.r[d]) for d in DIRECTIONS}
    pvalues, a_better, b_better = {}, {}, {}
    for d in DIRECTIONS:
        p_a, p_b = side_pvalues(result_a, result_b, d, z[d])
        pvalues[d] = np.minimum(1.0, 2.0 * np.fmin(p_a, p_b))
        significant = fdr_bh(pvalues[d], q=fdr_q)
        a_better[d] = significant & (p_a < p_b)
        b_better[d] = significant & (p_b < p_a)
    settings = {"fdr_q": fdr_q, "test": "paired difference of unit-norm predictions, one-sided "
                "per side; across modalities with the winning space's transfer test",
                "a": {"feature_space": result_a.feature_space, "pair": result_a.settings.get("pair")},
                "b": {"feature_space": result_b.feature_space, "pair": result_b.settings.get("pair")},
                "split": result_a.settings.get("split"), "max_lag": result_a.settings.get("max_lag")}
    return ModelComparison(result_a.subject, result_a.feature_space, result_b.feature_space,
                           delta_r, z, pvalues, a_better, b_better,
                           _summaries(delta_r, z, a_better, b_better, fdr_q), settings)


def compare_feature_spaces(
    dataset: Dataset,
    subject: str,
    features: Sequence[str | FeatureSpace],
    pairs: Sequence[tuple[str, str]],
    *,
    weights_paths=None,
    progress: bool = True,
    **options,
) -> tuple[list[TransferResult], list[ModelComparison]]:
    """Analyse several feature spaces of one subject and compare the pairs ``pairs``.

    Parameters
    ----------
    dataset : Dataset
    subject : str
    features : sequence of str or FeatureSpace
        Every space analysed (those named in ``pairs`` among them).
    pairs : sequence of (str, str)
        Feature-space names ``(A, B)``: ``A`` is compared with ``B``.
    weights_paths : mapping, optional
        As in :func:`brainenc.transfer.run_transfers`.
    progress : bool
    **options
        The options of :func:`brainenc.transfer.run_transfer`; significance
        must be tested (the comparison needs the test's noise estimates).

    Returns
    -------
    results : list of TransferResult
        One per feature space, equal to :func:`brainenc.transfer.run_transfers`'.
    comparisons : list of ModelComparison
        One per pair.
    """
    from brainenc.errors import BrainencInputError

    if options.get("significance", True) is False:
        raise BrainencInputError(None, "comparing feature spaces needs the significance tests; "
                                       "do not combine --compare with --no-significance")
    plan = plan_transfer(dataset, subject, **options)
    spaces = [prepare_space(plan, f, progress) for f in features]
    by_name = {space.name: space for space in spaces}
    for a, b in pairs:
        missing = [name for name in (a, b) if name not in by_name]
        if missing or a == b:
            raise BrainencInputError(None, f"cannot compare {a!r} with {b!r}: the pair must name two "
                                           f"different analysed feature spaces ({sorted(by_name)})")
    paired = {pair: {d: np.full(plan.n_voxels, np.nan) for d in DIRECTIONS} for pair in pairs}

    def on_batch(columns, predictions, noise):
        for (a, b), z in paired.items():
            for direction, values in paired_zscores(plan, (by_name[a], by_name[b]), predictions,
                                                    noise, columns).items():
                z[direction][columns] = values

    results = analyse_spaces(plan, spaces, weights_paths=weights_paths, progress=progress,
                             on_batch=on_batch)
    by_result = {result.feature_space: result for result in results}
    comparisons = [comparison_from_scores(by_result[a], by_result[b], paired[(a, b)],
                                          plan.options.fdr_q) for a, b in pairs]
    return results, comparisons

"""Variance partitioning of two feature spaces with banded ridge regression.

For one subject and one modality (stories or movies), three encoding models
predict held-out runs of that modality, per voxel:

* the joint model of ``[A | B]``, a banded ridge regression with one
  regularisation per feature space (himalaya's ``BandedRidgeCV``);
* the model of ``A`` alone and the model of ``B`` alone, each a
  :class:`~brainenc.encoding.VoxelwiseRidge`.

From their held-out coefficients of determination,

* ``unique_a = R²(A ∪ B) − R²(B)``: what only ``A`` explains;
* ``unique_b = R²(A ∪ B) − R²(A)``: what only ``B`` explains;
* ``shared = R²(A) + R²(B) − R²(A ∪ B)``: what either explains.

The joint model's prediction is also split by feature space (the sum of
``X_A W_A`` and ``X_B W_B``) and each part's share of ``R²(A ∪ B)`` is given
by himalaya's ``r2_score_split`` (``split_a + split_b = r2_joint``): a
decomposition inside one fitted model, which needs no second fit but assigns
the shared variance to whichever space the joint fit weighted.
``docs/variance_partitioning.md`` states the method, how to read negative
values, and the limits.

Split
    As in the transfer analysis (:mod:`brainenc.transfer`): by default each run
    is predicted by models trained on the other runs of the modality and the
    held-out predictions are pooled; or named test runs are predicted by
    models trained on the remaining runs. Inside every fit, the
    regularisation is chosen per voxel by leave-one-run-out cross-validation
    over the training runs, maximising the mean R² over the validation runs
    (the quantity being partitioned), for all three models.

Banded ridge
    The joint model minimises ``‖y − X_A w_A − X_B w_B‖² + λ_A‖w_A‖² +
    λ_B‖w_B‖²``. himalaya searches ``(λ_A, λ_B) = (α / γ_A, α / γ_B)`` with
    ``γ`` drawn on the simplex (``n_iter`` draws from Dirichlet distributions
    of concentration 0.1 and 1, the first draw being ``(½, ½)``) and ``α`` from
    ``banded_alphas``; each voxel keeps its best pair. The draws are fixed by
    ``random_state``, so every fold and every voxel batch searches the same
    candidates. ``banded_alphas`` defaults to the single-space grid: a voxel
    driven by one space is best fitted near a vertex of the simplex
    (``γ_A ≈ 1``, ``λ_A ≈ α``), where the joint model can then match the
    single-space model's penalty; with a coarser grid there it falls short of
    the single-space model and the shortfall shows up as shared variance (on
    the benchmark, a decade-step grid left 15 % of the predicted voxels more
    than 0.01 short, the half-decade grid of the single-space models 2 %).

Cost
    The single-space models cost what one fit of
    :class:`~brainenc.encoding.VoxelwiseRidge` costs. The joint model costs
    ``n_iter × len(banded_alphas)`` ridge solutions per inner fold: for every
    candidate himalaya forms the validation prediction of every voxel, about
    ``2 · n_val · n_train · n_voxels`` flops per inner fold, candidate and
    outer fold, plus a refit for the voxels whose best candidate changed.
    With the defaults (10 draws × the 13 alphas of the ``default`` preset)
    that is 130 validation predictions per inner fold and voxel, against 13
    for each single-space model.
    Measured figures are in ``docs/variance_partitioning.md``
    (``benchmarks/bench_partition.py``).

Memory
    Voxels go through in batches of ``n_targets_batch``: a batch is fitted in
    every fold, predicted, scored and discarded before the next. Besides the
    responses, a batch holds five held-out predictions (``n_test × batch``
    float32) and himalaya's working arrays, about
    ``len(banded_alphas) · n_val · batch`` floats for the candidates'
    predictions and ``len(banded_alphas) · n_features · batch`` for its refit.
    A voxel's results do not depend on its batch; smaller batches repeat
    himalaya's per-fold decompositions once more per batch.
"""
from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path

import numpy as np
from himalaya.ridge import BandedRidgeCV
from himalaya.scoring import r2_score, r2_score_split
from tqdm.auto import tqdm

from brainenc.checks import (
    check_analysis_options,
    check_subject_inputs,
    resolve_feature_spaces,
)
from brainenc.design import build_design, get_preset
from brainenc.encoding import (
    FactoredDesign,
    VoxelwiseRidge,
    _backend_scope,
    leave_one_run_out,
    resolve_backend,
)
from brainenc.errors import BrainencInputError
from brainenc.io.dataset import MODALITIES, Dataset, Run
from brainenc.io.features import FeatureSpace
from brainenc.results import write_npz
from brainenc.stats import r2_score as held_out_r2
from brainenc.transfer import load_modality
from brainenc.transfer.plan import check_repeats_split

__all__ = [
    "CONCENTRATION",
    "DEFAULT_BATCH",
    "DEFAULT_N_ITER",
    "PartitionResult",
    "VariancePartition",
    "partition_variance",
    "run_partition",
]

#: Random draws of the per-space weights ``γ`` searched by the joint model. On the
#: benchmark, 10 draws left the joint model more than 0.01 below the better
#: single-space model on 2.3 % of the predicted voxels, 20 draws on 1.5 %, 5 on 29 %.
DEFAULT_N_ITER = 10
#: Dirichlet concentrations of the draws (himalaya's default): 0.1 favours one dominant
#: space, 1 spreads the draws evenly over the simplex; draws alternate between the two.
CONCENTRATION: tuple[float, ...] = (0.1, 1.0)
#: Default voxel batch: himalaya's working arrays for it stay near 0.5 GB at 1 500 TRs.
DEFAULT_BATCH = 10000
#: Columns converted to float64 at once when splitting R² (bounds the copies).
_SPLIT_CHUNK = 2048

#: (training run indices, test run indices) of each model.
Folds = list[tuple[list[int], list[int]]]


# --------------------------------------------------------------------------- per-voxel numbers


@dataclass
class VariancePartition:
    """Held-out R² of the joint and single-space models, per voxel, and their partition.

    ``a`` and ``b`` name the first and the second feature space. Every
    per-voxel array is NaN for voxels constant in every run.

    Parameters
    ----------
    r2_joint, r2_a, r2_b : ndarray of shape (n_voxels,)
        R² on the pooled held-out runs of the joint model of ``[A | B]`` and
        of the models of ``A`` and of ``B`` alone.
    split_a, split_b : ndarray of shape (n_voxels,)
        The joint model's R² split between its ``A`` and ``B`` parts
        (product measure, himalaya ``r2_score_split``); they sum to ``r2_joint``.
    alphas_joint : ndarray of shape (n_folds, 2, n_voxels)
        Penalties ``(λ_A, λ_B)`` the joint model selected in each fold.
    alphas_a, alphas_b : ndarray of shape (n_folds, n_voxels)
        Penalty the single-space models selected in each fold.
    """

    r2_joint: np.ndarray
    r2_a: np.ndarray
    r2_b: np.ndarray
    split_a: np.ndarray
    split_b: np.ndarray
    alphas_joint: np.ndarray
    alphas_a: np.ndarray
    alphas_b: np.ndarray

    @property
    def unique_a(self) -> np.ndarray:
        """``R²(A ∪ B) − R²(B)``: variance that only ``A`` explains."""
        return self.r2_joint - self.r2_b

    @property
    def unique_b(self) -> np.ndarray:
        """``R²(A ∪ B) − R²(A)``: variance that only ``B`` explains."""
        return self.r2_joint - self.r2_a

    @property
    def shared(self) -> np.ndarray:
        """``R²(A) + R²(B) − R²(A ∪ B)``: variance that either space explains."""
        return self.r2_a + self.r2_b - self.r2_joint

    @property
    def n_voxels(self) -> int:
        return int(self.r2_joint.shape[0])

    def maps(self) -> dict[str, np.ndarray]:
        """Every per-voxel quantity, by name: ``r2_joint``, ``r2_a``, ``r2_b``,
        ``unique_a``, ``unique_b``, ``shared``, ``split_a``, ``split_b``."""
        return {name: getattr(self, name) for name in _MAP_NAMES}

    @classmethod
    def _empty(cls, n_voxels: int, n_folds: int) -> VariancePartition:
        def nan(*shape: int) -> np.ndarray:
            return np.full(shape, np.nan)

        return cls(nan(n_voxels), nan(n_voxels), nan(n_voxels), nan(n_voxels), nan(n_voxels),
                   nan(n_folds, 2, n_voxels), nan(n_folds, n_voxels), nan(n_folds, n_voxels))


#: Per-voxel maps of a partition, in the order of :meth:`VariancePartition.maps`.
_MAP_NAMES = ("r2_joint", "r2_a", "r2_b", "unique_a", "unique_b", "shared", "split_a", "split_b")
#: Arrays that define a partition (the maps above are derived from or equal to them).
_STORED = tuple(f.name for f in fields(VariancePartition))


# --------------------------------------------------------------------------- checks


def _positive_grid(name: str, values: Sequence[float]) -> np.ndarray:
    try:
        grid = np.asarray(values, dtype=float).ravel()
    except (TypeError, ValueError):
        grid = np.empty(0)
    if grid.size == 0 or not np.all(np.isfinite(grid)) or np.any(grid <= 0):
        raise BrainencInputError(None, f"{name} must be positive finite numbers; got {values!r}")
    return np.unique(grid)


def _check_search(n_iter, random_state) -> None:
    problems = []
    if isinstance(n_iter, bool) or not isinstance(n_iter, (int, np.integer)) or n_iter < 1:
        problems.append(f"n_iter must be a whole number >= 1; got {n_iter!r}")
    if isinstance(random_state, bool) or not isinstance(random_state, (int, np.integer)) or random_state < 0:
        problems.append(f"random_state must be a whole number >= 0; got {random_state!r}")
    if problems:
        raise BrainencInputError(None, "; ".join(problems))


def _check_runs(designs_a: Sequence[np.ndarray], designs_b: Sequence[np.ndarray],
                responses: Sequence[np.ndarray]) -> None:
    """Same runs in the same order: equal counts, and equal rows in every run."""
    counts = {len(designs_a), len(designs_b), len(responses)}
    if len(counts) != 1:
        raise BrainencInputError(
            None, f"designs_a, designs_b and responses must hold the same runs; got "
                  f"{len(designs_a)}, {len(designs_b)} and {len(responses)} runs")
    for i, (Xa, Xb, Y) in enumerate(zip(designs_a, designs_b, responses, strict=True)):
        shapes = [np.shape(Xa), np.shape(Xb), np.shape(Y)]
        if any(len(s) != 2 for s in shapes):
            raise BrainencInputError(None, f"run {i}: designs and responses must be 2-D; got "
                                           f"shapes {shapes}")
        if len({s[0] for s in shapes}) != 1:
            raise BrainencInputError(
                None, f"run {i}: design A has {shapes[0][0]} TR rows, design B {shapes[1][0]} and "
                      f"the responses {shapes[2][0]}; both spaces must describe the same TRs")
    for name, arrays in (("design A", designs_a), ("design B", designs_b), ("responses", responses)):
        widths = {np.shape(x)[1] for x in arrays}
        if len(widths) != 1:
            raise BrainencInputError(None, f"{name} has different numbers of columns across runs: "
                                           f"{sorted(widths)}")


def _check_folds(folds: Sequence | None, n_runs: int) -> Folds:
    """Folds as lists of run indices; leave-one-run-out when None."""
    if folds is None:
        if n_runs < 3:
            raise BrainencInputError(
                None, f"leave-one-run-out testing needs at least 3 runs (each model chooses its "
                      f"penalties by leave-one-run-out over at least 2 training runs); got {n_runs}")
        return [([j for j in range(n_runs) if j != i], [i]) for i in range(n_runs)]
    checked: Folds = []
    tested: set[int] = set()
    for k, (train, test) in enumerate(folds):
        train, test = [int(i) for i in train], [int(i) for i in test]
        if any(not 0 <= i < n_runs for i in train + test):
            raise BrainencInputError(None, f"fold {k}: run indices must lie in [0, {n_runs})")
        if len(set(train)) < 2 or not test or set(train) & set(test):
            raise BrainencInputError(
                None, f"fold {k}: needs at least 2 training runs and 1 test run, disjoint; got "
                      f"train {train}, test {test}")
        if tested & set(test):
            raise BrainencInputError(None, f"fold {k}: runs {sorted(tested & set(test))} are tested "
                                           "by an earlier fold; each run is tested at most once")
        tested |= set(test)
        checked.append((train, test))
    if not checked:
        raise BrainencInputError(None, "folds is empty")
    return checked


# --------------------------------------------------------------------------- the partition


@dataclass
class _Fold:
    """What one fold's models share across voxel batches."""

    train: list[int]
    test: list[int]
    factored: dict[str, FactoredDesign]  # "a", "b": the training runs' designs, factorised
    X_test: dict[str, np.ndarray]   # "a", "b": stacked test-run designs


def _stack(arrays: Sequence[np.ndarray], indices: Sequence[int], columns: slice | None = None) -> np.ndarray:
    return np.concatenate([arrays[i] if columns is None else arrays[i][:, columns] for i in indices])


def _fit_joint(X_a: np.ndarray, X_b: np.ndarray, Y: np.ndarray, run_lengths: list[int],
               banded_alphas: np.ndarray, n_iter: int, random_state: int, n_targets_batch: int,
               backend: str) -> BandedRidgeCV:
    """Banded ridge of ``[X_a | X_b]`` with leave-one-run-out selection of ``(λ_A, λ_B)``."""
    model = BandedRidgeCV(
        groups="input",
        cv=leave_one_run_out(run_lengths),
        random_state=int(random_state),
        solver_params={"alphas": banded_alphas, "n_iter": int(n_iter),
                       "concentration": list(CONCENTRATION), "score_func": r2_score,
                       "n_targets_batch": n_targets_batch, "progress_bar": False, "warn": False},
    )
    # constant voxels: himalaya divides by their zero variance, then scores them 0
    with _backend_scope(backend), np.errstate(divide="ignore", invalid="ignore"):
        return model.fit([X_a, X_b], Y)


def _joint_outputs(model: BandedRidgeCV, X_a: np.ndarray, X_b: np.ndarray,
                   backend: str) -> tuple[np.ndarray, np.ndarray]:
    """Split test prediction (2 × TRs × voxels) and penalties ``(λ_A, λ_B)`` (2 × voxels)."""
    with _backend_scope(backend) as module:
        parts = np.asarray(module.to_numpy(model.predict([X_a, X_b], split=True)), dtype=np.float32)
        # himalaya scales space i by exp(δ_i / 2) under a unit penalty: λ_i = exp(−δ_i)
        penalties = np.exp(-np.asarray(module.to_numpy(model.deltas_), dtype=np.float64))
    return parts, penalties


def _split_r2(Y: np.ndarray, parts: np.ndarray) -> np.ndarray:
    """R² of each part of a split prediction (2 × voxels), in float64 column chunks."""
    out = np.empty((parts.shape[0], Y.shape[1]))
    with _backend_scope("numpy"):
        for start in range(0, Y.shape[1], _SPLIT_CHUNK):
            cols = slice(start, start + _SPLIT_CHUNK)
            out[:, cols] = r2_score_split(Y[:, cols].astype(np.float64),
                                          parts[:, :, cols].astype(np.float64))
    return out


def _prepare_folds(runs: Folds, designs_a: list[np.ndarray], designs_b: list[np.ndarray],
                   responses: Sequence[np.ndarray], single: VoxelwiseRidge) -> list[_Fold]:
    """Factorise every fold's single-space training designs and stack its test designs."""
    folds = []
    for train, test in runs:
        lengths = [len(responses[i]) for i in train]
        spaces = (("a", designs_a), ("b", designs_b))
        folds.append(_Fold(train, test,
                           factored={key: single.factor(_stack(d, train), groups=lengths) for key, d in spaces},
                           X_test={key: _stack(d, test) for key, d in spaces}))
    return folds


def _partition_batch(folds: list[_Fold], designs_a: Sequence[np.ndarray], designs_b: Sequence[np.ndarray],
                     responses: Sequence[np.ndarray], columns: slice, result: VariancePartition,
                     joint_options: dict, bar: tqdm) -> None:
    """Fit the voxels ``columns`` in every fold, predict the test runs, score into ``result``."""
    n_test = sum(len(responses[i]) for fold in folds for i in fold.test)
    width = columns.stop - columns.start
    pred = {key: np.empty((n_test, width), dtype=np.float32) for key in ("a", "b")}
    parts = np.empty((2, n_test, width), dtype=np.float32)
    row = 0
    for k, fold in enumerate(folds):
        Y_train = _stack(responses, fold.train, columns)
        rows = slice(row, row + len(fold.X_test["a"]))
        row = rows.stop
        for key in ("a", "b"):
            solution = fold.factored[key].solve(Y_train)
            pred[key][rows] = fold.X_test[key] @ solution.coef
            getattr(result, f"alphas_{key}")[k, columns] = solution.best_alphas
        model = _fit_joint(_stack(designs_a, fold.train), _stack(designs_b, fold.train), Y_train,
                           [len(responses[i]) for i in fold.train], **joint_options)
        parts[:, rows], penalties = _joint_outputs(model, fold.X_test["a"], fold.X_test["b"],
                                                   joint_options["backend"])
        result.alphas_joint[k, :, columns] = penalties
        del model, Y_train
        bar.update()
    Y_test = np.concatenate([_stack(responses, fold.test, columns) for fold in folds])
    result.r2_a[columns] = held_out_r2(pred["a"], Y_test)
    result.r2_b[columns] = held_out_r2(pred["b"], Y_test)
    result.r2_joint[columns] = held_out_r2(parts.sum(axis=0), Y_test)
    varies = np.ptp(Y_test, axis=0) > 0
    split = np.full((2, width), np.nan)
    split[:, varies] = _split_r2(Y_test[:, varies], parts[:, :, varies])
    result.split_a[columns], result.split_b[columns] = split


def partition_variance(
    designs_a: Sequence[np.ndarray],
    designs_b: Sequence[np.ndarray],
    responses: Sequence[np.ndarray],
    folds: Sequence[tuple[Sequence[int], Sequence[int]]] | None = None,
    *,
    alphas: Sequence[float] | None = None,
    banded_alphas: Sequence[float] | None = None,
    n_iter: int = DEFAULT_N_ITER,
    random_state: int = 0,
    backend: str = "auto",
    n_targets_batch: int = DEFAULT_BATCH,
    progress: bool = False,
) -> VariancePartition:
    """Partition the held-out variance of every voxel between two feature spaces.

    Parameters
    ----------
    designs_a, designs_b : sequence of ndarray of shape (n_trs_i, n_features_a or _b)
        Design matrices of each run in spaces A and B (columns centred or
        z-scored within each run, as :func:`brainenc.design.build_design`
        makes them).
    responses : sequence of ndarray of shape (n_trs_i, n_voxels)
        Responses of the same runs, columns z-scored within each run.
    folds : sequence of (train runs, test runs), optional
        Run indices of each model's training and test runs; each run is tested
        at most once, and each model needs at least 2 training runs (its
        penalties are chosen by leave-one-run-out over them). Default:
        leave-one-run-out, every run predicted by the models trained on the
        others.
    alphas : sequence of float, optional
        Penalty grid of the single-space models; default the ``default``
        design preset's, ``logspace(0, 6, 13)``.
    banded_alphas : sequence of float, optional
        Overall penalties ``α`` the joint model tries with every draw of the
        per-space weights; default ``alphas`` (module notes, Banded ridge).
        The joint model's cost grows with their number.
    n_iter : int
        Draws of the per-space weights ``γ`` (:data:`DEFAULT_N_ITER`); the
        joint model tries ``(λ_A, λ_B) = (α / γ_A, α / γ_B)``.
    random_state : int
        Seed of the draws.
    backend : str
        himalaya backend (:func:`brainenc.encoding.resolve_backend`;
        ``"auto"``: a GPU when PyTorch sees one).
    n_targets_batch : int
        Voxels fitted, predicted and scored at once (module notes, Memory).
    progress : bool
        Show a progress bar over batches and folds.

    Returns
    -------
    VariancePartition

    Raises
    ------
    BrainencInputError
        Before any fit, when the runs of the designs and responses differ,
        the folds are impossible or an option is out of range.
    """
    _check_runs(designs_a, designs_b, responses)
    runs = _check_folds(folds, len(responses))
    alpha_grid = _positive_grid("alphas", get_preset("default").alphas if alphas is None else alphas)
    banded_grid = alpha_grid if banded_alphas is None else _positive_grid("banded_alphas", banded_alphas)
    _check_search(n_iter, random_state)
    check_analysis_options(n_targets_batch=n_targets_batch, backend=backend)
    name = resolve_backend(backend)
    designs_a = [np.asarray(x, dtype=np.float32) for x in designs_a]
    designs_b = [np.asarray(x, dtype=np.float32) for x in designs_b]
    single = VoxelwiseRidge(alphas=alpha_grid, score_func="r2", backend=name,
                            n_targets_batch=n_targets_batch, warn_constant=False)
    prepared = _prepare_folds(runs, designs_a, designs_b, responses, single)
    n_voxels = responses[0].shape[1]
    result = VariancePartition._empty(n_voxels, len(runs))
    joint_options = {"banded_alphas": banded_grid.astype(np.float32), "n_iter": int(n_iter),
                     "random_state": int(random_state), "n_targets_batch": int(n_targets_batch),
                     "backend": name}
    batches = [slice(v0, min(v0 + n_targets_batch, n_voxels))
               for v0 in range(0, n_voxels, n_targets_batch)]
    with tqdm(total=len(batches) * len(prepared), desc="variance partition: batches x folds",
              disable=not progress, leave=False) as bar:
        for columns in batches:
            _partition_batch(prepared, designs_a, designs_b, responses, columns, result, joint_options, bar)
    constant = np.all([np.ptp(Y, axis=0) == 0 for Y in responses], axis=0)
    for array in _STORED:
        getattr(result, array)[..., constant] = np.nan
    return result


# --------------------------------------------------------------------------- one subject


@dataclass
class PartitionResult(VariancePartition):
    """A :class:`VariancePartition` of one subject, modality and pair of feature spaces.

    Parameters
    ----------
    subject : str
    modality : {"story", "movie"}
        The modality whose runs trained and tested the models.
    spaces : tuple of (str, str)
        Names of feature spaces A and B (``a`` and ``b`` in the array names).
    space : str
        Response space (``fsaverage5``, ``volume`` or ``unknown``), for maps.
    mask_path : str or None
        Brain mask of volume responses.
    settings : dict
        Preset, delays, penalty grids, search settings, split (run names),
        feature-space folders and widths, dataset.

    Notes
    -----
    Storage (:meth:`save`): one ``.npz``, one array per key — the arrays of
    :class:`VariancePartition` (``r2_joint``, ``r2_a``, ``r2_b``,
    ``split_a``, ``split_b``, ``alphas_joint``, ``alphas_a``, ``alphas_b``),
    the derived maps ``unique_a``, ``unique_b`` and ``shared`` for tools
    that read the file directly, and ``meta_json``, a strict-JSON string with
    ``subject``, ``modality``, ``spaces``, ``space``, ``mask_path`` and
    ``settings``. ``docs/variance_partitioning.md`` lists the keys.
    """

    subject: str = ""
    modality: str = ""
    spaces: tuple[str, str] = ("A", "B")
    space: str = "unknown"
    mask_path: str | None = None
    settings: dict = field(default_factory=dict)

    def save(self, path: str | Path) -> Path:
        """Write the result to one ``.npz`` file (atomically); returns ``path``."""
        arrays = {name: np.asarray(getattr(self, name)) for name in _STORED}
        arrays.update({name: np.asarray(values) for name, values in self.maps().items()})
        meta = {"subject": self.subject, "modality": self.modality, "spaces": list(self.spaces),
                "space": self.space, "mask_path": self.mask_path, "settings": self.settings}
        return write_npz(path, arrays, meta, allow_nan=False)

    @classmethod
    def load(cls, path: str | Path) -> PartitionResult:
        """Read a result written by :meth:`save`."""
        with np.load(path, allow_pickle=False) as data:
            meta = json.loads(str(data["meta_json"]))
            arrays = {name: data[name] for name in _STORED}
        return cls(**arrays, subject=meta["subject"], modality=meta["modality"],
                   spaces=tuple(meta["spaces"]), space=meta["space"], mask_path=meta["mask_path"],
                   settings=meta["settings"])


def _modality_runs(dataset: Dataset, subject: str, modality: str) -> list[Run]:
    if modality not in MODALITIES:
        raise BrainencInputError(None, f"modality must be one of {list(MODALITIES)}; got {modality!r}")
    try:
        runs = dataset.runs_for(subject, modality)
    except KeyError:
        raise BrainencInputError(dataset.root, f"no subject {subject!r}; the dataset has "
                                               f"{dataset.subjects}") from None
    if not runs:
        raise BrainencInputError(dataset.root, f"subject {subject} has no {modality} runs")
    return runs


def _check_coverage(spaces: Sequence[FeatureSpace], runs: Sequence[Run], modality: str) -> None:
    """Every space needs the features of every run's stimulus (the same runs for A and B)."""
    for space in spaces:
        missing = [run for run in runs if not space.path_for(run.stimulus).is_file()]
        if not missing:
            continue
        if len(missing) == len(runs):
            problem = (f"feature space {space.name!r} has no features for any {modality} stimulus "
                       f"of subject {runs[0].subject} (expected e.g. {missing[0].stimulus}.hf5)")
        else:
            problem = (f"feature space {space.name!r} lacks the {modality} stimuli "
                       f"{[run.stimulus for run in missing]} (runs {[run.name for run in missing]}) "
                       f"that the other {modality} runs of subject {runs[0].subject} have; both "
                       "spaces must cover the same runs")
        raise BrainencInputError(space.root, problem)


def _split_runs(runs: Sequence[Run], test_runs: Sequence[str] | None, modality: str,
                root: Path) -> Folds:
    """Leave-one-run-out folds, or one fold testing the named runs (as the transfer analysis)."""
    names = [run.name for run in runs]
    if test_runs is None:
        if len(runs) < 3:
            raise BrainencInputError(
                root, f"subject {runs[0].subject} has {len(runs)} {modality} run(s) ({names}); "
                      f"leave-one-run-out testing needs at least 3, because each test run's models "
                      "choose their penalties by leave-one-run-out over at least 2 training runs")
        check_repeats_split(list(runs), None, modality, runs[0].subject, root, "--test-runs")
        return [([j for j in range(len(runs)) if j != i], [i]) for i in range(len(runs))]
    repeated = sorted({name for name in test_runs if list(test_runs).count(name) > 1})
    if repeated:
        raise BrainencInputError(root, f"--test-runs names {', '.join(repeated)} more than once; a "
                                       "run is tested once")
    unknown = [name for name in test_runs if name not in names]
    if unknown or not test_runs:
        raise BrainencInputError(root, f"test runs {list(test_runs)} must name {modality} runs of "
                                       f"subject {runs[0].subject}: {names}")
    test = [names.index(name) for name in dict.fromkeys(test_runs)]
    check_repeats_split(list(runs), test, modality, runs[0].subject, root, "--test-runs")
    train = [i for i in range(len(runs)) if i not in test]
    if len(train) < 2:
        raise BrainencInputError(
            root, f"testing on {[names[i] for i in test]} leaves {len(train)} {modality} training "
                  "run(s); at least 2 are needed to choose the penalties by leave-one-run-out")
    return [(train, test)]


def run_partition(
    dataset: Dataset,
    subject: str,
    features: Sequence[str | FeatureSpace],
    modality: str = "story",
    *,
    preset: str | None = None,
    alphas: Sequence[float] | None = None,
    banded_alphas: Sequence[float] | None = None,
    n_iter: int = DEFAULT_N_ITER,
    random_state: int = 0,
    test_runs: Sequence[str] | None = None,
    backend: str = "auto",
    n_targets_batch: int = DEFAULT_BATCH,
    progress: bool = True,
) -> PartitionResult:
    """Variance partitioning of two feature spaces for one subject and modality.

    Parameters
    ----------
    dataset : Dataset
        From :func:`brainenc.io.layouts.load_dataset`.
    subject : str
    features : sequence of two str or FeatureSpace
        Feature spaces A and B: names under ``dataset.feature_root``, folders,
        or :class:`~brainenc.io.features.FeatureSpace`.
    modality : {"story", "movie"}
        Whose runs train and test the models (within-modality prediction).
    preset : str, optional
        Design preset (``"huth"``, ``"default"``); defaults to the layout's.
    alphas : sequence of float, optional
        Penalty grid of the single-space models; defaults to the preset's.
    banded_alphas : sequence of float, optional
        Overall penalties of the joint model; defaults to ``alphas``.
    n_iter, random_state, backend, n_targets_batch
        As in :func:`partition_variance`.
    test_runs : sequence of str, optional
        Names of the runs to test on; default leave-one-run-out.
    progress : bool
        Show progress bars.

    Returns
    -------
    PartitionResult

    Raises
    ------
    BrainencInputError
        Before any fit: unknown or repeated feature spaces, a space without
        the features of some of the modality's runs, impossible test runs or
        options, or an unreadable input file.
    """
    if isinstance(features, (str, Path, FeatureSpace)) or len(features) != 2:
        shown = [features] if isinstance(features, (str, Path, FeatureSpace)) else list(features)
        raise BrainencInputError(None, f"variance partitioning needs exactly two feature spaces; "
                                       f"got {len(shown)}: {[str(f) for f in shown]}")
    check_analysis_options(alphas=alphas, n_targets_batch=n_targets_batch, backend=backend)
    if banded_alphas is not None:
        _positive_grid("banded_alphas", banded_alphas)
    _check_search(n_iter, random_state)
    design_preset = get_preset(preset or dataset.preset)
    alpha_grid = alphas if alphas is not None else design_preset.alphas
    banded_grid = banded_alphas if banded_alphas is not None else alpha_grid
    runs = _modality_runs(dataset, subject, modality)
    spaces = resolve_feature_spaces(features, dataset)
    _check_coverage(spaces, runs, modality)
    folds = _split_runs(runs, test_runs, modality, dataset.root)
    check_subject_inputs(dataset, subject, spaces, modalities=(modality,))

    data = load_modality(runs, spaces[0], design_preset)
    designs_b = build_design([spaces[1].load(run.stimulus) for run in runs], runs, preset=design_preset)
    if [run.name for run in data.runs] != [run.name for run in runs]:
        raise BrainencInputError(spaces[0].root, "the loaded runs differ from the subject's runs")
    partition = partition_variance(
        data.designs, designs_b, data.responses, folds, alphas=alpha_grid, banded_alphas=banded_grid,
        n_iter=n_iter, random_state=random_state, backend=backend, n_targets_batch=n_targets_batch,
        progress=progress)

    names = [run.name for run in runs]
    settings = {
        "preset": design_preset.name,
        "delays": list(design_preset.delays),
        "alphas": [float(a) for a in np.unique(np.asarray(alpha_grid, dtype=float))],
        "banded_alphas": [float(a) for a in np.unique(np.asarray(banded_grid, dtype=float))],
        "n_iter": int(n_iter),
        "concentration": list(CONCENTRATION),
        "random_state": int(random_state),
        "score_func": "r2",
        "held_out": "named test runs" if test_runs is not None else "leave-one-run-out",
        "split": [{"train_runs": [names[i] for i in train], "test_runs": [names[i] for i in test]}
                  for train, test in folds],
        "feature_space_paths": [str(space.root) for space in spaces],
        "n_features": [int(data.designs[0].shape[1]), int(designs_b[0].shape[1])],
        "backend": resolve_backend(backend),
        "dataset": str(dataset.root),
        "layout": dataset.layout,
    }
    first = runs[0]
    stored = {name: getattr(partition, name) for name in _STORED}
    return PartitionResult(**stored, subject=subject, modality=modality,
                           spaces=(spaces[0].name, spaces[1].name), space=first.space,
                           mask_path=None if first.mask_path is None else str(first.mask_path),
                           settings=settings)

"""Voxelwise ridge regression with a per-voxel penalty chosen by leave-one-run-out CV.

:class:`VoxelwiseRidge` fits one ridge regression per voxel (response column)
from a shared design matrix, choosing each voxel's penalty ``alpha`` from a grid
by cross-validation over whole runs, then refitting on all the data.

Method
------
fMRI runs are long blocks of samples, and leave-one-run-out folds differ only
in which block is held out. The solver therefore works on per-block products:
for every block ``b`` it forms ``G_b = X_bᵀX_b`` (float64, ``p × p``) and
``C_b = X_bᵀY_b`` (``p × voxels``) once. For a fold, the training Gram matrix
and cross-products are sums of block terms; ``G = V diag(s) Vᵀ`` is
eigendecomposed in float64 and, with ``B = VᵀC`` and ``A = X_val V``, the
validation prediction for a penalty ``a`` is ``A diag(1/(s + a)) B``. A fold
thus costs one eigendecomposition, one ``p × p × voxels`` product and one
``n_val × p × voxels`` product per alpha; the validation predictions, which
every exact correlation score needs, are most of the work. The refit uses the
eigendecomposition of the full Gram matrix, ``W = V diag(1/(s + a_v)) Vᵀ C``
with each voxel's own ``a_v``. Explicit folds (``cv=``) work the same way, with
blocks being the groups of samples that share their role in every fold.

This primal route suits the usual encoding problem, with fewer features than
samples. When features outnumber samples (wide designs: many features times
FIR delays), the dual (kernel) route is used instead: with ``K = XXᵀ``
(``n × n``) the weights are ``W = Xᵀ(K + aI)⁻¹Y``. A fold eigendecomposes its
training kernel ``K_t = U diag(s) Uᵀ``; with ``B = UᵀY_t`` and ``A = K_vt U``
the validation prediction is again ``A diag(1/(s + a)) B``, so the same
scoring code serves both routes, and the refit is
``W = (XᵀU) diag(1/(s + a_v)) UᵀY``. ``XXᵀ`` and ``XᵀX`` share their nonzero
eigenvalues, so both routes give the same solution; the dual one costs
``n × n`` eigendecompositions and ``n_val × n_train`` products per alpha
instead of ``p × p`` and ``n_val × p``.

Everything that depends on the design alone is computed once by
:meth:`VoxelwiseRidge.factor`; :meth:`FactoredDesign.solve` then fits any
batch of voxels, which keeps memory bounded by the batch size in callers that
fit, predict and score voxel batches one at a time.

No intercept is fitted and nothing is centred inside: centre (or z-score) the
columns of ``X`` and ``Y`` within each run before fitting, as is standard for
fMRI encoding models.
"""
from __future__ import annotations

import functools
import importlib
import numbers
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from types import ModuleType
from typing import Protocol, Union

import numpy as np
from himalaya.backend import get_backend, set_backend
from himalaya.backend._utils import ALL_BACKENDS
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.metrics import r2_score
from sklearn.model_selection import GroupKFold, KFold
from sklearn.utils.validation import check_array, check_is_fitted, validate_data

from brainenc.errors import BrainencInputError
from brainenc.stats import prediction_scores

__all__ = [
    "ConstantVoxelWarning",
    "DEFAULT_ALPHAS",
    "DEFAULT_N_FOLDS",
    "FactoredDesign",
    "RidgeSolution",
    "VoxelwiseRidge",
    "leave_one_run_out",
    "resolve_backend",
    "ridge_weights",
]

Fold = tuple[np.ndarray, np.ndarray]
ScoreFunc = Callable[[np.ndarray, np.ndarray], np.ndarray]


class Splitter(Protocol):
    """A scikit-learn cross-validation splitter (``KFold``, ``LeaveOneGroupOut``, ...)."""

    def split(self, X, y=None, groups=None) -> Iterable[tuple[np.ndarray, np.ndarray]]: ...


#: What ``VoxelwiseRidge(cv=...)`` accepts; see :class:`VoxelwiseRidge`.
CVSpec = Union[None, int, Splitter, Sequence[Fold]]
#: A himalaya backend: ``"auto"``, a backend name, or the module ``get_backend()`` returns.
BackendSpec = Union[str, ModuleType]

#: Number of contiguous folds used when neither ``cv`` nor ``groups`` is given.
DEFAULT_N_FOLDS = 5

#: Default alpha grid of :class:`VoxelwiseRidge`: ``logspace(0, 5, 11)``. A tuple,
#: being immutable and comparable, keeps scikit-learn's parameter display working.
DEFAULT_ALPHAS: tuple[float, ...] = tuple(float(a) for a in np.logspace(0, 5, 11))


class ConstantVoxelWarning(UserWarning):
    """Some response columns have zero variance; they get NaN weights and scores."""


# --------------------------------------------------------------------------- folds


def _run_index(runs: Sequence | np.ndarray, n_samples: int | None) -> np.ndarray:
    """Per-sample run number (0, 1, ... in order of first appearance)."""
    arr = np.asarray(runs)
    if arr.ndim != 1 or arr.size == 0:
        raise BrainencInputError(
            None, f"runs must be a non-empty 1-D sequence (run lengths or per-sample labels); "
                  f"got an array of shape {arr.shape}")
    as_labels = (n_samples is not None and arr.size == n_samples) or arr.dtype.kind not in "iuf"
    if as_labels:
        _, first, inverse = np.unique(arr, return_index=True, return_inverse=True)
        # renumber runs by first appearance so fold order follows the data
        rank = np.empty(first.size, dtype=np.int64)
        rank[np.argsort(first, kind="stable")] = np.arange(first.size)
        return rank[inverse.ravel()]
    if not np.all(np.isfinite(arr)) or np.any(arr != np.round(arr)) or np.any(arr <= 0):
        raise BrainencInputError(None, f"run lengths must be positive integers; got {arr.tolist()[:10]}")
    lengths = arr.astype(np.int64)
    if n_samples is not None and lengths.sum() != n_samples:
        raise BrainencInputError(
            None, f"run lengths sum to {int(lengths.sum())} but the data have {n_samples} samples "
                  f"(give one length per run, or one run label per sample)")
    return np.repeat(np.arange(lengths.size), lengths)


def leave_one_run_out(runs: Sequence | np.ndarray, n_samples: int | None = None) -> list[Fold]:
    """Leave-one-run-out folds: each run is held out once, never split.

    Parameters
    ----------
    runs : sequence
        Either run lengths (positive integers summing to the number of
        samples, runs stored one after the other), or one run label per sample
        (labels may be any values and runs need not be contiguous).
    n_samples : int, optional
        Number of samples. When given, ``runs`` of that length are read as
        labels and anything else as lengths, which must sum to ``n_samples``.
        When omitted, a numeric ``runs`` is read as lengths and any other
        (e.g. strings) as labels; pass ``n_samples`` to use integer labels.

    Returns
    -------
    list of (train, val)
        Sorted sample indices; one fold per run, in order of first appearance.

    Examples
    --------
    >>> [val.tolist() for _, val in leave_one_run_out([2, 3])]
    [[0, 1], [2, 3, 4]]
    >>> [val.tolist() for _, val in leave_one_run_out(["a", "b", "a"], n_samples=3)]
    [[0, 2], [1]]
    """
    index = _run_index(runs, n_samples)
    n_runs = int(index.max()) + 1
    if n_runs < 2:
        raise BrainencInputError(None, "leave-one-run-out needs at least 2 runs; got 1")
    return [(np.flatnonzero(index != r), np.flatnonzero(index == r)) for r in range(n_runs)]


def _check_folds(cv: Sequence, n_samples: int) -> list[Fold]:
    """Validate explicit (train, val) pairs and return them as index arrays."""
    try:
        pairs = list(cv)
    except TypeError:
        raise BrainencInputError(
            None, f"cv must be a list of (train, val) index pairs; got {type(cv).__name__}") from None
    if not pairs:
        raise BrainencInputError(None, "cv is empty; give at least one (train, val) pair")
    folds = []
    for k, pair in enumerate(pairs):
        if len(pair) != 2:
            raise BrainencInputError(None, f"cv[{k}] must be a (train, val) pair; got {len(pair)} items")
        parts = []
        for name, idx in zip(("train", "val"), pair, strict=True):
            idx = np.asarray(idx)
            if idx.dtype == bool and idx.shape == (n_samples,):
                idx = np.flatnonzero(idx)
            if idx.ndim != 1 or idx.size == 0 or idx.dtype.kind not in "iu":
                raise BrainencInputError(
                    None, f"cv[{k}] {name} must be a non-empty 1-D array of sample indices; "
                          f"got shape {idx.shape}, dtype {idx.dtype}")
            if idx.min() < 0 or idx.max() >= n_samples:
                raise BrainencInputError(
                    None, f"cv[{k}] {name} indices must lie in [0, {n_samples}); "
                          f"got [{idx.min()}, {idx.max()}]")
            if np.unique(idx).size != idx.size:
                raise BrainencInputError(None, f"cv[{k}] {name} repeats sample indices")
            parts.append(idx.astype(np.int64))
        if np.intersect1d(parts[0], parts[1]).size:
            raise BrainencInputError(None, f"cv[{k}]: train and val share samples")
        folds.append((parts[0], parts[1]))
    return folds


def _resolve_folds(cv: CVSpec, X: np.ndarray, groups: Sequence | np.ndarray | None) -> list[Fold]:
    """The (train, val) folds that ``VoxelwiseRidge(cv=cv)`` uses for ``X`` and ``groups``.

    See the ``cv`` parameter of :class:`VoxelwiseRidge` for the rules.
    """
    n_samples = X.shape[0]
    labels = None if groups is None else _run_index(groups, n_samples)
    if cv is None and labels is not None:
        return leave_one_run_out(labels, n_samples)
    if cv is None:
        cv = DEFAULT_N_FOLDS
    if isinstance(cv, numbers.Integral) and not isinstance(cv, (bool, np.bool_)):
        if cv < 2:
            raise ValueError(f"cv must be at least 2 when it is a number of folds; got {cv}")
        if labels is not None:
            splitter = GroupKFold(n_splits=int(cv))
        elif n_samples < cv:
            raise BrainencInputError(
                None, f"cross-validation with {cv} contiguous folds needs at least {cv} samples; "
                      f"got n_samples={n_samples}")
        else:
            # contiguous blocks, never shuffled: neighbouring fMRI samples are correlated
            splitter = KFold(n_splits=int(cv))
    elif hasattr(cv, "split"):
        splitter = cv
    elif labels is not None:
        raise BrainencInputError(
            None, "groups cannot be combined with explicit (train, val) folds in cv: the folds "
                  "already say which samples validate; pass one or the other")
    else:
        return _check_folds(cv, n_samples)
    return _check_folds(list(splitter.split(X, None, labels)), n_samples)


@dataclass(frozen=True)
class _BlockPlan:
    """Samples grouped into blocks that every fold uses as a whole.

    A block is a set of samples with the same role (train / val / unused) in
    every fold; for leave-one-run-out folds the blocks are the runs. Rows are
    reordered by ``order`` so that each block is a contiguous slice.
    """

    order: np.ndarray | None          # row permutation (None: rows already in block order)
    slices: list[slice]               # rows of each block, after reordering
    train_blocks: list[list[int]]     # per fold
    val_rows: list[slice | np.ndarray]  # per fold, after reordering

    @classmethod
    def from_folds(cls, folds: list[Fold], n_samples: int) -> "_BlockPlan":
        roles = np.zeros((n_samples, len(folds)), dtype=np.int8)
        for f, (train, val) in enumerate(folds):
            roles[train, f] = 1
            roles[val, f] = 2
        _, first, inverse = np.unique(roles, axis=0, return_index=True, return_inverse=True)
        rank = np.empty(first.size, dtype=np.int64)
        rank[np.argsort(first, kind="stable")] = np.arange(first.size)
        block = rank[inverse.ravel()]
        order = np.argsort(block, kind="stable")
        bounds = np.concatenate([[0], np.cumsum(np.bincount(block, minlength=first.size))])
        slices = [slice(int(a), int(b)) for a, b in zip(bounds[:-1], bounds[1:], strict=True)]
        block_roles = roles[order][bounds[:-1]]          # role of each block in each fold
        train_blocks, val_rows = [], []
        for f in range(len(folds)):
            train_blocks.append([b for b in range(len(slices)) if block_roles[b, f] == 1])
            val = [b for b in range(len(slices)) if block_roles[b, f] == 2]
            if all(v1 + 1 == v2 for v1, v2 in zip(val[:-1], val[1:], strict=True)):
                val_rows.append(slice(slices[val[0]].start, slices[val[-1]].stop))
            else:
                val_rows.append(np.concatenate([np.arange(slices[b].start, slices[b].stop) for b in val]))
        if np.array_equal(order, np.arange(n_samples)):
            order = None
        return cls(order, slices, train_blocks, val_rows)


# --------------------------------------------------------------------------- backends


@contextmanager
def _backend_scope(backend: BackendSpec) -> Iterator[ModuleType]:
    """Use himalaya backend ``backend`` (name or module) inside the block; restore the caller's after."""
    previous = get_backend().name
    module = set_backend(backend)
    try:
        yield module
    finally:
        set_backend(previous)


@functools.lru_cache(maxsize=1)
def _cuda_available() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()


def resolve_backend(backend: BackendSpec = "auto") -> str:
    """Name of the himalaya backend to compute with.

    Parameters
    ----------
    backend : str or module
        ``"auto"``: the backend chosen with :func:`himalaya.backend.set_backend`
        when it is not himalaya's default ``"numpy"``; otherwise
        ``"torch_cuda"`` when PyTorch sees a CUDA device, else ``"numpy"`` (on
        CPUs it ran this solver's products and eigendecompositions as fast as
        or faster than ``"torch"``). himalaya cannot tell an explicit
        ``set_backend("numpy")`` from its default: pass ``"numpy"`` to force
        it on a GPU machine.
        Any himalaya backend name (``numpy``, ``torch``, ``torch_cuda``,
        ``cupy``, ``torch_mps``), or a backend module as returned by
        :func:`himalaya.backend.get_backend`, gives that backend, once it is
        known to load.

    Returns
    -------
    str

    Examples
    --------
    >>> resolve_backend("numpy")
    'numpy'
    """
    if isinstance(backend, ModuleType):
        if getattr(backend, "name", None) not in ALL_BACKENDS:
            raise ValueError(f"backend module {backend.__name__} is not a himalaya backend; "
                             f"expected one of {ALL_BACKENDS}")
        return backend.name
    if isinstance(backend, str) and backend == "auto":
        user_choice = get_backend().name
        if user_choice != "numpy":
            return user_choice
        return "torch_cuda" if _cuda_available() else "numpy"
    if not isinstance(backend, str) or backend not in ALL_BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; expected 'auto', one of {ALL_BACKENDS} "
                         "or a module from himalaya.backend.get_backend()")
    importlib.import_module(f"himalaya.backend.{backend}")  # fails early if unavailable
    return backend


def _eigh_gram(backend: ModuleType, gram, dtype: str):
    """Eigenvalues (float64 numpy) and eigenvectors (``dtype``) of ``XᵀX`` or ``XXᵀ``.

    Eigenvalues at round-off level are dropped with their eigenvectors. For
    ``XᵀX`` these span the null space of ``X``, where ``XᵀY`` has no
    component, and keeping them would only amplify float32 rounding in
    ``VᵀXᵀY`` by ``1 / alpha``; with more features than samples this also
    shrinks every later product. For ``XXᵀ`` they span the directions that
    ``Xᵀ`` maps to zero, which no prediction or weight can reach.
    """
    # numpy's eigh (LAPACK syevd) is several times faster than the scipy
    # default that himalaya's numpy backend maps eigh to
    s, V = np.linalg.eigh(gram) if backend.name == "numpy" else backend.eigh(gram)
    s = np.asarray(backend.to_numpy(s), dtype=np.float64)
    n_null = int(np.sum(s <= max(s.max(), 0.0) * s.size * np.finfo(np.float64).eps))  # ascending order
    return s[n_null:], backend.asarray(V[:, n_null:], dtype=dtype)


def _ridge_from_eigh(backend: ModuleType, V, s: np.ndarray, C, alphas: np.ndarray, dtype: str):
    """``V diag(1/(s + a_v)) Vᵀ C`` column by column: ridge weights from ``XᵀX = V diag(s) Vᵀ``."""
    shrink = backend.asarray(1.0 / (s[:, None] + alphas[None, :]), dtype=dtype)
    return backend.matmul(V, backend.matmul(V.T, C) * shrink)


def ridge_weights(X, Y, alphas, backend: BackendSpec = "auto", dtype: str = "float32",
                  n_targets_batch: int = 20000) -> np.ndarray:
    """Closed-form ridge weights ``(XᵀX + a_v I)⁻¹ XᵀY[:, v]`` with one penalty per voxel.

    Uses one eigendecomposition of ``XᵀX`` (float64) for all penalties. No
    intercept: centre the columns of ``X`` and ``Y`` first.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
    Y : array-like of shape (n_samples, n_voxels)
    alphas : float or array-like of shape (n_voxels,)
        Positive penalty, shared or per voxel.
    backend : str or module
        See :func:`resolve_backend`.
    dtype : {"float32", "float64"}
        Precision of the products with ``Y``.
    n_targets_batch : int
        Voxels processed at once.

    Returns
    -------
    ndarray of shape (n_features, n_voxels), float32
    """
    if dtype not in ("float32", "float64"):
        raise ValueError(f"dtype must be 'float32' or 'float64'; got {dtype!r}")
    X = _check_matrix("X", X, dtype)
    Y = _check_matrix("Y", Y, dtype)
    if Y.shape[0] != X.shape[0]:
        raise BrainencInputError(
            None, f"X and Y must have the same number of rows (samples); got X {X.shape}, Y {Y.shape}")
    per_voxel = np.broadcast_to(np.asarray(alphas, dtype=np.float64), (Y.shape[1],))
    _check_alphas(per_voxel)
    with _backend_scope(resolve_backend(backend)) as module:
        X_work = module.asarray(X)
        X64 = module.asarray(X, dtype="float64")
        s, V = _eigh_gram(module, module.matmul(X64.T, X64), dtype)
        del X64
        weights = np.empty((X.shape[1], Y.shape[1]), dtype=np.float32)
        for start in range(0, Y.shape[1], n_targets_batch):
            batch = slice(start, start + n_targets_batch)
            C = module.matmul(X_work.T, module.asarray(Y[:, batch]))
            weights[:, batch] = module.to_numpy(_ridge_from_eigh(module, V, s, C, per_voxel[batch], dtype))
    return weights


# --------------------------------------------------------------------------- validation


def _check_matrix(name: str, value, dtype: str) -> np.ndarray:
    arr = np.asarray(value)
    if arr.ndim != 2:
        hint = " (use Y[:, None] for a single voxel)" if name == "Y" and arr.ndim == 1 else ""
        raise BrainencInputError(
            None, f"{name} must be a 2-D array (samples × columns); got {arr.ndim}-D shape {arr.shape}{hint}")
    if arr.dtype.kind not in "iufb":
        raise BrainencInputError(None, f"{name} must be numeric; got dtype {arr.dtype}")
    if 0 in arr.shape:
        raise BrainencInputError(None, f"{name} must not be empty; got shape {arr.shape}")
    arr = np.ascontiguousarray(arr, dtype=dtype)
    if not np.isfinite(arr).all():
        bad = int(np.count_nonzero(~np.isfinite(arr)))
        raise BrainencInputError(None, f"{name} must hold finite values; got {bad} NaN or infinite entries")
    return arr


def _check_alphas(alphas) -> np.ndarray:
    arr = np.atleast_1d(np.asarray(alphas, dtype=np.float64))
    if arr.ndim != 1 or arr.size == 0 or not np.all(np.isfinite(arr)) or np.any(arr <= 0):
        raise BrainencInputError(None, f"alphas must be a 1-D array of positive finite numbers; got {alphas!r}")
    return arr


def _safe_ratio(num: np.ndarray, den: np.ndarray, fill: float) -> np.ndarray:
    """``num / den`` where ``den > 0``, ``fill`` elsewhere, without floating-point warnings."""
    out = np.full(np.broadcast(num, den).shape, fill, dtype=np.float64)
    np.divide(num, den, out=out, where=den > 0)
    return out


# --------------------------------------------------------------------------- fold scoring


class _FoldScorer:
    """Scores of one validation set for every alpha, from ``A = X_val V`` and ``B = VᵀC``.

    ``weights[i]`` is ``1 / (s + alphas[i])``; the prediction for alpha ``i``
    is ``P_i = (A * weights[i]) @ B``. Correlation and R² need only two sums
    per voxel, ``Σ_t P_i Y`` and ``Σ_t P_i²``. The first is
    ``weights[i] @ ((AᵀY) * B)`` for every alpha at once; the second is
    ``Σ_t P_i² = b_vᵀ D_i (AᵀA) D_i b_v`` per voxel, which costs
    ``n_columns²`` instead of ``n_rows × n_columns`` per voxel and alpha. The
    correlation score takes this route when ``A`` has fewer columns than rows
    (the primal route with fewer features than validation samples). R² forms
    every ``P_i``: its residual sum of squares would lose precision as the
    difference of the expanded sums.
    """

    def __init__(self, backend: ModuleType, score_func, A, weights):
        self.backend = backend
        self.score_func = score_func
        self.weights = weights
        if score_func == "correlation":
            # centring A centres every prediction: (A - 1 mean(A)) D B = P - 1 mean(P)
            A = A - A.mean(0)[None, :]
        self.A = A
        self.gram = None
        if score_func == "correlation" and A.shape[1] < A.shape[0]:
            A64 = backend.asarray(A, dtype="float64")
            self.gram = backend.asarray(backend.matmul(A64.T, A64), dtype=weights.dtype)

    def _to64(self, x) -> np.ndarray:
        """Per-voxel sums, brought to the host for the final ratios."""
        return np.asarray(self.backend.to_numpy(x), dtype=np.float64)

    def _sums(self, B, Y) -> tuple[np.ndarray, np.ndarray]:
        """``Σ_t P_i Y`` and ``Σ_t P_i²`` per alpha and voxel (float64, n_alphas × voxels)."""
        backend = self.backend
        n_alphas = self.weights.shape[0]
        if self.gram is None:
            cross = np.empty((n_alphas, Y.shape[1]))
            squares = np.empty((n_alphas, Y.shape[1]))
            for i in range(n_alphas):
                P = backend.matmul(self.A * self.weights[i][None, :], B)
                cross[i], squares[i] = self._to64((P * Y).sum(0)), self._to64((P * P).sum(0))
            return cross, squares
        cross = self._to64(backend.matmul(self.weights, backend.matmul(self.A.T, Y) * B))
        squares = np.empty((n_alphas, Y.shape[1]))
        for i in range(n_alphas):
            w = self.weights[i]
            squares[i] = self._to64((backend.matmul(self.gram * w[:, None] * w[None, :], B) * B).sum(0))
        return cross, squares

    def __call__(self, B, Y_val) -> np.ndarray:
        if self.score_func == "correlation":
            Yc = Y_val - Y_val.mean(0)[None, :]
            cross, ss_p = self._sums(B, Yc)
            ss_y = self._to64((Yc * Yc).sum(0))
            # an undefined correlation (flat prediction or flat validation data) counts as 0
            return _safe_ratio(cross, np.sqrt(np.clip(ss_p, 0.0, None) * ss_y[None, :]), 0.0)
        if self.score_func == "r2":
            return self._r2_scores(B, Y_val)
        return self._custom_scores(B, Y_val)

    def _r2_scores(self, B, Y_val) -> np.ndarray:
        """``1 - Σ(Y - P_i)² / Σ(Y - mean Y)²`` per alpha (0 for flat validation data)."""
        Yc = Y_val - Y_val.mean(0)[None, :]
        ss_tot = self._to64((Yc * Yc).sum(0))
        scores = np.empty((self.weights.shape[0], Y_val.shape[1]), dtype=np.float64)
        for i in range(self.weights.shape[0]):
            R = Y_val - self.backend.matmul(self.A * self.weights[i][None, :], B)
            scores[i] = 1.0 - _safe_ratio(self._to64((R * R).sum(0)), ss_tot, 1.0)
        return scores

    def _custom_scores(self, B, Y_val) -> np.ndarray:
        """Scores of a user's ``score_func(y_true, y_pred)``, one call per alpha."""
        backend = self.backend
        y_true = backend.to_numpy(Y_val)
        scores = np.empty((self.weights.shape[0], Y_val.shape[1]), dtype=np.float64)
        for i in range(self.weights.shape[0]):
            P = backend.to_numpy(backend.matmul(self.A * self.weights[i][None, :], B))
            value = np.asarray(self.score_func(y_true, P), dtype=np.float64)
            if value.shape != (Y_val.shape[1],):
                raise ValueError(f"score_func must return one score per voxel, shape "
                                 f"({Y_val.shape[1]},); got shape {value.shape}")
            scores[i] = value
        return scores


# --------------------------------------------------------------------------- fold solvers


def _backend_rows(backend: ModuleType, rows: list[slice | np.ndarray]) -> list:
    """Row selectors on the backend's device, like the data they index."""
    return [r if isinstance(r, slice) else backend.asarray(r) for r in rows]


def _choose_alphas(scores: np.ndarray, alphas: np.ndarray) -> np.ndarray:
    """Best alpha per voxel from ``scores`` (n_alphas × voxels).

    Ties (e.g. voxels no alpha can predict) go to the larger, more
    conservative alpha.
    """
    descending = np.argsort(alphas, kind="stable")[::-1]
    return alphas[descending[np.argmax(scores[descending], axis=0)]]


class _PrimalSolver:
    """Folds solved through eigendecompositions of ``XᵀX`` (``n_features²``).

    Per-block Gram matrices are summed into each fold's training Gram matrix;
    for a batch of voxels the per-block cross-products ``X_bᵀY_b`` are summed
    the same way.
    """

    name = "primal"

    def __init__(self, backend: ModuleType, X: np.ndarray, plan: _BlockPlan, alphas: np.ndarray,
                 score_func, dtype: str):
        self.backend, self.plan, self.dtype = backend, plan, dtype
        self.X = backend.asarray(X, dtype=dtype)
        grams = []
        for sl in plan.slices:
            Xb = backend.asarray(X[sl], dtype="float64")
            grams.append(backend.matmul(Xb.T, Xb))
        self.val_rows = _backend_rows(backend, plan.val_rows)
        self.scorers, self.bases = [], []
        for train_blocks, val in zip(plan.train_blocks, self.val_rows, strict=True):
            s, V = _eigh_gram(backend, sum(grams[b] for b in train_blocks), dtype)
            weights = backend.asarray(1.0 / (s[None, :] + alphas[:, None]), dtype=dtype)
            self.scorers.append(_FoldScorer(backend, score_func, backend.matmul(self.X[val], V), weights))
            self.bases.append(V)
        self.s_all, self.V_all = _eigh_gram(backend, sum(grams), dtype)

    def solve(self, Y, alphas: np.ndarray) -> tuple[np.ndarray, np.ndarray, object]:
        """Fold-averaged scores, chosen alphas and refit weights (a backend array) for ``Y``."""
        backend = self.backend
        cross = [backend.matmul(self.X[sl].T, Y[sl]) for sl in self.plan.slices]
        scores = np.zeros((alphas.size, Y.shape[1]))
        for train_blocks, val, V, scorer in zip(self.plan.train_blocks, self.val_rows, self.bases,
                                                self.scorers, strict=True):
            C_train = sum(cross[b] for b in train_blocks)
            B = backend.matmul(V.T, C_train)
            scores += scorer(B, Y[val])
            del B, C_train
        scores /= len(self.scorers)
        chosen = _choose_alphas(scores, alphas)
        C_all = sum(cross)
        del cross
        return scores, chosen, _ridge_from_eigh(backend, self.V_all, self.s_all, C_all, chosen, self.dtype)


class _DualSolver:
    """Folds solved through eigendecompositions of the kernel ``XXᵀ`` (``n_samples²``).

    With a fold's training kernel ``K_t = U diag(s) Uᵀ``, the validation
    prediction for a penalty ``a`` is ``K_vt U diag(1/(s + a)) UᵀY_t``, and the
    weights refit on all samples are ``XᵀU diag(1/(s + a_v)) UᵀY`` per voxel.
    ``XXᵀ`` and ``XᵀX`` share their nonzero eigenvalues, so these equal the
    primal solutions.
    """

    name = "dual"

    def __init__(self, backend: ModuleType, X: np.ndarray, plan: _BlockPlan, alphas: np.ndarray,
                 score_func, dtype: str):
        self.backend, self.dtype = backend, dtype
        X64 = backend.asarray(X, dtype="float64")
        kernel = backend.matmul(X64, X64.T)
        self.val_rows = _backend_rows(backend, plan.val_rows)
        self.train_rows, self.scorers, self.bases = [], [], []
        for train_blocks, val in zip(plan.train_blocks, self.val_rows, strict=True):
            rows = backend.asarray(np.concatenate(
                [np.arange(plan.slices[b].start, plan.slices[b].stop) for b in train_blocks]))
            s, U = _eigh_gram(backend, kernel[rows][:, rows], "float64")
            weights = backend.asarray(1.0 / (s[None, :] + alphas[:, None]), dtype=dtype)
            A = backend.asarray(backend.matmul(kernel[val][:, rows], U), dtype=dtype)
            self.scorers.append(_FoldScorer(backend, score_func, A, weights))
            self.bases.append(backend.asarray(U, dtype=dtype))
            self.train_rows.append(rows)
        self.s_all, U_all = _eigh_gram(backend, kernel, "float64")
        self.U_all = backend.asarray(U_all, dtype=dtype)
        self.XtU = backend.asarray(backend.matmul(X64.T, U_all), dtype=dtype)

    def solve(self, Y, alphas: np.ndarray) -> tuple[np.ndarray, np.ndarray, object]:
        """Fold-averaged scores, chosen alphas and refit weights (a backend array) for ``Y``."""
        backend = self.backend
        scores = np.zeros((alphas.size, Y.shape[1]))
        for rows, val, U, scorer in zip(self.train_rows, self.val_rows, self.bases, self.scorers,
                                        strict=True):
            B = backend.matmul(U.T, Y[rows])
            scores += scorer(B, Y[val])
            del B
        scores /= len(self.scorers)
        chosen = _choose_alphas(scores, alphas)
        shrink = backend.asarray(1.0 / (self.s_all[:, None] + chosen[None, :]), dtype=self.dtype)
        return scores, chosen, backend.matmul(self.XtU, backend.matmul(self.U_all.T, Y) * shrink)


@dataclass(frozen=True)
class RidgeSolution:
    """Ridge fits of a set of voxels, as :meth:`FactoredDesign.solve` returns them.

    Attributes
    ----------
    coef : ndarray of shape (n_features, n_voxels)
        Weights refit on all samples at each voxel's alpha, in the model's
        ``dtype`` (float32 by default); NaN for constant voxels.
    best_alphas : ndarray of shape (n_voxels,)
        Selected alpha per voxel (NaN for constant voxels).
    cv_scores : ndarray of shape (n_alphas, n_voxels)
        Validation score per alpha, averaged over folds (NaN for constant voxels).
    constant_voxels : ndarray of bool, shape (n_voxels,)
    """

    coef: np.ndarray
    best_alphas: np.ndarray
    cv_scores: np.ndarray
    constant_voxels: np.ndarray


class FactoredDesign:
    """A design matrix factorised once, to fit ridge models of any set of voxels.

    Made by :meth:`VoxelwiseRidge.factor`. Everything that depends on ``X``
    and the folds alone (Gram or kernel matrices and their eigendecompositions,
    validation projections) is computed once; :meth:`solve` then costs only
    products with the responses, so voxels can be fitted batch by batch, each
    batch giving the same result as a fit of all voxels together.

    Attributes
    ----------
    solver : {"primal", "dual"}
        The formulation in use (see :class:`VoxelwiseRidge`).
    backend : str
        The himalaya backend holding the factors.
    n_samples, n_features : int
        Shape of the factorised ``X``.
    """

    def __init__(self, factors: _PrimalSolver | _DualSolver, backend: str, order: np.ndarray | None,
                 alphas: np.ndarray, shape: tuple[int, int], n_targets_batch: int, dtype: str):
        self._factors = factors
        self._order = order
        self._alphas = alphas
        self._n_targets_batch = n_targets_batch
        self._dtype = dtype
        self.solver = factors.name
        self.backend = backend
        self.n_samples, self.n_features = shape

    def solve(self, Y) -> RidgeSolution:
        """Choose each voxel's alpha by cross-validation and refit on all samples.

        Parameters
        ----------
        Y : array-like of shape (n_samples, n_voxels)
            Responses, rows matching the factorised ``X``, columns centred
            within each run.

        Returns
        -------
        RidgeSolution
        """
        Y = _check_matrix("Y", Y, self._dtype)
        if Y.shape[0] != self.n_samples:
            raise BrainencInputError(
                None, f"X and Y must have the same number of rows (samples); got X "
                      f"{(self.n_samples, self.n_features)}, Y {Y.shape}")
        if self._order is not None:
            Y = Y[self._order]
        n_voxels = Y.shape[1]
        constant = np.ptp(Y, axis=0) == 0
        voxels = np.flatnonzero(~constant)
        cv_scores = np.full((self._alphas.size, n_voxels), np.nan)
        best_alphas = np.full(n_voxels, np.nan)
        coef = np.full((self.n_features, n_voxels), np.nan, dtype=self._dtype)
        with _backend_scope(self.backend) as backend:
            for start in range(0, voxels.size, self._n_targets_batch):
                batch = voxels[start:start + self._n_targets_batch]
                contiguous = batch[-1] - batch[0] + 1 == batch.size
                Yb = backend.asarray(Y[:, batch[0]:batch[-1] + 1] if contiguous else Y[:, batch],
                                     dtype=self._dtype)
                scores, chosen, weights = self._factors.solve(Yb, self._alphas)
                cv_scores[:, batch] = scores
                best_alphas[batch] = chosen
                coef[:, batch] = backend.to_numpy(weights)
                del Yb, weights
        return RidgeSolution(coef, best_alphas, cv_scores, constant)


# --------------------------------------------------------------------------- estimator


class VoxelwiseRidge(RegressorMixin, BaseEstimator):
    """Ridge regression per voxel with the penalty chosen by cross-validation.

    A scikit-learn regressor: it takes ``fit(X, y)``, ``predict(X)`` and
    ``score(X, y)``, can be cloned, pickled and put in a
    :class:`~sklearn.pipeline.Pipeline`, and passes
    :func:`sklearn.utils.estimator_checks.check_estimator`.

    Parameters
    ----------
    alphas : array-like of shape (n_alphas,)
        Candidate penalties (positive); the ridge solution for a voxel is
        ``(XᵀX + alpha I)⁻¹ Xᵀy``.
    cv : None, int, splitter or sequence of (train, val) pairs
        The folds on which each voxel's alpha is chosen. Samples are never
        shuffled: neighbouring fMRI samples are correlated.

        - ``None`` (default): leave-one-run-out over the ``groups`` given to
          :meth:`fit`; without ``groups``, ``DEFAULT_N_FOLDS`` (5) contiguous
          blocks of samples (``KFold(5)`` without shuffling).
        - ``int k``: ``k`` contiguous blocks (``KFold(k)``), or ``k`` folds of
          whole runs (``GroupKFold(k)``) when :meth:`fit` gets ``groups``.
        - a scikit-learn splitter (any object with ``split``, e.g.
          ``LeaveOneGroupOut()`` or ``TimeSeriesSplit()``): its folds, from
          ``cv.split(X, None, groups)``.
        - a sequence of ``(train, val)`` pairs of sample indices (or boolean
          masks): these folds; ``groups`` must then be ``None``.

    score_func : {"correlation", "r2"} or callable
        Validation score maximised when choosing alpha: Pearson correlation
        between prediction and data on the held-out samples, the coefficient
        of determination, or ``f(y_true, y_pred) -> scores`` taking numpy
        arrays (samples × voxels) and returning one score per voxel. Fold
        scores are averaged over folds. An undefined correlation or R² on a
        fold (flat data or flat prediction) counts as 0. This is the
        selection score only; :meth:`score` is always R².
    backend : str or module
        himalaya backend: ``"auto"``, a backend name or a backend module as
        returned by :func:`himalaya.backend.get_backend` (see
        :func:`resolve_backend`). ``"auto"`` uses a backend chosen with
        :func:`himalaya.backend.set_backend`, else a GPU when one is visible,
        else the faster CPU backend. It is resolved at each fit. A module is
        reported by its name by :meth:`get_params` (and so by ``clone`` and
        pickling), since modules can be neither copied nor pickled.
    n_targets_batch : int
        Voxels processed at once. With the primal solver, working memory is
        about ``(n_blocks + 3) · n_features · n_targets_batch`` floats, plus
        ``n_folds · n_features²`` for the folds' eigenvectors and
        ``n_samples · n_features`` for the validation projections; with the
        dual solver, about ``(n_samples + n_features) · n_targets_batch``
        floats plus ``(n_folds + 2) · n_samples²`` and
        ``n_samples · n_features``.
    dtype : {"float32", "float64"}
        Precision of the large products and of ``coef_``. Gram and kernel
        matrices and their eigendecompositions are always float64.
    warn_constant : bool
        Warn (once per fit, with a count) about voxels with zero variance.
    solver : {"auto", "primal", "dual"}
        ``"primal"`` eigendecomposes ``XᵀX`` (``n_features × n_features``) per
        fold; ``"dual"`` eigendecomposes the kernel ``XXᵀ``
        (``n_samples × n_samples``) per fold and forms the weights as
        ``Xᵀ(XXᵀ + alpha I)⁻¹y``. Both give the same weights, alphas and
        scores (to float rounding). ``"auto"`` takes the dual route when
        ``X`` has more columns than rows, where it is much cheaper.

    Attributes
    ----------
    coef_ : ndarray of shape (n_features, n_voxels)
        Weights refit on all samples with each voxel's selected alpha, in
        ``dtype``; NaN columns for constant voxels. Note the himalaya layout
        (features first), and that a 1-D ``y`` gives ``n_voxels = 1``.
    best_alphas_ : ndarray of shape (n_voxels,)
        Selected alpha per voxel (NaN for constant voxels). Ties go to the
        larger alpha.
    cv_scores_ : ndarray of shape (n_alphas, n_voxels)
        Validation score per alpha, averaged over folds (NaN for constant voxels).
    constant_voxels_ : ndarray of bool, shape (n_voxels,)
    n_features_in_ : int
    feature_names_in_ : ndarray of str, shape (``n_features_in_``,)
        Only when ``X`` is a table with string column names.
    backend_ : str
        The himalaya backend that was used.
    solver_ : {"primal", "dual"}
        The formulation that was used.

    Notes
    -----
    No intercept is fitted and the data are not centred inside :meth:`fit`:
    give ``X`` and ``y`` with columns centred (or z-scored) within each run,
    e.g. with a ``StandardScaler`` in front of the model in a pipeline.
    See the module docstring for the algorithm and when it is the right one.
    To fit many voxels in batches without refactorising ``X``, use
    :meth:`factor` and :meth:`FactoredDesign.solve`.

    Estimator tags: multi-output regressor (``target_tags.multi_output``);
    a 1-D ``y`` is accepted and gives 1-D predictions. Tags that do not
    apply, left at scikit-learn's defaults: no sparse input
    (``input_tags.sparse``: the solver works on dense Gram and kernel
    matrices), no missing values (``input_tags.allow_nan``), no
    ``sample_weight`` in :meth:`fit` (the folds' block structure assumes
    unweighted samples).

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> X = rng.standard_normal((120, 5)); Y = X @ rng.standard_normal((5, 3))
    >>> model = VoxelwiseRidge(alphas=[0.1, 1.0, 10.0], backend="numpy").fit(X, Y, groups=[40, 40, 40])
    >>> model.coef_.shape, model.cv_scores_.shape
    ((5, 3), (3, 3))
    >>> round(model.score(X, Y), 3)
    1.0
    >>> model.score_voxels(X, Y, metric="correlation").shape
    (3,)
    >>> wide = rng.standard_normal((120, 300))
    >>> VoxelwiseRidge(alphas=[1.0, 10.0], backend="numpy").fit(wide, Y, groups=[40, 40, 40]).solver_
    'dual'
    """

    def __init__(
        self,
        alphas=DEFAULT_ALPHAS,
        cv: CVSpec = None,
        score_func: str | ScoreFunc = "correlation",
        backend: BackendSpec = "auto",
        n_targets_batch: int = 20000,
        dtype: str = "float32",
        warn_constant: bool = True,
        solver: str = "auto",
    ):
        self.alphas = alphas
        self.cv = cv
        self.score_func = score_func
        self.backend = backend
        self.n_targets_batch = n_targets_batch
        self.dtype = dtype
        self.warn_constant = warn_constant
        self.solver = solver

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        tags.target_tags.single_output = True
        return tags

    def get_params(self, deep: bool = True) -> dict:
        """Parameters of this estimator; a backend module is given by its name."""
        params = super().get_params(deep=deep)
        if isinstance(params.get("backend"), ModuleType):
            params["backend"] = params["backend"].name
        return params

    def __getstate__(self) -> dict:
        state = super().__getstate__()
        if isinstance(state.get("backend"), ModuleType):
            state = {**state, "backend": state["backend"].name}  # modules cannot be pickled
        return state

    # ----------------------------------------------------------------- fit

    def fit(self, X, y, groups: Sequence | np.ndarray | None = None) -> "VoxelwiseRidge":
        """Choose alpha per voxel by cross-validation, then refit on all samples.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Design matrix, columns centred within each run.
        y : array-like of shape (n_samples, n_voxels) or (n_samples,)
            Responses, columns centred within each run.
        groups : array-like of shape (n_samples,), optional
            Run label of each sample (any values; runs need not be
            contiguous), as scikit-learn passes ``groups``. Run lengths
            (positive integers summing to ``n_samples``, runs stored one after
            the other) are accepted too. With ``cv=None`` the folds are
            leave-one-run-out; see ``cv`` for the other cases.

        Returns
        -------
        self : VoxelwiseRidge
        """
        X, y = validate_data(self, X, y, multi_output=True, y_numeric=True,
                             dtype=[np.float64, np.float32])
        self._y_1d = y.ndim == 1
        factored = self.factor(X, groups=groups)
        solution = factored.solve(y.reshape(y.shape[0], -1))
        constant = solution.constant_voxels
        if constant.any() and self.warn_constant:
            warnings.warn(f"{int(constant.sum())} of {constant.size} voxels are constant (zero variance); "
                          "their weights, scores and alphas are NaN", ConstantVoxelWarning, stacklevel=2)
        self.coef_ = solution.coef
        self.best_alphas_ = solution.best_alphas
        self.cv_scores_ = solution.cv_scores
        self.constant_voxels_ = constant
        self.backend_ = factored.backend
        self.solver_ = factored.solver
        return self

    def factor(self, X, groups: Sequence | np.ndarray | None = None) -> FactoredDesign:
        """Factorise ``X`` for the folds, ready to fit any responses with the same rows.

        ``model.factor(X, groups).solve(Y)`` computes what
        ``model.fit(X, Y, groups)`` stores; solving voxel batches one at a
        time gives the same numbers as solving them together.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Design matrix, columns centred within each run.
        groups : array-like, optional
            Run labels or lengths, as in :meth:`fit`; with ``cv``, they give
            the folds.

        Returns
        -------
        FactoredDesign
        """
        dtype = self._check_params()
        alphas = _check_alphas(self.alphas)
        X = _check_matrix("X", X, dtype)
        n_samples, n_features = X.shape
        folds = _resolve_folds(self.cv, X, groups)
        plan = _BlockPlan.from_folds(folds, n_samples)
        if plan.order is not None:
            X = X[plan.order]
        dual = self.solver == "dual" or (self.solver == "auto" and n_features > n_samples)
        name = resolve_backend(self.backend)
        with _backend_scope(name) as backend:
            factors = (_DualSolver if dual else _PrimalSolver)(backend, X, plan, alphas, self.score_func, dtype)
        return FactoredDesign(factors, name, plan.order, alphas, X.shape, self.n_targets_batch, dtype)

    def _check_params(self) -> str:
        if self.dtype not in ("float32", "float64"):
            raise ValueError(f"dtype must be 'float32' or 'float64'; got {self.dtype!r}")
        if not (isinstance(self.n_targets_batch, (int, np.integer)) and self.n_targets_batch > 0):
            raise ValueError(f"n_targets_batch must be a positive integer; got {self.n_targets_batch!r}")
        if not (callable(self.score_func) or self.score_func in ("correlation", "r2")):
            raise ValueError(f"score_func must be 'correlation', 'r2' or a callable; got {self.score_func!r}")
        if self.solver not in ("auto", "primal", "dual"):
            raise ValueError(f"solver must be 'auto', 'primal' or 'dual'; got {self.solver!r}")
        return self.dtype

    # ----------------------------------------------------------------- use

    def predict(self, X) -> np.ndarray:
        """Predicted responses.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        ndarray of shape (n_samples, n_voxels), or (n_samples,) after a fit on a 1-D ``y``
            float32 for a float32 ``X``, float64 otherwise; NaN for constant voxels.
        """
        check_is_fitted(self)
        X = validate_data(self, X, reset=False, dtype=[np.float64, np.float32])
        with _backend_scope(self.backend_) as backend:
            coef = backend.asarray(self.coef_, dtype=X.dtype.name)
            prediction = np.asarray(backend.to_numpy(backend.matmul(backend.asarray(X), coef)))
        return prediction[:, 0] if self._y_1d else prediction

    def _prediction_pair(self, X, y) -> tuple[np.ndarray, np.ndarray]:
        """Prediction for ``X`` and ``y``, both as (n_samples, n_voxels) arrays."""
        prediction = self.predict(X)
        y = check_array(y, ensure_2d=False, dtype=[np.float64, np.float32], input_name="y")
        prediction, y = prediction.reshape(prediction.shape[0], -1), y.reshape(y.shape[0], -1)
        if y.shape != prediction.shape:
            raise BrainencInputError(None, f"y must have shape {prediction.shape} (samples of X × voxels "
                                           f"of the fit); got {y.shape}")
        return prediction, y

    def score(self, X, y, sample_weight=None) -> float:
        """Coefficient of determination R² of the prediction, averaged over voxels.

        This is :func:`sklearn.metrics.r2_score` with
        ``multioutput="uniform_average"``, over the voxels that were not
        constant in the training data (constant voxels have no model and
        predict NaN). A voxel constant in ``y`` scores 1 if predicted exactly,
        else 0, as in scikit-learn. Per-voxel scores: :meth:`score_voxels`.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples, n_voxels) or (n_samples,)
        sample_weight : array-like of shape (n_samples,), optional

        Returns
        -------
        float
            NaN when every voxel was constant in training.
        """
        prediction, y = self._prediction_pair(X, y)
        fitted = ~self.constant_voxels_
        if not fitted.any():
            return float("nan")
        return float(r2_score(y[:, fitted], prediction[:, fitted], sample_weight=sample_weight,
                              multioutput="uniform_average"))

    def score_voxels(self, X, y, metric: str = "correlation") -> np.ndarray:
        """Score of the prediction for each voxel.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples, n_voxels) or (n_samples,)
        metric : {"correlation", "r2"}
            Pearson correlation between prediction and ``y``
            (:func:`brainenc.stats.pearson_r`), or the coefficient of
            determination ``1 - SS_res / SS_tot`` (:func:`brainenc.stats.r2_score`).

        Returns
        -------
        ndarray of shape (n_voxels,)
            NaN where the score is undefined: voxels constant in training
            (no model) or in ``y``.
        """
        if metric not in ("correlation", "r2"):
            raise ValueError(f"metric must be 'correlation' or 'r2'; got {metric!r}")
        prediction, y = self._prediction_pair(X, y)
        r, r2 = prediction_scores(prediction, y)
        return r if metric == "correlation" else r2

    def coef_per_delay(self, n_delays: int) -> np.ndarray:
        """Weights split by delay, shape (n_delays, n_features // n_delays, n_voxels).

        The design's columns are delay blocks ``[d1 | d2 | ...]`` of equal width.
        """
        check_is_fitted(self)
        n_features = self.coef_.shape[0]
        if not isinstance(n_delays, (int, np.integer)) or n_delays < 1 or n_features % n_delays:
            raise ValueError(f"n_delays must be a positive divisor of the {n_features} features; got {n_delays!r}")
        return self.coef_.reshape(n_delays, n_features // n_delays, self.coef_.shape[1])

"""One training loop for every task on the fusion core.

A task supplies four things and :func:`train` does the rest (optimiser with
learning-rate groups, mixed precision, gradient clipping, early stopping,
checkpoints, resumption, metric logs, progress bars):

``model``
    A :class:`torch.nn.Module`; :func:`train` moves it to the configured device.
``train_batches(epoch) -> Iterable[batch]``
    The training batches of one epoch (``epoch`` counts from 0). Shuffle with
    a generator seeded from ``(config.seed, epoch)``, e.g. with
    :func:`seeded_batches`, never with a generator that carries state from
    epoch to epoch: then a resumed run sees the same batches as an
    uninterrupted one.
``batch_loss(model, batch) -> torch.Tensor``
    The scalar loss of one batch. Tensors in ``batch`` (also inside tuples,
    lists and dicts) arrive on the configured device; anything else (e.g. an
    index array from :func:`seeded_batches`) is passed as is.
``evaluate(model) -> dict[str, float]``
    Validation metrics, computed with the model in eval mode under
    :func:`torch.no_grad`; ``config.monitor`` must be one of them.

Epochs are numbered from 0 everywhere: in ``train_batches``, in
``TrainState.epoch``, in ``metrics.jsonl`` and in
``TrainResult.best_epoch``.

Reproducibility: a fresh run seeds :mod:`random`, numpy's global generator and
torch from ``config.seed``; :func:`seed_everything` does the same and should
also be called before the model is built. ``last.pt`` stores the generator
states at the end of every epoch, so on the CPU an interrupted run resumed from
it ends with the same weights, bit for bit, as an uninterrupted one. CUDA
kernels are not all deterministic, so GPU runs are reproducible only up to
rounding.

Callbacks are objects with any of the methods ``on_epoch_start(state)``,
``on_batch_end(state, loss)`` (``loss`` is the detached scalar tensor),
``on_epoch_end(state, metrics) -> dict | None`` (``metrics`` is the epoch's
validation metrics; a returned dict adds metrics to the epoch's record) and
``state_dict()`` / ``load_state_dict(state)`` (their state travels in
``last.pt``); :class:`Callback` is a base class with no-op methods. Callbacks
run in the given order; ``on_epoch_end`` runs after evaluation, so a callback
that changes the model there (RollingQ's rotation) acts on the next epoch.

Examples
--------
>>> import torch
>>> from brainenc.tasks.training import TrainConfig, seed_everything, seeded_batches, train
>>> x, y = torch.randn(64, 3), torch.randn(64, 1)
>>> config = TrainConfig(epochs=3, lr=1e-2, monitor="mse", mode="min", seed=0)
>>> seed_everything(config.seed)
>>> model = torch.nn.Linear(3, 1)
>>> result = train(
...     model,
...     lambda epoch: seeded_batches(48, 16, config.seed, epoch),
...     lambda m, idx: torch.nn.functional.mse_loss(m(x[idx]), y[idx]),
...     lambda m: {"mse": torch.nn.functional.mse_loss(m(x[48:]), y[48:]).item()},
...     config, "runs/example", progress=False,
... )  # doctest: +SKIP
"""
from __future__ import annotations

import dataclasses
import logging
import math
import random
import time
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from .checkpoint import (
    BEST,
    LAST,
    METRICS,
    append_jsonl,
    atomic_save,
    load_checkpoint,
    rng_state,
    set_rng_state,
    write_jsonl,
)

__all__ = [
    "Callback",
    "SeedSummary",
    "TrainConfig",
    "TrainResult",
    "TrainState",
    "build_optimizer",
    "move_to_device",
    "run_seeds",
    "seed_everything",
    "seeded_batches",
    "train",
]

logger = logging.getLogger(__name__)

OPTIMIZERS = {"adamw": torch.optim.AdamW, "adam": torch.optim.Adam}
MODES = ("max", "min")
DEVICES = ("cpu", "cuda", "auto")
# keys every epoch record has; metric names must not collide with them
RECORD_KEYS = ("epoch", "train_loss", "lr", "seconds")


@dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a training run (except model and data).

    Parameters
    ----------
    epochs : int
        Most epochs to train (early stopping may end sooner). The only field
        that may change when a run is resumed: raise it to train longer.
    batch_size : int
        Batch size; informational (the task's ``train_batches`` makes the
        batches), recorded so that a run's config describes it fully.
    lr : float
        Base learning rate.
    weight_decay : float
        Weight decay, applied to every parameter (decoupled for ``"adamw"``,
        L2 for ``"adam"``).
    optimizer : {"adamw", "adam"}
        Optimiser.
    lr_groups : mapping of str to float, optional
        Parameter-name prefix -> learning-rate multiplier, e.g.
        ``{"text_encoder.": 0.1}`` to fine-tune a pretrained text encoder at a
        tenth of the fusion layers' rate. A parameter takes the multiplier of
        the longest prefix its name (from ``model.named_parameters()``) starts
        with; parameters matching no prefix take the base rate. Every prefix
        must match some trainable parameter.
    grad_clip : float, optional
        Clip the global gradient norm to this value; None for no clipping.
    patience : int, optional
        Stop after this many epochs without improvement of ``monitor``; None
        trains all ``epochs``.
    monitor : str
        Validation metric (a key of ``evaluate``'s output) that picks the best
        epoch and drives early stopping.
    mode : {"max", "min"}
        Whether a larger or a smaller ``monitor`` is better.
    seed : int
        Seed of :mod:`random`, numpy and torch, in ``[0, 2**32)``.
    device : {"cpu", "cuda", "auto"}
        Where to train; ``"auto"`` picks CUDA when available.
    amp : bool
        Mixed precision on CUDA (``torch.autocast`` to float16 with a
        ``GradScaler``); ignored, with a warning, on the CPU.
    log_every : int
        Batches between updates of the progress bar's loss.

    Examples
    --------
    >>> config = TrainConfig(epochs=20, lr=1e-3, lr_groups={"text.": 0.1}, monitor="acc2")
    >>> TrainConfig.from_dict(config.to_dict()) == config
    True
    """

    epochs: int = 10
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 0.0
    optimizer: str = "adamw"
    lr_groups: dict[str, float] | None = None
    grad_clip: float | None = None
    patience: int | None = None
    monitor: str = "loss"
    mode: str = "min"
    seed: int = 0
    device: str = "auto"
    amp: bool = False
    log_every: int = 10

    def __post_init__(self) -> None:
        def fail(name: str, expected: str) -> None:
            raise ValueError(
                f"TrainConfig.{name} must be {expected}, got {getattr(self, name)!r}"
            )

        def set_(name: str, value: Any) -> None:
            object.__setattr__(self, name, value)

        for name in ("epochs", "batch_size", "log_every"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                fail(name, "an integer >= 1")
            set_(name, int(value))
        for name, lower in (("lr", "positive"), ("weight_decay", "non-negative")):
            value = getattr(self, name)
            if not _is_real(value) or not math.isfinite(value):
                fail(name, f"a finite {lower} number")
            if value < 0 or (lower == "positive" and value == 0):
                fail(name, f"a finite {lower} number")
            set_(name, float(value))
        if self.optimizer not in OPTIMIZERS:
            fail("optimizer", f"one of {sorted(OPTIMIZERS)}")
        if self.lr_groups is not None:
            if not isinstance(self.lr_groups, Mapping):
                fail("lr_groups", "a mapping of parameter-name prefix to lr multiplier")
            groups = {}
            for prefix, multiplier in self.lr_groups.items():
                if not isinstance(prefix, str) or not prefix:
                    fail("lr_groups", "keyed by non-empty parameter-name prefixes")
                if not _is_real(multiplier) or not math.isfinite(multiplier) or multiplier < 0:
                    fail("lr_groups", "a mapping to finite non-negative lr multipliers")
                groups[prefix] = float(multiplier)
            set_("lr_groups", groups)
        if self.grad_clip is not None:
            if not _is_real(self.grad_clip) or not self.grad_clip > 0:
                fail("grad_clip", "None or a positive number")
            set_("grad_clip", float(self.grad_clip))
        if self.patience is not None:
            if (isinstance(self.patience, bool) or not isinstance(self.patience, (int, np.integer))
                    or self.patience < 1):
                fail("patience", "None or an integer >= 1")
            set_("patience", int(self.patience))
        if not isinstance(self.monitor, str) or not self.monitor:
            fail("monitor", "a non-empty metric name")
        if self.mode not in MODES:
            fail("mode", f"one of {list(MODES)}")
        if (isinstance(self.seed, bool) or not isinstance(self.seed, (int, np.integer))
                or not 0 <= self.seed < 2**32):
            fail("seed", "an integer in [0, 2**32)")
        set_("seed", int(self.seed))
        if self.device not in DEVICES:
            fail("device", f"one of {list(DEVICES)}")
        if not isinstance(self.amp, (bool, np.bool_)):
            fail("amp", "True or False")
        set_("amp", bool(self.amp))

    def to_dict(self, drop_none: bool = False) -> dict[str, Any]:
        """The config as a plain dict (JSON-serialisable).

        Parameters
        ----------
        drop_none : bool
            Leave out fields that are None (TOML has no null); :meth:`from_dict`
            restores them from the defaults.

        Returns
        -------
        dict
            Field name -> value.
        """
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        if out["lr_groups"] is not None:
            out["lr_groups"] = dict(out["lr_groups"])
        if drop_none:
            out = {key: value for key, value in out.items() if value is not None}
        return out

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> TrainConfig:
        """Build a config from a dict such as a TOML table or JSON object.

        Parameters
        ----------
        values : mapping
            Field name -> value; missing fields take their defaults.

        Returns
        -------
        TrainConfig

        Raises
        ------
        ValueError
            For a key that is not a field, or an invalid value.
        """
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - names)
        if unknown:
            raise ValueError(
                f"TrainConfig has no field(s) {unknown}; the fields are {sorted(names)}"
            )
        return cls(**dict(values))


def _is_real(value: Any) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)


@dataclass
class TrainState:
    """What callbacks see of a running training.

    Attributes
    ----------
    model : torch.nn.Module
        The model being trained.
    optimizer : torch.optim.Optimizer
        Its optimiser; each param group has ``"name"`` (the lr-group prefix or
        ``"base"``) and ``"lr_multiplier"``.
    scaler : torch.amp.GradScaler
        The gradient scaler (disabled without mixed precision).
    config : TrainConfig
        The run's config.
    out_dir : pathlib.Path
        The run's folder.
    epoch : int
        Current epoch, from 0.
    step : int
        Optimiser steps taken since the start of the run.
    history : list of dict
        Records of the finished epochs.
    """

    model: nn.Module
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    config: TrainConfig
    out_dir: Path
    epoch: int = 0
    step: int = 0
    history: list[dict[str, float]] = field(default_factory=list)


class Callback:
    """Base class for training callbacks: every hook does nothing.

    Subclassing is optional: :func:`train` calls whichever of these methods
    an object has.
    """

    def on_epoch_start(self, state: TrainState) -> None:
        """Before the first batch of ``state.epoch``."""

    def on_batch_end(self, state: TrainState, loss: torch.Tensor) -> None:
        """After the optimiser step of a batch; ``loss`` is detached."""

    def on_epoch_end(self, state: TrainState, metrics: dict[str, float]) -> dict | None:
        """After evaluation; return extra metrics to log, or None."""
        return None


@dataclass
class TrainResult:
    """Outcome of :func:`train`.

    Attributes
    ----------
    best_epoch : int or None
        Epoch (from 0) with the best ``monitor``; None if it was never finite.
    best_metrics : dict of str to float
        Record of that epoch (validation metrics, callback metrics, train loss).
    history : list of dict
        One record per finished epoch, as in ``metrics.jsonl``.
    stopped_early : bool
        Whether patience ran out before ``config.epochs``.
    last_checkpoint : pathlib.Path
        ``out_dir/last.pt``.
    best_checkpoint : pathlib.Path or None
        ``out_dir/best.pt`` (None if no epoch had a finite ``monitor``).
    metrics_path : pathlib.Path
        ``out_dir/metrics.jsonl``.

    Notes
    -----
    After :func:`train` the model holds the weights of the last epoch; load
    the best ones with
    ``brainenc.tasks.checkpoint.load_model_weights(model, result.best_checkpoint)``.
    """

    best_epoch: int | None
    best_metrics: dict[str, float]
    history: list[dict[str, float]]
    stopped_early: bool
    last_checkpoint: Path
    best_checkpoint: Path | None
    metrics_path: Path


def seed_everything(seed: int) -> None:
    """Seed :mod:`random`, numpy's global generator and torch (all devices).

    Parameters
    ----------
    seed : int
        Seed in ``[0, 2**32)``.
    """
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def seeded_batches(
    n_items: int, batch_size: int, seed: int, epoch: int, drop_last: bool = False
) -> list[np.ndarray]:
    """Shuffled index batches of one epoch, from a generator seeded by ``(seed, epoch)``.

    The order depends only on the arguments, not on any global random state,
    so a resumed run gets the same batches as an uninterrupted one.

    Parameters
    ----------
    n_items : int
        Number of training items; indices are ``0 .. n_items - 1``.
    batch_size : int
        Items per batch; the last batch may be smaller.
    seed : int
        Run seed (``config.seed``).
    epoch : int
        Epoch, from 0.
    drop_last : bool
        Drop a last batch smaller than ``batch_size``.

    Returns
    -------
    list of numpy.ndarray
        ``int64`` index arrays covering each item once (except dropped ones).
    """
    if n_items < 0 or batch_size < 1:
        raise ValueError(
            f"need n_items >= 0 and batch_size >= 1, got n_items={n_items}, "
            f"batch_size={batch_size}"
        )
    order = np.random.default_rng([int(seed), int(epoch)]).permutation(n_items)
    stop = n_items - n_items % batch_size if drop_last else n_items
    return [order[start:start + batch_size] for start in range(0, stop, batch_size)]


def move_to_device(batch: Any, device: torch.device) -> Any:
    """Move the tensors of a batch (also inside tuples, lists and dicts) to ``device``.

    Parameters
    ----------
    batch : object
        A tensor, a (nested) tuple, list or dict of them, or anything else,
        which is returned unchanged.
    device : torch.device
        Target device.

    Returns
    -------
    object
        The batch with its tensors on ``device``.
    """
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, Mapping):
        return type(batch)({k: move_to_device(v, device) for k, v in batch.items()})
    if isinstance(batch, tuple) and hasattr(batch, "_fields"):
        return type(batch)(*(move_to_device(v, device) for v in batch))
    if isinstance(batch, (list, tuple)):
        return type(batch)(move_to_device(v, device) for v in batch)
    return batch


def build_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    """The optimiser of ``config`` with its learning-rate groups.

    Parameters
    ----------
    model : torch.nn.Module
        Model whose trainable parameters (``requires_grad``) are optimised.
    config : TrainConfig
        Optimiser, base lr, weight decay and ``lr_groups``.

    Returns
    -------
    torch.optim.Optimizer
        Param groups ``"base"`` (parameters matching no prefix) then one per
        prefix in ``lr_groups`` order, each with ``lr = config.lr *
        multiplier`` and the keys ``"name"`` and ``"lr_multiplier"``; empty
        groups are left out.

    Raises
    ------
    ValueError
        If the model has no trainable parameter, or a prefix of ``lr_groups``
        matches none.
    """
    prefixes = dict(config.lr_groups or {})
    members: dict[str, list[nn.Parameter]] = {"base": [], **{p: [] for p in prefixes}}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        matches = [p for p in prefixes if name.startswith(p)]
        members[max(matches, key=len) if matches else "base"].append(param)
    unmatched = [p for p in prefixes if not members[p]]
    if unmatched:
        names = [n for n, p in model.named_parameters() if p.requires_grad]
        raise ValueError(
            f"TrainConfig.lr_groups prefix(es) {unmatched} match no trainable parameter; "
            f"parameter names start like {names[:5]}"
        )
    groups = [
        {
            "params": params,
            "lr": config.lr * prefixes.get(key, 1.0),
            "name": key,
            "lr_multiplier": prefixes.get(key, 1.0),
        }
        for key, params in members.items()
        if params
    ]
    if not groups:
        raise ValueError("the model has no trainable parameter (requires_grad=True)")
    return OPTIMIZERS[config.optimizer](groups, lr=config.lr, weight_decay=config.weight_decay)


def _resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("TrainConfig.device is 'cuda' but CUDA is not available")
    return torch.device(name)


def _metric_dict(
    values: Any, source: str, reserved: Sequence[str] = RECORD_KEYS
) -> dict[str, float]:
    if not isinstance(values, Mapping):
        raise TypeError(f"{source} must return a dict of metric name to float, got {type(values)}")
    out = {}
    for name, value in values.items():
        if name in reserved:
            raise ValueError(f"{source} returned the metric {name!r}, a reserved record key "
                             f"({list(RECORD_KEYS)}); rename it")
        try:
            out[str(name)] = float(value)
        except (TypeError, ValueError):
            raise ValueError(
                f"{source} returned a non-numeric value for metric {name!r}: {value!r}"
            ) from None
    return out


def _config_differences(saved: Mapping[str, Any], given: TrainConfig) -> list[str]:
    saved = TrainConfig.from_dict(saved).to_dict()
    given_dict = given.to_dict()
    return [
        f"{name}: {saved[name]!r} in the checkpoint, {given_dict[name]!r} given"
        for name in given_dict
        if name != "epochs" and saved[name] != given_dict[name]
    ]


def _is_better(value: float, best: float | None, mode: str) -> bool:
    if not math.isfinite(value):
        return False
    if best is None:
        return True
    return value > best if mode == "max" else value < best


def _callback_states(callbacks: Sequence[Any]) -> list[Any]:
    return [cb.state_dict() if hasattr(cb, "state_dict") else None for cb in callbacks]


def train(
    model: nn.Module,
    train_batches: Callable[[int], Iterable[Any]],
    batch_loss: Callable[[nn.Module, Any], torch.Tensor],
    evaluate: Callable[[nn.Module], Mapping[str, float]],
    config: TrainConfig,
    out_dir: str | Path,
    callbacks: Sequence[Any] = (),
    progress: bool = True,
    resume: bool = True,
) -> TrainResult:
    """Train ``model`` with checkpoints, early stopping and metric logs.

    Parameters
    ----------
    model : torch.nn.Module
        The model; moved to the configured device and trained in place.
    train_batches : callable
        ``train_batches(epoch)`` -> iterable of batches of that epoch; shuffle
        with a generator seeded from ``(config.seed, epoch)``
        (:func:`seeded_batches`).
    batch_loss : callable
        ``batch_loss(model, batch)`` -> scalar loss tensor; run under
        ``torch.autocast`` when mixed precision is on.
    evaluate : callable
        ``evaluate(model)`` -> dict of validation metrics, called once per
        epoch in eval mode under :func:`torch.no_grad` (and autocast with
        mixed precision).
    config : TrainConfig
        Hyper-parameters of the run.
    out_dir : path-like
        Folder of ``last.pt``, ``best.pt`` and ``metrics.jsonl``.
    callbacks : sequence
        Objects with any of ``on_epoch_start``, ``on_batch_end``,
        ``on_epoch_end``, ``state_dict``/``load_state_dict`` (see
        :class:`Callback`).
    progress : bool
        Show tqdm progress bars (epochs, and batches within an epoch).
    resume : bool
        Continue from ``out_dir/last.pt`` if it exists. With False, or without
        ``last.pt``, training starts afresh and replaces the files in
        ``out_dir``. An epoch interrupted part-way is redone from its start.
        A run that stopped early stays stopped.

    Returns
    -------
    TrainResult
        Best epoch and metrics, history, checkpoint paths.

    Raises
    ------
    ValueError
        If ``last.pt`` was written with a config that differs in any field but
        ``epochs``; if ``config.monitor`` is not among the metrics of an
        epoch; if an ``lr_groups`` prefix matches no parameter; if a batch
        loss is not a scalar or an epoch has no batch.
    FloatingPointError
        If an epoch's mean training loss is not finite (``last.pt`` keeps the
        previous epoch).
    """
    if not isinstance(config, TrainConfig):
        raise TypeError(f"config must be a TrainConfig, got {type(config).__name__}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    last_path, best_path, metrics_path = out_dir / LAST, out_dir / BEST, out_dir / METRICS
    callbacks = list(callbacks)

    device = _resolve_device(config.device)
    use_amp = config.amp and device.type == "cuda"
    if config.amp and not use_amp:
        warnings.warn("TrainConfig.amp is ignored on the CPU: training runs in full precision",
                      UserWarning, stacklevel=2)
    model.to(device)
    optimizer = build_optimizer(model, config)
    scaler = torch.amp.GradScaler(device.type, enabled=use_amp)
    state = TrainState(model, optimizer, scaler, config, out_dir)
    best_value: float | None = None
    best_epoch: int | None = None
    bad_epochs = 0
    stopped_early = False
    start_epoch = 0

    if resume and last_path.exists():
        checkpoint = load_checkpoint(last_path, map_location=device)
        differences = _config_differences(checkpoint["config"], config)
        if differences:
            raise ValueError(
                f"{last_path} was written with a different config ("
                + "; ".join(differences)
                + "). Only epochs may change on resume: use the same config, "
                "another out_dir, or resume=False to start afresh."
            )
        model.load_state_dict(checkpoint["model"])
        optimizer.load_state_dict(checkpoint["optimizer"])
        if checkpoint["scaler"]:
            # empty when written without mixed precision (e.g. amp=True on the CPU)
            scaler.load_state_dict(checkpoint["scaler"])
        for callback, cb_state in zip(callbacks, checkpoint.get("callbacks", [])):
            if cb_state is not None and hasattr(callback, "load_state_dict"):
                callback.load_state_dict(cb_state)
        state.history = [dict(record) for record in checkpoint["history"]]
        state.step = int(checkpoint["step"])
        best_value, best_epoch = checkpoint["best_value"], checkpoint["best_epoch"]
        bad_epochs = int(checkpoint["bad_epochs"])
        stopped_early = bool(checkpoint["stopped_early"])
        start_epoch = int(checkpoint["epoch"]) + 1
        # drop lines of epochs after the checkpoint (an epoch interrupted after its log line)
        write_jsonl(metrics_path, state.history)
        set_rng_state(checkpoint["rng"])
        logger.info("resuming %s after epoch %d", out_dir, start_epoch - 1)
    else:
        for stale in (last_path, best_path, metrics_path):
            stale.unlink(missing_ok=True)
        seed_everything(config.seed)

    epoch_bar = tqdm(
        total=config.epochs, initial=min(start_epoch, config.epochs), desc="epochs",
        unit="epoch", disable=not progress, dynamic_ncols=True,
    )
    try:
        for epoch in range(start_epoch, config.epochs):
            if stopped_early:
                break
            state.epoch = epoch
            started = time.perf_counter()
            model.train()
            for callback in callbacks:
                if hasattr(callback, "on_epoch_start"):
                    callback.on_epoch_start(state)
            train_loss = _train_epoch(
                state, train_batches(epoch), batch_loss, callbacks, device, use_amp, progress
            )
            if not math.isfinite(train_loss):
                raise FloatingPointError(
                    f"epoch {epoch}: mean training loss is {train_loss}; "
                    f"{last_path} holds the previous epoch"
                )
            model.eval()
            with torch.no_grad(), torch.autocast(device.type, enabled=use_amp):
                metrics = _metric_dict(evaluate(model), "evaluate(model)")
            model.train()
            if config.monitor not in metrics:
                raise ValueError(
                    f"TrainConfig.monitor {config.monitor!r} is not among the metrics "
                    f"returned by evaluate(model): {sorted(metrics)}"
                )
            value = metrics[config.monitor]
            improved = _is_better(value, best_value, config.mode)
            if improved:
                best_value, best_epoch, bad_epochs = value, epoch, 0
                # weights as evaluated, before callbacks change the model
                atomic_save(
                    {"model": model.state_dict(), "metrics": metrics, "epoch": epoch,
                     "config": config.to_dict()},
                    best_path,
                )
            else:
                bad_epochs += 1
            extras: dict[str, float] = {}
            for callback in callbacks:
                if hasattr(callback, "on_epoch_end"):
                    returned = callback.on_epoch_end(state, dict(metrics))
                    if returned:
                        source = f"{type(callback).__name__}.on_epoch_end"
                        extras.update(_metric_dict(returned, source))
            clashes = sorted(set(extras) & set(metrics))
            if clashes:
                raise ValueError(f"callback metrics {clashes} clash with evaluate(model)'s metrics")
            # the base rate, also when a callback rescales every group's lr
            group = optimizer.param_groups[0]
            base_lr = group["lr"] / group["lr_multiplier"] if group["lr_multiplier"] else config.lr
            record = {
                "epoch": epoch,
                "train_loss": train_loss,
                **metrics,
                **extras,
                "lr": base_lr,
                "seconds": time.perf_counter() - started,
            }
            state.history.append(record)
            if config.patience is not None and bad_epochs >= config.patience:
                stopped_early = epoch + 1 < config.epochs
            append_jsonl(metrics_path, record)
            atomic_save(
                {
                    "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "scaler": scaler.state_dict(),
                    "config": config.to_dict(),
                    "epoch": epoch,
                    "step": state.step,
                    "best_value": best_value,
                    "best_epoch": best_epoch,
                    "bad_epochs": bad_epochs,
                    "stopped_early": stopped_early,
                    "history": state.history,
                    "callbacks": _callback_states(callbacks),
                    "rng": rng_state(),
                },
                last_path,
            )
            logger.info(
                "epoch %d: train_loss %.4g, %s %.4g%s", epoch, train_loss, config.monitor, value,
                " (best)" if improved else "",
            )
            epoch_bar.update(1)
            epoch_bar.set_postfix({"train_loss": f"{train_loss:.4g}",
                                   config.monitor: f"{value:.4g}"})
    finally:
        epoch_bar.close()

    best_metrics = next(
        (dict(r) for r in state.history if r["epoch"] == best_epoch), {}
    )
    return TrainResult(
        best_epoch=best_epoch,
        best_metrics=best_metrics,
        history=[dict(r) for r in state.history],
        stopped_early=stopped_early,
        last_checkpoint=last_path,
        best_checkpoint=best_path if best_epoch is not None else None,
        metrics_path=metrics_path,
    )


def _train_epoch(
    state: TrainState,
    batches: Iterable[Any],
    batch_loss: Callable[[nn.Module, Any], torch.Tensor],
    callbacks: Sequence[Any],
    device: torch.device,
    use_amp: bool,
    progress: bool,
) -> float:
    """One pass over ``batches``; returns the mean batch loss."""
    model, optimizer, scaler, config = state.model, state.optimizer, state.scaler, state.config
    params = [p for group in optimizer.param_groups for p in group["params"]]
    total = torch.zeros((), dtype=torch.float64, device=device)
    n_batches = 0
    bar = tqdm(batches, desc=f"epoch {state.epoch}", unit="batch", leave=False,
               disable=not progress, dynamic_ncols=True)
    try:
        for batch in bar:
            batch = move_to_device(batch, device)
            with torch.autocast(device.type, enabled=use_amp):
                loss = batch_loss(model, batch)
            if not isinstance(loss, torch.Tensor) or loss.ndim != 0:
                shape = tuple(loss.shape) if isinstance(loss, torch.Tensor) else type(loss).__name__
                raise ValueError(f"batch_loss must return a scalar tensor, got {shape}")
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            if config.grad_clip is not None:
                scaler.unscale_(optimizer)
                torch.nn.utils.clip_grad_norm_(params, config.grad_clip)
            scaler.step(optimizer)
            scaler.update()
            state.step += 1
            n_batches += 1
            loss = loss.detach()
            total += loss.to(torch.float64)
            if n_batches % config.log_every == 0 and progress:
                bar.set_postfix(loss=f"{loss.item():.4g}")
            for callback in callbacks:
                if hasattr(callback, "on_batch_end"):
                    callback.on_batch_end(state, loss)
    finally:
        bar.close()
    if n_batches == 0:
        raise ValueError(f"train_batches({state.epoch}) yielded no batches")
    return float(total.item() / n_batches)


@dataclass
class SeedSummary:
    """Metrics of one run per seed, with mean and sample standard deviation.

    Attributes
    ----------
    seeds : tuple of int
        The seeds, in run order.
    values : dict of str to numpy.ndarray
        Metric name -> values, one per seed in ``seeds`` order.
    mean : dict of str to float
        Mean over seeds.
    sd : dict of str to float
        Sample standard deviation over seeds (``ddof=1``); NaN for one seed.
    """

    seeds: tuple[int, ...]
    values: dict[str, np.ndarray]
    mean: dict[str, float]
    sd: dict[str, float]

    def per_seed(self, seed: int) -> dict[str, float]:
        """The metrics of the run with ``seed``."""
        index = self.seeds.index(seed)
        return {name: float(v[index]) for name, v in self.values.items()}

    def format(self, digits: int = 4) -> str:
        """One ``"metric: mean ± sd"`` line per metric.

        Parameters
        ----------
        digits : int
            Significant digits.

        Returns
        -------
        str
            Lines joined by newlines, metrics in the order the runs returned them.
        """
        return "\n".join(
            f"{name}: {self.mean[name]:.{digits}g} ± {self.sd[name]:.{digits}g}"
            for name in self.values
        )


def run_seeds(run_one: Callable[[int], Mapping[str, float]], seeds: Iterable[int]) -> SeedSummary:
    """Run ``run_one(seed)`` for every seed and summarise the metrics.

    Parameters
    ----------
    run_one : callable
        ``run_one(seed)`` -> dict of metric name to float, e.g. a full
        :func:`train` with ``TrainConfig(seed=seed)`` then a test evaluation.
    seeds : iterable of int
        Distinct seeds.

    Returns
    -------
    SeedSummary
        Per-seed values, mean and sample sd (ddof=1) per metric.

    Raises
    ------
    ValueError
        Without seeds, with repeated seeds, or when runs return different
        metric names.
    """
    seeds = tuple(int(s) for s in seeds)
    if not seeds:
        raise ValueError("run_seeds needs at least one seed")
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"seeds must be distinct, got {list(seeds)}")
    results = []
    for seed in seeds:
        results.append(_metric_dict(run_one(seed), f"run_one({seed})", reserved=()))
        if set(results[-1]) != set(results[0]):
            raise ValueError(
                f"run_one({seed}) returned metrics {sorted(results[-1])}, "
                f"run_one({seeds[0]}) returned {sorted(results[0])}"
            )
    values = {name: np.array([r[name] for r in results]) for name in results[0]}
    mean = {name: float(v.mean()) for name, v in values.items()}
    sd = {
        name: float(v.std(ddof=1)) if v.size > 1 else math.nan for name, v in values.items()
    }
    return SeedSummary(seeds=seeds, values=values, mean=mean, sd=sd)

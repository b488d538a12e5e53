"""The shared training loop: learning, early stopping, lr groups, clipping, resume, seeds."""
from __future__ import annotations

import dataclasses
import json
import math
import random

import numpy as np
import pytest
import torch
from torch import nn

from brainenc.tasks.checkpoint import load_checkpoint, load_model_weights, read_jsonl
from brainenc.tasks.training import (
    Callback,
    TrainConfig,
    build_optimizer,
    run_seeds,
    seed_everything,
    seeded_batches,
    train,
)

N_TRAIN, N_VAL, N_FEATURES = 96, 32, 4


def _data(seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(N_TRAIN + N_VAL, N_FEATURES, generator=gen)
    w = torch.randn(N_FEATURES, 1, generator=gen)
    y = torch.tanh(x @ w) + 0.05 * torch.randn(N_TRAIN + N_VAL, 1, generator=gen)
    return x[:N_TRAIN], y[:N_TRAIN], x[N_TRAIN:], y[N_TRAIN:]


class Regressor(nn.Module):
    def __init__(self, hidden: int = 16, dropout: float = 0.1):
        super().__init__()
        self.encoder = nn.Sequential(nn.Linear(N_FEATURES, hidden), nn.Tanh(), nn.Dropout(dropout))
        self.head = nn.Linear(hidden, 1)

    def forward(self, x):
        return self.head(self.encoder(x))


def _model(seed: int, **kwargs) -> Regressor:
    seed_everything(seed)
    return Regressor(**kwargs)


def _task(config: TrainConfig, augment: bool = False):
    """``train_batches``, ``batch_loss`` and ``evaluate`` of the regression task.

    With ``augment`` the loss also draws from numpy's and Python's global
    generators, so that resuming must restore them.
    """
    x, y, x_val, y_val = _data()

    def train_batches(epoch):
        return [(x[idx], y[idx]) for idx in seeded_batches(N_TRAIN, 16, config.seed, epoch)]

    def batch_loss(model, batch):
        xb, yb = batch
        if augment:
            noise = torch.as_tensor(np.random.normal(0.0, 0.01, size=xb.shape), dtype=xb.dtype)
            xb = xb + noise * random.uniform(0.5, 1.5)
        return nn.functional.mse_loss(model(xb), yb)

    def evaluate(model):
        return {"loss": nn.functional.mse_loss(model(x_val), y_val).item()}

    return train_batches, batch_loss, evaluate


CONFIG = TrainConfig(epochs=6, batch_size=16, lr=2e-2, monitor="loss", mode="min", seed=3,
                     device="cpu")


def test_tiny_regression_learns(tmp_path):
    config = dataclasses.replace(CONFIG, epochs=25)
    model = _model(0)
    train_batches, batch_loss, evaluate = _task(config)
    model.eval()
    with torch.no_grad():
        initial = evaluate(model)["loss"]
    result = train(model, train_batches, batch_loss, evaluate, config, tmp_path, progress=True)
    final = result.history[-1]["loss"]
    # the validation loss drops at least tenfold
    assert final < initial / 10, (initial, final)
    assert result.best_epoch is not None and result.best_metrics["loss"] <= final
    assert [r["epoch"] for r in result.history] == list(range(25))
    assert result.history[0]["lr"] == pytest.approx(config.lr)
    assert not result.stopped_early
    # best.pt holds the weights the best metric was computed with
    best = _model(1)
    stored = load_model_weights(best, result.best_checkpoint)
    assert stored["loss"] == result.best_metrics["loss"]
    best.eval()
    with torch.no_grad():
        assert evaluate(best)["loss"] == pytest.approx(stored["loss"], rel=1e-6)


def test_early_stopping_on_plateau(tmp_path):
    config = dataclasses.replace(CONFIG, epochs=20, patience=3, monitor="acc", mode="max")
    train_batches, batch_loss, _ = _task(config)
    plateau = iter([0.5, 0.7, 0.7, 0.6, 0.7, 0.9, 0.9])
    result = train(_model(0), train_batches, batch_loss, lambda m: {"acc": next(plateau)},
                   config, tmp_path, progress=False)
    # best at epoch 1; epochs 2, 3, 4 do not improve on it (an equal value is no improvement)
    assert result.stopped_early
    assert result.best_epoch == 1 and result.best_metrics["acc"] == 0.7
    assert [r["epoch"] for r in result.history] == [0, 1, 2, 3, 4]
    assert len(read_jsonl(result.metrics_path)) == 5
    # resuming a run that stopped early trains no further
    again = train(_model(0), train_batches, batch_loss, lambda m: pytest.fail("evaluated"),
                  config, tmp_path, progress=False)
    assert again.stopped_early and len(again.history) == 5


def test_lr_groups_give_stated_rates(tmp_path):
    config = dataclasses.replace(CONFIG, epochs=1, lr=1e-2,
                                 lr_groups={"encoder.": 0.1, "encoder.0.bias": 0.5})
    model = _model(0)
    optimizer = build_optimizer(model, config)
    lrs = {g["name"]: g["lr"] for g in optimizer.param_groups}
    assert lrs == {"base": pytest.approx(1e-2), "encoder.": pytest.approx(1e-3),
                   "encoder.0.bias": pytest.approx(5e-3)}
    members = {g["name"]: {id(p) for p in g["params"]} for g in optimizer.param_groups}
    # the longest matching prefix wins; unmatched parameters take the base rate
    assert members["encoder.0.bias"] == {id(model.encoder[0].bias)}
    assert members["encoder."] == {id(model.encoder[0].weight)}
    assert members["base"] == {id(model.head.weight), id(model.head.bias)}
    assert isinstance(optimizer, torch.optim.AdamW)

    seen = {}

    class Record(Callback):
        def on_epoch_start(self, state):
            seen.update({g["name"]: g["lr"] for g in state.optimizer.param_groups})

    train(model, *_task(config), config, tmp_path, callbacks=[Record()], progress=False)
    assert seen == lrs

    with pytest.raises(ValueError, match="lr_groups.*text_encoder"):
        build_optimizer(model, dataclasses.replace(config, lr_groups={"text_encoder.": 0.1}))


def _grad_norms(tmp_path, grad_clip):
    """Global gradient norms seen by the optimiser just before each step."""
    config = dataclasses.replace(CONFIG, epochs=2, grad_clip=grad_clip)
    train_batches, batch_loss, evaluate = _task(config)
    norms = []

    class NormHook(Callback):
        def on_epoch_start(self, state):
            if state.epoch == 0:
                state.optimizer.register_step_pre_hook(
                    lambda opt, args, kwargs: norms.append(float(torch.linalg.vector_norm(
                        torch.stack([p.grad.norm() for g in opt.param_groups
                                     for p in g["params"] if p.grad is not None])
                    )))
                )

    def scaled_loss(model, batch):
        return 100.0 * batch_loss(model, batch)

    train(_model(0), train_batches, scaled_loss, evaluate, config, tmp_path,
          callbacks=[NormHook()], progress=False)
    return norms


def test_grad_clip_bounds_the_norm(tmp_path):
    clip = 0.5
    unclipped = _grad_norms(tmp_path / "free", None)
    clipped = _grad_norms(tmp_path / "clip", clip)
    assert len(clipped) == 2 * N_TRAIN // 16
    assert max(unclipped) > 4 * clip
    assert max(clipped) <= clip * (1 + 1e-5)


class Interrupt(Callback):
    """Raise ``error`` at the given point: after epoch ``epoch`` or inside it."""

    def __init__(self, epoch: int, error: BaseException, batch: int | None = None):
        self.epoch, self.error, self.batch, self.n = epoch, error, batch, 0

    def on_batch_end(self, state, loss):
        if self.batch is not None and state.epoch == self.epoch:
            self.n += 1
            if self.n == self.batch:
                raise self.error

    def on_epoch_end(self, state, metrics):
        if self.batch is None and state.epoch == self.epoch:
            raise self.error


def _history_without_time(history):
    return [{k: v for k, v in r.items() if k != "seconds"} for r in history]


def test_interrupt_and_resume_is_bit_identical(tmp_path):
    config = CONFIG
    task = _task(config, augment=True)

    reference = _model(0)
    expected = train(reference, *task, config, tmp_path / "straight", progress=False)

    out = tmp_path / "interrupted"
    # an exception from a callback at the end of epoch 1: epoch 1 is redone on resume
    with pytest.raises(RuntimeError, match="stop"):
        train(_model(0), *task, config, out, progress=False,
              callbacks=[Interrupt(1, RuntimeError("stop"))])
    assert load_checkpoint(out / "last.pt")["epoch"] == 0
    # a KeyboardInterrupt in the middle of epoch 3 (fresh model: weights come from last.pt)
    with pytest.raises(KeyboardInterrupt):
        train(_model(7), *task, config, out, progress=False,
              callbacks=[Interrupt(3, KeyboardInterrupt(), batch=3)])
    assert load_checkpoint(out / "last.pt")["epoch"] == 2
    resumed_model = _model(11)
    resumed = train(resumed_model, *task, config, out, progress=False)

    for (name, p), (_, q) in zip(reference.named_parameters(), resumed_model.named_parameters()):
        assert torch.equal(p, q), name
    assert _history_without_time(resumed.history) == _history_without_time(expected.history)
    assert resumed.best_epoch == expected.best_epoch

    # metrics.jsonl: one line per epoch, none duplicated by the resumes
    lines = (out / "metrics.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines]
    assert [r["epoch"] for r in records] == list(range(config.epochs))
    assert set(records[0]) == {"epoch", "train_loss", "loss", "lr", "seconds"}


def test_resume_extends_epochs_and_continues_metrics(tmp_path):
    task = _task(CONFIG)
    short = dataclasses.replace(CONFIG, epochs=2)
    train(_model(0), *task, short, tmp_path, progress=False)
    result = train(_model(0), *task, dataclasses.replace(CONFIG, epochs=4), tmp_path,
                   progress=False)
    assert [r["epoch"] for r in read_jsonl(tmp_path / "metrics.jsonl")] == [0, 1, 2, 3]
    assert len(result.history) == 4
    # resume=False starts afresh and replaces the log
    train(_model(0), *task, short, tmp_path, progress=False, resume=False)
    assert [r["epoch"] for r in read_jsonl(tmp_path / "metrics.jsonl")] == [0, 1]


def test_resume_refuses_a_different_config(tmp_path):
    task = _task(CONFIG)
    train(_model(0), *task, dataclasses.replace(CONFIG, epochs=1), tmp_path, progress=False)
    with pytest.raises(ValueError, match=r"lr: 0\.02 in the checkpoint, 0\.1 given"):
        train(_model(0), *task, dataclasses.replace(CONFIG, epochs=2, lr=0.1), tmp_path,
              progress=False)
    with pytest.raises(ValueError, match="grad_clip"):
        train(_model(0), *task, dataclasses.replace(CONFIG, grad_clip=1.0), tmp_path,
              progress=False)


def test_callback_metrics_are_logged(tmp_path):
    class Mass(Callback):
        def on_epoch_end(self, state, metrics):
            return {"attention_mass": 0.25 * (state.epoch + 1)}

    config = dataclasses.replace(CONFIG, epochs=2)
    result = train(_model(0), *_task(config), config, tmp_path, callbacks=[Mass()],
                   progress=False)
    assert [r["attention_mass"] for r in read_jsonl(result.metrics_path)] == [0.25, 0.5]


@pytest.mark.parametrize(
    "changes, field",
    [
        ({"optimizer": "sgd"}, "optimizer"),
        ({"lr": -1e-3}, "lr"),
        ({"patience": 0}, "patience"),
        ({"mode": "maximise"}, "mode"),
        ({"device": "tpu"}, "device"),
        ({"grad_clip": 0.0}, "grad_clip"),
        ({"epochs": 0}, "epochs"),
        ({"lr_groups": {"text.": -0.1}}, "lr_groups"),
        ({"seed": -1}, "seed"),
    ],
)
def test_config_validation_names_the_field(changes, field):
    with pytest.raises(ValueError, match=rf"TrainConfig\.{field}\b"):
        TrainConfig(**changes)


def test_config_round_trips_through_json():
    config = dataclasses.replace(CONFIG, lr_groups={"encoder.": 0.1}, patience=2)
    assert TrainConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    # TOML has no null: None fields are dropped and come back as defaults
    assert "grad_clip" not in config.to_dict(drop_none=True)
    assert TrainConfig.from_dict(config.to_dict(drop_none=True)) == config
    with pytest.raises(ValueError, match="learning_rate"):
        TrainConfig.from_dict({"learning_rate": 0.1})


def test_monitor_missing_from_evaluate_is_refused(tmp_path):
    config = dataclasses.replace(CONFIG, monitor="acc2")
    with pytest.raises(ValueError, match=r"TrainConfig\.monitor 'acc2'.*\['loss'\]"):
        train(_model(0), *_task(config), config, tmp_path, progress=False)


def test_amp_is_ignored_on_cpu_with_a_warning(tmp_path):
    config = dataclasses.replace(CONFIG, epochs=1, amp=True)
    with pytest.warns(UserWarning, match="amp is ignored on the CPU"):
        result = train(_model(0), *_task(config), config, tmp_path, progress=False)
    assert math.isfinite(result.history[0]["train_loss"])


def test_seeded_batches_depend_only_on_seed_and_epoch():
    batches = seeded_batches(10, 4, seed=1, epoch=0)
    assert [len(b) for b in batches] == [4, 4, 2]
    assert sorted(np.concatenate(batches).tolist()) == list(range(10))
    again = seeded_batches(10, 4, seed=1, epoch=0)
    assert all(np.array_equal(a, b) for a, b in zip(batches, again))
    assert not np.array_equal(np.concatenate(batches),
                              np.concatenate(seeded_batches(10, 4, seed=1, epoch=1)))
    assert [len(b) for b in seeded_batches(10, 4, seed=1, epoch=0, drop_last=True)] == [4, 4]


def test_run_seeds_mean_and_sd_match_numpy():
    table = {0: {"mae": 0.71, "acc2": 83.7}, 1: {"mae": 0.75, "acc2": 82.1},
             2: {"mae": 0.69, "acc2": 85.0}, 5: {"mae": 0.80, "acc2": 80.4}}
    summary = run_seeds(lambda seed: table[seed], [0, 1, 2, 5])
    for name in ("mae", "acc2"):
        values = np.array([table[s][name] for s in (0, 1, 2, 5)])
        assert np.array_equal(summary.values[name], values)
        assert summary.mean[name] == pytest.approx(np.mean(values), rel=1e-12)
        assert summary.sd[name] == pytest.approx(np.std(values, ddof=1), rel=1e-12)
    assert summary.per_seed(2) == table[2]
    lines = summary.format().splitlines()
    assert lines[0] == f"mae: {np.mean([0.71, 0.75, 0.69, 0.80]):.4g} ± " \
                       f"{np.std([0.71, 0.75, 0.69, 0.80], ddof=1):.4g}"
    assert lines[1].startswith("acc2: ")

    single = run_seeds(lambda seed: {"mae": 0.7}, [4])
    assert single.mean["mae"] == 0.7 and math.isnan(single.sd["mae"])
    assert single.format() == "mae: 0.7 ± nan"
    with pytest.raises(ValueError, match="returned metrics"):
        run_seeds(lambda seed: {"mae": 0.7} if seed == 0 else {"acc": 1.0}, [0, 1])

"""Train, evaluate and isolate the model of a task spec over its seeds (``brainenc task``).

``OUT/seed-<k>/`` holds each seed's run of :func:`brainenc.tasks.training.train`
(``last.pt``, ``best.pt``, ``metrics.jsonl``) and its ``test_metrics.json``;
``OUT/summary.json`` the test metrics of every seed with their mean and sample
standard deviation; ``OUT/.brainenc-task.json`` marks the folder as a task
run, so that an interrupted ``train`` resumes there and nothing else is
written over.
"""
from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from brainenc.errors import BrainencInputError
from brainenc.io.atomic import atomic_path
from brainenc.tasks.checkpoint import load_model_weights
from brainenc.tasks.spec import TaskSpec
from brainenc.tasks.training import SeedSummary, run_seeds, seed_everything, train

MARKER = ".brainenc-task.json"
ROLLINGQ_KEYS = ("beta", "sigma", "max_rotations", "layer")


def make_task(spec: TaskSpec):
    """The task object of a spec (its data and model settings checked here)."""
    if spec.task == "gestures":
        from brainenc.tasks.gestures.task import GestureTask

        return GestureTask(spec)
    if spec.task == "retrieval":
        from brainenc.tasks.retrieval.task import RetrievalTask

        return RetrievalTask(spec)
    from brainenc.tasks.sentiment.task import SentimentTask

    return SentimentTask(spec)


def _write_json(path: Path, content: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        Path(tmp).write_text(json.dumps(content, indent=2, default=float), encoding="utf-8")


def check_output(spec: TaskSpec, overwrite: bool = False) -> None:
    """``spec.out`` must be new, empty, or a run of this spec (resumed); a run of another
    spec is replaced only with ``overwrite``; a folder brainenc did not write never."""
    out = spec.out
    if not out.exists():
        return
    if not out.is_dir():
        raise BrainencInputError(out, "out: exists and is not a folder")
    marker = out / MARKER
    if not marker.is_file():
        if any(out.iterdir()):
            raise BrainencInputError(out, "out: the folder holds files brainenc did not write; "
                                          "choose a new or empty folder")
        return
    recorded = json.loads(marker.read_text(encoding="utf-8")).get("spec")
    if recorded != str(spec.path) and not overwrite:
        raise BrainencInputError(out, f"out: holds the run of another spec ({recorded}); use "
                                      "--overwrite to replace it")


def _rollingq(spec: TaskSpec, model):
    """(forward keyword arguments, callbacks) of the spec's RollingQ, if any."""
    if spec.rollingq is None:
        return {}, []
    from brainenc.fusion.rollingq import RollingQ
    from brainenc.tasks.rollingq_callback import RollingQCallback

    unknown = sorted(set(spec.rollingq) - set(ROLLINGQ_KEYS))
    if unknown:
        raise spec.fail("[rollingq]", f"unknown keys {unknown}; expected some of {list(ROLLINGQ_KEYS)}")
    names = list(getattr(model, "segment_names", ()))
    if names[:1] != ["cls"] or len(names) != 3 or not hasattr(model, "encoder"):
        raise spec.fail("[rollingq]", "RollingQ rebalances a CLS query between two modalities: it "
                                      "needs a transformer with pooling = \"cls\" over two modalities")
    layer = int(spec.rollingq.get("layer", -1))
    if not -len(model.encoder.layers) <= layer < len(model.encoder.layers):
        raise spec.fail("[rollingq] layer", f"{layer} is out of range for "
                                            f"{len(model.encoder.layers)} layers")
    options = {k: spec.rollingq[k] for k in ("beta", "sigma", "max_rotations") if k in spec.rollingq}
    # segments [cls | a | b]: the CLS query is rebalanced between a and b
    rq = RollingQ(model.encoder.layers[layer].attn.dim, cls_segment=0, segment_a=1, segment_b=2,
                  **options)
    model.rollingq = rq   # saved with the model's weights
    callback = RollingQCallback(rq, model.encoder.layers[layer].attn, tuple(names[1:3]))
    return {"query_hook": rq.query_hook, "hook_layer": layer}, [callback]


def _seed_model(task, spec: TaskSpec, seed: int):
    seed_everything(seed)
    model = task.build_model()
    forward, callbacks = _rollingq(spec, model)
    return model, forward, callbacks


def train_task(spec: TaskSpec, overwrite: bool = False, progress: bool = True) -> SeedSummary:
    """Train every seed of ``spec`` (resuming interrupted seeds), test the best epoch of each,
    and summarise the test metrics over seeds."""
    check_output(spec, overwrite)
    task = make_task(spec)
    task.data()       # every input is read and checked before the first epoch,
    _seed_model(task, spec, spec.seeds[0])   # and the model and its RollingQ built once
    spec.out.mkdir(parents=True, exist_ok=True)
    _write_json(spec.out / MARKER, {"spec": str(spec.path), "task": spec.task})
    monitor = spec.train.monitor if spec.train.monitor in task.metric_names() else task.monitor_default
    split = "valid" if task.has_validation() else "train"

    def run_one(seed: int) -> dict[str, float]:
        model, forward, callbacks = _seed_model(task, spec, seed)
        config = replace(spec.train, seed=seed, monitor=monitor, mode=task.mode(monitor))
        result = train(model, task.train_batches(seed),
                       lambda m, batch: task.batch_loss(m, batch, **forward),
                       lambda m: task.evaluate(m, split, **forward), config,
                       spec.out / f"seed-{seed}", callbacks=callbacks, progress=progress)
        load_model_weights(model, result.best_checkpoint)
        model.eval()
        metrics = task.evaluate(model, "test", **forward)
        _write_json(spec.out / f"seed-{seed}" / "test_metrics.json",
                    {"best_epoch": result.best_epoch, "test": metrics})
        return metrics

    summary = run_seeds(run_one, spec.seeds)
    _write_json(spec.out / "summary.json", _summary_content(spec, summary))
    return summary


def _finite_or_none(value: float) -> float | None:
    return value if math.isfinite(value) else None


def _summary_content(spec: TaskSpec, summary: SeedSummary) -> dict:
    return {"task": spec.task, "spec": str(spec.path), "seeds": spec.seeds,
            "per_seed": {str(s): {k: _finite_or_none(v) for k, v in summary.per_seed(s).items()}
                         for s in spec.seeds},
            "mean": {k: _finite_or_none(v) for k, v in summary.mean.items()},
            "sd": {k: _finite_or_none(v) for k, v in summary.sd.items()}}


def _trained_models(spec: TaskSpec, task):
    for seed in spec.seeds:
        best = spec.out / f"seed-{seed}" / "best.pt"
        if not best.is_file():
            raise BrainencInputError(best, "no trained model: run `brainenc task train` on this "
                                           "spec first")
        model, forward, _ = _seed_model(task, spec, seed)
        load_model_weights(model, best)
        yield seed, model.eval(), forward


def evaluate_task(spec: TaskSpec, noise: str | None = None) -> SeedSummary:
    """Test metrics of every trained seed; with ``noise``, with that modality replaced by
    matched noise at test time (RollingQ's noise test)."""
    task = make_task(spec)
    results = {}
    for seed, model, forward in _trained_models(spec, task):
        results[seed] = task.evaluate(model, "test", noise=noise, **forward)
    return run_seeds(lambda seed: results[seed], spec.seeds)


def _layer_entry(report) -> dict[str, Any]:
    """One layer of the pathway report for ``isolation.json``. Shares are null where silencing
    the layer's blocks changes nothing (e.g. the last layer under CLS pooling, whose modality
    tokens no longer reach the CLS token): ``effect`` then reads 0."""
    return {"layer": report.layers[0],
            "cross_modal_share": _finite_or_none(report.cross_modal_share()),
            "groups": {g: _finite_or_none(c) for g, c in zip(report.groups, report.contribution.tolist())},
            "effect": dict(zip(report.groups, report.effect.tolist())),
            "flip_rate": dict(zip(report.groups, report.flip_rate.tolist()))}


def isolate_task(spec: TaskSpec) -> dict[str, Any]:
    """Per seed: the pathway report per layer and the interaction share of the modalities
    (:mod:`brainenc.fusion.isolation`) on the test data; written to ``OUT/isolation.json``."""
    from brainenc.fusion.isolation import isolation_by_layer, modality_interaction

    if spec.task != "gestures":
        raise spec.fail("task", "isolate analyses the models of the gesture task (the IsoNet "
                                f"family); this spec's task is {spec.task!r}")
    task = make_task(spec)
    inputs, target = task.data().tensors("test")
    names = list(inputs)
    report: dict[str, Any] = {}
    for seed, model, _ in _trained_models(spec, task):
        entry: dict[str, Any] = {}
        interaction = modality_interaction(model, inputs, (names[0], names[1]), seed=seed)
        entry["interaction_share"] = interaction.interaction_share
        entry["main_share"] = interaction.main_share
        if hasattr(model, "base_tables"):
            with torch.no_grad():
                layers = isolation_by_layer(model, inputs, labels=target)
            entry["layers"] = [_layer_entry(r) for r in layers]
        report[str(seed)] = entry
    _write_json(spec.out / "isolation.json", report)
    return report

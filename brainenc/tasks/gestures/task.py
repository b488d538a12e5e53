"""The gesture task of a spec: NinaPro DB2 files → windows → tokens → a model of the IsoNet family.

``[data]`` keys (all optional but ``files``):

* ``files``: DB2 exercise files (``S<k>_E<e>_A1.mat``), relative to the spec;
* ``window_ms``: window length (default 200 ms); ``stride_ms``: step between
  windows (default 100 ms);
* ``token_ms``: samples grouped into one token per modality (default 20 ms: a
  200 ms window at 2 kHz is 10 tokens of 40 samples × channels);
* ``rest``: ``"drop"`` (default), ``"keep"`` or ``"class"``;
* ``train_repetitions`` (default ``[1, 3, 4]``), ``valid_repetitions``
  (default ``[6]``, for early stopping), ``test_repetitions`` (default ``[2, 5]``);
* ``batch_size``: default 64.

The standard protocol trains on repetitions 1, 3, 4, 6 and tests on 2 and 5;
early stopping needs validation data that is not test data, so repetition 6
validates by default (put it back in ``train_repetitions`` and leave
``valid_repetitions`` empty to train on all four, for a fixed number of epochs).

``[model] name``: ``mlp`` (:class:`~brainenc.fusion.models.isonet.MultimodalMLP`),
``transformer`` (:class:`~brainenc.fusion.models.isonet.MultimodalTransformer`,
``pooling`` "cls" or "mean") or ``hierarchical``
(:class:`~brainenc.fusion.models.isonet.HierarchicalTransformer`, ``fusion``
"linear" or "attention"); the other keys go to the model's constructor.
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from brainenc.fusion.models.isonet import HierarchicalTransformer, MultimodalMLP, MultimodalTransformer
from brainenc.tasks.gestures.metrics import accuracy, macro_f1
from brainenc.tasks.gestures.ninapro import load_ninapro_db2
from brainenc.tasks.gestures.normalise import ChannelScaler
from brainenc.tasks.gestures.windowing import Windows, concat_windows, ms_to_samples, windows
from brainenc.tasks.rollingq_callback import noise_test_batch
from brainenc.tasks.spec import TaskSpec

MODELS = {"mlp": MultimodalMLP, "transformer": MultimodalTransformer,
          "hierarchical": HierarchicalTransformer}
DATA_KEYS = ("files", "window_ms", "stride_ms", "token_ms", "rest", "train_repetitions",
             "valid_repetitions", "test_repetitions", "batch_size")
MODALITIES = ("emg", "acc")


def tokens(inputs: dict[str, torch.Tensor], per_token: int) -> dict[str, torch.Tensor]:
    """``(B, L, C)`` windows as ``(B, L // per_token, per_token * C)`` tokens (a tail shorter
    than a token is dropped)."""
    out = {}
    for name, x in inputs.items():
        batch, length, channels = x.shape
        n = length // per_token
        out[name] = x[:, : n * per_token].reshape(batch, n, per_token * channels)
    return out


@dataclass
class GestureData:
    """The windows of each split, standardised with the training statistics."""

    train: Windows
    valid: Windows | None
    test: Windows
    classes: np.ndarray
    per_token: int
    batch_size: int

    def split(self, name: str) -> Windows | None:
        return {"train": self.train, "valid": self.valid, "test": self.test}[name]

    def tensors(self, name: str) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        inputs, target = self.split(name).to_tensors(classes=self.classes)
        return tokens(inputs, self.per_token), target


class GestureTask:
    """What :mod:`brainenc.tasks.runner` needs of the gesture task."""

    name = "gestures"
    monitor_default = "macro_f1"

    def __init__(self, spec: TaskSpec):
        self.spec = spec
        spec.check_data_keys(DATA_KEYS)
        files = spec.data.get("files")
        if not isinstance(files, list) or not files or not all(isinstance(f, str) for f in files):
            raise spec.fail("[data] files", "expected a list of NinaPro DB2 .mat files")
        self.files = [spec.resolve(f) for f in files]
        missing = [str(f) for f in self.files if not f.is_file()]
        if missing:
            raise spec.fail("[data] files", f"not found: {missing}")
        name = spec.model_name(MODELS)
        self.model_class = MODELS[name]
        self.model_options = {k: v for k, v in spec.model.items() if k != "name"}
        accepted = set(inspect.signature(self.model_class).parameters) - {"in_dims", "in_shapes",
                                                                         "n_classes"}
        wrong = sorted(set(self.model_options) - accepted)
        if wrong:
            raise spec.fail("[model]", f"{name} takes no {wrong}; it takes {sorted(accepted)}")
        self._data: GestureData | None = None

    def data(self) -> GestureData:
        """Load, window, split and standardise (once)."""
        if self._data is not None:
            return self._data
        settings = self.spec.data
        recordings = [load_ninapro_db2(path) for path in self.files]
        fs = recordings[0].fs
        length = ms_to_samples(settings.get("window_ms", 200), fs)
        stride = ms_to_samples(settings.get("stride_ms", 100), fs)
        per_token = ms_to_samples(settings.get("token_ms", 20), fs)
        if per_token > length:
            raise self.spec.fail("[data] token_ms", "a token cannot be longer than the window")
        every = concat_windows([windows(r, length, stride, rest=settings.get("rest", "drop"))
                                for r in recordings])
        parts = {}
        for split, default in (("train", [1, 3, 4]), ("valid", [6]), ("test", [2, 5])):
            reps = settings.get(f"{split}_repetitions", default)
            parts[split] = every.select(np.isin(every.repetitions, reps)) if reps else None
        if not parts["train"] or not len(parts["train"]) or parts["test"] is None or not len(parts["test"]):
            raise self.spec.fail("[data]", "the train or test repetitions select no window")
        scaler = ChannelScaler().fit(parts["train"])
        scaled = {k: None if v is None or not len(v) else scaler.transform(v) for k, v in parts.items()}
        self._data = GestureData(scaled["train"], scaled["valid"], scaled["test"],
                                 parts["train"].classes, per_token, int(settings.get("batch_size", 64)))
        return self._data

    def build_model(self) -> torch.nn.Module:
        data = self.data()
        inputs, _ = data.tensors("train")
        n_classes = len(data.classes)
        if self.model_class is MultimodalMLP:
            shapes = {m: tuple(inputs[m].shape[1:]) for m in MODALITIES}
            return MultimodalMLP(shapes, n_classes=n_classes, **self.model_options)
        dims = {m: int(inputs[m].shape[2]) for m in MODALITIES}
        return self.model_class(dims, n_classes=n_classes, **self.model_options)

    def train_batches(self, seed: int):
        data = self.data()
        return lambda epoch: ((tokens(x, data.per_token), y) for x, y in
                              data.train.batches(data.batch_size, seed, epoch, classes=data.classes))

    @staticmethod
    def batch_loss(model, batch, **forward) -> torch.Tensor:
        inputs, target = batch
        return F.cross_entropy(model(inputs, **forward), target)

    @staticmethod
    def metric_names() -> tuple[str, ...]:
        return ("accuracy", "macro_f1")

    @staticmethod
    def mode(metric: str) -> str:
        """Whether larger (``"max"``) or smaller values of ``metric`` are better."""
        return "max"

    def evaluate(self, model, split: str, noise: str | None = None, **forward) -> dict[str, float]:
        """Accuracy and macro-F1 of ``model`` on a split; with ``noise``, that modality
        replaced by noise of its mean and standard deviation (the noise test)."""
        inputs, target = self.data().tensors(split)
        if noise is not None:
            if noise not in inputs:
                raise self.spec.fail("--noise", f"no modality {noise!r}; the task has {list(inputs)}")
            inputs = noise_test_batch(inputs, noise, torch.Generator().manual_seed(0))
        with torch.no_grad():
            predicted = model(inputs, **forward).argmax(-1)
        return {"accuracy": accuracy(target, predicted), "macro_f1": macro_f1(target, predicted)}

    def has_validation(self) -> bool:
        return self.data().valid is not None

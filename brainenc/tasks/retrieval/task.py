"""The retrieval task of a spec: paired video and text features → dual-branch transformer →
R@1/5/10, MdR and MnR in both directions.

``[data]`` keys: ``file`` (a paired-feature ``.npz``,
:mod:`~brainenc.tasks.retrieval.pairs`), ``batch_size`` (default 64),
``temperature`` of the contrastive loss (default 0.07).

``[model] name = "dual_branch"``
(:class:`~brainenc.fusion.models.DualBranchTransformer`); its other keys go to
the constructor (``dim``, ``n_tokens``, ``n_layers``, ``n_heads``...).

Each clip's video alone and its text alone go through the model (the other
modality absent: both land in the same common tokens), and the two CLS
embeddings of branch A, L2-normalised, are trained with the symmetric InfoNCE
loss: in a batch, each video must pick its own text among the batch's texts
and each text its own video. Evaluation ranks every text of a split for every
video by cosine similarity (and the reverse): :func:`~brainenc.fusion.retrieval.bidirectional_retrieval`,
``MnR`` (the mean of both directions' mean ranks, lower is better) being the
default validation metric.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from brainenc.fusion.models import DualBranchTransformer
from brainenc.fusion.retrieval import bidirectional_retrieval
from brainenc.tasks.retrieval.pairs import load_pairs
from brainenc.tasks.spec import TaskSpec
from brainenc.tasks.training import seeded_batches

DATA_KEYS = ("file", "batch_size", "temperature")


def _embed(model, split, rows, modality: str, **forward) -> torch.Tensor:
    inputs, lengths = split.inputs(rows, modality)
    out = model(inputs, lengths, **forward)
    return F.normalize(out.embedding_a, dim=-1)


class RetrievalTask:
    """What :mod:`brainenc.tasks.runner` needs of the retrieval task."""

    name = "retrieval"
    monitor_default = "MnR"

    def __init__(self, spec: TaskSpec):
        self.spec = spec
        spec.check_data_keys(DATA_KEYS)
        self.file = spec.data_file("file", "a paired-feature file (.npz)")
        spec.model_name(("dual_branch",))
        self.options = {k: v for k, v in spec.model.items() if k != "name"}
        self.batch_size = int(spec.data.get("batch_size", 64))
        self.temperature = float(spec.data.get("temperature", 0.07))
        if not self.temperature > 0:
            raise spec.fail("[data] temperature", f"must be positive, got {self.temperature}")
        self._data = None

    def data(self):
        if self._data is None:
            self._data = load_pairs(self.file)
        return self._data

    def build_model(self) -> torch.nn.Module:
        options = {"n_classes": 1, "n_pseudo_classes": 1, **self.options}
        try:
            return DualBranchTransformer(self.data().dims, **options)
        except TypeError as error:
            raise self.spec.fail("[model]", str(error)) from None

    @staticmethod
    def metric_names() -> tuple[str, ...]:
        return ("MnR", "v2t/R@1", "t2v/R@1")

    @staticmethod
    def mode(metric: str) -> str:
        return "min" if metric.endswith(("MnR", "MdR")) else "max"

    def has_validation(self) -> bool:
        return len(self.data().split("valid")) > 1

    def train_batches(self, seed: int):
        n = len(self.data().split("train"))
        # a batch of one has no negatives: drop a last batch that small
        return lambda epoch: (rows for rows in seeded_batches(n, self.batch_size, seed, epoch)
                              if len(rows) > 1)

    def batch_loss(self, model, rows, **forward) -> torch.Tensor:
        split = self.data().split("train")
        rows = torch.as_tensor(rows)
        video = _embed(model, split, rows, "video", **forward)
        text = _embed(model, split, rows, "text", **forward)
        logits = video @ text.T / self.temperature
        target = torch.arange(len(rows))
        return (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / 2

    def evaluate(self, model, split: str, noise: str | None = None, **forward) -> dict[str, float]:
        """Retrieval metrics of every video against every text of ``split``."""
        if noise is not None:
            raise self.spec.fail("--noise", "the retrieval task has no noise test")
        data = self.data().split(split)
        with torch.no_grad():
            video = _embed(model, data, slice(None), "video", **forward)
            text = _embed(model, data, slice(None), "text", **forward)
        return bidirectional_retrieval(video @ text.T)

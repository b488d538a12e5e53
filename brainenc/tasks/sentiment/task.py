"""The sentiment task of a spec: an MMSA feature file → MulT or GsiT → MMSA's metrics.

``[data]`` keys: ``file`` (an MMSA pickle, e.g. ``MOSI/Processed/unaligned_50.pkl``,
relative to the spec), ``dataset`` (``mosi``, ``mosei`` or ``sims``; default:
from the file), ``aligned`` (default: from the file), ``batch_size`` (default
16, MMSA's for MOSI).

``[model] name``: ``mult`` or ``gsit``; ``text_encoder`` (a Hugging Face hub
id or a local folder, optional) puts that encoder, fine-tuned, in front of the
model on the file's BERT inputs (:mod:`~brainenc.tasks.sentiment.text_encoder`).
The model takes the constructor arguments MMSA (MulT) or GsiT's authors set
for the dataset
(:func:`~brainenc.tasks.sentiment.configs.mult_config`,
:func:`~brainenc.tasks.sentiment.configs.gsit_config`); other keys of
``[model]`` override them (e.g. ``dim = 32``).

Training minimises the L1 loss of the regression labels, as MMSA does; the
validation metric is ``MAE`` (lower is better) unless ``[train] monitor``
names another metric of :func:`~brainenc.tasks.sentiment.metrics.sentiment_metrics`.
"""
from __future__ import annotations

from dataclasses import replace

import torch

from brainenc.fusion.models import GsiT, MulT
from brainenc.tasks.rollingq_callback import noise_test_batch
from brainenc.tasks.sentiment.configs import gsit_config, mult_config
from brainenc.tasks.sentiment.metrics import MOSI_METRICS, SIMS_METRICS, sentiment_metrics
from brainenc.tasks.sentiment.mmsa import load_mmsa
from brainenc.tasks.spec import TaskSpec

MODELS = {"mult": (MulT, mult_config), "gsit": (GsiT, gsit_config)}
DATA_KEYS = ("file", "dataset", "aligned", "batch_size")
#: Metrics where smaller is better.
LOWER_IS_BETTER = ("MAE", "loss")


class SentimentTask:
    """What :mod:`brainenc.tasks.runner` needs of the sentiment task."""

    name = "sentiment"
    monitor_default = "MAE"

    def __init__(self, spec: TaskSpec):
        self.spec = spec
        spec.check_data_keys(DATA_KEYS)
        self.file = spec.data_file("file", "an MMSA feature file (.pkl)")
        self.model_class, self.config_of = MODELS[spec.model_name(MODELS)]
        self.overrides = {k: v for k, v in spec.model.items() if k not in ("name", "text_encoder")}
        self.text_encoder = spec.model.get("text_encoder")
        if self.text_encoder is not None and not isinstance(self.text_encoder, str):
            raise spec.fail("[model] text_encoder", "expected a Hugging Face hub id or a folder")
        self.batch_size = int(spec.data.get("batch_size", 16))
        self._data = None

    def data(self):
        """The MMSA file, read and checked once."""
        if self._data is None:
            self._data = load_mmsa(self.file, aligned=self.spec.data.get("aligned"),
                                   dataset=self.spec.data.get("dataset"),
                                   text="tokens" if self.text_encoder else "features")
        return self._data

    def build_model(self) -> torch.nn.Module:
        data = self.data()
        dims = data.dims
        encoder = None
        if self.text_encoder is not None:
            from brainenc.tasks.sentiment.text_encoder import load_text_encoder

            folder = self.spec.resolve(self.text_encoder)
            encoder = load_text_encoder(str(folder) if folder.exists() else self.text_encoder)
            dims = replace(dims, text=int(encoder.config.hidden_size))
        options = {**self.config_of(dims, data.dataset), **self.overrides}
        try:
            fusion = self.model_class(**options)
        except TypeError as error:
            raise self.spec.fail("[model]", str(error)) from None
        if encoder is None:
            return fusion
        from brainenc.tasks.sentiment.text_encoder import FineTunedText

        return FineTunedText(encoder, fusion)

    def metric_names(self) -> tuple[str, ...]:
        return SIMS_METRICS if self.data().dataset == "sims" else MOSI_METRICS

    @staticmethod
    def mode(metric: str) -> str:
        return "min" if metric in LOWER_IS_BETTER else "max"

    def has_validation(self) -> bool:
        return len(self.data().split("valid")) > 0

    def train_batches(self, seed: int):
        return lambda epoch: self.data().batches("train", self.batch_size, seed=seed, epoch=epoch)

    @staticmethod
    def batch_loss(model, batch, **forward) -> torch.Tensor:
        batch = batch.to(next(model.parameters()).device)
        return (model(**batch.model_inputs(), **forward)[:, 0] - batch.labels).abs().mean()

    def evaluate(self, model, split: str, noise: str | None = None, **forward) -> dict[str, float]:
        """MMSA's metrics of ``model`` on a split (the noise test with ``noise``)."""
        data = self.data()
        predictions, labels = [], []
        with torch.no_grad():
            for batch in data.batches(split, 64, shuffle=False):
                batch = batch.to(next(model.parameters()).device)
                inputs = batch.model_inputs()
                if noise is not None:
                    if noise not in ("text", "audio", "vision"):
                        raise self.spec.fail("--noise", f"no modality {noise!r}; the task has "
                                                        "text, audio, vision")
                    inputs = noise_test_batch(inputs, noise, torch.Generator().manual_seed(0))
                predictions.append(model(**inputs, **forward)[:, 0].cpu())
                labels.append(batch.labels.cpu())
        return sentiment_metrics(torch.cat(predictions), torch.cat(labels), data.dataset)

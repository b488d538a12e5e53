"""Multimodal sentiment analysis on MMSA's MOSI, MOSEI and CH-SIMS features.

* :mod:`~brainenc.tasks.sentiment.mmsa`: :func:`load_mmsa` reads MMSA's
  pickled feature files into tensors (:class:`MMSADataset`, with batches for
  :class:`~brainenc.fusion.models.MulT` and
  :class:`~brainenc.fusion.models.GsiT`); :func:`write_mmsa` and
  :func:`synthetic_mmsa` make files in the same format.
* :mod:`~brainenc.tasks.sentiment.metrics`: MMSA's ``MetricsTop`` regression
  metrics (:func:`mosi_metrics`, :func:`sims_metrics`).
* :mod:`~brainenc.tasks.sentiment.configs`: MulT and GsiT constructor
  arguments per dataset and :func:`count_parameters`.

Examples
--------
>>> from brainenc.fusion.models import MulT
>>> from brainenc.tasks.sentiment import load_mmsa, mult_config, mosi_metrics
>>> data = load_mmsa("MOSI/Processed/unaligned_50.pkl")        # doctest: +SKIP
>>> model = MulT(**mult_config(data.dims, data.dataset))       # doctest: +SKIP
>>> for batch in data.batches("train", 16, seed=0, epoch=0):   # doctest: +SKIP
...     loss = (model(**batch.model_inputs())[:, 0] - batch.labels).abs().mean()
"""
from .configs import (
    GSIT_CMG,
    MMSA_MULT,
    MMSAMulTSettings,
    count_parameters,
    gsit_config,
    mult_config,
)
from .metrics import (
    MOSI_METRICS,
    SIMS_METRICS,
    mosi_metrics,
    sentiment_metrics,
    sims_metrics,
    weighted_f1,
)
from .mmsa import (
    DATASETS,
    LABEL_BOUND,
    MMSA_DIMS,
    SPLITS,
    FeatureDims,
    MMSABatch,
    MMSADataset,
    MMSASplit,
    load_mmsa,
    synthetic_mmsa,
    write_mmsa,
)

__all__ = [
    "DATASETS",
    "GSIT_CMG",
    "LABEL_BOUND",
    "MMSA_DIMS",
    "MMSA_MULT",
    "MOSI_METRICS",
    "SIMS_METRICS",
    "SPLITS",
    "FeatureDims",
    "MMSABatch",
    "MMSADataset",
    "MMSAMulTSettings",
    "MMSASplit",
    "count_parameters",
    "gsit_config",
    "load_mmsa",
    "mosi_metrics",
    "mult_config",
    "sentiment_metrics",
    "sims_metrics",
    "synthetic_mmsa",
    "weighted_f1",
    "write_mmsa",
]

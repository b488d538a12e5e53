"""Video–text retrieval with the dual-branch transformer: paired features, contrastive
training, R@K and ranks in both directions (:mod:`~brainenc.tasks.retrieval.pairs`,
:mod:`~brainenc.tasks.retrieval.task`)."""
from .pairs import PairedFeatures, load_pairs, synthetic_pairs, write_pairs

__all__ = ["PairedFeatures", "load_pairs", "synthetic_pairs", "write_pairs"]

"""The cross-modal transfer analysis of one subject and one or more feature spaces.

Four directions are scored per voxel:

* ``story_to_story`` and ``movie_to_movie``: models trained on runs of one
  modality predict held-out runs of the same modality;
* ``story_to_movie`` and ``movie_to_story``: models trained on one modality
  predict the other modality's test runs.

Held-out runs
    By default each modality is split leave-one-run-out: run *i* is predicted
    by the model trained on all other runs of its modality, and the within
    score is computed over all runs' held-out predictions. The same fold models
    serve the cross test: their weights are averaged (a linear model, so this
    equals averaging their predictions) and predict every run of the other
    modality. With named test runs, one model per modality is trained on the
    remaining runs; it predicts its own modality's test runs and the other
    modality's test runs, so within and cross scores share their test data.

Significance (``docs/statistics.md``)
    Each direction's p-value tests whether predictions correlate positively
    with the responses beyond what the responses' autocorrelation allows
    (:mod:`brainenc.inference`). A cross-modal prediction is made without the
    other modality's responses, and so is a prediction of named test runs:
    each is tested directly. The pooled leave-one-run-out prediction is not:
    each fold's model contains the other folds' test runs, so its folds are
    dependent. Its within p-value comes instead from a sequential test on the
    same runs: run *j* (from the third on) is predicted by a model trained on
    the runs before it, which makes the steps' statistics independent under
    the null, and the steps are combined by Stouffer's method. The transfer
    maps ask in addition that the training modality's within test be
    significant, and that the cross-modal prediction depend on the pairing of
    story and movie feature coordinates
    (:func:`brainenc.inference.alignment_zscores`), through the intersection-
    union test of the three (:func:`brainenc.inference.conjunction_pvalues`):
    a model that learned nothing from its own modality cannot carry anything
    over, and a correlation that any pairing of the features would give is
    chance alignment, not transfer.

Aligned pairs
    Transfer means something only when the story and movie features share
    coordinates. The files of the space record whether they do (attributes
    ``aligned_pair`` and ``pair``, :mod:`brainenc.io.features`); the files of
    the analysed stimuli must agree, the result's settings keep both, and an
    unaligned space (a baseline) or one with unknown alignment is warned about.

One modality
    Story-only (or movie-only) data go through the same analysis restricted
    to one modality (:func:`~brainenc.transfer.run.run_encoding`, ``brainenc
    encode``): the same split, fits, scores and tests of the within direction,
    which equal that direction of a transfer analysis of the same runs.

Inside every fit, the regularisation of each voxel is chosen by
leave-one-run-out cross-validation over the training runs.

Memory
    Each training design is factorised once
    (:meth:`brainenc.encoding.VoxelwiseRidge.factor`); then voxels go through
    in batches: a batch is fitted, predicted in all four directions, scored
    (r, R², test statistics) and discarded before the next one. Apart from the
    loaded responses, memory is set by the batch size, not by the number of
    voxels. A voxel's results do not depend on its batch.

Modules: :mod:`~brainenc.transfer.plan` (runs, splits, responses: shared by
every feature space), :mod:`~brainenc.transfer.models` (a space's designs,
factorised fits and batch predictions), :mod:`~brainenc.transfer.scores`
(scores, tests and the result of a space), :mod:`~brainenc.transfer.run`
(the batch loop).
"""
from brainenc.encoding import VoxelwiseRidge
from brainenc.transfer.models import (
    MIN_ALIGNMENT_FEATURES,
    BatchPredictions,
    ModalityData,
    SpaceModels,
    feature_space_pair,
    load_modality,
    predict_batch,
    prepare_space,
)
from brainenc.transfer.plan import TransferPlan, plan_transfer
from brainenc.transfer.run import analyse_spaces, run_encoding, run_transfer, run_transfers

__all__ = [
    "MIN_ALIGNMENT_FEATURES",
    "BatchPredictions",
    "ModalityData",
    "SpaceModels",
    "TransferPlan",
    "VoxelwiseRidge",
    "analyse_spaces",
    "run_encoding",
    "feature_space_pair",
    "load_modality",
    "plan_transfer",
    "predict_batch",
    "prepare_space",
    "run_transfer",
    "run_transfers",
]

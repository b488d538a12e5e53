"""Feature spaces of the simulated stimuli: noisy linear mixtures of the latents.

In the ``multimodal`` space story and movie features share one concept mixing
matrix; in the ``unimodal`` space the movie features use an independent one,
so models do not transfer across modalities.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from brainenc.simulate.stimuli import Movie, Story

FEATURE_SPACES: tuple[str, ...] = ("multimodal", "unimodal")
#: Which concept mixing matrix the movies of each space use.
_MOVIE_CONCEPT = {"multimodal": "concept", "unimodal": "concept_unimodal_movie"}
#: How each space's feature files describe the pairing of their story and movie parts.
FEATURE_PAIRS = {
    "multimodal": (True, "simulated: shared concept dimensions"),
    "unimodal": (False, "unaligned: simulated separate feature bases (baseline)"),
}


@dataclass
class FeatureSpaces:
    """``data[space][stimulus] = (features, times)`` and the mixing matrices used."""

    data: dict[str, dict[str, tuple[np.ndarray, np.ndarray]]] = field(default_factory=dict)
    mixing: dict[str, np.ndarray] = field(default_factory=dict)


def make_features(
    rng: np.random.Generator,
    stories: Sequence[Story],
    movies: Sequence[Movie],
    n_features: int,
    dims: dict[str, int],
    noise_sd: float,
    story_rngs: Sequence[np.random.Generator],
    movie_rngs: Sequence[np.random.Generator],
) -> FeatureSpaces:
    """Feature spaces as noisy linear mixtures of the latents.

    Each latent part has unit variance per feature: a mixing matrix of shape
    (n_features, k) has entries of variance 1 / k.

    Parameters
    ----------
    rng : numpy.random.Generator
        Draws the mixing matrices.
    stories, movies : sequence
        The stimuli.
    n_features : int
    dims : dict
        Latent dimensions ``{"shared": k, "language": k, "vision": k}``.
    noise_sd : float
        Standard deviation of the independent feature noise.
    story_rngs, movie_rngs : sequence of numpy.random.Generator
        The feature noise of each stimulus.

    Returns
    -------
    FeatureSpaces
    """
    def mixing(k):
        return rng.standard_normal((n_features, k)) / np.sqrt(k)

    mix = {"concept": mixing(dims["shared"]), "concept_unimodal_movie": mixing(dims["shared"]),
           "language": mixing(dims["language"]), "vision": mixing(dims["vision"])}
    result = FeatureSpaces({space: {} for space in FEATURE_SPACES}, mix)
    for story, stim_rng in zip(stories, story_rngs):
        clean = story.concept @ mix["concept"].T + story.language @ mix["language"].T
        for space in FEATURE_SPACES:
            data = clean + noise_sd * stim_rng.standard_normal(clean.shape)
            result.data[space][story.name] = (data.astype(np.float32), story.word_times)
    for movie, stim_rng in zip(movies, movie_rngs):
        for space in FEATURE_SPACES:
            clean = movie.concept @ mix[_MOVIE_CONCEPT[space]].T + movie.vision @ mix["vision"].T
            data = clean + noise_sd * stim_rng.standard_normal(clean.shape)
            result.data[space][movie.name] = (data.astype(np.float32), movie.frame_times)
    return result

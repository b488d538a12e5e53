"""A simulated subject with known ground truth, written as a complete dataset.

The simulation is generated independently of the analysis code: it builds its
own stimuli, latent concept space, cortical regions, haemodynamic responses and
noise, and writes the result in one of the layouts of ``docs/data_layouts.md``
together with two feature spaces and a ground-truth file
(``docs/simulation.md`` describes all of it).

Generative model, in brief:

* Every story word and every movie frame carries latent vectors: *concept*
  dimensions shared by both modalities, *language-only* dimensions (stories)
  and *vision-only* dimensions (movies) (:mod:`~brainenc.simulate.stimuli`).
* Cortex is fsaverage5 (20 484 vertices, left then right). Spherical caps on
  the registration sphere, placed in partially overlapping pairs, give
  vertices a shared-concept, language-only or vision-only component, or two
  of them; everything else is noise. A component's amplitude falls off from
  its region's centre, each region has its own SNR and each vertex its own
  HRF timing (:mod:`~brainenc.simulate.cortex`).
* The neural drive is convolved with double-gamma HRFs, sampled at the volume
  times (:mod:`~brainenc.simulate.hemodynamics`), scaled to each component's
  SNR and added to AR(1) noise smoothed across the mesh
  (:mod:`~brainenc.simulate.responses`).
* Features are linear mixtures of the latents plus a little noise
  (:mod:`~brainenc.simulate.features`). In the ``multimodal`` space story and
  movie features share one concept mixing matrix; in the ``unimodal`` space
  the movie features use an independent one.
* :mod:`~brainenc.simulate.writers` and :mod:`~brainenc.simulate.video` write
  the files, :mod:`~brainenc.simulate.truth` the ground truth with the
  noise-free ceilings, and :func:`simulate_dataset`
  (:mod:`~brainenc.simulate.dataset`) ties it together.
"""
from brainenc.simulate.cortex import (
    CATEGORY_NAMES,
    COMPONENTS,
    HEMISPHERES,
    N_VERTICES,
    N_VERTICES_PER_HEMI,
)
from brainenc.simulate.dataset import (
    LAYOUTS,
    MOVIE_FORMATS,
    SimulatedRun,
    SimulationInfo,
    simulate_dataset,
)
from brainenc.simulate.features import FEATURE_SPACES
from brainenc.simulate.hemodynamics import canonical_hrf
from brainenc.simulate.stimuli import FILLERS, VOCABULARY
from brainenc.simulate.truth import CEILING_DIRECTIONS, GroundTruth, load_ground_truth
from brainenc.simulate.video import VIDEO_PROJECTION_SEED, VIDEO_SIZE

__all__ = [
    "CATEGORY_NAMES",
    "CEILING_DIRECTIONS",
    "COMPONENTS",
    "FEATURE_SPACES",
    "FILLERS",
    "HEMISPHERES",
    "LAYOUTS",
    "MOVIE_FORMATS",
    "N_VERTICES",
    "N_VERTICES_PER_HEMI",
    "VIDEO_PROJECTION_SEED",
    "VIDEO_SIZE",
    "VOCABULARY",
    "GroundTruth",
    "SimulatedRun",
    "SimulationInfo",
    "canonical_hrf",
    "load_ground_truth",
    "simulate_dataset",
]

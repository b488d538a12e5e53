"""Responses of the simulated cortex: per-vertex signal components and spatio-temporal noise.

A component's signal at a vertex is the vertex's weights applied to the latent
it reads, convolved with the vertex's HRF, then centred and scaled so that its
variance over all written rows of a modality is exactly the vertex's
component SNR. The noise is AR(1) along time, smoothed across the mesh.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from brainenc.simulate.cortex import COMPONENTS, N_VERTICES, Cortex, MeshSmoother
from brainenc.simulate.processes import ar1_series

#: The components each modality shows, and the latent each of them reads.
READOUTS: dict[str, tuple[tuple[str, str], ...]] = {
    "story": (("shared", "concept"), ("language", "language")),
    "movie": (("shared", "concept"), ("vision", "vision")),
}

#: HRF-convolved latents of one run: ``{hrf shape: {latent name: (n_rows, k)}}``.
RunLatents = dict[float, dict[str, np.ndarray]]


@dataclass(frozen=True)
class Readout:
    """How one group of vertices (one component, one HRF shape) reads its latent.

    The component at those vertices is ``(z @ weights.T - offset) * scale``
    with ``z`` the latent convolved with the HRF of that shape.
    """

    component: str
    latent: str
    hrf_shape: float
    vertices: np.ndarray
    weights: np.ndarray   # (n_vertices, k)
    offset: np.ndarray    # (n_vertices,)
    scale: np.ndarray     # (n_vertices,)


def hrf_shapes_in_use(cortex: Cortex) -> list[float]:
    """The distinct (quantised) HRF shapes of the vertices that carry a component."""
    shapes = cortex.hrf_shape[np.isfinite(cortex.hrf_shape)]
    return [float(s) for s in np.unique(shapes)]


def component_readouts(cortex: Cortex, modality: str,
                       latents: Sequence[RunLatents]) -> list[Readout]:
    """Scales that give every component its SNR over all the rows of one modality.

    Parameters
    ----------
    cortex : Cortex
    modality : {"story", "movie"}
    latents : sequence of RunLatents
        The convolved latents of every run of that modality.

    Returns
    -------
    list of Readout
    """
    target = cortex.component_snr
    readouts = []
    for component, latent in READOUTS[modality]:
        column = COMPONENTS.index(component)
        carriers = np.flatnonzero(cortex.region_of[:, column] >= 0)
        for shape in np.unique(cortex.hrf_shape[carriers]):
            vertices = carriers[cortex.hrf_shape[carriers] == shape]
            pooled = np.concatenate([run[float(shape)][latent] for run in latents])
            mean = pooled.mean(axis=0)
            centred = pooled - mean
            covariance = centred.T @ centred / len(pooled)
            weights = cortex.weights[component][vertices]
            variance = np.einsum("vk,kl,vl->v", weights, covariance, weights)
            scale = np.sqrt(target[vertices, column] / variance)
            readouts.append(Readout(component, latent, float(shape), vertices, weights,
                                    weights @ mean, scale))
    return readouts


def run_components(modality: str, readouts: Sequence[Readout], latents: RunLatents,
                   n_rows: int) -> dict[str, np.ndarray]:
    """The signal components of one run, ``{component: (n_rows, n_vertices) float32}``.

    Every component the modality shows is present (zero where no vertex carries it).
    """
    components = {component: np.zeros((n_rows, N_VERTICES), dtype=np.float32)
                  for component, _ in READOUTS[modality]}
    for r in readouts:
        z = latents[r.hrf_shape][r.latent]
        components[r.component][:, r.vertices] = (z @ r.weights.T - r.offset) * r.scale
    return components


def response_noise(rng: np.random.Generator, n_rows: int, rho: float,
                   smoother: MeshSmoother) -> np.ndarray:
    """Unit-variance noise of one run: AR(1) along time, then smoothed across the mesh.

    The smoothing acts on each volume alone, so the lag-one autocorrelation
    stays ``rho`` at every vertex.
    """
    return smoother.apply(ar1_series(rng, n_rows, N_VERTICES, rho))

"""A simulated multi-layer feature set, to test layer sweeps against a known answer.

Real models carry different information at different layers. This writes, for
a simulated dataset, feature spaces ``layers_0 … layers_{L−1}`` built from the
same latents as its ``multimodal`` space, where layer ``k`` keeps a fraction
``g_c(k)`` of the concept part and ``g_s(k)`` of the modality-specific part
(language for stories, vision for movies) and replaces the rest by distractor
latents carried through the same mixing matrices:

    X_k = (g_c C + h_c C̃) Aᵀ + (g_s S + h_s S̃) Bᵀ + σ ε_k,
    g(k) = exp(−(k − peak)² / (2 · width²)),   h = √(1 − g²),

with ``A`` and ``B`` the simulation's mixing matrices (``GroundTruth.feature_mixing``),
σ its feature noise, ``ε_k`` white noise, and ``C̃``, ``S̃`` the stimulus's own
latents reversed in time with a random sign per latent: they have the
latents' variance and autocorrelation but are unrelated to the responses.
Because the distractors lie in the same feature subspace as the true latents, no
regression can separate them, so the information a layer carries about the
responses really falls as ``g(k)``; white noise alone would be averaged away
across features and leave every layer almost equally good. Concept information peaks at ``concept_peak``,
modality-specific information at ``specific_peak``: a sweep should find the
first layer best for the shared-concept vertices and the second for the
language- and vision-only ones. The files are aligned pairs (one model's layer
for both modalities).
"""
from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np

from brainenc.errors import BrainencInputError
from brainenc.io.features import write_stimulus_features
from brainenc.simulate.truth import load_ground_truth

#: Prefix of the layer feature spaces written beside a simulated dataset's own spaces.
LAYER_PREFIX = "layers_"


def layer_gains(n_layers: int, peak: float, width: float) -> np.ndarray:
    """``g(k) = exp(−(k − peak)² / (2 width²))`` for ``k = 0 … n_layers − 1``."""
    k = np.arange(n_layers, dtype=float)
    return np.exp(-0.5 * ((k - peak) / width) ** 2)


def _mix(latents: np.ndarray, mixing: np.ndarray, gain: float, rng: np.random.Generator) -> np.ndarray:
    """``(g L + √(1 − g²) L̃) Mᵀ`` with ``L̃`` the latents reversed in time, random signs."""
    signs = rng.choice([-1.0, 1.0], size=latents.shape[1])
    distractor = latents[::-1] * signs
    return (gain * latents + np.sqrt(max(1.0 - gain**2, 0.0)) * distractor) @ mixing.T


def _read_latents(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, str]:
    with h5py.File(path, "r") as f:
        modality = f.attrs["modality"]
        modality = modality.decode() if isinstance(modality, bytes) else str(modality)
        specific = "language" if modality == "story" else "vision"
        return f["times"][()], f["concept"][()], f[specific][()], modality


def write_layer_features(root: str | Path, n_layers: int = 6, concept_peak: int = 3,
                         specific_peak: int = 1, width: float = 1.0, seed: int = 0) -> list[str]:
    """Write the layer feature spaces of the simulated dataset at ``root`` (module notes).

    Parameters
    ----------
    root : path-like
        A dataset written by :func:`brainenc.simulate.simulate_dataset`.
    n_layers : int
    concept_peak, specific_peak : int
        Layers where the concept and the modality-specific information peak.
    width : float
        Width of the gain profiles, in layers.
    seed : int
        Seed of the layers' noise.

    Returns
    -------
    list of str
        The feature-space names, layer 0 first.
    """
    root = Path(root)
    if n_layers < 2 or not (0 <= concept_peak < n_layers and 0 <= specific_peak < n_layers):
        raise BrainencInputError(root, f"need n_layers >= 2 and both peaks in 0..{n_layers - 1}, got "
                                       f"n_layers={n_layers}, peaks {concept_peak}, {specific_peak}")
    if width <= 0:
        raise BrainencInputError(root, f"width must be positive, got {width}")
    truth = load_ground_truth(root)
    mixing = truth.feature_mixing
    sigma2 = float(truth.params["feature_noise"]) ** 2
    gains = {"concept": layer_gains(n_layers, concept_peak, width),
             "specific": layer_gains(n_layers, specific_peak, width)}
    rng = np.random.default_rng(seed)
    names = [f"{LAYER_PREFIX}{k}" for k in range(n_layers)]
    for path in sorted((root / "latents").glob("*.hf5")):
        times, concept, specific, modality = _read_latents(path)
        specific_mixing = mixing["language"] if modality == "story" else mixing["vision"]
        for k, name in enumerate(names):
            g_c, g_s = gains["concept"][k], gains["specific"][k]
            data = (_mix(concept, mixing["concept"], g_c, rng) + _mix(specific, specific_mixing, g_s, rng)
                    + np.sqrt(sigma2) * rng.standard_normal((len(times), mixing["concept"].shape[0])))
            write_stimulus_features(root / "features" / name / path.name, data.astype(np.float32),
                                    times, model="simulated layers", layer=k, aligned_pair=True,
                                    pair=f"simulated: layer {k} of one model")
    return names

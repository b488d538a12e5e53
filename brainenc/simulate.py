"""A simulated subject with known ground truth, written as a complete dataset.

The simulation is generated independently of the analysis code: it builds its
own stimuli, latent concept space, cortical regions, haemodynamic response and
noise, and writes the result in one of the layouts of ``docs/data_layouts.md``
together with two feature spaces and a ground-truth file
(``docs/simulation.md`` describes all of it).

Generative model, in brief:

* Every story word and every movie frame carries latent vectors: *concept*
  dimensions shared by both modalities, *language-only* dimensions (stories)
  and *vision-only* dimensions (movies).
* Cortex is fsaverage5 (20 484 vertices, left then right). Spherical caps on the
  registration sphere form regions of three kinds: shared-concept vertices read
  the concept latent in both modalities, language-only vertices read the
  language latent during stories, vision-only vertices the vision latent during
  movies. Everything else is noise.
* The neural drive is convolved with a canonical double-gamma HRF, sampled at
  the volume times, scaled to a requested signal-to-noise ratio and added to
  AR(1) noise.
* Features are linear mixtures of the latents plus a little noise. In the
  ``multimodal`` space story and movie features share one concept mixing
  matrix; in the ``unimodal`` space the movie features use an independent one,
  so models do not transfer across modalities.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import h5py
import numpy as np
from scipy import signal as sps
from scipy import stats

from brainenc import __version__
from brainenc.errors import BrainencInputError
from brainenc.io.features import write_stimulus_features
from brainenc.io.output import check_output_folder, output_folder

#: Names of the ground-truth vertex categories, indexed by the ``category`` codes.
CATEGORY_NAMES: tuple[str, ...] = ("noise", "shared", "language", "vision")
LAYOUTS: tuple[str, ...] = ("huth", "bids")
#: How movies are written: a frame-time table, or a small video of the latents.
MOVIE_FORMATS: tuple[str, ...] = ("frames", "video")
FEATURE_SPACES: tuple[str, ...] = ("multimodal", "unimodal")
N_VERTICES_PER_HEMI = 10242
N_VERTICES = 2 * N_VERTICES_PER_HEMI
HEMISPHERES: tuple[str, ...] = ("left", "right")

#: Huth conventions: audio (or the first frame) starts this long after the first
#: volume, and the scan goes on this long after the stimulus ends.
_LEAD_IN_S = 10.0
_LEAD_OUT_S = 10.0
#: Fine time step of the neural drive and of the HRF convolution.
_DT = 0.1
_HRF_LENGTH_S = 32.0

#: Side of the square frames of simulated videos, in pixels.
VIDEO_SIZE = 32
#: Seed of the fixed projections from latents to video colours and patterns
#: (the same for every simulation, see ``docs/simulation.md``).
VIDEO_PROJECTION_SEED = 20231
#: Spatial frequency (cycles across the frame) and contrast of the video grating.
_VIDEO_GRATING_CYCLES = 2
_VIDEO_GRATING_CONTRAST = 0.25
#: Largest mean channel value of a video frame; the grating stays below 255.
_VIDEO_MAX_LEVEL = 200.0

#: Common English words: the vocabulary of the simulated stories.
VOCABULARY: tuple[str, ...] = tuple("""
the of and to a in is it you that he was for on are with as his they be at one
have this from or had by but what some we can out other were all there when up
use your how said an each she which do their time if will way about many then
them would like so these her long make thing see him two has look more day
could go come did number sound no most people my over know water than call
first who may down side been now find any new work part take get place made
live where after back little only round man year came show every good me give
our under name very through just form great think say help low line turn cause
much mean before move right boy old too same tell does set three want air well
also play small end put home read hand large even land here must big high such
follow act why ask men change went light kind off need house picture try us
again animal point mother world near build self earth father head stand own page
should country found answer school grow study still learn plant cover food sun
four between state keep eye never last let thought city tree cross farm hard
start might story saw far sea draw left late run while press close night real
life few north open seem together next white children begin got walk example
paper group always music those both mark often letter until mile river car feet
care second book carry took science eat room friend began idea fish mountain
stop once base hear horse cut sure watch color face wood main enough plain girl
usual young ready above ever red list though feel talk bird soon body dog family
direct leave song measure door black short class wind question happen complete
ship area half rock order fire south problem piece told knew pass since top
whole king space heard best hour better true during hundred five remember step
early hold west ground interest reach fast sing listen six table travel less
morning ten simple several toward war lay against pattern slow center love
person money serve appear road map rain rule pull cold notice voice power town
fine certain fly fall lead cry dark machine note wait plan figure star box field
rest able done beauty drive stood front teach week final gave green quick ocean
warm free minute strong special mind behind clear produce fact street nothing
course stay wheel full blue decide deep moon island foot busy boat common gold
plane dry wonder laugh thousand ago ran game shape hot miss brought heat snow
bring yes distant fill east paint language among
""".split())

#: Word-tier labels that are not words (see ``docs/data_layouts.md``, Transcripts).
FILLERS: tuple[str, ...] = ("sentence_start", "sentence_end", "br", "lg", "ls", "ns", "sp")


# --------------------------------------------------------------------------- #
# Public records
# --------------------------------------------------------------------------- #
@dataclass(frozen=True)
class SimulatedRun:
    """One run written by :func:`simulate_dataset`.

    Parameters
    ----------
    name : str
        Run name (the stimulus name: ``story01``, ``movie01``...).
    modality : {"story", "movie"}
    response_paths : tuple of Path
        The ``.hf5`` file (Huth) or the left and right GIFTI files (BIDS).
    n_rows : int
        Rows written to the response file.
    times : ndarray of shape (n_rows,)
        Time of each written row on the stimulus clock (seconds).
    """

    name: str
    modality: str
    response_paths: tuple[Path, ...]
    n_rows: int
    times: np.ndarray


@dataclass(frozen=True)
class SimulationInfo:
    """What :func:`simulate_dataset` wrote.

    Parameters
    ----------
    root : Path
        The dataset folder.
    layout : {"huth", "bids"}
    subject : str
    feature_spaces : tuple of str
        Names of the feature spaces under ``root/features``.
    ground_truth_path : Path
        ``root/ground_truth.npz``.
    runs : tuple of SimulatedRun
        Story runs then movie runs.
    """

    root: Path
    layout: str
    subject: str
    feature_spaces: tuple[str, ...]
    ground_truth_path: Path
    runs: tuple[SimulatedRun, ...]

    @property
    def feature_root(self) -> Path:
        """Folder holding the feature spaces."""
        return self.root / "features"


@dataclass(frozen=True)
class GroundTruth:
    """The ground truth of a simulated subject (``ground_truth.npz``).

    Parameters
    ----------
    category : ndarray of int8, shape (20484,)
        Category code per fsaverage5 vertex (left then right hemisphere); the
        codes index ``category_names``.
    category_names : tuple of str
        ``("noise", "shared", "language", "vision")``.
    region : ndarray of int16, shape (20484,)
        Region index per vertex, -1 outside every region.
    region_center : ndarray of shape (n_regions, 3)
        Region centres on the fsaverage5 sphere (mesh coordinates).
    region_hemi : tuple of str
        ``"left"`` or ``"right"`` per region.
    region_category : ndarray of int8, shape (n_regions,)
    region_radius_deg : ndarray of shape (n_regions,)
        Angular radius of each region on the sphere.
    weights : dict of str to ndarray
        ``"shared"``, ``"language"``, ``"vision"``: per-vertex weights on the
        latent dimensions (20484 × k), zero where a vertex does not read them.
    feature_mixing : dict of str to ndarray
        Mixing matrices (n_features × k) from latents to features:
        ``concept`` (both modalities of ``multimodal``, stories of
        ``unimodal``), ``concept_unimodal_movie``, ``language``, ``vision``.
    max_r : dict of str to ndarray
        ``"story"``, ``"movie"``: per vertex, the correlation between the
        noiseless signal and the written response over that modality's rows —
        the best score any model can reach (0 where there is no signal).
    params : dict
        Scalar parameters of the simulation (``snr``, ``noise_rho``, ``seed``...).
    path : Path or None
        The file read.
    """

    category: np.ndarray
    category_names: tuple[str, ...]
    region: np.ndarray
    region_center: np.ndarray
    region_hemi: tuple[str, ...]
    region_category: np.ndarray
    region_radius_deg: np.ndarray
    weights: dict = field(default_factory=dict)
    feature_mixing: dict = field(default_factory=dict)
    max_r: dict = field(default_factory=dict)
    params: dict = field(default_factory=dict)
    path: Path | None = None

    def mask(self, name: str) -> np.ndarray:
        """Boolean mask of the vertices of one category (``"shared"``...)."""
        if name not in self.category_names:
            raise KeyError(f"unknown category {name!r}; expected one of {self.category_names}")
        return self.category == self.category_names.index(name)

    @property
    def snr(self) -> float:
        return float(self.params["snr"])


# --------------------------------------------------------------------------- #
# Haemodynamics and noise
# --------------------------------------------------------------------------- #
def canonical_hrf(dt: float = _DT, length: float = _HRF_LENGTH_S) -> np.ndarray:
    """SPM-like canonical double-gamma haemodynamic response, unit area.

    ``h(t) = g(t; 6) - g(t; 16) / 6`` with ``g(t; a)`` the gamma density of shape
    ``a`` and scale 1 s: the response peaks near 5 s and undershoots near 15 s.
    The samples are scaled so that ``h.sum() * dt == 1``.

    Parameters
    ----------
    dt : float
        Sampling step in seconds.
    length : float
        Duration covered, in seconds (samples at ``0, dt, ... < length``).

    Returns
    -------
    ndarray of shape (ceil(length / dt),)
    """
    if dt <= 0 or length <= dt:
        raise ValueError(f"need 0 < dt < length, got dt={dt}, length={length}")
    t = np.arange(int(np.ceil(length / dt))) * dt
    h = stats.gamma.pdf(t, 6.0) - stats.gamma.pdf(t, 16.0) / 6.0
    return h / (h.sum() * dt)


def _ar1_noise(rng: np.random.Generator, n_rows: int, n_cols: int, rho: float) -> np.ndarray:
    """Stationary AR(1) noise along rows with unit marginal variance, float32.

    ``x[0] ~ N(0, 1)`` and ``x[t] = rho * x[t-1] + sqrt(1 - rho**2) * e[t]``.
    """
    noise = rng.standard_normal((n_rows, n_cols), dtype=np.float32)
    gain = np.float32(np.sqrt(1.0 - rho**2))
    rho32 = np.float32(rho)
    for t in range(1, n_rows):
        noise[t] *= gain
        noise[t] += rho32 * noise[t - 1]
    return noise


def _convolve_drive(drive: np.ndarray, hrf: np.ndarray) -> np.ndarray:
    """Causal convolution of each column of ``drive`` (fine grid) with the HRF."""
    full = sps.fftconvolve(drive, hrf[:, None], axes=0)
    return full[: len(drive)] * _DT


# --------------------------------------------------------------------------- #
# Cortex: regions and weights
# --------------------------------------------------------------------------- #
def _fsaverage5_sphere() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``{"left": (coordinates, faces), "right": ...}`` of nilearn's fsaverage5 sphere."""
    from nilearn.datasets import load_fsaverage

    sphere = load_fsaverage("fsaverage5")["sphere"]
    return {
        hemi: (np.asarray(sphere.parts[hemi].coordinates, dtype=np.float64),
               np.asarray(sphere.parts[hemi].faces))
        for hemi in HEMISPHERES
    }


def _angles_deg(coords: np.ndarray, centre: np.ndarray) -> np.ndarray:
    """Angle (degrees) between each vertex and a centre, seen from the sphere's middle."""
    unit = coords / np.linalg.norm(coords, axis=1, keepdims=True)
    c = centre / np.linalg.norm(centre)
    return np.degrees(np.arccos(np.clip(unit @ c, -1.0, 1.0)))


@dataclass
class _Cortex:
    category: np.ndarray          # (n_vertices,) int8
    region: np.ndarray            # (n_vertices,) int16
    centres: np.ndarray           # (n_regions, 3)
    hemis: list[str]
    region_category: np.ndarray   # (n_regions,) int8
    radii: np.ndarray             # (n_regions,) degrees
    weights: dict[str, np.ndarray]  # category name -> (n_vertices, k)


def _make_cortex(
    rng: np.random.Generator,
    spheres: dict[str, tuple[np.ndarray, np.ndarray]],
    dims: dict[str, int],
    regions_per_hemi: int,
    radius_deg: tuple[float, float],
) -> _Cortex:
    """Place non-overlapping spherical-cap regions and give their vertices weights."""
    category = np.zeros(N_VERTICES, dtype=np.int8)
    region = np.full(N_VERTICES, -1, dtype=np.int16)
    weights = {name: np.zeros((N_VERTICES, k), dtype=np.float64) for name, k in dims.items()}
    centres, hemis, region_cats, radii = [], [], [], []
    for h, hemi in enumerate(HEMISPHERES):
        coords, _ = spheres[hemi]
        offset = h * N_VERTICES_PER_HEMI
        placed: list[tuple[np.ndarray, float]] = []
        for code in range(1, len(CATEGORY_NAMES)):
            for _ in range(regions_per_hemi):
                radius = float(rng.uniform(*radius_deg))
                # Rejection sampling keeps every cap clear of the caps already placed.
                for _attempt in range(1000):
                    centre = coords[rng.integers(len(coords))]
                    if all(_angles_deg(c[None, :], centre)[0] > r + radius + 4.0 for c, r in placed):
                        break
                else:
                    raise ValueError("could not place non-overlapping regions on the sphere; "
                                     "use fewer or smaller regions")
                placed.append((centre, radius))
                members = np.flatnonzero(_angles_deg(coords, centre) <= radius)
                index = len(centres)
                centres.append(centre)
                hemis.append(hemi)
                region_cats.append(code)
                radii.append(radius)
                category[offset + members] = code
                region[offset + members] = index
                name = CATEGORY_NAMES[code]
                weights[name][offset + members] = _region_weights(
                    rng, coords[members], centre, radius, dims[name])
    return _Cortex(category, region, np.array(centres), hemis,
                   np.array(region_cats, dtype=np.int8), np.array(radii), weights)


def _region_weights(rng, coords, centre, radius_deg, k) -> np.ndarray:
    """Weights that vary smoothly across a region: a base vector plus a linear gradient.

    A little independent jitter keeps every vertex its own weights.
    """
    scale = np.linalg.norm(centre) * np.radians(radius_deg)
    position = (coords - centre) / scale            # about unit size at the region's edge
    base = rng.standard_normal(k)
    gradient = rng.standard_normal((3, k)) * 0.5
    jitter = rng.standard_normal((len(coords), k)) * 0.1
    return base + position @ gradient + jitter


# --------------------------------------------------------------------------- #
# Stimuli
# --------------------------------------------------------------------------- #
@dataclass
class _Story:
    name: str
    duration: float
    intervals: list[tuple[float, float, str]]   # word tier, tiles [0, duration]
    word_times: np.ndarray                       # midpoints of the real words
    words: list[str]
    concept: np.ndarray                          # (n_words, k_shared)
    language: np.ndarray                         # (n_words, k_lang)


@dataclass
class _Movie:
    name: str
    duration: float
    frame_times: np.ndarray
    concept: np.ndarray                          # (n_frames, k_shared)
    vision: np.ndarray                           # (n_frames, k_vis)


@dataclass
class _Lexicon:
    words: tuple[str, ...]
    probabilities: np.ndarray
    concept: np.ndarray   # (n_words, k_shared)
    language: np.ndarray  # (n_words, k_lang)


def _make_lexicon(rng: np.random.Generator, k_shared: int, k_lang: int) -> _Lexicon:
    n = len(VOCABULARY)
    # Zipf-like word frequencies: the list starts with the most common words.
    p = 1.0 / (np.arange(n) + 3.0)
    return _Lexicon(VOCABULARY, p / p.sum(), rng.standard_normal((n, k_shared)),
                    rng.standard_normal((n, k_lang)))


def _round_ms(t: float) -> float:
    return round(float(t), 3)


def _make_story(rng, name: str, duration: float, lexicon: _Lexicon,
                context_weight: float = 0.5, context_rho: float = 0.6) -> _Story:
    """A story that fills ``[0, duration]``: sentences of words separated by pauses.

    Each word's latent vectors mix the word's own vectors with a context state
    that drifts from sentence to sentence (as contextual language features do).
    """
    k_shared, k_lang = lexicon.concept.shape[1], lexicon.language.shape[1]
    intervals: list[tuple[float, float, str]] = []
    words, times, word_ids, sentence_ids = [], [], [], []
    t = _round_ms(rng.uniform(0.3, 1.0))
    intervals.append((0.0, t, ""))
    sentence = 0
    while True:
        n_words = int(rng.integers(4, 15))
        chosen = rng.choice(len(lexicon.words), size=n_words, p=lexicon.probabilities)
        durations = [float(np.clip(0.12 + 0.045 * len(lexicon.words[i]) + rng.normal(0, 0.04),
                                   0.15, 0.6)) for i in chosen]
        needed = 0.2 + sum(durations) + 0.3 * n_words + 1.2
        if t + needed > duration - 0.5:
            break
        piece: list[tuple[float, str]] = [(0.1, "sentence_start")]
        for i, d in zip(chosen, durations):
            piece.append((d, lexicon.words[i]))
            if rng.random() < 0.08:      # a short hesitation inside the sentence
                piece.append((float(rng.uniform(0.1, 0.3)), "sp"))
        piece.append((0.1, "sentence_end"))
        pause = float(rng.uniform(0.2, 0.9))
        piece.append((pause, "{BR}" if rng.random() < 0.15 else "sp"))
        for d, label in piece:
            end = _round_ms(t + d)
            intervals.append((t, end, label))
            if label in lexicon.words:
                words.append(label)
                times.append((t + end) / 2.0)
                word_ids.append(lexicon.words.index(label))
                sentence_ids.append(sentence)
            t = end
        sentence += 1
    intervals.append((t, float(duration), ""))
    # Context state per sentence: an AR(1) walk with unit stationary variance.
    n_sent = max(sentence, 1)
    ctx_c = _ar1_noise(rng, n_sent, k_shared, context_rho).astype(np.float64)
    ctx_l = _ar1_noise(rng, n_sent, k_lang, context_rho).astype(np.float64)
    ids, sids = np.array(word_ids, dtype=int), np.array(sentence_ids, dtype=int)
    a, b = np.sqrt(1.0 - context_weight), np.sqrt(context_weight)
    concept = a * lexicon.concept[ids] + b * ctx_c[sids]
    language = a * lexicon.language[ids] + b * ctx_l[sids]
    return _Story(name, float(duration), intervals, np.array(times), words, concept, language)


def _piecewise_smooth(rng, scene_of_frame: np.ndarray, n_scenes: int, k: int, fps: float,
                      scene_rho: float = 0.5, drift: float = 0.4) -> np.ndarray:
    """Per-frame latent: a vector per scene (correlated across scenes) plus slow drift."""
    scenes = _ar1_noise(rng, n_scenes, k, scene_rho).astype(np.float64)
    noise = rng.standard_normal((len(scene_of_frame), k))
    smooth = sps.fftconvolve(noise, _gaussian_kernel(1.0 * fps)[:, None], mode="same", axes=0)
    smooth /= smooth.std(axis=0, keepdims=True)
    return (scenes[scene_of_frame] + drift * smooth) / np.sqrt(1.0 + drift**2)


def _gaussian_kernel(sigma_samples: float) -> np.ndarray:
    half = int(np.ceil(4 * sigma_samples))
    x = np.arange(-half, half + 1)
    kernel = np.exp(-0.5 * (x / sigma_samples) ** 2)
    return kernel / kernel.sum()


def _make_movie(rng, name: str, duration: float, fps: float, k_shared: int, k_vis: int,
                scene_s: tuple[float, float] = (2.0, 6.0)) -> _Movie:
    """A movie of scenes lasting a few seconds each, shown at ``fps``."""
    n_frames = int(np.floor(duration * fps))
    times = np.arange(n_frames) / fps
    cuts = np.cumsum(rng.uniform(*scene_s, size=int(duration / scene_s[0]) + 2))
    scene_of_frame = np.searchsorted(cuts, times, side="right")
    n_scenes = int(scene_of_frame.max()) + 1
    concept = _piecewise_smooth(rng, scene_of_frame, n_scenes, k_shared, fps)
    vision = _piecewise_smooth(rng, scene_of_frame, n_scenes, k_vis, fps)
    return _Movie(name, float(duration), times, concept, vision)


# --------------------------------------------------------------------------- #
# Neural signal
# --------------------------------------------------------------------------- #
def _latent_at_times(event_times, latent, impulses: bool, duration: float,
                     sample_times: np.ndarray, hrf: np.ndarray) -> np.ndarray:
    """HRF-convolved latent time course sampled at ``sample_times``.

    ``impulses``: each event is a brief impulse (story words); otherwise each
    event holds its value until the next (movie frames).
    """
    t0 = min(0.0, float(sample_times.min())) - _HRF_LENGTH_S
    t1 = max(duration, float(sample_times.max())) + _DT
    fine = t0 + np.arange(int(np.ceil((t1 - t0) / _DT)) + 1) * _DT
    drive = np.zeros((len(fine), latent.shape[1]))
    if impulses:
        # An impulse of unit area: height 1 / dt over one fine step.
        bins = np.round((event_times - t0) / _DT).astype(int)
        np.add.at(drive, bins, latent / _DT)
    else:
        inside = (fine >= 0.0) & (fine < duration)
        frame = np.searchsorted(event_times, fine[inside], side="right") - 1
        drive[inside] = latent[np.clip(frame, 0, len(latent) - 1)]
    response = _convolve_drive(drive, hrf)
    return np.stack([np.interp(sample_times, fine, col) for col in response.T], axis=1)


#: Which latent each category of vertex reads in each modality.
_READOUTS: tuple[tuple[str, str, str], ...] = (
    ("story", "shared", "concept"), ("story", "language", "language"),
    ("movie", "shared", "concept"), ("movie", "vision", "vision"),
)


def _run_latents(stim, modality: str, times: np.ndarray, hrf: np.ndarray) -> dict:
    """HRF-convolved latents of one stimulus at ``times`` (``concept`` and one other)."""
    if modality == "story":
        return {name: _latent_at_times(stim.word_times, latent, True, stim.duration, times, hrf)
                for name, latent in (("concept", stim.concept), ("language", stim.language))}
    return {name: _latent_at_times(stim.frame_times, latent, False, stim.duration, times, hrf)
            for name, latent in (("concept", stim.concept), ("vision", stim.vision))}


def _signal_scales(latents: list[np.ndarray], weights: np.ndarray, snr: float):
    """Per-vertex offset and scale so the signal has zero mean and variance ``snr``.

    ``latents`` are HRF-convolved latent time courses (pooled over a modality's
    runs); ``weights`` is (n_vertices, k). Vertices with zero weights get scale 0.
    """
    pooled = np.concatenate(latents, axis=0)
    mean = pooled.mean(axis=0)
    cov = np.cov(pooled, rowvar=False, bias=True)
    variance = np.einsum("vk,kl,vl->v", weights, cov, weights)
    scale = np.zeros(len(weights))
    ok = variance > 0
    scale[ok] = np.sqrt(snr / variance[ok])
    return weights @ mean, scale


# --------------------------------------------------------------------------- #
# Writers
# --------------------------------------------------------------------------- #
def _fmt(x: float) -> str:
    return repr(round(float(x), 4))


def _textgrid_text(story: _Story) -> str:
    """The story's transcript as a Praat TextGrid in the long text format."""
    phones: list[tuple[float, float, str]] = []
    for start, end, label in story.intervals:
        if label in VOCABULARY:
            # Coarse phones: the word cut into letter pairs over equal sub-intervals.
            chunks = [label[i:i + 2].upper() for i in range(0, len(label), 2)]
            edges = [_round_ms(start + (end - start) * j / len(chunks)) for j in range(len(chunks))]
            edges.append(end)
            phones.extend((edges[j], edges[j + 1], c) for j, c in enumerate(chunks))
        else:
            phones.append((start, end, "sp" if label else ""))
    lines = [
        'File type = "ooTextFile"',
        'Object class = "TextGrid"',
        "",
        "xmin = 0 ",
        f"xmax = {_fmt(story.duration)} ",
        "tiers? <exists> ",
        "size = 2 ",
        "item []: ",
    ]
    for number, (tier, intervals) in enumerate((("phone", phones), ("word", story.intervals)), 1):
        lines += [
            f"    item [{number}]:",
            '        class = "IntervalTier" ',
            f'        name = "{tier}" ',
            "        xmin = 0 ",
            f"        xmax = {_fmt(story.duration)} ",
            f"        intervals: size = {len(intervals)} ",
        ]
        for i, (start, end, label) in enumerate(intervals, 1):
            text = label.replace('"', '""')
            lines += [
                f"        intervals [{i}]:",
                f"            xmin = {_fmt(start)} ",
                f"            xmax = {_fmt(end)} ",
                f'            text = "{text}" ',
            ]
    return "\n".join(lines) + "\n"


def _frames_text(movie: _Movie) -> str:
    rows = [f"{i}\t{t!r}" for i, t in enumerate(movie.frame_times.tolist())]
    return "frame\ttime\n" + "\n".join(rows) + "\n"


def _video_frame_images(movie: _Movie, video_fps: float) -> np.ndarray:
    """RGB frames (n, VIDEO_SIZE, VIDEO_SIZE, 3) uint8 of a movie shown at ``video_fps``.

    Frame ``j`` (at ``j / video_fps`` s) shows the latents of the simulation
    frame showing at that time. Its mean colour is ``200 * logistic(P @ z)``
    with ``z`` the concept and vision latents concatenated; a vertical grating
    whose phase is ``pi * tanh(q @ vision / sqrt(k_vis))`` modulates it
    (``docs/simulation.md`` gives ``P`` and ``q``).
    """
    k_shared, k_vis = movie.concept.shape[1], movie.vision.shape[1]
    rng = np.random.default_rng(VIDEO_PROJECTION_SEED)
    colour_projection = rng.standard_normal((3, k_shared + k_vis)) / np.sqrt(k_shared + k_vis)
    phase_projection = rng.standard_normal(k_vis)
    n_frames = int(np.floor(movie.duration * video_fps))
    times = np.arange(n_frames) / video_fps
    # The simulation frame showing at each video time (float slack for equal times).
    index = np.searchsorted(movie.frame_times, times + 1e-9, side="right") - 1
    latent = np.concatenate([movie.concept[index], movie.vision[index]], axis=1)
    colour = _VIDEO_MAX_LEVEL / (1.0 + np.exp(-latent @ colour_projection.T))   # (n, 3)
    phase = np.pi * np.tanh(movie.vision[index] @ phase_projection / np.sqrt(k_vis))
    x = (np.arange(VIDEO_SIZE) + 0.5) / VIDEO_SIZE
    grating = 1.0 + _VIDEO_GRATING_CONTRAST * np.sin(
        2.0 * np.pi * _VIDEO_GRATING_CYCLES * x[None, :] + phase[:, None])      # (n, width)
    images = colour[:, None, None, :] * grating[:, None, :, None]
    images = np.broadcast_to(images, (n_frames, VIDEO_SIZE, VIDEO_SIZE, 3))
    return np.clip(np.round(images), 0, 255).astype(np.uint8)


def _write_video(path: Path, movie: _Movie, video_fps: float) -> None:
    """The movie as an H.264 (or, without libx264, MPEG-4 part 2) mp4 in yuv420p."""
    import av

    path.parent.mkdir(parents=True, exist_ok=True)
    rate = Fraction(video_fps).limit_denominator(1001)
    with av.open(str(path), "w") as container:
        try:
            stream = container.add_stream("libx264", rate=rate)
            stream.options = {"crf": "12"}
        except (av.FFmpegError, ValueError):
            stream = container.add_stream("mpeg4", rate=rate)
            stream.bit_rate = 2_000_000
        stream.width = stream.height = VIDEO_SIZE
        stream.pix_fmt = "yuv420p"
        # One thread: the same seed writes the same bytes.
        stream.codec_context.thread_count = 1
        for j, image in enumerate(_video_frame_images(movie, video_fps)):
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts = j
            container.mux(stream.encode(frame))
        container.mux(stream.encode())


def _write_json(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=2) + "\n", encoding="utf-8")


def _write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def _write_hf5(path: Path, data: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as f:
        f.create_dataset("data", data=data.astype(np.float32, copy=False))


def _write_gifti(path: Path, data: np.ndarray, tr: float) -> None:
    """One hemisphere's time series, vertices × volumes, one data array per volume."""
    import nibabel as nib

    path.parent.mkdir(parents=True, exist_ok=True)
    arrays = [
        nib.gifti.GiftiDataArray(
            np.ascontiguousarray(row, dtype=np.float32),
            intent="NIFTI_INTENT_TIME_SERIES",
            datatype="NIFTI_TYPE_FLOAT32",
            # Uncompressed base64: noise does not compress and gzip triples the write time.
            encoding="GIFTI_ENCODING_B64BIN",
        )
        for row in data
    ]
    meta = nib.gifti.GiftiMetaData({"TimeStep": f"{tr * 1000.0:g}"})
    nib.save(nib.gifti.GiftiImage(darrays=arrays, meta=meta), str(path))


# --------------------------------------------------------------------------- #
# Timing of the runs
# --------------------------------------------------------------------------- #
@dataclass(frozen=True)
class _RunTiming:
    n_volumes: int        # volumes acquired
    row_times: np.ndarray  # stimulus-clock time of each written row
    meta: dict            # layout-specific numbers (respdict N, movie entry...)


def _story_duration(n_rows: int, tr: float) -> float:
    """Audio length: with ``N = n_rows + 20`` volumes, 10 s of scan before and after."""
    return tr * (n_rows + 20) - _LEAD_IN_S - _LEAD_OUT_S


def _movie_duration(n_rows: int, tr: float) -> float:
    """Movie length: with ``n_rows + 15`` volumes, 10 s of scan before and after."""
    return tr * (n_rows + 15) - _LEAD_IN_S - _LEAD_OUT_S


def _huth_timing(modality: str, n_rows: int, tr: float) -> _RunTiming:
    if modality == "story":
        n_volumes = n_rows + 20
        # respdict N -> N - 5 grid volumes at 2k - 10 + 1 s; keep [10 : -5].
        k = np.arange(n_volumes - 5)[10:-5]
        return _RunTiming(n_volumes, tr * k - _LEAD_IN_S + tr / 2.0, {"respdict": n_volumes})
    n_volumes = n_rows + 15
    k = np.arange(n_volumes)[10:-5]
    entry = {"n_trs": n_volumes, "tr": tr, "start": _LEAD_IN_S, "trim_start": 10, "trim_end": 5}
    return _RunTiming(n_volumes, tr * k - _LEAD_IN_S + tr / 2.0, entry)


def _bids_timing(duration: float, tr: float) -> _RunTiming:
    n_volumes = int(np.ceil((_LEAD_IN_S + duration + _LEAD_OUT_S) / tr))
    k = np.arange(n_volumes)
    return _RunTiming(n_volumes, tr * k - _LEAD_IN_S + tr / 2.0, {"onset": _LEAD_IN_S})


# --------------------------------------------------------------------------- #
# Main entry point
# --------------------------------------------------------------------------- #
def simulate_dataset(
    out: str | Path,
    layout: str = "huth",
    subject: str = "sim01",
    n_stories: int = 6,
    n_movies: int = 6,
    seed: int = 0,
    snr: float = 0.3,
    n_trs_per_run: int = 280,
    tr: float = 2.0,
    noise_rho: float = 0.4,
    n_features: int = 48,
    k_shared: int = 8,
    k_lang: int = 8,
    k_vis: int = 8,
    fps: float = 15.0,
    feature_noise: float = 0.3,
    regions_per_hemi: int = 2,
    region_radius_deg: tuple[float, float] = (11.0, 15.0),
    save_signal: bool = False,
    overwrite: bool = False,
    movie_format: str = "frames",
    video_fps: float | None = None,
) -> SimulationInfo:
    """Simulate one subject hearing stories and watching movies; write a dataset.

    Parameters
    ----------
    out : path-like
        Dataset folder to create. It must not exist (or be empty), or hold a
        previous simulated dataset and ``overwrite`` be true (see
        :mod:`brainenc.io.output`). The dataset is built in a temporary folder
        beside it and moved into place at the end, so a failure leaves nothing
        behind.
    layout : {"huth", "bids"}
        Layout of ``docs/data_layouts.md`` to write.
    subject : str
        Subject label (letters and digits).
    n_stories, n_movies : int
        Number of story and movie runs (one stimulus each).
    seed : int
        Seed of everything random. Cortex, vocabulary, stimuli, features and
        noise come from separate streams, so for example the regions do not
        change with the number of runs.
    snr : float
        Signal variance / noise variance in every signal vertex, in each
        modality the vertex responds to: the signal's variance over all written
        rows of that modality is exactly ``snr``; the noise has unit variance.
    n_trs_per_run : int
        Analysed volumes per run (the rows of a Huth ``.hf5``); stimulus lengths
        follow from it (see ``docs/simulation.md``).
    tr : float
        Repetition time in seconds; the Huth layout needs 2.0.
    noise_rho : float
        Lag-one autocorrelation of the AR(1) noise, in [0, 1).
    n_features : int
        Features per event in each feature space.
    k_shared, k_lang, k_vis : int
        Dimensions of the concept, language-only and vision-only latents.
    fps : float
        Movie frame rate.
    feature_noise : float
        Standard deviation of the independent noise added to every feature
        (the latent parts have unit variance per feature).
    regions_per_hemi : int
        Regions of each signal category in each hemisphere.
    region_radius_deg : (float, float)
        Range of the regions' angular radii on the sphere.
    save_signal : bool
        Also write ``signal.npz``: the noiseless signal of every run, keyed by
        run name, same rows and columns as the responses (held in memory until
        written: about as large as all responses together).
    overwrite : bool
        Replace ``out`` if it holds a previous simulated dataset.
    movie_format : {"frames", "video"}
        ``"frames"``: each movie is a frame-time table (``<movie>_frames.tsv``).
        ``"video"``: each movie is a small mp4 (``<movie>.mp4``, 32 × 32 px)
        whose frames are a fixed function of the frame latents (needs PyAV).
    video_fps : float or None
        Frame rate of the videos, at most ``fps``; None: ``fps``.

    Returns
    -------
    SimulationInfo
    """
    out = Path(out)
    _check_params(out, layout, subject, n_stories, n_movies, snr, n_trs_per_run, tr,
                  noise_rho, n_features, (k_shared, k_lang, k_vis), fps, feature_noise,
                  regions_per_hemi, region_radius_deg, overwrite, movie_format, video_fps)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise BrainencInputError(out, f"seed (--seed) must be a whole number >= 0, got {seed!r}")
    out = check_output_folder(out, kind="simulate", overwrite=overwrite)
    if video_fps is None:
        video_fps = fps
    root_seed = np.random.SeedSequence(seed)
    streams = dict(zip(("cortex", "lexicon", "stimuli", "features", "noise"), root_seed.spawn(5)))
    # Per-modality child streams, then one per stimulus: stimulus i of a modality
    # is the same whatever the number of runs.
    per_stimulus = {
        name: dict(zip(("story", "movie"), streams[name].spawn(2)))
        for name in ("stimuli", "features", "noise")
    }

    def stimulus_rngs(kind: str, modality: str, n: int) -> list[np.random.Generator]:
        return [np.random.default_rng(s) for s in per_stimulus[kind][modality].spawn(n)]

    dims = {"shared": k_shared, "language": k_lang, "vision": k_vis}
    cortex = _make_cortex(np.random.default_rng(streams["cortex"]), _fsaverage5_sphere(), dims,
                          regions_per_hemi, region_radius_deg)
    lexicon = _make_lexicon(np.random.default_rng(streams["lexicon"]), k_shared, k_lang)
    stories = [
        _make_story(rng, f"story{i + 1:02d}", _story_duration(n_trs_per_run, tr), lexicon)
        for i, rng in enumerate(stimulus_rngs("stimuli", "story", n_stories))
    ]
    movies = [
        _make_movie(rng, f"movie{i + 1:02d}", _movie_duration(n_trs_per_run, tr), fps,
                    k_shared, k_vis)
        for i, rng in enumerate(stimulus_rngs("stimuli", "movie", n_movies))
    ]
    features = _make_features(
        np.random.default_rng(streams["features"]), stories, movies, n_features, dims,
        feature_noise, stimulus_rngs("features", "story", n_stories),
        stimulus_rngs("features", "movie", n_movies))
    noise_rngs = (stimulus_rngs("noise", "story", n_stories)
                  + stimulus_rngs("noise", "movie", n_movies))
    runs = [("story", s) for s in stories] + [("movie", m) for m in movies]

    timings = {}
    for modality, stim in runs:
        timings[stim.name] = (_huth_timing(modality, n_trs_per_run, tr) if layout == "huth"
                              else _bids_timing(stim.duration, tr))

    # HRF-convolved latents at the times of the written rows; the signal of a
    # vertex is its weights applied to them, centred and scaled so that its
    # variance over all written rows of a modality is exactly ``snr``.
    hrf = canonical_hrf()
    latents = {stim.name: _run_latents(stim, modality, timings[stim.name].row_times, hrf)
               for modality, stim in runs}
    scales = {}
    for modality, category, latent_name in _READOUTS:
        pooled = [latents[stim.name][latent_name] for mod, stim in runs if mod == modality]
        scales[modality, category] = _signal_scales(pooled, cortex.weights[category], snr)

    params = dict(snr=float(snr), noise_rho=float(noise_rho), seed=int(seed), tr=float(tr),
                  n_trs_per_run=int(n_trs_per_run), fps=float(fps), k_shared=k_shared,
                  k_lang=k_lang, k_vis=k_vis, n_features=n_features,
                  feature_noise=float(feature_noise), hrf_dt=_DT, layout=layout,
                  movie_format=movie_format)
    if movie_format == "video":
        params["video_fps"] = float(video_fps)
    signal_columns = np.flatnonzero(cortex.category > 0)
    ceiling = {"story": _CorrelationAccumulator(), "movie": _CorrelationAccumulator()}
    signals, written = {}, []
    with output_folder(out, kind="simulate", overwrite=overwrite) as build:
        # One run at a time, so that only one response matrix is in memory.
        for (modality, stim), noise_rng in zip(runs, noise_rngs):
            timing = timings[stim.name]
            sig = np.zeros((len(timing.row_times), N_VERTICES), dtype=np.float32)
            for mod, category, latent_name in _READOUTS:
                if mod != modality:
                    continue
                members = np.flatnonzero(cortex.category == CATEGORY_NAMES.index(category))
                offset, scale = scales[modality, category]
                sig[:, members] = (latents[stim.name][latent_name]
                                   @ cortex.weights[category][members].T
                                   - offset[members]) * scale[members]
            response = sig + _ar1_noise(noise_rng, len(sig), N_VERTICES, noise_rho)
            ceiling[modality].add(sig[:, signal_columns], response[:, signal_columns])
            if save_signal:
                signals[stim.name] = sig
            paths = _write_run(build, layout, subject, modality, stim, response, timing, tr,
                               movie_format, video_fps)
            written.append((stim.name, modality, paths, len(response), timing.row_times))
        _write_layout_files(build, layout, stories, movies, timings, movie_format)
        for _, stim in runs:
            _write_latents(build / "latents" / f"{stim.name}.hf5", stim)
        for space, per_stim in features.items():
            for name, (data, times) in per_stim.items():
                write_stimulus_features(
                    build / "features" / space / f"{name}.hf5", data, times, model="simulated",
                    space=space, aligned_pair=space == "multimodal",
                    pair=("simulated: shared concept dimensions" if space == "multimodal"
                          else "unaligned: simulated separate feature bases (baseline)"))
        _write_ground_truth(build / "ground_truth.npz", cortex, features.mixing,
                            {m: _expand(acc.result(), signal_columns)
                             for m, acc in ceiling.items()}, params,
                            [s.name for s in stories] + [m.name for m in movies])
        if save_signal:
            np.savez(build / "signal.npz", **signals)
    written_runs = tuple(
        SimulatedRun(name, modality, tuple(out / p.relative_to(build) for p in paths), n, times)
        for name, modality, paths, n, times in written
    )
    return SimulationInfo(out, layout, subject, FEATURE_SPACES, out / "ground_truth.npz",
                          written_runs)


def _check_params(out, layout, subject, n_stories, n_movies, snr, n_trs_per_run, tr,
                  noise_rho, n_features, latent_dims, fps, feature_noise, regions_per_hemi,
                  region_radius_deg, overwrite, movie_format="frames", video_fps=None) -> None:
    problems = []
    reals = {"snr": snr, "tr": tr, "noise_rho": noise_rho, "fps": fps,
             "feature_noise": feature_noise, "video_fps": video_fps}
    problems += [f"{name} must be a finite number, got {value}" for name, value in reals.items()
                 if value is not None and not np.isfinite(value)]
    if problems:
        raise BrainencInputError(out, "; ".join(problems))
    if layout not in LAYOUTS:
        problems.append(f"layout must be one of {LAYOUTS}, got {layout!r}")
    if not subject or not subject.isalnum():
        problems.append(f"subject must be letters and digits only, got {subject!r}")
    if n_stories < 1 or n_movies < 1:
        problems.append("at least one story and one movie are needed")
    if snr <= 0:
        problems.append(f"snr must be positive, got {snr}")
    if n_trs_per_run < 20:
        problems.append(f"n_trs_per_run must be at least 20, got {n_trs_per_run}")
    if tr <= 0:
        problems.append(f"tr must be positive, got {tr}")
    if layout == "huth" and tr != 2.0:
        problems.append("the Huth layout fixes the story TR at 2.0 s; use layout='bids' for others")
    if not 0.0 <= noise_rho < 1.0:
        problems.append(f"noise_rho must be in [0, 1), got {noise_rho}")
    if n_features < 1:
        problems.append(f"n_features must be positive, got {n_features}")
    if min(latent_dims) < 1:
        problems.append(f"latent dimensions must be positive, got {latent_dims}")
    if fps <= 0:
        problems.append(f"fps must be positive, got {fps}")
    if feature_noise < 0:
        problems.append(f"feature_noise must be non-negative, got {feature_noise}")
    if regions_per_hemi < 1:
        problems.append(f"regions_per_hemi must be at least 1, got {regions_per_hemi}")
    low, high = region_radius_deg
    if not 0 < low <= high < 45:
        problems.append(f"region_radius_deg must satisfy 0 < low <= high < 45, got {region_radius_deg}")
    if movie_format not in MOVIE_FORMATS:
        problems.append(f"movie_format must be one of {MOVIE_FORMATS}, got {movie_format!r}")
    elif movie_format == "video":
        try:
            import av  # noqa: F401
        except ImportError:
            problems.append("movie_format='video' needs PyAV: pip install av")
    if video_fps is not None and not 0 < video_fps <= fps:
        problems.append(f"video_fps must be positive and at most fps={fps}, got {video_fps}")
    if problems:
        raise BrainencInputError(out, "; ".join(problems))


class _Features(dict):
    """``{space: {stimulus: (data, times)}}`` plus the mixing matrices used."""

    mixing: dict


def _make_features(rng, stories, movies, n_features, dims, noise_sd, story_rngs,
                   movie_rngs) -> _Features:
    """Feature spaces as noisy linear mixtures of the latents.

    Each latent part has unit variance per feature: a mixing matrix of shape
    (n_features, k) has entries of variance 1 / k. ``rng`` draws the mixing
    matrices; ``story_rngs`` and ``movie_rngs`` the feature noise of each stimulus.
    """
    def mixing(k):
        return rng.standard_normal((n_features, k)) / np.sqrt(k)

    mix = {"concept": mixing(dims["shared"]), "concept_unimodal_movie": mixing(dims["shared"]),
           "language": mixing(dims["language"]), "vision": mixing(dims["vision"])}
    # The only difference between the spaces: which concept matrix the movies use.
    movie_concept = {"multimodal": "concept", "unimodal": "concept_unimodal_movie"}
    result = _Features({space: {} for space in FEATURE_SPACES})
    result.mixing = mix
    for st, stim_rng in zip(stories, story_rngs):
        clean = st.concept @ mix["concept"].T + st.language @ mix["language"].T
        for space in FEATURE_SPACES:
            data = clean + noise_sd * stim_rng.standard_normal(clean.shape)
            result[space][st.name] = (data.astype(np.float32), st.word_times)
    for mv, stim_rng in zip(movies, movie_rngs):
        for space in FEATURE_SPACES:
            clean = mv.concept @ mix[movie_concept[space]].T + mv.vision @ mix["vision"].T
            data = clean + noise_sd * stim_rng.standard_normal(clean.shape)
            result[space][mv.name] = (data.astype(np.float32), mv.frame_times)
    return result


def _write_latents(path: Path, stim) -> None:
    """The latent vectors of every word or frame, for checks and oracle analyses."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as f:
        if isinstance(stim, _Story):
            f.create_dataset("times", data=stim.word_times)
            f.create_dataset("concept", data=stim.concept.astype(np.float32))
            f.create_dataset("language", data=stim.language.astype(np.float32))
            f.attrs["modality"] = "story"
        else:
            f.create_dataset("times", data=stim.frame_times)
            f.create_dataset("concept", data=stim.concept.astype(np.float32))
            f.create_dataset("vision", data=stim.vision.astype(np.float32))
            f.attrs["modality"] = "movie"


class _CorrelationAccumulator:
    """Per-vertex Pearson correlation of signal and response, accumulated over runs."""

    def __init__(self):
        self.n = 0
        self.sums = None

    def add(self, sig: np.ndarray, resp: np.ndarray) -> None:
        s, r = sig.astype(np.float64), resp.astype(np.float64)
        parts = np.stack([s.sum(0), r.sum(0), (s * s).sum(0), (r * r).sum(0), (s * r).sum(0)])
        self.sums = parts if self.sums is None else self.sums + parts
        self.n += len(s)

    def result(self) -> np.ndarray:
        s, r, ss, rr, sr = self.sums / self.n
        cov = sr - s * r
        den = np.sqrt(np.clip(ss - s * s, 0, None) * np.clip(rr - r * r, 0, None))
        out = np.zeros(len(cov))
        # Vertices without signal have zero signal variance (up to rounding): report 0.
        ok = den > 1e-12 * np.maximum(rr, 1.0)
        out[ok] = cov[ok] / den[ok]
        return out.astype(np.float32)


def _expand(values: np.ndarray, columns: np.ndarray) -> np.ndarray:
    """Values on ``columns`` into a full per-vertex array (zeros elsewhere)."""
    full = np.zeros(N_VERTICES, dtype=np.float32)
    full[columns] = values
    return full


def _movie_file_name(name: str, movie_format: str) -> str:
    return f"{name}.mp4" if movie_format == "video" else f"{name}_frames.tsv"


def _write_movie_file(path: Path, movie: _Movie, movie_format: str, video_fps: float) -> None:
    if movie_format == "video":
        _write_video(path, movie, video_fps)
    else:
        _write_text(path, _frames_text(movie))


def _write_run(root: Path, layout: str, subject: str, modality: str, stim, response: np.ndarray,
               timing: _RunTiming, tr: float, movie_format: str = "frames",
               video_fps: float | None = None) -> tuple[Path, ...]:
    """Write one run's response and stimulus file; return the response paths."""
    if layout == "huth":
        deriv = root / "derivative"
        path = deriv / "preprocessed_data" / subject / f"{stim.name}.hf5"
        _write_hf5(path, response)
        if modality == "story":
            _write_text(deriv / "TextGrids" / f"{stim.name}.TextGrid", _textgrid_text(stim))
        else:
            _write_movie_file(deriv / "Movies" / _movie_file_name(stim.name, movie_format),
                              stim, movie_format, video_fps)
        return (path,)

    sub = f"sub-{subject}"
    if modality == "story":
        stim_file = f"{stim.name}.TextGrid"
        _write_text(root / "stimuli" / stim_file, _textgrid_text(stim))
    else:
        stim_file = _movie_file_name(stim.name, movie_format)
        _write_movie_file(root / "stimuli" / stim_file, stim, movie_format, video_fps)
    stem = f"{sub}_task-{stim.name}"
    _write_text(
        root / sub / "func" / f"{stem}_events.tsv",
        "onset\tduration\ttrial_type\tstim_file\tmodality\n"
        f"{timing.meta['onset']!r}\t{stim.duration!r}\t{modality}\t{stim_file}\t{modality}\n")
    paths = []
    for h, hemi in enumerate(("L", "R")):
        name = f"{stem}_hemi-{hemi}_space-fsaverage5_bold"
        path = root / "derivatives" / "fmriprep" / sub / "func" / f"{name}.func.gii"
        _write_gifti(path, response[:, h * N_VERTICES_PER_HEMI:(h + 1) * N_VERTICES_PER_HEMI], tr)
        _write_json(path.with_name(f"{name}.json"), {"RepetitionTime": tr, "TaskName": stim.name})
        paths.append(path)
    return tuple(paths)


def _write_layout_files(root: Path, layout: str, stories, movies, timings,
                        movie_format: str = "frames") -> None:
    """Files that describe the whole dataset (respdict, brainenc.json, descriptions)."""
    if layout == "huth":
        deriv = root / "derivative"
        _write_json(deriv / "respdict.json",
                    {s.name: timings[s.name].meta["respdict"] for s in stories})
        key = "video" if movie_format == "video" else "frames"
        _write_json(deriv / "brainenc.json", {
            "space": "fsaverage5",
            "movies": {m.name: {key: f"Movies/{_movie_file_name(m.name, movie_format)}",
                                **timings[m.name].meta}
                       for m in movies},
        })
        return
    _write_json(root / "dataset_description.json", {
        "Name": "brainenc simulated subject", "BIDSVersion": "1.8.0", "DatasetType": "raw"})
    _write_json(root / "derivatives" / "fmriprep" / "dataset_description.json", {
        "Name": "simulated fMRIPrep surface outputs", "BIDSVersion": "1.8.0",
        "DatasetType": "derivative",
        "GeneratedBy": [{"Name": "brainenc.simulate", "Version": __version__}]})


def _write_ground_truth(path: Path, cortex: _Cortex, features_mixing, max_r, params, stimuli):
    arrays = {
        "category": cortex.category,
        "category_names": np.array(CATEGORY_NAMES),
        "region": cortex.region,
        "region_center": cortex.centres,
        "region_hemi": np.array(cortex.hemis),
        "region_category": cortex.region_category,
        "region_radius_deg": cortex.radii,
        "stimuli": np.array(stimuli),
        "params": np.array(json.dumps(params)),
    }
    arrays.update({f"weights_{k}": v.astype(np.float32) for k, v in cortex.weights.items()})
    arrays.update({f"mixing_{k}": v for k, v in features_mixing.items()})
    arrays.update({f"max_r_{k}": v for k, v in max_r.items()})
    for key, value in params.items():
        if isinstance(value, (int, float)):
            arrays[key] = np.array(value)
    np.savez_compressed(path, **arrays)


# --------------------------------------------------------------------------- #
# Reading the ground truth
# --------------------------------------------------------------------------- #
def load_ground_truth(path_or_root: str | Path) -> GroundTruth:
    """Read ``ground_truth.npz`` (or the one inside a simulated dataset folder).

    Raises
    ------
    BrainencInputError
        If the file is missing or lacks the expected arrays.
    """
    path = Path(path_or_root)
    if path.is_dir():
        path = path / "ground_truth.npz"
    if not path.is_file():
        raise BrainencInputError(path, "ground-truth file not found")
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {key: f[key] for key in f.files}
    except (OSError, ValueError) as exc:
        raise BrainencInputError(path, f"cannot read ground truth as .npz ({exc})") from exc
    needed = ("category", "category_names", "region", "region_center", "region_hemi",
              "region_category", "region_radius_deg", "params")
    missing = [k for k in needed if k not in arrays]
    if missing:
        raise BrainencInputError(path, f"ground truth lacks {missing}")
    if arrays["category"].shape != (N_VERTICES,):
        raise BrainencInputError(
            path, f"'category' has shape {arrays['category'].shape}, expected ({N_VERTICES},)")

    def prefixed(prefix):
        return {k[len(prefix):]: v for k, v in arrays.items() if k.startswith(prefix)}

    return GroundTruth(
        category=arrays["category"],
        category_names=tuple(str(x) for x in arrays["category_names"]),
        region=arrays["region"],
        region_center=arrays["region_center"],
        region_hemi=tuple(str(x) for x in arrays["region_hemi"]),
        region_category=arrays["region_category"],
        region_radius_deg=arrays["region_radius_deg"],
        weights=prefixed("weights_"),
        feature_mixing=prefixed("mixing_"),
        max_r=prefixed("max_r_"),
        params=json.loads(str(arrays["params"])),
        path=path,
    )

"""Stimuli of the simulated subject: a vocabulary, a lexicon of word latents, stories and movies.

Every story word and every movie frame carries latent vectors: *concept*
dimensions shared by both modalities, *language-only* dimensions (stories) and
*vision-only* dimensions (movies).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import signal as sps

from brainenc.simulate.processes import ar1_series, gaussian_kernel

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


@dataclass
class Story:
    """A story: its word tier and the latents of its words."""

    name: str
    duration: float
    intervals: list[tuple[float, float, str]]   # word tier, tiles [0, duration]
    word_times: np.ndarray                       # midpoints of the real words
    words: list[str]
    concept: np.ndarray                          # (n_words, k_shared)
    language: np.ndarray                         # (n_words, k_lang)


@dataclass
class Movie:
    """A movie: its frame times and the latents of its frames."""

    name: str
    duration: float
    frame_times: np.ndarray
    concept: np.ndarray                          # (n_frames, k_shared)
    vision: np.ndarray                           # (n_frames, k_vis)


@dataclass
class Lexicon:
    """The vocabulary with word frequencies and each word's fixed latent vectors."""

    words: tuple[str, ...]
    probabilities: np.ndarray
    concept: np.ndarray   # (n_words, k_shared)
    language: np.ndarray  # (n_words, k_lang)


def make_lexicon(rng: np.random.Generator, k_shared: int, k_lang: int) -> Lexicon:
    """Zipf-like frequencies over ``VOCABULARY`` and a concept and language vector per word."""
    n = len(VOCABULARY)
    # The list starts with the most common words.
    p = 1.0 / (np.arange(n) + 3.0)
    return Lexicon(VOCABULARY, p / p.sum(), rng.standard_normal((n, k_shared)),
                   rng.standard_normal((n, k_lang)))


def round_ms(t: float) -> float:
    """A time rounded to the millisecond, as transcripts store it."""
    return round(float(t), 3)


def make_story(rng: np.random.Generator, name: str, duration: float, lexicon: Lexicon,
               context_weight: float = 0.5, context_rho: float = 0.6) -> Story:
    """A story that fills ``[0, duration]``: sentences of words separated by pauses.

    Each word's latent vectors mix the word's own vectors with a context state
    that drifts from sentence to sentence (as contextual language features do).
    """
    k_shared, k_lang = lexicon.concept.shape[1], lexicon.language.shape[1]
    intervals: list[tuple[float, float, str]] = []
    words, times, word_ids, sentence_ids = [], [], [], []
    t = round_ms(rng.uniform(0.3, 1.0))
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
            end = round_ms(t + d)
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
    ctx_c = ar1_series(rng, n_sent, k_shared, context_rho).astype(np.float64)
    ctx_l = ar1_series(rng, n_sent, k_lang, context_rho).astype(np.float64)
    ids, sids = np.array(word_ids, dtype=int), np.array(sentence_ids, dtype=int)
    a, b = np.sqrt(1.0 - context_weight), np.sqrt(context_weight)
    concept = a * lexicon.concept[ids] + b * ctx_c[sids]
    language = a * lexicon.language[ids] + b * ctx_l[sids]
    return Story(name, float(duration), intervals, np.array(times), words, concept, language)


def _piecewise_smooth(rng, scene_of_frame: np.ndarray, n_scenes: int, k: int, fps: float,
                      scene_rho: float = 0.5, drift: float = 0.4) -> np.ndarray:
    """Per-frame latent: a vector per scene (correlated across scenes) plus slow drift."""
    scenes = ar1_series(rng, n_scenes, k, scene_rho).astype(np.float64)
    noise = rng.standard_normal((len(scene_of_frame), k))
    smooth = sps.fftconvolve(noise, gaussian_kernel(1.0 * fps)[:, None], mode="same", axes=0)
    smooth /= smooth.std(axis=0, keepdims=True)
    return (scenes[scene_of_frame] + drift * smooth) / np.sqrt(1.0 + drift**2)


def make_movie(rng: np.random.Generator, name: str, duration: float, fps: float, k_shared: int,
               k_vis: int, scene_s: tuple[float, float] = (2.0, 6.0)) -> Movie:
    """A movie of scenes lasting a few seconds each, shown at ``fps``."""
    n_frames = int(np.floor(duration * fps))
    times = np.arange(n_frames) / fps
    cuts = np.cumsum(rng.uniform(*scene_s, size=int(duration / scene_s[0]) + 2))
    scene_of_frame = np.searchsorted(cuts, times, side="right")
    n_scenes = int(scene_of_frame.max()) + 1
    concept = _piecewise_smooth(rng, scene_of_frame, n_scenes, k_shared, fps)
    vision = _piecewise_smooth(rng, scene_of_frame, n_scenes, k_vis, fps)
    return Movie(name, float(duration), times, concept, vision)



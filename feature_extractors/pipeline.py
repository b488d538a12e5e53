"""From a dataset's stimuli to feature spaces on disk, with a content-keyed cache.

For every stimulus of the chosen modality (each stimulus once, whatever the
number of runs or subjects that used it) and every selected layer, one file
``<out>/<space>/<stimulus>.hf5`` is written in the feature-store format
(:mod:`brainenc.io.features`): ``data`` (events × features) and ``times``
(word midpoints or frame times, seconds on the stimulus clock).

Feature-space names
    ``{model}_{label}`` by default, where ``label`` is the layer's
    modality-free label (:func:`feature_extractors.base.layer_label`): the story
    file of ``text.8`` and the movie file of ``vision.8`` share the space
    ``bridgetower-base_layer8``, which ``brainenc transfer --features`` then
    finds. ``name_template`` may use ``{model}``, ``{label}`` and ``{layer}``:
    e.g. extract a language model on stories and a vision model on movies into
    one space ``unimodal_{label}``.

Cache
    Each file stores a ``cache_key``: a hash of the extractor's identity (model,
    configuration, settings), the layer, the stimulus content (bytes of the
    transcript, video, or frame table and its images) and the timing settings.
    A file whose key matches is not recomputed; writes are atomic, so an
    interrupted run leaves complete files only and resumes where it stopped.
    ``force=True`` recomputes everything.
"""
from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np
from tqdm.auto import tqdm

from brainenc.errors import BrainencInputError
from brainenc.io.dataset import Dataset
from brainenc.io.features import FEATURE_SUFFIX, write_stimulus_features
from brainenc.io.textgrid import read_word_events
from feature_extractors.base import FeatureExtractor, identity_hash, layer_label, select_layers

MODALITY_CHOICES = ("story", "movie", "both")


@dataclass(frozen=True)
class StimulusSource:
    """One stimulus to embed: its name, modality and file."""

    stimulus: str
    modality: str
    path: Path


@dataclass
class ExtractionReport:
    """What :func:`extract_dataset` did."""

    written: list[Path] = field(default_factory=list)
    cached: list[Path] = field(default_factory=list)
    spaces: list[str] = field(default_factory=list)


def dataset_stimuli(dataset: Dataset, modality: str = "both",
                    subject: str | None = None) -> list[StimulusSource]:
    """Unique stimuli of a dataset's runs (optionally one subject's), in run order."""
    if modality not in MODALITY_CHOICES:
        raise ValueError(f"modality must be one of {MODALITY_CHOICES}, got {modality!r}")
    runs = dataset.runs if subject is None else dataset.runs_for(subject)
    sources: dict[str, StimulusSource] = {}
    for run in runs:
        if modality != "both" and run.modality != modality:
            continue
        if run.stimulus in sources:
            continue
        if run.stimulus_path is None or not Path(run.stimulus_path).is_file():
            raise BrainencInputError(
                run.stimulus_path or dataset.root,
                f"run {run.name!r} of subject {run.subject} has no stimulus file to extract "
                f"features from (stimulus {run.stimulus!r})",
            )
        sources[run.stimulus] = StimulusSource(run.stimulus, run.modality, Path(run.stimulus_path))
    return list(sources.values())


def stimulus_hash(source: StimulusSource) -> str:
    """SHA-256 of the stimulus content: the file, and for frame tables every image."""
    digest = hashlib.sha256()
    paths = [source.path]
    if source.modality == "movie" and source.path.suffix.lower() == ".tsv":
        from brainenc.io.frames import read_frame_table

        events = read_frame_table(source.path)
        paths += [source.path.parent / label for label in events.labels
                  if (source.path.parent / label).is_file()]
    for path in paths:
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()


def cache_key(identity: dict, layer: str, content_hash: str, timing: dict) -> str:
    """The key stored with a feature file; equal keys mean equal features."""
    return identity_hash({"extractor": identity, "layer": layer, "stimulus": content_hash,
                          "timing": timing})


def is_cached(path: Path, key: str) -> bool:
    """True if ``path`` is a complete feature file written under ``key``."""
    if not path.is_file():
        return False
    try:
        with h5py.File(path, "r") as f:
            stored = f.attrs.get("cache_key")
            stored = stored.decode() if isinstance(stored, bytes) else stored
            return stored == key and "data" in f and "times" in f
    except OSError:
        return False


def space_name(template: str, extractor: FeatureExtractor, layer: str) -> str:
    """Feature-space folder name of one layer (see the module notes)."""
    return template.format(model=extractor.name, label=layer_label(layer), layer=layer)


def _story_events(source: StimulusSource, tier) -> tuple[list[str], np.ndarray]:
    events = read_word_events(source.path, tier=tier)
    if len(events) == 0:
        raise BrainencInputError(source.path, "the transcript has no words to extract features from")
    return list(events.labels), events.times


#: Frames decoded and embedded at once: bounds memory on long movies.
FRAME_CHUNK = 256


def _embed_movie(source: StimulusSource, extractor: FeatureExtractor, layers: Sequence[str],
                 fps: float | None) -> tuple[dict[str, np.ndarray], np.ndarray]:
    from feature_extractors.video import iter_movie_batches

    parts: dict[str, list[np.ndarray]] = {layer: [] for layer in layers}
    times: list[np.ndarray] = []
    for frames, frame_times in iter_movie_batches(source.path, fps, FRAME_CHUNK):
        vectors = extractor.embed_frames(frames, layers)
        _check_vectors(vectors, layers, len(frames), extractor, source)
        for layer in layers:
            parts[layer].append(np.asarray(vectors[layer], dtype=np.float32))
        times.append(np.asarray(frame_times, dtype=np.float64))
    if not times:
        raise BrainencInputError(source.path, "the movie has no frames to extract features from")
    return {layer: np.concatenate(parts[layer]) for layer in layers}, np.concatenate(times)


def _check_vectors(vectors: dict, layers: Sequence[str], n_events: int, extractor, source) -> None:
    for layer in layers:
        array = vectors.get(layer)
        if array is None or np.ndim(array) != 2 or len(array) != n_events:
            shape = None if array is None else np.shape(array)
            raise BrainencInputError(
                source.path,
                f"extractor {extractor.name!r} returned {shape} for layer {layer!r}; "
                f"expected ({n_events}, n_features)",
            )


def extract_dataset(
    dataset: Dataset,
    extractor: FeatureExtractor,
    *,
    modality: str = "both",
    layers: str | Sequence[str] | None = None,
    out: str | Path | None = None,
    name_template: str = "{model}_{label}",
    fps: float | None = None,
    tier: str | int | None = None,
    subject: str | None = None,
    force: bool = False,
    progress: bool = True,
) -> ExtractionReport:
    """Embed a dataset's stimuli and write one feature space per layer.

    Parameters
    ----------
    dataset : Dataset
        From :func:`brainenc.io.layouts.load_dataset`.
    extractor : FeatureExtractor
        From :func:`feature_extractors.loading.load_extractor`.
    modality : {"story", "movie", "both"}
        Stimuli to embed; with ``"both"``, a modality the extractor cannot embed
        is skipped (a language model embeds the stories only).
    layers : str or sequence, optional
        Layer selection applied to each modality's layer list (see
        :func:`~feature_extractors.base.select_layers`): ``"all"``, indices
        (``"8"``, ``"-1"``), names or ``prefix*``.
    out : path-like, optional
        Feature root; defaults to ``dataset.feature_root``.
    name_template : str
        Feature-space name, from ``{model}``, ``{label}``, ``{layer}``.
    fps : float, optional
        Frame rate at which videos are sampled (default: every frame).
    tier : str or int, optional
        TextGrid word tier (default: the tier named ``word``/``words``).
    subject : str, optional
        Only the stimuli of this subject's runs.
    force : bool
        Recompute files that are already cached.
    progress : bool
        Show a progress bar.
    """
    out = Path(out) if out is not None else dataset.feature_root
    if out is None:
        raise ValueError("no output folder: pass out=")
    wanted = ("story", "movie") if modality == "both" else (modality,)
    unsupported = [m for m in wanted if m not in extractor.modalities]
    if modality != "both" and unsupported:
        raise BrainencInputError(None, f"extractor {extractor.name!r} cannot embed {modality} "
                                       f"stimuli (it embeds {list(extractor.modalities)})")
    wanted = tuple(m for m in wanted if m in extractor.modalities)
    chosen = {m: select_layers(extractor.layers(m), layers) for m in wanted}
    sources = [s for s in dataset_stimuli(dataset, "both", subject) if s.modality in wanted]
    identity = extractor.identity()
    timing = {"story": {"tier": tier}, "movie": {"fps": fps}}
    report = ExtractionReport()
    for m in wanted:
        report.spaces += [space_name(name_template, extractor, layer) for layer in chosen[m]]
    report.spaces = list(dict.fromkeys(report.spaces))

    for source in tqdm(sources, desc=f"extract {extractor.name}", disable=not progress):
        layer_names = chosen[source.modality]
        content = stimulus_hash(source)
        targets = {
            layer: (out / space_name(name_template, extractor, layer)
                    / f"{source.stimulus}{FEATURE_SUFFIX}",
                    cache_key(identity, layer, content, timing[source.modality]))
            for layer in layer_names
        }
        todo = [layer for layer, (path, key) in targets.items() if force or not is_cached(path, key)]
        report.cached += [targets[layer][0] for layer in layer_names if layer not in todo]
        if not todo:
            continue
        if source.modality == "story":
            words, times = _story_events(source, tier)
            vectors = extractor.embed_words(words, todo)
            _check_vectors(vectors, todo, len(words), extractor, source)
        else:
            vectors, times = _embed_movie(source, extractor, todo, fps)
        for layer in todo:
            path, key = targets[layer]
            write_stimulus_features(
                path, np.asarray(vectors[layer], dtype=np.float32), times,
                model=extractor.name, layer=layer, modality=source.modality,
                extractor=json.dumps(identity, sort_keys=True, default=str),
                stimulus_hash=content, cache_key=key)
            report.written.append(path)
    return report

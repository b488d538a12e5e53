"""From a dataset's stimuli to feature spaces on disk, with a content-keyed cache.

For every stimulus of the chosen modality (each stimulus once, whatever the
number of runs or subjects that used it) and every selected layer, one file
``<out>/<space>/<stimulus>.hf5`` is written in the feature-store format
(:mod:`brainenc.io.features`): ``data`` (events × features) and ``times``
(word midpoints or frame times, seconds on the stimulus clock).

Feature-space names
    ``{model}_{label}`` by default, where ``label`` is the layer's
    modality-free label (:func:`feature_extractors.base.layer_label`): the story
    file of ``cross.text.3`` and the movie file of ``cross.vision.3`` share the
    space ``bridgetower-base_cross3``, which ``brainenc transfer --features``
    then finds; tower layers ``text.8`` and ``vision.8`` share
    ``bridgetower-base_tower8``. ``name_template`` may use ``{model}``,
    ``{label}`` and ``{layer}``: e.g. extract a language model on stories and a
    vision model on movies into one space ``unimodal_{label}``.

Aligned pairs
    Every file records whether the story and movie layers of its label share
    a space (attributes ``aligned_pair`` and ``pair``, from the extractor's
    :meth:`~feature_extractors.base.FeatureExtractor.pairing`): cross-modal
    layers and joint projections are aligned, tower layers of separate
    encoders and one-modality models are not (a baseline).

Checks before any computation
    Every transcript is read (:func:`brainenc.io.textgrid.read_word_transcript`:
    truncated files, ambiguous word tiers and invisible words) and checked to
    cover the scan of its runs (:func:`check_transcript_coverage`); every movie
    is opened (a video's container, a frame table and the existence of each
    image). A bad input therefore fails the run before the model runs.

Cache
    Each file stores a ``cache_key``: a hash of the part of the extractor's
    identity the stimulus' modality depends on
    (:meth:`~feature_extractors.base.FeatureExtractor.modality_identity`: model,
    configuration, weights, revision and that modality's settings), the layer,
    the stimulus content (bytes of the transcript, video, or frame table and
    its images) and the timing settings. A file whose key matches is not
    recomputed; ``force=True`` recomputes everything.

All or nothing
    New files are staged and moved into place only once every stimulus
    succeeded (:mod:`feature_extractors.transaction`): a failed or interrupted
    run leaves the store as it was. The lock of the feature root is held only
    to commit, so extractions into one root run side by side; a file another
    extraction committed meanwhile under the same cache key is kept (and
    counted as cached) rather than replaced.

Plan, then compute
    :func:`plan_extraction` does every check and names every file;
    :func:`run_tasks` computes a list of its :class:`StimulusTask` in one
    transaction. :func:`extract_dataset` runs all of them in this process,
    :func:`feature_extractors.sharded.extract_sharded` one Dask task per
    stimulus.
"""
from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import h5py
import numpy as np
from tqdm.auto import tqdm

from brainenc.errors import BrainencInputError
from brainenc.io.dataset import Dataset, Run
from brainenc.io.features import ALIGNED_PAIR_ATTR, FEATURE_SUFFIX, pair_attrs, write_stimulus_features
from brainenc.io.textgrid import read_word_transcript
from feature_extractors.base import FeatureExtractor, identity_hash, layer_label, select_layers
from feature_extractors.text import UntokenisableWordError
from feature_extractors.transaction import StagedWrites, extraction_transaction, file_signature

MODALITY_CHOICES = ("story", "movie", "both")

#: Default of ``min_transcript_coverage``: see :func:`check_transcript_coverage`.
MIN_TRANSCRIPT_COVERAGE = 0.8
#: Seconds of scan after the last word that are always accepted (silence after
#: a story, a lead-out), however short the run.
TRANSCRIPT_TAIL_ALLOWANCE_S = 30.0


@dataclass(frozen=True)
class ScanSpan:
    """How far the analysed volumes of a stimulus' runs reach on the stimulus clock.

    Attributes
    ----------
    subject, run : str
        The run whose analysed volumes reach furthest.
    end : float
        Seconds: the last analysed volume's time plus half a TR (volumes are
        timed at their centres).
    """

    subject: str
    run: str
    end: float


@dataclass(frozen=True)
class StimulusSource:
    """One stimulus to embed: its name, modality and file, and how far its runs' scans reach."""

    stimulus: str
    modality: str
    path: Path
    scan: ScanSpan | None = None


@dataclass
class ExtractionReport:
    """What :func:`extract_dataset` did.

    Attributes
    ----------
    written, cached : list of Path
        Feature files computed by this run, and files found in the cache.
    spaces : list of str
        Feature-space names, in layer order.
    removed_staging : list of Path
        Staging folders left by killed runs, removed at the start.
    """

    written: list[Path] = field(default_factory=list)
    cached: list[Path] = field(default_factory=list)
    spaces: list[str] = field(default_factory=list)
    removed_staging: list[Path] = field(default_factory=list)


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
    return [replace(source, scan=longest_scan(runs, source.stimulus)) for source in sources.values()]


def longest_scan(runs: Sequence[Run], stimulus: str) -> ScanSpan | None:
    """The :class:`ScanSpan` of the run of ``stimulus`` whose analysed volumes reach furthest."""
    spans = []
    for run in runs:
        if run.stimulus != stimulus:
            continue
        grid = run.response_grid
        if len(grid):
            spans.append(ScanSpan(run.subject, run.name, float(grid.times[-1]) + grid.tr / 2.0))
    return max(spans, key=lambda span: span.end, default=None)


def check_transcript_coverage(path: Path, last_word_end: float, scan: ScanSpan | None,
                              min_coverage: float = MIN_TRANSCRIPT_COVERAGE) -> None:
    """Raise if a transcript stops well before the scan of its run does.

    The coverage is the end of the last word over the end of the analysed
    scan (:class:`ScanSpan`), both in seconds on the stimulus clock. A
    transcript fails when its coverage is below ``min_coverage`` *and* more
    than :data:`TRANSCRIPT_TAIL_ALLOWANCE_S` seconds of scan follow its last
    word: the uncovered volumes would get no words, so their features would
    be silently wrong (zero after resampling).

    Parameters
    ----------
    path : Path
        The TextGrid, for the message.
    last_word_end : float
        Offset of the transcript's last word, seconds.
    scan : ScanSpan or None
        None (no analysed volume known) skips the check.
    min_coverage : float
        0 switches the check off.

    Raises
    ------
    BrainencInputError
        Naming the TextGrid, the last word's end, the run and how far it is analysed.
    """
    if scan is None or min_coverage <= 0 or scan.end <= 0:
        return
    coverage = last_word_end / scan.end
    if coverage < min_coverage and scan.end - last_word_end > TRANSCRIPT_TAIL_ALLOWANCE_S:
        raise BrainencInputError(
            path, f"the last word ends at {last_word_end:.1f} s but run {scan.run!r} of subject "
            f"{scan.subject} is analysed up to {scan.end:.1f} s: the transcript covers "
            f"{coverage:.0%} of the scan (at least {min_coverage:.0%} expected); the TextGrid looks "
            "truncated or belongs to another stimulus. Fix it, or set the minimum transcript "
            "coverage to 0 if the scan really continues that long after the story",
        )


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
    """True if ``path`` is a complete feature file written under ``key``.

    A file without the ``aligned_pair`` attribute (written before it was
    recorded) is not: it is rewritten with it.
    """
    if not path.is_file():
        return False
    try:
        with h5py.File(path, "r") as f:
            stored = f.attrs.get("cache_key")
            stored = stored.decode() if isinstance(stored, bytes) else stored
            return (stored == key and "data" in f and "times" in f
                    and ALIGNED_PAIR_ATTR in f.attrs)
    except OSError:
        return False


def written_by_extract(path: Path) -> bool:
    """True if the feature file at ``path`` carries a cache key (``brainenc extract`` wrote it)."""
    try:
        with h5py.File(path, "r") as f:
            return "cache_key" in f.attrs
    except OSError:
        return False


def _check_targets_are_ours(paths: Sequence[Path]) -> None:
    """Refuse to replace feature files that ``brainenc extract`` did not write."""
    foreign = [path for path in paths if path.exists() and not written_by_extract(path)]
    if foreign:
        shown = ", ".join(str(p) for p in foreign[:3])
        raise BrainencInputError(
            foreign[0], f"{len(foreign)} feature file(s) that brainenc extract did not write "
            f"would be replaced ({shown}); move them away, or choose another --name or --out")


def space_name(template: str, extractor: FeatureExtractor, layer: str) -> str:
    """Feature-space folder name of one layer (see the module notes)."""
    return template.format(model=extractor.name, label=layer_label(layer), layer=layer)


@dataclass(frozen=True)
class _StoryWords:
    """The words of one transcript, read before any computation."""

    labels: list[str]
    times: np.ndarray


def _read_story(source: StimulusSource, tier, min_coverage: float) -> _StoryWords:
    transcript = read_word_transcript(source.path, tier=tier)
    events = transcript.events
    if len(events) == 0:
        raise BrainencInputError(source.path, "the transcript has no words to extract features from")
    check_transcript_coverage(source.path, float(events.offsets[-1]), source.scan, min_coverage)
    return _StoryWords(list(events.labels), events.times)


def _check_movie(source: StimulusSource, fps: float | None) -> None:
    """Open the movie without decoding it: a bad video, table or missing image fails here."""
    from feature_extractors.video import check_frame_table_images, iter_movie_batches

    batches = iter_movie_batches(source.path, fps, FRAME_CHUNK)
    batches.close()
    if source.path.suffix.lower() == ".tsv":
        check_frame_table_images(source.path)


#: Frames decoded and embedded at once: bounds memory on long movies.
FRAME_CHUNK = 256


def _embed_story(source: StimulusSource, words: _StoryWords, extractor: FeatureExtractor,
                 layers: Sequence[str]) -> dict[str, np.ndarray]:
    try:
        vectors = extractor.embed_words(words.labels, layers)
    except UntokenisableWordError as error:
        raise BrainencInputError(
            source.path, f"word {error.position} (counting from 0) at {words.times[error.position]:.2f} s, "
            f"{error.word!r}: the tokenizer of {extractor.name!r} gives no token for it (its text "
            "normalises to nothing); remove or correct it in the TextGrid") from error
    except BrainencInputError as error:
        if error.path is not None:
            raise
        raise BrainencInputError(source.path, error.problem) from error
    _check_vectors(vectors, layers, len(words.labels), extractor, source)
    return vectors


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
        del frames  # release this batch before the next one is decoded: one batch in memory
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


def _file_attrs(identity: dict, extractor: FeatureExtractor, layer: str) -> dict:
    """Attributes naming the model version (the revision asked for and the commit loaded,
    empty strings when unknown or not a hub model) and the layer's pairing."""
    pair = extractor.pairing(layer_label(layer))
    return {"model_revision": str(identity.get("revision") or ""),
            "model_commit": str(identity.get("commit") or ""),
            "extractor": json.dumps(identity, sort_keys=True, default=str),
            **pair_attrs(pair.aligned, pair.description)}


@dataclass(frozen=True)
class StimulusTask:
    """One stimulus to embed, read and checked before any computation.

    Attributes
    ----------
    source : StimulusSource
        The stimulus.
    words : _StoryWords or None
        A story's words and their times (None for a movie).
    identity : dict
        The extractor's identity for the stimulus' modality.
    content : str
        :func:`stimulus_hash` of the stimulus.
    targets : dict
        Layer → ``(feature file, cache key)``.
    """

    source: StimulusSource
    words: _StoryWords | None
    identity: dict
    content: str
    targets: dict[str, tuple[Path, str]]

    def pending(self, force: bool = False) -> dict[str, tuple | None]:
        """Layers to compute (not cached, or all with ``force``), each with its target's
        :func:`~feature_extractors.transaction.file_signature` taken before the check."""
        pending = {}
        for layer, (path, key) in self.targets.items():
            seen = file_signature(path)
            if force or not is_cached(path, key):
                pending[layer] = seen
        return pending


@dataclass
class ExtractionPlan:
    """What :func:`plan_extraction` found: the tasks and where their files go.

    Attributes
    ----------
    out : Path
        The feature root.
    spaces : list of str
        Feature-space names, in layer order.
    tasks : list of StimulusTask
        One per stimulus, in run order.
    fps : float or None
        Frame rate at which videos are sampled.
    """

    out: Path
    spaces: list[str]
    tasks: list[StimulusTask]
    fps: float | None = None


def _wanted_modalities(extractor: FeatureExtractor, modality: str) -> tuple[str, ...]:
    wanted = ("story", "movie") if modality == "both" else (modality,)
    unsupported = [m for m in wanted if m not in extractor.modalities]
    if modality != "both" and unsupported:
        raise BrainencInputError(None, f"extractor {extractor.name!r} cannot embed {modality} "
                                       f"stimuli (it embeds {list(extractor.modalities)})")
    return tuple(m for m in wanted if m in extractor.modalities)


def plan_extraction(
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
    min_transcript_coverage: float = MIN_TRANSCRIPT_COVERAGE,
) -> ExtractionPlan:
    """Read and check every input of an extraction and name its files; compute nothing.

    Checks the layer selection, every transcript (and its coverage of the
    scan), every movie, and that no target is a feature file ``brainenc
    extract`` did not write. The parameters are those of
    :func:`extract_dataset`.

    Returns
    -------
    ExtractionPlan

    Raises
    ------
    BrainencInputError
        A bad input; nothing has been written.
    """
    out = Path(out) if out is not None else dataset.feature_root
    if out is None:
        raise ValueError("no output folder: pass out=")
    wanted = _wanted_modalities(extractor, modality)
    chosen = {m: select_layers(extractor.layers(m), layers) for m in wanted}
    sources = [s for s in dataset_stimuli(dataset, "both", subject) if s.modality in wanted]
    stories = {s.stimulus: _read_story(s, tier, min_transcript_coverage)
               for s in sources if s.modality == "story"}
    for source in sources:
        if source.modality == "movie":
            _check_movie(source, fps)
    spaces = [space_name(name_template, extractor, layer) for m in wanted for layer in chosen[m]]
    _check_targets_are_ours([
        out / space_name(name_template, extractor, layer) / f"{source.stimulus}{FEATURE_SUFFIX}"
        for source in sources for layer in chosen[source.modality]])
    identities = {m: extractor.modality_identity(m) for m in wanted}
    timing = {"story": {"tier": tier}, "movie": {"fps": fps}}
    tasks = []
    for source in sources:
        identity, content = identities[source.modality], stimulus_hash(source)
        targets = {layer: (out / space_name(name_template, extractor, layer)
                           / f"{source.stimulus}{FEATURE_SUFFIX}",
                           cache_key(identity, layer, content, timing[source.modality]))
                   for layer in chosen[source.modality]}
        tasks.append(StimulusTask(source, stories.get(source.stimulus), identity, content, targets))
    return ExtractionPlan(out, list(dict.fromkeys(spaces)), tasks, fps)


def _stage_task(staging: StagedWrites, task: StimulusTask, pending: dict[str, tuple | None],
                extractor: FeatureExtractor, fps: float | None) -> None:
    """Embed one stimulus for the ``pending`` layers and write its files into ``staging``."""
    todo = list(pending)
    if task.source.modality == "story":
        vectors, times = _embed_story(task.source, task.words, extractor, todo), task.words.times
    else:
        vectors, times = _embed_movie(task.source, extractor, todo, fps)
    for layer in todo:
        path, key = task.targets[layer]
        write_stimulus_features(
            staging.path_for(path, key, pending[layer]),
            np.asarray(vectors[layer], dtype=np.float32), times,
            model=extractor.name, layer=layer, modality=task.source.modality,
            stimulus_hash=task.content, cache_key=key,
            **_file_attrs(task.identity, extractor, layer))


def run_tasks(tasks: Sequence[StimulusTask], extractor: FeatureExtractor, out: Path, *,
              fps: float | None = None, force: bool = False, lock_timeout_s: float | None = None,
              progress: bool = False) -> ExtractionReport:
    """Embed ``tasks`` in one transaction (:func:`~feature_extractors.transaction.extraction_transaction`).

    Each task's cache is checked just before it is embedded; the new files are
    committed together once every task succeeded, keeping any that another
    extraction committed meanwhile under the same key (those count as cached).

    Parameters
    ----------
    tasks : sequence of StimulusTask
        From :func:`plan_extraction`.
    extractor : FeatureExtractor
        The extractor the tasks were planned with.
    out : Path
        The feature root.
    fps, force, lock_timeout_s, progress
        As in :func:`extract_dataset`.

    Returns
    -------
    ExtractionReport
        Without ``spaces``.
    """
    report = ExtractionReport()
    with extraction_transaction(out, lock_timeout_s, keep_existing=is_cached) as (staging, removed):
        report.removed_staging = removed
        for task in tqdm(tasks, desc=f"extract {extractor.name}", disable=not progress):
            pending = task.pending(force)
            report.cached += [path for layer, (path, _) in task.targets.items() if layer not in pending]
            if pending:
                _stage_task(staging, task, pending, extractor, fps)
    report.written = list(staging.committed)
    report.cached += staging.kept
    return report


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
    min_transcript_coverage: float = MIN_TRANSCRIPT_COVERAGE,
    lock_timeout_s: float | None = None,
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
        TextGrid word tier (default: the one tier named ``word``/``words``).
    subject : str, optional
        Only the stimuli of this subject's runs.
    force : bool
        Recompute files that are already cached.
    min_transcript_coverage : float
        Fraction of a story run's analysed scan its transcript's words must
        reach (see :func:`check_transcript_coverage`); 0 switches the check off.
    lock_timeout_s : float, optional
        Seconds to wait for the lock of the feature root, held by another
        extraction while it commits (default: as long as it takes).
    progress : bool
        Show a progress bar.

    Returns
    -------
    ExtractionReport

    Raises
    ------
    BrainencInputError
        A bad input (transcript, movie, layer selection...), found before any
        file is written; the feature store is then left as it was.

    See Also
    --------
    feature_extractors.sharded.extract_sharded : the same on several Dask workers.
    """
    plan = plan_extraction(dataset, extractor, modality=modality, layers=layers, out=out,
                           name_template=name_template, fps=fps, tier=tier, subject=subject,
                           min_transcript_coverage=min_transcript_coverage)
    report = run_tasks(plan.tasks, extractor, plan.out, fps=fps, force=force,
                       lock_timeout_s=lock_timeout_s, progress=progress)
    report.spaces = plan.spaces
    return report

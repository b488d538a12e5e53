"""``simulate_dataset``: build a simulated subject and write it as a complete dataset."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np

from brainenc.errors import BrainencInputError
from brainenc.io.features import write_stimulus_features
from brainenc.io.output import check_output_folder, output_folder
from brainenc.simulate.cortex import (
    N_VERTICES,
    Cortex,
    MeshSmoother,
    RegionPlacementError,
    empty_cortex,
    fsaverage5_sphere,
    make_cortex,
    mesh_smoother,
)
from brainenc.simulate.features import (
    FEATURE_PAIRS,
    FEATURE_SPACES,
    FeatureSpaces,
    make_features,
)
from brainenc.simulate.hemodynamics import DT, convolved_latents
from brainenc.simulate.responses import (
    RunLatents,
    component_readouts,
    hrf_shapes_in_use,
    response_noise,
    run_components,
)
from brainenc.simulate.run_timing import (
    RunTiming,
    bids_timing,
    huth_timing,
    movie_duration,
    story_duration,
)
from brainenc.simulate.stimuli import Movie, Story, make_lexicon, make_movie, make_story
from brainenc.simulate.truth import (
    CEILING_DIRECTIONS,
    CorrelationAccumulator,
    true_explainable_variance,
    write_ground_truth,
)
from brainenc.simulate.writers import write_latents, write_layout_files, write_run

LAYOUTS: tuple[str, ...] = ("huth", "bids")
#: How movies are written: a frame-time table, or a small video of the latents.
MOVIE_FORMATS: tuple[str, ...] = ("frames", "video")
#: Fewest analysed volumes of a run, and most smoothing steps of the noise.
MIN_TRS_PER_RUN = 20
MAX_NOISE_SMOOTHING = 20
#: Upper limits that keep a simulation within what one machine can hold and write: a
#: region SNR beyond MAX_SNR overflows float32 responses; MAX_RUNS runs per modality,
#: MAX_TRS_PER_RUN volumes per run and MAX_RESPONSE_BYTES of responses in all.
MAX_SNR = 1e4
MAX_RUNS = 1000
MAX_TRS_PER_RUN = 10000
MAX_REGIONS_PER_HEMI = 10
MAX_RESPONSE_BYTES = 20e9


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
    stimulus : str
        The stimulus presented (``story01``...).
    presentation : int
        Which presentation of the stimulus this run is, from 1; a stimulus
        presented more than once names its runs ``<stimulus>_run-<presentation>``.
    """

    name: str
    modality: str
    response_paths: tuple[Path, ...]
    n_rows: int
    times: np.ndarray
    stimulus: str
    presentation: int


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
        Story runs then movie runs; the presentations of a repeated stimulus
        follow each other.
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


def simulate_dataset(
    out: str | Path,
    layout: str = "huth",
    subject: str = "sim01",
    n_stories: int = 5,
    n_movies: int = 5,
    seed: int = 0,
    snr: float | tuple[float, float] = (0.02, 0.8),
    n_trs_per_run: int | tuple[int, int] = (300, 400),
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
    noise_smoothing: int = 2,
    overlap_distance: float = 1.0,
    edge_amplitude: float = 0.3,
    pure_noise: bool = False,
    story_repeats: int = 1,
    movie_repeats: int = 1,
) -> SimulationInfo:
    """Simulate one subject hearing stories and watching movies; write a dataset.

    ``docs/simulation.md`` describes the generative model with its formulae.

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
    snr : float or (float, float)
        Signal-to-noise ratio of the regions at their centres. A pair
        ``(low, high)``: each region draws its SNR log-uniformly from it; a
        number: every region has that SNR. A component's variance over all
        written rows of its modality is exactly ``snr_region * a(theta)**2``
        (the noise has unit variance).
    n_trs_per_run : int or (int, int)
        Analysed volumes per run (the rows of a Huth ``.hf5``), at least 20. A
        pair ``(low, high)``: each stimulus draws its length uniformly from
        ``low .. high`` (inclusive) from its own random stream. Stimulus
        lengths follow from it (see ``docs/simulation.md``).
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
        Regions of each component (shared, language, vision) in each hemisphere.
    region_radius_deg : (float, float)
        Range of the regions' angular radii on the sphere.
    save_signal : bool
        Also write ``signal.npz``: the noiseless signal of every run and its
        two components, same rows and columns as the responses (held in
        memory until written: about three times as large as all responses).
    overwrite : bool
        Replace ``out`` if it holds a previous simulated dataset.
    movie_format : {"frames", "video"}
        ``"frames"``: each movie is a frame-time table (``<movie>_frames.tsv``).
        ``"video"``: each movie is a small mp4 (``<movie>.mp4``, 32 × 32 px)
        whose frames are a fixed function of the frame latents (needs PyAV).
    video_fps : float or None
        Frame rate of the videos, at most ``fps``; None: ``fps``.
    noise_smoothing : int
        Steps of neighbour averaging of each volume's noise on the fsaverage5
        mesh (0 to 20; 0: spatially independent noise). Every vertex keeps
        unit noise variance and the lag-one autocorrelation ``noise_rho``.
    overlap_distance : float
        Distance between the centres of the two caps of a pair, in units of
        their mean radius, in [0, 2]: 0 puts them on one centre, 2 makes them
        touch.
    edge_amplitude : float
        Amplitude of a component at the edge of its region relative to the
        centre, in (0, 1]; it falls off as ``1 - (1 - edge_amplitude) *
        (theta / radius)**2``.
    pure_noise : bool
        No regions at all: every vertex is noise and every ceiling is 0;
        stimuli, features, noise and files are those of the same seed without it.
    story_repeats, movie_repeats : int
        Presentations of the last story and of the last movie (1: no repeats).
        Repeats share the stimulus, and so the noiseless signal, and get
        independent noise; they are the runs ``task-<stimulus>_run-<k>`` of the
        BIDS layout (the Huth layout cannot hold them). The other runs do not
        change with the repeats. The ground truth records the true explainable
        variance of the repeated stimulus per vertex.

    Returns
    -------
    SimulationInfo

    Raises
    ------
    BrainencInputError
        If a parameter is out of range (every problem named, nothing written),
        the output folder is not allowed, or the regions do not fit on the sphere.
    """
    out = Path(out)
    ranges = _check_params(
        out, layout=layout, subject=subject, n_stories=n_stories, n_movies=n_movies, snr=snr,
        n_trs_per_run=n_trs_per_run, tr=tr, noise_rho=noise_rho, noise_smoothing=noise_smoothing,
        n_features=n_features, latent_dims=(k_shared, k_lang, k_vis), fps=fps,
        feature_noise=feature_noise, regions_per_hemi=regions_per_hemi,
        region_radius_deg=region_radius_deg, overlap_distance=overlap_distance,
        edge_amplitude=edge_amplitude, pure_noise=pure_noise, movie_format=movie_format,
        video_fps=video_fps, repeats={"story_repeats": story_repeats,
                                      "movie_repeats": movie_repeats})
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise BrainencInputError(out, f"seed (--seed) must be a whole number >= 0, got {seed!r}")
    out = check_output_folder(out, kind="simulate", overwrite=overwrite)
    if video_fps is None:
        video_fps = fps
    streams = _Streams(seed)
    dims = {"shared": k_shared, "language": k_lang, "vision": k_vis}
    spheres = fsaverage5_sphere()
    if pure_noise:
        cortex = empty_cortex(dims)
    else:
        try:
            cortex = make_cortex(streams.rng("cortex"), spheres, dims, regions_per_hemi,
                                 ranges.radius, overlap_distance, edge_amplitude, ranges.snr)
        except RegionPlacementError as exc:
            raise BrainencInputError(out, str(exc)) from exc
    stories, movies, n_rows = _make_stimuli(streams, n_stories, n_movies, ranges.n_trs, tr, fps,
                                            dims)
    features = make_features(streams.rng("features"), stories, movies, n_features, dims,
                             feature_noise, streams.per_stimulus("features", "story", n_stories),
                             streams.per_stimulus("features", "movie", n_movies))
    runs: list[tuple[str, Story | Movie]] = ([("story", s) for s in stories]
                                             + [("movie", m) for m in movies])
    timings: dict[str, RunTiming] = {
        stim.name: (huth_timing(modality, n_rows[stim.name], tr) if layout == "huth"
                    else bids_timing(stim.duration, tr))
        for modality, stim in runs
    }
    params = dict(
        snr=_record(ranges.snr), n_trs_per_run=_record(ranges.n_trs), noise_rho=float(noise_rho),
        noise_smoothing=int(noise_smoothing), seed=int(seed), tr=float(tr), fps=float(fps),
        k_shared=k_shared, k_lang=k_lang, k_vis=k_vis, n_features=n_features,
        feature_noise=float(feature_noise), regions_per_hemi=int(regions_per_hemi),
        region_radius_deg=[float(r) for r in ranges.radius],
        overlap_distance=float(overlap_distance), edge_amplitude=float(edge_amplitude),
        pure_noise=bool(pure_noise), hrf_dt=DT, layout=layout, movie_format=movie_format,
        story_repeats=int(story_repeats), movie_repeats=int(movie_repeats))
    if movie_format == "video":
        params["video_fps"] = float(video_fps)
    repeated = {"story": stories[-1].name, "movie": movies[-1].name}
    responses = _Responses(cortex, runs, timings, mesh_smoother(spheres, noise_smoothing),
                           noise_rho, repeated)
    presentations = _presentations(runs, streams, {"story": story_repeats,
                                                   "movie": movie_repeats})
    written = []
    with output_folder(out, kind="simulate", overwrite=overwrite) as build:
        # One run at a time, so that only one response matrix is in memory.
        for shown in presentations:
            modality, stim = shown.modality, shown.stim
            response = responses.run(modality, stim, shown.noise_rng,
                                     keep_signal=save_signal and shown.number == 1)
            paths = write_run(build, layout, subject, modality, stim, response,
                              timings[stim.name], tr, movie_format, video_fps,
                              presentation=shown.bids_run)
            written.append(SimulatedRun(shown.name, modality,
                                        tuple(out / p.relative_to(build) for p in paths),
                                        len(response), timings[stim.name].row_times,
                                        stim.name, shown.number))
        write_layout_files(build, layout, stories, movies, timings, movie_format)
        for _, stim in runs:
            write_latents(build / "latents" / f"{stim.name}.hf5", stim)
        _write_features(build / "features", features)
        write_ground_truth(build / "ground_truth.npz", cortex, features.mixing,
                           responses.ceilings(), params, [stim.name for _, stim in runs],
                           [n_rows[stim.name] for _, stim in runs],
                           responses.explainable_variance, repeated)
        if save_signal:
            np.savez(build / "signal.npz", **responses.signals)
    return SimulationInfo(out, layout, subject, FEATURE_SPACES, out / "ground_truth.npz",
                          tuple(written))


class _Streams:
    """Separate random streams of one seed: cortex, lexicon, and per stimulus its
    stimulus, feature noise and response noise. Stimulus ``i`` of a modality gets
    the same streams whatever the number of runs."""

    def __init__(self, seed: int) -> None:
        # New streams go last: spawning more children leaves the earlier ones unchanged.
        names = ("cortex", "lexicon", "stimuli", "features", "noise", "repeat_noise")
        self._streams = dict(zip(names, np.random.SeedSequence(seed).spawn(len(names))))
        self._per_modality = {
            kind: dict(zip(("story", "movie"), self._streams[kind].spawn(2)))
            for kind in ("stimuli", "features", "noise", "repeat_noise")
        }

    def rng(self, name: str) -> np.random.Generator:
        """The generator of a whole-dataset stream (``cortex``, ``lexicon``, ``features``)."""
        return np.random.default_rng(self._streams[name])

    def per_stimulus(self, kind: str, modality: str, n: int) -> list[np.random.Generator]:
        """One generator per stimulus of a modality, for ``stimuli``, ``features`` or
        ``noise``; per extra presentation of the repeated stimulus for ``repeat_noise``."""
        return [np.random.default_rng(s) for s in self._per_modality[kind][modality].spawn(n)]


class _Presentation(NamedTuple):
    """One run to simulate: a stimulus, which of its presentations, and its noise stream."""

    modality: str
    stim: Story | Movie
    number: int
    n_presentations: int
    noise_rng: np.random.Generator

    @property
    def name(self) -> str:
        """The stimulus name, or ``<stimulus>_run-<k>`` for a stimulus shown more than once."""
        return self.stim.name if self.n_presentations == 1 else f"{self.stim.name}_run-{self.number}"

    @property
    def bids_run(self) -> int | None:
        """The BIDS ``run`` entity: the presentation number of a repeated stimulus, else None."""
        return None if self.n_presentations == 1 else self.number


def _presentations(runs: list[tuple[str, Story | Movie]], streams: _Streams,
                   repeats: dict[str, int]) -> list[_Presentation]:
    """Every run in writing order: the last stimulus of each modality ``repeats`` times.

    A first presentation keeps its stimulus' noise stream (so it does not change with
    the repeats); later ones draw from the modality's ``repeat_noise`` stream.
    """
    presentations = []
    for modality in ("story", "movie"):
        stimuli = [stim for m, stim in runs if m == modality]
        first = streams.per_stimulus("noise", modality, len(stimuli))
        extra = streams.per_stimulus("repeat_noise", modality, repeats[modality] - 1)
        for i, (stim, rng) in enumerate(zip(stimuli, first)):
            n = repeats[modality] if i == len(stimuli) - 1 else 1
            rngs = [rng] + (extra if n > 1 else [])
            presentations += [_Presentation(modality, stim, k + 1, n, rngs[k]) for k in range(n)]
    return presentations


def _make_stimuli(streams: _Streams, n_stories: int, n_movies: int, n_trs: tuple[int, int],
                  tr: float, fps: float, dims: dict[str, int]
                  ) -> tuple[list[Story], list[Movie], dict[str, int]]:
    """Stories, movies and each one's analysed volumes (drawn first from its own stream)."""
    lexicon = make_lexicon(streams.rng("lexicon"), dims["shared"], dims["language"])
    n_rows: dict[str, int] = {}
    stories = []
    for i, rng in enumerate(streams.per_stimulus("stimuli", "story", n_stories)):
        name = f"story{i + 1:02d}"
        n_rows[name] = _draw_length(rng, n_trs)
        stories.append(make_story(rng, name, story_duration(n_rows[name], tr), lexicon))
    movies = []
    for i, rng in enumerate(streams.per_stimulus("stimuli", "movie", n_movies)):
        name = f"movie{i + 1:02d}"
        n_rows[name] = _draw_length(rng, n_trs)
        movies.append(make_movie(rng, name, movie_duration(n_rows[name], tr), fps,
                                 dims["shared"], dims["vision"]))
    return stories, movies, n_rows


class _Responses:
    """The responses of the runs, made one at a time, and the ceilings accumulated over them.

    The latents are convolved with every HRF in use at the times of the written
    rows, and each component is scaled to its SNR over all the rows of its
    modality, before the first run is made.
    """

    def __init__(self, cortex: Cortex, runs: list[tuple[str, Story | Movie]],
                 timings: dict[str, RunTiming], smoother: MeshSmoother,
                 noise_rho: float, repeated: dict[str, str]) -> None:
        shapes = hrf_shapes_in_use(cortex)
        self._latents = {stim.name: _run_latents(stim, timings[stim.name].row_times, shapes)
                         for _, stim in runs}
        self._readouts = {
            modality: component_readouts(
                cortex, modality, [self._latents[s.name] for m, s in runs if m == modality])
            for modality in ("story", "movie")}
        self._timings, self._smoother, self._rho = timings, smoother, noise_rho
        self._columns = np.flatnonzero(cortex.category > 0)
        self._accumulators = {d: CorrelationAccumulator() for d in CEILING_DIRECTIONS}
        self._repeated = repeated
        self.signals: dict[str, np.ndarray] = {}
        #: Per modality, the true explainable variance of its repeated stimulus.
        self.explainable_variance: dict[str, np.ndarray] = {}

    def run(self, modality: str, stim: Story | Movie, noise_rng: np.random.Generator,
            keep_signal: bool = False) -> np.ndarray:
        """The response (rows × vertices, float32) of one run; with ``keep_signal`` its
        signal and components go to ``signals``."""
        n_rows = len(self._timings[stim.name].row_times)
        components = run_components(modality, self._readouts[modality],
                                    self._latents[stim.name], n_rows)
        signal = sum(components.values())
        response = signal + response_noise(noise_rng, n_rows, self._rho, self._smoother)
        self._add_ceilings(modality, signal, components["shared"], response)
        if stim.name == self._repeated[modality] and modality not in self.explainable_variance:
            # Every presentation shares the signal: one computation serves them all.
            self.explainable_variance[modality] = true_explainable_variance(signal)
        if keep_signal:
            self.signals[stim.name] = signal
            self.signals.update({f"{stim.name}_{c}": v for c, v in components.items()})
        return response

    def _add_ceilings(self, modality: str, signal: np.ndarray, shared: np.ndarray,
                      response: np.ndarray) -> None:
        """Within a modality a perfect model predicts the whole signal; across, only the
        shared component transfers (a story-trained model scored on movies reaches the
        movies' shared component, and back)."""
        other = "movie" if modality == "story" else "story"
        cols = self._columns
        self._accumulators[f"{modality}_to_{modality}"].add(signal[:, cols], response[:, cols])
        self._accumulators[f"{other}_to_{modality}"].add(shared[:, cols], response[:, cols])

    def ceilings(self) -> dict[str, np.ndarray]:
        """Per direction, the ceiling of every vertex (0 where there is no signal)."""
        result = {}
        for direction, accumulator in self._accumulators.items():
            result[direction] = np.zeros(N_VERTICES, dtype=np.float32)
            result[direction][self._columns] = accumulator.result()
        return result


def _write_features(root: Path, features: FeatureSpaces) -> None:
    """One feature file per space and stimulus, with the space's pairing attributes."""
    for space, per_stim in features.data.items():
        aligned, pair = FEATURE_PAIRS[space]
        for name, (data, times) in per_stim.items():
            write_stimulus_features(root / space / f"{name}.hf5", data, times,
                                    model="simulated", space=space, aligned_pair=aligned,
                                    pair=pair)


def _draw_length(rng: np.random.Generator, n_trs: tuple[int, int]) -> int:
    """A run's analysed volumes, uniform on ``low .. high``: the first draw of its stimulus."""
    return int(rng.integers(n_trs[0], n_trs[1] + 1))


def _run_latents(stim: Story | Movie, times: np.ndarray, shapes: list[float]) -> RunLatents:
    """The stimulus' latents convolved with each HRF shape, at ``times``."""
    if isinstance(stim, Story):
        return convolved_latents(stim.word_times, {"concept": stim.concept,
                                                   "language": stim.language},
                                 True, stim.duration, times, shapes)
    return convolved_latents(stim.frame_times, {"concept": stim.concept, "vision": stim.vision},
                             False, stim.duration, times, shapes)


def _record(pair: tuple) -> float | int | list:
    """A range as the parameters record it: one number when low == high."""
    return pair[0] if pair[0] == pair[1] else list(pair)


# --------------------------------------------------------------------------- #
# Parameter checks
# --------------------------------------------------------------------------- #
def _is_number(value, integer: bool) -> bool:
    if isinstance(value, (bool, np.bool_)):
        return False
    if integer:
        return isinstance(value, (int, np.integer))
    return isinstance(value, (int, float, np.integer, np.floating)) and bool(np.isfinite(value))


def _as_range(value, integer: bool) -> tuple | None:
    """``(x, x)`` for a number, ``(low, high)`` for a pair of numbers, None otherwise."""
    if _is_number(value, integer):
        return (value, value)
    if (isinstance(value, (list, tuple, np.ndarray)) and len(value) == 2
            and all(_is_number(v, integer) for v in value)):
        low, high = value
        return (low, high)
    return None


class _Ranges(NamedTuple):
    """The parameters that take a number or a ``(low, high)`` pair, as pairs."""

    snr: tuple[float, float]
    n_trs: tuple[int, int]
    radius: tuple[float, float]


def _check_params(out: Path, *, layout, subject, n_stories, n_movies, snr, n_trs_per_run, tr,
                  noise_rho, noise_smoothing, n_features, latent_dims, fps, feature_noise,
                  regions_per_hemi, region_radius_deg, overlap_distance, edge_amplitude,
                  pure_noise, movie_format, video_fps, repeats) -> _Ranges:
    """Every parameter problem at once, before anything is computed or written."""
    reals = {"tr": tr, "noise_rho": noise_rho, "fps": fps, "feature_noise": feature_noise,
             "video_fps": video_fps, "overlap_distance": overlap_distance,
             "edge_amplitude": edge_amplitude}
    problems = [f"{name} must be a finite number, got {value!r}" for name, value in reals.items()
                if not (value is None and name == "video_fps") and not _is_number(value, False)]
    snr_range = _as_range(snr, integer=False)
    if snr_range is None:
        problems.append("snr must be a finite number or a (low, high) pair of finite numbers, "
                        f"got {snr!r}")
    if problems:
        raise BrainencInputError(out, "; ".join(problems))
    trs_range = _as_range(n_trs_per_run, integer=True)
    radius_range = _as_range(region_radius_deg, integer=False)
    if layout not in LAYOUTS:
        problems.append(f"layout must be one of {LAYOUTS}, got {layout!r}")
    if not subject or not subject.isalnum():
        problems.append(f"subject must be letters and digits only, got {subject!r}")
    for name, value in (("n_stories", n_stories), ("n_movies", n_movies)):
        if not (_is_number(value, integer=True) and 1 <= value <= MAX_RUNS):
            problems.append(f"{name} must be a whole number from 1 to {MAX_RUNS}, got {value!r}")
    if not 0 < snr_range[0] <= snr_range[1] <= MAX_SNR:
        problems.append(f"snr must be positive and at most {MAX_SNR:g}, with low <= high for a "
                        f"(low, high) range, got {snr!r}")
    if trs_range is None or not MIN_TRS_PER_RUN <= trs_range[0] <= trs_range[1] <= MAX_TRS_PER_RUN:
        problems.append(f"n_trs_per_run must be a whole number from {MIN_TRS_PER_RUN} to "
                        f"{MAX_TRS_PER_RUN}, or a (low, high) pair of them with low <= high, got "
                        f"{n_trs_per_run!r}")
    elif not problems:
        runs = (n_stories + n_movies) * max(repeats.values()) if all(
            _is_number(v, integer=True) for v in repeats.values()) else n_stories + n_movies
        size = runs * (trs_range[1] + 20) * N_VERTICES * 4
        if size > MAX_RESPONSE_BYTES:
            problems.append(f"{runs} runs of up to {trs_range[1]} volumes would write about "
                            f"{size / 1e9:.0f} GB of responses, more than {MAX_RESPONSE_BYTES / 1e9:.0f} GB; "
                            "use fewer or shorter runs")
    if tr <= 0:
        problems.append(f"tr must be positive, got {tr}")
    if layout == "huth" and tr != 2.0:
        problems.append("the Huth layout fixes the story TR at 2.0 s; use layout='bids' for others")
    if not 0.0 <= noise_rho < 1.0:
        problems.append(f"noise_rho must be in [0, 1), got {noise_rho}")
    if not (_is_number(noise_smoothing, integer=True)
            and 0 <= noise_smoothing <= MAX_NOISE_SMOOTHING):
        problems.append(f"noise_smoothing must be a whole number from 0 to {MAX_NOISE_SMOOTHING}, "
                        f"got {noise_smoothing!r}")
    if n_features < 1:
        problems.append(f"n_features must be positive, got {n_features}")
    if min(latent_dims) < 1:
        problems.append(f"latent dimensions must be positive, got {latent_dims}")
    if fps <= 0:
        problems.append(f"fps must be positive, got {fps}")
    if feature_noise < 0:
        problems.append(f"feature_noise must be non-negative, got {feature_noise}")
    if not (_is_number(regions_per_hemi, integer=True) and 1 <= regions_per_hemi <= MAX_REGIONS_PER_HEMI):
        problems.append(f"regions_per_hemi must be a whole number from 1 to {MAX_REGIONS_PER_HEMI}, "
                        f"got {regions_per_hemi!r}")
    if radius_range is None or not 0 < radius_range[0] <= radius_range[1] < 45:
        problems.append("region_radius_deg must be a (low, high) pair with 0 < low <= high < 45, "
                        f"got {region_radius_deg!r}")
    if not 0.0 <= overlap_distance <= 2.0:
        problems.append(f"overlap_distance must be in [0, 2] (mean radii between the centres "
                        f"of a pair), got {overlap_distance}")
    if not 0.0 < edge_amplitude <= 1.0:
        problems.append(f"edge_amplitude must be in (0, 1], got {edge_amplitude}")
    if not isinstance(pure_noise, (bool, np.bool_)):
        problems.append(f"pure_noise must be True or False, got {pure_noise!r}")
    if movie_format not in MOVIE_FORMATS:
        problems.append(f"movie_format must be one of {MOVIE_FORMATS}, got {movie_format!r}")
    elif movie_format == "video":
        try:
            import av  # noqa: F401
        except ImportError:
            problems.append("movie_format='video' needs PyAV: pip install av")
    if video_fps is not None and not 0 < video_fps <= fps:
        problems.append(f"video_fps must be positive and at most fps={fps}, got {video_fps}")
    problems += _repeat_problems(repeats, layout)
    if problems:
        raise BrainencInputError(out, "; ".join(problems))
    return _Ranges(snr_range, trs_range, radius_range)


def _repeat_problems(repeats: dict[str, object], layout: str) -> list[str]:
    """Repeats are whole numbers >= 1, and more than 1 only where the layout can hold them."""
    problems = [f"{name} must be a whole number of at least 1 (presentations of the last "
                f"{name.split('_')[0]}; 1: no repeats), got {value!r}"
                for name, value in repeats.items()
                if not (_is_number(value, integer=True) and value >= 1)]
    repeated = [name for name, value in repeats.items()
                if _is_number(value, integer=True) and value > 1]
    if repeated and layout == "huth":
        problems.append(
            f"{' and '.join(repeated)} > 1 {'needs' if len(repeated) == 1 else 'need'} "
            "layout='bids': the Huth layout has one response "
            "file per stimulus (preprocessed_data/<subject>/<stimulus>.hf5), so it cannot hold "
            "several presentations of one stimulus")
    return problems

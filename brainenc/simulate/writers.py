"""Writers of the simulated dataset: transcripts, frame tables, responses, layout files, latents.

The formats are those of ``docs/data_layouts.md`` (Huth and BIDS/fMRIPrep
layouts); ``docs/simulation.md`` lists every file.
"""
from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import h5py
import numpy as np

from brainenc import __version__
from brainenc.simulate.cortex import N_VERTICES_PER_HEMI
from brainenc.simulate.run_timing import RunTiming
from brainenc.simulate.stimuli import VOCABULARY, Movie, Story, round_ms
from brainenc.simulate.video import write_video


def _fmt(x: float) -> str:
    return repr(round(float(x), 4))


def textgrid_text(story: Story) -> str:
    """The story's transcript as a Praat TextGrid in the long text format."""
    phones: list[tuple[float, float, str]] = []
    for start, end, label in story.intervals:
        if label in VOCABULARY:
            # Coarse phones: the word cut into letter pairs over equal sub-intervals.
            chunks = [label[i:i + 2].upper() for i in range(0, len(label), 2)]
            edges = [round_ms(start + (end - start) * j / len(chunks)) for j in range(len(chunks))]
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


def frames_text(movie: Movie) -> str:
    """The movie's frame table: columns ``frame`` and ``time`` (seconds), tab-separated."""
    rows = [f"{i}\t{t!r}" for i, t in enumerate(movie.frame_times.tolist())]
    return "frame\ttime\n" + "\n".join(rows) + "\n"


def write_json(path: Path, obj) -> None:
    """``obj`` as indented JSON, creating the folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=2) + "\n", encoding="utf-8")


def write_text(path: Path, text: str) -> None:
    """UTF-8 text, creating the folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def write_hf5(path: Path, data: np.ndarray) -> None:
    """A Huth response file: dataset ``data``, rows × vertices, float32."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as f:
        f.create_dataset("data", data=data.astype(np.float32, copy=False))


def write_gifti(path: Path, data: np.ndarray, tr: float) -> None:
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


def write_latents(path: Path, stim: Story | Movie) -> None:
    """The latent vectors of every word or frame, for checks and oracle analyses."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as f:
        if isinstance(stim, Story):
            f.create_dataset("times", data=stim.word_times)
            f.create_dataset("concept", data=stim.concept.astype(np.float32))
            f.create_dataset("language", data=stim.language.astype(np.float32))
            f.attrs["modality"] = "story"
        else:
            f.create_dataset("times", data=stim.frame_times)
            f.create_dataset("concept", data=stim.concept.astype(np.float32))
            f.create_dataset("vision", data=stim.vision.astype(np.float32))
            f.attrs["modality"] = "movie"


def movie_file_name(name: str, movie_format: str) -> str:
    """``<movie>.mp4`` for videos, ``<movie>_frames.tsv`` for frame tables."""
    return f"{name}.mp4" if movie_format == "video" else f"{name}_frames.tsv"


def _write_movie_file(path: Path, movie: Movie, movie_format: str, video_fps: float) -> None:
    if movie_format == "video":
        write_video(path, movie, video_fps)
    else:
        write_text(path, frames_text(movie))


def write_run(root: Path, layout: str, subject: str, modality: str, stim: Story | Movie,
              response: np.ndarray, timing: RunTiming, tr: float, movie_format: str = "frames",
              video_fps: float | None = None, presentation: int | None = None
              ) -> tuple[Path, ...]:
    """Write one run's response and stimulus file; return the response paths.

    ``presentation`` numbers the runs of a stimulus shown more than once (BIDS
    ``run`` entity, the stimulus file written with the first); None for a
    stimulus shown once. The Huth layout has no place for repeats.
    """
    if layout == "huth" and presentation is not None:
        raise ValueError("the Huth layout holds one run per stimulus: no repeated presentations")
    if layout == "huth":
        deriv = root / "derivative"
        path = deriv / "preprocessed_data" / subject / f"{stim.name}.hf5"
        write_hf5(path, response)
        if modality == "story":
            write_text(deriv / "TextGrids" / f"{stim.name}.TextGrid", textgrid_text(stim))
        else:
            _write_movie_file(deriv / "Movies" / movie_file_name(stim.name, movie_format),
                              stim, movie_format, video_fps)
        return (path,)

    sub = f"sub-{subject}"
    first = presentation in (None, 1)
    if modality == "story":
        stim_file = f"{stim.name}.TextGrid"
        if first:
            write_text(root / "stimuli" / stim_file, textgrid_text(stim))
    else:
        stim_file = movie_file_name(stim.name, movie_format)
        if first:
            _write_movie_file(root / "stimuli" / stim_file, stim, movie_format, video_fps)
    stem = f"{sub}_task-{stim.name}" + ("" if presentation is None else f"_run-{presentation}")
    write_text(
        root / sub / "func" / f"{stem}_events.tsv",
        "onset\tduration\ttrial_type\tstim_file\tmodality\n"
        f"{timing.meta['onset']!r}\t{stim.duration!r}\t{modality}\t{stim_file}\t{modality}\n")
    paths = []
    for h, hemi in enumerate(("L", "R")):
        name = f"{stem}_hemi-{hemi}_space-fsaverage5_bold"
        path = root / "derivatives" / "fmriprep" / sub / "func" / f"{name}.func.gii"
        write_gifti(path, response[:, h * N_VERTICES_PER_HEMI:(h + 1) * N_VERTICES_PER_HEMI], tr)
        write_json(path.with_name(f"{name}.json"), {"RepetitionTime": tr, "TaskName": stim.name})
        paths.append(path)
    return tuple(paths)


def write_layout_files(root: Path, layout: str, stories: Sequence[Story], movies: Sequence[Movie],
                       timings: dict[str, RunTiming], movie_format: str = "frames") -> None:
    """Files that describe the whole dataset (respdict, brainenc.json, descriptions)."""
    if layout == "huth":
        deriv = root / "derivative"
        write_json(deriv / "respdict.json",
                   {s.name: timings[s.name].meta["respdict"] for s in stories})
        key = "video" if movie_format == "video" else "frames"
        write_json(deriv / "brainenc.json", {
            "space": "fsaverage5",
            "movies": {m.name: {key: f"Movies/{movie_file_name(m.name, movie_format)}",
                                **timings[m.name].meta}
                       for m in movies},
        })
        return
    write_json(root / "dataset_description.json", {
        "Name": "brainenc simulated subject", "BIDSVersion": "1.8.0", "DatasetType": "raw"})
    write_json(root / "derivatives" / "fmriprep" / "dataset_description.json", {
        "Name": "simulated fMRIPrep surface outputs", "BIDSVersion": "1.8.0",
        "DatasetType": "derivative",
        "GeneratedBy": [{"Name": "brainenc.simulate", "Version": __version__}]})

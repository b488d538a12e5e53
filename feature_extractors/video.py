"""Movie frames from a video file or a frame-time table, with their times.

Times are on the movie clock in seconds. For a video, frame times are the
presentation timestamps relative to the first frame (the first frame is at 0).
For a frame-time table they are the table's ``time`` column as written.

Sampling at a rate ``fps`` follows one rule for both sources: for each target
time ``t_k = k / fps`` (``k = 0, 1, ...`` while ``t_k`` is before the end of
the movie) the frame *showing* at ``t_k`` is taken, i.e. the last frame whose
time is at or before ``t_k`` (with 1 µs of slack for timestamp rounding),
and it is reported at ``t_k``. A frame can thus be taken several times
(``fps`` above the native rate) or not at all (below it). The end of the movie is the time of its last frame plus that frame's
display duration (see :func:`decode_video` and :func:`read_frame_images`).
Targets before the first frame (a table whose first time is after 0) are
skipped.
"""
from __future__ import annotations

import csv
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import numpy as np

from brainenc.errors import BrainencInputError
from brainenc.io.frames import read_frame_table
from brainenc.io.layouts._common import VIDEO_SUFFIXES, stimulus_kind

#: Slack when comparing a frame time with a target time: timestamps in a
#: container's time base rarely equal ``k / fps`` to the last bit.
_TIME_TOLERANCE_S = 1e-6


# --------------------------------------------------------------------------- #
# Sampling rule shared by videos and frame tables
# --------------------------------------------------------------------------- #
def _sample_at_rate(timed: Iterator[tuple[float, object]], fps: float, end_of_last) -> Iterator:
    """Resample ``(time, item)`` pairs (times increasing) at ``fps``.

    ``end_of_last(last_time, previous_time)`` gives the end of the movie once
    the last item is known. Yields ``(target_time, item)``; ``item`` is whatever
    ``timed`` yields (a decoded frame, or where to read an image), so frames
    that are skipped are never converted or read.
    """
    k = 0
    previous = None   # (time, item) of the frame showing before the current one
    before_previous_time = None
    for time, item in timed:
        if previous is not None:
            # ``previous`` shows on [previous_time, time): emit the targets in it.
            while k / fps < time - _TIME_TOLERANCE_S:
                if k / fps >= previous[0] - _TIME_TOLERANCE_S:
                    yield k / fps, previous[1]
                k += 1
            before_previous_time = previous[0]
        previous = (time, item)
    if previous is None:
        return
    end = end_of_last(previous[0], before_previous_time)
    while k / fps < end - _TIME_TOLERANCE_S:
        if k / fps >= previous[0] - _TIME_TOLERANCE_S:
            yield k / fps, previous[1]
        k += 1


def _check_fps(fps: float | None, where: Path) -> None:
    if fps is not None and not fps > 0:
        raise BrainencInputError(where, f"the sampling rate must be positive, got fps={fps}")


# --------------------------------------------------------------------------- #
# Videos
# --------------------------------------------------------------------------- #
def _open_video(path: Path):
    """The container and its first video stream, or an error naming the file."""
    import av

    if not path.is_file():
        raise BrainencInputError(path, "video file not found")
    try:
        container = av.open(str(path))
    except (av.FFmpegError, OSError) as error:
        raise BrainencInputError(path, f"cannot read this file as a video ({error})") from error
    if not container.streams.video:
        container.close()
        raise BrainencInputError(path, "the file has no video stream")
    stream = container.streams.video[0]
    stream.thread_type = "AUTO"
    return container, stream


def _native_frames(path: Path, container, stream) -> Iterator[tuple[float, object, float | None]]:
    """Decoded frames in presentation order: ``(time, av frame, duration or None)``.

    Times are relative to the first frame. A frame whose time does not come
    after the previous frame's (a duplicate timestamp) is dropped, so times
    strictly increase. Frames without a timestamp are placed one nominal frame
    interval after the previous one.
    """
    import av

    nominal = 1.0 / float(stream.average_rate) if stream.average_rate else None
    first = last = None
    try:
        for frame in container.decode(stream):
            if frame.pts is not None and frame.time_base is not None:
                absolute = Fraction(frame.pts) * frame.time_base
                time = float(absolute - first) if first is not None else 0.0
                if first is None:
                    first = absolute
            elif last is None:
                time = 0.0
                first = Fraction(0)
            elif nominal is not None:
                time = last + nominal
            else:
                raise BrainencInputError(
                    path, "frames have no timestamps and the stream declares no frame rate"
                )
            if last is not None and time <= last:
                continue
            duration = None
            if frame.duration and frame.time_base is not None:
                duration = float(frame.duration * frame.time_base)
            last = time
            yield time, frame, duration
    except av.FFmpegError as error:
        raise BrainencInputError(path, f"decoding failed ({error})") from error


def _video_frames(path: Path, fps: float | None) -> Iterator[tuple[np.ndarray, float]]:
    """``(rgb frame, time)`` pairs of a video, all frames or sampled at ``fps``."""
    container, stream = _open_video(path)
    try:
        nominal = 1.0 / float(stream.average_rate) if stream.average_rate else None
        last_duration = {}

        def timed():
            for time, frame, duration in _native_frames(path, container, stream):
                last_duration["value"] = duration
                yield time, frame

        def end_of_last(last_time, previous_time):
            duration = last_duration.get("value")
            if duration is None:
                duration = nominal
            if duration is None:
                duration = last_time - previous_time if previous_time is not None else 0.0
            return last_time + duration

        n = 0
        if fps is None:
            for time, frame in timed():
                n += 1
                yield frame.to_ndarray(format="rgb24"), time
        else:
            # A frame picked for several consecutive targets is converted once.
            converted_for, rgb = None, None
            for target, frame in _sample_at_rate(timed(), fps, end_of_last):
                if frame is not converted_for:
                    converted_for, rgb = frame, frame.to_ndarray(format="rgb24")
                n += 1
                yield rgb, target
        if n == 0:
            raise BrainencInputError(path, "no frames could be decoded from the video")
    finally:
        container.close()


def decode_video(
    path: str | Path, fps: float | None = None, max_frames: int | None = None
) -> tuple[list[np.ndarray], np.ndarray]:
    """Decode a video into RGB frames and their times.

    Parameters
    ----------
    path : path-like
        Any video PyAV (FFmpeg) can read.
    fps : float or None
        ``None`` keeps every frame, at its presentation time relative to the
        first frame. Otherwise frames are sampled at this rate: for each
        target time ``k / fps`` (``k = 0, 1, ...`` while ``k / fps`` is before
        the end of the video) the frame showing at that time, i.e. the last
        frame whose time is at or before it, reported at the *target* time
        ``k / fps``. The end of the video is the last frame's time plus its
        duration (from its timestamp, else one frame at the stream's average
        rate, else the interval between the last two frames). The video is
        decoded as a stream: only the frames returned are kept.
    max_frames : int or None
        Stop after this many returned frames.

    Returns
    -------
    frames : list of ndarray of shape (height, width, 3), uint8
        RGB frames. When sampling picks one frame for several targets, the
        same array object is repeated.
    times : ndarray of shape (n_frames,), float64
        Seconds on the movie clock, strictly increasing, the first 0 (all
        frames) or ``k / fps``.

    Raises
    ------
    BrainencInputError
        The file is missing, is not a readable video, has no video stream or
        no decodable frame, or ``fps`` / ``max_frames`` is not positive.
    """
    path = Path(path)
    _check_fps(fps, path)
    if max_frames is not None and max_frames < 1:
        raise BrainencInputError(path, f"max_frames must be at least 1, got {max_frames}")
    frames, times = [], []
    generator = _video_frames(path, fps)
    try:
        for frame, time in generator:
            frames.append(frame)
            times.append(time)
            if max_frames is not None and len(frames) >= max_frames:
                break
    finally:
        generator.close()
    return frames, np.asarray(times, dtype=np.float64)


def iter_video_batches(
    path: str | Path, fps: float | None, batch_size: int
) -> Iterator[tuple[list[np.ndarray], np.ndarray]]:
    """Decode a video in batches, so long movies need not fit in memory.

    Parameters
    ----------
    path : path-like
        The video.
    fps : float or None
        Sampling rate, as in :func:`decode_video` (``None``: every frame).
    batch_size : int
        Frames per batch; the last batch may be shorter.

    Yields
    ------
    frames : list of ndarray of shape (height, width, 3), uint8
    times : ndarray of shape (len(frames),), float64
        Concatenated over batches, exactly what :func:`decode_video` returns.

    Raises
    ------
    BrainencInputError
        As :func:`decode_video`; a missing or unreadable file is reported when
        the generator is created, a video without frames at the first batch.
    """
    path = Path(path)
    _check_fps(fps, path)
    if batch_size < 1:
        raise BrainencInputError(path, f"batch_size must be at least 1, got {batch_size}")
    # Open once here so that a bad file fails at the call, not at first use.
    _open_video(path)[0].close()
    return _batches(_video_frames(path, fps), batch_size)


def _batches(pairs: Iterator[tuple[np.ndarray, float]], batch_size: int):
    frames, times = [], []
    for frame, time in pairs:
        frames.append(frame)
        times.append(time)
        if len(frames) == batch_size:
            yield frames, np.asarray(times, dtype=np.float64)
            frames, times = [], []
    if frames:
        yield frames, np.asarray(times, dtype=np.float64)


# --------------------------------------------------------------------------- #
# Frame-time tables of images
# --------------------------------------------------------------------------- #
def _table_images(table_path: Path, fps: float | None) -> list[tuple[float, Path, int]]:
    """``(time, image path, frame row)`` of each frame to load from a frame table."""
    events = read_frame_table(table_path)
    with open(table_path, newline="", encoding="utf-8-sig") as handle:
        header = next((row for row in csv.reader(handle, delimiter="\t")
                       if any(cell.strip() for cell in row)), [])
    if "file" not in [cell.strip() for cell in header]:
        raise BrainencInputError(
            table_path, "the frame table has no 'file' column, so it names no images; "
            "add a 'file' column (image paths relative to the table) or use the video"
        )
    times = events.times
    rows = [(float(t), table_path.parent / label, position)
            for position, (t, label) in enumerate(zip(times, events.labels))]
    if fps is None:
        return rows
    steps = np.diff(times)
    typical = float(np.median(steps)) if len(steps) else 1.0 / fps

    def end_of_last(last_time, previous_time):
        return last_time + typical

    return [(target, path, row) for target, (path, row) in
            _sample_at_rate(((t, (p, row)) for t, p, row in rows), fps, end_of_last)]


def _load_image(path: Path, table_path: Path, row: int) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    where = f"frame row {row} (counting from 0)"
    if not path.is_file():
        raise BrainencInputError(table_path, f"{where}: image not found: {path}")
    try:
        with Image.open(path) as image:
            return np.asarray(image.convert("RGB"), dtype=np.uint8)
    except (OSError, UnidentifiedImageError) as error:
        raise BrainencInputError(table_path, f"{where}: cannot read image {path} ({error})") from error


def _table_frames(table_path: Path, rows: list[tuple[float, Path, int]]) -> Iterator[tuple[np.ndarray, float]]:
    """``(rgb image, time)`` of each row, reading each image when it is reached.

    An image picked for consecutive targets is read once and the same array is
    repeated; only that one image is held between rows.
    """
    loaded_path, image = None, None
    for time, path, row in rows:
        if path != loaded_path:
            loaded_path, image = path, _load_image(path, table_path, row)
        yield image, time


def read_frame_images(
    table_path: str | Path, fps: float | None = None
) -> tuple[list[np.ndarray], np.ndarray]:
    """Load the images listed in a frame-time table.

    Parameters
    ----------
    table_path : path-like
        A frame table (:func:`brainenc.io.frames.read_frame_table`) with a
        ``file`` column of image paths relative to the table.
    fps : float or None
        ``None``: every row, at its ``time``. Otherwise sampled at this rate as
        in :func:`decode_video`; the last frame is taken to show for the
        median interval between frames (for a single frame: one target).
        Only the images picked are read.

    Returns
    -------
    frames : list of ndarray of shape (height, width, 3), uint8
        The images converted to RGB. When sampling picks one image for
        consecutive targets, the same array object is repeated.
    times : ndarray of shape (n_frames,), float64

    Raises
    ------
    BrainencInputError
        The table is invalid or has no ``file`` column, or an image is missing
        or unreadable (the message names the table, the frame row and the image).
    """
    table_path = Path(table_path)
    _check_fps(fps, table_path)
    rows = _table_images(table_path, fps)
    frames = [image for image, _ in _table_frames(table_path, rows)]
    return frames, np.asarray([t for t, _, _ in rows], dtype=np.float64)


def iter_frame_table_batches(
    table_path: str | Path, fps: float | None, batch_size: int
) -> Iterator[tuple[list[np.ndarray], np.ndarray]]:
    """The frames of :func:`read_frame_images` in batches, each image read when its batch is.

    At most one batch of images (plus the image showing at the batch's end) is
    in memory, as for videos (:func:`iter_video_batches`).

    Parameters
    ----------
    table_path : path-like
        The frame table.
    fps : float or None
        Sampling rate, as in :func:`read_frame_images`.
    batch_size : int
        Frames per batch; the last batch may be shorter.

    Raises
    ------
    BrainencInputError
        An invalid table (no ``time`` or ``file`` column...) or a bad ``fps`` /
        ``batch_size`` when the generator is created; a missing or unreadable
        image when its batch is reached (see :func:`check_frame_table_images`
        to check every image first).
    """
    table_path = Path(table_path)
    _check_fps(fps, table_path)
    if batch_size < 1:
        raise BrainencInputError(table_path, f"batch_size must be at least 1, got {batch_size}")
    rows = _table_images(table_path, fps)
    return _batches(_table_frames(table_path, rows), batch_size)


def check_frame_table_images(table_path: str | Path) -> None:
    """Raise unless the table is valid and names a ``file`` for each row that exists.

    Reads the table only, not the images: a cheap check before any computation.

    Raises
    ------
    BrainencInputError
        As :func:`read_frame_images`, for an invalid table or a missing image.
    """
    table_path = Path(table_path)
    for _, path, row in _table_images(table_path, None):
        if not path.is_file():
            raise BrainencInputError(table_path, f"frame row {row} (counting from 0): image not found: {path}")


# --------------------------------------------------------------------------- #
# Either source
# --------------------------------------------------------------------------- #
def movie_frames(
    stimulus_path: str | Path, fps: float | None = None
) -> tuple[list[np.ndarray], np.ndarray]:
    """Frames of a movie stimulus: a video file or a frame-time table of images.

    Parameters
    ----------
    stimulus_path : path-like
        A video (``.mp4``, ``.mov``, ``.avi``, ``.mkv``, ``.webm`` and the other
        suffixes of :data:`VIDEO_SUFFIXES`) or a ``.tsv`` frame table.
    fps : float or None
        ``None``: every frame; else the sampling rule of :func:`decode_video`.

    Returns
    -------
    frames : list of ndarray (height, width, 3), uint8
    times : ndarray of shape (n_frames,), float64

    Raises
    ------
    BrainencInputError
        The suffix is neither a video nor ``.tsv``, or the source is invalid.
    """
    stimulus_path = Path(stimulus_path)
    kind = stimulus_kind(stimulus_path)
    if kind == "video":
        return decode_video(stimulus_path, fps)
    if kind == "frames":
        return read_frame_images(stimulus_path, fps)
    raise BrainencInputError(
        stimulus_path, "not a movie stimulus: expected a video "
        f"({', '.join(VIDEO_SUFFIXES)}) or a .tsv frame table"
    )


def iter_movie_batches(
    stimulus_path: str | Path, fps: float | None, batch_size: int
) -> Iterator[tuple[list[np.ndarray], np.ndarray]]:
    """:func:`movie_frames` in batches of at most ``batch_size`` frames.

    Both sources are streamed: a video is decoded (:func:`iter_video_batches`)
    and a frame table's images are read (:func:`iter_frame_table_batches`)
    one batch at a time, so long movies need not fit in memory.

    Raises
    ------
    BrainencInputError
        The suffix is neither a video nor ``.tsv``, or the source is invalid
        (reported when the generator is created; see the two functions above).
    """
    stimulus_path = Path(stimulus_path)
    if batch_size < 1:
        raise BrainencInputError(stimulus_path, f"batch_size must be at least 1, got {batch_size}")
    kind = stimulus_kind(stimulus_path)
    if kind == "video":
        return iter_video_batches(stimulus_path, fps, batch_size)
    if kind == "frames":
        return iter_frame_table_batches(stimulus_path, fps, batch_size)
    raise BrainencInputError(
        stimulus_path, "not a movie stimulus: expected a video "
        f"({', '.join(VIDEO_SUFFIXES)}) or a .tsv frame table"
    )

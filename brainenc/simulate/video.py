"""Simulated movies written as small videos whose frames are a fixed function of the latents."""
from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np

from brainenc.simulate.stimuli import Movie

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


def video_frame_images(movie: Movie, video_fps: float) -> np.ndarray:
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


def write_video(path: Path, movie: Movie, video_fps: float) -> None:
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
        for j, image in enumerate(video_frame_images(movie, video_fps)):
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts = j
            container.mux(stream.encode(frame))
        container.mux(stream.encode())

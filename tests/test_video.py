"""Video decoding, frame tables of images, and simulated movies written as video."""
from __future__ import annotations

import json

import h5py
import numpy as np
import pytest

av = pytest.importorskip("av")
Image = pytest.importorskip("PIL.Image")

from brainenc.errors import BrainencInputError  # noqa: E402
from brainenc.simulate import VIDEO_PROJECTION_SEED, simulate_dataset  # noqa: E402
from feature_extractors.video import (  # noqa: E402
    decode_video,
    iter_movie_batches,
    iter_video_batches,
    movie_frames,
    read_frame_images,
)

#: One solid colour per second of the test video.
COLOURS = np.array([(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 255)], dtype=float)
NATIVE_FPS = 10
SIZE = 32
#: Largest difference of a frame's mean colour from the colour encoded (out of 255).
TOLERANCE = 20


def _video_codec() -> str:
    for name in ("libx264", "mpeg4"):
        try:
            av.codec.Codec(name, "w")
            return name
        except Exception:
            continue
    pytest.skip("no H.264 or MPEG-4 encoder in this PyAV build")


def write_test_video(path, seconds=len(COLOURS), fps=NATIVE_FPS):
    """``seconds`` s at ``fps``, 32 × 32, second ``s`` filled with ``COLOURS[s]``."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream(_video_codec(), rate=fps)
        stream.width = stream.height = SIZE
        stream.pix_fmt = "yuv420p"
        for i in range(seconds * fps):
            image = np.empty((SIZE, SIZE, 3), dtype=np.uint8)
            image[:] = COLOURS[i // fps]
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts = i
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return path


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    return write_test_video(tmp_path_factory.mktemp("video") / "colours.mp4")


def mean_colours(frames):
    return np.array([frame.reshape(-1, 3).mean(axis=0) for frame in frames])


def expected_colours(times):
    """Colour of the native frame showing at each time: second floor(t)."""
    native_index = np.floor(np.asarray(times) * NATIVE_FPS + 1e-6).astype(int)
    return COLOURS[native_index // NATIVE_FPS]


def test_decode_every_frame(video):
    frames, times = decode_video(video)
    assert len(frames) == 40
    np.testing.assert_allclose(times, np.arange(40) / NATIVE_FPS, rtol=0, atol=1e-9)
    assert all(f.shape == (SIZE, SIZE, 3) and f.dtype == np.uint8 for f in frames)
    np.testing.assert_allclose(mean_colours(frames), expected_colours(times), atol=TOLERANCE)


def test_decode_sampled_at_lower_rate(video):
    frames, times = decode_video(video, fps=2)
    np.testing.assert_allclose(times, np.arange(8) * 0.5, rtol=0, atol=1e-12)
    colours = mean_colours(frames)
    np.testing.assert_allclose(colours, COLOURS[np.arange(8) // 2], atol=TOLERANCE)


def test_sampling_takes_the_frame_showing_at_each_target(video):
    # 3 fps: targets k/3 < 4 s; k = 3, 6, 9 fall exactly on the first frame of a second.
    frames, times = decode_video(video, fps=3)
    np.testing.assert_allclose(times, np.arange(12) / 3, rtol=0, atol=1e-12)
    np.testing.assert_allclose(mean_colours(frames), COLOURS[np.arange(12) // 3], atol=TOLERANCE)
    # Above the native rate frames repeat: 25 fps over 4 s gives 100 targets.
    frames, times = decode_video(video, fps=25)
    assert len(frames) == 100
    np.testing.assert_allclose(times, np.arange(100) / 25, rtol=0, atol=1e-12)
    np.testing.assert_allclose(mean_colours(frames), expected_colours(times), atol=TOLERANCE)
    # Each target shows the native frame with the largest time at or before it.
    native, native_times = decode_video(video)
    for frame, t in zip(frames, times):
        index = int(np.searchsorted(native_times, t + 1e-9, side="right")) - 1
        np.testing.assert_array_equal(frame, native[index])


def test_max_frames(video):
    frames, times = decode_video(video, fps=2, max_frames=3)
    assert len(frames) == 3
    np.testing.assert_allclose(times, [0.0, 0.5, 1.0])


@pytest.mark.parametrize("fps, batch_size", [(2, 3), (None, 16)])
def test_batches_concatenate_to_the_full_decode(video, fps, batch_size):
    frames, times = decode_video(video, fps=fps)
    batches = list(iter_video_batches(video, fps, batch_size))
    sizes = [len(b[0]) for b in batches]
    assert all(size == batch_size for size in sizes[:-1]) and 0 < sizes[-1] <= batch_size
    np.testing.assert_array_equal(np.concatenate([b[1] for b in batches]), times)
    np.testing.assert_array_equal(np.stack([f for b in batches for f in b[0]]), np.stack(frames))
    movie_batches = list(iter_movie_batches(video, fps, batch_size))
    np.testing.assert_array_equal(np.concatenate([b[1] for b in movie_batches]), times)


def test_video_errors(tmp_path):
    missing = tmp_path / "missing.mp4"
    with pytest.raises(BrainencInputError, match="not found") as info:
        decode_video(missing)
    assert info.value.path == missing
    with pytest.raises(BrainencInputError, match="not found"):
        iter_video_batches(missing, 2, 4)

    text = tmp_path / "notes.mp4"
    text.write_text("these are notes, not a video\n" * 20)
    with pytest.raises(BrainencInputError, match="cannot read this file as a video") as info:
        decode_video(text)
    assert info.value.path == text

    audio_only = tmp_path / "tone.mp4"
    with av.open(str(audio_only), "w") as container:
        stream = container.add_stream("aac", rate=8000)
        samples = np.zeros((1, 8000), dtype=np.float32)
        frame = av.AudioFrame.from_ndarray(samples, format="fltp", layout="mono")
        frame.sample_rate = 8000
        container.mux(stream.encode(frame))
        container.mux(stream.encode())
    with pytest.raises(BrainencInputError, match="no video stream"):
        decode_video(audio_only)

    with pytest.raises(BrainencInputError, match="fps"):
        decode_video(text, fps=0)


def write_image_table(folder, times, colours):
    """A frame table with a ``file`` column naming one solid-colour PNG per row."""
    (folder / "images").mkdir(parents=True)
    rows = ["frame\ttime\tfile"]
    for i, (t, colour) in enumerate(zip(times, colours)):
        image = np.empty((8, 12, 3), dtype=np.uint8)
        image[:] = colour
        image[0, 0] = (i, i, i)  # each image differs from the others
        Image.fromarray(image).save(folder / "images" / f"f{i}.png")
        rows.append(f"{i}\t{t}\timages/f{i}.png")
    table = folder / "movie_frames.tsv"
    table.write_text("\n".join(rows) + "\n")
    return table


def test_read_frame_images(tmp_path):
    times = [0.0, 0.4, 1.0, 1.2]
    colours = [(10, 20, 30), (200, 0, 0), (0, 200, 0), (0, 0, 200)]
    table = write_image_table(tmp_path, times, colours)
    frames, read_times = read_frame_images(table)
    np.testing.assert_array_equal(read_times, times)
    for i, frame in enumerate(frames):
        np.testing.assert_array_equal(frame, np.asarray(Image.open(tmp_path / "images" / f"f{i}.png")))
        assert frame.shape == (8, 12, 3) and frame.dtype == np.uint8
    # 2.5 fps: targets 0, 0.4, 0.8, 1.2 (the last frame shows for the median step, 0.4 s).
    sampled, sampled_times = read_frame_images(table, fps=2.5)
    np.testing.assert_allclose(sampled_times, [0.0, 0.4, 0.8, 1.2])
    for frame, index in zip(sampled, [0, 1, 1, 3]):
        np.testing.assert_array_equal(frame, frames[index])
    via_dispatch, dispatch_times = movie_frames(table)
    np.testing.assert_array_equal(dispatch_times, times)
    np.testing.assert_array_equal(np.stack(via_dispatch), np.stack(frames))


def test_frame_table_errors(tmp_path):
    no_files = tmp_path / "plain_frames.tsv"
    no_files.write_text("frame\ttime\n0\t0.0\n1\t0.5\n")
    with pytest.raises(BrainencInputError, match="no 'file' column") as info:
        read_frame_images(no_files)
    assert info.value.path == no_files

    table = write_image_table(tmp_path / "ds", [0.0, 0.5], [(1, 2, 3), (4, 5, 6)])
    (tmp_path / "ds" / "images" / "f1.png").unlink()
    with pytest.raises(BrainencInputError, match="f1.png") as info:
        read_frame_images(table)
    assert info.value.path == table and "not found" in str(info.value)

    with pytest.raises(BrainencInputError, match="not a movie stimulus"):
        movie_frames(tmp_path / "story.TextGrid")


def test_movie_frames_dispatches_videos(video):
    frames, times = movie_frames(video, fps=2)
    reference, reference_times = decode_video(video, fps=2)
    np.testing.assert_array_equal(times, reference_times)
    np.testing.assert_array_equal(np.stack(frames), np.stack(reference))


@pytest.mark.parametrize("layout", ["huth", "bids"])
def test_simulated_movies_as_video(tmp_path, layout):
    fps, video_fps = 15.0, 5.0
    info = simulate_dataset(tmp_path / layout, layout=layout, n_stories=1, n_movies=2,
                            n_trs_per_run=30, fps=fps, movie_format="video",
                            video_fps=video_fps)
    duration = 2.0 * (30 + 15) - 20.0   # movie length for 30 analysed volumes, TR 2 s
    if layout == "huth":
        config = json.loads((info.root / "derivative" / "brainenc.json").read_text())
        assert config["movies"]["movie01"]["video"] == "Movies/movie01.mp4"
        videos = [info.root / "derivative" / "Movies" / f"movie0{i}.mp4" for i in (1, 2)]
        assert not list((info.root / "derivative" / "Movies").glob("*.tsv"))
    else:
        events = (info.root / "sub-sim01" / "func" / "sub-sim01_task-movie01_events.tsv")
        assert "\tmovie01.mp4\t" in events.read_text()
        videos = [info.root / "stimuli" / f"movie0{i}.mp4" for i in (1, 2)]

    for path in videos:
        frames, times = decode_video(path)
        n = int(duration * video_fps)
        assert len(frames) == n and frames[0].shape == (32, 32, 3)
        np.testing.assert_allclose(times, np.arange(n) / video_fps, rtol=0, atol=1e-9)
        # The frames follow the latents as docs/simulation.md describes: mean
        # colour 200 * logistic(P z) with z = [concept, vision] of the frame shown.
        with h5py.File(info.root / "latents" / f"{path.stem}.hf5", "r") as f:
            latent_times = f["times"][()]
            z = np.concatenate([f["concept"][()], f["vision"][()]], axis=1)
        shown = np.searchsorted(latent_times, times + 1e-9, side="right") - 1
        rng = np.random.default_rng(VIDEO_PROJECTION_SEED)
        projection = rng.standard_normal((3, z.shape[1])) / np.sqrt(z.shape[1])
        expected = 200.0 / (1.0 + np.exp(-z[shown].astype(np.float64) @ projection.T))
        colours = mean_colours(frames)
        # yuv420p at high quality keeps the mean colour within a few levels.
        np.testing.assert_allclose(colours, expected, atol=8)
        assert np.corrcoef(colours[:, 0], expected[:, 0])[0, 1] > 0.95


@pytest.mark.parametrize("fps", [None, 7.0])
def test_frame_table_batches_read_images_lazily(tmp_path, monkeypatch, fps):
    import feature_extractors.video as video

    n_images, batch_size = 40, 4
    times = [0.1 * i for i in range(n_images)]
    colours = [(5 * i, 255 - 5 * i, 3 * i) for i in range(n_images)]
    table = write_image_table(tmp_path, times, colours)
    frames, frame_times = read_frame_images(table, fps=fps)

    reads = []
    real_load = video._load_image
    monkeypatch.setattr(video, "_load_image", lambda *args: reads.append(args[0]) or real_load(*args))
    batches = iter_movie_batches(table, fps, batch_size)
    assert reads == []  # creating the generator reads the table only
    first, first_times = next(batches)
    assert len(first) == batch_size
    # no more images than frames in the batch are decoded (fewer when one shows twice)
    assert 1 <= len(reads) <= batch_size
    rest = list(batches)
    streamed = first + [frame for chunk, _ in rest for frame in chunk]
    streamed_times = np.concatenate([first_times] + [t for _, t in rest])
    assert len(reads) == len({id(frame) for frame in frames})  # each image read once
    np.testing.assert_array_equal(streamed_times, frame_times)
    np.testing.assert_array_equal(np.stack(streamed), np.stack(frames))
    assert max(len(chunk) for chunk, _ in rest) == batch_size


def test_frame_table_batches_report_a_bad_table_at_the_call(tmp_path):
    no_files = tmp_path / "plain_frames.tsv"
    no_files.write_text("frame\ttime\n0\t0.0\n1\t0.5\n")
    with pytest.raises(BrainencInputError, match="no 'file' column"):
        iter_movie_batches(no_files, None, 4)

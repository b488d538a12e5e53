"""Frame-time tables and regular video frame clocks."""
from __future__ import annotations

import numpy as np
import pytest

from brainenc.errors import BrainencInputError
from brainenc.io.frames import read_frame_table, video_frame_events


def write_table(path, header, rows):
    path.write_text("\t".join(header) + "\n" + "".join("\t".join(map(str, row)) + "\n"
                                                      for row in rows), encoding="utf-8")
    return path


def test_table_with_files_frames_and_times(tmp_path):
    times = [0.0, 0.5, 1.25, 2.0]
    rows = [(i, t, f"img/frame{i:03d}.png") for i, t in enumerate(times)]
    events = read_frame_table(write_table(tmp_path / "m_frames.tsv", ["frame", "time", "file"], rows))
    np.testing.assert_array_equal(events.times, times)
    assert events.labels == tuple(f"img/frame{i:03d}.png" for i in range(4))
    assert events.onsets is None


def test_labels_fall_back_to_frame_then_position(tmp_path):
    frame_rows = [(10, 0.1), (11, 0.2), (12, 0.3)]
    with_frames = read_frame_table(write_table(tmp_path / "a.tsv", ["frame", "time"], frame_rows))
    assert with_frames.labels == ("10", "11", "12")
    np.testing.assert_allclose(with_frames.times, [0.1, 0.2, 0.3])
    times_only = read_frame_table(write_table(tmp_path / "b.tsv", ["time"], [(3.0,), (4.0,)]))
    assert times_only.labels == ("0", "1")


def test_video_frame_events_follow_frame_rate():
    events = video_frame_events(5, fps=4.0, start=1.0)
    np.testing.assert_allclose(events.times, [1.0 + i / 4.0 for i in range(5)])
    assert events.labels == ("0", "1", "2", "3", "4")
    with pytest.raises(ValueError):
        video_frame_events(3, fps=0.0)


def test_missing_time_column(tmp_path):
    path = write_table(tmp_path / "no_time.tsv", ["frame", "onset"], [(0, 0.0)])
    with pytest.raises(BrainencInputError, match="no_time.tsv.*no 'time' column"):
        read_frame_table(path)


def test_times_must_increase(tmp_path):
    path = write_table(tmp_path / "back.tsv", ["time"], [(0.0,), (0.5,), (0.5,), (1.0,)])
    with pytest.raises(BrainencInputError, match="back.tsv.*must increase: line 4"):
        read_frame_table(path)


def test_nan_and_text_times(tmp_path):
    nan_path = write_table(tmp_path / "nan.tsv", ["time"], [(0.0,), ("n/a",)])
    with pytest.raises(BrainencInputError, match="nan.tsv.*line 3"):
        read_frame_table(nan_path)
    text_path = write_table(tmp_path / "text.tsv", ["time"], [("zero",)])
    with pytest.raises(BrainencInputError, match="text.tsv.*not a number"):
        read_frame_table(text_path)
    with pytest.raises(BrainencInputError, match="gone.tsv.*not found"):
        read_frame_table(tmp_path / "gone.tsv")

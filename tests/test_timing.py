"""TR grids and frame clocks."""
from __future__ import annotations

import numpy as np
import pytest

from brainenc.timing import StimulusEvents, TRGrid, frame_times, huth_story_grid


def test_regular_grid_from_tr_count_and_offset():
    grid = TRGrid.from_tr(1.5, 4, offset=-2.0)
    np.testing.assert_array_equal(grid.times, [-2.0, -0.5, 1.0, 2.5])
    assert len(grid) == 4 and grid.tr == 1.5
    trimmed = grid.trimmed(1, 2)
    np.testing.assert_array_equal(trimmed.times, [-0.5])


def test_grid_from_triggers_uses_median_interval():
    triggers = [0.0, 2.0, 4.01, 5.99, 8.0]
    grid = TRGrid.from_triggers(triggers)
    np.testing.assert_array_equal(grid.times, triggers)
    assert grid.tr == pytest.approx(np.median([2.0, 2.01, 1.98, 2.01]))
    with pytest.raises(ValueError, match="increasing"):
        TRGrid.from_triggers([0.0, 2.0, 1.0])


def test_huth_story_grid_places_tr_centres_on_the_audio_clock():
    grid = huth_story_grid(30)
    assert len(grid) == 25
    # volume k at 2k - 10 + 1 seconds: audio starts 10 s into the scan
    np.testing.assert_allclose(grid.times[:3], [-9.0, -7.0, -5.0])
    np.testing.assert_allclose(grid.times[-1], 2.0 * 24 - 9.0)
    with pytest.raises(ValueError):
        huth_story_grid(5)


def test_frame_times_and_events():
    np.testing.assert_allclose(frame_times(4, 15.0, start=1.0), 1.0 + np.arange(4) / 15.0)
    with pytest.raises(ValueError):
        frame_times(3, 0.0)
    events = StimulusEvents(np.array([0.5, 1.0]), ("a", "b"))
    assert len(events) == 2
    with pytest.raises(ValueError):
        StimulusEvents(np.array([0.5]), ("a", "b"))

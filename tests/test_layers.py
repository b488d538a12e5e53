"""Layer sweeps: finding the layer where the simulation put each kind of signal."""
from __future__ import annotations

import warnings

import numpy as np
import pytest

from brainenc.analyses.layers import LayerSweep, find_layer_spaces, layer_number, summarise_layers, sweep_layers
from brainenc.errors import BrainencInputError
from brainenc.io.layouts import load_dataset
from brainenc.simulate import load_ground_truth, simulate_dataset
from brainenc.simulate.layers import layer_gains, write_layer_features
from tests.test_plotting import make_result

CONCEPT_PEAK, SPECIFIC_PEAK, N_LAYERS = 2, 0, 4


def test_layer_names_are_found_and_ordered_by_number(tmp_path):
    for name in ("m_cross10", "m_cross2", "m_cross1", "other_3", "m_crossx"):
        (tmp_path / name).mkdir()
    (tmp_path / "m_cross10.txt").write_text("not a space")
    assert find_layer_spaces(tmp_path, "m_cross[0-9]*") == ["m_cross1", "m_cross2", "m_cross10"]
    assert layer_number("bridgetower-base_tower12") == 12 and layer_number("plain") is None
    with pytest.raises(BrainencInputError, match="layer number"):
        find_layer_spaces(tmp_path, "m_cross*")
    with pytest.raises(BrainencInputError, match="at least 2"):
        find_layer_spaces(tmp_path, "other_*")


def test_summaries_follow_the_per_layer_results(tmp_path):
    results = [make_result(60, feature_space=f"m_layer{k}", seed=k) for k in range(3)]
    sweep = summarise_layers(results)
    for d in results[0].r:
        r = np.stack([res.r[d] for res in results])
        np.testing.assert_allclose(sweep.mean_r[d], np.nanmean(r, axis=1))
        maps = np.stack([res.significant[d] for res in results]) & np.isfinite(r)
        np.testing.assert_array_equal(sweep.n_map[d], maps.sum(axis=1))
        candidates = np.where(maps, r, -np.inf)
        held = maps.any(axis=0)
        np.testing.assert_array_equal(sweep.best_layer[d][held], np.argmax(candidates, axis=0)[held])
        assert np.isnan(sweep.best_layer[d][~held]).all()
    back = LayerSweep.load(sweep.save(tmp_path / "sweep.npz"))
    assert back.layers == sweep.layers
    np.testing.assert_array_equal(back.best_layer["story_to_movie"], sweep.best_layer["story_to_movie"])


def test_gain_profiles_peak_where_asked():
    gains = layer_gains(6, 2, 1.0)
    assert np.argmax(gains) == 2 and gains[2] == 1.0 and gains[0] == pytest.approx(np.exp(-2))


@pytest.mark.slow
def test_a_sweep_finds_the_layer_where_the_signal_is(tmp_path):
    root = tmp_path / "sim"
    simulate_dataset(root, seed=4, n_stories=4, n_movies=4, n_trs_per_run=(200, 250))
    write_layer_features(root, n_layers=N_LAYERS, concept_peak=CONCEPT_PEAK, specific_peak=SPECIFIC_PEAK)
    truth = load_ground_truth(root)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        data = load_dataset(root)
        layers = find_layer_spaces(data.feature_root, "layers_*")
        results, sweep = sweep_layers(data, "sim01", layers, progress=False)
    assert sweep.layers == [f"layers_{k}" for k in range(N_LAYERS)]
    # mean r over the planted vertices peaks at the planted layer, in every direction that has signal
    checks = (("story_to_story", "language", SPECIFIC_PEAK), ("movie_to_movie", "vision", SPECIFIC_PEAK),
              ("story_to_story", "shared", CONCEPT_PEAK), ("movie_to_movie", "shared", CONCEPT_PEAK),
              ("story_to_movie", "shared", CONCEPT_PEAK), ("movie_to_story", "shared", CONCEPT_PEAK))
    for direction, category, peak in checks:
        members = truth.mask(category)
        curve = [np.nanmean(result.r[direction][members]) for result in results]
        assert int(np.argmax(curve)) == peak, (direction, category, np.round(curve, 3))
    # the best-layer map, where a layer is significant, names the planted layer (or a neighbour);
    for direction, category, peak in checks:
        best = sweep.best_layer[direction][truth.mask(category)]
        best = best[np.isfinite(best)]
        assert len(best) >= 10 and np.mean(np.abs(best - peak) <= 1) > 0.8, (direction, category)
    # cross-modal transfer exists only where the concept information is
    assert sweep.n_map["story_to_movie"][CONCEPT_PEAK] > 0 == sweep.n_map["story_to_movie"][0]

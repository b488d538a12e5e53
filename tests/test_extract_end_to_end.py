"""Simulated dataset → brainenc extract (tiny local BridgeTower) → brainenc transfer."""
from __future__ import annotations

import json

import numpy as np
import pytest

from brainenc.cli import main
from brainenc.io.features import FeatureSpace
from brainenc.io.layouts import load_dataset
from brainenc.simulate import VOCABULARY, simulate_dataset
from tests.tiny_models import save_tiny_bridgetower

pytestmark = pytest.mark.slow


def test_extract_then_transfer_on_a_simulated_subject(tmp_path, capsys):
    info = simulate_dataset(tmp_path / "dataset", layout="huth", n_stories=3, n_movies=3,
                            n_trs_per_run=40, seed=3, movie_format="video", video_fps=5.0)
    sentences = [" ".join(VOCABULARY[k:k + 12]) for k in range(0, len(VOCABULARY), 12)]
    model = save_tiny_bridgetower(tmp_path / "BridgeTower-Tiny", sentences)

    args = ["extract", "--dataset", str(info.root), "--model", str(model), "--layers", "-1",
            "--fps", "1", "--device", "cpu", "--quiet"]
    assert main(args) == 0
    space = info.root / "features" / "bridgetower-tiny_tower2"
    data = load_dataset(info.root)
    for run in data.runs_for(info.subject):
        features = FeatureSpace(space).load(run.stimulus)
        assert features.data.shape[1] == 64
        assert features.attrs["layer"] == ("text.2" if run.modality == "story" else "vision.2")
        assert not features.attrs["aligned_pair"]
        assert features.attrs["pair"].startswith("unaligned: separate encoders")
        if run.modality == "movie":  # sampled at --fps 1
            np.testing.assert_allclose(np.diff(features.times), 1.0)
    assert "6 feature files written, 0 already cached" in capsys.readouterr().out

    # a second run finds everything cached
    assert main(args) == 0
    assert "0 feature files written, 6 already cached" in capsys.readouterr().out

    out = tmp_path / "results"
    assert main(["transfer", "--dataset", str(info.root), "--subject", info.subject,
                 "--features", "bridgetower-tiny_tower2", "--out", str(out),
                 "--quiet"]) == 0
    scores = np.load(out / "scores.npz")
    assert scores["r/story_to_movie"].shape == (20484,)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["results"][0]["feature_space"] == "bridgetower-tiny_tower2"
    assert summary["results"][0]["pair_note"] == "unaligned baseline"
    assert summary["results"][0]["settings"]["aligned_pair"] is False
    assert (out / "report.html").is_file()

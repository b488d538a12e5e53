"""Within-modality encoding (``brainenc encode``) on story-only data in the ds003020 layout.

The reference is ``transfer`` on the same subject with its movie runs present:
the story → story direction of both must be the same numbers, because the
story models, their split and their tests do not depend on the movies.
"""
from __future__ import annotations

import json
import shutil
import warnings
from dataclasses import asdict
from pathlib import Path

import h5py
import numpy as np
import pytest

from brainenc.cli import main
from brainenc.io.layouts import load_dataset
from brainenc.results import TransferResult
from brainenc.transfer import run_encoding, run_transfer
from safety import assert_refused, tree_state

N_VOXELS = 300


def _keep_columns(path: Path, columns: np.ndarray) -> None:
    with h5py.File(path, "r") as f:
        data = f["data"][()][:, columns]
    with h5py.File(path, "w") as f:
        f.create_dataset("data", data=data)


def _rename_story(derivative: Path, root: Path, old: str, new: str) -> None:
    respdict = json.loads((derivative / "respdict.json").read_text())
    respdict[new] = respdict.pop(old)
    (derivative / "respdict.json").write_text(json.dumps(respdict))
    for path in [*derivative.rglob(f"{old}.*"), *(root / "features").rglob(f"{old}.*")]:
        path.rename(path.with_name(path.name.replace(old, new)))


@pytest.fixture(scope="module")
def huth_pair(tmp_path_factory) -> tuple[Path, Path]:
    """A Huth-layout subject with stories and movies, and its copy without movies (the
    layout of ds003020 as downloaded): 300 voxels, half of them in regions with a planted
    response, the fourth story named wheretheressmoke."""
    from brainenc.simulate import load_ground_truth, simulate_dataset

    base = tmp_path_factory.mktemp("encode")
    full = base / "with_movies"
    simulate_dataset(full, layout="huth", n_stories=4, n_movies=3, seed=3)
    derivative = full / "derivative"
    category = load_ground_truth(full).category
    columns = np.sort(np.concatenate([np.flatnonzero(category != 0)[:N_VOXELS // 2],
                                      np.flatnonzero(category == 0)[:N_VOXELS // 2]]))
    for path in (derivative / "preprocessed_data").rglob("*.hf5"):
        _keep_columns(path, columns)
    config = json.loads((derivative / "brainenc.json").read_text())
    config["space"] = "unknown"
    (derivative / "brainenc.json").write_text(json.dumps(config))
    _rename_story(derivative, full, "story04", "wheretheressmoke")

    stories = base / "stories_only"
    shutil.copytree(full, stories)
    for path in (stories / "derivative" / "preprocessed_data").rglob("movie*.hf5"):
        path.unlink()
    (stories / "derivative" / "brainenc.json").write_text(json.dumps({"space": "unknown"}))
    return full, stories


def _quietly(function, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return function(*args, **kwargs)


def _assert_same_direction(one: TransferResult, full: TransferResult, direction: str) -> None:
    modality = direction.split("_to_")[0]
    for quantity in ("r", "r2", "z", "pvalues", "significant"):
        np.testing.assert_array_equal(getattr(one, quantity)[direction],
                                      getattr(full, quantity)[direction], err_msg=quantity)
    np.testing.assert_array_equal(one.alphas[modality], full.alphas[modality])
    np.testing.assert_equal(asdict(one.summary(direction)), asdict(full.summary(direction)))


def test_default_test_story_is_wheretheressmoke(huth_pair):
    full, stories = huth_pair
    data = load_dataset(stories)
    assert data.default_test_runs("sim01") == {"story": ["wheretheressmoke"]}
    result = _quietly(run_encoding, data, "sim01", "multimodal", "story", progress=False)
    assert result.directions == ("story_to_story",)
    assert not result.cross_modal and result.transfer_pvalues == {}
    split = result.settings["split"]["story"]
    assert split["test_runs"] == [["wheretheressmoke"]]
    assert result.settings["modalities"] == ["story"]


@pytest.mark.parametrize("test_runs", [None, {"story": None}], ids=["wheretheressmoke", "loo"])
def test_encode_equals_the_within_direction_of_transfer(huth_pair, test_runs):
    full, stories = huth_pair
    reference = _quietly(run_transfer, load_dataset(full), "sim01", "multimodal",
                         test_runs=test_runs, progress=False)
    one = _quietly(run_encoding, load_dataset(stories), "sim01", "multimodal", "story",
                   test_runs=test_runs, progress=False)
    _assert_same_direction(one, reference, "story_to_story")
    assert np.isfinite(one.r["story_to_story"]).all()
    # the planted signal is found, so the equality is not one of empty maps
    assert one.summary("story_to_story").n_significant > 0


def test_movie_only_encoding_equals_transfer(huth_pair):
    full, _ = huth_pair
    data = load_dataset(full)
    reference = _quietly(run_transfer, data, "sim01", "multimodal", progress=False)
    one = _quietly(run_encoding, data, "sim01", "multimodal", "movie", progress=False)
    _assert_same_direction(one, reference, "movie_to_movie")


def test_transfer_on_story_only_data_points_to_encode(huth_pair, tmp_path, capsys):
    _, stories = huth_pair
    before = tree_state(stories)
    code = main(["transfer", "--dataset", str(stories), "--subject", "sim01",
                 "--features", "multimodal", "--out", str(tmp_path / "out"), "--quiet"])
    assert_refused(capsys, code, "has no movie runs", "brainenc encode --modality story")
    assert not (tmp_path / "out").exists()
    assert tree_state(stories) == before


def test_encode_command_writes_the_outputs_of_one_direction(huth_pair, tmp_path, capsys):
    _, stories = huth_pair
    out = tmp_path / "encoded"
    code = _quietly(main, ["encode", "--dataset", str(stories), "--subject", "sim01",
                           "--features", "multimodal", "--out", str(out), "--quiet"])
    printed = capsys.readouterr().out
    assert code == 0, printed
    assert "story_to_story" in printed and "movie" not in printed.split("voxels)")[1]
    result = TransferResult.load(out / "scores.npz")
    assert result.directions == ("story_to_story",)
    summary = json.loads((out / "summary.json").read_text())
    assert list(summary["results"][0]["directions"]) == ["story_to_story"]
    assert summary["results"][0]["transfer"] == {}
    assert (out / "report.html").is_file() and (out / "weights.h5").is_file()
    figures = sorted(p.name for p in (out / "figures").iterdir())
    assert figures == ["sim01_multimodal_histograms.png"]   # space unknown: no cortical map
    weights = result.weights()
    assert weights.modalities == ("story",)
    assert weights.weights("story").shape[2] == N_VOXELS


def test_encode_refuses_test_runs_of_the_other_modality(huth_pair, tmp_path, capsys):
    full, _ = huth_pair
    code = main(["encode", "--dataset", str(full), "--subject", "sim01", "--features",
                 "multimodal", "--modality", "movie", "--test-runs", "story01",
                 "--out", str(tmp_path / "out"), "--quiet"])
    assert_refused(capsys, code, "story01", "not found")
    assert not (tmp_path / "out").exists()

"""The optional analyses of ``brainenc transfer``, ``brainenc layers`` and ``brainenc partition``
end to end: refused before anything is computed when they cannot run, and, when they run,
files, summary entries and report sections that agree with the analyses' own functions."""
from __future__ import annotations

import csv
import json
import re
import warnings
from pathlib import Path

import numpy as np
import pytest

from brainenc.analyses.ceilings import noise_ceiling
from brainenc.analyses.comparison import ModelComparison
from brainenc.analyses.dimensions import SharedDimensions
from brainenc.analyses.layers import LayerSweep
from brainenc.analyses.partition import PartitionResult
from brainenc.analysis_outputs import NORMALISE_MIN_EV
from brainenc.cli import main
from brainenc.io.layouts import load_dataset
from brainenc.results import DIRECTIONS, TransferResult
from brainenc.simulate import simulate_dataset
from brainenc.simulate.layers import write_layer_features
from tests.safety import assert_refused, tree_state
from tests.test_partition import GROUPS, make_two_space_dataset
from tests.test_rois import write_label_gii

SMALL = {"n_trs_per_run": (150, 180), "snr": (0.3, 1.0)}
REPEATED = ["task-story04_run-1", "task-story04_run-2"]


@pytest.fixture(scope="module")
def repeated_dataset(tmp_path_factory) -> Path:
    """A BIDS subject whose last story is presented twice."""
    root = tmp_path_factory.mktemp("analyses") / "sim"
    simulate_dataset(root, layout="bids", n_stories=4, n_movies=3, story_repeats=2, seed=3, **SMALL)
    return root


def _transfer(dataset: Path, out: Path, *extra: str) -> int:
    return main(["transfer", "--dataset", str(dataset), "--subject", "sim01", "--features",
                 "multimodal", "unimodal", "--out", str(out), "--quiet", *extra])


@pytest.mark.parametrize("extra, fragments", [
    (["--compare", "multimodal:other"], ["--compare multimodal:other names other"]),
    (["--compare", "multimodal"], ["pairs A:B"]),
    (["--compare", "multimodal:multimodal"], ["with itself"]),
    (["--dimensions", "--no-significance"], ["--no-significance"]),
    (["--dimensions", "--n-permutations", "5"], ["at least 19"]),
    (["--n-permutations", "50"], ["no effect without it"]),
    (["--compare", "multimodal:unimodal", "unimodal:multimodal"], ["twice"]),
    (["--roi-labels", "EMPTY"], ["no voxel carries a label"]),
    (["--roi-labels", "missing.label.gii", "other.label.gii"], ["missing.label.gii", "no such file"]),
    ([], ["leave-one-run-out", "--test-story " + " ".join(REPEATED)]),
    (["--test-story", REPEATED[0]], ["only " + REPEATED[0], "--test-story"]),
])
def test_impossible_requests_are_refused_before_anything_is_written(repeated_dataset, tmp_path, capsys,
                                                                    extra, fragments):
    if extra[:1] != ["--test-story"] and extra:
        extra = [*extra, "--test-story", *REPEATED]
    if "EMPTY" in extra:  # label files where every vertex is 0, unlabelled
        empty = [write_label_gii(tmp_path / f"{hemi}.empty.label.gii", np.zeros(10242, int), {0: "unknown"})
                 for hemi in ("lh", "rh")]
        extra = [*extra[:extra.index("EMPTY")], *map(str, empty), *extra[extra.index("EMPTY") + 1:]]
    before = tree_state(repeated_dataset)
    assert_refused(capsys, _transfer(repeated_dataset, tmp_path / "out", *extra), *fragments)
    assert not (tmp_path / "out").exists()
    assert tree_state(repeated_dataset) == before


@pytest.mark.slow
def test_transfer_writes_every_requested_analysis(repeated_dataset, tmp_path):
    out = tmp_path / "out"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        code = _transfer(repeated_dataset, out, "--test-story", *REPEATED, "--compare",
                         "multimodal:unimodal", "--dimensions", "--n-permutations", "19",
                         "--roi-labels", str(repeated_dataset / "ground_truth.npz"))
    assert code == 0
    summary = json.loads((out / "summary.json").read_text())
    results = {name: TransferResult.load(out / name / "scores.npz") for name in ("multimodal", "unimodal")}
    # the comparison's file and its summary agree, and the difference is that of the two results
    comparison = ModelComparison.load(out / "comparisons" / "multimodal_vs_unimodal.npz")
    for direction in DIRECTIONS:
        np.testing.assert_allclose(comparison.delta_r[direction],
                                   results["multimodal"].r[direction] - results["unimodal"].r[direction])
        entry = summary["comparisons"][0]["directions"][direction]
        assert entry["n_a_better"] == int(comparison.a_better[direction].sum())
    # dimensions of each space, beside its scores
    for name in results:
        dims = SharedDimensions.load(out / name / "dimensions.npz")
        assert summary["dimensions"][name]["n_shared"] == len(dims.shared)
        assert dims.null_angles.shape[0] == 19
    # the ceiling is the one computed directly, and the normalised r its ratio
    direct = noise_ceiling(load_dataset(repeated_dataset), "sim01", "story")
    with np.load(out / "noise_ceilings.npz") as stored:
        np.testing.assert_allclose(stored["story/ev_corrected"], direct.ev_corrected)
        assert "movie/ev" not in stored.files
        normalised = stored["multimodal/story_to_story/r_normalised"]
    kept = direct.ev_corrected > NORMALISE_MIN_EV
    np.testing.assert_allclose(normalised[kept],
                               results["multimodal"].r["story_to_story"][kept] / np.sqrt(direct.ev_corrected[kept]))
    assert np.isnan(normalised[~kept]).all()
    assert summary["noise_ceilings"]["story"]["runs"] == [REPEATED]
    # one ROI row per space, region and direction, in the table and the summary
    with open(out / "rois.tsv", encoding="utf-8") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    n_rows = len(summary["rois"]["multimodal"]["rows"])
    assert len(rows) == 2 * n_rows and n_rows % len(DIRECTIONS) == 0
    # every section is in the report, with its figures
    report = (out / "report.html").read_text(encoding="utf-8")
    for anchor in ("comparisons-sim01", "dimensions-sim01-multimodal", "dimensions-sim01-unimodal",
                   "ceilings-sim01", "rois"):
        assert f"id='{anchor}'" in report and f"href='#{anchor}'" in report, anchor
    sources = re.findall(r"src='([^']+)'", report)
    assert any("dimensions_rgb" in src for src in sources) and any("delta_r" in src for src in sources)
    for src in sources:
        assert (out / src).stat().st_size > 5000, src


@pytest.mark.slow
def test_layers_command(tmp_path):
    root = tmp_path / "sim"
    simulate_dataset(root, n_stories=3, n_movies=3, seed=5, n_trs_per_run=(120, 150), snr=(0.3, 1.0))
    write_layer_features(root, n_layers=2, concept_peak=1, specific_peak=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        code = main(["layers", "--dataset", str(root), "--subject", "sim01", "--features", "layers_*",
                     "--out", str(tmp_path / "layers"), "--quiet", "--roi-labels",
                     str(root / "ground_truth.npz")])
    assert code == 0
    sweep = LayerSweep.load(tmp_path / "layers" / "layers.npz")
    assert sweep.layers == ["layers_0", "layers_1"]
    for k, layer in enumerate(sweep.layers):
        result = TransferResult.load(tmp_path / "layers" / layer / "scores.npz")
        assert sweep.mean_r["story_to_movie"][k] == pytest.approx(np.nanmean(result.r["story_to_movie"]))
        assert not (tmp_path / "layers" / layer / "weights.h5").exists()
    assert sweep.roi_names
    report = (tmp_path / "layers" / "report.html").read_text(encoding="utf-8")
    assert "id='layers-" in report and "best" in report
    summary = json.loads((tmp_path / "layers" / "summary.json").read_text())
    assert summary["layers"]["layers"] == sweep.layers


def test_partition_command_puts_planted_variance_in_its_space(tmp_path):
    """The partition command on the planted two-space dataset of tests/test_partition.py."""
    make_two_space_dataset(tmp_path / "ds")
    out = tmp_path / "partition"
    code = main(["partition", "--dataset", str(tmp_path / "ds"), "--subject", "s1", "--features",
                 "spaceA", "spaceB", "--out", str(out), "--quiet", "--n-iter", "8",
                 "--backend", "numpy"])
    assert code == 0
    partition = PartitionResult.load(out / "partition.npz")
    maps = partition.maps()
    np.testing.assert_allclose(maps["unique_a"] + maps["unique_b"] + maps["shared"],
                               partition.r2_joint, atol=1e-10)
    for group, largest in (("a_only", "unique_a"), ("b_only", "unique_b"), ("shared", "shared")):
        members = list(GROUPS[group])
        parts = {name: maps[name][members].mean() for name in ("unique_a", "unique_b", "shared")}
        assert max(parts, key=parts.get) == largest, (group, parts)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["spaces"] == ["spaceA", "spaceB"]
    assert summary["mean"]["unique_a"] == pytest.approx(np.nanmean(maps["unique_a"]))
    report = (out / "report.html").read_text(encoding="utf-8")
    assert "Variance partition" in report and "unique" in report

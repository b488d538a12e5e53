"""The command line: help everywhere, simulate, and clear errors."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from brainenc.cli import main


@pytest.mark.parametrize("command", [[], ["simulate"], ["transfer"], ["demo"]])
def test_help_everywhere(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(command + ["--help"])
    assert exit_info.value.code == 0
    assert "usage: brainenc" in capsys.readouterr().out


def test_console_script_entry_point():
    done = subprocess.run([sys.executable, "-m", "brainenc.cli", "--version"],
                          capture_output=True, text=True, check=True)
    assert done.stdout.startswith("brainenc ")


def test_simulate_writes_a_dataset_the_readers_discover(tmp_path):
    from brainenc.io.layouts import load_dataset

    out = tmp_path / "sim"
    assert main(["simulate", str(out), "--layout", "bids", "--n-stories", "2",
                 "--n-movies", "2", "--subject", "x1"]) == 0
    data = load_dataset(out)
    assert data.layout == "bids"
    assert [run.modality for run in data.runs_for("x1")].count("movie") == 2
    assert (out / "ground_truth.npz").is_file()
    assert {p.name for p in (out / "features").iterdir()} == {"multimodal", "unimodal"}


def test_transfer_error_names_the_file(tmp_path, capsys):
    from tests.conftest import make_manifest_dataset

    root = make_manifest_dataset(tmp_path / "ds")
    bad = np.load(root / "story1.npy")
    bad[3, 2] = np.nan
    np.save(root / "story1.npy", bad)
    code = main(["transfer", "--dataset", str(root), "--subject", "s1", "--features", "feats",
                 "--out", str(tmp_path / "out"), "--quiet"])
    assert code == 2
    err = capsys.readouterr().err
    assert "story1.npy" in err and "NaN" in err
    assert not (tmp_path / "out").exists()

"""The analysis notebooks run from top to bottom and find what the simulation planted."""
from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

pytestmark = pytest.mark.slow

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"


def execute(name: str, tmp_path: Path, monkeypatch) -> tuple[str, list]:
    """Run a notebook; return its printed text and its inline images, after checking that no
    cell failed (the notebooks' own asserts included)."""
    # the kernel inherits TMPDIR: the notebook's temporary folder (a simulated dataset and its
    # results, ~200 MB) lands in tmp_path, which pytest cleans up, not in the system's temp
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    notebook = nbformat.read(NOTEBOOKS / name, as_version=4)
    client = NotebookClient(notebook, timeout=900, kernel_name="python3",
                            resources={"metadata": {"path": str(tmp_path)}})
    client.execute()
    outputs = [out for cell in notebook.cells if cell.cell_type == "code" for out in cell.outputs]
    errors = [f"{out.ename}: {out.evalue}" for out in outputs if out.output_type == "error"]
    assert not errors
    text = "".join(out.get("text", "") for out in outputs
                   if out.output_type == "stream" and out.name == "stdout")
    images = [out for out in outputs if "image/png" in out.get("data", {})]
    return text, images


def test_maps_and_shared_dimensions_notebook(tmp_path, monkeypatch):
    text, images = execute("maps_and_shared_dimensions.ipynb", tmp_path, monkeypatch)
    assert "weights.h5" in text and "transfer map" in text
    # the ROI tables name the simulated regions
    assert "shared R 1" in text and "vision L 2" in text
    # the recovered shared dimensions lie near the planted concept subspace; the baseline has none
    angle = re.search(r"largest angle to the planted concept subspace: ([\d.]+)° \(bound ([\d.]+)°\)", text)
    assert angle and float(angle[1]) < float(angle[2])
    assert "shared dimensions of the unimodal baseline: 0" in text
    assert "story words, top:" in text and "movie moments, top:" in text
    assert "dimensions.npz" in text
    # two transfer maps, two angle figures, two loading maps
    assert len(images) >= 6


def test_models_and_layers_notebook(tmp_path, monkeypatch):
    text, images = execute("models_and_layers.ipynb", tmp_path, monkeypatch)
    # the multimodal space wins across modalities, at vertices with a shared component
    wins = re.findall(r"multimodal better at (\d+) vertices, (\d+) of them with a shared component", text)
    assert len(wins) == 2
    assert all(int(n) > 50 and int(shared) >= 0.95 * int(n) for n, shared in wins)
    # every category's curve peaks at the planted layer, the concept's at layer 2
    peaks = re.findall(r"peak at layer (\d+) \(planted: (\d+)\)", text)
    assert len(peaks) == 6 and all(found == planted for found, planted in peaks)
    assert ("2", "2") in peaks and ("0", "0") in peaks
    assert "unique layers_0" in text and "partition.npz" in text
    # Δr and ground-truth maps, two layer-curve figures, two best-layer maps,
    # the partition summary and three partition maps
    assert len(images) >= 10

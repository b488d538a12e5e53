"""The documentation builds without a warning: guides (docs/*.md) and the API reference."""
import subprocess
import sys
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parents[1] / "docs"


@pytest.mark.slow
def test_docs_build_without_warnings(tmp_path):
    out = tmp_path / "html"
    build = subprocess.run(
        [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html",
         "-d", str(tmp_path / "doctrees"), str(DOCS), str(out)],
        capture_output=True, text=True, timeout=600,
    )
    assert build.returncode == 0, f"sphinx-build failed:\n{build.stdout}\n{build.stderr}"

    guides = sorted(path.stem for path in DOCS.glob("*.md") if path.stem != "index")
    assert guides, "no guides found in docs/"
    for guide in guides:
        assert (out / f"{guide}.html").is_file(), f"guide {guide}.md was not built"

    api = (out / "api.html").read_text(encoding="utf-8")
    for name in ("VoxelwiseRidge", "run_transfer", "load_dataset", "TransferResult"):
        assert name in api, f"{name} missing from the API page"
    encoding = (out / "api" / "encoding.html").read_text(encoding="utf-8")
    assert "best_alphas_" in encoding, "VoxelwiseRidge's docstring is not rendered"
    transfer = (out / "api" / "transfer.html").read_text(encoding="utf-8")
    assert 'id="brainenc.transfer.run.run_transfer"' in transfer

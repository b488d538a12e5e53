"""The report's interactive viewer opens offline in headless Chromium and draws the cortex."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import matplotlib.image as mpimg
import numpy as np
import pytest

from brainenc.plotting.report import write_report
from test_maps import _result


def _chromium() -> str | None:
    found = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if found is None and os.environ.get("BRAINENC_REQUIRE_BROWSER"):
        pytest.fail("BRAINENC_REQUIRE_BROWSER is set but no Chromium is installed")
    return found


def _open_offline(browser: str, page: Path, screenshot: Path) -> str:
    """Load ``page`` with every host name unresolvable; the browser's log (with the page's
    console messages)."""
    command = [browser, "--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
               "--host-resolver-rules=MAP * ~NOTFOUND", "--enable-unsafe-swiftshader",
               "--use-angle=swiftshader", "--window-size=900,700", "--virtual-time-budget=10000",
               "--enable-logging=stderr", "--v=0", f"--screenshot={screenshot}", page.as_uri()]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stderr


@pytest.mark.slow
def test_report_viewer_opens_offline_in_headless_chromium(tmp_path):
    browser = _chromium()
    if browser is None:
        pytest.skip("Chromium is not installed (apt-get install chromium)")
    from nilearn import datasets

    result = _result(20484, "fsaverage5")
    # a planted frontal patch of the left hemisphere, the only significant vertices: the
    # viewer must show it in colour on the grey cortex
    left = np.asarray(datasets.load_fsaverage("fsaverage5")["inflated"].parts["left"].coordinates)
    patch = np.flatnonzero(left[:, 1] > 10)
    for masks in (result.significant, result.transfer_significant):
        for mask in masks.values():
            mask[:] = False
    result.r["story_to_story"][patch] = 0.6
    result.significant["story_to_story"][patch] = True
    report = write_report([result], tmp_path / "report", dpi=40)
    html = report.read_text(encoding="utf-8")
    viewers = re.findall(r"<iframe src='([^']+)'", html)
    # one viewer per map that shows something: story → story only
    assert viewers == ["figures/01_feats_viewer_story_to_story.html"]
    page = report.parent / viewers[0]
    assert "raw.githubusercontent" not in page.read_text(encoding="utf-8")

    log = _open_offline(browser, page, tmp_path / "viewer.png")
    console = [line for line in log.splitlines() if "CONSOLE" in line]
    assert any("NIIVUE VERSION" in line for line in console), log[-2000:]    # the library ran
    assert not [line for line in console if "Uncaught" in line or "ERR_" in line], console
    assert "ERR_NAME_NOT_RESOLVED" not in log                               # nothing fetched

    image = mpimg.imread(tmp_path / "viewer.png")[..., :3]
    centre = image[150:550, 150:750]
    grey = np.abs(centre - centre.mean(axis=2, keepdims=True)).max(axis=2) < 0.03
    drawn_grey = grey & (centre.mean(axis=2) < 0.95)
    red = (centre[..., 0] > centre[..., 1] + 0.2) & (centre[..., 0] > centre[..., 2] + 0.15)
    assert drawn_grey.mean() > 0.2, "no cortex drawn"
    assert red.mean() > 0.1, "the planted positive patch is not shown"

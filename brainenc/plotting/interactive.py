"""Interactive cortical maps: nilearn's NiiVue viewer, as an HTML page that works offline.

:func:`nilearn.plotting.view_surf` with ``engine="niivue"`` writes a page that
holds the NiiVue library, the fsaverage5 inflated meshes, the sulcal depth and
the map itself, so the page needs no network and no server: it opens from the
file system in any browser with WebGL. Two details of nilearn's page are
mended: its one outside reference, a favicon link, is removed, and its script
that marks the view menu "custom" after a drag, which runs before the canvas
exists (an uncaught error in the console), runs once the page has loaded.
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from brainenc.io.atomic import atomic_path
from brainenc.plotting.surface import N_VERTICES_PER_HEMISPHERE, check_fsaverage5

_FAVICON = re.compile(r"<link\s+rel=\"icon\"[^>]*>", re.IGNORECASE | re.DOTALL)
_EARLY_LISTENER = 'document.getElementById("gl").addEventListener("mouseup", () => {'
_LOADED_LISTENER = ('window.addEventListener("load", () => document.getElementById("gl")'
                    '.addEventListener("mouseup", () => {')


def surface_viewer_html(values: np.ndarray, title: str, vmax: float | None = None,
                        cmap: str = "RdBu_r") -> str:
    """The HTML page of an interactive fsaverage5 map of ``values`` (both hemispheres).

    Parameters
    ----------
    values : ndarray of shape (20484,)
        Left hemisphere then right; NaN vertices show the sulcal background
        (at least one must be finite).
    title : str
    vmax : float, optional
        The colour scale runs from ``-vmax`` to ``vmax`` (default: the largest
        absolute value).
    cmap : str
        A diverging matplotlib colour map (white zero by default).

    Returns
    -------
    str
        A standalone HTML document.
    """
    from nilearn import datasets, plotting
    from nilearn.surface import SurfaceImage

    values = check_fsaverage5(values)
    shown = np.isfinite(values)
    if not shown.any():
        raise ValueError("every value is NaN: an interactive map needs at least one vertex to show")
    data = np.where(shown, values, 0.0)
    if vmax is None:
        vmax = float(np.abs(data).max()) or 1.0
    fsaverage = datasets.load_fsaverage("fsaverage5")
    sulcal = datasets.load_fsaverage_data(mesh="fsaverage5", mesh_type="inflated", data_type="sulcal")
    image = SurfaceImage(mesh=fsaverage["inflated"],
                         data={"left": data[:N_VERTICES_PER_HEMISPHERE],
                               "right": data[N_VERTICES_PER_HEMISPHERE:]})
    # vertices left out (NaN) are 0 here and fall below the threshold: they show the background
    threshold = float(np.abs(values[shown]).min()) / 2
    view = plotting.view_surf(surf_map=image, bg_map=sulcal, hemi="both", engine="niivue",
                              cmap=cmap, symmetric_cmap=True, vmax=vmax,
                              threshold=max(threshold, 1e-12), title=title)
    return _mend(view.get_standalone())


def _mend(page: str) -> str:
    """nilearn's page without its favicon link, its drag listener attached once loaded."""
    page = _FAVICON.sub("", page)
    start = page.find(_EARLY_LISTENER)
    if start >= 0:
        end = page.find("});", start)
        page = (page[:start] + _LOADED_LISTENER + page[start + len(_EARLY_LISTENER):end]
                + "}));" + page[end + 3:])
    return page


def write_surface_viewer(values: np.ndarray, path: str | Path, title: str,
                         vmax: float | None = None) -> Path:
    """Write :func:`surface_viewer_html` to ``path`` (through a temporary name)."""
    path = Path(path)
    page = surface_viewer_html(values, title, vmax)
    with atomic_path(path) as tmp:
        Path(tmp).write_text(page, encoding="utf-8")
    return path

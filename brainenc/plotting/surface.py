"""Cortical maps on the fsaverage5 surface (one, two or three values per vertex), and the
projection of an analysis's voxels onto it.

Per-vertex arrays hold the left hemisphere then the right one (10 242 vertices
each, 20 484 in all), the order of fMRIPrep's fsaverage5 outputs. The meshes
and the sulcal-depth background ship with nilearn, so nothing is downloaded.

Figures are built as :class:`matplotlib.figure.Figure` objects with an Agg
canvas, independent of pyplot and of any interactive backend. Each panel is an
orthographic view of one hemisphere's mesh, drawn as 2-D triangles (the faces
turned toward the viewer, far to near), coloured per face.
"""
from __future__ import annotations

import functools
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Colormap, ListedColormap, Normalize
from matplotlib.figure import Figure

from brainenc.errors import BrainencInputError

N_VERTICES_PER_HEMISPHERE: int = 10_242
N_VERTICES: int = 2 * N_VERTICES_PER_HEMISPHERE
HEMISPHERES: tuple[str, ...] = ("left", "right")
#: Panels of every cortical map: (hemisphere, view), laid out row by row in a 2 × 2 grid.
PANELS: tuple[tuple[str, str], ...] = (
    ("left", "lateral"),
    ("right", "lateral"),
    ("left", "medial"),
    ("right", "medial"),
)
#: Panels of a flat map: nilearn's flattened fsaverage5 hemispheres (the cut medial wall left out).
FLAT_PANELS: tuple[tuple[str, str], ...] = (("left", "flat"), ("right", "flat"))
MESHES: tuple[str, ...] = ("inflated", "pial", "white_matter", "sphere", "flat")

#: Corner colours of the 2-D transfer colour map at (x, y) = (0, 0), (1, 0), (0, 1), (1, 1):
#: neither direction, story → movie only, movie → story only, both.
BIVARIATE_CORNERS: np.ndarray = np.array(
    [
        [0.88, 0.88, 0.85],
        [0.90, 0.30, 0.05],
        [0.10, 0.45, 0.90],
        [0.45, 0.05, 0.50],
    ]
)


@functools.lru_cache(maxsize=1)
def _fsaverage5():
    from nilearn import datasets

    return datasets.load_fsaverage("fsaverage5")


@functools.lru_cache(maxsize=len(MESHES))
def _sulcal_depth(mesh: str) -> dict[str, np.ndarray]:
    from nilearn import datasets

    # sulcal depth is a value per vertex, the same on every mesh of fsaverage5
    mesh_type = "inflated" if mesh == "flat" else mesh
    image = datasets.load_fsaverage_data(mesh="fsaverage5", mesh_type=mesh_type, data_type="sulcal")
    return {hemi: np.asarray(image.data.parts[hemi], dtype=float) for hemi in HEMISPHERES}


def _mesh(mesh: str, hemi: str):
    if mesh not in MESHES:
        raise ValueError(f"unknown mesh {mesh!r}; expected one of {MESHES}")
    return _fsaverage5()[mesh].parts[hemi]


def check_fsaverage5(values: np.ndarray, name: str = "values") -> np.ndarray:
    """Return ``values`` as a float array after checking it has one value per fsaverage5 vertex.

    Raises
    ------
    BrainencInputError
        If the length is not 20 484 (10 242 per hemisphere, left then right).
    """
    values = np.asarray(values, dtype=float)
    if values.shape != (N_VERTICES,):
        raise BrainencInputError(
            None,
            f"{name} has shape {values.shape}; an fsaverage5 map needs {N_VERTICES} values "
            f"({N_VERTICES_PER_HEMISPHERE} per hemisphere, left then right)",
        )
    return values


def _split(values: np.ndarray) -> dict[str, np.ndarray]:
    return {"left": values[:N_VERTICES_PER_HEMISPHERE], "right": values[N_VERTICES_PER_HEMISPHERE:]}


def _resolve_cmap(cmap: str | Colormap) -> Colormap:
    if isinstance(cmap, Colormap):
        return cmap
    from nilearn.plotting import cm as nilearn_cm

    named = getattr(nilearn_cm, cmap, None)
    return named if isinstance(named, Colormap) else matplotlib.colormaps[cmap]


def _new_figure(width: float, height: float) -> Figure:
    figure = Figure(figsize=(width, height))
    FigureCanvasAgg(figure)
    return figure


def _surface_axes(figure: Figure, right_margin: float, top: float,
                  panels: Sequence[tuple[str, str]] = PANELS) -> list:
    """One axes per panel, two per row (:data:`PANELS`: a 2 × 2 grid; :data:`FLAT_PANELS`:
    one row), leaving room on the right."""
    n_rows = (len(panels) + 1) // 2
    width = (1.0 - right_margin) / 2
    height = top / n_rows
    axes = []
    for index in range(len(panels)):
        row, col = divmod(index, 2)
        rect = (col * width, top - (row + 1) * height, width, height)
        ax = figure.add_axes(rect)
        ax.set_axis_off()
        ax.set_aspect("equal")
        axes.append(ax)
    return axes


@functools.lru_cache(maxsize=4 * len(MESHES))
def _projected_faces(mesh: str, hemi: str, view: str) -> tuple[np.ndarray, np.ndarray]:
    """The faces of one hemisphere seen from one side, in the order to paint them.

    ``view="flat"`` (with the ``flat`` mesh) draws every face of the flattened
    hemisphere in its plane.

    An orthographic view along the x axis: a lateral view of the left hemisphere
    (and a medial one of the right) looks from −x, the others from +x; up is +z,
    and anterior points left in views from −x, right in views from +x. Only the
    faces turned toward the viewer are kept (the meshes' faces wind outward),
    painted far to near, so the near ones cover the far ones.

    Returns
    -------
    triangles : ndarray of shape (n_shown, 3, 2)
        Screen coordinates of each shown face's corners, in painting order.
    order : ndarray of shape (n_shown,)
        The face index of each painted triangle.
    """
    part = _mesh(mesh, hemi)
    coords = np.asarray(part.coordinates, dtype=float)
    faces = np.asarray(part.faces)
    if view == "flat":
        # the flat mesh lies in the x-y plane (its small z is the residue of flattening)
        order = np.argsort(coords[faces].mean(axis=1)[:, 2], kind="stable")
        return coords[:, :2][faces[order]], order
    toward_minus_x = (hemi == "left") == (view == "lateral")
    sign = -1.0 if toward_minus_x else 1.0
    screen = np.column_stack([sign * coords[:, 1], coords[:, 2]])
    corners = coords[faces]
    normal_x = np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0])[:, 0]
    facing = np.flatnonzero(sign * normal_x > 0)
    # the camera sits at sign * infinity on x: the far faces have the smallest sign * x
    order = facing[np.argsort(sign * corners[facing].mean(axis=1)[:, 0], kind="stable")]
    return screen[faces[order]], order


def _face_values(values: np.ndarray, faces: np.ndarray, avg_method: str) -> np.ndarray:
    """One value per face from its three vertices (NaN if any of them is NaN)."""
    corners = values[faces]
    if avg_method == "mean":
        return corners.mean(axis=1)
    if avg_method == "min":
        return corners.min(axis=1)
    raise ValueError(f"avg_method must be 'mean' or 'min', got {avg_method!r}")


def _background_greys(sulcal: np.ndarray) -> np.ndarray:
    """RGBA greys from sulcal depth per face: gyri light, sulci dark."""
    low, high = np.nanmin(sulcal), np.nanmax(sulcal)
    depth = (sulcal - low) / (high - low) if high > low else np.zeros_like(sulcal)
    grey = 0.9 - 0.55 * depth
    return np.column_stack([grey, grey, grey, np.ones_like(grey)])


def _paint_panels(axes, mesh: str, face_colors, panels: Sequence[tuple[str, str]] = PANELS,
                  shade: float = 0.0) -> None:
    """Paint every panel (see :data:`PANELS`): the faces turned toward the viewer, far to
    near, in the RGBA colours ``face_colors(hemi, faces)`` gives them (an array of shape
    (n_faces, 4), or NaN rows for the sulcal-depth background). ``shade`` (0–1) darkens the
    coloured faces in the sulci by up to that fraction, so that the folding stays visible
    under the data."""
    from matplotlib.collections import PolyCollection

    sulcal = _sulcal_depth(mesh)
    for ax, (hemi, view) in zip(axes, panels):
        triangles, order = _projected_faces(mesh, hemi, view)
        faces = np.asarray(_mesh(mesh, hemi).faces)[order]
        colors = face_colors(hemi, faces)
        background = ~np.isfinite(colors).all(axis=1)
        greys = _background_greys(sulcal[hemi][faces].mean(axis=1))
        colors[background] = greys[background]
        if shade:
            # greys run from 0.9 (gyri) to 0.35 (deepest sulci): darken the data alike
            depth = (0.9 - greys[~background, :1]) / 0.55
            colors[~background, :3] *= 1.0 - shade * depth
        # without antialiasing, triangles that share an edge meet without seams through
        # which farther faces could show
        collection = PolyCollection(triangles, facecolors=colors, edgecolors="none",
                                    antialiased=False)
        ax.add_collection(collection, autolim=False)
        low, high = triangles.reshape(-1, 2).min(axis=0), triangles.reshape(-1, 2).max(axis=0)
        pad = 0.02 * (high - low)
        ax.set_xlim(low[0] - pad[0], high[0] + pad[0])
        ax.set_ylim(low[1] - pad[1], high[1] + pad[1])
        ax.set_title(f"{hemi} {view}", fontsize=9)


def _draw_panels(figure, axes, values, *, cmap, vmin, vmax, threshold, mesh, avg_method,
                 panels=PANELS, shade=0.0):
    """Paint every panel: face colours from ``values`` through ``cmap``; NaN faces and
    faces below ``threshold`` show the sulcal-depth background."""
    parts = _split(values)
    norm = Normalize(vmin, vmax)

    def face_colors(hemi, faces):
        face_values = _face_values(parts[hemi], faces, avg_method)
        shown = np.isfinite(face_values)
        if threshold is not None:
            shown &= np.abs(np.where(shown, face_values, 0.0)) >= threshold
        colors = np.full((len(faces), 4), np.nan)
        colors[shown] = cmap(norm(face_values[shown]))
        return colors

    _paint_panels(axes, mesh, face_colors, panels, shade)


def plot_fsaverage5(
    values: np.ndarray,
    title: str | None = None,
    vmax: float | None = None,
    threshold: float | None = None,
    cmap: str | Colormap = "RdBu_r",
    symmetric: bool = True,
    mesh: str = "inflated",
    colorbar_label: str | None = None,
    vmin: float | None = None,
    colorbar_ticks: Sequence[float] | None = None,
    colorbar_ticklabels: Sequence[str] | None = None,
    avg_method: str = "mean",
    flat: bool = False,
) -> Figure:
    """Plot one value per fsaverage5 vertex: lateral and medial views of both hemispheres.

    Parameters
    ----------
    values : ndarray of shape (20484,)
        Left hemisphere then right. NaN vertices show the background (sulcal
        depth), e.g. to hide non-significant vertices.
    title : str, optional
    vmax : float, optional
        Upper end of the colour scale; by default the largest absolute
        (``symmetric``) or largest finite value.
    threshold : float, optional
        Vertices with ``|value| < threshold`` show the background.
    cmap : str or Colormap
        A matplotlib colour-map name, a nilearn one (``"cold_hot"``), or a
        :class:`~matplotlib.colors.Colormap`. The default ``"RdBu_r"`` is
        diverging with a white zero, so that negative values read as
        negative and small values stay visible against the grey background.
    symmetric : bool
        Colour scale from ``-vmax`` to ``vmax``; otherwise from ``vmin`` to ``vmax``.
    mesh : {"inflated", "pial", "white_matter", "sphere"}
        Ignored with ``flat``.
    colorbar_label : str, optional
    vmin : float, optional
        Lower end of a non-symmetric colour scale; by default the smallest
        finite value. Not allowed with ``symmetric``.
    colorbar_ticks, colorbar_ticklabels : sequence, optional
        Tick positions of the colour bar, and their labels (e.g. the names of
        the categories of a categorical map).
    avg_method : {"mean", "min"}
        How a face's colour comes from its three vertices. ``"min"`` keeps it
        on the value of one of them: for categorical values (codes), whose
        mean would be an unrelated code.
    flat : bool
        Draw nilearn's flattened fsaverage5 hemispheres (:data:`FLAT_PANELS`)
        instead of the four views of ``mesh``.

    Returns
    -------
    matplotlib.figure.Figure
        Four surface panels (see :data:`PANELS`), or two flat ones, and a colour bar.

    Raises
    ------
    BrainencInputError
        If ``values`` does not hold 20 484 values.
    """
    values = check_fsaverage5(values)
    finite = values[np.isfinite(values)]
    if vmax is None:
        if not finite.size:
            vmax = 1.0
        elif symmetric:
            vmax = float(np.abs(finite).max()) or 1.0
        else:
            vmax = float(finite.max())
    elif symmetric and vmax <= 0:
        raise ValueError(f"a symmetric colour scale needs vmax > 0, got {vmax}")
    if symmetric and vmin is not None:
        raise ValueError("vmin applies to a non-symmetric colour scale (symmetric=False)")
    if symmetric:
        vmin = -vmax
    elif vmin is None:
        vmin = float(finite.min()) if finite.size else vmax - 1.0
    if vmin >= vmax:  # a constant map: give the colour scale a width
        vmin = vmax - 1.0
    colormap = _resolve_cmap(cmap)

    panels = FLAT_PANELS if flat else PANELS
    figure = _new_figure(8.0, 3.8 if flat else 6.2)
    top = (0.86 if flat else 0.92) if title else 1.0
    axes = _surface_axes(figure, right_margin=0.12, top=top, panels=panels)
    _draw_panels(figure, axes, values, cmap=colormap, vmin=vmin, vmax=vmax, threshold=threshold,
                 mesh="flat" if flat else mesh, avg_method=avg_method, panels=panels)
    cax = figure.add_axes((0.86, 0.2 * top, 0.025, 0.6 * top))
    colorbar = figure.colorbar(ScalarMappable(Normalize(vmin, vmax), colormap), cax=cax)
    if colorbar_ticks is not None:
        colorbar.set_ticks(list(colorbar_ticks),
                           labels=None if colorbar_ticklabels is None else list(colorbar_ticklabels))
    if colorbar_label:
        colorbar.set_label(colorbar_label)
    if title:
        figure.suptitle(title, fontsize=12)
    return figure


# -- 2-D colour map ----------------------------------------------------------------------


def bivariate_colors(x: np.ndarray, y: np.ndarray, vmax: float) -> np.ndarray:
    """RGB colours of the 2-D transfer colour map.

    ``x`` and ``y`` are clipped to ``[0, vmax]`` (negative transfer shows as
    none) and the colour interpolates bilinearly between
    :data:`BIVARIATE_CORNERS`.

    Returns
    -------
    ndarray of shape (..., 3)
    """
    u = np.clip(np.asarray(x, dtype=float) / vmax, 0.0, 1.0)[..., None]
    v = np.clip(np.asarray(y, dtype=float) / vmax, 0.0, 1.0)[..., None]
    c00, c10, c01, c11 = BIVARIATE_CORNERS
    return (1 - u) * (1 - v) * c00 + u * (1 - v) * c10 + (1 - u) * v * c01 + u * v * c11


def plot_fsaverage5_2d(
    x: np.ndarray,
    y: np.ndarray,
    title: str | None = None,
    vmax: float | None = None,
    mask: np.ndarray | None = None,
    xlabel: str = "story → movie r",
    ylabel: str = "movie → story r",
    mesh: str = "inflated",
    n_levels: int = 24,
) -> Figure:
    """Colour each vertex by a pair of values through a 2-D colour map, with its legend.

    Meant for cross-modal transfer: ``x`` the story→movie and ``y`` the
    movie→story correlation. The colour map is sampled on an
    ``n_levels × n_levels`` grid; each vertex is drawn with the colour of its
    grid cell (nilearn colours faces through a 1-D colour map, so the cells are
    numbered and listed in one), darkened in the sulci so that the folding of
    the cortex stays visible under the colours.

    Parameters
    ----------
    x, y : ndarray of shape (20484,)
    title : str, optional
    vmax : float, optional
        Value mapped to the full colour on both axes; default: the 99th
        percentile of the positive values of ``x`` and ``y``.
    mask : ndarray of bool, shape (20484,), optional
        Vertices outside the mask (and vertices where ``x`` or ``y`` is NaN)
        show the background.
    xlabel, ylabel : str
        Legend axis labels.
    mesh : {"inflated", "pial", "white_matter", "sphere"}
    n_levels : int
        Colour levels per axis.

    Returns
    -------
    matplotlib.figure.Figure
        Four surface panels and a legend axes (a 2-D colour square).
    """
    x = check_fsaverage5(x, "x")
    y = check_fsaverage5(y, "y")
    shown = np.isfinite(x) & np.isfinite(y)
    if mask is not None:
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != (N_VERTICES,):
            raise BrainencInputError(None, f"mask has shape {mask.shape}; expected ({N_VERTICES},)")
        shown &= mask
    if vmax is None:
        positive = np.concatenate([x[shown & (x > 0)], y[shown & (y > 0)]])
        vmax = float(np.percentile(positive, 99)) if positive.size else 1.0
    vmax = vmax if vmax > 0 else 1.0

    levels = np.linspace(0.0, vmax, n_levels)
    iu = np.rint(np.clip(np.where(shown, x, 0.0) / vmax, 0, 1) * (n_levels - 1)).astype(int)
    iv = np.rint(np.clip(np.where(shown, y, 0.0) / vmax, 0, 1) * (n_levels - 1)).astype(int)
    cell = np.where(shown, iu * n_levels + iv, np.nan)
    grid_u, grid_v = np.meshgrid(levels, levels, indexing="ij")
    palette = ListedColormap(bivariate_colors(grid_u.ravel(), grid_v.ravel(), vmax))

    figure = _new_figure(9.0, 6.2)
    top = 0.92 if title else 1.0
    axes = _surface_axes(figure, right_margin=0.22, top=top)
    # "min" keeps a face on the colour of one of its vertices: averaging cell numbers
    # would produce an unrelated cell.
    _draw_panels(figure, axes, cell, cmap=palette, vmin=-0.5, vmax=n_levels**2 - 0.5,
                 threshold=None, mesh=mesh, avg_method="min", shade=0.45)

    legend = figure.add_axes((0.82, 0.38, 0.15, 0.15 * 9.0 / 6.2))
    square = bivariate_colors(*np.meshgrid(levels, levels, indexing="xy"), vmax)
    legend.imshow(square, origin="lower", extent=(0, vmax, 0, vmax))
    legend.set_xlabel(xlabel, fontsize=8)
    legend.set_ylabel(ylabel, fontsize=8)
    legend.tick_params(labelsize=7)
    legend.set_xticks([0, vmax])
    legend.set_yticks([0, vmax])
    legend.set_xticklabels(["≤0", f"{vmax:.2g}"])
    legend.set_yticklabels(["≤0", f"{vmax:.2g}"])
    if title:
        figure.suptitle(title, fontsize=12)
    return figure


# -- RGB map --------------------------------------------------------------------------------


def plot_fsaverage5_rgb(
    rgb: np.ndarray,
    title: str | None = None,
    channel_labels: Sequence[str] = ("red", "green", "blue"),
    channel_ticklabels: Sequence[Sequence[str]] | None = None,
    baseline: float = 0.5,
    background_label: str | None = "grey: no value (sulcal depth)",
    mesh: str = "inflated",
) -> Figure:
    """Colour each vertex by three values at once, one per colour channel, with a legend.

    Meant for three components of one analysis (e.g. loadings on principal
    components 1–3) each scaled to [0, 1].

    Parameters
    ----------
    rgb : ndarray of shape (20484, 3)
        Red, green and blue of each vertex, in [0, 1] (clipped); rows with a
        NaN show the background (sulcal depth). A face gets the mean colour
        of its vertices.
    title : str, optional
    channel_labels : sequence of 3 str
        What each channel shows, for the legend.
    channel_ticklabels : sequence of 3 sequences of 3 str, optional
        Per channel, the legend's labels of the channel values 0, ½ and 1.
    baseline : float
        Value of the other two channels in each legend strip (the colour of
        a vertex whose other two values are ``baseline``).
    background_label : str, optional
        Legend note on the background.
    mesh : {"inflated", "pial", "white_matter", "sphere"}

    Returns
    -------
    matplotlib.figure.Figure
        Four surface panels (see :data:`PANELS`) and three legend strips,
        one per channel.
    """
    rgb = np.asarray(rgb, dtype=float)
    if rgb.shape != (N_VERTICES, 3):
        raise BrainencInputError(None, f"rgb has shape {rgb.shape}; an fsaverage5 RGB map needs "
                                       f"({N_VERTICES}, 3)")
    if len(channel_labels) != 3:
        raise ValueError(f"channel_labels needs 3 labels, got {len(channel_labels)}")
    parts = _split(np.clip(rgb, 0.0, 1.0))

    def face_colors(hemi, faces):
        colors = parts[hemi][faces].mean(axis=1)  # NaN where a vertex has none
        return np.column_stack([colors, np.ones(len(faces))])

    figure = _new_figure(9.0, 6.2)
    top = 0.92 if title else 1.0
    _paint_panels(_surface_axes(figure, right_margin=0.22, top=top), mesh, face_colors)
    _rgb_legend(figure, channel_labels, channel_ticklabels, baseline, background_label)
    if title:
        figure.suptitle(title, fontsize=12)
    return figure


def _rgb_legend(figure: Figure, labels, ticklabels, baseline: float, background_label) -> None:
    """Three horizontal strips: one channel from 0 to 1, the others at ``baseline``."""
    ramp = np.linspace(0.0, 1.0, 64)
    for channel in range(3):
        ax = figure.add_axes((0.81, 0.62 - 0.14 * channel, 0.16, 0.035))
        strip = np.full((1, len(ramp), 3), baseline)
        strip[0, :, channel] = ramp
        ax.imshow(strip, aspect="auto", extent=(0, 1, 0, 1))
        ax.set_yticks([])
        ax.set_xticks([0.0, 0.5, 1.0])
        ax.set_xticklabels(list(ticklabels[channel]) if ticklabels is not None else ["0", "½", "1"])
        ax.tick_params(labelsize=7)
        ax.set_title(labels[channel], fontsize=8)
    if background_label:
        figure.text(0.81, 0.62 - 0.14 * 3 + 0.02, background_label, fontsize=7, va="top",
                    wrap=True)


# -- volume to surface -------------------------------------------------------------------


def surface_values(reference: Any, values: np.ndarray,
                   what: str = "values") -> tuple[np.ndarray | None, str | None]:
    """Per-voxel values of an analysis as fsaverage5 values, or why they cannot be drawn.

    Parameters
    ----------
    reference : object with ``space`` and ``mask_path``
        The analysis (or a :class:`~brainenc.results.TransferResult` of the
        same responses) whose voxels ``values`` follows: ``space`` is one of
        :data:`brainenc.io.dataset.ResponseSpace`, ``mask_path`` the brain
        mask of a volume.
    values : ndarray of shape (n_voxels,) or (n_maps, n_voxels)
    what : str
        Name of the values in error messages.

    Returns
    -------
    values : ndarray of shape (20484,) or (n_maps, 20484), or None
        fsaverage5 values as they are, fsaverage6 values at the fsaverage5
        vertices (:func:`fsaverage6_to_fsaverage5`), MNI volume values
        projected with :func:`volume_to_fsaverage5`; None when they cannot be
        placed on the surface (native-space volumes, unknown spaces).
    reason : str or None
        Why not (a sentence for a report), None when they can.

    Raises
    ------
    BrainencInputError
        fsaverage5 values of another length, or volume values that do not
        match their mask.
    """
    values = np.asarray(values, dtype=float)
    space, mask_path = reference.space, reference.mask_path
    if space == "fsaverage6":
        values = fsaverage6_to_fsaverage5(values)
        space = "fsaverage5"
    if space == "fsaverage5":
        if values.ndim == 1:
            return check_fsaverage5(values, what), None
        return np.stack([check_fsaverage5(v, f"{what}[{i}]") for i, v in enumerate(values)]), None
    if space == "volume":
        if not mask_path or not Path(mask_path).is_file():
            return None, (f"Cortical maps skipped: the brain mask of this volume result "
                          f"({mask_path or 'none recorded'}) is not available.")
        return volume_to_fsaverage5(values, mask_path), None
    if space == "native_volume":
        return None, ("Cortical maps skipped: the responses are volumes in the subject's own space "
                      "(e.g. fMRIPrep space-T1w), which cannot be projected onto fsaverage; the "
                      "NIfTI maps under maps/ show them in that space (FSLeyes, nilearn).")
    return None, (f"Cortical maps skipped: response space is '{space}', which cannot "
                  "be placed on a cortical surface (e.g. ds003020 voxels need pycortex).")


def fsaverage6_to_fsaverage5(values: np.ndarray) -> np.ndarray:
    """fsaverage6 values (2 × 40 962 per map, left then right) at the fsaverage5 vertices.

    The fsaverage meshes are successive subdivisions of one icosahedron, and
    each keeps the vertices of the coarser one first, at the same positions:
    vertex ``i < 10 242`` of a fsaverage6 hemisphere is vertex ``i`` of the
    fsaverage5 hemisphere. The maps are drawn on fsaverage5 (shipped with
    nilearn, so offline) at those vertices; the full-resolution values stay in
    the result and its GIFTI maps.
    """
    values = np.asarray(values, dtype=float)
    per_hemisphere = 40_962
    if values.shape[-1] != 2 * per_hemisphere:
        raise BrainencInputError(None, f"fsaverage6 values need {2 * per_hemisphere} columns (40 962 "
                                       f"per hemisphere), got {values.shape[-1]}")
    left = values[..., :N_VERTICES_PER_HEMISPHERE]
    right = values[..., per_hemisphere:per_hemisphere + N_VERTICES_PER_HEMISPHERE]
    return np.concatenate([left, right], axis=-1)


def volume_to_fsaverage5(
    values: np.ndarray, mask_path: str | Path, min_coverage: float = 0.5
) -> np.ndarray:
    """Project per-voxel values onto the fsaverage5 surface (both hemispheres).

    The values are put back into the mask's volume (voxel order of
    :func:`nilearn.masking.apply_mask`, the mask's nonzero voxels in C order)
    and sampled between the white-matter and pial surfaces of each vertex with
    :func:`nilearn.surface.vol_to_surf` (linear interpolation). The volume must
    be in MNI space, the space of fsaverage5's coordinates.

    Voxels outside the mask and NaN voxels are treated as missing, not as
    zeros: the image of the values and the image of the valid voxels are
    projected alike and divided, so each vertex gets the interpolation-weighted
    mean of its valid voxels. A vertex whose samples fall on valid voxels with
    a total weight below ``min_coverage`` is NaN.

    Parameters
    ----------
    values : ndarray of shape (n_voxels,) or (n_maps, n_voxels)
    mask_path : path-like
        Brain mask (NIfTI); voxels with a value > 0 are in the mask.
    min_coverage : float
        Smallest fraction (0–1] of a vertex's samples that must fall on valid voxels.

    Returns
    -------
    ndarray of shape (20484,) or (n_maps, 20484)

    Raises
    ------
    BrainencInputError
        If the mask cannot be read, is not 3-D, or holds another number of
        voxels than ``values``.
    """
    import nibabel as nib
    from nilearn import masking, surface

    mask_path = Path(mask_path)
    values = np.asarray(values, dtype=float)
    single = values.ndim == 1
    maps = values[None, :] if single else values
    if maps.ndim != 2:
        raise ValueError(f"values must be (n_voxels,) or (n_maps, n_voxels), got {values.shape}")
    if not mask_path.is_file():
        raise BrainencInputError(mask_path, "brain mask not found")
    try:
        mask_image = nib.load(str(mask_path))
        mask_data = np.asanyarray(mask_image.dataobj)
    except Exception as exc:  # nibabel raises several unrelated types for unreadable files
        raise BrainencInputError(mask_path, f"cannot read the brain mask as NIfTI ({exc})") from exc
    if mask_data.ndim == 4 and mask_data.shape[3] == 1:
        mask_data = mask_data[..., 0]
    if mask_data.ndim != 3:
        raise BrainencInputError(mask_path, f"a brain mask must be 3-D, this one has shape {mask_data.shape}")
    inside = mask_data > 0
    if int(inside.sum()) != maps.shape[1]:
        raise BrainencInputError(
            mask_path, f"the mask holds {int(inside.sum())} voxels but {maps.shape[1]} values were given"
        )
    binary_mask = nib.Nifti1Image(inside.astype(np.uint8), mask_image.affine)

    valid = np.isfinite(maps)
    # Images 0..k-1: values (0 where missing); images k..2k-1: where they are valid.
    stacked = np.concatenate([np.where(valid, maps, 0.0), valid.astype(float)])
    image = masking.unmask(stacked, binary_mask)

    n_maps = maps.shape[0]
    projected = []
    for hemi in HEMISPHERES:
        with warnings.catch_warnings():
            # Samples outside the image are NaN; an all-NaN vertex is handled below.
            warnings.filterwarnings("ignore", message="Mean of empty slice", category=RuntimeWarning)
            texture = surface.vol_to_surf(
                image,
                _mesh("pial", hemi),
                inner_mesh=_mesh("white_matter", hemi),
                interpolation="linear",
            )
        texture = np.asarray(texture, dtype=float).reshape(-1, 2 * n_maps)
        numerator, coverage = texture[:, :n_maps], texture[:, n_maps:]
        with np.errstate(invalid="ignore", divide="ignore"):
            ratio = numerator / coverage
        ratio[~(coverage >= min_coverage)] = np.nan
        projected.append(ratio.T)
    result = np.concatenate(projected, axis=1)
    return result[0] if single else result

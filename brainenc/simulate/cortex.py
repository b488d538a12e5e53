"""The simulated cortex: regions, per-vertex weights, amplitudes, SNRs, HRF shapes, mesh smoothing.

Regions are spherical caps on nilearn's fsaverage5 sphere, placed in partially
overlapping pairs. A vertex carries one *component* (shared, language or
vision) per region it lies in; its category names the set of components it
carries. ``docs/simulation.md`` gives the formulae.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
from scipy import sparse

N_VERTICES_PER_HEMI = 10242
N_VERTICES = 2 * N_VERTICES_PER_HEMI
HEMISPHERES: tuple[str, ...] = ("left", "right")

#: The components a vertex can carry, in the column order of ``region_of``.
COMPONENTS: tuple[str, ...] = ("shared", "language", "vision")
#: Names of the ground-truth vertex categories, indexed by the ``category`` codes.
CATEGORY_NAMES: tuple[str, ...] = (
    "noise", "shared", "language", "vision",
    "shared+language", "shared+vision", "language+vision",
)
#: Region pairs placed in turn, per hemisphere, until every component has its regions.
PAIR_PATTERN: tuple[tuple[str, str], ...] = (
    ("shared", "language"), ("vision", "shared"), ("language", "vision"),
)
#: Range of the HRF peak shapes, the half-range of their gradient across a
#: region, and the step they are quantised to.
HRF_SHAPE_RANGE: tuple[float, float] = (4.5, 7.5)
HRF_SHAPE_GRADIENT = 0.5
HRF_SHAPE_STEP = 0.25
#: Smallest angular gap between caps of different pairs (degrees).
_GROUP_GAP_DEG = 4.0
_PLACEMENT_ATTEMPTS = 1000
#: Category code of each set of components, indexed by the bit mask
#: shared = 1, language = 2, vision = 4 (7, all three, never occurs).
_CODE_OF_BITS = np.array([0, 1, 2, 4, 3, 5, 6, -1], dtype=np.int8)


class RegionPlacementError(ValueError):
    """The requested regions do not fit on the sphere without overlapping."""


@dataclass
class Cortex:
    """Regions and per-vertex ground truth of the simulated cortex.

    Per-vertex arrays have one row per fsaverage5 vertex (left hemisphere
    then right); per-component arrays have one column per entry of
    ``COMPONENTS``.
    """

    category: np.ndarray          # (n_vertices,) int8, codes of CATEGORY_NAMES
    region_of: np.ndarray         # (n_vertices, 3) int16, region index per component, -1 absent
    amplitude: np.ndarray         # (n_vertices, 3) amplitude a(theta) per component, 0 absent
    hrf_shape: np.ndarray         # (n_vertices,) HRF peak shape, NaN on pure-noise vertices
    weights: dict[str, np.ndarray]  # component -> (n_vertices, k), zero where absent
    region_center: np.ndarray     # (n_regions, 3)
    region_hemi: list[str]
    region_category: np.ndarray   # (n_regions,) int8, code of the region's component
    region_radius_deg: np.ndarray  # (n_regions,)
    region_group: np.ndarray      # (n_regions,) int16, index of the pair (or lone cap)
    region_snr: np.ndarray        # (n_regions,)
    region_hrf_shape: np.ndarray  # (n_regions,) HRF peak shape at the centre, unquantised

    @property
    def component_snr(self) -> np.ndarray:
        """(n_vertices, 3): ``region_snr * amplitude**2`` per component, 0 where absent."""
        snr = np.zeros(self.amplitude.shape)
        present = self.region_of >= 0
        snr[present] = self.region_snr[self.region_of[present]] * self.amplitude[present] ** 2
        return snr


def fsaverage5_sphere() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``{"left": (coordinates, faces), "right": ...}`` of nilearn's fsaverage5 sphere."""
    from nilearn.datasets import load_fsaverage

    sphere = load_fsaverage("fsaverage5")["sphere"]
    return {
        hemi: (np.asarray(sphere.parts[hemi].coordinates, dtype=np.float64),
               np.asarray(sphere.parts[hemi].faces))
        for hemi in HEMISPHERES
    }


def angles_deg(coords: np.ndarray, centre: np.ndarray) -> np.ndarray:
    """Angle (degrees) between each vertex and a centre, seen from the sphere's middle."""
    unit = coords / np.linalg.norm(coords, axis=1, keepdims=True)
    c = centre / np.linalg.norm(centre)
    return np.degrees(np.arccos(np.clip(unit @ c, -1.0, 1.0)))


def region_plan(regions_per_hemi: int) -> list[tuple[str, ...]]:
    """The groups (pairs or lone caps) of one hemisphere, in placement order.

    Goes through ``PAIR_PATTERN`` again and again; a component that already
    has ``regions_per_hemi`` regions drops out of its pairs, leaving its
    partner alone.
    """
    needed = dict.fromkeys(COMPONENTS, regions_per_hemi)
    pattern = itertools.cycle(PAIR_PATTERN)
    groups: list[tuple[str, ...]] = []
    while any(needed.values()):
        group = tuple(name for name in next(pattern) if needed[name] > 0)
        for name in group:
            needed[name] -= 1
        if group:
            groups.append(group)
    return groups


def amplitude_profile(theta_deg: np.ndarray, radius_deg: float,
                      edge_amplitude: float) -> np.ndarray:
    """``a(theta) = 1 - (1 - edge_amplitude) * (theta / radius)**2``: 1 at the centre."""
    return 1.0 - (1.0 - edge_amplitude) * (theta_deg / radius_deg) ** 2


def quantise_hrf_shape(shape: np.ndarray) -> np.ndarray:
    """Round to steps of ``HRF_SHAPE_STEP`` and clip to ``HRF_SHAPE_RANGE``."""
    return np.clip(np.round(shape / HRF_SHAPE_STEP) * HRF_SHAPE_STEP, *HRF_SHAPE_RANGE)


def empty_cortex(dims: dict[str, int]) -> Cortex:
    """A cortex without regions: every vertex is noise."""
    return Cortex(
        category=np.zeros(N_VERTICES, dtype=np.int8),
        region_of=np.full((N_VERTICES, len(COMPONENTS)), -1, dtype=np.int16),
        amplitude=np.zeros((N_VERTICES, len(COMPONENTS))),
        hrf_shape=np.full(N_VERTICES, np.nan),
        weights={name: np.zeros((N_VERTICES, dims[name])) for name in COMPONENTS},
        region_center=np.zeros((0, 3)), region_hemi=[],
        region_category=np.zeros(0, dtype=np.int8), region_radius_deg=np.zeros(0),
        region_group=np.zeros(0, dtype=np.int16), region_snr=np.zeros(0),
        region_hrf_shape=np.zeros(0),
    )


def make_cortex(
    rng: np.random.Generator,
    spheres: dict[str, tuple[np.ndarray, np.ndarray]],
    dims: dict[str, int],
    regions_per_hemi: int,
    radius_deg: tuple[float, float],
    overlap_distance: float,
    edge_amplitude: float,
    snr: tuple[float, float],
) -> Cortex:
    """Place the region pairs of both hemispheres and fill in every vertex's ground truth.

    Raises
    ------
    RegionPlacementError
        If the caps do not fit on a hemisphere's sphere.
    """
    regions: list[_Region] = []
    n_groups = 0
    for h, hemi in enumerate(HEMISPHERES):
        coords = spheres[hemi][0]
        placed: list[tuple[np.ndarray, float]] = []
        for group in region_plan(regions_per_hemi):
            caps = _place_group(rng, coords, len(group), radius_deg, overlap_distance, placed)
            placed.extend(caps)
            for name, (centre, radius) in zip(group, caps):
                regions.append(_draw_region(
                    rng, coords, centre, radius, snr, edge_amplitude, dims[name],
                    component=name, hemi=hemi, group=n_groups, offset=h * N_VERTICES_PER_HEMI))
            n_groups += 1
    return _assemble(regions, dims)


@dataclass
class _Region:
    centre: np.ndarray
    radius: float
    snr: float
    centre_hrf_shape: float
    vertices: np.ndarray        # member vertices
    amplitude: np.ndarray       # a(theta) per member
    hrf_shape: np.ndarray       # unquantised HRF shape per member
    weights: np.ndarray         # (n_members, k)
    component: str
    hemi: str
    group: int


def _assemble(regions: list[_Region], dims: dict[str, int]) -> Cortex:
    """Per-vertex arrays from the regions; a vertex in two regions takes the mean HRF shape."""
    cortex = empty_cortex(dims)
    shape_sum = np.zeros(N_VERTICES)
    shape_count = np.zeros(N_VERTICES)
    for index, region in enumerate(regions):
        column = COMPONENTS.index(region.component)
        cortex.region_of[region.vertices, column] = index
        cortex.amplitude[region.vertices, column] = region.amplitude
        cortex.weights[region.component][region.vertices] = region.weights
        shape_sum[region.vertices] += region.hrf_shape
        shape_count[region.vertices] += 1
    bits = ((cortex.region_of >= 0) * np.array([1, 2, 4])).sum(axis=1)
    cortex.category = _CODE_OF_BITS[bits]
    inside = shape_count > 0
    cortex.hrf_shape[inside] = quantise_hrf_shape(shape_sum[inside] / shape_count[inside])
    if regions:
        cortex.region_center = np.array([r.centre for r in regions])
    cortex.region_hemi = [r.hemi for r in regions]
    cortex.region_category = np.array(
        [CATEGORY_NAMES.index(r.component) for r in regions], dtype=np.int8)
    cortex.region_radius_deg = np.array([r.radius for r in regions], dtype=np.float64)
    cortex.region_group = np.array([r.group for r in regions], dtype=np.int16)
    cortex.region_snr = np.array([r.snr for r in regions], dtype=np.float64)
    cortex.region_hrf_shape = np.array([r.centre_hrf_shape for r in regions], dtype=np.float64)
    return cortex


def _place_group(rng, coords, n_caps, radius_deg, overlap_distance, placed):
    """Centres and radii of one pair (or lone cap), clear of the caps already placed.

    The first centre is a mesh vertex; the second lies
    ``overlap_distance * (r1 + r2) / 2`` degrees away in a random direction.
    """
    radii = [float(rng.uniform(*radius_deg)) for _ in range(n_caps)]
    for _attempt in range(_PLACEMENT_ATTEMPTS):
        first = coords[rng.integers(len(coords))]
        centres = [first]
        if n_caps == 2:
            distance = np.radians(overlap_distance * (radii[0] + radii[1]) / 2.0)
            centres.append(_rotate_towards(first, _tangent(rng, first), distance))
        if all(angles_deg(c[None, :], centre)[0] > r + radius + _GROUP_GAP_DEG
               for c, r in placed for centre, radius in zip(centres, radii)):
            return list(zip(centres, radii))
    raise RegionPlacementError(
        "could not place the regions without overlaps between pairs; "
        "use fewer (regions_per_hemi) or smaller (region_radius_deg) regions")


def _tangent(rng, point: np.ndarray) -> np.ndarray:
    """A random unit vector tangent to the sphere at ``point``."""
    unit = point / np.linalg.norm(point)
    v = rng.standard_normal(3)
    v -= (v @ unit) * unit
    return v / np.linalg.norm(v)


def _rotate_towards(point: np.ndarray, tangent: np.ndarray, angle_rad: float) -> np.ndarray:
    """The point ``angle_rad`` away from ``point`` along the great circle towards ``tangent``."""
    norm = np.linalg.norm(point)
    return norm * (np.cos(angle_rad) * point / norm + np.sin(angle_rad) * tangent)


def _draw_region(rng, coords, centre, radius_deg, snr, edge_amplitude, k, *, component, hemi,
                 group, offset) -> _Region:
    """One region's SNR, HRF field and weights over its member vertices.

    ``coords`` are one hemisphere's vertices; ``offset`` turns their indices
    into cortex-wide ones.

    Positions are measured in units of the region's radius:
    ``p = (x - c) / (|c| * radius)``, about unit length at the edge.
    """
    low, high = snr
    region_snr = low * (high / low) ** rng.random()        # log-uniform; exact when low == high
    centre_shape = float(rng.uniform(*HRF_SHAPE_RANGE))
    shape_direction = _tangent(rng, centre)
    theta = angles_deg(coords, centre)
    members = np.flatnonzero(theta <= radius_deg)
    position = (coords[members] - centre) / (np.linalg.norm(centre) * np.radians(radius_deg))
    base = rng.standard_normal(k)
    gradient = rng.standard_normal((3, k)) * 0.5
    jitter = rng.standard_normal((len(members), k)) * 0.1
    return _Region(
        centre=centre, radius=radius_deg, snr=float(region_snr), centre_hrf_shape=centre_shape,
        vertices=offset + members,
        amplitude=amplitude_profile(theta[members], radius_deg, edge_amplitude),
        hrf_shape=centre_shape + HRF_SHAPE_GRADIENT * (position @ shape_direction),
        weights=base + position @ gradient + jitter,
        component=component, hemi=hemi, group=group,
    )


# --------------------------------------------------------------------------- #
# Spatial smoothing on the mesh
# --------------------------------------------------------------------------- #
@dataclass(frozen=True)
class MeshSmoother:
    """Neighbour averaging on the fsaverage5 mesh, rescaled to keep unit variance.

    One step is ``x_v <- (x_v + sum of x_u over the neighbours u) / (1 + degree_v)``,
    i.e. the row-stochastic matrix ``S = (I + D)^-1 (I + A)``. After ``steps``
    steps every vertex is multiplied by ``1 / ||row_v(S**steps)||``, so
    i.i.d. unit-variance input comes out with unit variance at every vertex.
    """

    step: sparse.csr_matrix   # S, float32, (n_vertices, n_vertices)
    steps: int
    gain: np.ndarray          # (n_vertices,) float32

    def apply(self, x: np.ndarray) -> np.ndarray:
        """Smooth each row (one volume, n_vertices values) of ``x``; float32 in and out."""
        if self.steps == 0:
            return x
        y = x.T
        for _ in range(self.steps):
            y = self.step @ y
        y *= self.gain[:, None]
        return np.ascontiguousarray(y.T)

    def operator(self) -> sparse.csr_matrix:
        """The whole linear map ``diag(gain) S**steps`` in float64."""
        return sparse.diags(self.gain.astype(np.float64)) @ _power(self.step.astype(np.float64),
                                                                   self.steps)


def mesh_adjacency(faces: np.ndarray, n_vertices: int) -> sparse.csr_matrix:
    """Symmetric 0/1 adjacency of the mesh edges (no self-loops)."""
    edges = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
    rows = np.concatenate([edges[:, 0], edges[:, 1]])
    cols = np.concatenate([edges[:, 1], edges[:, 0]])
    adjacency = sparse.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(n_vertices,) * 2)
    adjacency.data[:] = 1.0          # edges shared by two faces were summed
    return adjacency


def mesh_smoother(spheres: dict[str, tuple[np.ndarray, np.ndarray]], steps: int) -> MeshSmoother:
    """The smoothing of ``steps`` neighbour-averaging steps on both hemispheres' meshes."""
    blocks = []
    for hemi in HEMISPHERES:
        adjacency = mesh_adjacency(spheres[hemi][1], N_VERTICES_PER_HEMI)
        with_self = adjacency + sparse.identity(N_VERTICES_PER_HEMI, format="csr")
        blocks.append(sparse.diags(1.0 / np.asarray(with_self.sum(axis=1)).ravel()) @ with_self)
    step = sparse.block_diag(blocks, format="csr")
    total = _power(step, steps)
    norms = np.sqrt(np.asarray(total.multiply(total).sum(axis=1)).ravel())
    return MeshSmoother(step.astype(np.float32), steps, (1.0 / norms).astype(np.float32))


def _power(matrix: sparse.csr_matrix, steps: int) -> sparse.csr_matrix:
    result = sparse.identity(matrix.shape[0], format="csr", dtype=matrix.dtype)
    for _ in range(steps):
        result = matrix @ result
    return result.tocsr()

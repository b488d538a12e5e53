"""The fitted weights of a transfer analysis: one HDF5 file per feature space.

Layout of ``weights.h5`` (``docs/outputs.md``)::

    attrs      format = "brainenc-weights", version = 1, subject, feature_space,
               space (response space), model (which model the weights are)
    delays     int (n_delays,)        FIR delays in TRs, in the order of the weights' delay axis
    features   int (n_features,)      feature index (column of the feature files' ``data``)
    voxels     int (n_voxels,)        response column of each voxel: the voxel order
    story/weights   float32 (n_features, n_delays, n_voxels)
    story/alphas    float64 (n_voxels,)
    movie/weights, movie/alphas       the same for the models trained on movies

The weights act on z-scored delayed features and predict z-scored responses.
They are stored in chunks of voxels, so that a block of voxels is read without
loading the rest (:class:`WeightsFile`). The file is written voxel batch by
voxel batch under a temporary name and renamed when complete
(:class:`WeightsWriter`).
"""
from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from pathlib import Path

import h5py
import numpy as np

from brainenc.errors import BrainencInputError

FORMAT = "brainenc-weights"
VERSION = 1
MODALITIES: tuple[str, ...] = ("story", "movie")
#: Voxels per HDF5 chunk of a weights array.
CHUNK_VOXELS = 1024


class WeightsWriter:
    """Write a weights file batch by batch; it appears at ``path`` only once closed cleanly.

    Parameters
    ----------
    path : path-like
    n_features, n_voxels : int
    delays : sequence of int
    attrs : dict
        File attributes (subject, feature space, response space, model).
    modalities : sequence of str
        The training modalities whose models are stored (both by default).

    Examples
    --------
    >>> with WeightsWriter(path, 48, [1, 2, 3, 4], 20484, {}) as out:   # doctest: +SKIP
    ...     out.write("story", slice(0, 1000), coef, alphas)
    """

    def __init__(self, path: str | Path, n_features: int, delays: Sequence[int], n_voxels: int,
                 attrs: dict, modalities: Sequence[str] = MODALITIES):
        self.path = Path(path)
        self.modalities = tuple(modalities)
        self.n_features, self.delays, self.n_voxels = int(n_features), list(delays), int(n_voxels)
        self.attrs = attrs
        self._tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        self._file: h5py.File | None = None

    def __enter__(self) -> "WeightsWriter":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = h5py.File(self._tmp, "w")
        f = self._file
        f.attrs.update({"format": FORMAT, "version": VERSION, **self.attrs})
        f.create_dataset("delays", data=np.asarray(self.delays, dtype=np.int64))
        f.create_dataset("features", data=np.arange(self.n_features, dtype=np.int64))
        f.create_dataset("voxels", data=np.arange(self.n_voxels, dtype=np.int64))
        shape = (self.n_features, len(self.delays), self.n_voxels)
        chunks = (self.n_features, len(self.delays), min(CHUNK_VOXELS, self.n_voxels))
        for modality in self.modalities:
            f.create_dataset(f"{modality}/weights", shape=shape, dtype=np.float32, chunks=chunks)
            f.create_dataset(f"{modality}/alphas", shape=(self.n_voxels,), dtype=np.float64,
                             fillvalue=np.nan)
        return self

    def write(self, modality: str, columns: slice, coef: np.ndarray, alphas: np.ndarray) -> None:
        """Store a batch: ``coef`` (delayed features × voxels, delay blocks of features, the
        design's column order) and the voxels' alphas."""
        n_delays = len(self.delays)
        blocks = np.asarray(coef, dtype=np.float32).reshape(n_delays, self.n_features, -1)
        self._file[f"{modality}/weights"][:, :, columns] = blocks.transpose(1, 0, 2)
        self._file[f"{modality}/alphas"][columns] = alphas

    def __exit__(self, exc_type, exc, tb) -> None:
        self._file.close()
        if exc_type is None:
            os.replace(self._tmp, self.path)
        else:
            self._tmp.unlink(missing_ok=True)


class WeightsFile:
    """Read a weights file lazily: only the voxels asked for are loaded.

    Parameters
    ----------
    path : path-like
        A ``weights.h5`` written by :class:`WeightsWriter`.

    Raises
    ------
    BrainencInputError
        The file is missing, not HDF5, or not a brainenc weights file.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        if not self.path.is_file():
            raise BrainencInputError(self.path, "weights file not found")
        try:
            with h5py.File(self.path, "r") as f:
                self.attrs = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in f.attrs.items()}
                self.delays = f["delays"][()]
                self.features = f["features"][()]
                self.voxels = f["voxels"][()]
                self.modalities = tuple(m for m in MODALITIES if m in f)
                self.shape = f[f"{self.modalities[0]}/weights"].shape
        except (OSError, KeyError, IndexError) as exc:
            raise BrainencInputError(self.path, f"cannot read as a brainenc weights file ({exc})") from exc
        if self.attrs.get("format") != FORMAT:
            raise BrainencInputError(self.path, f"attribute 'format' is {self.attrs.get('format')!r}, "
                                                f"expected {FORMAT!r}")

    @property
    def n_features(self) -> int:
        return int(self.shape[0])

    @property
    def n_voxels(self) -> int:
        return int(self.shape[2])

    def _check_modality(self, modality: str) -> None:
        if modality not in MODALITIES:
            raise ValueError(f"modality must be one of {MODALITIES}, got {modality!r}")
        if modality not in self.modalities:
            raise BrainencInputError(self.path, f"holds no {modality} models (its models were "
                                                f"trained on {' and '.join(self.modalities)})")

    def weights(self, modality: str, voxels: slice | Sequence[int] | np.ndarray = slice(None)) -> np.ndarray:
        """Weights of the models trained on ``modality``: (features, delays, selected voxels).

        ``voxels`` is a slice, indices or a boolean mask over the voxels.
        """
        self._check_modality(modality)
        with h5py.File(self.path, "r") as f:
            data = f[f"{modality}/weights"]
            if isinstance(voxels, slice):
                return data[:, :, voxels]
            index = np.asarray(voxels)
            if index.dtype == bool:
                return data[:, :, np.flatnonzero(index)]
            # HDF5 reads increasing, distinct indices; give back the order asked for
            unique, inverse = np.unique(index, return_inverse=True)
            return data[:, :, unique][:, :, inverse]

    def delay_averaged(self, modality: str, voxels: slice | Sequence[int] | np.ndarray = slice(None)
                       ) -> np.ndarray:
        """Weights averaged over delays: (features, selected voxels), float64."""
        return self.weights(modality, voxels).astype(np.float64).mean(axis=1)

    def alphas(self, modality: str) -> np.ndarray:
        """The alpha of each voxel (median over the fold models, a value of the grid)."""
        self._check_modality(modality)
        with h5py.File(self.path, "r") as f:
            return f[f"{modality}/alphas"][()]

    def batches(self, modality: str, n_voxels: int = 4 * CHUNK_VOXELS) -> Iterator[tuple[slice, np.ndarray]]:
        """(voxel slice, weights) blocks of ``n_voxels`` voxels, in order."""
        for start in range(0, self.n_voxels, n_voxels):
            columns = slice(start, min(start + n_voxels, self.n_voxels))
            yield columns, self.weights(modality, columns)

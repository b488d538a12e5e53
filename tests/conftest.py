"""Shared fixtures: a small manifest dataset with a planted linear response."""
from __future__ import annotations

import contextlib
import os
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("MPLBACKEND", "Agg")

import torch  # noqa: E402

if not torch.cuda.is_available():
    # Triton reads the flag when kernels are defined, so set it before any test imports them
    os.environ.setdefault("TRITON_INTERPRET", "1")


def make_manifest_dataset(
    root: Path,
    n_runs: int = 3,
    n_trs: int = 80,
    n_voxels: int = 12,
    n_features: int = 5,
    tr: float = 2.0,
    constant_voxels: tuple[int, ...] = (),
    seed: int = 0,
) -> Path:
    """Write a manifest dataset: story and movie runs, one feature space ``feats``.

    Both modalities' responses are the same linear map of their features at a
    2-TR lag plus noise, so every direction (within and across) is predictable.
    Responses are ``.npy`` files holding every volume (no trims).
    """
    from brainenc.io.features import write_stimulus_features

    rng = np.random.default_rng(seed)
    weights = rng.standard_normal((n_features, n_voxels))
    rows = ["subject\trun\tmodality\tresponse\tstimulus\ttr\tstimulus_onset"]
    root.mkdir(parents=True, exist_ok=True)
    for modality in ("story", "movie"):
        for i in range(n_runs):
            name = f"{modality}{i}"
            # one event at each TR centre, where the Lanczos kernel (cutoff 1/TR) is 1 and
            # vanishes at the neighbours: the design is the events themselves, delayed
            times = tr * np.arange(n_trs) + tr / 2
            data = rng.standard_normal((n_trs, n_features)).astype(np.float32)
            write_stimulus_features(root / "features" / "feats" / f"{name}.hf5", data, times)
            # the response at TR k follows the features 2 TRs earlier
            signal = np.zeros((n_trs, n_voxels))
            signal[2:] = data[:-2] @ weights
            Y = signal + 0.5 * rng.standard_normal((n_trs, n_voxels))
            Y[:, list(constant_voxels)] = 3.0
            np.save(root / f"{name}.npy", Y.astype(np.float32))
            rows.append(f"s1\t{name}\t{modality}\t{name}.npy\t{name}\t{tr}\t0")
    manifest = root / "brainenc_manifest.tsv"
    manifest.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return root


@pytest.fixture
def manifest_dataset(tmp_path: Path) -> Path:
    return make_manifest_dataset(tmp_path / "manifest_ds")


def shared_temp_root(tmp_path_factory) -> Path:
    """A temporary folder shared by every pytest-xdist worker of this test session (the
    session's own base folder without xdist)."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


@contextlib.contextmanager
def exclusive(path: Path):
    """Hold an exclusive lock on the file ``path`` (processes of one machine)."""
    import fcntl

    with open(path, "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@pytest.fixture(scope="session")
def simulated_analysis(tmp_path_factory):
    """Simulated subjects analysed once per test session.

    ``simulated_analysis(seed, space="multimodal", test_runs=None, **simulation)``
    returns the subject's ground truth and the result (default analysis
    settings, or the named test runs; with its weights) of one of its feature spaces. A subject
    is simulated once; its two feature spaces are analysed together with their
    paired comparison (:func:`brainenc.analyses.comparison.compare_feature_spaces`),
    which ``simulated_analysis.comparison(seed, **simulation)`` returns. The analyses are
    shared by the xdist workers of the session through files: the first worker that needs
    one computes it while the others wait for it.
    """
    import hashlib
    import pickle
    import warnings

    from brainenc.analyses.comparison import compare_feature_spaces
    from brainenc.io.layouts import load_dataset
    from brainenc.simulate import FEATURE_SPACES, load_ground_truth, simulate_dataset

    shared = shared_temp_root(tmp_path_factory)
    analysed = {}

    def compute(root: Path, tag: str, seed: int, test_runs: dict | None, simulation: dict):
        if not root.exists():
            simulate_dataset(root, seed=seed, **simulation)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            weights = {space: root.parent / f"{root.name}_{space}_{tag}_weights.h5"
                       for space in FEATURE_SPACES}
            results, comparisons = compare_feature_spaces(
                load_dataset(root), "sim01", FEATURE_SPACES, [FEATURE_SPACES],
                test_runs=test_runs, weights_paths=weights, progress=False)
        return dict(zip(FEATURE_SPACES, results)), comparisons[0]

    def bundle(seed: int, test_runs: dict | None, simulation: dict):
        options = "_".join(f"{k}-{v}" for k, v in sorted(simulation.items()))
        root = shared / f"simulated_{seed}_{options}"
        tag = hashlib.sha1(repr(test_runs).encode()).hexdigest()[:10]
        key = (root, tag)
        if key not in analysed:
            stored = shared / f"{root.name}_{tag}.pkl"
            with exclusive(shared / f"{root.name}.lock"):
                if not stored.exists():
                    computed = compute(root, tag, seed, test_runs, simulation)
                    partial = stored.with_suffix(".partial")
                    partial.write_bytes(pickle.dumps(computed))
                    partial.replace(stored)
                results, compared = pickle.loads(stored.read_bytes())
                analysed[key] = (load_ground_truth(root), results, compared)
        return analysed[key]

    def analyse(seed: int, space: str = "multimodal", test_runs: dict | None = None, **simulation):
        truth, results, _ = bundle(seed, test_runs, simulation)
        return truth, results[space]

    def comparison(seed: int, **simulation):
        truth, _, compared = bundle(seed, None, simulation)
        return truth, compared

    def dataset(seed: int, **simulation):
        bundle(seed, None, simulation)
        options = "_".join(f"{k}-{v}" for k, v in sorted(simulation.items()))
        return load_dataset(shared / f"simulated_{seed}_{options}")

    analyse.comparison = comparison
    analyse.dataset = dataset
    return analyse

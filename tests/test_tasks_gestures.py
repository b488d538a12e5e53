"""NinaPro DB2 gesture data: file format, windows, repetition split, scaling, metrics, tensors."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
import scipy.io
import torch
from sklearn.metrics import accuracy_score, f1_score
from sklearn.neighbors import KNeighborsClassifier

from brainenc.errors import BrainencInputError
from brainenc.tasks.gestures import (
    DB2_FS,
    ChannelScaler,
    Recording,
    accuracy,
    concat_windows,
    load_ninapro_db2,
    macro_f1,
    ms_to_samples,
    split_by_repetition,
    synthetic_recording,
    windows,
    write_ninapro_db2,
)

# --------------------------------------------------------------------------- file format


def test_round_trip_writer_to_loader(tmp_path):
    rec = synthetic_recording("unimodal", n_movements=3, n_repetitions=6, subject=7, exercise=2, seed=1)
    path = write_ninapro_db2(tmp_path / "S7_E2_A1.mat", rec)

    shapes = {name: shape for name, shape, _ in scipy.io.whosmat(str(path))}
    t = rec.n_samples
    assert shapes["emg"] == (t, 12) and shapes["acc"] == (t, 36)
    for name in ("stimulus", "restimulus", "repetition", "rerepetition"):
        assert shapes[name] == (t, 1)
    assert shapes["subject"] == (1, 1) and shapes["exercise"] == (1, 1)
    assert "frequency" not in shapes and "fs" not in shapes  # like real DB2 files

    back = load_ninapro_db2(path)
    np.testing.assert_array_equal(back.emg, rec.emg)
    np.testing.assert_array_equal(back.acc, rec.acc)
    for name in ("restimulus", "rerepetition", "stimulus", "repetition"):
        np.testing.assert_array_equal(getattr(back, name), getattr(rec, name))
        assert getattr(back, name).dtype == np.int64
    assert (back.subject, back.exercise, back.fs, back.path) == (7, 2, DB2_FS, path)
    # the unrefined cue leads the refined label
    assert not np.array_equal(back.stimulus, back.restimulus)
    assert set(np.unique(back.restimulus)) == {0, 1, 2, 3}
    assert set(np.unique(back.rerepetition[back.restimulus > 0])) == set(range(1, 7))


def test_sampling_rate_from_frequency_or_fs(tmp_path):
    rec = synthetic_recording(n_movements=2, n_repetitions=1, fs=1000.0)
    path = write_ninapro_db2(tmp_path / "f.mat", rec)
    assert "frequency" in {n for n, _, _ in scipy.io.whosmat(str(path))}
    assert load_ninapro_db2(path).fs == 1000.0

    fields = _valid_fields()
    fields["fs"] = np.array([[500.0]])
    assert load_ninapro_db2(_save(tmp_path / "fs.mat", fields)).fs == 500.0


def _valid_fields(t: int = 40) -> dict:
    rng = np.random.default_rng(0)
    labels = np.zeros((t, 1))
    labels[10:30] = 3
    reps = np.zeros((t, 1))
    reps[10:30] = 1
    return {
        "emg": rng.standard_normal((t, 12)),
        "acc": rng.standard_normal((t, 36)),
        "stimulus": labels.copy(),
        "restimulus": labels,
        "repetition": reps.copy(),
        "rerepetition": reps,
        "subject": np.array([[1]]),
        "exercise": np.array([[1]]),
    }


def _save(path, fields):
    scipy.io.savemat(str(path), fields)
    return path


def _nan_at(name, row):
    def change(f):
        f[name] = f[name].copy()
        f[name][row, 0] = np.nan

    return change


BAD_FILES = {
    "missing emg": (lambda f: f.pop("emg"), ["'emg'"]),
    "missing acc": (lambda f: f.pop("acc"), ["'acc'"]),
    "missing restimulus": (
        lambda f: f.pop("restimulus"),
        ["'restimulus'", "'stimulus' is the unrefined", "DB2 provides 'restimulus'"],
    ),
    "missing rerepetition": (lambda f: f.pop("rerepetition"), ["'rerepetition'"]),
    "emg with 10 channels": (lambda f: f.update(emg=f["emg"][:, :10]), ["'emg'", "12", "(40, 10)"]),
    "acc with 3 channels": (lambda f: f.update(acc=f["acc"][:, :3]), ["'acc'", "36", "(40, 3)"]),
    "acc shorter": (lambda f: f.update(acc=f["acc"][:-1]), ["'acc' has 39 samples", "'emg' has 40"]),
    "restimulus shorter": (
        lambda f: f.update(restimulus=f["restimulus"][:-2]),
        ["'restimulus' has 38 samples"],
    ),
    "stimulus longer": (
        lambda f: f.update(stimulus=np.vstack([f["stimulus"], [[0.0]]])),
        ["'stimulus' has 41 samples"],
    ),
    "NaN in emg": (_nan_at("emg", 5), ["'emg'", "NaN", "row 5"]),
    "NaN in acc": (_nan_at("acc", 7), ["'acc'", "NaN", "row 7"]),
    "NaN in restimulus": (_nan_at("restimulus", 3), ["'restimulus'", "NaN", "row 3"]),
    "fractional labels": (
        lambda f: f.update(rerepetition=f["rerepetition"] + 0.5),
        ["'rerepetition'", "integers"],
    ),
    "labels not a column": (
        lambda f: f.update(restimulus=np.tile(f["restimulus"], (1, 2))),
        ["'restimulus'", "(T, 1)"],
    ),
    "rates disagree": (
        lambda f: f.update(fs=np.array([[1000.0]]), frequency=np.array([[2000.0]])),
        ["disagree"],
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_every_validation_error(tmp_path, case):
    change, expected = BAD_FILES[case]
    fields = _valid_fields()
    change(fields)
    path = _save(tmp_path / "bad.mat", fields)
    with pytest.raises(BrainencInputError) as info:
        load_ninapro_db2(path)
    assert info.value.path == path
    for text in expected:
        assert text in str(info.value), (case, str(info.value))


def test_unreadable_and_absent_files(tmp_path):
    junk = tmp_path / "junk.mat"
    junk.write_bytes(b"not a mat file at all" * 10)
    with pytest.raises(BrainencInputError, match="MATLAB"):
        load_ninapro_db2(junk)
    with pytest.raises(BrainencInputError, match="no such file"):
        load_ninapro_db2(tmp_path / "absent.mat")


# --------------------------------------------------------------------------- windows


def _hand_made() -> Recording:
    """Runs (label, repetition): rest, 1/1, rest, 1/2, rest, 2/1, rest; lengths 4/6/4/6/4/6/4."""
    label = [0] * 4 + [1] * 6 + [0] * 4 + [1] * 6 + [0] * 4 + [2] * 6 + [0] * 4
    rep = [0] * 4 + [1] * 6 + [0] * 4 + [2] * 6 + [0] * 4 + [1] * 6 + [0] * 4
    t = len(label)
    emg = np.arange(t * 12, dtype=float).reshape(t, 12)
    acc = -np.arange(t * 36, dtype=float).reshape(t, 36)
    return Recording(emg, acc, np.array(label), np.array(rep), subject=3)


def test_window_labels_and_counts_on_hand_made_sequence():
    rec = _hand_made()
    # length 4, stride 2: a start is kept only when s..s+3 lies in one run
    w = windows(rec, length=4, stride=2, rest="keep")
    np.testing.assert_array_equal(w.starts, [0, 4, 6, 10, 14, 16, 20, 24, 26, 30])
    np.testing.assert_array_equal(w.labels, [0, 1, 1, 0, 1, 1, 0, 2, 2, 0])
    # rest takes the repetition of the movement before it (the first rest: the next one)
    np.testing.assert_array_equal(w.repetitions, [1, 1, 1, 1, 2, 2, 2, 1, 1, 1])
    assert (w.subjects == 3).all()
    emg, acc = w.emg, w.acc
    assert emg.shape == (10, 4, 12) and acc.shape == (10, 4, 36)
    for i, s in enumerate(w.starts):
        np.testing.assert_array_equal(emg[i], rec.emg[s : s + 4])
        np.testing.assert_array_equal(acc[i], rec.acc[s : s + 4])

    dropped = windows(rec, 4, 2, rest="drop")
    np.testing.assert_array_equal(dropped.starts, [4, 6, 14, 16, 24, 26])
    np.testing.assert_array_equal(dropped.labels, [1, 1, 1, 1, 2, 2])
    np.testing.assert_array_equal(dropped.repetitions, [1, 1, 2, 2, 1, 1])

    # "class": 6 movement windows over 2 movements -> 3 of the 4 rest windows, evenly spread
    balanced = windows(rec, 4, 2, rest="class")
    np.testing.assert_array_equal(balanced.starts, [0, 4, 6, 14, 16, 20, 24, 26, 30])
    assert (balanced.labels == 0).sum() == 3
    assert (windows(rec, 4, 2, rest="class", n_rest=0).labels == 0).sum() == 0
    assert (windows(rec, 4, 2, rest="class", n_rest=99).labels == 0).sum() == 4

    # a window longer than every run: nothing survives
    assert len(windows(rec, 7, 1, rest="keep")) == 0


def test_windows_spanning_a_repetition_change_are_dropped():
    rec = Recording(np.zeros((10, 12)), np.zeros((10, 36)), np.ones(10, int), np.r_[[1] * 5, [2] * 5])
    w = windows(rec, 4, 1)
    np.testing.assert_array_equal(w.starts, [0, 1, 5, 6])
    np.testing.assert_array_equal(w.repetitions, [1, 1, 2, 2])


def test_ms_helper_and_argument_checks():
    assert ms_to_samples(200, 2000) == 400
    assert ms_to_samples(100, DB2_FS) == 200
    with pytest.raises(ValueError):
        ms_to_samples(0.1, 2000)
    rec = _hand_made()
    with pytest.raises(ValueError, match="rest"):
        windows(rec, 4, 2, rest="ignore")
    with pytest.raises(ValueError):
        windows(rec, 0, 2)


# --------------------------------------------------------------------------- split


def _two_subjects(**kwargs) -> list[Recording]:
    return [synthetic_recording(subject=s, seed=s, **kwargs) for s in (1, 2)]


def test_split_by_repetition_per_subject():
    both = concat_windows([windows(r, 50, 25, rest="keep") for r in _two_subjects()])
    train, test = split_by_repetition(both)
    assert set(train.repetitions) == {1, 3, 4, 6}
    assert set(test.repetitions) == {2, 5}
    assert len(train) + len(test) == len(both)  # the synthetic files have repetitions 1..6 only
    for s in (1, 2):  # every subject on both sides, with every movement
        for part in (train, test):
            assert set(part.labels[part.subjects == s]) == {0, 1, 2, 3, 4}
    # the two subjects' windows index their own samples of the stacked signals
    first_len = _two_subjects()[0].n_samples
    assert (both.starts[both.subjects == 2] >= first_len).all()

    custom_train, custom_test = split_by_repetition(both, train=(1, 2), test=(6,))
    assert set(custom_train.repetitions) == {1, 2} and set(custom_test.repetitions) == {6}
    with pytest.raises(ValueError, match="both"):
        split_by_repetition(both, train=(1, 2), test=(2, 5))


# --------------------------------------------------------------------------- normalisation


def _stacked_stats(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    flat = x.reshape(-1, x.shape[-1]).astype(np.float64)
    return flat.mean(0), flat.std(0)


def test_normalisation_is_fitted_on_training_windows_only():
    rec = synthetic_recording(seed=3)
    train, test = split_by_repetition(windows(rec, 40, 10, rest="drop"))
    scaler = ChannelScaler().fit(train)
    mean, sd = _stacked_stats(train.emg)  # overlapping windows count once each, as stacked
    np.testing.assert_allclose(scaler.emg_mean_, mean, rtol=1e-6, atol=1e-12)
    np.testing.assert_allclose(scaler.emg_scale_, sd, rtol=1e-6)
    mean, sd = _stacked_stats(train.acc)
    np.testing.assert_allclose(scaler.acc_mean_, mean, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(scaler.acc_scale_, sd, rtol=1e-6)

    scaled_train = scaler.transform(train)
    for x in (scaled_train.emg, scaled_train.acc):
        m, s = _stacked_stats(x)
        np.testing.assert_allclose(m, 0, atol=1e-4)
        np.testing.assert_allclose(s, 1, atol=1e-4)

    # no leak: change every sample only the test windows cover; the fit does not move
    only_test = (test.coverage() > 0) & (train.coverage() == 0)
    assert only_test.any()
    emg, acc = rec.emg.copy(), rec.acc.copy()
    emg[only_test] += 1.0
    acc[only_test] *= 50.0
    shifted = Recording(emg, acc, rec.restimulus, rec.rerepetition, subject=rec.subject)
    train2, test2 = split_by_repetition(windows(shifted, 40, 10, rest="drop"))
    scaler2 = ChannelScaler().fit(train2)
    for name in ("emg_mean_", "emg_scale_", "acc_mean_", "acc_scale_"):
        np.testing.assert_array_equal(getattr(scaler2, name), getattr(scaler, name))
    # the test split is scaled with the training statistics, not its own
    m, _ = _stacked_stats(scaler2.transform(test2).emg)
    assert (m > 1e4).all()  # +1 V on signals of about 1e-5 V scale
    # fitting on everything would have moved the statistics
    assert not np.allclose(ChannelScaler().fit(concat_windows([train2, test2])).emg_mean_, scaler.emg_mean_)


def test_scaler_requires_fit():
    train, _ = split_by_repetition(windows(_hand_made(), 4, 2))
    with pytest.raises(RuntimeError, match="fit"):
        ChannelScaler().transform(train)


# --------------------------------------------------------------------------- metrics


def test_metrics_match_hand_values_and_sklearn():
    y_true = np.array([0, 0, 1, 1, 2, 2])
    y_pred = np.array([0, 1, 1, 1, 2, 0])
    # F1 per class: 0 -> 2/(2+1+1) = 0.5; 1 -> 4/(4+1+0) = 0.8; 2 -> 2/(2+0+1) = 2/3
    assert accuracy(y_true, y_pred) == pytest.approx(4 / 6)
    assert macro_f1(y_true, y_pred) == pytest.approx((0.5 + 0.8 + 2 / 3) / 3)
    assert accuracy(y_true, y_pred) == pytest.approx(accuracy_score(y_true, y_pred))
    assert macro_f1(y_true, y_pred) == pytest.approx(f1_score(y_true, y_pred, average="macro"))

    # a class that is only predicted scores 0: (0.8 + 0) / 2
    t, p = np.array([1, 1, 1]), np.array([1, 1, 3])
    assert macro_f1(t, p) == pytest.approx(0.4)
    assert macro_f1(t, p) == pytest.approx(f1_score(t, p, average="macro"))
    # explicit labels, one absent from both: its F1 is 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = f1_score(t, p, labels=[1, 3, 5], average="macro", zero_division=0)
    assert macro_f1(t, p, labels=[1, 3, 5]) == pytest.approx(expected) == pytest.approx(0.8 / 3)

    rng = np.random.default_rng(0)
    a, b = rng.integers(0, 5, 200), rng.integers(0, 5, 200)
    assert macro_f1(a, b) == pytest.approx(f1_score(a, b, average="macro"))
    assert macro_f1(torch.as_tensor(a), torch.as_tensor(b)) == pytest.approx(macro_f1(a, b))
    with pytest.raises(ValueError):
        accuracy([1, 2], [1])


# --------------------------------------------------------------------------- tensors


def test_tensors_and_seeded_batches():
    train, test = split_by_repetition(windows(synthetic_recording(seed=4), 32, 16, rest="class"))
    classes = train.classes
    inputs, y = train.to_tensors(classes=classes)
    assert inputs["emg"].shape == (len(train), 32, 12) and inputs["acc"].shape == (len(train), 32, 36)
    assert inputs["emg"].dtype == torch.float32 and y.dtype == torch.int64
    np.testing.assert_array_equal(classes[y.numpy()], train.labels)
    _, raw = train.to_tensors()
    np.testing.assert_array_equal(raw.numpy(), train.labels)

    def run(seed, epoch, **kw):
        return list(train.batches(8, seed=seed, epoch=epoch, classes=classes, **kw))

    a, b, c = run(0, 0), run(0, 0), run(0, 1)
    assert all(torch.equal(x[1], z[1]) and torch.equal(x[0]["emg"], z[0]["emg"]) for x, z in zip(a, b))
    assert not all(torch.equal(x[1], z[1]) for x, z in zip(a, c))
    assert sum(len(t) for _, t in a) == len(train)
    assert all(i["emg"].shape[1:] == (32, 12) and i["acc"].shape[1:] == (32, 36) for i, _ in a)
    # every window once per epoch: the batches hold the same windows as to_tensors
    seen = torch.cat([i["emg"] for i, _ in a]).reshape(len(train), -1)
    whole = inputs["emg"].reshape(len(train), -1)
    assert sorted(map(tuple, seen[:, :3].tolist())) == sorted(map(tuple, whole[:, :3].tolist()))
    assert all(len(t) == 8 for _, t in run(0, 0, drop_last=True))
    ordered = torch.cat([t for _, t in train.batches(8, 0, 0, classes=classes, shuffle=False)])
    assert torch.equal(ordered, y)
    with pytest.raises(ValueError, match="not in classes"):
        test.to_tensors(classes=[1, 2])


# --------------------------------------------------------------------------- planted structure


def _features(w):
    return w.emg.mean(1), w.acc.mean(1)


def _split_scores(structure):
    rec = synthetic_recording(structure, n_movements=2, n_repetitions=20, seed=11)
    w = windows(rec, 40, 20, rest="drop")
    odd, even = tuple(range(1, 21, 2)), tuple(range(2, 21, 2))
    train, test = split_by_repetition(w, train=odd, test=even)
    scaler = ChannelScaler().fit(train)
    train, test = scaler.transform(train), scaler.transform(test)
    (e_tr, a_tr), (e_te, a_te) = _features(train), _features(test)
    scores = {}
    for name, xtr, xte in [
        ("emg", e_tr, e_te),
        ("acc", a_tr, a_te),
        ("both", np.hstack([e_tr, a_tr]), np.hstack([e_te, a_te])),
    ]:
        knn = KNeighborsClassifier(n_neighbors=1).fit(xtr, train.labels)
        scores[name] = accuracy(test.labels, knn.predict(xte))
    return scores


def test_planted_structure_tells_unimodal_from_interaction():
    uni = _split_scores("unimodal")
    assert uni["emg"] > 0.95 and uni["both"] > 0.95
    assert uni["acc"] < 0.75  # ACC carries no gesture information
    inter = _split_scores("interaction")
    assert inter["both"] > 0.95
    assert inter["emg"] < 0.75 and inter["acc"] < 0.75  # each modality alone: about chance

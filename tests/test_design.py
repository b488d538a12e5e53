"""Design matrices: Lanczos resampling, z-scoring, FIR delays and the two presets."""
from __future__ import annotations

import codecs
import math
import re
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
from scipy.integrate import quad

from brainenc import design
from brainenc.design import (
    PRESETS,
    DesignPreset,
    add_delays,
    build_design,
    get_preset,
    lanczos_kernel,
    lanczos_resample,
    run_features,
    zscore_columns,
)
from brainenc.errors import BrainencInputError
from brainenc.io.dataset import Run
from brainenc.io.features import StimulusFeatures
from brainenc.timing import TRGrid, huth_story_grid


def make_run(name: str, grid: TRGrid, trim_start: int = 0, trim_end: int = 0) -> Run:
    return Run(
        subject="S01", name=name, modality="story", stimulus=name, stimulus_path=None,
        tr_grid=grid, trim_start=trim_start, trim_end=trim_end,
        response_paths=(Path(f"{name}.hf5"),),
    )


def plain_lanczos(t: float, f: float, window: int = 3) -> float:
    """The kernel exactly as written in the reference: a closed formula per lag."""
    if t == 0:
        return 1.0
    if abs(f * t) > window:
        return 0.0
    return window * math.sin(math.pi * f * t) * math.sin(math.pi * f * t / window) / (
        math.pi ** 2 * f ** 2 * t ** 2)


# --------------------------------------------------------------------------- kernel

def test_lanczos_kernel_matches_closed_formula():
    f = 0.5  # TR = 2 s: the kernel reaches 6 s on each side
    lags = np.array([0.0, 0.37, -1.3, 2.0, 3.1, -4.4, 5.99, 6.0, -6.0, 6.01, 9.0, -20.0])
    got = lanczos_kernel(lags, cutoff=f, window=3)
    expected = np.array([plain_lanczos(t, f) for t in lags])
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-15)
    assert got[0] == 1.0
    # Zero crossings of sin(pi f t) at multiples of the TR, and nothing beyond the window.
    assert abs(got[3]) < 1e-15
    assert abs(got[7]) < 1e-15 and abs(got[8]) < 1e-15
    assert got[9] == 0.0 and got[10] == 0.0 and got[11] == 0.0
    # Just inside the window the kernel is small but not zero.
    assert got[6] != 0.0


def test_lanczos_kernel_window_parameter():
    f = 1.0
    lags = np.array([0.5, 1.5, 1.99, 2.5])
    got = lanczos_kernel(lags, cutoff=f, window=2)
    expected = [plain_lanczos(t, f, window=2) for t in lags]
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-15)
    assert got[3] == 0.0


def test_resampling_dense_constant_events_gives_density_times_kernel_area():
    # sum_k L(t - k dt) ~ (1/dt) * integral of L = (1 / (f dt)) * int_{-3}^{3} sinc(x) sinc(x/3) dx
    tr, dt, value = 2.0, 0.01, 1.7
    events = np.arange(-20.0, 60.0, dt)
    data = np.full((len(events), 2), value)
    data[:, 1] *= -2.0
    new_times = np.arange(0.0, 40.0, tr) + 0.3
    area, _ = quad(lambda x: math.sin(math.pi * x) * math.sin(math.pi * x / 3) * 3
                   / (math.pi ** 2 * x ** 2) if x != 0 else 1.0, -3, 3, limit=200)
    out = lanczos_resample(data, events, new_times)  # tr from the median spacing
    expected = value * tr / dt * area
    np.testing.assert_allclose(out[:, 0], expected, rtol=1e-6)
    np.testing.assert_allclose(out[:, 1], -2.0 * expected, rtol=1e-6)
    # The sum is not normalised: halving the density halves the output.
    out_sparse = lanczos_resample(data[::2], events[::2], new_times, tr=tr)
    np.testing.assert_allclose(out_sparse[:, 0], expected / 2, rtol=1e-5)


def test_resampling_matches_plain_loop_and_chunking(monkeypatch):
    rng = np.random.default_rng(0)
    events = np.sort(rng.uniform(0, 30, size=40))
    data = rng.standard_normal((40, 3))
    new_times = np.arange(-3.0, 33.0, 1.5)
    for cutoff_mult in (1.0, 0.5):
        f = cutoff_mult / 1.5
        expected = np.array([
            sum(plain_lanczos(t - e, f) * data[i] for i, e in enumerate(events))
            for t in new_times
        ])
        got = lanczos_resample(data, events, new_times, cutoff_mult=cutoff_mult)
        np.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-12)
        # Row chunks give the same result as one kernel matrix.
        monkeypatch.setattr(design, "_MAX_KERNEL_ENTRIES", 7 * len(events))
        np.testing.assert_allclose(
            lanczos_resample(data, events, new_times, cutoff_mult=cutoff_mult), got,
            rtol=1e-12, atol=1e-14)
        monkeypatch.undo()


# --------------------------------------------------------------------------- z-score, delays

def test_zscore_columns_by_hand():
    x = np.array([[1.0, 5.0, 0.0], [3.0, 5.0, 0.0], [5.0, 5.0, 3.0]])
    got = zscore_columns(x)
    # column 0: mean 3, population std sqrt(8/3) -> (-2, 0, 2) / sqrt(8/3)
    s = math.sqrt(1.5)
    np.testing.assert_allclose(got[:, 0], [-s, 0.0, s], rtol=1e-12)
    # column 1 is constant: centred, not NaN
    np.testing.assert_array_equal(got[:, 1], [0.0, 0.0, 0.0])
    # column 2: mean 1, population std sqrt(2) -> (-1, -1, 2) / sqrt(2)
    np.testing.assert_allclose(got[:, 2], np.array([-1.0, -1.0, 2.0]) / math.sqrt(2), rtol=1e-12)


def test_add_delays_by_hand():
    x = np.array([[1, 2], [3, 4], [5, 6]], dtype=float)
    np.testing.assert_array_equal(
        add_delays(x, (1, 2)),
        [[0, 0, 0, 0], [1, 2, 0, 0], [3, 4, 1, 2]],
    )
    np.testing.assert_array_equal(
        add_delays(x, (0, -1)),
        [[1, 2, 3, 4], [3, 4, 5, 6], [5, 6, 0, 0]],
    )
    # A delay as long as the run leaves an all-zero block.
    np.testing.assert_array_equal(add_delays(x, (3,)), np.zeros((3, 2)))
    assert add_delays(x).shape == (3, 8)


def test_presets():
    huth = get_preset("huth")
    assert huth.delays == (1, 2, 3, 4) and huth.lanczos_window == 3 and huth.cutoff_mult == 1.0
    assert huth.delays_across_runs and huth.zscore
    np.testing.assert_allclose(huth.alphas, np.logspace(1, 3, 10) ** 2)
    default = get_preset("default")
    assert not default.delays_across_runs and default.delays == (1, 2, 3, 4)
    assert min(default.alphas) <= 1.0 and max(default.alphas) >= 1e5
    custom = DesignPreset(name="x", delays=[2, 3])
    assert get_preset(custom) is custom and custom.delays == (2, 3)
    assert set(PRESETS) == {"huth", "default"}
    with pytest.raises(ValueError, match="huth"):
        get_preset("nope")


# --------------------------------------------------------------------------- the huth preset

FILLER_LABELS = ["{SP}", "sp", "{LG}", "sentence_start", "br", "{NS}", "SENTENCE_END", "ls", ""]
VOCABULARY = ["The", "dog", "ran", "across", "a", "FIELD", "café", "naïve", "we", "said",
              "it's", "over", "there", "and", "then", "home"]


def story_intervals(seed: int, duration: float) -> list[tuple[float, float, str]]:
    """Contiguous word-tier intervals from 0 to ``duration``: words, fillers, empty gaps."""
    rng = np.random.default_rng(seed)
    intervals, t = [], 0.0
    while t < duration:
        end = min(duration, round(t + rng.uniform(0.15, 0.6), 4))
        if rng.uniform() < 0.3:
            label = FILLER_LABELS[rng.integers(len(FILLER_LABELS))]
        else:
            label = VOCABULARY[rng.integers(len(VOCABULARY))]
        intervals.append((t, end, label))
        t = end
    return intervals


def write_textgrid(path: Path, intervals, encoding: str, short: bool = False) -> None:
    """A two-tier TextGrid (phone tier, then word tier) in Praat's long or short text format."""
    xmax = intervals[-1][1]
    phones = [(0.0, xmax, "")]
    tiers = [("phone", phones), ("word", intervals)]
    if short:
        lines = ['File type = "ooTextFile"', 'Object class = "TextGrid"', "",
                 "0", f"{xmax}", "<exists>", f"{len(tiers)}"]
        for name, ivs in tiers:
            lines += ['"IntervalTier"', f'"{name}"', "0", f"{xmax}", f"{len(ivs)}"]
            for a, b, label in ivs:
                lines += [f"{a}", f"{b}", f'"{label}"']
    else:
        lines = ['File type = "ooTextFile"', 'Object class = "TextGrid"', "",
                 "xmin = 0 ", f"xmax = {xmax} ", "tiers? <exists> ", f"size = {len(tiers)} ",
                 "item []: "]
        for i, (name, ivs) in enumerate(tiers, start=1):
            lines += [f"    item [{i}]:", '        class = "IntervalTier" ',
                      f'        name = "{name}" ', "        xmin = 0 ", f"        xmax = {xmax} ",
                      f"        intervals: size = {len(ivs)} "]
            for j, (a, b, label) in enumerate(ivs, start=1):
                lines += [f"        intervals [{j}]:", f"            xmin = {a} ",
                          f"            xmax = {b} ", f'            text = "{label}" ']
    text = "\n".join(lines) + "\n"
    if encoding == "utf-16":
        path.write_bytes(codecs.BOM_UTF16_BE + text.encode("utf-16-be"))
    else:
        path.write_bytes(text.encode("utf-8"))


# A separate plain implementation of REFERENCE.md section 2 (no brainenc code).

PLAIN_FILLERS = {"sentence_start", "sentence_end", "br", "lg", "ls", "ns", "sp"}


def plain_word_tier(path: Path) -> list[tuple[float, float, str]]:
    raw = path.read_bytes()
    if raw.startswith(codecs.BOM_UTF16_BE) or raw.startswith(codecs.BOM_UTF16_LE):
        text = raw.decode("utf-16")
    else:
        text = raw.decode("utf-8-sig")
    if "item [" in text:  # long format: find the item named "word"
        for item in re.split(r"item \[\d+\]:", text)[1:]:
            if re.search(r'name = "word"', item):
                found = re.findall(
                    r'xmin = ([-\d.eE]+)\s*xmax = ([-\d.eE]+)\s*text = "(.*)"', item)
                return [(float(a), float(b), label) for a, b, label in found]
    else:  # short format: one value per line after the 7 header lines
        values = [line.strip() for line in text.splitlines()]
        pos = 7
        while pos < len(values):
            name, n = values[pos + 1].strip('"'), int(values[pos + 4])
            pos += 5
            rows = values[pos:pos + 3 * n]
            pos += 3 * n
            if name == "word":
                return [(float(rows[3 * k]), float(rows[3 * k + 1]), rows[3 * k + 2][1:-1])
                        for k in range(n)]
    raise AssertionError(f"no word tier in {path}")


def plain_words(path: Path) -> tuple[list[str], list[float]]:
    words, times = [], []
    for start, end, label in plain_word_tier(path):
        word = label.lower()
        core = word.replace("{", "").replace("}", "").replace(" ", "")
        if core == "" or core in PLAIN_FILLERS:
            continue
        words.append(word)
        times.append((start + end) / 2.0)
    return words, times


def plain_embedding(word: str) -> np.ndarray:
    return np.random.default_rng(zlib.crc32(word.encode("utf-8"))).standard_normal(6)


def plain_huth_design(paths: list[Path], n_volumes: list[int]) -> np.ndarray:
    blocks = []
    for path, n in zip(paths, n_volumes):
        words, times = plain_words(path)
        tr_times = [2.0 * k - 10.0 + 1.0 for k in range(n - 5)]
        story = np.zeros((len(tr_times), 6))
        for row, t_tr in enumerate(tr_times):
            for word, t_word in zip(words, times):
                story[row] += plain_lanczos(t_tr - t_word, 1.0 / 2.0) * plain_embedding(word)
        trim = 5
        story = story[5 + trim:-trim]
        mean = story.sum(axis=0) / len(story)
        std = np.sqrt(((story - mean) ** 2).sum(axis=0) / len(story))
        blocks.append((story - mean) / std)
    stacked = np.vstack(blocks)
    delayed = []
    for d in (1, 2, 3, 4):
        shifted = np.zeros_like(stacked)
        shifted[d:] = stacked[:-d]
        delayed.append(shifted)
    return np.hstack(delayed)


def test_huth_preset_equals_plain_reference_implementation(tmp_path):
    from brainenc.io.textgrid import read_word_events

    stories = [  # (name, seed, seconds of speech, N = volumes acquired, encoding, short)
        ("alpha", 1, 72.0, 56, "utf-16", False),
        ("beta", 2, 64.0, 52, "utf-8", False),
        ("gamma", 3, 70.0, 54, "utf-8", True),
    ]
    paths, volumes, features, runs = [], [], [], []
    for name, seed, duration, n, encoding, short in stories:
        path = tmp_path / f"{name}.TextGrid"
        write_textgrid(path, story_intervals(seed, duration), encoding, short=short)
        paths.append(path)
        volumes.append(n)
        events = read_word_events(path)
        data = np.array([plain_embedding(w) for w in events.labels], dtype=np.float32)
        features.append(StimulusFeatures(data=data, times=events.times, path=path))
        runs.append(make_run(name, huth_story_grid(n), trim_start=10, trim_end=5))

    # The fixture is what it claims to be: fillers, empty labels, UTF-16 with a BOM.
    labels = {label for _, _, label in story_intervals(1, 72.0)}
    assert {"", "{SP}", "sp"} <= labels
    assert paths[0].read_bytes()[:2] == codecs.BOM_UTF16_BE

    designs = build_design(features, runs, preset="huth")
    expected = plain_huth_design(paths, volumes)

    assert [d.shape for d in designs] == [(n - 20, 24) for n in volumes]
    assert all(d.dtype == np.float32 for d in designs)
    np.testing.assert_allclose(np.vstack(designs), expected, rtol=0, atol=1e-5)
    # Delays run across stories: story 2's first row carries story 1's last row.
    np.testing.assert_allclose(designs[1][0, :6], expected[volumes[0] - 21, :6], atol=1e-5)
    assert np.abs(designs[1][0, :6]).max() > 0.1


# --------------------------------------------------------------------------- the default preset

def test_default_preset_delays_are_zero_filled_per_run():
    a = np.array([[1.0, 0.0], [2.0, 1.0], [3.0, 0.0], [4.0, 5.0]])
    b = np.array([[2.0, 1.0], [0.0, 1.0], [1.0, 4.0]])
    feats = [StimulusFeatures(a, None, level="tr"), StimulusFeatures(b, None, level="tr")]
    runs = [make_run("r1", TRGrid.from_tr(2.0, 6), 1, 1), make_run("r2", TRGrid.from_tr(2.0, 3))]
    designs = build_design(feats, runs)  # default preset
    assert [d.shape for d in designs] == [(4, 8), (3, 8)]
    za = (a - a.mean(axis=0)) / a.std(axis=0)
    zb = (b - b.mean(axis=0)) / b.std(axis=0)
    for z, d in ((za, designs[0]), (zb, designs[1])):
        for i, delay in enumerate((1, 2, 3, 4)):
            block = d[:, 2 * i:2 * i + 2]
            np.testing.assert_array_equal(block[:min(delay, len(z))], 0.0)
            np.testing.assert_allclose(block[delay:], z[:max(len(z) - delay, 0)], atol=1e-6)
    # With the huth preset the same runs leak: run 2's first row is run 1's last.
    huth = build_design(feats, runs, preset="huth")
    np.testing.assert_allclose(huth[1][0, :2], za[-1], atol=1e-6)
    np.testing.assert_allclose(huth[0], designs[0], atol=1e-6)


def test_event_features_are_resampled_on_untrimmed_grid_then_trimmed():
    rng = np.random.default_rng(5)
    times = np.sort(rng.uniform(0, 40, size=60))
    data = rng.standard_normal((60, 2))
    grid = TRGrid.from_tr(1.5, 30, offset=-3.0)
    run = make_run("r", grid, trim_start=3, trim_end=2)
    raw = np.array([
        sum(plain_lanczos(t - e, 1.0 / 1.5) * data[i] for i, e in enumerate(times))
        for t in grid.times
    ])[3:-2]
    no_z = DesignPreset(name="raw", zscore=False)
    got = run_features(StimulusFeatures(data, times), run, no_z)
    np.testing.assert_allclose(got, raw, rtol=1e-10, atol=1e-12)
    got_z = run_features(StimulusFeatures(data, times), run, "default")
    np.testing.assert_allclose(got_z, (raw - raw.mean(0)) / raw.std(0), rtol=1e-9, atol=1e-10)


def test_width_mismatch_names_the_file(tmp_path):
    good = StimulusFeatures(np.ones((4, 2)), None, level="tr", path=tmp_path / "first.hf5")
    bad = StimulusFeatures(np.ones((3, 3)), None, level="tr", path=tmp_path / "second.hf5")
    runs = [make_run("r1", TRGrid.from_tr(2.0, 4)), make_run("r2", TRGrid.from_tr(2.0, 3))]
    with pytest.raises(BrainencInputError, match="second.hf5") as err:
        build_design([good, bad], runs)
    assert err.value.path == tmp_path / "second.hf5"
    assert "3 columns" in str(err.value) and "have 2" in str(err.value)


def test_tr_level_row_mismatch_names_the_file(tmp_path):
    feats = StimulusFeatures(np.ones((7, 2)), None, level="tr", path=tmp_path / "story.hf5")
    run = make_run("r1", TRGrid.from_tr(2.0, 12), trim_start=3, trim_end=1)
    with pytest.raises(BrainencInputError, match="story.hf5") as err:
        build_design([feats], [run])
    assert "7 rows" in str(err.value) and "8 TRs" in str(err.value)


def test_warns_when_events_miss_the_tr_grid(tmp_path):
    feats = StimulusFeatures(np.ones((3, 2)), np.array([500.0, 501.0, 502.0]),
                             path=tmp_path / "late.hf5")
    run = make_run("r1", TRGrid.from_tr(2.0, 20))
    with pytest.warns(UserWarning, match="late.hf5"):
        designs = build_design([feats], [run])
    np.testing.assert_array_equal(designs[0], 0.0)
    # Events inside the grid raise no warning.
    near = StimulusFeatures(np.ones((3, 2)), np.array([5.0, 6.0, 7.0]))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        build_design([near], [run])

"""MMSA sentiment data, metrics and model configurations (brainenc.tasks.sentiment)."""
from __future__ import annotations

import pickle
import warnings

import numpy as np
import pytest
import torch
from sklearn.metrics import accuracy_score, f1_score

from brainenc.errors import BrainencInputError, BrainencInputWarning
from brainenc.fusion.models import GsiT, MulT
from brainenc.tasks.sentiment import (
    MMSA_DIMS,
    MOSI_METRICS,
    SIMS_METRICS,
    FeatureDims,
    count_parameters,
    gsit_config,
    load_mmsa,
    mosi_metrics,
    mult_config,
    sentiment_metrics,
    sims_metrics,
    synthetic_mmsa,
    weighted_f1,
    write_mmsa,
)
from brainenc.tasks.sentiment.metrics import sims_classes


@pytest.fixture
def mosi_file(tmp_path):
    return write_mmsa(tmp_path / "MOSI" / "Processed" / "unaligned_50.pkl", synthetic_mmsa("mosi"))


def _write_modified(tmp_path, change, dataset="mosi", name="unaligned_50.pkl", **kwargs):
    splits = synthetic_mmsa(dataset, **kwargs)
    change(splits)
    return write_mmsa(tmp_path / dataset.upper() / name, splits)


# --------------------------------------------------------------------------- loading


def test_round_trip_unaligned(mosi_file):
    raw = synthetic_mmsa("mosi")
    data = load_mmsa(mosi_file)
    assert data.dataset == "mosi" and not data.aligned and data.text_kind == "features"
    assert data.dims == FeatureDims(32, 5, 20)
    assert data.seq_lens == (12, 20, 16)
    for split in ("train", "valid", "test"):
        got, ref = data.split(split), raw[split]
        assert len(got) == len(ref["regression_labels"])
        assert got.text.dtype == torch.float32 and got.audio.shape == ref["audio"].shape
        np.testing.assert_array_equal(got.labels.numpy(), ref["regression_labels"])
        np.testing.assert_array_equal(got.audio_lengths.numpy(), ref["audio_lengths"])
        np.testing.assert_array_equal(got.vision_lengths.numpy(), ref["vision_lengths"])
        np.testing.assert_array_equal(got.text_lengths.numpy(), ref["text_bert"][:, 1].sum(1))
        assert got.ids == tuple(ref["id"]) and got.raw_text == tuple(ref["raw_text"])
        assert got.labels_text is None


def test_tokens_aligned_and_sims(tmp_path):
    aligned = write_mmsa(tmp_path / "MOSEI" / "aligned_50.pkl", synthetic_mmsa("mosei", aligned=True))
    data = load_mmsa(aligned, text="tokens")
    assert data.dataset == "mosei" and data.aligned
    assert data.dims == FeatureDims(None, 74, 35)
    assert data.train.text.dtype == torch.int64 and data.train.text.shape[1] == 3
    # aligned files carry no audio/vision lengths: the full padded width is valid
    assert (data.train.audio_lengths == 12).all() and (data.train.vision_lengths == 12).all()
    with pytest.raises(ValueError, match="768"):
        mult_config(data.dims, "mosei")

    sims = write_mmsa(tmp_path / "anything.pkl", synthetic_mmsa("sims"))
    data = load_mmsa(sims)
    assert data.dataset == "sims" and data.label_bound == 1.0   # from the T/A/V label keys
    assert data.dims == FeatureDims(32, 33, 709)
    assert data.train.labels_vision.shape == data.train.labels.shape
    batch = next(data.batches("train", 5))
    assert batch.labels_audio.shape == (5,)


def test_neg_inf_audio_set_to_zero_with_count(tmp_path):
    def plant(splits):
        splits["train"]["audio"][0, 0, :3] = -np.inf
        splits["test"]["audio"][1, 0, 0] = -np.inf

    path = _write_modified(tmp_path, plant)
    with pytest.warns(BrainencInputWarning, match="set 4 -inf audio values to 0"):
        data = load_mmsa(path)
    assert data.n_audio_neg_inf == 4
    assert (data.train.audio[0, 0, :3] == 0).all() and data.test.audio[1, 0, 0] == 0


@pytest.mark.parametrize(
    "change, match",
    [
        (lambda s: s.pop("valid"), "no split 'valid'"),
        (lambda s: s["test"].pop("vision"), "split 'test' has no 'vision'"),
        (lambda s: s["train"].pop("audio_lengths"), "split 'train' has no 'audio_lengths'"),
        (lambda s: s["valid"].update(audio=s["valid"]["audio"][:-1]),
         r"valid\['audio'\] has 15 samples but valid\['regression_labels'\] has 16"),
        (lambda s: s["train"]["audio_lengths"].__setitem__(3, 21),
         r"train\['audio_lengths'\] must lie in \[1, 20\].*sample 3, length 21"),
        (lambda s: s["test"]["vision_lengths"].__setitem__(0, 0),
         r"test\['vision_lengths'\] must lie in \[1, 16\]"),
        (lambda s: s["train"]["vision"].__setitem__((2, 0, 0), np.nan),
         r"train\['vision'\] has 1 NaN or infinite values \(first in sample 2\)"),
        (lambda s: s["train"]["audio"].__setitem__((0, 0, 0), np.inf),
         r"train\['audio'\] has 1 NaN or infinite"),
        (lambda s: s["valid"]["regression_labels"].__setitem__(4, 3.2),
         r"valid\['regression_labels'\] must lie in \[-3, 3\] for MOSI.*sample 4"),
        (lambda s: s["train"].update(text_bert=s["train"]["text_bert"][:, :2]),
         r"train\['text_bert'\] must be \(N, 3, L\)"),
    ],
)
def test_bad_files_name_split_and_key(tmp_path, change, match):
    path = _write_modified(tmp_path, change)
    with pytest.raises(BrainencInputError, match=match) as error:
        load_mmsa(path)
    assert error.value.path == path


def test_bad_files_other(tmp_path, mosi_file):
    with pytest.raises(BrainencInputError, match="no such file"):
        load_mmsa(tmp_path / "missing.pkl")
    (tmp_path / "list.pkl").write_bytes(pickle.dumps([1, 2]))
    with pytest.raises(BrainencInputError, match="holds a list"):
        load_mmsa(tmp_path / "list.pkl")
    # the path names no dataset and the file has no CH-SIMS keys
    plain = write_mmsa(tmp_path / "features.pkl", synthetic_mmsa("mosi"))
    with pytest.raises(BrainencInputError, match="pass dataset="):
        load_mmsa(plain)
    assert load_mmsa(plain, dataset="mosei").dataset == "mosei"
    # MOSI labels reach +-3, outside CH-SIMS's range
    with pytest.raises(BrainencInputError, match=r"must lie in \[-1, 1\] for SIMS"):
        load_mmsa(mosi_file, dataset="sims")
    # an aligned file read as unaligned lacks the lengths
    aligned = write_mmsa(tmp_path / "MOSI" / "aligned_50.pkl", synthetic_mmsa("mosi", aligned=True))
    with pytest.raises(BrainencInputError, match="'audio_lengths'"):
        load_mmsa(aligned, aligned=False)
    with pytest.raises(BrainencInputError, match="aligned data need equal padded lengths"):
        load_mmsa(mosi_file, aligned=True)


def test_batches_deterministic_and_cut(mosi_file):
    data = load_mmsa(mosi_file)
    n = len(data.train)
    first = [b.index for b in data.batches("train", 10, seed=3, epoch=0)]
    again = [b.index for b in data.batches("train", 10, seed=3, epoch=0)]
    other = [b.index for b in data.batches("train", 10, seed=3, epoch=1)]
    assert all(torch.equal(a, b) for a, b in zip(first, again))
    assert not torch.equal(torch.cat(first), torch.cat(other))
    assert sorted(torch.cat(first).tolist()) == list(range(n))
    assert [len(i) for i in first] == [10] * (n // 10) + [n % 10]
    assert len(list(data.batches("train", 10, drop_last=True))) == n // 10
    valid = torch.cat([b.index for b in data.batches("valid", 5)])
    assert valid.tolist() == list(range(len(data.valid)))            # no shuffle outside train
    for batch in data.batches("train", 7):
        assert batch.audio.shape[1] == int(batch.audio_lengths.max())
        assert batch.vision.shape[1] == int(batch.vision_lengths.max())
        assert batch.text.shape[1] == int(batch.text_lengths.max())
        torch.testing.assert_close(batch.audio, data.train.audio[batch.index, : batch.audio.shape[1]])


def test_synthetic_signal_is_linearly_learnable(mosi_file):
    data = load_mmsa(mosi_file)

    def pooled(split):
        parts = []
        for m in ("text", "audio", "vision"):
            x, n = getattr(split, m), getattr(split, f"{m}_lengths")
            parts.append(x.sum(1) / n[:, None])
        return torch.cat(parts, 1).double().numpy()

    x, y = pooled(data.train), data.train.labels.double().numpy()
    w = np.linalg.solve(x.T @ x + 1.0 * np.eye(x.shape[1]), x.T @ y)
    pred = pooled(data.test) @ w
    assert np.corrcoef(pred, data.test.labels.numpy())[0, 1] > 0.8


# --------------------------------------------------------------------------- metrics


def test_mosi_metrics_by_hand():
    labels = np.array([-3.0, -0.5, 0.0, 0.0, 0.5, 1.5, 2.5, 2.0], dtype=np.float32)
    preds = np.array([-3.6, -0.4, 0.0, -0.2, 1.4, 2.5, 3.7, -0.5], dtype=np.float32)
    got = mosi_metrics(torch.from_numpy(preds)[:, None], torch.from_numpy(labels))  # (N, 1) is flattened
    assert tuple(got) == MOSI_METRICS
    # Has0: truth >= 0 = [F F T T T T T T], pred >= 0 = [F F T F T T T F]
    # wrong at 3 and 7 -> 6/8
    assert got["Has0_acc_2"] == pytest.approx(6 / 8)
    # True (support 6): TP 4 (2,4,5,6), FP 0, FN 2 (3,7) -> F1 = 8/10
    # False (support 2): TP 2 (0,1), FP 2 (3,7), FN 0 -> F1 = 4/6
    # weighted: (6 * 8/10 + 2 * 4/6) / 8 = 23/30
    assert got["Has0_F1_score"] == pytest.approx(23 / 30)
    # Non0 drops the labels equal to 0 (samples 2, 3): samples 0 1 4 5 6 7
    # truth > 0 = [F F T T T T], pred > 0 = [F F T T T F] -> 5/6
    assert got["Non0_acc_2"] == pytest.approx(5 / 6)
    # True (support 4): TP 3, FP 0, FN 1 -> 6/7; False (support 2): TP 2, FP 1, FN 0 -> 4/5
    # weighted: (4 * 6/7 + 2 * 4/5) / 6 = 88/105
    assert got["Non0_F1_score"] == pytest.approx(88 / 105)
    # Acc-7: clip to [-3, 3], round half to even
    # labels -> [-3, -0, 0, 0, 0, 2, 2, 2]   (-0.5 -> -0, 0.5 -> 0, 1.5 -> 2, 2.5 -> 2)
    # preds  -> [-3, -0, 0, -0, 1, 2, 3, -0] (-3.6 -> -3, 2.5 -> 2, 3.7 -> 3)
    # equal at 0 1 2 3 5 -> 5/8 (half away from zero would give 3/8: samples 1 and 5 differ)
    assert got["Mult_acc_7"] == pytest.approx(5 / 8)
    # Acc-5: clip to [-2, 2] (MMSA's range for 5 classes), then round
    # labels -> [-2, -0, 0, 0, 0, 2, 2, 2], preds -> [-2, -0, 0, -0, 1, 2, 2, -0]
    # equal at 0 1 2 3 5 6 -> 6/8 (clipping to [-3, 3] instead would give 5/8)
    assert got["Mult_acc_5"] == pytest.approx(6 / 8)
    # MAE: |d| = 0.6 0.1 0 0.2 0.9 1.0 1.2 2.5 -> 6.5 / 8
    assert got["MAE"] == pytest.approx(0.8125, abs=1e-6)
    assert got["Corr"] == pytest.approx(np.corrcoef(preds, labels)[0, 1])
    # Pearson by hand: a = [1 2 3], b = [1 3 2]: deviations [-1 0 1], [-1 1 0] -> 1 / sqrt(2 * 2)
    assert mosi_metrics([1.0, 2.0, 3.0], [1.0, 3.0, 2.0])["Corr"] == pytest.approx(0.5)


def test_sims_metrics_by_hand():
    labels = np.array([-1.0, -0.8, -0.2, 0.0, 0.2, 0.6, 1.0, 0.4], dtype=np.float32)
    preds = np.array([-1.3, -0.7, -0.1, 0.1, 0.1, 0.8, 1.5, 0.0], dtype=np.float32)
    got = sentiment_metrics(torch.from_numpy(preds), torch.from_numpy(labels), "SIMS")
    assert tuple(got) == SIMS_METRICS
    # preds clipped to [-1, 1]: [-1, -0.7, -0.1, 0.1, 0.1, 0.8, 1, 0]; bins are (lower, upper]
    # 2 classes, edge 0: labels [0 0 0 0 1 1 1 1], preds [0 0 0 1 1 1 1 0] -> wrong at 3, 7
    assert got["Mult_acc_2"] == pytest.approx(6 / 8)
    # class 0 (support 4): TP 3 FP 1 FN 1 -> 6/8; class 1 the same -> weighted 0.75
    assert got["F1_score"] == pytest.approx(0.75)
    # 3 classes, edges -0.1, 0.1: labels [0 0 0 1 2 2 2 2]
    # preds [0 0 0 1 1 2 2 1] (-0.1 -> class 0 and 0.1 -> class 1: edges close the lower bin)
    # wrong at 4, 7 -> 6/8
    assert got["Mult_acc_3"] == pytest.approx(6 / 8)
    # 5 classes, edges -0.7 -0.1 0.1 0.7: labels [0 0 1 2 3 3 4 3], preds [0 0 1 2 2 4 4 2]
    # wrong at 4, 5, 7 -> 5/8
    assert got["Mult_acc_5"] == pytest.approx(5 / 8)
    # MAE of the clipped values: 0 0.1 0.1 0.1 0.1 0.2 0 0.4 -> 1.0 / 8 (unclipped: 1.8 / 8)
    assert got["MAE"] == pytest.approx(0.125, abs=1e-6)
    assert got["Corr"] == pytest.approx(np.corrcoef(np.clip(preds, -1, 1), labels)[0, 1])


def test_sims_bins_compare_in_float32():
    # float32(0.1) > 0.1 in float64, but MMSA compares float32 values with float32 edges
    x = np.array([0.1, -0.1, 0.7, -0.7, 0.0], dtype=np.float32)
    assert sims_classes(x, 3).tolist() == [1, 0, 2, 0, 1]
    assert sims_classes(x, 5).tolist() == [2, 1, 3, 0, 2]
    assert sims_classes(x, 2).tolist() == [1, 0, 1, 0, 0]


def test_metrics_agree_with_sklearn():
    rng = np.random.default_rng(0)
    labels = np.round(rng.uniform(-3, 3, 200) / 0.2) * 0.2
    labels[:10] = 0.0
    preds = labels + rng.normal(0, 1.2, 200)
    got = mosi_metrics(preds, labels)
    l32, p32 = labels.astype(np.float32), preds.astype(np.float32)
    nz = l32 != 0
    assert got["Has0_acc_2"] == pytest.approx(accuracy_score(l32 >= 0, p32 >= 0))
    assert got["Has0_F1_score"] == pytest.approx(f1_score(l32 >= 0, p32 >= 0, average="weighted"))
    assert got["Non0_acc_2"] == pytest.approx(accuracy_score(l32[nz] > 0, p32[nz] > 0))
    assert got["Non0_F1_score"] == pytest.approx(
        f1_score(l32[nz] > 0, p32[nz] > 0, average="weighted")
    )
    a7 = accuracy_score(np.round(np.clip(l32, -3, 3)), np.round(np.clip(p32, -3, 3)))
    assert got["Mult_acc_7"] == pytest.approx(a7)
    # multi-class, with a class never predicted (sklearn scores it 0)
    y_true = rng.integers(0, 5, 100)
    y_pred = np.where(y_true == 4, 3, y_true)
    y_pred[:20] = rng.integers(0, 4, 20)
    assert weighted_f1(y_true, y_pred) == pytest.approx(
        f1_score(y_true, y_pred, average="weighted", zero_division=0)
    )
    s = sims_metrics(preds / 3, labels / 3)
    c_true = sims_classes(np.clip((labels / 3).astype(np.float32), -1, 1), 2)
    c_pred = sims_classes(np.clip((preds / 3).astype(np.float32), -1, 1), 2)
    assert s["F1_score"] == pytest.approx(f1_score(c_true, c_pred, average="weighted"))


def test_metrics_edge_cases():
    got = mosi_metrics([0.5, -0.5], [0.0, 0.0])     # every label 0: Non0 undefined
    assert np.isnan(got["Non0_acc_2"]) and np.isnan(got["Corr"])
    with pytest.raises(ValueError, match="same number"):
        mosi_metrics([1.0, 2.0], [1.0])
    with pytest.raises(ValueError, match="NaN"):
        sims_metrics([np.nan], [0.0])
    with pytest.raises(ValueError, match="dataset"):
        sentiment_metrics([1.0], [1.0], "iemocap")


# --------------------------------------------------------------------------- configurations


def test_configs_follow_mmsa_and_gsit():
    mosi = mult_config(MMSA_DIMS["mosi"], "mosi")
    assert mosi == dict(text_dim=768, audio_dim=5, vision_dim=20, dim=50, n_layers=4, n_heads=10,
                        out_dim=1, ff_mult=4, dropout=0.2, causal=True)
    mosei = mult_config(MMSA_DIMS["mosei"], "MOSEI")
    assert (mosei["audio_dim"], mosei["vision_dim"], mosei["dim"], mosei["n_heads"]) == (74, 35, 30, 6)
    assert mosei["dropout"] == 0.0
    sims = mult_config((768, 33, 709), "sims")
    assert (sims["dim"], sims["n_heads"], sims["n_layers"], sims["dropout"]) == (50, 10, 2, 0.1)
    for ds in ("mosi", "mosei", "sims"):
        g = gsit_config(MMSA_DIMS[ds], ds)
        assert (g["dim"], g["n_heads"], g["n_layers"], g["dropout"]) == (128, 4, 4, 0.2)
        assert "causal" not in g
    with pytest.raises(ValueError, match="dataset"):
        mult_config(MMSA_DIMS["mosi"], "iemocap")


@pytest.mark.parametrize("dataset", ["mosi", "mosei", "sims"])
def test_gsit_has_one_third_of_mult_encoder_parameters(dataset):
    dims = MMSA_DIMS[dataset]
    mult = MulT(**mult_config(dims, dataset))
    width = {k: mult_config(dims, dataset)[k] for k in ("dim", "n_heads", "n_layers")}
    gsit = GsiT(**{**gsit_config(dims, dataset), **width})
    assert count_parameters(mult) == 3 * count_parameters(gsit)
    assert count_parameters(mult, encoder_only=False) > count_parameters(mult)


def test_one_third_at_gsit_width_and_forward(mosi_file):
    data = load_mmsa(mosi_file)
    gsit = GsiT(**gsit_config(data.dims, "mosi"), backend="block").eval()
    width = {k: gsit_config(data.dims, "mosi")[k] for k in ("dim", "n_heads", "n_layers")}
    mult = MulT(**{**mult_config(data.dims, "mosi"), **width}, backend="block").eval()
    assert count_parameters(mult) == 3 * count_parameters(gsit)
    mult_mmsa = MulT(**mult_config(data.dims, "mosi"), backend="block").eval()
    batch = next(data.batches("train", 6, seed=1))
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("error")
        for model in (gsit, mult_mmsa):
            out = model(**batch.model_inputs())
            assert out.shape == (6, 1) and torch.isfinite(out).all()

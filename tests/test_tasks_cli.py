"""``brainenc task train|eval|isolate`` on NinaPro DB2 files in the real format."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from brainenc.cli import main
from brainenc.tasks.gestures import synthetic_recording, write_ninapro_db2
from safety import assert_refused

SPEC = """\
task = "gestures"
out = "run"
seeds = [0, 1]

[data]
files = ["S1_E1_A1.mat"]
window_ms = 100
stride_ms = 50
token_ms = 10

[model]
name = "{model}"
{model_options}

[train]
epochs = 12
lr = 3e-3
patience = 12
"""


def _spec(root: Path, structure: str = "unimodal", model: str = "transformer",
          model_options: str = "dim = 16\nn_layers = 2\nn_heads = 2", extra: str = "",
          n_movements: int = 4, movement_samples: int = 600,
          block_samples: int | None = None) -> Path:
    recording = synthetic_recording(structure, n_movements=n_movements, n_repetitions=6,
                                    movement_samples=movement_samples, rest_samples=200,
                                    signal=1.5, seed=1, block_samples=block_samples)
    write_ninapro_db2(root / "S1_E1_A1.mat", recording)
    path = root / "spec.toml"
    path.write_text(SPEC.format(model=model, model_options=model_options) + extra, encoding="utf-8")
    return path


@pytest.mark.slow
def test_train_eval_isolate_on_planted_gestures(tmp_path, capsys):
    spec = _spec(tmp_path)
    assert main(["task", "train", str(spec), "--quiet"]) == 0
    printed = capsys.readouterr().out
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    # 4 movements: chance is 0.25; both seeds learn the planted EMG patterns
    assert all(m["accuracy"] > 0.8 for m in summary["per_seed"].values()), summary
    assert summary["mean"]["accuracy"] > 0.8 and "accuracy:" in printed and "±" in printed
    for seed in (0, 1):
        lines = (tmp_path / "run" / f"seed-{seed}" / "metrics.jsonl").read_text().splitlines()
        assert len(lines) == 12 and "macro_f1" in json.loads(lines[0])
    # the noise test: the planted information is in the EMG only
    assert main(["task", "eval", str(spec), "--noise", "acc"]) == 0
    kept = capsys.readouterr().out
    assert main(["task", "eval", str(spec), "--noise", "emg"]) == 0
    lost = capsys.readouterr().out
    acc_kept = float(kept.split("accuracy:")[1].split("±")[0])
    acc_lost = float(lost.split("accuracy:")[1].split("±")[0])
    assert acc_kept > 0.8 and acc_lost < 0.45
    assert main(["task", "isolate", str(spec)]) == 0
    report = json.loads((tmp_path / "run" / "isolation.json").read_text())
    for entry in report.values():
        assert entry["interaction_share"] < 0.1 and entry["main_share"]["acc"] < 0.1
        assert len(entry["layers"]) == 2


@pytest.mark.slow
def test_isolate_attributes_a_planted_interaction_to_the_two_modalities_together(tmp_path, capsys):
    """The gesture is the XOR of an EMG pattern and an ACC pattern, drawn again every 100 ms
    (one window each): neither modality alone says anything. Measured: test accuracy 1.0,
    interaction shares 1.04 and 0.97, cross-modal share of the first layer 0.76 and 0.81."""
    spec = _spec(tmp_path, "interaction", n_movements=2, movement_samples=2000, block_samples=200)
    spec.write_text(spec.read_text().replace("stride_ms = 50", "stride_ms = 100")
                    .replace("epochs = 12", "epochs = 20").replace("patience = 12", "patience = 20"))
    assert main(["task", "train", str(spec), "--quiet"]) == 0
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert all(m["accuracy"] > 0.9 for m in summary["per_seed"].values()), summary  # chance 0.5
    capsys.readouterr()
    assert main(["task", "isolate", str(spec)]) == 0
    assert "interaction share" in capsys.readouterr().out
    report = json.loads((tmp_path / "run" / "isolation.json").read_text())
    for entry in report.values():
        assert entry["interaction_share"] > 0.5
        assert min(entry["main_share"].values()) > 0.5       # the decision needs both
        first, last = entry["layers"]
        assert first["cross_modal_share"] > 0.5
        # the last layer's modality tokens do not reach the CLS token: no effect, no share
        assert last["cross_modal_share"] is None and max(last["effect"].values()) == 0.0


def test_a_second_train_resumes_and_trains_nothing_more(tmp_path, capsys):
    spec = _spec(tmp_path, model="mlp", model_options="hidden = 32")
    spec.write_text(spec.read_text().replace("seeds = [0, 1]", "seeds = [0]").replace(
        "epochs = 12", "epochs = 3"))
    assert main(["task", "train", str(spec), "--quiet"]) == 0
    first = (tmp_path / "run" / "seed-0" / "metrics.jsonl").read_text()
    assert main(["task", "train", str(spec), "--quiet"]) == 0
    assert (tmp_path / "run" / "seed-0" / "metrics.jsonl").read_text() == first


@pytest.mark.parametrize("edit, fragments", [
    (("name = \"transformer\"", "name = \"transfomer\""), ("spec.toml", "[model] name", "transfomer")),
    (("epochs = 12", "epochs = 0"), ("spec.toml", "[train]", "epochs")),
    (("seeds = [0, 1]", "seeds = [0, 0]"), ("spec.toml", "seeds")),
    (("task = \"gestures\"", "task = \"gesture\""), ("spec.toml", "task", "gestures")),
    (("window_ms = 100", "window_ms = 100\nwindow = 3"), ("spec.toml", "[data]", "window")),
])
def test_bad_specs_are_refused_naming_the_file_and_field(tmp_path, capsys, edit, fragments):
    spec = _spec(tmp_path)
    spec.write_text(spec.read_text().replace(*edit))
    assert_refused(capsys, main(["task", "train", str(spec)]), *fragments)
    assert not (tmp_path / "run").exists()


def test_a_mat_file_without_restimulus_is_refused(tmp_path, capsys):
    from scipy.io import loadmat, savemat

    spec = _spec(tmp_path)
    content = {k: v for k, v in loadmat(tmp_path / "S1_E1_A1.mat").items()
               if not k.startswith("__") and k != "restimulus"}
    savemat(tmp_path / "S1_E1_A1.mat", content)
    assert_refused(capsys, main(["task", "train", str(spec)]), "S1_E1_A1.mat", "restimulus")
    assert not (tmp_path / "run").exists()


def test_out_holding_other_files_is_refused(tmp_path, capsys):
    spec = _spec(tmp_path)
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "notes.txt").write_text("mine")
    assert_refused(capsys, main(["task", "train", str(spec)]), "files brainenc did not write")
    assert (tmp_path / "run" / "notes.txt").read_text() == "mine"


@pytest.mark.slow
@pytest.mark.parametrize("model", ["mult", "gsit"])
def test_sentiment_models_learn_a_planted_mmsa_file(tmp_path, capsys, model):
    from brainenc.tasks.sentiment import synthetic_mmsa, write_mmsa

    write_mmsa(tmp_path / "mosi" / "unaligned_50.pkl",
               synthetic_mmsa("mosi", n_samples=(128, 32, 32), seed=0))
    spec = tmp_path / "spec.toml"
    spec.write_text(f'task = "sentiment"\nout = "run"\nseeds = [0]\n[data]\nfile = '
                    f'"mosi/unaligned_50.pkl"\nbatch_size = 32\n[model]\nname = "{model}"\n'
                    'dim = 8\nn_heads = 2\nn_layers = 1\n[train]\nepochs = 8\nlr = 3e-3\n'
                    'patience = 8\n', encoding="utf-8")
    assert main(["task", "train", str(spec), "--quiet"]) == 0
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    test = summary["per_seed"]["0"]
    # the labels are a planted latent in [-3, 3]: predicting 0 gives Corr 0 and Non0_acc_2 ~0.5
    assert test["Corr"] > 0.8 and test["Non0_acc_2"] > 0.8, test
    lines = (tmp_path / "run" / "seed-0" / "metrics.jsonl").read_text().splitlines()
    assert "MAE" in json.loads(lines[0])


def test_sentiment_spec_naming_an_unknown_model_is_refused(tmp_path, capsys):
    from brainenc.tasks.sentiment import synthetic_mmsa, write_mmsa

    write_mmsa(tmp_path / "mosi.pkl", synthetic_mmsa("mosi", n_samples=(8, 4, 4), seed=0))
    spec = tmp_path / "spec.toml"
    spec.write_text('task = "sentiment"\nout = "run"\n[data]\nfile = "mosi.pkl"\n[model]\n'
                    'name = "mult_t"\n[train]\nepochs = 1\n', encoding="utf-8")
    assert_refused(capsys, main(["task", "train", str(spec)]), "spec.toml", "[model] name",
                   "mult_t", "gsit")


def _retrieval_spec(root: Path, arrays) -> Path:
    from brainenc.tasks.retrieval import write_pairs

    write_pairs(root / "pairs.npz", arrays)
    spec = root / "spec.toml"
    spec.write_text('task = "retrieval"\nout = "run"\nseeds = [0]\n[data]\nfile = "pairs.npz"\n'
                    'batch_size = 32\n[model]\nname = "dual_branch"\ndim = 16\nn_tokens = 8\n'
                    'n_layers = 1\nn_heads = 2\ndropout = 0.0\n[train]\nepochs = 10\nlr = 3e-3\n'
                    'patience = 10\n', encoding="utf-8")
    return spec


@pytest.mark.slow
def test_retrieval_learns_planted_pairs_in_both_directions(tmp_path, capsys):
    from brainenc.tasks.retrieval import synthetic_pairs

    spec = _retrieval_spec(tmp_path, synthetic_pairs(n=(256, 64, 64), seed=0))
    assert main(["task", "train", str(spec), "--quiet"]) == 0
    test = json.loads((tmp_path / "run" / "summary.json").read_text())["per_seed"]["0"]
    # 64 test pairs: chance R@1 is 1/64 and the chance mean rank 32.5
    assert test["v2t/R@1"] > 0.4 and test["t2v/R@1"] > 0.4, test
    assert test["MnR"] < 4


@pytest.mark.parametrize("edit, fragment", [
    ("rows", "test/video has 64 rows but test/text has 63"),
    ("nan", "train/text holds NaN"),
    ("lengths", "train/video_lengths must hold one length in [1, 6]"),
    ("missing", "no 'valid/video' array"),
])
def test_bad_paired_feature_files_are_refused(tmp_path, capsys, edit, fragment):
    from brainenc.tasks.retrieval import synthetic_pairs

    arrays = synthetic_pairs(n=(32, 8, 64), seed=0)
    if edit == "rows":
        arrays["test/text"] = arrays["test/text"][:63]
        arrays["test/text_lengths"] = arrays["test/text_lengths"][:63]
    elif edit == "nan":
        arrays["train/text"][3, 0, 0] = float("nan")
    elif edit == "lengths":
        arrays["train/video_lengths"][0] = 9
    else:
        del arrays["valid/video"]
    spec = _retrieval_spec(tmp_path, arrays)
    assert_refused(capsys, main(["task", "train", str(spec)]), "pairs.npz", fragment)
    assert not (tmp_path / "run").exists()



def test_sentiment_with_a_fine_tuned_text_encoder(tmp_path, capsys):
    import torch
    import transformers

    from brainenc.tasks.runner import make_task
    from brainenc.tasks.sentiment import synthetic_mmsa, write_mmsa
    from brainenc.tasks.spec import load_spec
    from brainenc.tasks.training import build_optimizer, load_checkpoint

    torch.manual_seed(0)
    config = transformers.BertConfig(vocab_size=30522, hidden_size=16, num_hidden_layers=1,
                                     num_attention_heads=2, intermediate_size=32)
    transformers.BertModel(config).save_pretrained(tmp_path / "tiny-bert")
    write_mmsa(tmp_path / "mosi.pkl", synthetic_mmsa("mosi", n_samples=(32, 8, 8), seed=0))
    spec = tmp_path / "spec.toml"
    spec.write_text('task = "sentiment"\nout = "run"\nseeds = [0]\n[data]\nfile = "mosi.pkl"\n'
                    'batch_size = 16\n[model]\nname = "gsit"\ntext_encoder = "tiny-bert"\ndim = 8\n'
                    'n_heads = 2\nn_layers = 1\n[train]\nepochs = 2\nlr = 1e-3\n'
                    'lr_groups = {"text_encoder." = 0.1}\n', encoding="utf-8")
    loaded = load_spec(spec)
    model = make_task(loaded).build_model()
    groups = {g["name"] if "name" in g else i: g["lr"]
              for i, g in enumerate(build_optimizer(model, loaded.train).param_groups)}
    assert sorted(groups.values()) == pytest.approx([1e-4, 1e-3])
    before = {k: v.clone() for k, v in model.text_encoder.state_dict().items()}
    assert main(["task", "train", str(spec), "--quiet"]) == 0
    after = load_checkpoint(tmp_path / "run" / "seed-0" / "last.pt")["model"]
    changed = [k for k, v in before.items()
               if k.startswith("embeddings.word") or "layer.0" in k
               if not torch.equal(v, after[f"text_encoder.{k}"])]
    assert changed, "the text encoder was not fine-tuned"
    assert "MAE" in json.loads((tmp_path / "run" / "summary.json").read_text())["mean"]


def test_rollingq_in_a_spec_logs_its_statistics_every_epoch(tmp_path, capsys):
    spec = _spec(tmp_path, extra="\n[rollingq]\nbeta = 0.0\nsigma = 1.0\nmax_rotations = 2\n")
    spec.write_text(spec.read_text().replace("seeds = [0, 1]", "seeds = [0]").replace(
        "epochs = 12", "epochs = 3"))
    assert main(["task", "train", str(spec), "--quiet"]) == 0
    lines = [json.loads(line) for line in
             (tmp_path / "run" / "seed-0" / "metrics.jsonl").read_text().splitlines()]
    assert len(lines) == 3
    for line in lines:
        masses = line["rollingq/cls_mass_emg"] + line["rollingq/cls_mass_acc"]
        # the rest of the CLS query's mass is on the CLS token itself
        assert abs(line["rollingq/air"]) <= 2 and 0.5 < masses <= 1.0 + 1e-6
    # beta = 0: every epoch rotates until the budget of 2 rotations is spent
    assert [line["rollingq/n_rotations"] for line in lines] == [1.0, 2.0, 2.0]
    assert main(["task", "eval", str(spec), "--noise", "emg"]) == 0


def test_rollingq_needs_a_cls_transformer(tmp_path, capsys):
    spec = _spec(tmp_path, model="mlp", model_options="hidden = 8", extra="\n[rollingq]\nbeta = 0.1\n")
    assert_refused(capsys, main(["task", "train", str(spec)]), "spec.toml", "[rollingq]", "CLS")
    assert not (tmp_path / "run").exists()

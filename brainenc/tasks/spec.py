"""Task specifications: one TOML file says which task, data, model, training and seeds.

::

    task = "gestures"            # gestures | sentiment | retrieval
    out = "runs/db2"             # relative to this file
    seeds = [0, 1, 2]

    [data]                       # the task's data settings (docs/tasks.md)
    files = ["S1_E1_A1.mat"]

    [model]
    name = "transformer"         # the task's model names
    dim = 32

    [train]                      # brainenc.tasks.training.TrainConfig fields
    epochs = 30
    lr = 1e-3

    [rollingq]                   # optional (attention models with a CLS token)
    beta = 0.1

Every error names the file and the field (``[model] name``) and says what was
expected; nothing is trained before the whole file has been checked.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from brainenc.errors import BrainencInputError
from brainenc.io.toml_spec import read_toml_spec
from brainenc.tasks.training import TrainConfig

#: Top-level keys of a spec.
SPEC_KEYS: tuple[str, ...] = ("task", "out", "seeds", "data", "model", "train", "rollingq")
TASKS: tuple[str, ...] = ("gestures", "sentiment", "retrieval")


@dataclass
class TaskSpec:
    """A checked task specification (paths resolved against the spec's folder)."""

    path: Path
    task: str
    out: Path
    seeds: list[int]
    data: dict[str, Any]
    model: dict[str, Any]
    train: TrainConfig
    rollingq: dict[str, Any] | None = None
    raw: dict[str, Any] = field(default_factory=dict)

    def resolve(self, value: str | Path) -> Path:
        """A path of the spec, relative to the spec file's folder unless absolute."""
        value = Path(value).expanduser()
        return value if value.is_absolute() else (self.path.parent / value).resolve()

    def fail(self, where: str, problem: str) -> BrainencInputError:
        """The error of a field of the spec."""
        return BrainencInputError(self.path, f"{where}: {problem}")

    def check_data_keys(self, allowed: tuple[str, ...]) -> None:
        """Refuse keys of ``[data]`` the task does not read."""
        unknown = sorted(set(self.data) - set(allowed))
        if unknown:
            raise self.fail("[data]", f"unknown keys {unknown}; expected some of {list(allowed)}")

    def data_file(self, key: str, what: str) -> Path:
        """The existing file that ``[data] key`` names (``what`` says what it should be)."""
        if not isinstance(self.data.get(key), str):
            raise self.fail(f"[data] {key}", f"expected {what}")
        path = self.resolve(self.data[key])
        if not path.is_file():
            raise self.fail(f"[data] {key}", f"not found: {path}")
        return path

    def model_name(self, choices) -> str:
        """``[model] name``, one of ``choices``."""
        name = self.model.get("name")
        if name not in choices:
            raise self.fail("[model] name", f"unknown model {name!r}; expected one of {sorted(choices)}")
        return name


def _table(content: dict, key: str, path: Path, required: bool = True) -> dict[str, Any]:
    value = content.get(key)
    if value is None:
        if required:
            raise BrainencInputError(path, f"[{key}] is missing")
        return {}
    if not isinstance(value, dict):
        raise BrainencInputError(path, f"{key} must be a table ([{key}]), got {type(value).__name__}")
    return dict(value)


def load_spec(path: str | Path) -> TaskSpec:
    """Read and check a task specification.

    Raises
    ------
    BrainencInputError
        The file is missing or not TOML, a key is unknown or missing, or a
        value has the wrong type (the message names the field).
    """
    path, content = read_toml_spec(path, SPEC_KEYS, "task specification")
    task = content.get("task")
    if task not in TASKS:
        raise BrainencInputError(path, f"task: expected one of {list(TASKS)}, got {task!r}")
    seeds = content.get("seeds", [0])
    if (not isinstance(seeds, list) or not seeds
            or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in seeds)
            or len(set(seeds)) != len(seeds)):
        raise BrainencInputError(path, f"seeds: expected a list of distinct non-negative integers, "
                                       f"got {seeds!r}")
    out = content.get("out")
    if not isinstance(out, str) or not out:
        raise BrainencInputError(path, "out: expected the output folder (a string)")
    train_table = _table(content, "train", path)
    try:
        config = TrainConfig.from_dict({**train_table, "seed": seeds[0]})
    except (ValueError, TypeError) as error:
        raise BrainencInputError(path, f"[train] {error}") from None
    model = _table(content, "model", path)
    if not isinstance(model.get("name"), str):
        raise BrainencInputError(path, "[model] name: expected a model name (a string)")
    rollingq = content.get("rollingq")
    if rollingq is not None and not isinstance(rollingq, dict):
        raise BrainencInputError(path, "rollingq must be a table ([rollingq])")
    spec = TaskSpec(path, task, Path(), list(seeds), _table(content, "data", path), model, config,
                    None if rollingq is None else dict(rollingq), content)
    spec.out = spec.resolve(out)
    return spec

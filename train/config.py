"""TOML run configuration for `cortexedge train --config run.toml`.

Three optional tables:

    [model]   constructor kwargs of the model (e.g. hidden = 64)
    [train]   fit settings (epochs, batch_size, lr, weight_decay, patience, seed,
              augment_poisson, grad_clip, train_stride, max_seconds, task, monitor)
    [data]    windowing parameters (bin_width, num_steps for binned windows; length for sliding)

Every key is checked: an unknown table or key, or a value of the wrong type, raises a
CortexEdgeError naming it. [model] and [data] keys are checked against the chosen model
(`check_model_keys`, `TrainingSpec.data_for`), [train] keys when the file is read.
"""

from __future__ import annotations

import inspect
import os
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path

from cortexedge.errors import CortexEdgeError
from cortexedge.train.fit import Settings

SECTIONS = ("model", "train", "data")
# [train] keys beyond the Settings fields, with their types
EXTRA_TRAIN_KEYS = {"task": str, "monitor": str}
_NUMBER_TYPES = {"int": (int,), "float": (int, float), "float | None": (int, float)}


@dataclass
class RunConfig:
    """The three tables of a run configuration (each may be empty)."""

    model: dict = field(default_factory=dict)
    train: dict = field(default_factory=dict)
    data: dict = field(default_factory=dict)


def train_key_types() -> dict[str, tuple[type, ...]]:
    """The accepted [train] keys and the Python types their values may have."""
    types = {f.name: _NUMBER_TYPES[str(f.type)] for f in fields(Settings)}
    return {**types, **{k: (t,) for k, t in EXTRA_TRAIN_KEYS.items()}}


def load_config(path: str | os.PathLike) -> RunConfig:
    """Read a TOML run configuration and check its tables and [train] keys."""
    path = Path(path)
    if not path.is_file():
        raise CortexEdgeError(f"config file not found: {path}")
    try:
        raw = tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise CortexEdgeError(f"{path}: not valid TOML ({e})") from None
    for name, value in raw.items():
        if name not in SECTIONS:
            raise CortexEdgeError(
                f"{path}: unknown key '{name}' (expected tables {', '.join(SECTIONS)})"
            )
        if not isinstance(value, dict):
            raise CortexEdgeError(f"{path}: '{name}' must be a table [{name}]")
    cfg = RunConfig(**{k: dict(v) for k, v in raw.items()})
    types = train_key_types()
    for key, value in cfg.train.items():
        if key not in types:
            raise CortexEdgeError(f"{path}: unknown key 'train.{key}' (known: {', '.join(types)})")
        if isinstance(value, bool) or not isinstance(value, types[key]):
            expected = " or ".join(t.__name__ for t in types[key])
            raise CortexEdgeError(f"{path}: train.{key} must be {expected}, got {value!r}")
    return cfg


def check_model_keys(cfg: RunConfig, model_cls: type) -> None:
    """Check [model] keys against the model's constructor ([data] keys are checked by the
    training spec, `TrainingSpec.data_for`)."""
    params = inspect.signature(model_cls).parameters
    for key in cfg.model:
        if key not in params:
            raise CortexEdgeError(
                f"unknown key 'model.{key}' for {model_cls.__name__} (known: {', '.join(params)})"
            )

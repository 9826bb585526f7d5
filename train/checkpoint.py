"""Safe checkpoints: weights as safetensors plus a JSON config that says how to rebuild the model.

A checkpoint folder holds `model.safetensors` (every parameter and buffer of the state dict) and
`config.json` (registry name, constructor arguments (`registry.constructor_args`), and whatever the
caller adds: preprocessing, data fingerprint, seed). Both are written to a temporary name in the
same folder and renamed, so a crash never leaves a half-written file. Loading never unpickles.

`config.json` carries `sha256`, a seal over the weights file and every other config entry:
a flipped bit in a tensor or an edited entry (quantization bits 8 -> 4) is refused at load.
Before anything is allocated, the model the config describes is built on torch's meta device
and its size compared with the weights file, so an edited `hidden: 200000` is one clear error,
not a 480 GB allocation. Every tensor must have the model's shape and dtype.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from cortexedge.atomic import write_atomic
from cortexedge.errors import CheckpointError

FORMAT_VERSION = 1
WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.json"
EPOCHS_FILE = "epochs.jsonl"
COMPRESSION_FILE = "compression.json"
# what train and compress write into a run folder; anything else in it is the user's
RUN_FILES = frozenset((WEIGHTS_FILE, CONFIG_FILE, METRICS_FILE, EPOCHS_FILE, COMPRESSION_FILE))


def run_files(source: object) -> list[Path]:
    """The files a command reads from a run folder (none when `source` is not a folder path)."""
    if not isinstance(source, (str, os.PathLike)) or not Path(source).is_dir():
        return []
    return [Path(source) / name for name in sorted(RUN_FILES)]


def not_ours(name: str) -> bool:
    """True for a run folder's entry that no command made: replacing the run keeps it."""
    return name not in RUN_FILES


_RESERVED = (
    "format_version", "model", "model_class", "model_code", "model_config", "versions", "sha256"
)  # fmt: skip


def seal(weights: bytes, config: dict) -> str:
    """sha256 over the weights file's bytes and the config (its own `sha256` left out)."""
    body = {k: v for k, v in config.items() if k != "sha256"}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), default=_json_default)
    return hashlib.sha256(weights + b"\0" + text.encode()).hexdigest()


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, (np.ndarray, tuple)):
        return list(obj)
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serializable: {type(obj).__name__}")


def write_json(path: Path, obj: dict) -> Path:
    """Write a dict as indented JSON, atomically (numpy scalars become plain numbers)."""
    text = json.dumps(obj, indent=2, default=_json_default, allow_nan=True)
    return write_atomic(path, (text + "\n").encode())


def _code_record(name: str | None) -> dict | None:
    from cortexedge.families import FAMILIES

    return FAMILIES[name].source if name in FAMILIES else None


def registered_name(model: nn.Module) -> str | None:
    """The registry name of the model's class, or None for a model that is not registered."""
    from cortexedge.train.models.registry import model_name

    try:
        return model_name(model)
    except CheckpointError:
        return None


def package_versions() -> dict[str, str]:
    """Versions of the packages that produced an artifact."""
    import safetensors

    from cortexedge import __version__

    return {
        "cortexedge": __version__,
        "torch": torch.__version__,
        "numpy": np.__version__,
        "safetensors": safetensors.__version__,
    }


def save_checkpoint(
    model: nn.Module, folder: str | os.PathLike, *, extra: dict | None = None
) -> Path:
    """Save `model` to `folder` (created if needed) and return the folder.

    `extra` holds run facts stored at the top level of config.json (preprocessing, data
    fingerprint, seed, ...); it may not reuse the reserved keys.
    """
    extra = dict(extra or {})
    clash = sorted(set(extra) & set(_RESERVED))
    if clash:
        raise ValueError(f"save_checkpoint: extra may not set reserved keys {clash}")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    # clone so that tensors sharing storage are saved independently (safetensors refuses aliasing)
    tensors = {k: v.detach().cpu().clone().contiguous() for k, v in model.state_dict().items()}
    from safetensors.torch import save

    from cortexedge.train.models.registry import constructor_args

    name = registered_name(model)
    config = {
        "format_version": FORMAT_VERSION,
        "model": name,
        "model_class": f"{type(model).__module__}.{type(model).__qualname__}",
        **({"model_code": code} if (code := _code_record(name)) else {}),
        "model_config": constructor_args(model),
        "versions": package_versions(),
        **extra,
    }
    weights = save(tensors, metadata={"format": "pt"})
    config = json.loads(json.dumps(config, default=_json_default))  # as it will be read back
    config["sha256"] = seal(weights, config)
    write_atomic(folder / WEIGHTS_FILE, weights)
    write_json(folder / CONFIG_FILE, config)
    return folder


def read_config(folder: str | os.PathLike) -> dict:
    """Read and check a checkpoint's config.json (no weights)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise CheckpointError(f"checkpoint folder not found: {folder}")
    path = folder / CONFIG_FILE
    if not path.is_file():
        raise CheckpointError(f"{folder}: missing {CONFIG_FILE} (not a checkpoint folder?)")
    try:
        config = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(config, dict) or "format_version" not in config:
        raise CheckpointError(f"{path}: missing 'format_version' (not a cortexedge checkpoint?)")
    version = config["format_version"]
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise CheckpointError(
            f"{path}: format_version must be a whole number ≥ 1, got {version!r:.40}"
        )
    for key, kind in (("model_config", dict), ("model", str), ("sha256", str)):
        if config.get(key) is not None and not isinstance(config[key], kind):
            raise CheckpointError(f"{path}: {key} must be a JSON {kind.__name__}, got "
                                  f"{type(config[key]).__name__}")  # fmt: skip
    if version > FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: format version {config['format_version']} is newer than this cortexedge "
            f"({FORMAT_VERSION}); upgrade cortexedge"
        )
    return config


def build_from_config(
    config: dict, folder: str | os.PathLike, trust_code: bool = False
) -> nn.Module:
    """A fresh model of the class and constructor arguments a checkpoint's config names. A
    class from user code is imported only with `trust_code` (`cortexedge.user_code`)."""
    from cortexedge.families import FAMILIES
    from cortexedge.train.models.registry import build_model
    from cortexedge.user_code import checkpoint_class

    name = config.get("model")
    if "model_code" in config:
        name = checkpoint_class(config, folder, trust_code)
    if name not in FAMILIES:
        raise CheckpointError(
            f"{folder}: unknown model class '{name or config.get('model_class')}' "
            f"(registered: {', '.join(sorted(FAMILIES))}); pass the model to load_checkpoint"
        )
    try:
        return build_model(name, **(config.get("model_config") or {}))
    except CheckpointError as e:
        raise CheckpointError(f"{folder}: {e}") from None


def _check_tensors(tensors: dict[str, torch.Tensor], model: nn.Module, path: Path) -> None:
    expected = model.state_dict()
    missing = [k for k in expected if k not in tensors]
    if missing:
        raise CheckpointError(f"{path}: missing tensors {', '.join(missing)}")
    unexpected = [k for k in tensors if k not in expected]
    if unexpected:
        raise CheckpointError(f"{path}: unexpected tensors {', '.join(unexpected)}")
    for k, v in expected.items():
        if tuple(tensors[k].shape) != tuple(v.shape):
            raise CheckpointError(
                f"{path}: tensor '{k}' has shape {list(tensors[k].shape)}, "
                f"the model expects {list(v.shape)}"
            )
        if tensors[k].dtype != v.dtype:
            raise CheckpointError(
                f"{path}: tensor '{k}' is {tensors[k].dtype}, the model expects {v.dtype}"
            )


def _check_size(config: dict, folder: Path, file_bytes: int, trust_code: bool) -> None:
    """Refuse a config whose model would not fit its weights file. The model is built on the
    meta device (nothing allocated) and the build stops at the first tensor past the file's
    size, so an edited `layers: 100000` is refused at once rather than built for minutes."""
    from torch.nn.modules import module

    need, sizes = 0, {}  # a tensor registered again under one name counts once

    class TooBig(Exception):
        pass

    def count(owner: nn.Module, name: str, tensor: torch.Tensor | None) -> None:
        nonlocal need
        size = 0 if tensor is None else tensor.numel() * tensor.element_size()
        need += size - sizes.get((id(owner), name), 0)
        sizes[(id(owner), name)] = size
        if need > file_bytes:
            raise TooBig

    hooks = (module.register_module_parameter_registration_hook(count),
             module.register_module_buffer_registration_hook(count))  # fmt: skip
    try:
        with torch.device("meta"):
            build_from_config(config, folder, trust_code)
    except TooBig:
        raise CheckpointError(
            f"{folder}: the config describes a model of {need:,} bytes or more but "
            f"{WEIGHTS_FILE} holds {file_bytes:,} (config.json edited?)"
        ) from None
    finally:
        for hook in hooks:
            hook.remove()


def read_sealed(folder: str | os.PathLike) -> tuple[dict, dict[str, torch.Tensor]]:
    """(config, tensors) of a checkpoint whose seal holds; CheckpointError for a missing or
    damaged file and for any change after saving. Nothing is built or imported."""
    folder = Path(folder)
    config = read_config(folder)
    path = folder / WEIGHTS_FILE
    if not path.is_file():
        raise CheckpointError(f"{folder}: missing {WEIGHTS_FILE}")
    from safetensors.torch import load

    weights = path.read_bytes()
    try:
        tensors = load(weights)
    except Exception as e:  # safetensors raises its own error types for every kind of damage
        raise CheckpointError(f"{path}: corrupted safetensors file ({e})") from None
    if config.get("sha256") is None:
        raise CheckpointError(f"{folder}: config.json has no sha256 (saved by an older "
                              "cortexedge? save it again)")  # fmt: skip
    if seal(weights, config) != config["sha256"]:
        raise CheckpointError(
            f"{folder}: the weights or config.json were modified after saving (sha256 mismatch)"
        )
    return config, tensors


def load_checkpoint(
    folder: str | os.PathLike, model: nn.Module | None = None, *, trust_code: bool = False
) -> tuple[nn.Module, dict]:
    """Rebuild the model of a checkpoint (or fill the given `model`) and return it in eval mode.

    Pass `model` for a class that is not in the registry; `trust_code` to import the user
    class a checkpoint names (refused without it). Raises CheckpointError for a missing
    folder or file, a corrupted weights file, an unknown model class or mismatching tensors.
    """
    folder = Path(folder)
    config, tensors = read_sealed(folder)
    if model is None:
        _check_size(config, folder, (folder / WEIGHTS_FILE).stat().st_size, trust_code)
        model = build_from_config(config, folder, trust_code)
    _check_tensors(tensors, model, folder / WEIGHTS_FILE)
    model.load_state_dict(tensors, strict=True)
    return model.eval(), config

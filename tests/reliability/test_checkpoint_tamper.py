"""Class 4, checkpoints: a flipped bit, another dtype or shape of each tensor, edited
quantization bits, wrong types and huge sizes in config.json, a missing root or file.

Loading (the library's `load_model`, and `cortexedge export`) must refuse each in one line
and change no file, the deeper checks holding even when the edit is sealed again; a config
rewritten with the same content (indent, key order, line ends) loads the same model.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.reliability.conftest import copy_of
from tests.reliability.outcomes import accepted, refused, refused_cli

GROUP = "4 checkpoints"
TENSORS = ("readout.bias", "readout.weight", "rnn.bias_hh_l0", "rnn.bias_ih_l0",
           "rnn.weight_hh_l0", "rnn.weight_ih_l0")  # fmt: skip
TENSOR_EDITS = ("bitflip", "float16", "float64", "int64", "extra_row", "reshaped", "deleted",
                "renamed")  # fmt: skip
KEYS = ("format_version", "model", "model_class", "model_config", "versions", "family", "task",
        "preprocessing", "durations", "data_fingerprint", "recording", "seed", "train",
        "best_epoch", "sha256")  # fmt: skip
FIELD_VALUES = {  # sealed again: the type and size checks must hold on their own
    "format_version": ["abc", 1.5, True, None, [1], {"v": 1}, 999, -1],
    "model": [5, [], {}, True, "nope", "os.system"],
    "model_config": ["x", [], 5, None, {"hidden": "8"}, {"hidden": -1}, {"hidden": 200000},
                     {"hidden": 8.5}, {"layers": 100000}, {"bogus": 1}, {"in_channels": 0},
                     {"hidden": [8]}, {"hidden": {"a": 1}}, {"out_dim": 10**12}],
    "sha256": [5, None, [], "abc", ""],
}  # fmt: skip
FIELD_CASES = [(k, v) for k, vs in FIELD_VALUES.items() for v in vs]
ROOTS = ("[]", '"x"', "null", "5", "{}", "", "{", "\\xff", '{"format_version": 1}')
BITS_PATHS = (("compression", "quant", "weight_bits"), ("compression", "recipe", "bits"),
              ("compression", "bits", "readout.weight_quant"),
              ("compression", "scales", "readout.input_quant", "bits"))  # fmt: skip


def load(folder: Path):
    from cortexedge.export.api import load_model

    return lambda: load_model(folder)


def reseal(folder: Path) -> None:
    from cortexedge.train.checkpoint import seal

    config = json.loads((folder / "config.json").read_text())
    config["sha256"] = seal((folder / "model.safetensors").read_bytes(), config)
    (folder / "config.json").write_text(json.dumps(config))


def _reshaped(v: np.ndarray) -> np.ndarray:
    """The same numbers in another shape: a matrix flattened, a vector made a row."""
    return v.ravel() if v.ndim > 1 else v[None, :]


def edit_tensor(folder: Path, name: str, how: str) -> None:
    from safetensors.numpy import load_file, save_file

    path = folder / "model.safetensors"
    if how == "bitflip":  # one bit of the tensor data, the file otherwise intact
        raw = bytearray(path.read_bytes())
        header = 8 + int.from_bytes(raw[:8], "little")
        start, _ = json.loads(raw[8:header])[name]["data_offsets"]
        raw[header + start] ^= 0x10
        path.write_bytes(bytes(raw))
        return
    tensors = load_file(path)
    value = tensors.pop(name)
    changed = {"float16": lambda v: v.astype(np.float16), "float64": lambda v: v.astype(float),
               "int64": lambda v: v.astype(np.int64), "reshaped": _reshaped,
               "extra_row": lambda v: np.concatenate([v, v[:1]])}  # fmt: skip
    if how in changed:
        tensors[name] = changed[how](value)
    elif how == "renamed":
        tensors[name + "_x"] = value
    save_file(tensors, path, metadata={"format": "pt"})
    reseal(folder)


def both_refuse(folder: Path, tmp_path: Path) -> None:
    refused(GROUP, load(folder), watch=(folder,))
    out = tmp_path / "d.onnx"
    refused_cli(GROUP, ["export", folder, "--out", out], watch=(folder, out))


@pytest.mark.parametrize("how", TENSOR_EDITS)
@pytest.mark.parametrize("name", TENSORS)
def test_a_tensor_edit_is_refused(pipeline, tmp_path, name, how):
    folder = copy_of(pipeline.run, tmp_path)
    edit_tensor(folder, name, how)
    both_refuse(folder, tmp_path)


@pytest.mark.parametrize("key", KEYS)
def test_an_unsealed_config_edit_is_refused(pipeline, tmp_path, key):
    from tests.reliability.test_contract_tamper import nudge

    folder = copy_of(pipeline.run, tmp_path)
    config = json.loads((folder / "config.json").read_text())
    config[key] = nudge(config[key])
    (folder / "config.json").write_text(json.dumps(config))
    both_refuse(folder, tmp_path)


@pytest.mark.parametrize("key, value", FIELD_CASES, ids=[f"{k}={v!r:.20}" for k, v in FIELD_CASES])
def test_a_sealed_wrong_field_is_refused(pipeline, tmp_path, key, value):
    folder = copy_of(pipeline.run, tmp_path)
    config = json.loads((folder / "config.json").read_text())
    if key == "model_config" and isinstance(value, dict):
        value = {**config["model_config"], **value}
    config[key] = value
    (folder / "config.json").write_text(json.dumps(config))
    if key != "sha256":
        reseal(folder)
    both_refuse(folder, tmp_path)


@pytest.mark.parametrize("text", ROOTS)
def test_a_config_without_a_root_object_is_refused(pipeline, tmp_path, text):
    folder = copy_of(pipeline.run, tmp_path)
    (folder / "config.json").write_bytes(text.encode().decode("unicode_escape").encode("latin-1"))
    both_refuse(folder, tmp_path)


@pytest.mark.parametrize("damage", ("no_config", "no_weights", "truncated", "garbage", "empty",
                                    "swapped_weights", "folder_is_a_file"))  # fmt: skip
def test_a_damaged_folder_is_refused(pipeline, compressed, tmp_path, damage):
    folder = copy_of(pipeline.run, tmp_path)
    weights = folder / "model.safetensors"
    raw = weights.read_bytes()
    if damage == "no_config":
        (folder / "config.json").unlink()
    elif damage == "no_weights":
        weights.unlink()
    elif damage in ("truncated", "garbage", "empty"):
        weights.write_bytes({"truncated": raw[: len(raw) // 2], "garbage": b"\x07" * 200,
                             "empty": b""}[damage])  # fmt: skip
    elif damage == "swapped_weights":  # another checkpoint's weights
        weights.write_bytes((compressed / "model.safetensors").read_bytes())
    else:
        folder = weights
    both_refuse(folder, tmp_path)


def _set_path(config: dict, path: tuple[str, ...], value) -> None:
    for key in path[:-1]:
        config = config[key]
    config[path[-1]] = value


@pytest.mark.parametrize("bits", (4, 2, 16))
@pytest.mark.parametrize("path", BITS_PATHS, ids=lambda p: ".".join(p[1:]))
def test_edited_quantization_bits_are_refused(compressed, tmp_path, path, bits):
    folder = copy_of(compressed, tmp_path)
    config = json.loads((folder / "config.json").read_text())
    _set_path(config, path, bits)
    (folder / "config.json").write_text(json.dumps(config, indent=2))
    both_refuse(folder, tmp_path)


def _outputs(folder: Path) -> np.ndarray:
    import torch

    from cortexedge.export.api import load_model

    model, _ = load_model(folder)
    x = torch.as_tensor(np.random.default_rng(0).poisson(0.8, (2, 20, 96)), dtype=torch.float32)
    with torch.no_grad():
        return model(x).numpy()


@pytest.mark.parametrize("form", ("compact", "indent_8", "sorted_keys", "reversed_keys",
                                  "crlf", "trailing_space"))  # fmt: skip
@pytest.mark.parametrize("which", ("run", "compressed"))
def test_the_same_config_in_other_text_loads_the_same(request, pipeline, tmp_path, which, form):
    src = pipeline.run if which == "run" else request.getfixturevalue("compressed")
    clean = _outputs(src)
    folder = copy_of(src, tmp_path)
    path = folder / "config.json"
    config = json.loads(path.read_text())
    text = {"compact": lambda: json.dumps(config, separators=(",", ":")),
            "indent_8": lambda: json.dumps(config, indent=8),
            "sorted_keys": lambda: json.dumps(config, sort_keys=True),
            "reversed_keys": lambda: json.dumps(dict(reversed(list(config.items())))),
            "crlf": lambda: json.dumps(config, indent=2).replace("\n", "\r\n"),
            "trailing_space": lambda: json.dumps(config) + "  \n\n"}[form]()  # fmt: skip
    path.write_bytes(text.encode())
    accepted(GROUP, _outputs(folder), clean)

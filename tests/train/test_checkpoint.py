"""Checkpoints: exact round trips, atomic writes, no unpickling, one clear error per bad case."""

from __future__ import annotations

import json
import os
import pickle
import re

import pytest
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from cortexedge.errors import CheckpointError
from cortexedge.train.checkpoint import (
    CONFIG_FILE,
    WEIGHTS_FILE,
    load_checkpoint,
    save_checkpoint,
    seal,
)
from cortexedge.train.models.registry import build_model

EXTRA = {"preprocessing": {"windowing": "binned", "bin_width": 20, "num_steps": 5}, "seed": 7}


def _trained_like(name: str, **kw) -> nn.Module:
    """A registered model with non-default weights and batch-norm statistics."""
    torch.manual_seed(0)
    model = build_model(name, **kw)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    for buf in model.buffers():
        if buf.is_floating_point():
            buf.add_(0.5)
    return model.eval()


@pytest.mark.parametrize(
    "name, kw, x_shape",
    [
        ("aegru", {"in_channels": 6, "out_dim": 2}, (3, 5, 6)),
        ("gru", {"in_channels": 6, "out_dim": 2, "hidden": 8}, (3, 7, 6)),
        ("cnn_rnn", {"frame_shape": [16, 16]}, (2, 4, 16, 16)),
    ],
)
def test_round_trip_gives_identical_outputs(tmp_path, name, kw, x_shape):
    model = _trained_like(name, **kw)
    folder = save_checkpoint(model, tmp_path / "ckpt", extra=EXTRA)
    loaded, config = load_checkpoint(folder)
    x = torch.rand(x_shape) * 3
    assert type(loaded) is type(model) and not loaded.training
    assert torch.equal(loaded(x), model(x))
    assert config["model"] == name and config["model_config"] == model.config()
    assert config["preprocessing"] == EXTRA["preprocessing"] and config["seed"] == 7
    assert {"torch", "numpy", "cortexedge", "safetensors"} <= set(config["versions"])
    assert sorted(p.name for p in folder.iterdir()) == [CONFIG_FILE, WEIGHTS_FILE]


def test_loading_never_unpickles(tmp_path, monkeypatch):
    folder = save_checkpoint(_trained_like("gru", in_channels=3), tmp_path / "c", extra=EXTRA)

    def forbidden(*args, **kwargs):
        raise AssertionError("checkpoint loading must not unpickle")

    for mod, attr in ((pickle, "load"), (pickle, "loads"), (torch, "load")):
        monkeypatch.setattr(mod, attr, forbidden)
    model, _ = load_checkpoint(folder)
    assert model.config()["in_channels"] == 3
    # the weights file is safetensors: 8-byte little-endian header length, then a JSON header
    raw = (folder / WEIGHTS_FILE).read_bytes()
    header = json.loads(raw[8 : 8 + int.from_bytes(raw[:8], "little")])
    assert "readout.weight" in header


def test_failed_write_leaves_no_partial_file(tmp_path, monkeypatch):
    model = _trained_like("gru", in_channels=3)
    folder = save_checkpoint(model, tmp_path / "c", extra=EXTRA)
    before = (folder / WEIGHTS_FILE).read_bytes()

    def broken_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken_replace)
    with torch.no_grad():
        model.readout.weight.add_(1.0)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(model, folder, extra=EXTRA)
    assert sorted(p.name for p in folder.iterdir()) == [CONFIG_FILE, WEIGHTS_FILE]
    assert (folder / WEIGHTS_FILE).read_bytes() == before


def test_user_model_needs_to_be_passed_in(tmp_path):
    class Mine(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lin = nn.Linear(3, 2)

        def forward(self, x):
            return self.lin(x)

    torch.manual_seed(1)
    model = Mine()
    folder = save_checkpoint(model, tmp_path / "c")
    with pytest.raises(CheckpointError, match=r"unknown model class '.*Mine'"):
        load_checkpoint(folder)
    loaded, config = load_checkpoint(folder, model=Mine())
    assert torch.equal(loaded.lin.weight, model.lin.weight) and config["model"] is None


@pytest.fixture
def ckpt(tmp_path):
    return save_checkpoint(_trained_like("gru", in_channels=4, hidden=8), tmp_path / "c", extra={})


def _reseal(folder) -> None:
    """Recompute the seal, as a consistent but wrong checkpoint would carry it: the deeper
    checks (class, shapes, dtypes, size) must hold on their own."""
    config = json.loads((folder / CONFIG_FILE).read_text())
    config["sha256"] = seal((folder / WEIGHTS_FILE).read_bytes(), config)
    (folder / CONFIG_FILE).write_text(json.dumps(config))


def _edit_config(folder, resealed: bool = True, **changes):
    config = json.loads((folder / CONFIG_FILE).read_text())
    config.update(changes)
    (folder / CONFIG_FILE).write_text(json.dumps(config))
    if resealed:
        _reseal(folder)


def test_missing_folder_and_files(tmp_path, ckpt):
    with pytest.raises(CheckpointError, match="checkpoint folder not found: .*nowhere"):
        load_checkpoint(tmp_path / "nowhere")
    (ckpt / WEIGHTS_FILE).unlink()
    with pytest.raises(CheckpointError, match="missing model.safetensors"):
        load_checkpoint(ckpt)
    (ckpt / CONFIG_FILE).unlink()
    with pytest.raises(CheckpointError, match=r"missing config.json \(not a checkpoint folder\?\)"):
        load_checkpoint(ckpt)


@pytest.mark.parametrize("damage", ["truncate", "garbage", "empty"])
def test_corrupted_weights(ckpt, damage):
    path = ckpt / WEIGHTS_FILE
    raw = path.read_bytes()
    path.write_bytes(
        {"truncate": raw[: len(raw) // 2], "garbage": b"\x00" * 64, "empty": b""}[damage]
    )
    with pytest.raises(CheckpointError, match="model.safetensors: corrupted safetensors file"):
        load_checkpoint(ckpt)


def test_bad_config(ckpt):
    (ckpt / CONFIG_FILE).write_text("{not json")
    with pytest.raises(CheckpointError, match="config.json: not valid JSON"):
        load_checkpoint(ckpt)


def test_newer_format_version(ckpt):
    _edit_config(ckpt, format_version=99)
    with pytest.raises(CheckpointError, match="format version 99 is newer"):
        load_checkpoint(ckpt)


def test_unknown_model_class(ckpt):
    _edit_config(ckpt, model="transformer9000")
    with pytest.raises(CheckpointError, match="unknown model class 'transformer9000'"):
        load_checkpoint(ckpt)


def test_shape_mismatch_names_the_tensor(ckpt):
    config = json.loads((ckpt / CONFIG_FILE).read_text())
    _edit_config(ckpt, model_config={**config["model_config"], "hidden": 4})  # a smaller model
    with pytest.raises(
        CheckpointError,
        match=r"tensor 'rnn.weight_ih_l0' has shape \[24, 4\], the model expects \[12, 4\]",
    ):
        load_checkpoint(ckpt)


def test_missing_and_unexpected_tensors_are_named(ckpt):
    tensors = load_file(ckpt / WEIGHTS_FILE)
    bias = tensors.pop("readout.bias")
    save_file(tensors, ckpt / WEIGHTS_FILE)
    _reseal(ckpt)
    with pytest.raises(CheckpointError, match="missing tensors readout.bias"):
        load_checkpoint(ckpt)
    save_file({**tensors, "readout.bias": bias, "extra.w": bias.clone()}, ckpt / WEIGHTS_FILE)
    _reseal(ckpt)
    with pytest.raises(CheckpointError, match="unexpected tensors extra.w"):
        load_checkpoint(ckpt)


def test_bad_constructor_arguments(ckpt):
    _edit_config(ckpt, model_config={"in_channels": 4, "wings": 2})
    with pytest.raises(CheckpointError, match="wings"):
        load_checkpoint(ckpt)


def test_a_flipped_bit_in_the_weights_is_refused(ckpt):
    path = ckpt / WEIGHTS_FILE
    raw = bytearray(path.read_bytes())
    raw[-3] ^= 0x10  # inside the last tensor's data: still a valid safetensors file
    path.write_bytes(bytes(raw))
    with pytest.raises(CheckpointError, match=r"modified after saving \(sha256 mismatch\)"):
        load_checkpoint(ckpt)


def test_an_edited_config_entry_is_refused(ckpt):
    _edit_config(ckpt, resealed=False, seed=123)
    with pytest.raises(CheckpointError, match="modified after saving"):
        load_checkpoint(ckpt)


@pytest.mark.parametrize("dtype", [torch.int64, torch.float16])
def test_tensors_of_another_dtype_are_refused(ckpt, dtype):
    tensors = load_file(ckpt / WEIGHTS_FILE)
    tensors["readout.bias"] = tensors["readout.bias"].to(dtype)
    save_file(tensors, ckpt / WEIGHTS_FILE)
    _reseal(ckpt)
    with pytest.raises(CheckpointError, match=f"'readout.bias' is {dtype}, the model expects"):
        load_checkpoint(ckpt)


def test_a_huge_size_is_refused_before_anything_is_allocated(ckpt):
    config = json.loads((ckpt / CONFIG_FILE).read_text())
    _edit_config(ckpt, model_config={**config["model_config"], "hidden": 200_000})
    with pytest.raises(
        CheckpointError, match=r"\bc: the config describes a model of [\d,]+ bytes or more but"
    ):
        load_checkpoint(ckpt)


def test_a_huge_layer_count_is_refused_without_building_it(ckpt):
    """100,000 small layers: the build stops at the first tensor past the file's 1,888 bytes
    (the whole build would count ~170 MB and take minutes)."""
    config = json.loads((ckpt / CONFIG_FILE).read_text())
    _edit_config(ckpt, model_config={**config["model_config"], "layers": 100_000})
    with pytest.raises(CheckpointError, match=r"holds 1,888 \(config.json edited\?\)$") as e:
        load_checkpoint(ckpt)
    counted = int(re.search(r"model of ([\d,]+) bytes", str(e.value))[1].replace(",", ""))
    assert 1_888 < counted < 1_888 + 2_000


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"format_version": "abc"}, "format_version must be a whole number"),
        ({"format_version": True}, "format_version must be a whole number"),
        ({"model_config": [1, 2]}, "model_config must be a JSON dict, got list"),
        ({"model": 5}, "model must be a JSON str, got int"),
        ({"sha256": None}, "has no sha256"),
    ],
)
def test_wrong_config_types_are_one_clear_error(ckpt, changes, message):
    _edit_config(ckpt, resealed=False, **changes)
    with pytest.raises(CheckpointError, match=message):
        load_checkpoint(ckpt)

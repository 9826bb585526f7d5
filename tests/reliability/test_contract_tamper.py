"""Class 1, metadata outside the hash: every edit of decoder.onnx's contract or graph.

Each metadata key of an exported decoder is edited, reformatted, deleted, repeated or renamed,
and each weight tensor of its graph bit-flipped; loading the edited file (library and
`cortexedge profile`) must be one clear refusal with the file unchanged. Fields outside the
contract (producer, doc string, a foreign key) are accepted and decode like the clean file.
"""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest

from tests.reliability.conftest import copy_of
from tests.reliability.outcomes import accepted, refused, refused_cli

GROUP = "1 contract tamper"
KEYS = ("bin_ms", "bits", "bytes", "dynamic_batch", "format_version", "graph",
        "graph_macs_dense", "graph_macs_effective", "graph_sha256", "input", "macs",
        "model_family", "outputs", "params", "recording_fingerprint", "score", "sparsity",
        "states", "step_vs_sequence", "streaming", "toolkit_version", "trained_on_fingerprint",
        "verification", "contract_sha256")  # fmt: skip
EDITS = ("value", "reformat", "delete", "repeat", "repeat_edited", "rename")
WEIGHTS = ("model.readout.weight", "model.readout.bias", "onnx::GRU_92", "onnx::GRU_93",
           "onnx::GRU_94")  # fmt: skip
FLIPS = ("first_bit", "last_bit", "sign", "zero")


def nudge(obj):
    """A different value of the same JSON shape (the first leaf changed)."""
    if isinstance(obj, bool):
        return not obj
    if isinstance(obj, int | float):
        return obj + 1
    if isinstance(obj, str):
        return obj[:-1] + ("0" if obj[-1:] != "0" else "1") if obj else "x"
    if obj is None:
        return 0
    if isinstance(obj, list):
        return [nudge(obj[0]), *obj[1:]] if obj else [0]
    key = next(iter(obj), None)
    return {**obj, key: nudge(obj[key])} if key is not None else {"x": 0}


def _nudged_text(text: str) -> str:
    try:
        return json.dumps(nudge(json.loads(text)))
    except json.JSONDecodeError:
        return nudge(text)


def edit_metadata(proto: onnx.ModelProto, key: str, edit: str) -> None:
    props = proto.metadata_props
    index = next(i for i, p in enumerate(props) if p.key == "cortexedge." + key)
    entry = props[index]
    if edit == "value":
        entry.value = _nudged_text(entry.value)
    elif edit == "reformat":  # the same JSON, other text
        entry.value = " " + entry.value
    elif edit == "delete":
        del props[index]
    elif edit in ("repeat", "repeat_edited"):
        value = entry.value if edit == "repeat" else _nudged_text(entry.value)
        props.add(key=entry.key, value=value)
    else:
        entry.key = "cortexedge." + key.upper()


def tampered(pipeline, tmp_path, change) -> object:
    proto = onnx.load(pipeline.onnx)
    change(proto)
    path = tmp_path / "decoder.onnx"
    onnx.save(proto, path)
    return path


@pytest.mark.parametrize("edit", EDITS)
@pytest.mark.parametrize("key", KEYS)
def test_metadata_edit_is_refused(pipeline, tmp_path, key, edit):
    from cortexedge.runtime import StreamingDecoder

    path = tampered(pipeline, tmp_path, lambda p: edit_metadata(p, key, edit))
    refused(GROUP, lambda: StreamingDecoder(path, backend="numpy"), watch=(path,))


@pytest.mark.parametrize("edit", ("value", "delete", "repeat"))
@pytest.mark.parametrize("key", KEYS)
def test_metadata_edit_is_refused_by_profile(pipeline, tmp_path, key, edit):
    path = tampered(pipeline, tmp_path, lambda p: edit_metadata(p, key, edit))
    refused_cli(GROUP, ["profile", path, "--bins", 5], watch=(tmp_path,))


def flip(proto: onnx.ModelProto, name: str, how: str) -> None:
    from onnx import numpy_helper

    init = next(t for t in proto.graph.initializer if t.name == name)
    array = numpy_helper.to_array(init).copy()
    flat = array.reshape(-1).view(np.uint32)
    if how == "first_bit":
        flat[0] ^= 1
    elif how == "last_bit":
        flat[-1] ^= 1 << 30
    elif how == "sign":
        flat[len(flat) // 2] ^= 1 << 31
    else:
        flat[:] = 0
    init.CopyFrom(numpy_helper.from_array(array, name))


@pytest.mark.parametrize("how", FLIPS)
@pytest.mark.parametrize("name", WEIGHTS)
def test_graph_tamper_is_refused(pipeline, tmp_path, name, how):
    from cortexedge.runtime import StreamingDecoder

    path = tampered(pipeline, tmp_path, lambda p: flip(p, name, how))
    refused(GROUP, lambda: StreamingDecoder(path, backend="ort"), r"seal", watch=(path,))
    refused_cli(GROUP, ["profile", path, "--bins", 5], r"seal", watch=(tmp_path,))


def _outside(proto: onnx.ModelProto, what: str) -> None:
    if what == "producer_name":
        proto.producer_name = "someone else"
    elif what == "doc_string":
        proto.doc_string = "edited by hand"
    elif what == "model_version":
        proto.model_version = 7
    else:
        proto.metadata_props.add(key="author", value="a lab")


@pytest.mark.parametrize("backend", ("numpy", "ort"))
@pytest.mark.parametrize("what", ("producer_name", "doc_string", "model_version", "foreign_key"))
def test_edits_outside_the_contract_decode_like_the_clean_file(pipeline, tmp_path, what, backend):
    from cortexedge.runtime import StreamingDecoder

    bins = np.random.default_rng(0).poisson(0.5, (20, 96)).astype(np.float32)
    (tmp_path / "clean").mkdir()
    clean = StreamingDecoder(copy_of(pipeline.onnx, tmp_path / "clean"), backend=backend)
    path = tampered(pipeline, tmp_path, lambda p: _outside(p, what))
    accepted(GROUP, StreamingDecoder(path, backend=backend).run(bins), clean.run(bins))

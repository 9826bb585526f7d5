"""The metadata contract: round trip through ONNX metadata_props, and every refusal."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from cortexedge.contract import (
    FORMAT_VERSION,
    PREFIX,
    StateSpec,
    attach,
    check_against_graph,
    from_props,
    graph_sha256,
    to_props,
)
from cortexedge.errors import ContractError
from cortexedge.runtime.model import load_decoder


def _props(m: onnx.ModelProto) -> dict[str, str]:
    return {p.key: p.value for p in m.metadata_props}


def test_attach_round_trip_through_a_saved_file(onnx_build, tmp_path):
    m, _ = onnx_build.int8_decoder()
    m.metadata_props.add(key="author", value="lab")  # foreign props survive
    sha_before = graph_sha256(m)
    written = attach(m, onnx_build.int8_meta())
    assert written.graph_sha256 == sha_before == graph_sha256(m)  # metadata is not hashed
    onnx.save(m, tmp_path / "d.onnx")
    loaded = load_decoder(tmp_path / "d.onnx")
    assert loaded.meta == written
    assert loaded.batch is None
    props = _props(onnx.load(tmp_path / "d.onnx"))
    assert props["author"] == "lab"
    assert props[PREFIX + "format_version"] == str(FORMAT_VERSION)
    assert json.loads(props[PREFIX + "macs"]) == {"dense": 18, "effective": 17}
    assert json.loads(props[PREFIX + "states"]) == [
        {"name": "s", "shape": [1, 3], "dtype": "float32", "init": "zeros", "batch_axis": 0}
    ]
    assert json.loads(props[PREFIX + "verification"])["max_abs_err"] == 1e-7
    assert props[PREFIX + "model_family"] == "integrator"
    assert written.to_dict()["input"] == {
        "shape": [6], "kind": "spike_counts", "dtype": "float32", "range": [0.0, None]
    }  # fmt: skip


def test_attach_twice_replaces_the_old_props(onnx_build):
    m, _ = onnx_build.int8_decoder()
    attach(m, onnx_build.int8_meta(bin_ms=4.0))
    attach(m, onnx_build.int8_meta(bin_ms=20.0))
    keys = [p.key for p in m.metadata_props]
    assert len(keys) == len(set(keys))
    assert from_props(_props(m)).bin_ms == 20.0


def _stamped(onnx_build) -> dict[str, str]:
    m, _ = onnx_build.int8_decoder()
    attach(m, onnx_build.int8_meta())
    return _props(m)


def test_missing_key_is_named(onnx_build):
    props = _stamped(onnx_build)
    del props[PREFIX + "bin_ms"]
    with pytest.raises(ContractError, match=r"metadata key 'cortexedge\.bin_ms' is missing"):
        from_props(props)


def test_no_metadata_at_all():
    with pytest.raises(ContractError, match="no cortexedge metadata"):
        from_props({"producer": "x"})


def test_newer_format_version_is_refused(onnx_build):
    props = _stamped(onnx_build)
    props[PREFIX + "format_version"] = "2"
    with pytest.raises(
        ContractError,
        match=r"decoder format version 2 is newer than this cortexedge supports \(1\); "
        "upgrade cortexedge",
    ):
        from_props(props)


@pytest.mark.parametrize(
    "key, value, message",
    [
        ("bin_ms", "-4", r"cortexedge\.bin_ms: expected a positive number"),
        ("bin_ms", "four", r"cortexedge\.bin_ms: expected a JSON value"),
        ("macs", '{"dense": 5, "effective": 9}', r"cortexedge\.macs: expected effective <= dense"),
        ("sparsity", "1.5", r"cortexedge\.sparsity: expected a fraction"),
        ("states", '[{"name": "s", "shape": [2, 3], "dtype": "float32", "init": "zeros"}]',
         r"states\[0\]\.shape: expected size 1 on batch_axis 0"),
        ("states", '[{"name": "s", "shape": [1, 3], "dtype": "float99", "init": "zeros"}]',
         r"states\[0\]\.dtype"),
        ("input", '{"shape": [6], "kind": "eeg", "dtype": "float32", "range": [0, null]}',
         r"input\.kind: expected one of"),
        ("input", '{"shape": [6], "kind": "calcium", "dtype": "float32", "range": [2, 1]}',
         r"input\.range: expected lo <= hi"),
        ("streaming", '{"mode": "window"}', r"streaming\.window: expected an integer >= 1"),
        ("score", '{"metric": "auc", "value": 1, "split": "test"}', r"score\.metric"),
        ("verification", '{"max_abs_err": 0.1, "tolerance": 0.001, "bins": 5}',
         r"the export did not verify \(max_abs_err 0\.1 > tolerance 0\.001\)"),
        ("graph_sha256", "abc", r"graph_sha256: expected 64 lowercase hex"),
    ],
)  # fmt: skip
def test_invalid_values_are_named(onnx_build, key, value, message):
    props = _stamped(onnx_build)
    props[PREFIX + key] = value
    with pytest.raises(ContractError, match=message):
        from_props(props)


def test_to_props_validates_before_writing(onnx_build):
    with pytest.raises(ContractError, match=r"graph_sha256: expected 64"):
        to_props(onnx_build.int8_meta())  # no sha yet: only attach() may write
    m, _ = onnx_build.int8_decoder()
    with pytest.raises(ContractError, match=r"bin_ms: expected a positive number"):
        attach(m, onnx_build.int8_meta(bin_ms=0.0))
    assert not m.metadata_props  # nothing written


def test_tampered_weights_fail_the_hash(onnx_build, tmp_path):
    m, wq = onnx_build.int8_decoder()
    attach(m, onnx_build.int8_meta())
    wq = wq.copy()
    wq[0, 0] += 1
    m.graph.initializer[0].CopyFrom(numpy_helper.from_array(wq, "wq"))
    onnx.save(m, tmp_path / "t.onnx")
    with pytest.raises(ContractError, match=r"t\.onnx: the contract seal does not match"):
        load_decoder(tmp_path / "t.onnx")


@pytest.mark.parametrize(
    "key, value",
    [
        ("bin_ms", "20.0"),  # profile would then judge a 20 ms deadline
        ("streaming", '{"mode":"window","window":5}'),
        ("input", None),  # the range or kind: any edit of the input spec
        ("score", '{"metric":"r2","value":0.99,"split":"test"}'),
        ("macs", '{"dense":1,"effective":1}'),
        ("note", '"added by hand"'),  # a key the contract does not parse
    ],
)
def test_every_metadata_edit_breaks_the_seal(onnx_build, tmp_path, key, value):
    m, _ = onnx_build.int8_decoder()
    attach(m, onnx_build.int8_meta())
    props = _props(m)
    edited = PREFIX + key
    if value is None:
        spec = json.loads(props[edited])
        spec["range"] = [0, 255] if "range" in spec else spec.get("range")
        spec["kind"] = "calcium"
        value = json.dumps(spec)
    entries = {p.key: p for p in m.metadata_props}
    if edited in entries:
        entries[edited].value = value
    else:
        entry = m.metadata_props.add()
        entry.key, entry.value = edited, value
    onnx.save(m, tmp_path / "t.onnx")
    with pytest.raises(
        ContractError, match="contract seal does not match .* modified after export"
    ):
        load_decoder(tmp_path / "t.onnx")


def test_a_repeated_or_missing_seal_key_is_refused(onnx_build, tmp_path):
    m, _ = onnx_build.int8_decoder()
    attach(m, onnx_build.int8_meta())
    dup = m.metadata_props.add()
    dup.key, dup.value = PREFIX + "bin_ms", "20.0"
    onnx.save(m, tmp_path / "dup.onnx")
    with pytest.raises(ContractError, match=r"\['cortexedge.bin_ms'\] appear more than once"):
        load_decoder(tmp_path / "dup.onnx")
    del m.metadata_props[-1]
    seal = next(i for i, p in enumerate(m.metadata_props) if p.key == PREFIX + "contract_sha256")
    del m.metadata_props[seal]
    onnx.save(m, tmp_path / "old.onnx")
    with pytest.raises(ContractError, match="contract_sha256' is missing .* export it again"):
        load_decoder(tmp_path / "old.onnx")


def test_truncated_file_is_refused(onnx_build, tmp_path):
    path = onnx_build.save_int8_decoder(tmp_path / "d.onnx")
    data = path.read_bytes()
    for cut in (len(data) // 3, len(data) - 7):
        (tmp_path / "cut.onnx").write_bytes(data[:cut])
        with pytest.raises(ContractError, match=r"cut\.onnx: .*(truncated|missing|sha256)"):
            load_decoder(tmp_path / "cut.onnx")


def test_garbage_and_missing_files(tmp_path):
    (tmp_path / "g.onnx").write_bytes(b"\xff" * 100)
    with pytest.raises(ContractError, match=r"g\.onnx: not a readable ONNX file"):
        load_decoder(tmp_path / "g.onnx")
    with pytest.raises(Exception, match=r"decoder file not found: .*nope\.onnx"):
        load_decoder(tmp_path / "nope.onnx")


def test_state_shape_mismatch_with_graph(onnx_build):
    m, _ = onnx_build.int8_decoder()
    meta = replace(onnx_build.int8_meta(), states=[StateSpec("s", (1, 4))])
    with pytest.raises(
        ContractError, match=r"state state_s: graph shape \['B', 3\] but metadata says \['B', 4\]"
    ):
        attach(m, meta)


def test_names_dtypes_and_outputs_must_match(onnx_build):
    m, _ = onnx_build.int8_decoder()
    with pytest.raises(ContractError, match=r"graph inputs \['state_s', 'x'\] but metadata "
                       r"expects \['state_h', 'x'\]"):  # fmt: skip
        attach(m, onnx_build.int8_meta(states=[StateSpec("h", (1, 3))]))
    with pytest.raises(ContractError, match=r"output y: graph shape \['B', 3\] but metadata says"):
        attach(m, replace(onnx_build.int8_meta(), outputs=onnx_build.int8_meta().outputs[:2]))
    with pytest.raises(ContractError, match=r"input x: graph dtype float32 but metadata says int8"):
        meta = onnx_build.int8_meta()
        attach(m, replace(meta, input=replace(meta.input, dtype="int8")))


def test_check_against_graph_catches_edited_metadata(onnx_build):
    """Metadata edited after export (not through attach) no longer matches the graph."""
    m, _ = onnx_build.int8_decoder()
    meta = attach(m, onnx_build.int8_meta())
    check_against_graph(meta, m)
    with pytest.raises(ContractError, match="graph shape"):
        check_against_graph(replace(meta, input=replace(meta.input, shape=(7,))), m)


def test_fixed_batch_is_read(onnx_build, tmp_path):
    path = onnx_build.save_int8_decoder(tmp_path / "f.onnx", batch=1)
    assert load_decoder(path).batch == 1
    init = load_decoder(path).initial_states(3)
    assert init["s"].shape == (3, 3) and np.all(init["s"] == 0)


def test_extra_entries_round_trip_as_json(onnx_build):
    m, _ = onnx_build.int8_decoder()
    extra = {"recording": {"fingerprint": "ab12", "bins": 200}, "note": "pruned 50%"}
    written = attach(m, onnx_build.int8_meta(extra=extra))
    assert from_props(_props(m)).extra == extra == written.extra
    assert _props(m)[PREFIX + "note"] == '"pruned 50%"'
    props = {**_props(m), PREFIX + "foreign": "plain text"}
    assert from_props(props).extra["foreign"] == "plain text"
    with pytest.raises(ContractError, match="extra key 'bin_ms' would overwrite a contract field"):
        attach(m, onnx_build.int8_meta(extra={"bin_ms": 3}))

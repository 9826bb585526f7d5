"""The runtime's "c" backend: registration, the manifest checks, bad bins, batching and state."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch

from cortexedge.errors import ContractError, CortexEdgeError
from cortexedge.export.c.generate import export_c
from cortexedge.runtime import MultiStreamDecoder, StreamingDecoder
from cortexedge.runtime.backends import BACKENDS
from cortexedge.runtime.backends.c import CBackend
from cortexedge.runtime.model import load_decoder
from cortexedge.train.models.aegru import AEGRU
from cortexedge.train.models.rnn import GRUDecoder
from tests.export.c_helpers import contract_onnx, ptq, window_batches
from tests.runtime.test_threads import shared_steps_are_whole

C = 10


def counts(rows: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).poisson(0.7, (rows, C)).astype(np.float32)


@pytest.fixture(scope="module")
def int_build(tmp_path_factory):
    """A W8A8 AEGRU (window of 3 bins of 3 samples) exported to C, raw counts up to 7."""
    tmp = tmp_path_factory.mktemp("cint")
    torch.manual_seed(6)
    model = AEGRU(C, hidden=8, enc_dim=8, bin_width=3, num_steps=3, training_parts=False).eval()
    ptq(model, window_batches(counts(600, 0), 3, 3))
    onnx = contract_onnx(model, tmp / "q.onnx", C)
    export_c(model, tmp / "c", onnx_path=onnx, max_count=7, verify_bins=300, reference_bins=100,
             cortex_m=False)  # fmt: skip
    return tmp / "c" / "decoder.onnx"


def test_a_shared_c_decoder_loses_and_doubles_no_step(int_build):
    # the step is one call that holds the GIL (a PyDLL entry point), so it is whole even
    # without the decoder's lock; this keeps it so if the call ever releases the GIL
    shared_steps_are_whole(int_build, "c")


def test_c_is_registered_and_the_runtime_stays_torch_free():
    assert BACKENDS["c"] is CBackend
    code = ("import sys, cortexedge.runtime, cortexedge.runtime.backends.c, "
            "cortexedge.runtime.int_reference; assert 'torch' not in sys.modules")  # fmt: skip
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def test_outputs_are_the_dequantized_accumulators(int_build):
    from cortexedge.runtime.backends.c import CLibrary

    man = json.loads((int_build.parent / "decoder_c.json").read_text())
    lib = CLibrary(int_build.parent / "libdecoder.so", "int", 2, C)
    x = counts(80, 1)
    raw = lib.run(lib.states(1), x)
    got = StreamingDecoder(int_build, backend="c").run(x)
    assert np.array_equal(got, raw.astype(np.float32) * np.float32(man["output_scale"]))


def test_bad_counts_are_refused_and_leave_the_state(int_build):
    x = counts(40, 2)
    dec, clean = StreamingDecoder(int_build, backend="c"), StreamingDecoder(int_build, backend="c")
    dec.run(x[:20])
    clean.run(x[:20])
    bad = x[20].copy()
    bad[4] = 0.5
    with pytest.raises(CortexEdgeError, match=r"stream 0, channel 4: 0.5 is not a whole spike"):
        dec.step(bad)
    bad[4] = 8  # above max_count = 7: the folder's graph declares [0, 7], so every backend
    # refuses it alike (the C step on the device too: it returns 1 + the channel)
    for backend in ("c", "ort", "numpy"):
        other = StreamingDecoder(int_build, backend=backend)
        with pytest.raises(CortexEdgeError, match=r"^bin 0: values must be <= 7 \(max 8\)$"):
            other.step(bad)
    with pytest.raises(CortexEdgeError, match=r"values must be <= 7 \(max 8\)"):
        dec.step(bad)
    np.testing.assert_array_equal(dec.run(x[20:]), clean.run(x[20:]))


def test_reset_restarts_the_stream(int_build):
    x = counts(60, 3)
    dec = StreamingDecoder(int_build, backend="c")
    first = dec.run(x)
    dec.reset()
    np.testing.assert_array_equal(dec.run(x), first)


def test_batched_streams_match_single_streams(tmp_path):
    torch.manual_seed(7)
    model = GRUDecoder(C, hidden=8, layers=2).eval()
    onnx = contract_onnx(model, tmp_path / "f.onnx", C)
    export_c(model, tmp_path / "c", onnx_path=onnx, verify_bins=200, cortex_m=False)
    path = tmp_path / "c" / "decoder.onnx"
    streams = np.stack([counts(30, s) for s in (4, 5, 6)], axis=1)  # [T, 3, C]
    multi = MultiStreamDecoder(path, 3, backend="c")
    assert multi.batched  # one C call steps the 3 states
    got = np.stack([multi.step(row) for row in streams])
    for s in range(3):
        single = StreamingDecoder(path, backend="c").run(streams[:, s])
        np.testing.assert_array_equal(got[:, s], single)


def test_window_state_round_trip(int_build):
    x = counts(50, 7)
    a = StreamingDecoder(int_build, backend="c")
    a.run(x[:30])
    saved = a.state
    np.testing.assert_array_equal(saved["buffer"][0], x[21:30])  # the last 3·3 raw samples
    b = StreamingDecoder(int_build, backend="c")
    b.state = saved  # replayed into the C state, window chains included
    np.testing.assert_array_equal(b.run(x[30:]), a.run(x[30:]))


def _write_manifest(folder, man: dict, reseal: bool = True) -> None:
    """Write a (changed) manifest, sealed again as a build would seal it unless `reseal` is off."""
    from cortexedge.runtime.backends.c_manifest import seal

    (folder / "decoder_c.json").write_text(
        json.dumps({**man, "sha256": seal(man)} if reseal else man)
    )


def test_manifest_checks(int_build, tmp_path):
    folder = tmp_path / "copy"
    shutil.copytree(int_build.parent, folder)
    model = load_decoder(folder / "decoder.onnx")
    assert CBackend.available(model)
    man = json.loads((folder / "decoder_c.json").read_text())
    _write_manifest(folder, {**man, "graph_sha256": "0" * 64})
    assert not CBackend.available(model)
    with pytest.raises(ContractError, match=r"the C build is of another graph"):
        StreamingDecoder(folder / "decoder.onnx", backend="c")
    _write_manifest(folder, {**man, "host_isa": "x86-64-v9"})
    with pytest.raises(ContractError, match=r"built for x86-64-v9 CPUs, which this one is not"):
        StreamingDecoder(folder / "decoder.onnx", backend="c")
    _write_manifest(folder, man)
    (folder / "libdecoder.so").unlink()
    with pytest.raises(ContractError, match=r"libdecoder.so: missing from the C build"):
        StreamingDecoder(folder / "decoder.onnx", backend="c")
    (folder / "decoder_c.json").unlink()
    with pytest.raises(ContractError, match=r"no C build here \(decoder_c.json missing\)"):
        StreamingDecoder(folder / "decoder.onnx", backend="c")


def _tampered(int_build, tmp_path, name: str):
    folder = tmp_path / name
    shutil.copytree(int_build.parent, folder)
    return folder, json.loads((folder / "decoder_c.json").read_text())


def test_the_build_is_one_sealed_unit(int_build, tmp_path):
    """Every way to run another library than the verified one is refused before it is loaded."""
    lib = (int_build.parent / "libdecoder.so").read_bytes()
    cases = []
    folder, man = _tampered(int_build, tmp_path, "edited")  # edited, not sealed again
    _write_manifest(folder, {**man, "numeric": "float"}, reseal=False)
    cases.append((folder, "the manifest was modified after the build"))
    folder, man = _tampered(int_build, tmp_path, "outside")  # a path out of the folder
    files = {**man["files"], "../outside/libdecoder.so": man["files"]["libdecoder.so"]}
    _write_manifest(folder, {**man, "library": "../outside/libdecoder.so", "files": files})
    cases.append((folder, "library '../outside/libdecoder.so' must be a file of the build"))
    folder, man = _tampered(int_build, tmp_path, "truncated")  # would be a bus error in ctypes
    (folder / "libdecoder.so").write_bytes(lib[: len(lib) // 3])
    cases.append((folder, "libdecoder.so: differs from the build's manifest"))
    folder, man = _tampered(int_build, tmp_path, "nokey")
    _write_manifest(folder, {k: v for k, v in man.items() if k != "states"})
    cases.append((folder, "missing key 'states'"))
    folder, man = _tampered(int_build, tmp_path, "old")  # an older build's library, new graph
    (folder / "decoder_weights.c").write_text("/* another build */\n")
    cases.append((folder, "decoder_weights.c: differs from the build's manifest"))
    for folder, message in cases:
        assert not CBackend.available(load_decoder(folder / "decoder.onnx"))
        with pytest.raises(ContractError, match=re.escape(message)):
            StreamingDecoder(folder / "decoder.onnx", backend="c")


@pytest.mark.parametrize(
    "value, message",
    [
        (np.nan, r"^bin 20: contains NaN or inf$"),
        (np.inf, r"^bin 20: contains NaN or inf$"),
        (-1.0, r"^bin 20: spike counts must be non-negative \(min -1\)$"),
    ],
)
def test_the_c_shim_screens_values_and_the_error_is_the_runtimes(int_build, value, message):
    # the C backend checks every value itself (StreamingDecoder skips its Python screen), and a
    # refusal is explained with the same message as on the other backends, state unchanged
    assert CBackend.checks_values
    x = counts(40, 8)
    dec, clean = StreamingDecoder(int_build, backend="c"), StreamingDecoder(int_build, backend="c")
    assert not dec._values
    dec.run(x[:20])
    clean.run(x[:20])
    bad = x[20].copy()
    bad[3] = value
    with pytest.raises(CortexEdgeError, match=message):
        dec.step(bad)
    with pytest.raises(CortexEdgeError, match=message):
        StreamingDecoder(int_build, backend="ort").run(np.concatenate([x[:20], bad[None]]))
    np.testing.assert_array_equal(dec.run(x[20:]), clean.run(x[20:]))


def test_float_shim_refuses_values_outside_the_input_range(tmp_path):
    from cortexedge.runtime.backends.c import CLibrary

    torch.manual_seed(9)
    model = GRUDecoder(C, hidden=8).eval()
    onnx = contract_onnx(model, tmp_path / "f.onnx", C)
    export_c(model, tmp_path / "c", onnx_path=onnx, verify_bins=100, cortex_m=False)
    lib = CLibrary(tmp_path / "c" / "libdecoder.so", "float", 2, C)
    x = counts(5, 9)
    x[3, 7] = -0.5  # refused only when the caller's lower bound says so
    states = lib.states(1)
    y, raw = np.zeros((5, 2), np.float32), np.zeros((5, 2), np.float32)
    call = lib.lib.decoder_host_run
    args = (x.ctypes.data, 5, y.ctypes.data, raw.ctypes.data, None, 1, None)
    assert call(states.ctypes.data, 1, *args, 0.0, np.inf) == 3 * C + 7
    assert not y.any()  # nothing decoded
    assert call(states.ctypes.data, 1, *args, -np.inf, np.inf) == -1
    x[1, 2] = np.inf
    assert call(states.ctypes.data, 1, *args, -np.inf, np.inf) == C + 2


def test_bound_buffers_are_read_in_place_and_others_copied(int_build):
    model = load_decoder(int_build)
    backend, other = CBackend(model, 1), CBackend(model, 1)
    buffer = np.zeros((1, C), np.float32)
    backend.bind_input(buffer)
    for row in counts(30, 10):
        buffer[0] = row
        np.testing.assert_array_equal(backend.step(buffer), other.step(row[None].copy()))
    assert not backend._x.any()  # its own input buffer was never needed
    with pytest.raises(CortexEdgeError, match=r"c backend: cannot bind a float64 \(1, 10\) input"):
        backend.bind_input(np.zeros((1, C)))


def _copy_with_manifest(build, tmp_path, **changes):
    """A copy of a C build folder whose manifest has `changes`; returns its decoder.onnx."""
    folder = tmp_path / "copy"
    shutil.copytree(build.parent, folder)
    man = json.loads((folder / "decoder_c.json").read_text())
    _write_manifest(folder, {**man, **changes})
    return folder / "decoder.onnx"


def test_one_call_path_equals_the_general_path(int_build, tmp_path):
    # the library's Python entry point decodes a float32 bin in one call; a build for another
    # interpreter takes the ctypes path only, and every kind of bin gives identical outputs
    fast = StreamingDecoder(int_build, backend="c", missing="hold")
    general = StreamingDecoder(_copy_with_manifest(int_build, tmp_path, host_python="other"),
                               backend="c", missing="hold")  # fmt: skip
    assert callable(fast._fast) and general._fast is None
    x = counts(60, 11)  # the missing bins after fast steps check the held bin, too
    bins = [x[0], x[1].astype(np.float64), x[2].tolist(), np.asfortranarray(x[3:4])[0],
            x[4].astype(">f4"), None, *x[5:30], None, None, *x[30:]]  # fmt: skip
    got = np.stack([fast.step(b) for b in bins])
    want = np.stack([general.step(b) for b in bins])
    np.testing.assert_array_equal(got, want)
    assert fast.bins_since_reset == len(bins)
    np.testing.assert_array_equal(fast.state["buffer"], general.state["buffer"])


def test_one_call_path_refuses_without_deciding(int_build):
    # the entry point takes only a native float32 bin of the right shape with accepted values;
    # anything else returns None with nothing decoded, so the caller's general path decides
    backend = CBackend(load_decoder(int_build), 1)
    into = np.zeros((1, C), np.float32)
    x = counts(20, 12)
    for row in x[:10]:
        backend.step_bin(row, into)
    before = backend.read_state()
    for bad in (x[10].astype(np.float64), x[10][None], x[10, :5].copy(), x[10] + 0.5,
                np.full(C, np.nan, np.float32), [0.0] * C):  # fmt: skip
        assert backend.step_bin(bad, into) is None
    np.testing.assert_array_equal(backend.read_state()["buffer"], before["buffer"])
    y = backend.step_bin(x[10], into)
    assert y.shape == (2,) and y.dtype == np.float32 and y.flags.owndata
    np.testing.assert_array_equal(into[0], x[10])
    with pytest.raises(TypeError, match=r"into must be a writable float32 \[1, \.\.\.\] bin"):
        backend.step_bin(x[11], np.zeros((1, C)))
    with pytest.raises(TypeError, match=r"into must be"):
        backend.step_bin(x[11])


def test_profile_of_a_c_build_reports_what_the_device_takes(int_build, tmp_path):
    # the folder (or its .onnx) profiles every backend, c included, and states the C build's
    # own figures (its state, not the graph's buffer; the MACs its step executes)
    from click.testing import CliRunner

    from cortexedge.cli.commands_profile import profile

    out = tmp_path / "p.json"
    args = [str(int_build.parent), "--synthetic", "--bins", "60", "--backend", "all",
            "--json", str(out)]  # fmt: skip
    result = CliRunner().invoke(profile, args, terminal_width=200)
    assert result.exit_code == 0, result.output
    summary = json.loads(out.read_text())
    man = json.loads((int_build.parent / "decoder_c.json").read_text())
    c = summary["c_build"]
    assert set(summary["backends"]) == {"ort", "numpy", "c"}
    assert c["state_bytes"] == man["memory"]["state_bytes"] < summary["footprint"]["state_bytes"]
    assert c["macs_executed"] == man["macs"]["executed_per_step"]
    assert f"C build (int path, {int_build.parent}): constants" in result.output
    assert f"MACs/bin executed {c['macs_executed']:,}" in result.output


def test_profile_all_says_when_there_is_no_c_build(tmp_path):
    from click.testing import CliRunner

    from cortexedge.cli.commands_profile import profile

    torch.manual_seed(0)
    onnx = contract_onnx(GRUDecoder(C, hidden=4).eval(), tmp_path / "g.onnx", C)
    result = CliRunner().invoke(profile, [str(onnx), "--bins", "30", "--backend", "all"],
                                terminal_width=200)  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "c: left out, no C build of this graph next to the file (export --target c)" in (
        result.output
    )

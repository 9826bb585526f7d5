"""export_c: files and their rules, storage choice and MAC counts, bad inputs."""

from __future__ import annotations

import ctypes
import json
import re
import subprocess

import numpy as np
import pytest
import torch
from torch import nn

from cortexedge.errors import CortexEdgeError
from cortexedge.export.c import build, sparse
from cortexedge.export.c.generate import export_c, float_program
from cortexedge.export.c.model_ir import layer_kind, read_structure
from cortexedge.runtime import StreamingDecoder
from cortexedge.runtime.backends.c import host_python
from cortexedge.runtime.graph_macs import count_graph
from cortexedge.runtime.model import load_decoder
from cortexedge.train.models.aegru import AEGRU
from cortexedge.train.models.rnn import GRUDecoder, LSTMDecoder
from tests.export.c_helpers import contract_onnx, prune_half, ptq, window_batches

ALLOWED = {"<stdint.h>", "<string.h>", '"decoder.h"'}


def aegru(seed: int = 0, **kw) -> AEGRU:
    torch.manual_seed(seed)
    args = dict(hidden=8, enc_dim=8, bin_width=4, num_steps=3, training_parts=False) | kw
    return AEGRU(12, **args).eval()


@pytest.fixture(scope="module")
def pruned_export(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("gen")
    model = aegru()
    prune_half(model)
    onnx = contract_onnx(model, tmp / "f.onnx", 12)
    return model, export_c(model, tmp / "c", onnx_path=onnx, verify_bins=400, cortex_m=False)


def test_files_follow_the_device_rules(pruned_export):
    _, res = pruned_export
    folder = res.folder
    names = {p.name for p in folder.iterdir()}
    assert {"decoder.h", "decoder.c", "decoder_weights.c", "README.md", "decoder.onnx",
            "decoder_c.json", "libdecoder.so"} <= names  # fmt: skip
    assert not [n for n in names if n.startswith(".")]  # the temporary build folder is gone
    for name in ("decoder.h", "decoder.c", "decoder_weights.c"):
        text = (folder / name).read_text()
        assert set(re.findall(r"#include\s+(\S+)", text)) <= ALLOWED | {"<math.h>"}
        assert not re.search(r"\b(malloc|calloc|realloc|free)\s*\(", text)
    api = (folder / "decoder.h").read_text()
    # the API under the default prefix, the model's name (here the class AEGRU)
    for proto in ("void aegru_init(aegru_state_t *state);",
                  "void aegru_reset(aegru_state_t *state);",
                  "int aegru_step(aegru_state_t *state, const aegru_input_t *bin, "
                  "aegru_output_t *out);"):  # fmt: skip
        assert proto in api
    # no writable globals: the device objects define no data/bss symbols (host nm)
    obj = folder / "probe_decoder.o"
    subprocess.run([build.host_compiler(), *build.STRICT, "-O2", "-c", "decoder.c", "-o", obj.name],
                   cwd=folder, check=True)  # fmt: skip
    symbols = subprocess.run(["nm", obj.name], cwd=folder, capture_output=True, text=True).stdout
    assert not re.findall(r"^\S*\s+[dDbBcC]\s", symbols, re.M)
    obj.unlink()


def test_manifest_and_readme_describe_the_build(pruned_export):
    _, res = pruned_export
    man = json.loads((res.folder / "decoder_c.json").read_text())
    assert man["graph_sha256"] == load_decoder(res.folder / "decoder.onnx").meta.graph_sha256
    # the window graph is computed as a chain (export/c/window_chain.py): the C state keeps
    # the last L bins twice (a contiguous window at every slot), G_1 .. G_{K-1} for L slots
    # and the slot, so the graph's buffer is raw history to the runtime (replayed on a write)
    (spec,) = load_decoder(res.folder / "decoder.onnx").meta.states
    assert man["states"] == [{"name": "buffer", "kind": "history", "rows": spec.shape[1]}]
    steps, lag, hidden, channels = 3, spec.shape[1] // 3, 8, spec.shape[2]
    ring = (steps - 1) * lag * hidden
    assert man["memory"]["state_bytes"] == 4 * (2 * lag * channels + ring) + 8
    readme = (res.folder / "README.md").read_text()
    for m in man["storage"]["matrices"]:
        assert f"| {m['matrix']} | {m['shape'][0]}×{m['shape'][1]} | {m['format']} |" in readme
    assert f"MACs executed per step: {man['macs']['executed_per_step']:,}" in readme
    assert "aegru_step(&s, bin, out);" in readme


def test_host_library_without_python_headers(pruned_export, tmp_path, monkeypatch):
    # built where Python's or numpy's headers are missing, the library has no Python entry
    # point, the manifest says so, and the runtime steps it through ctypes with equal outputs
    model, res = pruned_export
    man = json.loads((res.folder / "decoder_c.json").read_text())
    assert man["host_python"] == host_python()
    monkeypatch.setattr(build, "python_includes", lambda: None)
    plain = export_c(model, tmp_path / "c", onnx_path=res.folder / "decoder.onnx",
                     verify_bins=100, cortex_m=False)  # fmt: skip
    assert json.loads((plain.folder / "decoder_c.json").read_text())["host_python"] is None
    assert not hasattr(ctypes.CDLL(str(plain.folder / "libdecoder.so")), "decoder_host_python")
    slow = StreamingDecoder(plain.folder / "decoder.onnx", backend="c")
    fast = StreamingDecoder(res.folder / "decoder.onnx", backend="c")
    assert slow._fast is None and fast._fast is not None
    x = np.random.default_rng(3).poisson(1.0, (50, 12)).astype(np.float32)
    np.testing.assert_array_equal([slow.step(r) for r in x], [fast.step(r) for r in x])


def test_executed_macs_follow_the_mac_rules(pruned_export):
    # the graph's effective count (CSR runs the non-zeros), less the recurrent product of the
    # window's first step, which starts from a constant zero state, and less what the chain
    # does once per bin instead of once per window position: the encoder of K - 1 bins and
    # K - 1 of the K input projections
    model, res = pruned_export
    graph = count_graph(load_decoder(res.folder / "decoder.onnx").proto)
    nnz = {n: int(np.count_nonzero(getattr(model.cells[0], n).detach().numpy()))
           for n in ("weight_hh", "weight_ih")}  # fmt: skip
    steps = 3
    encoder = int(np.count_nonzero(model.encoder.weight.detach().numpy()))
    chain = (steps - 1) * (encoder + nnz["weight_ih"])
    want = graph.effective - nnz["weight_hh"] - chain
    assert res.manifest["macs"]["executed_per_step"] == want
    assert all(m["format"] == "csr" for m in res.manifest["storage"]["matrices"])
    # the window's three GRU steps share one copy of their weights
    names = [m["matrix"] for m in res.manifest["storage"]["matrices"]]
    assert len(names) == 4, names  # encoder, input and recurrent weights, readout


@pytest.mark.parametrize(
    "policy, density, dtype, want",
    [("auto", 0.5, np.int8, "dense"), ("auto", 0.2, np.int8, "csr"),  # SMLAD: 2 insns/MAC
     ("auto", 0.5, np.float32, "csr"), ("auto", 1.0, np.float32, "dense"),
     ("size", 0.5, np.int8, "mask"), ("size", 0.2, np.int8, "mask"),
     ("size", 0.5, np.float32, "csr"), ("mask", 1.0, np.int8, "mask"),
     ("dense", 0.1, np.int8, "dense"), ("sparse", 1.0, np.int8, "csr")],
)  # fmt: skip
def test_storage_choice(policy, density, dtype, want):
    rng = np.random.default_rng(0)
    w = (rng.normal(size=(32, 96)) * 20).astype(np.int8) | 1
    w[rng.random((32, 96)) >= density] = 0
    w = w.astype(dtype)
    stored = sparse.store("m", w, policy)
    assert stored.fmt == want
    assert stored.macs == (w.size if want == "dense" else np.count_nonzero(w))
    if want != "mask":
        assert stored.nbytes == (stored.csr_bytes if want == "csr" else stored.dense_bytes)
    else:  # one bit per entry, a start offset per row, the non-zero values
        rows, cols = w.shape
        nnz = np.count_nonzero(w)
        assert stored.nbytes == rows * -(-cols // 32) * 4 + (rows + 1) * 2 + nnz


def test_unsupported_layers_are_named():
    # the integer path reads the QAT modules: a layer it has no reader for is named
    model = LSTMDecoder(8).eval()
    model.rnn = nn.RNN(8, 64, batch_first=True)  # an Elman RNN: no integer cell
    with pytest.raises(CortexEdgeError, match=r"cannot emit layer 'rnn' of type RNN"):
        read_structure(model)
    with pytest.raises(CortexEdgeError, match=r"layer 'rnn' \(a float LSTM\) needs quantizing"):
        read_structure(LSTMDecoder(8).eval())
    model = aegru()
    model.cell_norms[0] = nn.GroupNorm(1, 8)
    with pytest.raises(CortexEdgeError, match=r"layer 'cell_norms.0' of type GroupNorm"):
        read_structure(model)


class SoftmaxHead(nn.Module):
    """A user's classifier whose graph ends in an op the C generator has no emitter for."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(12, 2)

    def forward(self, x):
        return torch.softmax(self.lin(x), dim=-1)

    def init_state(self, batch):
        return ()

    def step(self, x, state):
        return self.forward(x), ()


def test_an_op_without_a_c_emitter_is_named_with_its_node(tmp_path):
    onnx = contract_onnx(SoftmaxHead().eval(), tmp_path / "s.onnx", 12)
    with pytest.raises(CortexEdgeError, match=r"op 'Softmax' of node '/Softmax' has no C emitter"):
        float_program(load_decoder(onnx), "auto")
    with pytest.raises(CortexEdgeError, match=r"op 'Softmax' of node '/Softmax'"):
        export_c(SoftmaxHead().eval(), tmp_path / "c", onnx_path=onnx, cortex_m=False)
    assert not (tmp_path / "c").exists()


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"numeric": "int"}, r"numeric='int' needs a quantized \(QAT\) model"),
        ({"numeric": "fixed"}, r"numeric: must be one of auto, float, int, got 'fixed'"),
        (
            {"sparse": "bsr"},
            r"sparse: policy must be one of auto, dense, sparse, size|sparse: must",
        ),
    ],
)
def test_bad_options(tmp_path, kwargs, message):
    with pytest.raises(CortexEdgeError, match=message):
        export_c(aegru(), tmp_path / "c", **kwargs)
    assert not (tmp_path / "c").exists()


def test_mismatched_graph_leaves_nothing_behind(tmp_path):
    # the integer path reads the QAT model: a graph of another decoder is refused
    model = aegru()
    x = np.random.default_rng(2).poisson(0.6, (600, 12)).astype(np.float32)
    ptq(model, window_batches(x, 4, 3))
    other = contract_onnx(GRUDecoder(7, hidden=4).eval(), tmp_path / "other.onnx", 7)
    with pytest.raises(CortexEdgeError, match=r"decoder.onnx reads \[7\].*the C decoder 12"):
        export_c(model, tmp_path / "c", onnx_path=other, cortex_m=False)
    assert not (tmp_path / "c").exists()  # built aside: a refused build leaves no folder
    (tmp_path / "file").write_text("x")
    with pytest.raises(CortexEdgeError, match="output path is a file"):
        export_c(aegru(), tmp_path / "file")


def test_generated_float_code_is_deterministic(tmp_path):
    onnx = load_decoder(contract_onnx(aegru(3), tmp_path / "f.onnx", 12))
    assert float_program(onnx, "auto").files() == float_program(onnx, "auto").files()


def test_a_users_layer_subclass_is_read_as_its_base():
    class MyLinear(nn.Linear):
        """A user's Linear with a different name."""

    assert layer_kind(MyLinear(3, 2), "readout") == "linear"
    assert layer_kind(nn.LSTM(3, 2), "rnn") == "lstm"
    with pytest.raises(CortexEdgeError, match="cannot emit layer 'rnn' of type RNN"):
        layer_kind(nn.RNN(3, 2), "rnn")

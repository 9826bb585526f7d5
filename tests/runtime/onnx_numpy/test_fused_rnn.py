"""Fused GRU/LSTM steps (onnx_numpy/ops_gru.py, ops_lstm.py) and whole exported decoders,
compiled vs the interpreter: random RNN nodes in every supported form, then decoders stepped by
NumpyBackend against the interpreter driven by hand, at batch 1 and batch 3."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import helper, numpy_helper

from cortexedge.export.api import to_onnx
from cortexedge.runtime.backends.numpy import NumpyBackend
from cortexedge.runtime.model import load_decoder
from cortexedge.runtime.onnx_numpy.reference import ReferenceGraph
from tests.export.small_models import SMALL, build
from tests.runtime.onnx_numpy.helpers import agree

IN, H = 5, 4


def rnn_model(onnx_build, op, T, B, direction="forward", bias=True, initial=True,
              outputs=("Y", "Y_h"), peepholes=False, **attrs):  # fmt: skip
    """One GRU/LSTM node with seeded constant weights; returns (model, feeds)."""
    rng = np.random.default_rng(T * 10 + B)
    gates, lstm = (4, True) if op == "LSTM" else (3, False)
    D = 2 if direction == "bidirectional" else 1

    def normal(*shape, scale=0.5):
        return (rng.normal(size=shape) * scale).astype(np.float32)

    consts = {"W": normal(D, gates * H, IN), "R": normal(D, gates * H, H)}
    if bias:
        consts["B"] = normal(D, 2 * gates * H, scale=0.2)
    if peepholes:
        consts["P"] = normal(D, 3 * H)
    feeds = {"x": normal(T, B, IN, scale=1.0)}
    if initial:
        feeds.update(h0=normal(D, B, H, scale=1.0), **({"c0": normal(D, B, H)} if lstm else {}))
    ins = ["x", "W", "R", "B" if bias else "", "", "h0" if initial else ""]
    if lstm:
        ins += ["c0" if initial else "", "P" if peepholes else ""]
    node = helper.make_node(op, ins, list(outputs), hidden_size=H, direction=direction, **attrs)
    m = onnx_build.model(
        [node],
        [onnx_build.tensor(k, v.shape) for k, v in feeds.items()],
        [onnx_build.tensor(o, None) for o in outputs if o],
        [numpy_helper.from_array(v, k) for k, v in consts.items()],
    )
    return m, feeds


@pytest.mark.parametrize("T, B", [(1, 1), (3, 3)])
@pytest.mark.parametrize("direction", ["forward", "reverse", "bidirectional"])
@pytest.mark.parametrize("lbr", [0, 1])
def test_fused_gru_equals_the_interpreter(onnx_build, T, B, direction, lbr):
    m, feeds = rnn_model(onnx_build, "GRU", T, B, direction, linear_before_reset=lbr)
    assert agree(m, feeds).interpreted == []


@pytest.mark.parametrize("T, B", [(1, 1), (3, 3)])
@pytest.mark.parametrize("direction", ["forward", "reverse", "bidirectional"])
def test_fused_lstm_equals_the_interpreter(onnx_build, T, B, direction):
    m, feeds = rnn_model(onnx_build, "LSTM", T, B, direction, outputs=("Y", "Y_h", "Y_c"))
    assert agree(m, feeds).interpreted == []


@pytest.mark.parametrize("op", ["GRU", "LSTM"])
@pytest.mark.parametrize(
    "variant",
    [
        dict(bias=False, initial=False),
        dict(outputs=("", "Y_h")),  # Y unread: the last step writes Y_h directly
        dict(outputs=("Y",)),
        dict(direction="bidirectional", outputs=("", "Y_h")),
    ],
)
def test_fused_rnn_variants(onnx_build, op, variant):
    m, feeds = rnn_model(onnx_build, op, 2, 3, **{"linear_before_reset": 1} if op == "GRU" else {},
                         **variant)  # fmt: skip
    assert agree(m, feeds).interpreted == []


@pytest.mark.parametrize(
    "op, variant",
    [
        ("GRU", dict(clip=0.5)),
        ("GRU", dict(activations=["Relu", "Tanh"])),
        ("LSTM", dict(peepholes=True, outputs=("Y", "Y_h", "Y_c"))),
        ("LSTM", dict(input_forget=1)),
    ],
)
def test_rnn_forms_outside_the_fused_step_run_the_interpreters_kernel(onnx_build, op, variant):
    m, feeds = rnn_model(onnx_build, op, 2, 3, **variant)
    assert [s.op_type for s in agree(m, feeds).interpreted] == [op]


def interpreter_stream(loaded, xs: np.ndarray) -> np.ndarray:
    """Reference: ReferenceGraph.run stepped by hand from the initial states; xs [n, batch, ...]."""
    graph, specs = ReferenceGraph(loaded.proto), loaded.meta.states
    states = loaded.initial_states(xs.shape[1])
    ys = []
    for x in xs:
        env = graph.run({"x": x, **{s.input_name: states[s.name] for s in specs}})
        states = {s.name: env[s.output_name] for s in specs}
        ys.append(env["y"])
    return np.array(ys)


def backend_stream(loaded, xs: np.ndarray) -> tuple[np.ndarray, list[str]]:
    backend = NumpyBackend(loaded, xs.shape[1])
    interpreted = [s.op_type for s in backend.compiled_graph.interpreted]
    return np.array([backend.step(x).copy() for x in xs]), interpreted


def check_decoder(path, batch: int, interpreted: list[str]) -> None:
    loaded = load_decoder(path)
    rng = np.random.default_rng(batch)
    xs = rng.poisson(1.5, (40, batch, *loaded.meta.input.shape)).astype(np.float32)
    got, ops = backend_stream(loaded, xs)
    assert ops == interpreted
    np.testing.assert_allclose(got, interpreter_stream(loaded, xs), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("name", ["gru_op", "gru_cell", "lstm", "conv"])
def test_runtime_decoders_compiled_equal_interpreted(request, name, batch):
    built = request.getfixturevalue(name)
    check_decoder(built.path, batch, ["Conv"] if name == "conv" else [])


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> dict:
    """The export tests' small registry decoders, exported once (AEGRU: many small nodes)."""
    out = {}
    for name in ("aegru_window", "aegru_stateful", "gru"):
        path = tmp_path_factory.mktemp("fast") / f"{name}.onnx"
        to_onnx(build(*SMALL[name]), path, modality="spikes", bin_ms=4.0)
        out[name] = path
    return out


@pytest.mark.slow
@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("name", ["aegru_window", "aegru_stateful", "gru"])
def test_exported_decoders_compiled_equal_interpreted(exported, name, batch):
    check_decoder(exported[name], batch, [])

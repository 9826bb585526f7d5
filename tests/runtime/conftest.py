"""Tiny exported step graphs for the runtime tests.

Modules are built with torch (allowed in tests only), legacy-exported (dynamo=False, opset 17)
with a dynamic batch dimension B and stamped with the metadata contract by
`cortexedge.contract.attach`; fixtures return a `Built` (file + torch reference). Hand-made
graphs (onnx.helper, no torch) come from the `onnx_build` fixture.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass, replace
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper
from torch import nn

from cortexedge.contract import (
    DecoderMetadata,
    InputSpec,
    OutputSpec,
    StateSpec,
    Streaming,
    attach,
)

C, E, H, D, K = 12, 8, 16, 2, 3


class GruOpStep(nn.Module):
    """Linear -> ReLU -> nn.GRU (one ONNX GRU op) -> Linear; state h [1, B, H]."""

    def __init__(self) -> None:
        super().__init__()
        self.enc, self.gru, self.out = nn.Linear(C, E), nn.GRU(E, H), nn.Linear(H, D)

    def forward(self, x, h):
        o, h = self.gru(torch.relu(self.enc(x)).unsqueeze(0), h)
        return self.out(o[0]), h


class GruCellStep(nn.Module):
    """Linear -> ReLU -> GRUCell (exported as Gemm/Split/Mul gate arithmetic) -> Linear."""

    def __init__(self) -> None:
        super().__init__()
        self.enc, self.gru, self.out = nn.Linear(C, E), nn.GRUCell(E, H), nn.Linear(H, D)

    def forward(self, x, h):
        h = self.gru(torch.relu(self.enc(x)), h)
        return self.out(h), h


class LstmStep(nn.Module):
    """Linear -> nn.LSTM (one ONNX LSTM op) -> Linear; states h and c [1, B, H]."""

    def __init__(self) -> None:
        super().__init__()
        self.enc, self.lstm, self.out = nn.Linear(C, E), nn.LSTM(E, H), nn.Linear(H, D)

    def forward(self, x, h, c):
        o, (h, c) = self.lstm(self.enc(x).unsqueeze(0), (h, c))
        return self.out(o[0]), h, c


class ConvStep(nn.Module):
    """Causal Conv1d (k=K) over the last K bins, the K-1 previous ones kept as state."""

    def __init__(self) -> None:
        super().__init__()
        self.conv, self.out = nn.Conv1d(C, E, K), nn.Linear(E, D)

    def forward(self, x, buf):
        window = torch.cat([buf, x.unsqueeze(-1)], dim=-1)
        return self.out(torch.relu(self.conv(window)).flatten(1)), window[:, :, 1:]


@dataclass
class Built:
    """An exported decoder file and the torch module it came from."""

    path: Path
    module: nn.Module
    meta: DecoderMetadata

    def torch_run(self, bins: np.ndarray) -> np.ndarray:
        """Reference: the torch module stepped bin by bin from the initial state."""
        st = [torch.full(s.shape, float(s.fill)) for s in self.meta.states]
        out = []
        with torch.no_grad():
            for b in bins:
                y, *st = self.module(torch.as_tensor(b, dtype=torch.float32)[None], *st)
                out.append(y[0].numpy())
        return np.array(out)


def make_meta(input_shape, states, n_out=D, **overrides) -> DecoderMetadata:
    """Plausible metadata for a test graph; `overrides` replace any field."""
    meta = DecoderMetadata(
        toolkit_version="0.1.0",
        model_family="test",
        bin_ms=4.0,
        input=InputSpec(tuple(input_shape), "spike_counts", "float32", (0.0, None)),
        outputs=[OutputSpec(f"v{i}", "mm/s") for i in range(n_out)],
        states=list(states),
        streaming=Streaming("stateful", None),
        macs={"dense": 1000, "effective": 900},
        params=100,
        bytes=400,
        sparsity=0.1,
        bits=None,
        score={"metric": "r2", "value": 0.5, "split": "test"},
        verification={"max_abs_err": 1e-7, "tolerance": 1e-5, "bins": 100},
    )
    return replace(meta, **overrides)


def export_onnx(module: nn.Module, states: list[StateSpec]) -> onnx.ModelProto:
    """Legacy-export a step module (x, *states) -> (y, *states_out) with a dynamic batch."""
    module.eval()
    args = (torch.zeros(1, C), *[torch.zeros(s.shape) for s in states])
    ins = ["x", *[s.input_name for s in states]]
    outs = ["y", *[s.output_name for s in states]]
    dyn = {"x": {0: "B"}, "y": {0: "B"}}
    for s in states:
        dyn[s.input_name] = dyn[s.output_name] = {s.batch_axis: "B"}
    f = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, args, f, dynamo=False, opset_version=17, input_names=ins,
                          output_names=outs, dynamic_axes=dyn)  # fmt: skip
    return onnx.load_from_string(f.getvalue())


def build(module: nn.Module, states: list[StateSpec], path: Path, **overrides) -> Built:
    """Export, stamp metadata, save; the torch module is kept as the reference."""
    proto = export_onnx(module, states)
    meta = attach(proto, make_meta((C,), states, **overrides))
    onnx.save(proto, path)
    return Built(path, module, meta)


def _seeded(cls, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return cls().eval()


@pytest.fixture(scope="session")
def gru_op(tmp_path_factory) -> Built:
    states = [StateSpec("h", (1, 1, H), batch_axis=1)]
    return build(_seeded(GruOpStep), states, tmp_path_factory.mktemp("m") / "gru_op.onnx")


@pytest.fixture(scope="session")
def gru_cell(tmp_path_factory) -> Built:
    states = [StateSpec("h", (1, H), init=0.1)]
    return build(_seeded(GruCellStep, 1), states, tmp_path_factory.mktemp("m") / "cell.onnx")


@pytest.fixture(scope="session")
def lstm(tmp_path_factory) -> Built:
    states = [StateSpec("h", (1, 1, H), batch_axis=1), StateSpec("c", (1, 1, H), batch_axis=1)]
    return build(_seeded(LstmStep, 2), states, tmp_path_factory.mktemp("m") / "lstm.onnx")


@pytest.fixture(scope="session")
def conv(tmp_path_factory) -> Built:
    states = [StateSpec("buf", (1, C, K - 1))]
    return build(_seeded(ConvStep, 3), states, tmp_path_factory.mktemp("m") / "conv.onnx")


@pytest.fixture(scope="session")
def sparse_gru(tmp_path_factory) -> Built:
    """The GRU-op model with about half of every weight matrix set to zero."""
    module = _seeded(GruOpStep, 4)
    gen = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for p in (module.enc.weight, module.gru.weight_ih_l0, module.gru.weight_hh_l0,
                  module.out.weight):  # fmt: skip
            p.mul_((torch.rand(p.shape, generator=gen) > 0.5).float())
    states = [StateSpec("h", (1, 1, H), batch_axis=1)]
    return build(module, states, tmp_path_factory.mktemp("m") / "sparse.onnx")


# ---------------------------------------------------------------- hand-built graphs (no torch)
IR_VERSION = 10  # onnx.helper defaults to IR 14, which onnxruntime 1.31 rejects
OPSET = 17


def model(nodes, inputs, outputs, initializers=(), opset: int = OPSET) -> onnx.ModelProto:
    """A model from onnx.helper parts, with an IR version onnxruntime accepts."""
    graph = helper.make_graph(nodes, "g", inputs, outputs, initializer=list(initializers))
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = IR_VERSION
    return m


def tensor(name: str, shape, elem=TensorProto.FLOAT):
    """A graph input/output declaration."""
    return helper.make_tensor_value_info(name, elem, shape)


def int8_decoder(batch="B") -> tuple[onnx.ModelProto, np.ndarray]:
    """x [B, 6] -> MatMul with an int8 weight behind DequantizeLinear -> leaky integrator state.

    s' = x @ dq(Wq) + 0.5 s; y = s'. Returns the model and the int8 weight [6, 3].
    """
    wq = np.arange(-9, 9, dtype=np.int8).reshape(6, 3)  # one zero entry
    inits = [
        numpy_helper.from_array(wq, "wq"),
        numpy_helper.from_array(np.array(0.05, dtype=np.float32), "scale"),
        numpy_helper.from_array(np.array(0, dtype=np.int8), "zp"),
        numpy_helper.from_array(np.array(0.5, dtype=np.float32), "decay"),
    ]
    nodes = [
        helper.make_node("DequantizeLinear", ["wq", "scale", "zp"], ["w"]),
        helper.make_node("MatMul", ["x", "w"], ["h"]),
        helper.make_node("Mul", ["state_s", "decay"], ["kept"]),
        helper.make_node("Add", ["h", "kept"], ["y"]),
        helper.make_node("Identity", ["y"], ["state_s_out"]),
    ]
    m = model(
        nodes,
        [tensor("x", [batch, 6]), tensor("state_s", [batch, 3])],
        [tensor("y", [batch, 3]), tensor("state_s_out", [batch, 3])],
        inits,
    )
    return m, wq


def int8_meta(**changes) -> DecoderMetadata:
    """Valid metadata for `int8_decoder`; `changes` replace fields."""
    numbers = dict(macs={"dense": 18, "effective": 17}, params=18, bytes=27, sparsity=1 / 18,
                   bits={"weights": 8, "activations": None}, model_family="integrator")  # fmt: skip
    meta = make_meta((6,), [StateSpec("s", (1, 3))], n_out=3, **numbers)
    return replace(meta, **changes)


def save_int8_decoder(path: Path, batch="B", **changes) -> Path:
    """`int8_decoder` stamped with `int8_meta(**changes)`, saved to `path`."""
    m, _ = int8_decoder(batch)
    attach(m, int8_meta(**changes))
    onnx.save(m, path)
    return path


@pytest.fixture
def onnx_build() -> SimpleNamespace:
    """Builders for hand-made graphs: model, tensor, int8_decoder, int8_meta, save_int8_decoder."""
    return SimpleNamespace(model=model, tensor=tensor, int8_decoder=int8_decoder,
                           int8_meta=int8_meta, save_int8_decoder=save_int8_decoder)  # fmt: skip

"""Trace a flat torch module to an ONNX ModelProto: float models with torch's TorchScript exporter,
brevitas-quantized ones as QCDQ (QuantizeLinear / Clip / DequantizeLinear, int8 weights).

Both use the TorchScript exporter (`dynamo=False`): brevitas's QCDQ export requires it, it takes
~0.2 s where dynamo takes ~7 s, it honours `dynamic_axes` for the batch dim, and dynamo's output
for opset 17 is down-converted into a model onnxruntime rejects (Split with `num_outputs`).
Exporter errors (an operator ONNX cannot express, a step that fails under tracing) become one-line
`CortexEdgeError`s.
"""

from __future__ import annotations

import io
import os
import sys
import tempfile
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

import onnx
import torch
from torch import nn

from cortexedge.errors import CortexEdgeError

if TYPE_CHECKING:
    from cortexedge.export.verify import Tolerance

MIN_OPSET = 17
MAX_OPSET = 20  # newest opset the TorchScript exporter writes in torch 2.13


@dataclass(frozen=True)
class TraceSpec:
    """What to trace: example args, graph input/output names, dynamic axes and the opset."""

    args: tuple[torch.Tensor, ...]
    input_names: list[str]
    output_names: list[str]
    dynamic_axes: dict[str, dict[int, str]]
    opset: int


def _float_export(module: nn.Module, spec: TraceSpec) -> onnx.ModelProto:
    buf = io.BytesIO()
    torch.onnx.export(
        module,
        spec.args,
        buf,
        dynamo=False,
        input_names=spec.input_names,
        output_names=spec.output_names,
        dynamic_axes=spec.dynamic_axes,
        opset_version=spec.opset,
        do_constant_folding=True,
        verbose=False,
    )
    return onnx.load_from_string(buf.getvalue())


def _qcdq_export(module: nn.Module, spec: TraceSpec) -> onnx.ModelProto:
    from brevitas.export import export_onnx_qcdq

    # brevitas 0.13.4's QCDQ manager drops the returned model: go through a file
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "qcdq.onnx")
        export_onnx_qcdq(
            module,
            spec.args,
            export_path=path,
            dynamo=False,
            keep_initializers_as_inputs=False,
            opset_version=spec.opset,
            input_names=spec.input_names,
            output_names=spec.output_names,
            dynamic_axes=spec.dynamic_axes,
        )
        return onnx.load(path)


EXPORTERS: dict[str, Callable[[nn.Module, TraceSpec], onnx.ModelProto]] = {
    "float": _float_export,
    "qcdq": _qcdq_export,
}


class _CellAsSequenceOp(nn.Module):
    """An `nn.GRUCell` / `nn.LSTMCell` traced as ONE ONNX GRU / LSTM op over a sequence of 1.

    The TorchScript exporter otherwise writes a cell as ~12 elementwise nodes, and onnxruntime
    pays about a microsecond per node on a streaming step. The op form also keeps the cell's
    work countable by the shared GRU/LSTM MAC rules, exactly as the torch side counts it.
    Parameters are shared with the cell, so the numbers are the cell's.
    """

    def __init__(self, cell: nn.GRUCell | nn.LSTMCell, rnn_type: type[nn.RNNBase]) -> None:
        super().__init__()
        self.lstm = rnn_type is nn.LSTM
        self.input_size, self.hidden_size = cell.input_size, cell.hidden_size  # as the cell's
        self.rnn = rnn_type(cell.input_size, cell.hidden_size, bias=cell.bias)
        for name in ("weight_ih", "weight_hh", *(("bias_ih", "bias_hh") if cell.bias else ())):
            setattr(self.rnn, f"{name}_l0", getattr(cell, name))

    def forward(self, x: torch.Tensor, state=None):
        if state is None:
            state = x.new_zeros(x.shape[0], self.hidden_size)
        if self.lstm:
            h, c = state if isinstance(state, tuple) else (state, torch.zeros_like(state))
            _, (h, c) = self.rnn(x.unsqueeze(0), (h.unsqueeze(0), c.unsqueeze(0)))
            return h.squeeze(0), c.squeeze(0)
        _, h = self.rnn(x.unsqueeze(0), state.unsqueeze(0))
        return h.squeeze(0)


# cells the exporter would unroll into elementwise nodes -> the sequence op that replaces them
SEQUENCE_OPS: dict[type[nn.Module], type[nn.RNNBase]] = {nn.GRUCell: nn.GRU, nn.LSTMCell: nn.LSTM}


def with_sequence_ops(module: nn.Module) -> nn.Module:
    """A copy of `module` whose float recurrent cells trace as single ONNX GRU/LSTM ops (the
    module itself when it has none)."""
    import copy

    if not any(type(m) in SEQUENCE_OPS for m in module.modules()):
        return module
    module = copy.deepcopy(module)
    for parent in list(module.modules()):
        for name, child in list(parent.named_children()):
            if type(child) in SEQUENCE_OPS:
                parent._modules[name] = _CellAsSequenceOp(child, SEQUENCE_OPS[type(child)])
    return module


def is_quantized(model: nn.Module) -> bool:
    """True when any submodule is a brevitas layer (the model needs the QCDQ exporter)."""
    return any(type(m).__module__.startswith("brevitas.") for m in model.modules())


def check_opset(opset: int) -> int:
    """The opset as an int; CortexEdgeError outside what the exporter and onnxruntime support."""
    if isinstance(opset, bool) or not isinstance(opset, int) or not MIN_OPSET <= opset <= MAX_OPSET:
        raise CortexEdgeError(
            f"opset: must be an integer from {MIN_OPSET} to {MAX_OPSET}, got {opset!r}"
        )
    return opset


@contextmanager
def _silenced_exporter_log() -> Iterator[None]:
    """Swallow what the exporter's C++ side prints: torch 2.13's TorchScript exporter always
    enables its log and dumps the whole IR graph to stdout on any failure. The failure itself
    reaches the caller as an exception."""
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    saved = {fd: os.dup(fd) for fd in (1, 2)}
    with tempfile.TemporaryFile() as sink:
        for fd in saved:
            os.dup2(sink.fileno(), fd)
        try:
            yield
        finally:
            for stream in (sys.stdout, sys.stderr):
                stream.flush()
            for fd, copy in saved.items():
                os.dup2(copy, fd)
                os.close(copy)


def trace(module: nn.Module, spec: TraceSpec, what: str) -> onnx.ModelProto:
    """Export `module` (eval mode, no grad) with the exporter its layers need.

    `what` names the model in error messages. Unsupported operators and failures inside the
    traced code raise CortexEdgeError; the module's training flag is left as it was.
    """
    kind = "qcdq" if is_quantized(module) else "float"
    if kind == "float":
        module = with_sequence_ops(module)
    was_training = module.training
    module.eval()
    try:
        with torch.no_grad(), warnings.catch_warnings(), _silenced_exporter_log():
            # the TorchScript exporter's deprecation notice and tracer warnings about Python
            # values baked into the graph: the verification step checks the result instead
            warnings.simplefilter("ignore")
            return EXPORTERS[kind](module, spec)
    except torch.onnx.errors.UnsupportedOperatorError as e:
        first = str(e).splitlines()[0]
        raise CortexEdgeError(f"{what}: unsupported operator: {first}") from e
    except (torch.onnx.errors.OnnxExporterError, RuntimeError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CortexEdgeError(f"{what}: ONNX export failed: {first}") from e
    finally:
        module.train(was_training)


def _batch_free(sess, spec: TraceSpec, tol: Tolerance) -> bool:
    """True when the graph runs on the batch of `spec` and on each row alone, giving every row
    the same result both ways: nothing about the traced batch size was baked into it."""
    from onnxruntime.capi.onnxruntime_pybind11_state import Fail, InvalidArgument

    from cortexedge.export.verify import compare, relative

    axis = {name: next(iter(axes)) for name, axes in spec.dynamic_axes.items()}
    feed = {n: a.numpy() for n, a in zip(spec.input_names, spec.args, strict=True)}
    try:
        whole = sess.run(spec.output_names, feed)
        for i in range(spec.args[0].shape[0]):
            alone = sess.run(spec.output_names, {n: v.take([i], axis[n]) for n, v in feed.items()})
            rows = zip(spec.output_names, whole, alone, strict=True)
            errs = compare({n: (w.take([i], axis[n]), a) for n, w, a in rows})
            if any(relative(*e) > tol.rtol for e in errs.values()):
                return False
    except (Fail, InvalidArgument, CortexEdgeError):
        return False
    return True


def trace_batched(
    module: nn.Module, spec_at: Callable[[int, bool], TraceSpec], what: str, tol: Tolerance
) -> tuple[onnx.ModelProto, bool]:
    """Trace with a dynamic batch dim (at batch 2); keep it if the graph runs at batch 3 and on
    each row alone with the same results, otherwise (Python code that baked the traced batch
    size into a reshape, or an op the exporter only sizes statically) retrace at batch 1.
    `spec_at(batch, dynamic)` makes the trace spec. Returns (graph, dynamic)."""
    from cortexedge.export.verify import session

    try:
        graph = trace(module, spec_at(2, True), what)
    except CortexEdgeError:  # e.g. an Unfold whose size the exporter needs static
        graph = None
    if graph is not None:
        sess = session(graph.SerializeToString())
        if _batch_free(sess, spec_at(3, True), tol):
            return graph, True
    return trace(module, spec_at(1, False), what), False

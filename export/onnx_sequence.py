"""The sequence graph: x [B, T, ...] -> y [B, T, D] over a window of T bins, for offline and
batch use, built from the verified step graph rather than traced again.

The step graph becomes the body of one ONNX `Scan` over the time axis; the states start at their
contract fill values (ConstantOfShape, batch taken from x) and are carried by the Scan. So the
sequence graph computes exactly what streaming the step graph from the initial state computes,
for every family (quantized ones included), at the cost of one export. Tracing `stream` instead
fails for several models (the TorchScript exporter cannot size an `unfold` after a `pad`) and
unrolling `step` T times takes seconds per step for convolutional models.
T is fixed when `length` is given, else a symbolic "time" dim.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from cortexedge.contract import StateSpec

BODY_X, BODY_Y = "x_t", "y_t"  # the body's names for the step's x and y (outer ones are x, y)


def _rename(graph: onnx.GraphProto, old: str, new: str) -> None:
    """Rename one value everywhere in `graph` (its nodes, inputs, outputs, value_info)."""
    for node in graph.node:
        node.input[:] = [new if n == old else n for n in node.input]
        node.output[:] = [new if n == old else n for n in node.output]
    for v in (*graph.input, *graph.output, *graph.value_info):
        if v.name == old:
            v.name = new


def _dims(value: onnx.ValueInfoProto) -> list[int | str]:
    return [d.dim_param or d.dim_value for d in value.type.tensor_type.shape.dim]


def _body(step: onnx.GraphProto, specs: tuple[StateSpec, ...]) -> onnx.GraphProto:
    """The step graph with Scan's input order (states, then x) and output order (states, y)."""
    body = onnx.GraphProto()
    body.CopyFrom(step)
    body.name = "step"
    _rename(body, "x", BODY_X)
    _rename(body, "y", BODY_Y)
    ins = {v.name: v for v in body.input}
    outs = {v.name: v for v in body.output}
    new_in = [ins[s.input_name] for s in specs] + [ins[BODY_X]]
    new_out = [outs[s.output_name] for s in specs] + [outs[BODY_Y]]
    inputs = [onnx.ValueInfoProto.FromString(v.SerializeToString()) for v in new_in]
    outputs = [onnx.ValueInfoProto.FromString(v.SerializeToString()) for v in new_out]
    del body.input[:], body.output[:]
    body.input.extend(inputs)
    body.output.extend(outputs)
    return body


def _initial_state(s: StateSpec) -> tuple[list[onnx.NodeProto], list[onnx.TensorProto], str]:
    """Nodes making state `s` at its fill value, sized by the batch of x."""
    before = numpy_helper.from_array(np.array(s.shape[: s.batch_axis], np.int64), f"{s.name}_lead")
    after = numpy_helper.from_array(
        np.array(s.shape[s.batch_axis + 1 :], np.int64), f"{s.name}_trail"
    )
    dims, init = f"{s.name}_dims", f"{s.name}_init"
    dtype = helper.np_dtype_to_tensor_dtype(np.dtype(s.dtype))
    fill = helper.make_tensor("fill", dtype, [1], [s.fill])
    nodes = [
        helper.make_node("Concat", [before.name, "seq_batch", after.name], [dims], axis=0),
        helper.make_node("ConstantOfShape", [dims], [init], value=fill),
    ]
    return nodes, [before, after], init


def sequence_graph(
    step: onnx.ModelProto, specs: tuple[StateSpec, ...], length: int | None
) -> onnx.ModelProto:
    """Wrap a step graph (contract names) into x [B, T, ...] -> y [B, T, D]."""
    body = _body(step.graph, specs)
    x_dims = _dims(next(v for v in step.graph.input if v.name == "x"))
    y_dims = _dims(next(v for v in step.graph.output if v.name == "y"))
    time = length if length is not None else "time"
    zero = numpy_helper.from_array(np.array([0], np.int64), "seq_zero")
    one = numpy_helper.from_array(np.array([1], np.int64), "seq_one")
    nodes = [
        helper.make_node("Shape", ["x"], ["seq_x_shape"]),
        helper.make_node("Slice", ["seq_x_shape", zero.name, one.name], ["seq_batch"]),
    ]
    inits, state_inits = [zero, one], []
    for s in specs:
        made, consts, name = _initial_state(s)
        nodes += made
        inits += consts
        state_inits.append(name)
    nodes.append(
        helper.make_node(
            "Scan",
            [*state_inits, "x"],
            [*(f"{s.name}_final" for s in specs), "y"],
            body=body,
            num_scan_inputs=1,
            scan_input_axes=[1],
            scan_output_axes=[1],
        )
    )
    graph = helper.make_graph(
        nodes,
        "sequence",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [x_dims[0], time, *x_dims[1:]])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [y_dims[0], time, *y_dims[1:]])],
        inits,
    )
    return helper.make_model(graph, opset_imports=step.opset_import, ir_version=step.ir_version)

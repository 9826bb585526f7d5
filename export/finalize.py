"""From a traced graph to the file on disk: simplify, check, stamp, write once.

- Simplification folds exact constant work (integer shape arithmetic, and `Shape` of tensors
  whose shape is static), then runs only onnxoptimizer passes that remove no-ops, dead ends and
  duplicates (no fusions: folding BatchNorm into a Conv or an Add into a Gemm re-rounds the
  weights). Verification runs on the simplified graph, so any change would be caught there.
- The IR version is the lowest the graph's opsets allow (onnx 1.23 would default to IR 14,
  which onnxruntime 1.31 rejects); `onnx.checker` runs its full check and shape inference
  runs in strict mode; all tensors are stored inside the one file (no external data).
- The file is written to a temporary name in the target folder and renamed, so a failed export
  never leaves a half-written file.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

from cortexedge import __version__
from cortexedge.errors import CortexEdgeError

SAFE_PASSES = [
    "eliminate_deadend",
    "eliminate_identity",
    "eliminate_nop_cast",
    "eliminate_nop_dropout",
    "eliminate_nop_flatten",
    "eliminate_nop_pad",
    "eliminate_nop_concat",
    "eliminate_nop_split",
    "eliminate_nop_expand",
    "eliminate_nop_transpose",
    "eliminate_nop_reshape",
    "eliminate_unused_initializer",
    "eliminate_duplicate_initializer",
    "extract_constant_to_initializer",
]
MAX_BYTES = 2**31 - 1  # protobuf's limit for one file without external data
# ops whose integer results on constant inputs are folded (shape and index arithmetic); the
# quantization ops stay, so a QCDQ graph keeps its int8 weight -> Clip -> DequantizeLinear form
FOLDABLE = {
    "Constant", "Shape", "Gather", "Slice", "Concat", "Unsqueeze", "Squeeze", "Reshape", "Cast",
    "Identity",
    "Add", "Sub", "Mul", "Div", "Mod", "Neg", "Abs", "Min", "Max", "Equal", "Less", "Greater",
    "Not", "And", "Or", "Where", "Range", "Expand", "ConstantOfShape", "ReduceProd",
}  # fmt: skip


def check_out_path(path: str | os.PathLike) -> Path:
    """The output path, refused early when its folder is missing or it names a folder."""
    path = Path(path)
    if not path.parent.is_dir():
        raise CortexEdgeError(f"output folder does not exist: {path.parent}")
    if path.is_dir():
        raise CortexEdgeError(f"output path is a folder, expected a file name: {path}")
    return path


def _io_names(model: onnx.ModelProto) -> tuple[list[str], list[str]]:
    inits = {t.name for t in model.graph.initializer}
    return [i.name for i in model.graph.input if i.name not in inits], [
        o.name for o in model.graph.output
    ]


def _static_shapes(model: onnx.ModelProto) -> dict[str, list[int]]:
    """Value name -> shape, for every value whose inferred shape is fully static."""
    inferred = onnx.shape_inference.infer_shapes(model)
    out = {}
    for v in (*inferred.graph.value_info, *inferred.graph.input, *inferred.graph.output):
        dims = v.type.tensor_type.shape.dim
        if v.type.tensor_type.HasField("shape") and all(d.HasField("dim_value") for d in dims):
            out[v.name] = [d.dim_value for d in dims]
    return out


def _fold(node: onnx.NodeProto, consts: dict, shapes: dict) -> list[np.ndarray] | None:
    """The node's outputs when they are exact functions of constants, else None: Constant
    values, integer or boolean results of FOLDABLE ops on constants (no float rounding moves),
    and Shape of a static shape."""
    from onnx.reference import ReferenceEvaluator

    if node.op_type == "Shape" and not node.attribute and node.input[0] in shapes:
        return [np.array(shapes[node.input[0]], dtype=np.int64)]
    if node.op_type not in FOLDABLE or not all(n in consts for n in node.input if n):
        return None
    outs = ReferenceEvaluator(node).run(None, {n: consts[n] for n in node.input if n})
    outs = [np.asarray(o) for o in outs]
    exact = all(np.issubdtype(o.dtype, np.integer) or o.dtype == bool for o in outs)
    return outs if exact or node.op_type == "Constant" else None


def fold_constants(model: onnx.ModelProto) -> onnx.ModelProto:
    """Replace nodes computing exact integer constants (shape arithmetic) by initializers,
    repeating while folding lets shape inference see more static shapes."""
    model = onnx.ModelProto.FromString(model.SerializeToString())
    graph = model.graph
    consts = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    while True:
        shapes = _static_shapes(model)
        kept = []
        for node in graph.node:
            outs = _fold(node, consts, shapes)
            if outs is None:
                kept.append(node)
                continue
            for name, value in zip(node.output, outs, strict=True):
                consts[name] = value
                graph.initializer.append(numpy_helper.from_array(value, name))
        if len(kept) == len(graph.node):
            return model
        del graph.node[:]
        graph.node.extend(kept)


def simplify(model: onnx.ModelProto) -> onnx.ModelProto:
    """Fold exact constants, then apply SAFE_PASSES; keep the original if that would rename a
    graph input or output."""
    import onnxoptimizer

    out = onnxoptimizer.optimize(fold_constants(model), SAFE_PASSES)
    return out if _io_names(out) == _io_names(model) else model


def finalize_graph(model: onnx.ModelProto, *, simplify_graph: bool = True) -> onnx.ModelProto:
    """Simplified, IR-pinned, fully checked and shape-inferred copy of a traced graph."""
    if simplify_graph:
        model = simplify(model)
    else:
        model = onnx.ModelProto.FromString(model.SerializeToString())
    model.ir_version = onnx.helper.find_min_ir_version_for(list(model.opset_import))
    model.producer_name, model.producer_version = "cortexedge", __version__
    for tensor in model.graph.initializer:
        if tensor.data_location == onnx.TensorProto.EXTERNAL:
            raise CortexEdgeError(f"graph tensor '{tensor.name}' is stored outside the file")
    try:
        onnx.checker.check_model(model, full_check=True)
        model = onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as e:
        first = str(e).splitlines()[0]
        raise CortexEdgeError(f"exported graph fails the ONNX checks: {first}") from e
    return model


def serialize(model: onnx.ModelProto) -> bytes:
    """The model as one self-contained protobuf."""
    data = model.SerializeToString()
    if len(data) > MAX_BYTES:
        raise CortexEdgeError(f"model is {len(data)} bytes, over the 2 GB limit of one ONNX file")
    return data


def write(path: str | os.PathLike, data: bytes) -> Path:
    """Write through a temporary file in the same folder and a rename."""
    from cortexedge.atomic import write_atomic

    return write_atomic(check_out_path(path), data)

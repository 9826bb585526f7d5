"""From a traced graph to the file on disk: simplify, check, stamp, write once.

- Simplification folds exact constant work (integer shape arithmetic, and `Shape` of tensors
  whose shape is static), removes layout pairs (an Unsqueeze of a Squeeze on the same axes is
  its input; an Unsqueeze of a one-row Gather is a Slice; a Squeeze moves below a
  LayerNormalization to meet its Unsqueeze), then runs only onnxoptimizer passes
  that remove no-ops, dead ends and duplicates (no fusions: folding BatchNorm into a Conv or an
  Add into a Gemm re-rounds the weights), and last leaves optional outputs that nothing reads
  unnamed (ONNX's empty name) so that onnxruntime skips them (the sequence output Y of a GRU
  op whose streaming step reads only Y_h). Every change is exact, and verification runs on the
  simplified graph, so any slip would be caught there.
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
from cortexedge.atomic import check_file_out
from cortexedge.contract import PREFIX
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
    """The output path, refused early when its folder is missing, it names a folder, or it
    holds a file that no export of ours wrote (an earlier export may be replaced)."""
    path = Path(path)
    theirs = path.is_file() and not _written_by_us(path)
    return check_file_out(path, exists=" and is not a decoder cortexedge wrote; choose another "
                          "path" if theirs else None)  # fmt: skip


def _written_by_us(path: Path) -> bool:
    """Whether `path` is an ONNX file carrying our contract (an earlier export, replaceable)."""
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception:  # any decode failure: not an ONNX file at all
        return False
    return any(p.key.startswith(PREFIX) for p in model.metadata_props)


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


class _Layout:
    """What the layout rules read: constants by name, every taken value name, reader counts."""

    def __init__(self, graph: onnx.GraphProto) -> None:
        self.consts = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
        self.taken = set(self.consts) | {v.name for v in graph.input}
        self.readers: dict[str, int] = {}
        for node in graph.node:
            self.taken.update(node.output)
            for name in node.input:
                self.readers[name] = self.readers.get(name, 0) + 1

    def fresh(self, base: str) -> str:
        name = base
        while name in self.taken:
            name += "_"
        self.taken.add(name)
        return name

    def axes(self, node: onnx.NodeProto) -> list[int] | None:
        """Constant axes of a Squeeze/Unsqueeze (an input from opset 13, before an attribute)."""
        for a in node.attribute:
            if a.name == "axes":
                return sorted(a.ints)
        if len(node.input) > 1 and node.input[1] in self.consts:
            return sorted(self.consts[node.input[1]].reshape(-1).tolist())
        return None


def _attr(node: onnx.NodeProto, name: str, default: int) -> int:
    return next((a.i for a in node.attribute if a.name == name), default)


def _inverse(node: onnx.NodeProto, first: onnx.NodeProto, g: _Layout) -> str | None:
    """Unsqueeze(Squeeze(t, a), a) and Squeeze(Unsqueeze(t, a), a) are t (a Squeeze only drops
    dims of size 1). Equal axis lists are equal axes: both are read at the rank of t."""
    axes = g.axes(node)
    return first.input[0] if axes is not None and axes == g.axes(first) else None


def _row_slice(node: onnx.NodeProto, first: onnx.NodeProto, g: _Layout) -> list | None:
    """Unsqueeze(Gather(t, scalar i, axis a), a) is Slice(t, i, i+1, a): one node, not two.
    (Axes compare as given: the Gather reads them at the rank of t, the Unsqueeze too.)"""
    axis, index = _attr(first, "axis", 0), g.consts.get(first.input[1])
    if index is None or index.ndim != 0 or g.axes(node) != [axis]:
        return None
    i = int(index)
    bounds = {"starts": i, "ends": i + 1 if i != -1 else np.iinfo(np.int64).max, "axes": axis}
    names = [g.fresh(f"{node.output[0]}_{part}") for part in bounds]
    for name, value in zip(names, bounds.values(), strict=True):
        g.consts[name] = np.array([value], dtype=np.int64)
    return [onnx.helper.make_node("Slice", [first.input[0], *names], node.output, node.name)]


def _sink_squeeze(node: onnx.NodeProto, first: onnx.NodeProto, g: _Layout) -> list | None:
    """LayerNormalization(Squeeze(t, [0])) over trailing axes (a negative `axis`) is
    Squeeze(LayerNormalization(t), [0]): the norm then reads a GRU op's [1, B, H] output
    itself, and an Unsqueeze feeding the next op cancels against the moved Squeeze."""
    if g.axes(first) != [0] or _attr(node, "axis", -1) >= 0 or any(node.output[1:]):
        return None
    if g.readers.get(first.output[0], 0) != 1:  # the Squeeze would stay for its other readers
        return None
    norm, squeeze = onnx.NodeProto(), onnx.NodeProto()
    norm.CopyFrom(node)
    squeeze.CopyFrom(first)
    norm.input[0] = first.input[0]
    norm.output[0] = squeeze.input[0] = g.fresh(f"{node.output[0]}_unsqueezed")
    squeeze.output[0] = node.output[0]
    return [norm, squeeze]


# (op, op of its first input) -> a rule giving the value the op equals (a name: its readers
# read that instead) or the nodes computing it in place of the op; None where it does not apply
LAYOUT_RULES = {
    ("Unsqueeze", "Squeeze"): _inverse,
    ("Squeeze", "Unsqueeze"): _inverse,
    ("Unsqueeze", "Gather"): _row_slice,
    ("LayerNormalization", "Squeeze"): _sink_squeeze,
}


def simplify_layout(model: onnx.ModelProto) -> onnx.ModelProto:
    """Apply LAYOUT_RULES to the layout nodes a tracer writes where a model's 2-D code meets an
    op's 3-D layout (a GRU cell exported as an ONNX GRU op on [1, B, *]): onnxruntime keeps
    them, at ~0.3 µs per node per step. Exact: only shapes move. The first node of a pair
    stays for its other readers (unread, eliminate_deadend drops it); a graph output keeps its
    name."""
    model = onnx.ModelProto.FromString(model.SerializeToString())
    graph, g = model.graph, _Layout(model.graph)
    outputs = {o.name for o in graph.output}
    producer: dict[str, onnx.NodeProto] = {}
    alias: dict[str, str] = {}
    nodes: list[onnx.NodeProto] = []
    for node in graph.node:
        node.input[:] = [alias.get(i, i) for i in node.input]
        first = producer.get(node.input[0]) if node.input else None
        rule = LAYOUT_RULES.get((node.op_type, first.op_type)) if first is not None else None
        result = rule(node, first, g) if rule is not None else None
        if isinstance(result, str) and node.output[0] not in outputs:
            alias[node.output[0]] = result  # later readers read `result`; the node is dropped
            continue
        for new in result if isinstance(result, list) else [node]:
            nodes.append(new)
            producer.update((o, new) for o in new.output)
    del graph.node[:]
    graph.node.extend(nodes)
    known = {t.name for t in graph.initializer}
    graph.initializer.extend(
        numpy_helper.from_array(v, n) for n, v in g.consts.items() if n not in known
    )
    return model


def _read_names(graph: onnx.GraphProto) -> set[str]:
    """Every value name a node of `graph` (or of a subgraph in it) reads, and its outputs."""
    names = {o.name for o in graph.output}
    for node in graph.node:
        names.update(node.input)
        for attr in node.attribute:
            for sub in (*([attr.g] if attr.HasField("g") else []), *attr.graphs):
                names |= _read_names(sub)
    return names


def unname_unread_outputs(model: onnx.ModelProto) -> onnx.ModelProto:
    """Give optional node outputs that nothing reads the empty name (trailing ones dropped), so
    the runtime skips computing them; required outputs keep their names."""
    model = onnx.ModelProto.FromString(model.SerializeToString())
    opset = next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
    read = _read_names(model.graph)
    optional = onnx.defs.OpSchema.FormalParameterOption.Optional
    for node in model.graph.node:
        if node.domain not in ("", "ai.onnx") or all(o in read for o in node.output if o):
            continue
        formal = onnx.defs.get_schema(node.op_type, opset).outputs
        outs = [
            "" if o not in read and i < len(formal) and formal[i].option == optional else o
            for i, o in enumerate(node.output)
        ]
        while outs and not outs[-1]:
            outs.pop()
        if outs:  # a node with no output left is dead: eliminate_deadend's to remove
            node.output[:] = outs
    return model


def simplify(model: onnx.ModelProto) -> onnx.ModelProto:
    """Fold exact constants, simplify layout pairs, apply SAFE_PASSES, unname unread optional
    outputs; keep the original if that would rename a graph input or output."""
    import onnxoptimizer

    out = simplify_layout(fold_constants(model))
    out = unname_unread_outputs(onnxoptimizer.optimize(out, SAFE_PASSES))
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

"""Issue 6 experiment: which onnxruntime settings and step-graph forms lower the per-bin latency.

For the decoders of runtime_targets.py ("GRU C=96 H=64": one ONNX GRU op + Gemm readout;
"AEGRU stateful" and "AEGRU window" at C=96), exported by `to_onnx`, every variant below steps
one bin at a time through IOBinding on preallocated OrtValues with two swapped state sets (the
runtime backend's hot path), one thread. All variants of a decoder are timed in ONE interleaved
loop (blocks of 100 calls, taking turns), so on this noisy shared machine the p50 ratio against
"before" (the backend's settings before this study) is the robust number; absolute µs drift.

Variants (each one change to "before" unless named "after + ..." or joined with "+"):
- session options: CPU arena, memory pattern, memory reuse, graph optimisation levels,
  execution order, deterministic compute, and config entries (spinning, denormals-as-zero, env
  allocators, pre-packing, device allocator for initializers);
- "batch fixed at load": `add_free_dimension_override_by_name` of the graph's batch dim, so
  ORT folds the Shape arithmetic and plans memory statically;
- the call: the public `InferenceSession.run_with_iobinding` (its Python wrapper checks WebGPU
  capture on every call and, given a RunOptions, looks up `gpu_graph_id`, a miss raised and
  caught as a C++ exception: the field notes' RunOptions trap) against the pybind session
  `sess._sess.run_with_iobinding(binding._iobinding, run_options)` ("direct"), with None or a
  RunOptions made once;
- "after": what runtime/backends/ort.py does since this study (batch fixed + direct call with
  one empty RunOptions), and single changes on top of it;
- graph forms, prototypes of export changes built with onnx.helper from the SAME weights and
  checked against the exported graph (max|Δy| over 200 bins): ORT's saved optimized graph; for
  the GRU decoder, the GRU op without its Transpose/Gather plumbing (sequence output Y unnamed,
  or named but unused), and the cell written as Gemm + elementwise nodes (two Gemms, or one Gemm
  on Concat(x, h)); for AEGRU, a minimal graph (no Shape arithmetic, 2-D BatchNorm, GRU + LayerNorm
  per bin on [1, B, H], zero initial state as the GRU op's default, readout of the last bin only);
- "runtime now": `OrtBackend` and `StreamingDecoder.step` as runtime/backends/ort.py is now
  (the decoder's bin buffers bound in place), and the decoder stepping a "before" probe.

Also timed: Identity and chains of Relu nodes on [1, 64] (onnxruntime's cost per extra node).

Prints one table per decoder and writes benchmarks/results/ort_options.json.
Run: .venv/bin/python benchmarks/ort_options.py [--quick] [--bins N]
"""

from __future__ import annotations

# isort: off
import _common as C  # first: it pins BLAS to one thread before numpy loads
# isort: on

import argparse
import dataclasses
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
from onnx import helper, numpy_helper

MODELS = {
    "GRU C=96 H=64": ("gru", dict(in_channels=96, hidden=64, out_dim=2)),
    "AEGRU stateful": ("aegru", dict(in_channels=96, mode="stateful")),
    "AEGRU window": ("aegru", dict(in_channels=96)),
}
CHECK_BINS = 200
INT64_MAX = np.iinfo(np.int64).max


@dataclasses.dataclass(frozen=True)
class Setup:
    """How one variant builds its session and calls it; the defaults are "before"."""

    level: str = "ORT_ENABLE_ALL"
    arena: bool = False
    mem_pattern: bool = True
    mem_reuse: bool = True
    order: str = "DEFAULT"
    deterministic: bool = False
    entries: tuple[tuple[str, str], ...] = (("session.disable_quant_qdq", "1"),)
    fixed_batch: bool = False
    call: str = "wrapper"  # "wrapper": InferenceSession.run_with_iobinding; "direct": its _sess
    run_options: tuple[tuple[str, str], ...] | None = None  # None: no RunOptions passed
    graph: str = "exported"  # a key of GRAPHS


BEFORE = Setup()
# the runtime backend after this study: batch fixed at load, direct call with one RunOptions
AFTER = dataclasses.replace(BEFORE, fixed_batch=True, call="direct", run_options=())


def _with(base: Setup, **changes) -> Setup:
    return dataclasses.replace(base, **changes)


def _entry(key: str, value: str) -> Setup:
    return _with(BEFORE, entries=(*BEFORE.entries, (key, value)))


SETUPS: dict[str, Setup] = {
    "before": BEFORE,
    "CPU arena on": _with(BEFORE, arena=True),
    "memory pattern off": _with(BEFORE, mem_pattern=False),
    "memory reuse off": _with(BEFORE, mem_reuse=False),
    "opt level DISABLE_ALL": _with(BEFORE, level="ORT_DISABLE_ALL"),
    "opt level BASIC": _with(BEFORE, level="ORT_ENABLE_BASIC"),
    "opt level EXTENDED": _with(BEFORE, level="ORT_ENABLE_EXTENDED"),
    "opt level LAYOUT": _with(BEFORE, level="ORT_ENABLE_LAYOUT"),
    "execution order PRIORITY_BASED": _with(BEFORE, order="PRIORITY_BASED"),
    "deterministic compute": _with(BEFORE, deterministic=True),
    "intra_op.allow_spinning=0": _entry("session.intra_op.allow_spinning", "0"),
    "set_denormal_as_zero=1": _entry("session.set_denormal_as_zero", "1"),
    "use_env_allocators=1": _entry("session.use_env_allocators", "1"),
    "disable_prepacking=1": _entry("session.disable_prepacking", "1"),
    "use_device_allocator_for_initializers=1": _entry(
        "session.use_device_allocator_for_initializers", "1"
    ),
    "batch fixed at load": _with(BEFORE, fixed_batch=True),
    "wrapper + RunOptions()": _with(BEFORE, run_options=()),
    "wrapper + RunOptions(gpu_graph_id=-1)": _with(BEFORE, run_options=(("gpu_graph_id", "-1"),)),
    "direct call, no RunOptions": _with(BEFORE, call="direct"),
    "direct call + RunOptions()": _with(BEFORE, call="direct", run_options=()),
    "direct + RunOptions(no EP sync)": _with(
        BEFORE, call="direct", run_options=(("disable_synchronize_execution_providers", "1"),)
    ),
    "after = fixed batch + direct + RunOptions()": AFTER,
    "after + CPU arena on": _with(AFTER, arena=True),
    "after + memory pattern off": _with(AFTER, mem_pattern=False),
    "after + memory reuse off": _with(AFTER, mem_reuse=False),
    "after + opt level BASIC": _with(AFTER, level="ORT_ENABLE_BASIC"),
    "graph: ORT-optimized, saved": _with(BEFORE, graph="ort-optimized"),
    "graph: GRU op, 4 nodes": _with(BEFORE, graph="gru-op"),
    "graph: cell as 2 Gemm + elementwise": _with(BEFORE, graph="cell-gemm2"),
    "graph: cell as Concat + 1 Gemm": _with(BEFORE, graph="cell-concat"),
    "graph: AEGRU minimal": _with(BEFORE, graph="aegru-minimal"),
    "after + graph: GRU op, 4 nodes": _with(AFTER, graph="gru-op"),
    "after + graph: GRU op, 4 nodes, Y output named": _with(AFTER, graph="gru-op-y"),
    "after + graph: cell as Concat + 1 Gemm": _with(AFTER, graph="cell-concat"),
    "after + graph: AEGRU minimal": _with(AFTER, graph="aegru-minimal"),
}


# ---------------------------------------------------------------- sessions and probes
def session_options(setup: Setup, batch_param: str | None):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads, so.inter_op_num_threads = 1, 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = getattr(ort.GraphOptimizationLevel, setup.level)
    so.log_severity_level = 3
    so.enable_cpu_mem_arena = setup.arena
    so.enable_mem_pattern = setup.mem_pattern
    so.enable_mem_reuse = setup.mem_reuse
    so.execution_order = getattr(ort.ExecutionOrder, setup.order)
    so.use_deterministic_compute = setup.deterministic
    for key, value in setup.entries:
        so.add_session_config_entry(key, value)
    if setup.fixed_batch and batch_param:
        so.add_free_dimension_override_by_name(batch_param, 1)
    return so


class Probe:
    """One variant's session stepped like the runtime backend: x copied into a bound buffer,
    two IOBindings for the two directions of the state swap, one run call per bin."""

    def __init__(self, data: bytes, loaded, setup: Setup) -> None:
        import onnxruntime as ort

        x = next(i for i in loaded.proto.graph.input if i.name == "x")
        batch_param = x.type.tensor_type.shape.dim[0].dim_param or None
        self.sess = ort.InferenceSession(
            data, session_options(setup, batch_param), providers=["CPUExecutionProvider"]
        )
        meta = loaded.meta
        self.x = np.zeros((1, *meta.input.shape), dtype=np.float32)
        self.y = np.zeros((1, len(meta.outputs)), dtype=np.float32)
        states = [loaded.initial_states(1), loaded.initial_states(1)]
        as_ort = ort.OrtValue.ortvalue_from_numpy
        x_value, y_value = as_ort(self.x), as_ort(self.y)
        values = [{k: as_ort(v) for k, v in s.items()} for s in states]
        bindings = []
        for k in (0, 1):
            b = self.sess.io_binding()
            b.bind_ortvalue_input("x", x_value)
            b.bind_ortvalue_output("y", y_value)
            for s in meta.states:
                b.bind_ortvalue_input(s.input_name, values[k][s.name])
                b.bind_ortvalue_output(s.output_name, values[1 - k][s.name])
            bindings.append(b)
        opts = None
        if setup.run_options is not None:
            opts = ort.RunOptions()
            for key, value in setup.run_options:
                opts.add_run_config_entry(key, value)
        if setup.call == "wrapper":
            self.run, self.args = self.sess.run_with_iobinding, [(b, opts) for b in bindings]
        else:
            self.run = self.sess._sess.run_with_iobinding
            self.args = [(b._iobinding, opts) for b in bindings]
        self.live = 0
        self.keep = (x_value, y_value, values, states, bindings)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        self.x[...] = x
        self.run(*self.args[self.live])
        self.live ^= 1
        return self.y


class ProbeBackend(Probe):
    """A probe behind the runtime's backend interface, so a StreamingDecoder can step it."""

    checks_values = False

    def bind_input(self, buffer: np.ndarray) -> None:
        """Nothing: every bin is copied in, as the backend did before this study."""

    def step(self, x: np.ndarray) -> np.ndarray:
        return self(x)


# ---------------------------------------------------------------- graph forms
class Builder:
    """A tiny onnx.helper graph writer: `op` appends a node and returns its output name(s)."""

    def __init__(self, like: onnx.ModelProto) -> None:
        self.like, self.nodes, self.inits = like, [], []

    def const(self, value) -> str:
        name = f"c{len(self.inits)}"
        self.inits.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    def op(self, kind: str, *inputs: str, out: str | None = None, n: int = 1, **attrs):
        outs = [out] if out else [f"t{len(self.nodes)}_{i}" for i in range(n)]
        self.nodes.append(helper.make_node(kind, list(inputs), outs, **attrs))
        return outs[0] if n == 1 else outs

    def model(self) -> bytes:
        g = helper.make_graph(self.nodes, "step", self.like.graph.input, self.like.graph.output,
                              self.inits)  # fmt: skip
        m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
        m.ir_version = self.like.ir_version  # helper's default IR 14 is refused by ORT 1.31
        return m.SerializeToString()


def weights(proto: onnx.ModelProto) -> dict:
    """The exported step graph's parameters by role (first node of each op type)."""
    inits = {i.name: numpy_helper.to_array(i) for i in proto.graph.initializer}
    nodes = {}
    for node in proto.graph.node:
        nodes.setdefault(node.op_type, node)

    def attr(node, name, default=None):
        return next((helper.get_attribute_value(a) for a in node.attribute if a.name == name),
                    default)  # fmt: skip

    gru = nodes["GRU"]
    out = {"W": inits[gru.input[1]][0], "R": inits[gru.input[2]][0], "B": inits[gru.input[3]][0],
           "hidden": attr(gru, "hidden_size")}  # fmt: skip
    if "BatchNormalization" in nodes:  # AEGRU: encoder (Gemm, or MatMul+Add), BN, Clip, LN
        bn, clip, ln = nodes["BatchNormalization"], nodes["Clip"], nodes["LayerNormalization"]
        if "MatMul" in nodes:
            out["enc_w"] = inits[nodes["MatMul"].input[1]]
            out["enc_b"] = next(inits[i] for i in nodes["Add"].input if i in inits)
        else:  # the first Gemm; as x @ enc_w
            enc = nodes["Gemm"]
            w = inits[enc.input[1]]
            out["enc_w"], out["enc_b"] = (w.T if attr(enc, "transB", 0) else w), inits[enc.input[2]]
        out["bn"] = [inits[i] for i in bn.input[1:5]] + [attr(bn, "epsilon")]
        out["clip"] = [inits[i] for i in clip.input[1:3]]
        out["ln"] = [inits[i] for i in ln.input[1:3]] + [attr(ln, "epsilon")]
    # the readout is the graph's last Gemm (transB=1), or its last MatMul + Add (window AEGRU)
    last = [n for n in proto.graph.node if n.op_type in ("Gemm", "MatMul")][-1]
    if last.op_type == "Gemm":
        out["out_w"], out["out_b"] = inits[last.input[1]].T, inits[last.input[2]]
    else:
        add = [n for n in proto.graph.node if n.op_type == "Add"][-1]
        out["out_w"] = inits[last.input[1]]
        out["out_b"] = next(inits[i] for i in add.input if i in inits)
    return out


def gru_op(
    b: Builder, w: dict, x3: str, h3: str | None, out: str | None = None, keep_y: bool = False
) -> str:
    """One ONNX GRU op (linear_before_reset) on x3 [1,B,I] from h3 [1,B,H] (zeros when None):
    returns Y_h [1,B,H]. The sequence output Y is left unnamed (not computed) unless `keep_y`."""
    ins = [x3, b.const(w["W"][None]), b.const(w["R"][None]), b.const(w["B"][None])]
    y, yh = b.op("GRU", *ins, *(["", h3] if h3 else []), n=2, hidden_size=w["hidden"],
                 linear_before_reset=1)  # fmt: skip
    b.nodes[-1].output[:] = [y if keep_y else "", out or yh]
    return out or yh


def gru_cell_nodes(b: Builder, w: dict, x: str, h: str, concat: bool) -> str:
    """The same GRU step as Gemm + elementwise nodes on x [B,I], h [B,H] -> h' [B,H].

    Gate order (ONNX) z, r, n; n = tanh(Wn x + bWn + r ⊙ (Rn h + bRn)); h' = n + z ⊙ (h − n).
    `concat`: one Gemm on Concat(x, h) with columns [z, r | Wn x | Rn h] (zero blocks)."""
    hid, W, R, B = w["hidden"], w["W"], w["R"], w["B"]
    bw, br = B[: 3 * hid], B[3 * hid :]
    two = b.const(np.array([2 * hid, hid], dtype=np.int64))
    if concat:
        i = W.shape[1]
        wcat = np.zeros((i + hid, 4 * hid), dtype=np.float32)
        wcat[:i, : 3 * hid], wcat[i:, : 2 * hid] = W.T, R[: 2 * hid].T
        wcat[i:, 3 * hid :] = R[2 * hid :].T
        bcat = np.concatenate([bw[: 2 * hid] + br[: 2 * hid], bw[2 * hid :], br[2 * hid :]])
        g = b.op("Gemm", b.op("Concat", x, h, axis=1), b.const(wcat), b.const(bcat))
        sizes = b.const(np.array([2 * hid, hid, hid], dtype=np.int64))
        pre_zr, nx, nh = b.op("Split", g, sizes, n=3, axis=1)
    else:
        gx = b.op("Gemm", x, b.const(W), b.const(bw), transB=1)
        gh = b.op("Gemm", h, b.const(R), b.const(br), transB=1)
        zr_x, nx = b.op("Split", gx, two, n=2, axis=1)
        zr_h, nh = b.op("Split", gh, two, n=2, axis=1)
        pre_zr = b.op("Add", zr_x, zr_h)
    z, r = b.op("Split", b.op("Sigmoid", pre_zr), b.const(np.array([hid, hid])), n=2, axis=1)
    n = b.op("Tanh", b.op("Add", nx, b.op("Mul", r, nh)))
    return b.op("Add", n, b.op("Mul", z, b.op("Sub", h, n)))


def gru_decoder_graph(kind: str) -> Callable:
    """GRUDecoder step graphs: the GRU op without plumbing, or the cell as nodes."""

    def build(loaded, cfg: dict) -> bytes:
        b, w = Builder(loaded.proto), weights(loaded.proto)
        zero = b.const(np.array([0], dtype=np.int64))
        if kind.startswith("gru-op"):
            x3 = b.op("Unsqueeze", "x", zero)
            h3 = gru_op(b, w, x3, "state_h", out="state_h_out", keep_y=kind == "gru-op-y")
            h_new = b.op("Squeeze", h3, zero)
        else:
            h = b.op("Squeeze", "state_h", zero)
            h_new = gru_cell_nodes(b, w, "x", h, concat=kind == "cell-concat")
            b.op("Unsqueeze", h_new, zero, out="state_h_out")
        b.op("Gemm", h_new, b.const(w["out_w"]), b.const(w["out_b"]), out="y")
        return b.model()

    return build


def aegru_minimal(loaded, cfg: dict) -> bytes:
    """AEGRU step without Shape arithmetic: box sum, log∘softplus, Gemm, 2-D BatchNorm, Clip,
    GRU op(s) + LayerNorm, readout of the last bin only. Same weights, same function."""
    b, w = Builder(loaded.proto), weights(loaded.proto)
    zero, one = b.const(np.array([0])), b.const(np.array([1]))
    e, c = w["enc_w"].shape[1], cfg["in_channels"]
    buf = b.op("Concat", "state_buffer", b.op("Unsqueeze", "x", one), axis=1)
    b.op("Slice", buf, one, b.const(np.array([INT64_MAX])), one, out="state_buffer_out")

    def encode(counts: str) -> str:  # [N, C] -> clamped, normalised mu [N, E]
        f = b.op("Log", b.op("Softplus", counts))
        z = b.op("Gemm", f, b.const(w["enc_w"]), b.const(w["enc_b"]))
        *bn, eps = w["bn"]
        z = b.op("BatchNormalization", z, *map(b.const, bn), epsilon=eps)
        return b.op("Clip", z, *map(b.const, w["clip"]))

    *ln, ln_eps = w["ln"]
    ln = list(map(b.const, ln))
    if cfg["mode"] == "stateful":
        mu = encode(b.op("ReduceSum", buf, one, keepdims=0))
        yh = gru_op(b, w, b.op("Unsqueeze", mu, zero), b.op("Unsqueeze", "state_h0", zero))
        h = b.op("LayerNormalization", b.op("Squeeze", yh, zero), *ln, axis=-1, epsilon=ln_eps,
                 out="state_h0_out")  # fmt: skip
    else:
        steps, width = cfg["num_steps"], cfg["bin_width"]
        window = "state_buffer_out"
        shape = b.const(np.array([-1, width, c]))  # [B·steps, width, C], batch-major
        bins = b.op("ReduceSum", b.op("Reshape", window, shape), one, keepdims=0)
        mu = b.op("Reshape", encode(bins), b.const(np.array([-1, steps, e])))
        per_step = b.op("Split", b.op("Transpose", mu, perm=[1, 0, 2]), n=steps, axis=0)
        h = None
        for t in range(steps):  # [1, B, E] each; the first GRU starts from zeros
            h = gru_op(b, w, per_step[t], h)
            h = b.op("LayerNormalization", h, *ln, axis=-1, epsilon=ln_eps)
        h = b.op("Squeeze", h, zero)
    b.op("Gemm", h, b.const(w["out_w"]), b.const(w["out_b"]), out="y")
    return b.model()


def ort_optimized(loaded, cfg: dict) -> bytes:
    """The graph onnxruntime itself produces at ORT_ENABLE_ALL (saved, then loaded as is)."""
    import onnxruntime as ort

    with tempfile.TemporaryDirectory() as tmp:
        so = session_options(BEFORE, None)
        so.optimized_model_filepath = str(Path(tmp) / "opt.onnx")
        ort.InferenceSession(loaded.data, so, providers=["CPUExecutionProvider"])
        return Path(so.optimized_model_filepath).read_bytes()


# graph form -> (builder, registry names it applies to)
GRAPHS: dict[str, tuple[Callable, tuple[str, ...]]] = {
    "exported": (lambda loaded, cfg: loaded.data, ("gru", "aegru")),
    "ort-optimized": (ort_optimized, ("gru", "aegru")),
    "gru-op": (gru_decoder_graph("gru-op"), ("gru",)),
    "gru-op-y": (gru_decoder_graph("gru-op-y"), ("gru",)),
    "cell-gemm2": (gru_decoder_graph("cell-gemm2"), ("gru",)),
    "cell-concat": (gru_decoder_graph("cell-concat"), ("gru",)),
    "aegru-minimal": (aegru_minimal, ("aegru",)),
}


def node_count(data: bytes) -> int:
    return len(onnx.load_from_string(data).graph.node)


def saved_node_count(data: bytes, setup: Setup, batch_param: str | None) -> int:
    """Nodes left after onnxruntime's own optimisation under `setup`."""
    import onnxruntime as ort

    with tempfile.TemporaryDirectory() as tmp:
        so = session_options(setup, batch_param)
        so.optimized_model_filepath = str(Path(tmp) / "opt.onnx")
        ort.InferenceSession(data, so, providers=["CPUExecutionProvider"])
        return len(onnx.load(so.optimized_model_filepath).graph.node)


# ---------------------------------------------------------------- per-node floor
def chain_graph(n_relu: int) -> bytes:
    """y = Relu^n(x) on [1, 64] (n = 0: one Identity node)."""
    b = Builder(onnx.ModelProto())
    t = "x"
    for i in range(n_relu):
        t = b.op("Relu", t, out="y" if i == n_relu - 1 else None)
    if n_relu == 0:
        b.op("Identity", "x", out="y")
    io = [helper.make_tensor_value_info(n, onnx.TensorProto.FLOAT, [1, 64]) for n in "xy"]
    g = helper.make_graph(b.nodes, "chain", [io[0]], [io[1]])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    return m.SerializeToString()


class ChainProbe(Probe):
    """A stateless chain graph stepped like a decoder."""

    def __init__(self, data: bytes, setup: Setup) -> None:
        from types import SimpleNamespace

        meta = SimpleNamespace(input=SimpleNamespace(shape=(64,)), outputs=[None] * 64, states=())
        proto = onnx.load_from_string(data)
        fake = SimpleNamespace(proto=proto, meta=meta, initial_states=lambda batch: {})
        super().__init__(data, fake, setup)


# ---------------------------------------------------------------- the run
def prepare(label: str, name: str, kwargs: dict, work: Path) -> dict:
    """Export one decoder, build every applicable variant, check outputs against "before"."""
    from cortexedge.runtime.backends.ort import OrtBackend
    from cortexedge.runtime.decoder import StreamingDecoder

    model, loaded = C.exported_decoder(name, kwargs, work / f"{label.replace(' ', '_')}.onnx")
    cfg = model.config()
    x = next(i for i in loaded.proto.graph.input if i.name == "x")
    batch_param = x.type.tensor_type.shape.dim[0].dim_param or None
    xs = C.poisson_bins(4000, loaded.meta.input.shape, seed=1)
    rows = list(xs[:, None])
    graphs = {g: build(loaded, cfg) for g, (build, fams) in GRAPHS.items() if name in fams}
    methods, facts, reference = {}, {}, None
    for vname, setup in SETUPS.items():
        if setup.graph in graphs:
            data = graphs[setup.graph]
            methods[vname] = (Probe(data, loaded, setup), rows)
            after_ort = saved_node_count(data, setup, batch_param)
            facts[vname] = {"graph": setup.graph, "nodes": node_count(data),
                            "nodes_after_ort": after_ort}  # fmt: skip
    methods["runtime now: OrtBackend.step"] = (OrtBackend(loaded, 1).step, rows)
    methods["runtime now: StreamingDecoder.step"] = (StreamingDecoder(loaded.path).step, xs)
    old = StreamingDecoder(loaded.path)
    old._backend = ProbeBackend(loaded.data, loaded, BEFORE)  # the decoder on "before"
    methods["StreamingDecoder.step on before"] = (old.step, xs)
    for vname, (fn, inputs) in methods.items():  # outputs from the initial state vs "before"
        ys = np.stack([np.array(fn(x)).reshape(-1) for x in inputs[:CHECK_BINS]])
        reference = ys if reference is None else reference
        facts.setdefault(vname, {})["max_abs_dy_vs_before"] = float(np.abs(ys - reference).max())
    row = {"registry": name, "config": cfg, "macs": loaded.meta.macs["dense"]}
    return {"label": label, "row": row, "methods": methods, "facts": facts}


def summarise(lat: dict[str, np.ndarray], facts: dict) -> dict:
    base = C.stats(lat["before"])
    out = {}
    for name, ns in lat.items():
        s = C.stats(ns)
        ratios = {f"{q}_vs_before": round(s[q] / base[q], 3) for q in ("p50", "p99")}
        out[name] = {"latency_us": s, **ratios, **facts.get(name, {})}
    return out


def print_tables(report: dict) -> None:
    for label, entry in report["models"].items():
        rows = []
        for name, r in entry["variants"].items():
            nodes = f"{r['nodes']} -> {r['nodes_after_ort']}" if "nodes" in r else ""
            dy = f"{r['max_abs_dy_vs_before']:.1e}"
            rows.append([name, C.p50_p99(r["latency_us"]), f"{r['p50_vs_before']:.3f}",
                         f"{r['p99_vs_before']:.3f}", nodes, dy])  # fmt: skip
        title = f"{label} ({entry['macs']:,} MACs) — {C.machine_line(report['machine'])}"
        cols = ["variant", "p50 / p99 µs", "p50 ratio", "p99 ratio", "nodes (file -> ORT)",
                "max|Δy|"]  # fmt: skip
        C.print_table(title, cols, rows)
    chain = report["per_node"]
    rows = [[k, C.p50_p99(v)] for k, v in chain["latency_us"].items()]
    rows.append(["slope (µs per extra Relu node, p50)", f"{chain['us_per_node_p50']:.3f}"])
    C.print_table("onnxruntime per-node cost ([1, 64] float, after settings)",
                  ["graph", "p50 / p99 µs"], rows)  # fmt: skip


def per_node(bins: int) -> dict:
    """Identity and Relu chains: the floor and the slope per node."""
    sizes = (0, 1, 4, 16)
    rows = list(np.ones((8, 1, 64), dtype=np.float32))
    methods = {f"{n} Relu" if n else "Identity": (ChainProbe(chain_graph(n), AFTER), rows)
               for n in sizes}  # fmt: skip
    lat = {k: C.stats(v) for k, v in C.time_interleaved(methods, bins, 300).items()}
    p50 = [lat[k]["p50"] for k in list(methods)[1:]]
    slope = float(np.polyfit(sizes[1:], p50, 1)[0])
    return {"latency_us": lat, "us_per_node_p50": round(slope, 3)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="2,000 timed bins per variant")
    ap.add_argument("--bins", type=int, default=None, help="timed bins per variant")
    args = ap.parse_args()
    args.bins = args.bins or (2000 if args.quick else 10000)
    started, info = time.time(), C.machine_info()
    models = {}
    with tempfile.TemporaryDirectory(prefix="ce-ort-options-") as tmp:
        for label, (name, kwargs) in MODELS.items():
            p = prepare(label, name, kwargs, Path(tmp))
            print(f"timing {len(p['methods'])} variants of {label} ...", flush=True)
            lat = C.time_interleaved(p["methods"], args.bins, 300)
            models[label] = {**p["row"], "variants": summarise(lat, p["facts"])}
    chain = per_node(args.bins)
    report = {
        "machine": C.finish(info, started),
        "settings": {"timed_bins": args.bins, "warmup_bins": 300, "quick": args.quick,
                     "inputs": "Poisson(1) spike counts, float32", "weights": "random init, seed 0",
                     "check": f"max|Δy| vs 'before' over the first {CHECK_BINS} bins",
                     "timing": "per call (perf_counter_ns); all variants of one decoder "
                               "interleaved in blocks of 100 calls"},
        "models": models,
        "per_node": chain,
    }  # fmt: skip
    print_tables(report)
    print(f"wrote {C.write_results('ort_options.json', report)}")


if __name__ == "__main__":
    main()

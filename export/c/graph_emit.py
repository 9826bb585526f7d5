"""The float C program of a step graph: memory plan, node code, state struct and API.

`emit_graph(cgraph, policy)` lays every tensor of the C IR (graph_ir.CGraph) in one place:
- the bin is the caller's `bin`, each state tensor a field of decoder_state_t (its graph shape
  flattened, in the contract's order), constants const arrays in decoder_weights.c;
- a data-movement output that is one contiguous range of its input is a view (no storage);
- every other tensor gets a range of one scratch array on decoder_step's stack, reused once
  the tensor is dead (first fit along the node order), so the stack holds the widest point
  of the graph rather than the sum of its tensors.
Each node's C comes from its op's emitter (graph_ops.C_OPS). At the end of the step `y` is
copied out and each state output into its field (through a copy when it is a view of
another state field, which the copies could overwrite first).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace

import numpy as np

from cortexedge.errors import CortexEdgeError
from cortexedge.export.c import emit_common, graph_ops, graph_tables, window_chain
from cortexedge.export.c.emit_common import Layout
from cortexedge.export.c.graph_ir import CGraph, CNode, Tensor
from cortexedge.export.c.program import Program
from cortexedge.export.c.sparse import CArray, Stored, float_literal, matvec_function, store

ALIGN = 4  # scratch offsets in floats (16 bytes: aligned vector loads on the host)
LOOP_NAMES = ("o", "i", "s", "j", *(f"i{k}" for k in range(8)))


@dataclass
class Context:
    """What the emitters read and add to while the program is generated."""

    policy: str
    place: dict[str, str] = field(default_factory=dict)  # tensor -> C pointer expression
    views: set[str] = field(default_factory=set)
    moves: dict[str, list] = field(default_factory=dict)  # node -> graph_ops.Move per output
    arrays: list[CArray] = field(default_factory=list)
    helpers: dict[str, str] = field(default_factory=dict)
    matrices: list[Stored] = field(default_factory=list)
    skipped: int = 0  # MACs the dense count has that the C code does not execute
    zero_macs: int = 0  # executed MACs of a zero weight (dense storage of a pruned matrix)
    fields: dict[int, int] = field(default_factory=dict)  # state k -> floats in its field
    chains: dict[str, list] = field(default_factory=dict)  # fused unary chains (graph_tables)
    _names: set[str] = field(default_factory=set)
    _stored: dict[tuple, str] = field(default_factory=dict)  # content -> name (one copy each)

    def name(self, hint: str) -> str:
        """A fresh C identifier from `hint` (a node name)."""
        base = re.sub(r"\W+", "_", hint).strip("_").lower() or "t"
        base = base if not base[0].isdigit() else f"t{base}"
        name, k = base, 1
        while name in self._names:
            name, k = f"{base}_{k}", k + 1
        self._names.add(name)
        return name

    def ref(self, t: Tensor) -> str:
        """C pointer to the first element of `t`."""
        if t.name not in self.place:
            if not t.const:
                raise CortexEdgeError(f"C export: tensor '{t.name}' has no storage (a bug)")
            self.place[t.name] = self.const_array(t.value.reshape(-1), t.name)
        return self.place[t.name]

    def is_view(self, t: Tensor) -> bool:
        return t.name in self.views

    def const_array(self, values: np.ndarray, hint: str) -> str:
        values = np.asarray(values, dtype=np.float32).reshape(-1)
        if not np.isfinite(values).all():
            raise CortexEdgeError(f"C export: constant '{hint}' holds non-finite values")
        return self._array(values, f"k_{hint}")

    def const_index(self, values: np.ndarray) -> str:
        dtype = np.uint16 if values.max(initial=0) < 65536 else np.int32
        return self._array(np.asarray(values, dtype=dtype), "ix_map")

    def _array(self, values: np.ndarray, hint: str) -> str:
        """The const array holding `values`: one copy however many nodes read it."""
        key = ("array", values.dtype.str, values.tobytes())
        if key not in self._stored:
            self._stored[key] = self.name(hint)
            self.arrays.append(CArray(self._stored[key], values))
        return self._stored[key]

    def matrix(self, w: np.ndarray, hint: str, runs: int, skipped: int = 0) -> str:
        """Store W [rows, cols] (dense or CSR by `policy`) with its mat-vec `mv_<name>(x, y)`,
        run `runs` times per step (`skipped` of them not executed); returns the name."""
        w = np.asarray(w, dtype=np.float32)
        if not np.isfinite(w).all():
            raise CortexEdgeError(f"C export: weight '{hint}' holds non-finite values")
        key = ("matrix", w.shape, w.tobytes())
        if key not in self._stored:  # a weight shared by nodes (a window's steps) is one copy
            stored = store(self.name(f"m_{hint}"), w, self.policy, columns=True)
            self.matrices.append(stored)
            self.arrays += stored.arrays
            self.helpers[stored.name] = matvec_function(stored)
            self._stored[key] = stored.name
        stored = next(m for m in self.matrices if m.name == self._stored[key])
        self.skipped += runs * (w.size - stored.macs) + skipped * stored.macs
        self.zero_macs += (runs - skipped) * (stored.macs - stored.effective)
        return stored.name

    def helper(self, key: str, code: str) -> None:
        self.helpers.setdefault(key, code)

    literal = staticmethod(float_literal)


def _plan(g: CGraph, ctx: Context) -> int:
    """Places every tensor; returns the scratch size in floats."""
    ctx.place["x"] = "bin"
    for k, s in enumerate(g.states):
        ctx.place[s.input.name] = f"state->s{k}"
        ctx.fields[k] = s.input.size
    base: dict[str, tuple[str, int]] = {}  # view -> (tensor holding it, element offset)
    start: dict[str, int] = {}
    last: dict[str, int] = {}
    for i, node in enumerate(g.nodes):
        for t in node.inputs:
            if t is not None and not t.const:
                root = base.get(t.name, (t.name, 0))[0]
                last[root] = i
        if node.op_type in graph_ops.MOVES:
            ctx.moves[node.name] = graph_ops.moves(node)
        for k, t in enumerate(node.outputs):
            view = ctx.moves[node.name][k].view() if node.name in ctx.moves and t else None
            if t is None or t.name in ctx.place:  # placed before the plan (a chain's ring)
                continue
            if k == 0 and _in_place(node, g, ctx, base):
                continue  # lives in its state's field
            if view is not None and not node.inputs[view[0]].const:
                src = node.inputs[view[0]]
                root, off = base.get(src.name, (src.name, 0))
                base[t.name] = (root, off + view[1])
                ctx.views.add(t.name)
            else:
                start[t.name] = last[t.name] = i
    for t in (g.y, *(s.output for s in g.states)):
        root = base.get(t.name, (t.name, 0))[0]
        last[root] = len(g.nodes)
    size = _first_fit(start, last, {t.name: t.size for n in g.nodes for t in n.outputs if t}, ctx)
    for view, (root, off) in base.items():
        ctx.place[view] = f"({ctx.place[root]} + {off})" if off else ctx.place[root]
    return size


def _in_place(node: CNode, g: CGraph, ctx: Context, base: dict) -> bool:
    """Place a Concat that begins with a whole state tensor or a suffix of one, element for
    element (a buffer with the new bin appended), in that state's field, enlarged to hold it:
    the state part is never copied and the shifted buffer is one move at the end."""
    first, out = node.inputs[0], node.outputs[0]
    if node.op_type != "Concat" or out is None or first is None or first.const:
        return False
    root, off = base.get(first.name, (first.name, 0))
    k = next((k for k, s in enumerate(g.states) if s.input.name == root), None)
    if k is None or ctx.fields[k] != g.states[k].input.size or off + first.size != ctx.fields[k]:
        return False  # not a state, its field is taken, or not a suffix of it
    mv = ctx.moves[node.name][0]
    head = slice(0, first.size)
    if not (np.all(mv.source[head] == 0) and np.array_equal(mv.index[head], np.arange(first.size))):
        return False
    ctx.place[out.name] = f"(state->s{k} + {off})" if off else f"state->s{k}"
    ctx.fields[k] = off + out.size
    return True


def _first_fit(start: dict, last: dict, sizes: dict, ctx: Context) -> int:
    live: list[tuple[int, int, int]] = []  # (offset, size, last use)
    top = 0
    for name in sorted(start, key=lambda n: start[n]):
        live = [b for b in live if b[2] >= start[name]]
        need = -(-sizes[name] // ALIGN) * ALIGN
        offset = 0
        for off, n, _ in sorted(live):
            if offset + need <= off:
                break
            offset = max(offset, off + -(-n // ALIGN) * ALIGN)
        live.append((offset, need, last[name]))
        top = max(top, offset + need)
        ctx.place[name] = f"(S + {offset})" if offset else "S"
    return top


def _declared(code: str) -> str:
    used = [n for n in LOOP_NAMES if re.search(rf"\b{n}\b", code)]
    return f"long {', '.join(used)};\n" if used else ""


def _fused(g: CGraph, ctx: Context, chain: window_chain.Chain | None) -> list[CNode]:
    """The nodes to emit: each table-able unary chain as one node (first input, last output)."""
    window = (chain.window.name,) if chain else ()  # past bins: whole when the bin is
    ctx.chains = graph_tables.chains(g, graph_tables.integral(g, g.spike_counts, window))
    inner = {n.name for chain in ctx.chains.values() for n in chain[1:]}
    return [
        replace(n, op_type=graph_tables.CHAIN, outputs=ctx.chains[n.name][-1].outputs)
        if n.name in ctx.chains else n
        for n in g.nodes if n.name not in inner
    ]  # fmt: skip


def _node_code(node: CNode, ctx: Context) -> str:
    if node.op_type == graph_tables.CHAIN:
        code = graph_tables.emit_chain(ctx.chains[node.name], ctx)
    else:
        code = graph_ops.C_OPS[node.op_type](node, ctx)
    if not code:
        return ""
    body = _declared(code) + code
    inner = "\n".join(f"        {line}".rstrip() for line in body.splitlines())
    return f"    /* {node.op_type} {node.name} */\n    {{\n{inner}\n    }}\n"


def _finish(g: CGraph, ctx: Context) -> str:
    """Copy y out and the state outputs into their fields (views of a field copied first)."""
    lines = [f"    memcpy(out, {ctx.ref(g.y)}, sizeof(float) * {g.y.size});"]
    staged, writes = [], []
    for k, s in enumerate(g.states):
        src = ctx.ref(s.output)
        own = re.fullmatch(rf"\(?state->s{k}( \+ \d+\))?", src)
        if own:  # the shifted buffer, within its own field
            writes.append(f"    memmove(state->s{k}, {src}, sizeof(float) * {s.input.size});")
            continue
        if src.lstrip("(").startswith("state->") or src.lstrip("(").startswith("bin"):
            staged.append(f"    float keep{k}[{s.output.size}];")
            staged.append(f"    memcpy(keep{k}, {src}, sizeof keep{k});")
            src = f"keep{k}"
        writes.append(f"    memcpy(state->s{k}, {src}, sizeof(float) * {s.input.size});")
    return "\n".join([*lines, *staged, *writes]) + "\n"


def _refused(accepted: tuple[float | None, float | None]) -> str:
    """The C condition of a value the float decoder refuses: NaN, ±inf, outside the range."""
    lit = float_literal
    parts = ["!(v - v == 0.0f)"]  # NaN and ±inf (inf - inf is NaN)
    lo, hi = accepted
    parts += [f"v < {lit(lo)}"] if lo is not None else []
    parts += [f"v > {lit(hi)}"] if hi is not None else []
    return " || ".join(parts)


def _state_fields(g: CGraph, ctx: Context) -> list[tuple[str, str, str]]:
    out = []
    for k, s in enumerate(g.states):
        note = f"state '{s.spec.name}' {list(s.spec.shape)}"
        if ctx.fields[k] > s.input.size:
            note += f", then room for the {ctx.fields[k] - s.input.size} values a step appends"
        out.append(("float", f"s{k}[{ctx.fields[k]}]", note))
    return out


def _reset(g: CGraph, more: str) -> str:
    """decoder_reset's body: zeros, each state's fill, then `more` (a window chain's ring)."""
    lines = ["    memset(state, 0, sizeof *state);"]
    for k, s in enumerate(g.states):
        if s.spec.fill != 0.0:
            lines.append(
                f"    for (i = 0; i < {s.input.size}; ++i) {{\n"
                f"        state->s{k}[i] = {float_literal(s.spec.fill)};\n    }}"
            )
    decl = "    long i;\n" if len(lines) > 1 or more else ""
    return decl + "\n".join(lines) + "\n" + more


def _host(lay: Layout) -> str:
    return emit_common.host_shim(
        lay,
        convert="in[c] = v;",
        validate="(v - v == 0.0f) & (v >= lo) & (v <= hi)",  # finite and in range
        emit="y[k + d] = out[d];\n                if (raw) {\n"
        "                    raw[k + d] = out[d];\n                }",
        hidden_io="",
    )


def emit_graph(g: CGraph, policy: str, mode: str, graph_dense: int, doc: list[str],
               chain: window_chain.Chain | None = None) -> Program:  # fmt: skip
    """The float C program of `g`, or of `chain`'s rewrite of it; `policy` chooses dense or CSR
    storage per matrix; `graph_dense`: the graph's dense MACs per bin (the executed count is
    that less what sparse storage, a zero first state and the chain skip)."""
    ctx = Context(policy)
    if chain is not None:
        g, ctx.skipped = chain.graph, chain.saved
        window_chain.place(chain, ctx)
    g = replace(g, nodes=tuple(_fused(g, ctx, chain)))
    scratch = _plan(g, ctx)
    body = "".join(_node_code(n, ctx) for n in g.nodes)
    lay = Layout(numeric="float", channels=g.x.size, outputs=g.y.size, enc_dim=None, hidden=0,
                 layers=0, width=1, mode=mode, num_steps=1, lag=1, in_t="float", out_t="float",
                 act_t="float", acc_t="float", sample_bits=32)  # fmt: skip
    refuse = emit_common.refusal(_refused(g.accepted), g.x.size)
    body = (window_chain.store(chain) if chain else "") + body
    step = (f"    float S[{scratch}];\n" if scratch else "") + refuse + body + _finish(g, ctx)
    step += window_chain.advance(chain) if chain else ""
    reset = _reset(g, window_chain.reset(chain, ctx) if chain else "")
    decls = "\n".join(a.declaration() for a in ctx.arrays)
    source = f"""/* decoder.c: generated by cortexedge; do not edit. */
#include <math.h>
#include <stdint.h>
#include <string.h>
#include "decoder.h"

/* constant data, defined in decoder_weights.c */
{decls}
{"".join(ctx.helpers.values())}
void decoder_reset(decoder_state_t *state)
{{
{reset}}}

void decoder_init(decoder_state_t *state)
{{
    decoder_reset(state);
}}

int decoder_step(decoder_state_t *state, const decoder_input_t *bin, decoder_output_t *out)
{{
{step}    return 0;
}}
"""
    weight_bytes = sum(a.nbytes for a in ctx.arrays)
    fields = _state_fields(g, ctx) + (window_chain.fields(chain) if chain else [])
    header = emit_common.header(lay, doc, [], fields)
    offsets = np.cumsum([0] + [ctx.fields[k] for k in range(len(g.states))])
    states = [{"name": s.spec.name, "kind": "tensor", "offset": int(offsets[k]),
               "size": s.input.size} for k, s in enumerate(g.states)]  # fmt: skip
    if chain is not None:
        states.append(window_chain.state_entry(chain))
    total = graph_dense - ctx.skipped
    macs = {"graph_dense": graph_dense, "skipped": ctx.skipped, "total": total,
            "effective": total - ctx.zero_macs}  # fmt: skip
    return Program(lay, header, source, emit_common.weights_file(ctx.arrays), _host(lay),
                   ctx.matrices, weight_bytes, macs, states,
                   {"channels": g.x.size, "outputs": g.y.size, "mode": mode,
                    **(window_chain.describe(chain) if chain else {})})  # fmt: skip

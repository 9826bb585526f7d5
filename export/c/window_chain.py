"""A window of one recurrence over shifted bins, found in a float step graph and computed once
per bin instead of once per window position.

AEGRU's published mode (and any decoder exported the same way) reruns a GRU (or an LSTM) from a
zero state over the K bins of a sliding buffer at every sample: K input projections, K
recurrences and the front end (box sums, encoder) of all K bins. When the bins tile the buffer L
rows apart, bin k at sample t is the newest bin at t − (K−1−k)·L. With G_j(t) the state after
the j bins ending at the newest one, G_1(t) = cell(x(t), 0), G_j(t) = cell(x(t), G_{j−1}(t −
L)), and the graph's output reads G_K(t). Keeping G_1 .. G_{K−1} of the last L samples (a ring
in the C state), a step computes the newest bin's front end, one input projection and K
recurrences (the first from zero): AEGRU at C=96 executes 18,976 of its graph's 46,624 MACs.

`find` takes this path only when the graph provably computes the window:
- one state is a buffer [1, R, ...] that each step shifts by one row and appends the bin to
  (checked on random values) and starts at zero, so what precedes the stream is zero bins and
  the ring starts at G_j⁰, the chain over j zero bins (the reference kernels on the graph's
  own first bin);
- the nodes from the new buffer to the recurrence input P are one path whose first node splits
  the rows into K bins of L and whose every node is parallel along the bin axis (`_axis`:
  element-wise ops, reductions and products that leave that axis alone, constants that do not
  vary along it), so each bin goes through the same function of its own rows;
- K equal levels of single-step GRU cells: level k's bottom cell reads bin k of P, each cell
  of level 0 starts from zero and each next level's cell of the same layer from its state
  through equal link nodes (a LayerNorm, say), the layer above reading that state as its
  input (a stacked AEGRU: a ring per layer); or one GRU or LSTM node runs over the K steps of
  P from a zero state (an LSTM's chain state is its h and c), or a stack of them, each layer
  reading every step of the one below and only the top's final state read (a Gather of it
  from a Concat of all the layers' is read as the top's own); nothing else reads P or a
  link. Only the bottom layer reads the same input at every level, so only its projection
  is shared.
Anything else returns None and the graph is emitted as it computes. The rewritten nodes are
ordinary C-IR nodes (a truncated front end on the last L rows, a Gemm for the shared
projection, the K levels in descending order so each reads its ring slot before the level
below overwrites it), so every op keeps its one emitter.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from cortexedge.errors import ContractError
from cortexedge.export.c import float_math, graph_ir, graph_ops
from cortexedge.export.c.graph_ir import CGraph, CNode, Tensor, initial_feeds
from cortexedge.export.c.graph_rnn import PROJECTED, zero_state
from cortexedge.runtime.model import LoadedModel
from cortexedge.runtime.onnx_numpy.ops_shape import axes_of
from cortexedge.runtime.onnx_numpy.reference import OPS, ReferenceGraph, Step

SHAPES = ("Reshape", "Flatten", "Squeeze", "Unsqueeze", "Identity")  # flat order unchanged
POINTWISE = (*float_math.UNARY, *graph_ops.BINARY, "Clip")  # the element-wise emitters
# recurrent op -> (its state inputs, its state outputs, gate rows per unit); an LSTM's
# recurrent bias joins its input bias in the shared projection, a GRU's stays with R·h
CELLS = {"GRU": ((5,), (1,), 3), "LSTM": ((5, 6), (1, 2), 4)}


@dataclass(frozen=True)
class Chain:
    """The rewritten graph and what its C state adds: a ring of the chain states of levels
    1 .. K−1 (h, and c for an LSTM) per slot."""

    graph: CGraph  # without the buffer state: the C state keeps its own window of it
    buffer: str  # the buffer state's name
    steps: int  # K bins per window
    lag: int  # L rows per bin (ring slots)
    rows: int  # R = K·L, the graph's buffer rows
    window: Tensor  # [1, L, ...]: the last L rows, which the front end reads
    rings: tuple[Tensor, ...]  # G_1 .. G_{K−1} as the levels read and write them
    start: np.ndarray  # [len(rings), H] float32: each ring's value over zero bins
    saved: int  # dense MACs of the graph the rewrite does not execute

    @property
    def hidden(self) -> int:
        return self.rings[0].size

    @property
    def row(self) -> int:
        """Values per buffer row (the bin's size)."""
        return self.window.size // self.lag


def _live(g: CGraph) -> CGraph:
    """`g` without the nodes nothing reads (a Gather left for a Shape the reader folded)."""
    need = {g.y.name, *(s.output.name for s in g.states)}
    keep = []
    for n in reversed(g.nodes):
        if any(t is not None and t.name in need for t in n.outputs):
            keep.append(n)
            need.update(t.name for t in n.inputs if t is not None)
    return replace(g, nodes=tuple(reversed(keep)))


def _picked(g: CGraph) -> CGraph:
    """`g` with each Gather of one constant index from a Concat of size-1 slices along its axis
    replaced by a Reshape of the slice it picks (how torch exports h_n[-1] of a stacked RNN:
    the layers below are then read by nothing)."""
    producer = graph_ir.producers(g)
    nodes = []
    for n in g.nodes:
        src = producer.get(n.input(0).name) if n.op_type == "Gather" else None
        index = n.input(1) if src is not None else None
        if src is not None and src.op_type == "Concat" and index.const and index.value.ndim == 0:
            rank = len(n.input(0).shape)
            axis, parts = n.attrs.get("axis", 0) % rank, src.inputs
            if src.attrs.get("axis", 0) % rank == axis and all(t.shape[axis] == 1 for t in parts):
                ins = (
                    parts[int(index.value) % len(parts)],
                    _const(f"{n.name}/shape", np.array(n.outputs[0].shape, np.int64)),
                )
                n = CNode(n.name, "Reshape", ins, n.outputs, {},
                          _step(n.name, "Reshape", ins, n.outputs, {}))  # fmt: skip
        nodes.append(n)
    return replace(g, nodes=tuple(nodes))


def _data(node: CNode) -> list[Tensor]:
    return [t for t in node.inputs if t is not None and not t.const]


def _same(a: CNode, b: CNode, skip: tuple[int, ...] = ()) -> bool:
    """Same op, attributes and constant inputs (inputs at `skip` not compared)."""
    if a.op_type != b.op_type or len(a.inputs) != len(b.inputs) or a.attrs.keys() != b.attrs.keys():
        return False
    if not all(np.array_equal(a.attrs[k], b.attrs[k]) for k in a.attrs):
        return False
    for k, (s, t) in enumerate(zip(a.inputs, b.inputs, strict=True)):
        if k in skip or (s is None and t is None):
            continue
        if s is None or t is None or s.const != t.const or s.shape != t.shape:
            return False
        if s.const and not np.array_equal(s.value, t.value):
            return False
    return True


def _walk(cell: CNode, readers: dict) -> tuple[Tensor | None, list[CNode]]:
    """(the cell's state after its links, the links): single-input nodes read by nothing
    else, up to the next recurrent node or a tensor read twice."""
    t, links = cell.output(1), []
    if t is None or cell.output(0) is not None:
        return None, links
    while len(readers.get(t.name, [])) == 1:
        nxt = readers[t.name][0]
        outs = [o for o in nxt.outputs if o is not None]
        if nxt.op_type in CELLS or len(_data(nxt)) != 1 or outs != [nxt.outputs[0]]:
            break
        links.append(nxt)
        t = nxt.outputs[0]
    return t, links


def _reader(readers: dict, t: Tensor, k: int) -> CNode | None:
    """The GRU that reads `t` as its input k (0: x, 5: the initial state), if one does."""
    found = [n for n in readers.get(t.name, []) if n.op_type == "GRU" and n.input(k) is t]
    return found[0] if len(found) == 1 else None


def _blocks(g: CGraph, readers: dict) -> list[list[tuple[CNode, list[CNode]]]] | None:
    """Levels [[(GRU, links) per layer]] of the first chain of K >= 2 equal levels: every
    cell of level 0 starts from zero, a cell's state (after its links) is the initial state
    of the same layer one level on and, above layer 0, the input of the layer above."""
    for first in (n for n in g.nodes if n.op_type == "GRU" and zero_state(n.input(5))):
        levels = _levels_from(first, readers)
        if levels is not None and len(levels) >= 2 and _equal_levels(levels):
            return [[(c, links[: len(levels[0][k][1])]) for k, (c, links) in enumerate(lv)]
                    for lv in levels]  # fmt: skip
    return None


def _levels_from(bottom: CNode, readers: dict) -> list | None:
    """The levels that start at `bottom` (level 0, layer 0), or None when a cell's state
    cannot be followed (its per-step outputs are read)."""
    levels = []
    while bottom is not None:
        level, cell, ends = [], bottom, []
        while cell is not None:
            end, links = _walk(cell, readers)
            if end is None:
                return None
            level.append((cell, links))
            ends.append(end)
            cell = _reader(readers, end, 0)
        levels.append(level)
        nxt = [_reader(readers, t, 5) for t in ends]
        bottom = nxt[0] if all(n is not None for n in nxt) else None
    return levels


def _equal_levels(levels: list) -> bool:
    """Every level has the cells of level 0, layer by layer (links as long, except the last
    level's top, which reads on into the readout), level 0 from zero states."""
    if any(len(lv) != len(levels[0]) for lv in levels):
        return False
    if not all(zero_state(c.input(k)) for c, _ in levels[0] for k in CELLS[c.op_type][0]):
        return False
    for layer, (c1, links1) in enumerate(levels[0]):
        if c1.attrs.get("direction", "forward") != "forward" or c1.attrs.get("layout", 0):
            return False
        skip = (0, *CELLS[c1.op_type][0])
        for lv in levels:
            c, links = lv[layer]
            if c.input(0).shape[0] != 1 or len(links) < len(links1) or not _same(c, c1, skip):
                return False
            if not all(_same(a, b, (_slot(a),)) for a, b in zip(links, links1, strict=False)):
                return False
            if lv is not levels[-1] and len(links) != len(links1):
                return False
    return True


def _slot(node: CNode) -> int:
    return next(k for k, t in enumerate(node.inputs) if t is not None and not t.const)


def _axis(node: CNode, a: int) -> int | None:
    """The bin axis of `node`'s output when its input's is `a`, or None when the node mixes
    bins or its constants vary along them."""
    x, out = _data(node)[0], node.outputs[0]
    k = x.shape[a]
    op = node.op_type
    if op in SHAPES:
        return _kept_axis(x.shape, out.shape, a)
    if op in POINTWISE:
        consts = [t for t in node.inputs if t is not None and t.const]
        rank = len(out.shape)
        for c in consts:
            dims = (1,) * (rank - len(c.shape)) + tuple(c.shape)
            if dims[a] != 1:
                return None
        return a if out.shape == x.shape else None
    if op == "Transpose":
        perm = node.attrs.get("perm", list(range(len(x.shape)))[::-1])
        return perm.index(a)
    if op in graph_ops.REDUCE:
        axes = axes_of([None if t is None else t.value for t in node.inputs], node.attrs)
        if axes is None:  # every axis
            return None
        axes = [int(b) % len(x.shape) for b in axes]
        if a in axes:
            return None
        return a if node.attrs.get("keepdims", 1) else a - sum(1 for b in axes if b < a)
    if op == "Gemm":
        c = node.input(2)
        if a != 0 or node.attrs.get("transA", 0) or (c is not None and c.shape[:-1] == (k,)):
            return None
        return 0 if node.inputs[1].const else None
    if op == "MatMul":
        ok = node.inputs[0] is x and node.inputs[1].const and len(x.shape) >= 2
        return a if ok and a < len(x.shape) - 1 else None
    if op == "BatchNormalization":
        return a if a != 1 and node.inputs[0] is x else None
    if op == "LayerNormalization":
        start = node.attrs.get("axis", -1) % len(x.shape)
        return a if a < start and node.inputs[0] is x else None
    return None


def _kept_axis(before: tuple, after: tuple, a: int) -> int | None:
    """Where axis `a` of a tensor lands when its flat order is kept and its shape becomes
    `after`: an axis of the same size after the same number of elements."""
    head = int(np.prod(before[:a], dtype=np.int64))
    for b, size in enumerate(after):
        if size == before[a] and int(np.prod(after[:b], dtype=np.int64)) == head:
            return b
    return None


def find(g: CGraph, loaded: LoadedModel, node_macs: dict[str, int]) -> Chain | None:
    """The window chain of `g` (the C IR of `loaded`'s step graph), or None; `node_macs`: dense
    MACs per node name (the graph's own count)."""
    g = _live(_picked(g))
    readers, producer = graph_ir.readers(g), graph_ir.producers(g)
    cells = _cells(g, readers, producer)
    if cells is None:
        return None
    blocks, p, sel, removed = cells
    steps = len(blocks)
    found = _path(g, readers, producer, p, steps)
    if found is None:
        return None
    k, path, axes = found
    state = g.states[k]
    if p.shape[axes[-1]] != steps or not all(
        _selects(s, p, axes[-1], j) for j, s in enumerate(sel)
    ):
        return None
    if np.any(loaded.initial_states(1)[state.spec.name]) or not _slides(loaded, state):
        return None
    rows = state.output.shape[1]
    lag = rows // steps
    removed |= {id(n) for n in path}
    buffer = _slide_nodes(g, k, producer, [n for n in g.nodes if id(n) not in removed])
    window = Tensor(f"{state.output.name}/window", (1, lag, *state.output.shape[2:]))
    front = None if buffer is None else _truncate(path, axes, window)
    if front is None:
        return None
    levels, proj, rings = _levels(blocks, front[-1].outputs[0])
    if len({t.size for t in rings}) != 1:  # the ring is one array of equal slots
        return None
    with np.errstate(all="ignore"):
        first = ReferenceGraph(loaded.proto).run(initial_feeds(loaded))[p.name]
    start = _start(blocks, np.take(first, 0, axis=axes[-1]))
    front_macs = sum(node_macs.get(n.name, 0) for n in path)
    saved = front_macs * (steps - 1) // steps + (steps - 1) * proj.inputs[1].size
    i0 = next(i for i, n in enumerate(g.nodes) if n is path[0])
    removed |= {id(n) for n in buffer}
    before = [n for n in g.nodes[:i0] if id(n) not in removed]
    after = [n for n in g.nodes[i0:] if id(n) not in removed]
    states = tuple(s for j, s in enumerate(g.states) if j != k)
    graph = replace(g, nodes=(*before, *front, proj, *levels, *after), states=states)
    return Chain(graph, state.spec.name, steps, lag, rows, window, rings, start, saved)


def _cells(g: CGraph, readers: dict, producer: dict):
    """(levels, the recurrence input P, the nodes selecting its bins, ids of nodes replaced):
    single-step GRU nodes whose bottom layer reads bins of P (AEGRU's export), or one GRU
    or LSTM node over a K-step P (an nn.GRU run over the window), seen as K levels of one
    cell."""
    blocks = _blocks(g, readers)
    if blocks is not None:
        sel = [producer.get(level[0][0].input(0).name) for level in blocks]
        if any(s is None or s.op_type not in graph_ops.MOVES or len(_data(s)) != 1 for s in sel):
            return None
        p = _data(sel[0])[0]
        if any(_data(s)[0] is not p for s in sel) or len(readers[p.name]) != len(blocks):
            return None
        cells = (x for level in blocks for cell, links in level for x in (cell, *links))
        return blocks, p, sel, {id(n) for n in (*sel, *cells)}
    for node in g.nodes:
        seq = _sequence(node, readers)  # a GRU or LSTM over the window, one node per layer
        if seq is not None:
            return seq[0], node.input(0), [], {id(n) for n in seq[1]}
    return None


def _stack(node: CNode, readers: dict) -> tuple[list[CNode], list[CNode]] | None:
    """(the layers, the shape nodes between them) of a stacked GRU or LSTM starting at
    `node`: each next layer of the same op reads the one below's every step (its Y, through
    shape nodes alone), whose final state nothing else reads."""
    layers, hops = [node], []
    outs_at = CELLS[node.op_type][1]
    while layers[-1].output(0) is not None:
        below, t = layers[-1], layers[-1].output(0)
        while len(readers.get(t.name, [])) == 1 and readers[t.name][0].op_type in SHAPES:
            hops.append(readers[t.name][0])
            t = hops[-1].outputs[0]
        nxt = readers.get(t.name, [])
        if len(nxt) != 1 or nxt[0].op_type != node.op_type or nxt[0].input(0) is not t:
            return None
        if any(below.output(b) is not None and readers.get(below.output(b).name) for b in outs_at):
            return None
        layers.append(nxt[0])
    return layers, hops


def _sequence(node: CNode, readers: dict) -> tuple[list, list[CNode]] | None:
    """One GRU or LSTM node over K >= 2 steps of P from a zero state (or a stack of them, one
    per layer, `_stack`) whose top final state alone is read, as K levels of single-step
    blocks, one per layer (tensors between them named here); and the nodes it replaces."""
    if node.op_type not in CELLS:
        return None
    ins_at, outs_at, _ = CELLS[node.op_type]
    x, stack = node.input(0), _stack(node, readers)
    if stack is None or x.shape[0] < 2 or len(readers.get(x.name, [])) != 1:
        return None
    layers, hops = stack
    steps, top = x.shape[0], layers[-1]
    for lay in layers:
        lens = lay.input(4)
        if not all(zero_state(lay.input(k)) for k in ins_at) or lay.input(0).shape[0] != steps:
            return None
        if lens is not None and not (lens.const and np.all(lens.value == steps)):
            return None
    if top.output(1) is None:
        return None
    levels, prev = [], {}
    for j in range(steps):
        level, below = [], Tensor(f"{x.name}/{j}", (1, *x.shape[1:]))
        for lay in layers:
            ins = list(lay.inputs) + [None] * (max(ins_at) + 1 - len(lay.inputs))
            ins[0], ins[4] = below, None
            outs = list(lay.outputs) + [None] * (max(outs_at) + 1 - len(lay.outputs))
            shape = (1, x.shape[1], lay.input(2).shape[-1])  # [directions, batch, hidden]
            for a, b in zip(ins_at, outs_at, strict=True):
                ins[a] = ins[a] if j == 0 else prev[lay.name].output(b)
                if lay is not top or j < steps - 1:
                    outs[b] = Tensor(f"{lay.name}/{j + 1}/{b}", shape)
            outs[0] = None
            step = replace(lay, name=f"{lay.name}/{j}", inputs=tuple(ins), outputs=tuple(outs))
            level.append((step, []))
            below, prev[lay.name] = step.output(1), step
        levels.append(level)
    return (levels, [*layers, *hops]) if _equal_levels(levels) else None


def _ends(block: tuple[CNode, list]) -> list[Tensor | None]:
    """The state tensors after a block's step, one per state of its op (h, and c for LSTM)."""
    cell, links = block
    outs = [cell.output(b) for b in CELLS[cell.op_type][1]]
    return [links[-1].outputs[0]] if links else outs


def _start(levels: list, x0: np.ndarray) -> np.ndarray:
    """Each ring's value over zero bins: levels 0 .. K−2 run from zero on the input x0 of
    every bin, by the reference kernels; one row per ring, in ring order."""
    env: dict[str, np.ndarray] = {}
    out = []
    for level in levels[:-1]:
        x = level[0][0].input(0)
        env[x.name] = np.asarray(x0, np.float32).reshape(x.shape)
        for cell, links in level:
            for node in (cell, *links):
                data = [None if t is None or t.const else env[t.name] for t in node.inputs]
                values = _kernel(node, data)
                pairs = zip(node.outputs, values, strict=False)
                env.update({t.name: v for t, v in pairs if t is not None})
            out += [np.asarray(env[t.name], np.float32).reshape(-1) for t in _ends((cell, links))]
    return np.stack(out)


def _path(g: CGraph, readers: dict, producer: dict, p: Tensor, steps: int):
    """(buffer state index, the nodes from the new buffer to P, each one's output bin axis),
    or None when P is not a bin-parallel function of one sliding buffer's new value."""
    births = {s.output.name: k for k, s in enumerate(g.states)}
    path, t = [], p
    while t.name not in births:
        node = producer.get(t.name)
        outs = [] if node is None else [o for o in node.outputs if o is not None]
        if node is None or len(_data(node)) != 1 or outs != [node.outputs[0]]:
            return None
        if path and not (len(readers.get(t.name, [])) == 1 and readers[t.name][0] is path[0]):
            return None
        path.insert(0, node)
        t = _data(node)[0]
    k = births[t.name]
    if not path or g.states[k].spec.batch_axis != 0 or len(t.shape) < 2 or t.shape[0] != 1:
        return None
    axes = [_split(path[0], t, steps)]
    for node in path[1:]:
        if axes[-1] is None:
            return None
        axes.append(_axis(node, axes[-1]))
    return None if axes[-1] is None else (k, path, axes)


def _split(node: CNode, buf: Tensor, steps: int) -> int | None:
    """The bin axis of a shape op that splits the buffer's R rows into `steps` bins of R/steps."""
    rows = buf.shape[1]
    if node.op_type not in SHAPES or rows % steps:
        return None
    cell = rows // steps * int(np.prod(buf.shape[2:], dtype=np.int64))
    out = node.outputs[0].shape
    for b, size in enumerate(out):
        if size == steps and np.prod(out[:b]) == 1 and np.prod(out[b + 1 :]) == cell:
            return b
    return None


def _slide_nodes(g: CGraph, k: int, producer: dict, kept: list[CNode]) -> list[CNode] | None:
    """The nodes that compute the buffer's next value, or None when a node that stays reads
    the buffer: the C state then keeps only the window the chain reads."""
    s = g.states[k]
    buffer, todo = [], [s.output]
    while todo:
        node = producer.get(todo.pop().name)
        if node is not None and all(node is not b for b in buffer):
            buffer.append(node)
            todo += _data(node)
    inside = {t.name for n in buffer for t in n.outputs if t is not None} | {s.input.name}
    if any(t.name in inside for n in kept if all(n is not b for b in buffer) for t in _data(n)):
        return None
    return buffer


def _selects(node: CNode, p: Tensor, axis: int, j: int) -> bool:
    """True when `node`'s output is bin j of P, element for element."""
    mv = graph_ops.moves(node)[0]
    want = np.flatnonzero(np.indices(p.shape)[axis].reshape(-1) == j)
    return bool(np.all(mv.source == 0)) and np.array_equal(mv.index, want)


def _slides(loaded: LoadedModel, state) -> bool:
    """True when a step shifts the state by one row and appends the bin (on random values)."""
    feeds = initial_feeds(loaded)
    rng = np.random.default_rng(0)
    feeds = {n: rng.standard_normal(v.shape).astype(v.dtype) for n, v in feeds.items()}
    try:  # another state may be an index or a counter that random values put out of range
        with np.errstate(all="ignore"):
            new = ReferenceGraph(loaded.proto).run(feeds)[state.spec.output_name]
    except (ValueError, IndexError, ContractError):
        return False
    old = feeds[state.spec.input_name]
    if old.ndim < 2 or feeds["x"].size != int(np.prod(old.shape[2:], dtype=np.int64)):
        return False
    want = np.concatenate([old[:, 1:], feeds["x"].reshape(1, 1, *old.shape[2:])], axis=1)
    return bool(np.shape(new) == want.shape and np.array_equal(new, want))


def _kernel(node: CNode, values: list, inputs: tuple | None = None) -> tuple:
    """The runtime's reference kernel of `node` on `values` for its data inputs (constants
    from `inputs`, default the node's own), quietly (zeros through a Log, say)."""
    ins = [None if t is None else t.value if t.const else v
           for t, v in zip(inputs or node.inputs, values, strict=True)]  # fmt: skip
    with np.errstate(all="ignore"):
        return node.step.op.kernel(ins, node.attrs)


def _step(name: str, op_type: str, inputs: tuple, outputs: tuple, attrs: dict) -> Step:
    names = tuple(t.name if t is not None else "" for t in inputs)
    return Step(name, op_type, OPS[op_type], names, tuple(t.name for t in outputs), attrs)


def _const(name: str, values) -> Tensor:
    v = np.asarray(values)
    return Tensor(name, v.shape, v)


def _truncate(path: list[CNode], axes: list[int], window: Tensor) -> list[CNode] | None:
    """The front end on the newest bin only: each path node with its bin axis of size 1 (a
    Reshape's target shape to match), the first reading the window of the last L rows."""
    nodes = []
    t_in = window
    for node, b in zip(path, axes, strict=True):
        out = node.outputs[0]
        shape = tuple(1 if i == b else d for i, d in enumerate(out.shape))
        ins = tuple(
            None if t is None else t_in if not t.const
            else _const(f"{t.name}/last_bin", shape) if node.op_type == "Reshape" and i == 1
            else t
            for i, t in enumerate(node.inputs)
        )  # fmt: skip
        zeros = [None if t is None else np.zeros(t.shape, np.float32) for t in ins]
        try:  # a kernel that refuses the bin axis at size 1 does not compute bins apart
            got = np.shape(_kernel(node, zeros, ins)[0])
        except (ValueError, IndexError, ContractError):
            return None
        if got != shape:
            return None
        new = Tensor(f"{out.name}/last_bin", shape)
        nodes.append(
            replace(
                node,
                inputs=ins,
                outputs=(new,),
                step=_step(node.name, node.op_type, ins, (new,), node.attrs),
            )
        )
        t_in = new
    return nodes


def _levels(levels: list, p_last: Tensor) -> tuple[list[CNode], CNode, tuple[Tensor, ...]]:
    """The K levels' nodes (levels descending, layers in order), the shared projection of the
    bottom layer and the ring tensors (level, layer, then each state of the layer's op)."""
    cell1 = levels[0][0][0]
    gates = CELLS[cell1.op_type][2]
    h = cell1.input(2).shape[-1]
    w = cell1.input(1).value[0].astype(np.float32)
    b = cell1.input(3)
    bias = np.zeros(gates * h) if b is None else b.value[0][: gates * h].astype(np.float64)
    if cell1.op_type == "LSTM" and b is not None:
        bias = bias + b.value[0][gates * h :]
    xw = Tensor(f"{cell1.name}/projection", (1, gates * h))
    ins = (Tensor(p_last.name, (1, p_last.size)), _const(f"{xw.name}/w", w),
           _const(f"{xw.name}/b", bias.astype(np.float32)))  # fmt: skip
    proj = CNode(xw.name, "Gemm", ins, (xw,), {"transB": 1},
                 _step(xw.name, "Gemm", ins, (xw,), {"transB": 1}))  # fmt: skip
    steps = len(levels)
    rings = {(j, k, s): Tensor(f"window_ring{j}_{k}_{s}", t.shape)
             for j in range(1, steps) for k, block in enumerate(levels[0])
             for s, t in enumerate(_ends(block))}  # fmt: skip
    nodes: list[CNode] = []
    for j in reversed(range(steps)):
        m = {levels[j][0][0].input(0).name: Tensor(p_last.name, levels[j][0][0].input(0).shape)}
        for k, (cell, links) in enumerate(levels[j]):
            if j > 0:
                inits = CELLS[cell.op_type][0]
                m.update({cell.input(a).name: rings[j, k, s] for s, a in enumerate(inits)})
            if j < steps - 1:
                m.update({t.name: rings[j + 1, k, s] for s, t in enumerate(_ends((cell, links)))})
        for k, (cell, links) in enumerate(levels[j]):
            shared = (*(None,) * (PROJECTED - len(cell.inputs)), xw) if k == 0 else ()
            nodes.append(_rewired(replace(cell, inputs=(*cell.inputs, *shared)), m))
            nodes += [_rewired(node, m) for node in links]
    return nodes, proj, tuple(rings.values())


def _rewired(node: CNode, m: dict[str, Tensor]) -> CNode:
    def swap(t: Tensor | None) -> Tensor | None:
        return None if t is None else m.get(t.name, t)

    return replace(node, inputs=tuple(map(swap, node.inputs)),
                   outputs=tuple(map(swap, node.outputs)))  # fmt: skip


# ------------------------------------------------------------------------- the C state
def place(chain: Chain, ctx) -> None:
    """The window and each level's ring tensor at this step's slot in the state."""
    ctx.place[chain.window.name] = f"(state->window + (state->slot + 1) * {chain.row})"
    for j, t in enumerate(chain.rings):
        ctx.place[t.name] = f"(state->ring + ({j * chain.lag} + state->slot) * {chain.hidden})"


def fields(chain: Chain) -> list[tuple[str, str, str]]:
    """The window, the ring and their slot, as decoder_state_t fields."""
    n, lag = len(chain.rings), chain.lag
    return [("float", f"window[{2 * lag * chain.row}]",
             f"the last {lag} bins, each at its slot and {lag} rows later, so the window "
             "ending now is contiguous"),
            ("float", f"ring[{n * lag * chain.hidden}]",
             f"the chain states of levels 1 .. {chain.steps - 1} for the last {lag} samples"),
            ("long", "slot", f"this sample's slot, 0 .. {lag - 1}")]  # fmt: skip


def store(chain: Chain) -> str:
    """The start of a step: the bin into its slot of the window, twice."""
    row, size = chain.row, f"sizeof(float) * {chain.row}"
    rows = ("state->slot", f"(state->slot + {chain.lag})")
    return "".join(f"    memcpy(state->window + {r} * {row}, bin, {size});\n" for r in rows)


def reset(chain: Chain, ctx) -> str:
    """Fill every slot of ring j with G_j⁰ (what the chain holds over zero bins)."""
    start = ctx.const_array(chain.start, "window_ring_start")
    h, lag = chain.hidden, chain.lag
    return f"""    for (i = 0; i < {len(chain.rings) * lag}; ++i) {{
        memcpy(state->ring + i * {h}, {start} + (i / {lag}) * {h}, sizeof(float) * {h});
    }}
"""


def advance(chain: Chain) -> str:
    """The end of a step: the next sample's slot."""
    return f"    state->slot = (state->slot + 1) % {chain.lag};\n"


def state_entry(chain: Chain) -> dict:
    """The buffer in the manifest: raw-sample history, so writing it replays the rows (which
    rebuilds the ring) instead of copying the field alone."""
    return {"name": chain.buffer, "kind": "history", "rows": chain.rows}


def describe(chain: Chain) -> dict:
    """The manifest's record of the chain (decoder.h says it from there)."""
    return {"window_chain": {"bins": chain.steps, "lag": chain.lag}}

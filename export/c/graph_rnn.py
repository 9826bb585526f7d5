"""The float C emitters of the ONNX GRU and LSTM ops (graph_ops.C_OPS holds them by op name).

They follow the runtime's reference kernels (runtime/onnx_numpy/ops_gru.py, ops_lstm.py):
gates z, r, h for GRU with either `linear_before_reset`, gates i, o, f, c for LSTM, forward,
reverse or both directions, the default activations. At one stream both layouts store X, Y
and the states alike, so only the direction decides an index. A zero initial state that is a
constant (a window graph reruns the recurrence from zero) skips the first recurrent product.
"""

from __future__ import annotations

import numpy as np

from cortexedge.export.c import float_math
from cortexedge.export.c.graph_ir import CNode, Tensor
from cortexedge.export.c.graph_ops import refuse

PROJECTED = 8  # input 8 of a window chain's level: its input projection, computed once

DEFAULT_ACTS = {"GRU": ["Sigmoid", "Tanh"], "LSTM": ["Sigmoid", "Tanh", "Tanh"]}


def _check(node: CNode) -> tuple[int, int, int, list[bool]]:
    """(T, H, directions, reversed per direction) after refusing what the C cannot emit."""
    x, w, r = node.inputs[:3]
    if not (w.const and r.const) or any(
        t is not None and not t.const for t in (node.input(3), node.input(7))
    ):
        raise refuse(node, "weights computed at run time")
    direction = node.attrs.get("direction", "forward")
    dirs = {"forward": [False], "reverse": [True], "bidirectional": [False, True]}[direction]
    acts = node.attrs.get("activations")
    default = DEFAULT_ACTS[node.op_type] * len(dirs)
    if acts is not None and [a.capitalize() for a in acts] != default:
        raise refuse(node, f"activations {acts} (the C generator emits the defaults)")
    if node.attrs.get("clip") is not None or node.attrs.get("input_forget", 0):
        raise refuse(node, "clip or input_forget")
    lens = node.input(4)
    steps = x.shape[0] if node.attrs.get("layout", 0) == 0 else x.shape[1]
    if lens is not None and not (lens.const and np.all(lens.value == steps)):
        raise refuse(node, "sequence_lens shorter than the sequence")
    return steps, r.shape[-1], len(dirs), dirs


def zero_state(t: Tensor | None) -> bool:
    """True for an omitted or constant all-zero initial state."""
    return t is None or (t.const and not np.any(t.value))


def _init(ctx, t: Tensor | None, d: int, h: int, name: str) -> str:
    if zero_state(t):
        return f"memset({name}, 0, sizeof {name});"
    return f"memcpy({name}, {ctx.ref(t)} + {d * h}, sizeof {name});"


def _outputs(ctx, node: CNode, d: int, dirs: int, h: int, finals: list[tuple[int, str]]) -> tuple:
    """(statement storing h of step t into Y, statements storing the finals)."""
    y = node.output(0)
    store = f"memcpy({ctx.ref(y)} + (t * {dirs} + {d}) * {h}, h, sizeof h);" if y else ""
    ends = [f"memcpy({ctx.ref(node.output(k))} + {d * h}, {v}, sizeof {v});"
            for k, v in finals if node.output(k) is not None]  # fmt: skip
    return store, "\n    ".join(ends)


def _guarded(call: str, skip: bool) -> str:
    """`call`, skipped on the first step when the initial state is a constant zero."""
    return f"if (s > 0) {{\n            {call}\n        }}" if skip else call


def _gru_before_reset(ctx, node: CNode, r: np.ndarray, rb: np.ndarray, d: int, h: int,
                      steps: int, skip: bool) -> tuple[str, str, str, str]:  # fmt: skip
    """linear_before_reset=1: n = tanh(Wx + r * (Rh + Rb))."""
    mr = ctx.matrix(r, f"{node.name}_r{d}", runs=steps, skipped=int(skip))
    rbias = ctx.const_array(rb, f"{node.name}_rb{d}")
    gate = f"""        for (j = 0; j < {3 * h}; ++j) {{
            hr[j] += {rbias}[j];
        }}
        for (j = 0; j < {h}; ++j) {{
            float z = sigmoid_f(xw[j] + hr[j]), rr = sigmoid_f(xw[{h} + j] + hr[{h} + j]);
            float n = tanh_f(xw[{2 * h} + j] + rr * hr[{2 * h} + j]);
            h[j] = (1.0f - z) * n + z * h[j];
        }}"""
    zero = "memset(hr, 0, sizeof hr);" if skip else ""
    return f"float hr[{3 * h}];", zero, _guarded(f"mv_{mr}(h, hr);", skip), gate


def _gru_after_reset(ctx, node: CNode, r: np.ndarray, rb: np.ndarray, d: int, h: int,
                     steps: int, skip: bool) -> tuple[str, str, str, str]:  # fmt: skip
    """linear_before_reset=0: n = tanh(Wx + R(r * h) + Rb)."""
    mzr = ctx.matrix(r[: 2 * h], f"{node.name}_rzr{d}", runs=steps, skipped=int(skip))
    mn = ctx.matrix(r[2 * h :], f"{node.name}_rn{d}", runs=steps, skipped=int(skip))
    rbias = ctx.const_array(rb, f"{node.name}_rb{d}")
    gate = f"""        for (j = 0; j < {h}; ++j) {{
            zz[j] = sigmoid_f(xw[j] + hr[j] + {rbias}[j]);
            rh[j] = sigmoid_f(xw[{h} + j] + hr[{h} + j] + {rbias}[{h} + j]) * h[j];
        }}
        {_guarded(f"mv_{mn}(rh, hn);", skip)}
        for (j = 0; j < {h}; ++j) {{
            float n = tanh_f(xw[{2 * h} + j] + hn[j] + {rbias}[{2 * h} + j]);
            h[j] = (1.0f - zz[j]) * n + zz[j] * h[j];
        }}"""
    zero = "memset(hr, 0, sizeof hr);\n    memset(hn, 0, sizeof hn);" if skip else ""
    temps = f"float hr[{2 * h}], zz[{h}], rh[{h}], hn[{h}];"
    return temps, zero, _guarded(f"mv_{mzr}(h, hr);", skip), gate


def _gru(node: CNode, ctx) -> str:
    steps, h, dirs, rev = _check(node)
    w, r, b, h0 = (node.input(k) for k in (1, 2, 3, 5))
    cell = _gru_before_reset if node.attrs.get("linear_before_reset", 0) else _gru_after_reset
    float_math.use(ctx, "sigmoid_f")
    float_math.use(ctx, "tanh_f")
    blocks = []
    for d in range(dirs):
        bias = b.value[d].astype(np.float32) if b is not None else np.zeros(6 * h, np.float32)
        temps, zero, recur, gate = cell(ctx, node, r.value[d], bias[3 * h :], d, h, steps,
                                        zero_state(h0))  # fmt: skip
        store, ends = _outputs(ctx, node, d, dirs, h, [(1, "h")])
        init = _init(ctx, h0, d, h, "h") + (f"\n    {zero}" if zero else "")
        xw, project, wbias = _projection(ctx, node, d, steps, bias[: 3 * h], "wb")
        blocks.append(_loop(steps, rev[d], f"float h[{h}];\n    {xw}\n    {temps}", init,
                            project, wbias, 3 * h, recur, gate, store, ends))  # fmt: skip
    return "\n".join(blocks)


def _projection(ctx, node: CNode, d: int, steps: int, bias: np.ndarray, hint: str):
    """(declaration of xw, statement giving it step t's W·x, name of the bias to add or None):
    the input projection of direction d, or a window chain level's, computed once for every
    level with its biases (input PROJECTED), which xw then points at instead of a copy."""
    x, w, shared = node.input(0), node.input(1), node.input(PROJECTED)
    if shared is not None:
        return "const float *xw;", f"xw = {ctx.ref(shared)} + t * {len(bias)};", None
    mw = ctx.matrix(w.value[d], f"{node.name}_w{d}", runs=steps)
    wbias = ctx.const_array(bias, f"{node.name}_{hint}{d}")
    return f"float xw[{len(bias)}];", f"mv_{mw}({ctx.ref(x)} + t * {w.shape[-1]}, xw);", wbias


def _bias(wbias: str | None, n: int) -> str:
    if wbias is None:
        return ""
    return f"""        for (j = 0; j < {n}; ++j) {{
            xw[j] += {wbias}[j];
        }}"""


def _loop(steps, reverse, temps, init, project, wbias, n, recur, gate, store, ends) -> str:
    t = f"{steps - 1} - s" if reverse else "s"
    return f"""{{
    {temps}
    {init}
    for (s = 0; s < {steps}; ++s) {{
        const long t = {t};
        {project}
{_bias(wbias, n)}
        {recur}
{gate}
        {store}
    }}
    {ends}
}}"""


def _lstm(node: CNode, ctx) -> str:
    steps, h, dirs, rev = _check(node)
    w, r, b, h0, c0, p = (node.input(k) for k in (1, 2, 3, 5, 6, 7))
    if p is not None and np.any(p.value):
        raise refuse(node, "peephole weights")
    float_math.use(ctx, "sigmoid_f")
    float_math.use(ctx, "tanh_f")
    blocks = []
    for d in range(dirs):
        bias = b.value[d].astype(np.float64) if b is not None else np.zeros(8 * h)
        wb = (bias[: 4 * h] + bias[4 * h :]).astype(np.float32)
        skip = 1 if zero_state(h0) else 0
        mr = ctx.matrix(r.value[d], f"{node.name}_r{d}", runs=steps, skipped=skip)
        recur = _guarded(f"mv_{mr}(h, hr);", bool(skip))
        gate = f"""        for (j = 0; j < {h}; ++j) {{
            float gi = sigmoid_f(xw[j] + hr[j]), go = sigmoid_f(xw[{h} + j] + hr[{h} + j]);
            float gf = sigmoid_f(xw[{2 * h} + j] + hr[{2 * h} + j]);
            float gc = tanh_f(xw[{3 * h} + j] + hr[{3 * h} + j]);
            c[j] = gf * c[j] + gi * gc;
            h[j] = go * tanh_f(c[j]);
        }}"""
        init = _init(ctx, h0, d, h, "h") + "\n    " + _init(ctx, c0, d, h, "c")
        if skip:
            init += "\n    memset(hr, 0, sizeof hr);"
        xw, project, wbias = _projection(ctx, node, d, steps, wb, "b")
        store, ends = _outputs(ctx, node, d, dirs, h, [(1, "h"), (2, "c")])
        blocks.append(_loop(steps, rev[d], f"float h[{h}], c[{h}];\n    {xw}\n    "
                            f"float hr[{4 * h}];", init, project, wbias, 4 * h,
                            recur, gate, store, ends))  # fmt: skip
    return "\n".join(blocks)


EMITTERS = {"GRU": _gru, "LSTM": _lstm}

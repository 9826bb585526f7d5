"""Helpers shared by the numpy-engine tests: seeded arrays and the compiled-vs-reference check."""

from __future__ import annotations

import numpy as np
from onnx import TensorProto

from cortexedge.runtime.onnx_numpy.compiled import CompiledGraph, compile_static
from cortexedge.runtime.onnx_numpy.reference import ReferenceGraph

R = np.random.default_rng(0)
F = TensorProto.FLOAT


def f32(*shape, positive=False):
    x = R.normal(size=shape).astype(np.float32)
    return np.abs(x) + 0.1 if positive else x


def i64(*values):
    return np.array(values, dtype=np.int64)


def refill(arrays: dict[str, np.ndarray], rng: np.random.Generator) -> None:
    """New values of the same shape and dtype, in place."""
    for a in arrays.values():
        if a.dtype == bool:
            a[...] = rng.random(a.shape) > 0.5
        elif np.issubdtype(a.dtype, np.integer):
            a[...] = rng.integers(-5, 6, a.shape)
        else:
            a[...] = rng.normal(size=a.shape) * 3


def agree(model, feeds: dict, rounds: int = 3, exact: bool = False) -> CompiledGraph:
    """Compile `model` on copies of `feeds`; over `rounds` refills, compiled == interpreter."""
    graph, rng = ReferenceGraph(model), np.random.default_rng(1)
    bound = {k: v.copy() for k, v in feeds.items()}
    compiled = compile_static(graph, bound)
    assert compiled is not None
    for r in range(rounds):
        if r:
            refill(bound, rng)
        with np.errstate(all="ignore"):
            want = graph.run({k: v.copy() for k, v in bound.items()})
            compiled.run()
        for name in graph.outputs:
            got = compiled.outputs[name]
            assert got.shape == want[name].shape and got.dtype == want[name].dtype, name
            if exact:
                np.testing.assert_array_equal(got, want[name], err_msg=name)
            else:
                np.testing.assert_allclose(got, want[name], rtol=2e-6, atol=2e-6, err_msg=name)
    return compiled

"""Rounding-boundary bins: a flip a nudged state reproduces is explained, a real error is not;
and a quantized failure that passes with QDQ kept in float is blamed on the integer kernels."""

from __future__ import annotations

import numpy as np

from cortexedge.export.api import _integer_kernel_hint
from cortexedge.export.rounding import resolve
from cortexedge.export.verify import Verification


def _quantize(states: list[tuple[np.ndarray, ...]]) -> dict[str, np.ndarray]:
    """A 'model' that rounds its state to steps of 0.1 and amplifies by 10 (a LayerNorm-like
    gain): a value on a rounding boundary jumps by 1.0 when it rounds the other way."""
    s = np.stack([st[0] for st in states])
    return {"y": np.round(s * 10) * 1.0}


def test_flip_on_a_boundary_is_explained_and_real_errors_are_not():
    states = [(np.array([[0.35]], np.float32),), (np.array([[0.72]], np.float32),)]
    xs = np.zeros((2, 1, 1), np.float32)
    refs = _quantize(states)  # torch: bin 0 rounds 3.5 to 4 (half to even)
    gots = {"y": refs["y"].copy()}
    gots["y"][0] -= 1.0  # the graph rounded bin 0 the other way: 3
    gots["y"][1] += 1.0  # bin 1 is simply wrong (0.72 is far from a boundary)

    explained = resolve(lambda x, s: _quantize(s), xs, states, refs, gots, {"y": 0.5})
    assert explained == 1
    assert refs["y"][0, 0, 0] == 3.0  # the nudged evaluation that agrees is the reference now
    assert refs["y"][1, 0, 0] == 7.0  # the real error stays and will fail the bound


def _check(passed: bool, steps: float | None) -> Verification:
    return Verification(1000, 2, 200, "test", "torch", 0.1, 0.01, 0.05, steps, "y", "r", passed)


def test_integer_kernel_hint():
    assert _integer_kernel_hint(_check(True, 0.1), lambda: _check(True, 0.0)) == ""
    assert _integer_kernel_hint(_check(False, None), lambda: _check(True, None)) == ""  # float
    assert _integer_kernel_hint(_check(False, 6.0), lambda: _check(False, 6.0)) == ""
    hint = _integer_kernel_hint(_check(False, 6.0), lambda: _check(True, 0.0))
    assert "with QDQ kept in float it verifies" in hint and "without VNNI" in hint

"""Rounding-boundary bins: a flip a nudged state reproduces is explained, a real error is not."""

from __future__ import annotations

import numpy as np

from cortexedge.export.rounding import resolve


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

"""Rounding-boundary bins of quantized graphs: tell a legitimate rounding flip from a real error.

A quantized step graph rounds hundreds of activations per bin. When a value lies within float
noise (~1e-7 relative) of a rounding boundary, onnxruntime and torch may round it to different
neighbours, and what follows (a LayerNorm divides by a small spread, a recurrence multiplies)
can turn that one-step flip into a larger jump in `y` or the new state. Both results are
faithful computations of the same quantized function at that point; neither is an export bug.

So when a bin is off by more than the bound, torch is evaluated again at the same input with
the state nudged by `NUDGE` of its magnitude, `PROBES` times: if one of these evaluations
reproduces the graph's result within the bound, the graph rounded on the other side of a
boundary, and that evaluation becomes the bin's reference. A bin no nudge explains stays as it
is, and fails the verification.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

NUDGE = 1e-6  # state perturbation, relative to the largest state value
PROBES = 32

# (inputs [P, B, ...], P states) -> tensor name -> [P, ...] torch results
Evaluate = Callable[[np.ndarray, list[tuple[np.ndarray, ...]]], dict[str, np.ndarray]]


def per_bin(ref: np.ndarray, got: np.ndarray) -> np.ndarray:
    """Max |ref - got| per bin (axis 0)."""
    return np.abs(ref.astype(np.float64) - got.astype(np.float64)).reshape(len(ref), -1).max(1)


def resolve(
    evaluate: Evaluate,
    xs: np.ndarray,
    states: list[tuple[np.ndarray, ...]],
    refs: dict[str, np.ndarray],
    gots: dict[str, np.ndarray],
    bounds: dict[str, float],
    seed: int = 0,
) -> int:
    """Replace, in `refs`, the reference of every bin a nudged state explains (see the module
    docstring); returns how many bins were rounding-boundary bins."""
    off = np.zeros(len(xs), dtype=bool)
    for name, ref in refs.items():
        off |= per_bin(ref, gots[name]) > bounds[name]
    rng = np.random.default_rng(seed)
    explained = 0
    for t in np.flatnonzero(off):
        nudged = [
            tuple(
                (s + rng.normal(size=s.shape) * NUDGE * np.abs(s).max()).astype(s.dtype)
                for s in states[t]
            )
            for _ in range(PROBES)
        ]
        probes = evaluate(np.repeat(xs[t][None], PROBES, axis=0), nudged)
        excess = np.max(
            [per_bin(probes[n], np.repeat(gots[n][t][None], PROBES, 0)) / bounds[n] for n in refs],
            axis=0,
        )
        best = int(np.argmin(excess))
        if excess[best] <= 1.0:
            for name in refs:
                refs[name][t] = probes[name][best]
            explained += 1
    return explained

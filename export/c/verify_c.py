"""Checks of a built C decoder against its references, on the same rows of raw samples.

- float path: the C outputs against onnxruntime on the exported graph, |Δ| <= 1e-5 · max(1, |y|).
- integer path: the C accumulators against the numpy integer reference (must be identical),
  and the dequantized outputs against onnxruntime on the QCDQ graph. The QCDQ graph computes
  the gate arithmetic, BatchNorm and LayerNorm in float32 and rounds at the same quantizers, so
  the two differ by occasional one-step flips of a rounding that lands near a tie, which the
  recurrence then carries for a while. Stated bound: mean |Δ| <= 2% of the output's standard
  deviation (measured: about 0.1–0.3%); the maximum is reported.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cortexedge.errors import CortexEdgeError
from cortexedge.metrics import r2_score
from cortexedge.runtime.backends.c import CLibrary
from cortexedge.runtime.int_reference import IntDecoder, IntModel

FLOAT_TOL = 1e-5
QCDQ_MEAN_FRACTION = 0.02


@dataclass
class CVerification:
    """What the checks measured; `passed` is False only for a failed float or bit-exact check."""

    bins: int
    max_abs_err_vs_onnx: float
    mean_abs_err_vs_onnx: float
    tolerance: float
    r2_vs_onnx: float
    bit_exact_bins: int | None = None  # integer path: bins compared with the numpy reference

    def summary(self) -> dict:
        return {k: v for k, v in self.__dict__.items()}


def _onnx_outputs(onnx_path, rows: np.ndarray) -> np.ndarray:
    from cortexedge.runtime.decoder import StreamingDecoder

    return StreamingDecoder(onnx_path, backend="ort").run(rows).astype(np.float64)


def _agreement(y: np.ndarray, ref: np.ndarray) -> tuple[float, float, float]:
    err = np.abs(y - ref)
    r2 = float(r2_score(ref, y)) if len(ref) > 1 else 1.0
    return float(err.max(initial=0.0)), float(err.mean()) if err.size else 0.0, r2


def verify_float(lib: CLibrary, onnx_path, rows: np.ndarray) -> CVerification:
    """C float outputs against onnxruntime; raises CortexEdgeError beyond the tolerance."""
    y = lib.run(lib.states(1), rows).astype(np.float64)
    ref = _onnx_outputs(onnx_path, rows)
    worst, mean, r2 = _agreement(y, ref)
    tol = FLOAT_TOL * max(1.0, float(np.abs(ref).max(initial=0.0)))
    if worst > tol:
        raise CortexEdgeError(
            f"C float build differs from onnxruntime by {worst:.3g} (> {tol:.3g}) over "
            f"{len(rows)} bins; nothing written"
        )
    return CVerification(len(rows), worst, mean, tol, r2)


def verify_int(
    lib: CLibrary, model: IntModel, onnx_path, rows: np.ndarray, reference_bins: int
) -> CVerification:
    """C accumulators bit-exact with the numpy reference on the first `reference_bins` rows,
    and the dequantized outputs within the stated bound of onnxruntime on the QCDQ graph."""
    raw = lib.run(lib.states(1), rows)
    n = min(reference_bins, len(rows))
    ref_raw = IntDecoder(model).run(rows[:n])
    if not np.array_equal(raw[:n], ref_raw):
        first = int(np.argmax((raw[:n] != ref_raw).any(axis=1)))
        raise CortexEdgeError(
            f"C integer build differs from the numpy integer reference at bin {first}; "
            "nothing written"
        )
    y = raw.astype(np.float64) * model.out_scale
    ref = _onnx_outputs(onnx_path, rows)
    worst, mean, r2 = _agreement(y, ref)
    tol = QCDQ_MEAN_FRACTION * float(ref.std()) if len(ref) > 1 else np.inf
    if mean > tol:
        raise CortexEdgeError(
            f"C integer build differs from the QCDQ graph by {mean:.3g} on average "
            f"(> {tol:.3g}, 2% of the output std); nothing written"
        )
    return CVerification(len(rows), worst, mean, tol, r2, bit_exact_bins=n)


def input_rows(
    recording, channels: int, bins: int, max_count: int | None
) -> tuple[np.ndarray, str]:
    """Rows to verify on: the recording's test split (time order), else seeded Poisson counts."""
    if recording is not None:
        x = recording.x[recording.rows("test")][:bins].astype(np.float32)
        if x.shape[1:] != (channels,):
            raise CortexEdgeError(
                f"recording: one bin has {x.shape[1:]} values, the decoder reads {channels}"
            )
        if max_count is not None:
            x = np.minimum(x, max_count)
        return x, "test"
    rng = np.random.default_rng(0)
    x = rng.poisson(0.5, size=(bins, channels))
    return np.minimum(x, max_count or x.max()).astype(np.float32), "synthetic"

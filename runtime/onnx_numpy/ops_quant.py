"""Quantization ONNX ops: QuantizeLinear and DequantizeLinear, per tensor or per axis."""

from __future__ import annotations

import numpy as np

from cortexedge.runtime.onnx_numpy.opdef import Arrays, Bound, Call, OpDef


def along(p: np.ndarray, x: np.ndarray, axis: int) -> np.ndarray:
    """A per-tensor scalar, or a per-axis vector shaped to broadcast along `axis` of x."""
    if p.size == 1:
        return p.reshape(())
    shape = [1] * x.ndim
    shape[axis % x.ndim] = -1
    return p.reshape(shape)


def _quantize(ins: Arrays, attrs: dict) -> tuple:
    """saturate(round_half_even(x / scale) + zero_point)."""
    x, scale = ins[0], ins[1]
    zp = ins[2] if len(ins) > 2 and ins[2] is not None else np.zeros((), dtype=np.uint8)
    axis = attrs.get("axis", 1)
    q = np.rint(x / along(scale, x, axis)) + along(zp, x, axis).astype(np.float32)
    info = np.iinfo(zp.dtype)
    return (np.clip(q, info.min, info.max).astype(zp.dtype),)


def _fast_quantize(n: Bound) -> Call | None:
    """Round half to even, add the zero point, saturate, in a float scratch."""
    x, scale, zp, out = n.ins[0], n.ins[1], n.input(2), n.outs[0]
    if zp is None or not n.const[2]:
        return None
    axis = n.attrs.get("axis", 1)
    scale, zpf = along(scale, x, axis), along(zp, x, axis).astype(np.float32)
    info = np.iinfo(zp.dtype)
    lo, hi = np.float32(info.min), np.float32(info.max)
    f = np.empty(x.shape, dtype=np.result_type(x.dtype, scale.dtype))

    def call() -> None:
        np.divide(x, scale, out=f)
        np.rint(f, out=f)
        np.add(f, zpf, out=f)
        np.maximum(f, lo, out=f)
        np.minimum(f, hi, out=f)
        np.copyto(out, f, casting="unsafe")

    return call


def _dequantize(ins: Arrays, attrs: dict) -> tuple:
    """(x − zero_point) · scale."""
    x, scale = ins[0], ins[1]
    zp = ins[2] if len(ins) > 2 and ins[2] is not None else None
    axis = attrs.get("axis", 1)
    xf = x.astype(np.float32)
    if zp is not None:
        xf = xf - along(zp, x, axis).astype(np.float32)
    return ((xf * along(scale, x, axis)).astype(scale.dtype, copy=False),)


def _fast_dequantize(n: Bound) -> Call | None:
    """(x − zero point) · scale, in the float32 output."""
    x, scale, zp, out = n.ins[0], n.ins[1], n.input(2), n.outs[0]
    if out.dtype != np.float32 or (zp is not None and not n.const[2]):
        return None
    axis = n.attrs.get("axis", 1)
    scale = along(scale, x, axis)
    zpf = None if zp is None else along(zp, x, axis).astype(np.float32)

    def call() -> None:
        np.copyto(out, x, casting="unsafe")
        if zpf is not None:
            np.subtract(out, zpf, out=out)
        np.multiply(out, scale, out=out)

    return call


QUANT: tuple[OpDef, ...] = (
    OpDef("QuantizeLinear", _quantize, _fast_quantize),
    OpDef("DequantizeLinear", _dequantize, _fast_dequantize),
)

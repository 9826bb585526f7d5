"""Quantization-aware fine-tuning with brevitas: swap float layers, calibrate, read scales.

`quantize(model, spec)` replaces, in place, every layer with an entry in `SWAPS` (keyed by layer
type) by its brevitas counterpart holding a copy of the float weights: Linear and Conv1d/2d
become QuantLinear / QuantConv with a quantized input, and nn.GRU / nn.GRUCell / nn.LSTM /
nn.LSTMCell become the cells of `quant_gru` (which export to QCDQ ONNX). `calibrate` sets the
activation scales from a few batches (brevitas's calibration mode); fine-tuning is the project's
`fit`. A quantized model is rebuilt without pickle from (the float model, the QuantSpec in JSON,
the state dict in safetensors): `quantize` on a fresh model, then `load_state_dict` under
`full_state_dict()`, which makes brevitas list every scale parameter, calibrated or not.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator

import torch
from torch import Tensor, nn

from cortexedge.compress.quant_gru import (
    WEIGHT_BITS,
    QuantGRU,
    QuantGRUCell,
    QuantLSTM,
    QuantLSTMCell,
    QuantSpec,
)
from cortexedge.errors import CortexEdgeError

ACT_BITS = (8, 6, 4)


def check_spec(spec: QuantSpec) -> None:
    """Raise a CortexEdgeError for bit widths this toolkit does not support."""
    if spec.weight_bits not in WEIGHT_BITS:
        raise CortexEdgeError(
            f"bits: {spec.weight_bits}-bit weights are not supported (choose from "
            f"{', '.join(map(str, WEIGHT_BITS))})"
        )
    if spec.act_bits not in ACT_BITS:
        raise CortexEdgeError(
            f"act_bits: {spec.act_bits}-bit activations are not supported (choose from "
            f"{', '.join(map(str, ACT_BITS))})"
        )


def _copy_weights(dst: nn.Module, src: nn.Module) -> nn.Module:
    with torch.no_grad():
        dst.weight.copy_(src.weight)
        if src.bias is not None:
            dst.bias.copy_(src.bias)
    return dst


def _act_kw(spec: QuantSpec) -> dict:
    from brevitas.quant import Int8ActPerTensorFloat

    return {"input_quant": Int8ActPerTensorFloat, "input_bit_width": spec.act_bits}


def _linear(m: nn.Linear, spec: QuantSpec) -> nn.Module:
    from brevitas.nn import QuantLinear

    q = QuantLinear(
        m.in_features, m.out_features, bias=m.bias is not None, return_quant_tensor=False,
        **spec.weight_kw(), **_act_kw(spec),
    )  # fmt: skip
    return _copy_weights(q, m)


def _conv(kind: str) -> Callable[[nn.Module, QuantSpec], nn.Module]:
    def swap(m: nn.Module, spec: QuantSpec) -> nn.Module:
        import brevitas.nn

        q = getattr(brevitas.nn, kind)(
            m.in_channels, m.out_channels, m.kernel_size, stride=m.stride, padding=m.padding,
            dilation=m.dilation, groups=m.groups, bias=m.bias is not None,
            padding_mode=m.padding_mode, return_quant_tensor=False,
            **spec.weight_kw(), **_act_kw(spec),
        )  # fmt: skip
        return _copy_weights(q, m)

    return swap


def _cell(cls: type) -> Callable[[nn.Module, QuantSpec], nn.Module]:
    def swap(m: nn.Module, spec: QuantSpec) -> nn.Module:
        return cls(m.input_size, m.hidden_size, m.bias, spec).load_float(m)

    return swap


def _rnn(cls: type) -> Callable[[nn.Module, QuantSpec], nn.Module]:
    def swap(m: nn.Module, spec: QuantSpec) -> nn.Module:
        if getattr(m, "proj_size", 0):
            raise CortexEdgeError("quantizing an nn.LSTM with proj_size is not supported")
        return cls.from_float(m, spec)

    return swap


# float layer type -> builder of its quantized replacement (float weights copied)
SWAPS: dict[type[nn.Module], Callable[[nn.Module, QuantSpec], nn.Module]] = {
    nn.Linear: _linear,
    nn.Conv1d: _conv("QuantConv1d"),
    nn.Conv2d: _conv("QuantConv2d"),
    nn.GRUCell: _cell(QuantGRUCell),
    nn.LSTMCell: _cell(QuantLSTMCell),
    nn.GRU: _rnn(QuantGRU),
    nn.LSTM: _rnn(QuantLSTM),
}


def _swap_of(module: nn.Module):
    if hasattr(module, "quant_weight") or isinstance(module, (QuantGRUCell, QuantLSTMCell)):
        return None  # already quantized
    return next((SWAPS[c] for c in type(module).__mro__ if c in SWAPS), None)


def quantize(model: nn.Module, spec: QuantSpec) -> list[str]:
    """Swap every layer with a SWAPS entry for its quantized copy, in place; returns their names.

    Raises CortexEdgeError when nothing can be quantized or the spec is unsupported.
    """
    check_spec(spec)
    names = []
    for name, module in list(model.named_modules()):
        if not name or any(name.startswith(n + ".") for n in names):
            continue
        swap = _swap_of(module)
        if swap is None:
            continue
        parent_name, _, child = name.rpartition(".")
        q = swap(module, spec).to(next(module.parameters()).device)
        setattr(model.get_submodule(parent_name), child, q)
        names.append(name)
    if not names:
        raise CortexEdgeError(
            f"model {type(model).__name__} has no quantizable layer (Linear, Conv, GRU, LSTM)"
        )
    return names


@torch.no_grad()
def calibrate(model: nn.Module, batches: Iterable[Tensor], forward=None) -> None:
    """Set every activation scale from the statistics of `batches` (brevitas calibration)."""
    from brevitas.graph.calibrate import calibration_mode

    forward = forward or (lambda m, x: m(x))
    was_training = model.training
    model.eval()
    with calibration_mode(model):
        for x in batches:
            forward(model, x)
    model.train(was_training)


@contextlib.contextmanager
def full_state_dict() -> Iterator[None]:
    """brevitas lists uncalibrated scale parameters in state dicts inside this block, so a
    freshly quantized model and a calibrated one have the same keys."""
    from brevitas import config

    old = config._FULL_STATE_DICT
    config._FULL_STATE_DICT = True
    try:
        yield
    finally:
        config._FULL_STATE_DICT = old


def quantizers(module: nn.Module) -> Iterator[tuple[str, nn.Module]]:
    """The enabled brevitas quantizers (proxies) a layer owns, by attribute name."""
    for attr in ("weight_quant", "input_quant", "act_quant"):
        proxy = getattr(module, attr, None)
        if proxy is not None and getattr(proxy, "is_quant_enabled", False):
            yield attr, proxy


@torch.no_grad()
def quant_scales(model: nn.Module) -> dict[str, dict]:
    """Scale(s) and bit width of every enabled quantizer, by "<layer>.<quantizer>" (for JSON)."""
    out = {}
    was_training = model.training
    model.eval()
    for name, module in model.named_modules():
        for attr, proxy in quantizers(module):
            if attr == "weight_quant":
                qt = module.quant_weight()
                scale, bits = qt.scale, qt.bit_width
            else:
                scale, bits = proxy.scale(), proxy.bit_width()
            out[f"{name}.{attr}"] = {
                "bits": int(bits),
                "scale": [float(s) for s in scale.detach().reshape(-1)],
            }
    model.train(was_training)
    return out

"""Builders of the quantized copy of a float layer (float weights copied), one per layer type.

Linear and Conv1d/2d become brevitas QuantLinear / QuantConv with a quantized input; nn.GRU /
nn.GRUCell / nn.LSTM / nn.LSTMCell become the cells of `quant_gru` (which export to QCDQ ONNX).
Which builder a layer gets is its row of the layer table (`layers.LAYERS`, field `swap`);
brevitas is imported inside the builders, so importing this module only costs torch.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from cortexedge.compress.quant_gru import QuantSpec
from cortexedge.errors import CortexEdgeError

Swap = Callable[[nn.Module, QuantSpec], nn.Module]


def _copy_weights(dst: nn.Module, src: nn.Module) -> nn.Module:
    with torch.no_grad():
        dst.weight.copy_(src.weight)
        if src.bias is not None:
            dst.bias.copy_(src.bias)
    return dst


def _act_kw(spec: QuantSpec) -> dict:
    from brevitas.quant import Int8ActPerTensorFloat

    return {"input_quant": Int8ActPerTensorFloat, "input_bit_width": spec.act_bits}


def linear(m: nn.Linear, spec: QuantSpec) -> nn.Module:
    """A QuantLinear with the float layer's weights."""
    from brevitas.nn import QuantLinear

    q = QuantLinear(
        m.in_features, m.out_features, bias=m.bias is not None, return_quant_tensor=False,
        **spec.weight_kw(), **_act_kw(spec),
    )  # fmt: skip
    return _copy_weights(q, m)


def conv(kind: str) -> Swap:
    """The builder of brevitas's `kind` ("QuantConv1d", "QuantConv2d") from a float conv."""

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


def cell(cls: type) -> Swap:
    """The builder of quantized cell `cls` (QuantGRUCell, QuantLSTMCell) from a float cell."""

    def swap(m: nn.Module, spec: QuantSpec) -> nn.Module:
        return cls(m.input_size, m.hidden_size, m.bias, spec).load_float(m)

    return swap


def rnn(cls: type) -> Swap:
    """The builder of quantized stack `cls` (QuantGRU, QuantLSTM) from an nn.GRU / nn.LSTM."""

    def swap(m: nn.Module, spec: QuantSpec) -> nn.Module:
        if getattr(m, "proj_size", 0):
            raise CortexEdgeError("quantizing an nn.LSTM with proj_size is not supported")
        return cls.from_float(m, spec)

    return swap

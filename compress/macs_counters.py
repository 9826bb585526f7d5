"""MACs of one call of a torch layer, given the call's first input: the torch side of the rules.

The counting rules live once, in `cortexedge.macs` (numpy only); each counter here reads a
layer's weights (masked or quantized, see `weights.layer_weight`) and its call's sizes and
applies the rule. Which counter a layer gets is its row of the layer table (`layers.LAYERS`,
fields `macs` and `count`); `macs_torch` hooks the counters onto a model's layers.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from torch import Tensor, nn
from torch.nn.modules.conv import _ConvNd

from cortexedge import macs
from cortexedge.compress.weights import layer_weight

Count = tuple[int, int, int]  # dense, effective, applications (rows or time steps) in the call
Counter = Callable[[nn.Module, Tensor], Count]


def linear(m: nn.Linear, x: Tensor) -> Count:
    """A Linear applied to every row of `x`."""
    rows = x.numel() // m.in_features
    return (*macs.RULES["linear"](layer_weight(m), positions=rows), rows)


def conv(m: _ConvNd, x: Tensor) -> Count:
    """A conv on `x`; taps on zero padding are not MACs, taps on copied padding are."""
    nd = len(m.kernel_size)
    spatial = list(x.shape[-nd:])
    rev = m._reversed_padding_repeated_twice  # [last_begin, last_end, ..., first_begin, ...]
    begins = [rev[2 * (nd - 1 - a)] for a in range(nd)]
    ends = [rev[2 * (nd - 1 - a) + 1] for a in range(nd)]
    pads = begins + ends
    if m.padding_mode != "zeros":  # padded with copies of real input: every tap reads data
        spatial = [s + b + e for s, b, e in zip(spatial, begins, ends, strict=True)]
        pads = [0] * (2 * nd)
    count = macs.RULES["conv"](layer_weight(m), spatial, list(m.stride), pads, list(m.dilation))
    return (*count, 1)


def cell(kind: str) -> Counter:
    """One step of an nn.GRUCell / nn.LSTMCell (`kind` "gru" / "lstm")."""

    def count(m: nn.Module, x: Tensor) -> Count:
        return (*macs.RULES[kind](layer_weight(m, "weight_ih"), layer_weight(m, "weight_hh")), 1)

    return count


def quant_cell(kind: str) -> Counter:
    """One step of a QuantGRUCell / QuantLSTMCell: its quantized ih and hh projections."""

    def count(m: nn.Module, x: Tensor) -> Count:
        return (*macs.RULES[kind](layer_weight(m.ih), layer_weight(m.hh)), 1)

    return count


def rnn(kind: str) -> Counter:
    """Every step of every layer and direction of an nn.GRU / nn.LSTM over the sequence `x`."""

    def count(m: nn.RNNBase, x: Tensor) -> Count:
        steps = x.numel() // m.input_size
        dirs = ["", "_reverse"][: 2 if m.bidirectional else 1]
        total = np.zeros(2, dtype=np.int64)
        for layer in range(m.num_layers):
            for d in dirs:
                suffix = f"_l{layer}{d}"
                w_ih, w_hh = (
                    layer_weight(m, "weight_ih" + suffix),
                    layer_weight(m, "weight_hh" + suffix),
                )
                total += np.array(macs.RULES[kind](w_ih, w_hh)) * steps
        return int(total[0]), int(total[1]), steps

    return count

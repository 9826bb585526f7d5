"""The layer table: how compress handles each torch layer type, one row per type.

A row says how a layer is magnitude-pruned (`tensors`: the names of its prunable tensors),
structurally pruned (`spans`: where a feed-forward layer or norm holds a channel; `pruner`: the
hidden-unit pruner of a recurrent layer), quantized (`swap`: the builder of its quantized copy)
and counted (`macs`: its rule in `cortexedge.macs`; `count`: the MACs of one call). A field left
None means the stage leaves that layer alone. `layer_row` looks a module up along its class's
MRO, so a subclass of nn.GRU is handled as a GRU, and brevitas's QuantLinear / QuantConv as the
Linear / Conv they derive from (`qat` skips them: they are quantized already). QuantGRU /
QuantLSTM have no row: their QuantGRUCell / QuantLSTMCell cells are counted, and the cells'
QuantLinear projections are pruned. Every consumer (magnitude, importance, structured, qat,
macs_torch) reads this table and nothing else; brevitas is imported only inside the builders.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.modules.conv import _ConvNd

from cortexedge.compress import macs_counters, quant_swaps
from cortexedge.compress.quant_gru import QuantGRU, QuantGRUCell, QuantLSTM, QuantLSTMCell
from cortexedge.compress.recurrent_pruners import CellPruner, RNNPruner, Span


@dataclass(frozen=True)
class LayerRow:
    """How compress handles one layer type (see the module docstring); None: not at all."""

    tensors: Callable[[nn.Module], list[str]] | None = None  # weights and biases (filtered later)
    spans: Callable[[nn.Module, str], list[Span]] | None = None  # side "out" / "in" -> spans
    pruner: CellPruner | None = None
    swap: quant_swaps.Swap | None = None
    macs: str | None = None  # the rule kind reported ("linear", "conv", "gru", "lstm")
    count: macs_counters.Counter | None = None


def _weight_bias(m: nn.Module) -> list[str]:
    return ["weight"] + (["bias"] if getattr(m, "bias", None) is not None else [])


def _rnn_names(m: nn.RNNBase) -> list[str]:
    return list(m._flat_weights_names)


def _cell_names(m: nn.RNNCellBase) -> list[str]:
    return ["weight_ih", "weight_hh"] + (["bias_ih", "bias_hh"] if m.bias else [])


def _linear_spans(m: nn.Linear, side: str) -> list[Span]:
    if side == "in":
        return [Span("weight", 1, m.in_features)]
    return [Span("weight", 0, m.out_features), Span("bias", 0, m.out_features)]


def _conv_spans(m: _ConvNd, side: str) -> list[Span]:
    if side == "in":
        return [Span("weight", 1, m.weight.shape[1])]
    return [Span("weight", 0, m.out_channels), Span("bias", 0, m.out_channels)]


def _norm_spans(m: nn.Module, side: str) -> list[Span]:
    if getattr(m, "weight", None) is None:
        return []
    n = m.weight.shape[0]
    return [Span("weight", 0, n), Span("bias", 0, n)]


def _gated(
    base: LayerRow,
    pruner: CellPruner,
    swap: quant_swaps.Swap,
    counter: Callable[[str], macs_counters.Counter],
    kind: str,
) -> LayerRow:
    """A GRU/LSTM row (stack or cell): `base`'s tensors, its hidden-unit pruner, its quantized
    copy and the `kind` MAC rule."""
    return replace(base, pruner=pruner, swap=swap, macs=kind, count=counter(kind))


_CONV = LayerRow(_weight_bias, _conv_spans, macs="conv", count=macs_counters.conv)
_NORM = LayerRow(spans=_norm_spans)
_RNN = LayerRow(_rnn_names)  # any nn.RNNBase (nn.RNN too): magnitude pruning only
_CELL = LayerRow(_cell_names)  # any nn.RNNCellBase (nn.RNNCell too): magnitude pruning only

# layer type -> its row; `layer_row` takes the row of the nearest class in the module's MRO
LAYERS: dict[type[nn.Module], LayerRow] = {
    nn.Linear: LayerRow(
        _weight_bias,
        _linear_spans,
        swap=quant_swaps.linear,
        macs="linear",
        count=macs_counters.linear,
    ),
    _ConvNd: _CONV,
    nn.Conv1d: replace(_CONV, swap=quant_swaps.conv("QuantConv1d")),
    nn.Conv2d: replace(_CONV, swap=quant_swaps.conv("QuantConv2d")),
    _BatchNorm: _NORM,
    nn.LayerNorm: _NORM,
    nn.RNNBase: _RNN,
    nn.GRU: _gated(_RNN, RNNPruner(), quant_swaps.rnn(QuantGRU), macs_counters.rnn, "gru"),
    nn.LSTM: _gated(_RNN, RNNPruner(), quant_swaps.rnn(QuantLSTM), macs_counters.rnn, "lstm"),
    nn.RNNCellBase: _CELL,
    nn.GRUCell: _gated(
        _CELL, CellPruner(), quant_swaps.cell(QuantGRUCell), macs_counters.cell, "gru"
    ),
    nn.LSTMCell: _gated(
        _CELL, CellPruner(), quant_swaps.cell(QuantLSTMCell), macs_counters.cell, "lstm"
    ),
    QuantGRUCell: LayerRow(macs="gru", count=macs_counters.quant_cell("gru")),
    QuantLSTMCell: LayerRow(macs="lstm", count=macs_counters.quant_cell("lstm")),
}


def layer_row(module: nn.Module) -> LayerRow | None:
    """The row of the module's class or of its nearest base class with a row (None: no row)."""
    return next((LAYERS[c] for c in type(module).__mro__ if c in LAYERS), None)


def pruner_for(module: nn.Module) -> CellPruner | None:
    """The hidden-unit pruner of a recurrent module (None for every other module)."""
    row = layer_row(module)
    return row.pruner if row else None

"""The layer table: one MRO lookup gives every stage's rule for a layer type."""

from __future__ import annotations

from torch import nn

from cortexedge.compress import macs_counters
from cortexedge.compress.layers import LAYERS, layer_row, pruner_for
from cortexedge.compress.quant_gru import QuantGRU, QuantGRUCell, QuantSpec
from cortexedge.compress.recurrent_pruners import RNNPruner


class MyGRU(nn.GRU):
    """A user subclass: handled as the GRU it derives from."""


def test_subclass_gets_its_nearest_base_row() -> None:
    row = layer_row(MyGRU(3, 4, num_layers=2))
    assert row is LAYERS[nn.GRU]
    assert isinstance(row.pruner, RNNPruner)
    assert row.macs == "gru"
    assert row.tensors(MyGRU(3, 4, num_layers=2)) == [
        "weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0",
        "weight_ih_l1", "weight_hh_l1", "bias_ih_l1", "bias_hh_l1",
    ]  # fmt: skip
    assert isinstance(row.swap(MyGRU(3, 4), QuantSpec()), QuantGRU)


def test_conv3d_is_counted_and_pruned_but_has_no_quantized_copy() -> None:
    row = layer_row(nn.Conv3d(2, 3, 3))
    assert row.swap is None
    assert row.count is macs_counters.conv
    assert row.tensors(nn.Conv3d(2, 3, 3, bias=False)) == ["weight"]
    assert layer_row(nn.Conv1d(2, 3, 3)).swap is not None


def test_rows_without_a_stage_leave_the_layer_alone() -> None:
    assert layer_row(nn.ReLU()) is None
    assert pruner_for(nn.Linear(2, 3)) is None
    norm = layer_row(nn.LayerNorm(5))
    assert (norm.tensors, norm.pruner, norm.swap, norm.count) == (None, None, None, None)
    assert [s.name for s in norm.spans(nn.LayerNorm(5), "out")] == ["weight", "bias"]
    plain = layer_row(nn.RNN(3, 4))  # magnitude pruning only
    assert plain.tensors(nn.RNN(3, 4)) == [
        "weight_ih_l0",
        "weight_hh_l0",
        "bias_ih_l0",
        "bias_hh_l0",
    ]
    assert (plain.pruner, plain.swap, plain.count) == (None, None, None)


def test_quantized_layers_are_counted_not_swapped_again() -> None:
    from brevitas.nn import QuantLinear

    cell = layer_row(QuantGRUCell(3, 4))
    assert (cell.swap, cell.tensors, cell.macs) == (None, None, "gru")
    assert layer_row(QuantLinear(3, 4, bias=True)) is LAYERS[nn.Linear]
    assert layer_row(QuantGRU(3, 4)) is None  # counted and pruned through its cells

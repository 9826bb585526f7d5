"""The torch MAC walker against hand-computed counts (cortexedge.macs definitions)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from cortexedge.compress.macs_torch import count_macs
from cortexedge.compress.magnitude import prune_magnitude
from cortexedge.compress.qat import quantize
from cortexedge.compress.quant_gru import QuantSpec
from cortexedge.train.models.aegru import AEGRU
from cortexedge.train.models.rnn import GRUDecoder, LSTMDecoder

C, E, H, D, S = 16, 8, 12, 2, 5


def _nnz(t: torch.Tensor) -> int:
    return int(torch.count_nonzero(t))


def test_aegru_window_mode_counts_every_gru_step_of_the_window_and_one_readout() -> None:
    model = AEGRU(C, out_dim=D, enc_dim=E, hidden=H, num_steps=S, training_parts=False)
    gru = 3 * H * (E + H) + 3 * H
    count = count_macs(model, (C,))
    assert count.dense == S * (C * E + gru) + H * D  # y_t needs the last bin's readout only
    layers = {row.name: row for row in count.layers}
    assert layers["cells.0"].calls == S and layers["cells.0"].runs == S
    assert layers["encoder"].calls == 1 and layers["encoder"].runs == S  # one call on S bins
    assert layers["readout"].runs == 1
    assert count.effective == count.dense  # dense float weights


def test_effective_counts_follow_the_zeros_of_a_pruned_model() -> None:
    torch.manual_seed(0)
    model = AEGRU(C, out_dim=D, enc_dim=E, hidden=H, mode="stateful", training_parts=False)
    prune_magnitude(model, 0.6)
    enc, cell, out = model.encoder.weight, model.cells[0], model.readout.weight
    cell_eff = _nnz(cell.weight_ih) + _nnz(cell.weight_hh) + 3 * H
    count = count_macs(model, (C,))
    assert count.dense == C * E + 3 * H * (E + H) + 3 * H + H * D
    assert count.effective == _nnz(enc) + cell_eff + _nnz(out)
    assert count.effective < 0.5 * count.dense


def test_nn_gru_and_nn_lstm_count_every_layer_per_bin() -> None:
    gru = GRUDecoder(C, out_dim=D, hidden=H, layers=2)
    g = [3 * H * (C + H) + 3 * H, 3 * H * (H + H) + 3 * H]
    assert count_macs(gru, (C,)).dense == sum(g) + H * D
    lstm = LSTMDecoder(C, out_dim=D, hidden=H, layers=2)
    l_ = [4 * H * (C + H) + 3 * H, 4 * H * (H + H) + 3 * H]
    assert count_macs(lstm, (C,)).dense == sum(l_) + H * D


class ConvGRU(nn.Module):
    """A user model without `step`: Conv1d over a window, bidirectional GRU, readout."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv1d(C, 4, kernel_size=5, padding=2)
        self.gru = nn.GRU(4, H, batch_first=True, bidirectional=True)
        self.readout = nn.Linear(2 * H, D)

    def forward(self, x):  # [B, T, C]
        f = self.conv(x.transpose(1, 2)).transpose(1, 2)
        return self.readout(self.gru(f)[0])


def test_models_without_step_are_counted_per_bin_over_a_window() -> None:
    T = 10
    # k=5, pad 2 on 10 positions: 50 taps minus 2+1 falling on padding at each end
    conv = 4 * C * (5 * T - 6)
    gru = 2 * (3 * H * (4 + H) + 3 * H) * T
    readout = 2 * H * D * T
    count = count_macs(ConvGRU(), (C,), window=T)
    assert count.dense == (conv + gru + readout) / T


def test_quantized_layers_are_counted_once_with_their_integer_zeros() -> None:
    torch.manual_seed(1)
    model = AEGRU(C, out_dim=D, enc_dim=E, hidden=H, mode="stateful", training_parts=False)
    dense = count_macs(model, (C,)).dense
    quantize(model, QuantSpec(4, 8))
    count = count_macs(model, (C,))
    assert count.dense == dense  # the QuantLinear gates inside the cell are not counted again
    assert [row.name for row in count.layers] == ["encoder", "cells.0", "readout"]
    ih = model.cells[0].ih.quant_weight().int()
    hh = model.cells[0].hh.quant_weight().int()
    enc = model.encoder.quant_weight().int()
    out = model.readout.quant_weight().int()
    expected = _nnz(enc) + _nnz(ih) + _nnz(hh) + 3 * H + _nnz(out)
    assert count.effective == expected < dense  # 4-bit rounding zeroes small weights


class StepNet(nn.Module):
    """Linear -> GRUCell -> Linear, streamed one bin per step with the state ("h",)."""

    def __init__(self) -> None:
        super().__init__()
        self.enc, self.cell, self.out = nn.Linear(10, E), nn.GRUCell(E, H), nn.Linear(H, D)

    def init_state(self, batch: int) -> tuple[torch.Tensor]:
        return (torch.zeros(batch, H),)

    def step(self, x, state):
        h = self.cell(self.enc(x), state[0])
        return self.out(h), (h,)

    def forward(self, x, h):  # the step graph: (x, state_h) -> (y, state_h)
        y, (h,) = self.step(x, (h,))
        return y, h


@pytest.mark.slow
def test_pruned_quantized_cell_counts_the_same_in_torch_and_in_its_qcdq_onnx(tmp_path) -> None:
    import onnx
    from brevitas.export import export_onnx_qcdq

    from cortexedge.compress.magnitude import make_permanent
    from cortexedge.compress.qat import calibrate
    from cortexedge.runtime.graph_macs import count_graph

    torch.manual_seed(2)
    model = StepNet().eval()
    prune_magnitude(model, 0.5)
    make_permanent(model)
    quantize(model, QuantSpec(8, 8))
    calibrate(model, [(torch.randn(32, 10), torch.rand(32, H))], forward=lambda m, a: m(*a))
    model.eval()
    torch_count = count_macs(model, (10,))
    path = tmp_path / "step.onnx"
    export_onnx_qcdq(
        model, (torch.randn(1, 10), torch.zeros(1, H)), export_path=str(path), dynamo=False,
        keep_initializers_as_inputs=False, opset_version=17,
        input_names=["x", "state_h"], output_names=["y", "state_h_out"],
    )  # fmt: skip
    graph_count = count_graph(onnx.load(path))
    assert (graph_count.dense, graph_count.effective) == (torch_count.dense, torch_count.effective)
    assert torch_count.effective < 0.6 * torch_count.dense

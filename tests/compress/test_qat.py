"""Swapping float layers for brevitas ones, calibration, scales, and the rebuild without pickle."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from cortexedge.compress.qat import calibrate, full_state_dict, quant_scales, quantize
from cortexedge.compress.quant_gru import QuantGRU, QuantLSTMCell, QuantSpec
from cortexedge.errors import CortexEdgeError


class Mixed(nn.Module):
    """Conv2d -> Conv1d -> GRU -> LSTMCell loop -> Linear."""

    def __init__(self) -> None:
        super().__init__()
        self.conv2 = nn.Conv2d(1, 3, 3, padding=1)
        self.conv1 = nn.Conv1d(3, 4, 3, padding=1)
        self.gru = nn.GRU(4, 6, batch_first=True)
        self.cell = nn.LSTMCell(6, 5)
        self.readout = nn.Linear(5, 2)

    def forward(self, x):  # [B, T, 8]
        f = torch.relu(self.conv2(x.unsqueeze(1))).mean(-1)
        f = self.gru(torch.relu(self.conv1(f)).transpose(1, 2))[0]
        hc = None
        for t in range(f.shape[1]):
            hc = self.cell(f[:, t], hc)
        return self.readout(hc[0])


def _quantized(spec: QuantSpec) -> tuple[nn.Module, nn.Module, torch.Tensor]:
    torch.manual_seed(0)
    model = Mixed().eval()
    q = Mixed().eval()
    q.load_state_dict(model.state_dict())
    assert quantize(q, spec) == ["conv2", "conv1", "gru", "cell", "readout"]
    x = torch.rand(32, 6, 8)
    calibrate(q, [x])
    return model, q.eval(), x


@torch.no_grad()
def test_every_layer_type_is_swapped_with_its_float_weights() -> None:
    model, q, x = _quantized(QuantSpec(8, 8))
    assert isinstance(q.gru, QuantGRU) and isinstance(q.cell, QuantLSTMCell)
    assert type(q.conv2).__name__ == "QuantConv2d" and type(q.conv1).__name__ == "QuantConv1d"
    torch.testing.assert_close(q.conv1.weight, model.conv1.weight)
    torch.testing.assert_close(q.gru.cells[0].hh.bias, model.gru.bias_hh_l0)
    ref = model(x)
    err = (q(x) - ref).abs().max() / ref.abs().max()
    assert 0 < err < 0.05


@torch.no_grad()
def test_rebuild_from_spec_and_state_dict_is_exact() -> None:
    _, q, x = _quantized(QuantSpec(4, 8, per_channel=True))
    with full_state_dict():
        state = q.state_dict()
        fresh = Mixed()
        quantize(fresh, QuantSpec(4, 8, per_channel=True))
        fresh.load_state_dict(state, strict=True)
    torch.testing.assert_close(fresh.eval()(x), q(x), rtol=0, atol=0)


def test_scales_and_bit_widths_are_reported_per_quantizer() -> None:
    _, q, _ = _quantized(QuantSpec(3, 8, per_channel=True))
    scales = quant_scales(q)
    assert scales["readout.weight_quant"]["bits"] == 3
    assert len(scales["readout.weight_quant"]["scale"]) == 2  # one per output channel
    assert len(scales["gru.cells.0.ih.weight_quant"]["scale"]) == 3 * 6
    assert scales["cell.state_quant.act_quant"]["bits"] == 8
    # the sigmoid gates cover [0, 1]: 255 steps of the unsigned 8-bit scale
    assert scales["cell.gate_act.act_quant"]["scale"][0] * 255 == pytest.approx(1.0, rel=0.05)
    assert all(s > 0 for entry in scales.values() for s in entry["scale"])


def test_unsupported_bits_and_models_without_quantizable_layers() -> None:
    with pytest.raises(CortexEdgeError, match=r"bits: 5-bit weights are not supported"):
        quantize(Mixed(), QuantSpec(5, 8))
    with pytest.raises(CortexEdgeError, match="act_bits: 2-bit activations are not supported"):
        quantize(Mixed(), QuantSpec(8, 2))
    with pytest.raises(CortexEdgeError, match="has no quantizable layer"):
        quantize(nn.Sequential(nn.LayerNorm(4), nn.ReLU()), QuantSpec())

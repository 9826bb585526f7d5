"""Quantized recurrent layers: close to float at 8 bits, and QCDQ ONNX that onnxruntime runs."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from cortexedge.compress.qat import calibrate
from cortexedge.compress.quant_gru import (
    QuantGRU,
    QuantGRUCell,
    QuantLSTM,
    QuantLSTMCell,
    QuantSpec,
)

IN, H = 6, 12


def _state_lsb(cell: nn.Module) -> float:
    return float(cell.state_quant.act_quant.scale())


@torch.no_grad()
def test_quant_gru_cell_steps_track_the_float_cell_at_8_bits() -> None:
    torch.manual_seed(0)
    cell = nn.GRUCell(IN, H)
    q = QuantGRUCell(IN, H, spec=QuantSpec(8, 8)).load_float(cell)
    xs = torch.randn(40, 16, IN)
    hs = [torch.zeros(16, H)]
    for x in xs:  # the float trajectory
        hs.append(cell(x, hs[-1]))
    # one step depends only on (x, h): calibrate on all pairs as one batch
    calibrate(q, [(xs.reshape(-1, IN), torch.cat(hs[:-1]))], forward=lambda m, a: m(*a))
    q.eval()
    worst = 0.0
    for x, h, h_next in zip(
        xs, hs, hs[1:], strict=False
    ):  # one step from the same float state: no drift
        worst = max(worst, float((q(x, h) - h_next).abs().max()))
    assert worst < 4 * _state_lsb(q)  # a few LSB of the state quantizer
    assert worst > 0  # it does quantize


@torch.no_grad()
@pytest.mark.parametrize("kind", ["gru", "lstm"])
def test_quant_rnn_matches_torch_rnn_layout(kind: str) -> None:
    """Stacked bidirectional QuantGRU/QuantLSTM copy torch's weights in torch's gate order."""
    torch.manual_seed(1)
    float_cls, quant_cls = {"gru": (nn.GRU, QuantGRU), "lstm": (nn.LSTM, QuantLSTM)}[kind]
    rnn = float_cls(IN, H, num_layers=2, batch_first=True, bidirectional=True)
    q = quant_cls.from_float(rnn, QuantSpec(8, 8))
    x = torch.randn(8, 10, IN)
    calibrate(q, [x])
    q.eval()
    out_f, state_f = rnn(x)
    out_q, state_q = q(x)
    assert out_q.shape == out_f.shape == (8, 10, 2 * H)
    h_f, h_q = (state_f[0], state_q[0]) if kind == "lstm" else (state_f, state_q)
    assert h_q.shape == h_f.shape == (4, 8, H)
    assert float((out_q - out_f).abs().max()) < 0.1
    torch.testing.assert_close(h_q[-1], out_q[:, 0, H:])  # backward direction ends at t=0
    torch.testing.assert_close(h_q[-2], out_q[:, -1, :H])


@torch.no_grad()
def test_lower_bit_widths_quantize_weights_to_fewer_levels() -> None:
    torch.manual_seed(2)
    cell = nn.GRUCell(IN, H)
    for bits in (8, 4, 3):
        for per_channel in (False, True):
            q = QuantGRUCell(IN, H, spec=QuantSpec(bits, 8, per_channel)).load_float(cell)
            ints = q.ih.quant_weight().int()
            assert int(ints.abs().max()) <= 2 ** (bits - 1) - 1
            scale = q.ih.quant_weight().scale
            assert scale.numel() == (3 * H if per_channel else 1)


class _Step(nn.Module):
    """One streaming step of a quantized layer: (x, *state) -> new state tensors."""

    def __init__(self, layer: nn.Module) -> None:
        super().__init__()
        self.layer = layer

    def forward(self, x, *state):
        if isinstance(self.layer, QuantGRU):
            return self.layer(x, state[0])[1]
        return self.layer(x, state[0] if len(state) == 1 else tuple(state))


STREAMS = {  # kind -> (layer, input shape of one step, initial state)
    "gru_cell": lambda: (QuantGRUCell(IN, H), (1, IN), (torch.zeros(1, H),)),
    "lstm_cell": lambda: (QuantLSTMCell(IN, H), (1, IN), (torch.zeros(1, H),) * 2),
    "gru_2layer": lambda: (
        QuantGRU(IN, H, num_layers=2, batch_first=True),
        (1, 1, IN),
        (torch.zeros(2, 1, H),),
    ),
}


@pytest.mark.slow
@torch.no_grad()
@pytest.mark.parametrize("kind", list(STREAMS))
def test_qcdq_export_runs_in_onnxruntime_like_brevitas(tmp_path, kind: str) -> None:
    import onnx
    import onnxruntime as ort
    from brevitas.export import export_onnx_qcdq

    torch.manual_seed(3)
    layer, shape, states = STREAMS[kind]()
    step = _Step(layer)
    xs = torch.randn(200, *shape) * 1.5

    def roll(m: nn.Module, xs: torch.Tensor) -> None:
        state = states
        for x in xs:
            out = step(x, *state)
            state = (out,) if isinstance(out, torch.Tensor) else out

    calibrate(layer, [xs], forward=roll)
    layer.eval()
    path = tmp_path / f"{kind}.onnx"
    export_onnx_qcdq(
        step, (xs[0], *states), export_path=str(path), dynamo=False,
        keep_initializers_as_inputs=False, opset_version=17,
    )  # fmt: skip
    assert {"QuantizeLinear", "DequantizeLinear"} <= {n.op_type for n in onnx.load(path).graph.node}
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [i.name for i in sess.get_inputs()]
    ort_state, torch_state = [s.numpy() for s in states], states
    worst = 0.0
    for x in xs:
        outs = sess.run(None, dict(zip(names, [x.numpy(), *ort_state], strict=True)))
        ref = step(x, *torch_state)
        ref = (ref,) if isinstance(ref, torch.Tensor) else ref
        diffs = [float(np.abs(o - r.numpy()).max()) for o, r in zip(outs, ref, strict=True)]
        worst = max(worst, *diffs)
        ort_state, torch_state = outs, ref
    cells = layer.cells if isinstance(layer, QuantGRU) else [layer]
    assert worst <= 3 * max(_state_lsb(c) for c in cells)


@pytest.mark.parametrize("cls", [QuantGRU, QuantLSTM])
def test_eval_projects_every_step_at_once_with_the_same_numbers(cls):
    """In eval mode the input projection of all steps is one call; the outputs are those of
    the step-by-step calls exactly (the cells' quantizers are the same elementwise maps)."""
    torch.manual_seed(0)
    q = cls(5, 7, num_layers=2, batch_first=True, spec=QuantSpec()).eval()
    x = torch.randn(3, 40, 5)
    with torch.no_grad():
        once, _ = q(x)
        q.training = True  # the stack steps as in training; its cells stay in eval mode
        stepped, _ = q(x)
    assert torch.equal(once, stepped)

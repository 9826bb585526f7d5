"""Quantized recurrent layers that export to QCDQ ONNX: QuantGRUCell, QuantGRU, QuantLSTMCell,
QuantLSTM.

brevitas 0.13 has no QuantGRU, and its QuantLSTM exports only to QONNX (which onnxruntime cannot
run). These cells are written out from brevitas parts that all export to QuantizeLinear /
DequantizeLinear: one `QuantLinear` for the input projection of every gate and one for the
recurrent projection, `QuantSigmoid` / `QuantTanh` for the gate nonlinearities and a
`QuantIdentity` on the input and on every state tensor. The gate arithmetic (adds, products,
the blend with the previous state) stays in float. Gate order and call signatures match torch's
`nn.GRUCell` / `nn.GRU` / `nn.LSTMCell` / `nn.LSTM`, so a model's own `forward` and `step` keep
working after its layers are swapped. brevitas is imported inside `QuantSpec.build_*`; importing
this module only costs torch.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

WEIGHT_BITS = (8, 4, 3)


@dataclass(frozen=True)
class QuantSpec:
    """Bit widths and scale granularity of one quantized model (JSON-serialisable fields only)."""

    weight_bits: int = 8
    act_bits: int = 8
    per_channel: bool = False

    def linear(self, in_features: int, out_features: int, bias: bool) -> nn.Module:
        """A brevitas QuantLinear with this spec's weight quantizer (float output, float bias)."""
        from brevitas.nn import QuantLinear

        return QuantLinear(
            in_features, out_features, bias=bias, return_quant_tensor=False, **self.weight_kw()
        )

    def weight_kw(self) -> dict:
        """Keyword arguments of brevitas Quant{Linear,Conv} for this spec's weights."""
        from brevitas.quant import Int8WeightPerChannelFloat, Int8WeightPerTensorFloat

        quant = Int8WeightPerChannelFloat if self.per_channel else Int8WeightPerTensorFloat
        return {"weight_quant": quant, "weight_bit_width": self.weight_bits}

    def act(self, kind: str) -> nn.Module:
        """An activation quantizer: "identity" (signed, scale calibrated from data), "sigmoid"
        (unsigned, range [0, 1]) or "tanh" (signed, range [-1, 1]); every scale is learned."""
        from brevitas.nn import QuantIdentity, QuantSigmoid, QuantTanh
        from brevitas.quant import Int8ActPerTensorFloatMinMaxInit, Uint8ActPerTensorFloatMaxInit

        kw = {"bit_width": self.act_bits, "return_quant_tensor": False}
        if kind == "sigmoid":
            return QuantSigmoid(act_quant=Uint8ActPerTensorFloatMaxInit, max_val=1.0, **kw)
        if kind == "tanh":
            quant = Int8ActPerTensorFloatMinMaxInit
            return QuantTanh(act_quant=quant, min_val=-1.0, max_val=1.0, **kw)
        return QuantIdentity(**kw)


class _QuantCellBase(nn.Module):
    """Shared parts of the quantized cells: `gates` blocks of `hidden_size` rows per projection."""

    gates = 0

    def __init__(self, input_size: int, hidden_size: int, bias: bool, spec: QuantSpec) -> None:
        super().__init__()
        self.input_size, self.hidden_size, self.bias = input_size, hidden_size, bias
        self.spec = spec
        self.input_quant = spec.act("identity")
        self.ih = spec.linear(input_size, self.gates * hidden_size, bias)
        self.hh = spec.linear(hidden_size, self.gates * hidden_size, bias)

    @property
    def weight_ih(self) -> Tensor:
        return self.ih.weight

    @property
    def weight_hh(self) -> Tensor:
        return self.hh.weight

    def project(self, x: Tensor) -> Tensor:
        """The input projection ih(quant(x)) of any number of steps at once (elementwise
        quantizers and a linear map: the same numbers as step by step, in one call)."""
        return self.ih(self.input_quant(x))

    def load_float(self, cell: nn.Module, suffix: str = "") -> _QuantCellBase:
        """Copy the float weights of a torch cell (or of one layer/direction of a torch RNN)."""
        with torch.no_grad():
            self.ih.weight.copy_(getattr(cell, f"weight_ih{suffix}"))
            self.hh.weight.copy_(getattr(cell, f"weight_hh{suffix}"))
            if self.bias:
                self.ih.bias.copy_(getattr(cell, f"bias_ih{suffix}"))
                self.hh.bias.copy_(getattr(cell, f"bias_hh{suffix}"))
        return self

    def extra_repr(self) -> str:
        return f"{self.input_size}, {self.hidden_size}, bias={self.bias}, spec={self.spec}"


class QuantGRUCell(_QuantCellBase):
    """`nn.GRUCell` with quantized weights, input, gates and state: `h' = cell(x, h)`."""

    gates = 3

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True, spec=QuantSpec()):
        super().__init__(input_size, hidden_size, bias, spec)
        self.state_quant = spec.act("identity")
        self.gate_act = spec.act("sigmoid")
        self.cand_act = spec.act("tanh")

    def forward(self, x: Tensor, h: Tensor | None = None, gi: Tensor | None = None) -> Tensor:
        """One step; `gi` is this step's `project(x)` when the caller computed it already."""
        if h is None:
            h = x.new_zeros(*x.shape[:-1], self.hidden_size)
        h = self.state_quant(h)
        gi = self.project(x) if gi is None else gi
        gh = self.hh(h)
        H = self.hidden_size
        rz = self.gate_act(gi[..., : 2 * H] + gh[..., : 2 * H])
        r, z = rz[..., :H], rz[..., H:]
        n = self.cand_act(gi[..., 2 * H :] + r * gh[..., 2 * H :])
        # written as torch defines it: the exported graph then holds the 3H products that
        # cortexedge.macs counts for a GRU step (r*(.), (1-z)*n, z*h)
        return (1 - z) * n + z * h


class QuantLSTMCell(_QuantCellBase):
    """`nn.LSTMCell` with quantized weights, input, gates and states: (h', c') = cell(x, (h, c))."""

    gates = 4

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True, spec=QuantSpec()):
        super().__init__(input_size, hidden_size, bias, spec)
        self.state_quant = spec.act("identity")
        self.cell_quant = spec.act("identity")
        self.gate_act = spec.act("sigmoid")
        self.cand_act = spec.act("tanh")
        self.cell_act = spec.act("tanh")

    def forward(
        self, x: Tensor, hc: tuple[Tensor, Tensor] | None = None, gi: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        """One step; `gi` is this step's `project(x)` when the caller computed it already."""
        if hc is None:
            zeros = x.new_zeros(*x.shape[:-1], self.hidden_size)
            hc = (zeros, zeros)
        h, c = self.state_quant(hc[0]), self.cell_quant(hc[1])
        gates = (self.project(x) if gi is None else gi) + self.hh(h)
        H = self.hidden_size
        # torch gate order i, f, g, o: the three sigmoid gates share one quantizer
        ifo = self.gate_act(torch.cat([gates[..., : 2 * H], gates[..., 3 * H :]], dim=-1))
        i, f, o = ifo[..., :H], ifo[..., H : 2 * H], ifo[..., 2 * H :]
        g = self.cand_act(gates[..., 2 * H : 3 * H])
        c_new = f * c + i * g
        return o * self.cell_act(c_new), c_new


class _QuantRNNBase(nn.Module):
    """A stack of quantized cells unrolled over time with `nn.GRU` / `nn.LSTM`'s interface."""

    cell_type: type[_QuantCellBase] = QuantGRUCell

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        bidirectional: bool = False,
        spec: QuantSpec = QuantSpec(),
    ) -> None:
        super().__init__()
        self.input_size, self.hidden_size, self.num_layers = input_size, hidden_size, num_layers
        self.bias, self.batch_first, self.dropout = bias, batch_first, dropout
        self.bidirectional, self.spec = bidirectional, spec
        dirs = 2 if bidirectional else 1
        self.cells = nn.ModuleList(
            self.cell_type(
                input_size if layer == 0 else dirs * hidden_size, hidden_size, bias, spec
            )
            for layer in range(num_layers)
            for _ in range(dirs)
        )

    @property
    def directions(self) -> int:
        return 2 if self.bidirectional else 1

    @classmethod
    def from_float(cls, rnn: nn.RNNBase, spec: QuantSpec) -> _QuantRNNBase:
        """A quantized copy of a torch `nn.GRU` / `nn.LSTM` (same sizes, float weights copied)."""
        q = cls(
            rnn.input_size, rnn.hidden_size, rnn.num_layers, rnn.bias, rnn.batch_first,
            rnn.dropout, rnn.bidirectional, spec,
        )  # fmt: skip
        for k, cell in enumerate(q.cells):
            layer, direction = divmod(k, q.directions)
            cell.load_float(rnn, f"_l{layer}" + ("_reverse" if direction else ""))
        return q

    def _run(self, cell: _QuantCellBase, xs: list[Tensor], state, reverse: bool):
        # in eval mode the input projection of every step is one call (brevitas costs about
        # as much per call as per element here); training keeps the per-step calls, whose
        # quantizers may collect statistics call by call
        pre = None if self.training else cell.project(torch.stack(xs)).unbind(0)
        outs = []
        for t in reversed(range(len(xs))) if reverse else range(len(xs)):
            state = cell(xs[t], state, None if pre is None else pre[t])
            outs.append(state[0] if isinstance(state, tuple) else state)
        return (outs[::-1] if reverse else outs), state

    def _forward(self, x: Tensor, states: list):
        """Run every layer and direction; `states[k]` is cell k's initial state (or None)."""
        if self.batch_first:
            x = x.transpose(0, 1)
        finals = []
        for layer in range(self.num_layers):
            xs = list(x.unbind(0))
            outs = []
            for d in range(self.directions):
                k = layer * self.directions + d
                seq, final = self._run(self.cells[k], xs, states[k], reverse=d == 1)
                outs.append(torch.stack(seq, 0))
                finals.append(final)
            x = torch.cat(outs, -1) if self.directions == 2 else outs[0]
            if self.dropout and self.training and layer < self.num_layers - 1:
                x = nn.functional.dropout(x, self.dropout, True)
        return (x.transpose(0, 1) if self.batch_first else x), finals

    def extra_repr(self) -> str:
        return (
            f"{self.input_size}, {self.hidden_size}, num_layers={self.num_layers}, "
            f"batch_first={self.batch_first}, bidirectional={self.bidirectional}"
        )


class QuantGRU(_QuantRNNBase):
    """`nn.GRU` built from QuantGRUCells: `out, h_n = gru(x, h_0)`."""

    cell_type = QuantGRUCell

    def forward(self, x: Tensor, h0: Tensor | None = None) -> tuple[Tensor, Tensor]:
        states = [None] * len(self.cells) if h0 is None else list(h0.unbind(0))
        out, finals = self._forward(x, states)
        return out, torch.stack(finals, 0)


class QuantLSTM(_QuantRNNBase):
    """`nn.LSTM` built from QuantLSTMCells: `out, (h_n, c_n) = lstm(x, (h_0, c_0))`."""

    cell_type = QuantLSTMCell

    def forward(self, x: Tensor, hc0: tuple[Tensor, Tensor] | None = None):
        if hc0 is None:
            states = [None] * len(self.cells)
        else:
            states = list(zip(hc0[0].unbind(0), hc0[1].unbind(0), strict=True))
        out, finals = self._forward(x, states)
        h_n = torch.stack([h for h, _ in finals], 0)
        c_n = torch.stack([c for _, c in finals], 0)
        return out, (h_n, c_n)

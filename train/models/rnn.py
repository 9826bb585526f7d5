"""Plain GRU and LSTM decoders: the baselines every other decoder is compared with.

input transform -> nn.GRU / nn.LSTM (1-2 layers) -> Linear readout at every row.
`forward` runs from a zero state; `step` advances the same recurrence by one row, carrying the
hidden state (("h",) for the GRU, ("h", "c") for the LSTM, each [layers, B, H]).
The recurrent layer is sequence-first ([T, B, C], the ONNX GRU/LSTM op's layout): `forward`
transposes around it, and `step` feeds it x_t.unsqueeze(0) and reads out from the new hidden
state, so the exported step graph is Unsqueeze -> GRU -> Gather -> Gemm with no layout plumbing
(onnxruntime pays about 0.3 µs per node on a streaming step).
The "plain GRU of equal size" baseline for AEGRU is `GRUDecoder(C, hidden=64)` trained on the
400 ms AEGRU's window spans, one row per step (binned windows would train it on inputs it never
streams).
"""

from __future__ import annotations

from torch import Tensor, nn

from cortexedge.train.models.inputs import check_dropout, check_input, check_sizes, input_transform


class RecurrentDecoder(nn.Module):
    """Shared body of GRUDecoder and LSTMDecoder; subclasses name the nn.RNN type and state."""

    rnn_type: type[nn.RNNBase]
    state_kinds: tuple[str, ...]

    def __init__(
        self,
        in_channels: int,
        out_dim: int = 2,
        hidden: int = 64,
        layers: int = 1,
        transform: str = "none",
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        name = type(self).__name__
        check_sizes(name, in_channels=in_channels, out_dim=out_dim, hidden=hidden, layers=layers)
        check_dropout(name, dropout)
        self.transform = input_transform(transform)
        self._config = dict(
            in_channels=in_channels,
            out_dim=out_dim,
            hidden=hidden,
            layers=layers,
            transform=transform,
            dropout=dropout,
        )
        self.in_channels, self.hidden, self.layers = in_channels, hidden, layers
        # nn.RNN's dropout acts between stacked layers only, so it is off for one layer.
        self.rnn = self.rnn_type(
            in_channels, hidden, layers, dropout=dropout if layers > 1 else 0.0
        )
        self.readout = nn.Linear(hidden, out_dim)

    def config(self) -> dict:
        """Constructor kwargs (JSON-able), for rebuilding the model from a checkpoint."""
        return dict(self._config)

    def forward(self, x: Tensor) -> Tensor:
        """x [B, T, C] -> y [B, T, D], from a zero state."""
        check_input(x, type(self).__name__, "x", ("batch", "time", "channels"), (self.in_channels,))
        out, _ = self.rnn(self.transform(x).transpose(0, 1))
        return self.readout(out.transpose(0, 1))

    def state_names(self) -> tuple[str, ...]:
        """Names of the state tensors, in order."""
        return self.state_kinds

    def init_state(self, batch: int) -> tuple[Tensor, ...]:
        """Zero state: one [layers, B, H] tensor per name in `state_names()`."""
        w = self.readout.weight
        shape = (self.rnn.num_layers, batch, self.rnn.hidden_size)  # from the layer: prunable
        return tuple(w.new_zeros(shape) for _ in self.state_kinds)

    def step(self, x_t: Tensor, state: tuple[Tensor, ...]) -> tuple[Tensor, tuple[Tensor, ...]]:
        """One row x_t [B, C] -> (y_t [B, D], new state)."""
        check_input(x_t, type(self).__name__, "x_t", ("batch", "channels"), (self.in_channels,))
        # nn.GRU takes and returns h alone, nn.LSTM the pair (h, c).
        hx = state[0] if len(state) == 1 else tuple(state)
        _, new = self.rnn(self.transform(x_t).unsqueeze(0), hx)
        new = new if isinstance(new, tuple) else (new,)
        # the last layer's new h is the row's output: the op's sequence output stays unread
        return self.readout(new[0][-1]), new

    def stream(self, x: Tensor) -> Tensor:
        """x [B, T, C] -> y [B, T, D]: stepping from `init_state`, which is `forward` here."""
        return self.forward(x)


class GRUDecoder(RecurrentDecoder):
    """GRU decoder; state ("h",) [layers, B, H]."""

    modality = "spikes"
    streaming_mode = "stateful"

    rnn_type = nn.GRU
    state_kinds = ("h",)


class LSTMDecoder(RecurrentDecoder):
    """LSTM decoder; state ("h", "c"), each [layers, B, H]."""

    modality = "spikes"
    streaming_mode = "stateful"

    rnn_type = nn.LSTM
    state_kinds = ("h", "c")

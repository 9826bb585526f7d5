"""Structured pruning with planted dead units: exactly those go, the outputs do not change."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from cortexedge.compress.structured import prune_structured, replay
from cortexedge.errors import CortexEdgeError

C, E, H, D = 6, 8, 8, 2


class RNNNet(nn.Module):
    """Linear encoder -> ReLU -> nn.GRU / nn.LSTM (2 layers) -> Linear readout."""

    def __init__(self, rnn: type[nn.RNNBase], bidirectional: bool = False) -> None:
        super().__init__()
        self.encoder = nn.Linear(C, E)
        self.rnn = rnn(E, H, num_layers=2, batch_first=True, bidirectional=bidirectional)
        self.readout = nn.Linear(H * (2 if bidirectional else 1), D)

    def forward(self, x):
        return self.readout(self.rnn(torch.relu(self.encoder(x)))[0])


class CellNet(nn.Module):
    """Linear encoder -> GRUCell / LSTMCell unrolled over time -> Linear readout per step."""

    def __init__(self, cell: type[nn.RNNCellBase]) -> None:
        super().__init__()
        self.encoder = nn.Linear(C, E)
        self.cell = cell(E, H)
        self.readout = nn.Linear(H, D)
        self.hidden = H

    def forward(self, x):
        z = torch.relu(self.encoder(x))
        h = z.new_zeros(len(x), self.hidden)
        state = h if isinstance(self.cell, nn.GRUCell) else (h, h.clone())
        outs = []
        for t in range(x.shape[1]):
            state = self.cell(z[:, t], state)
            outs.append(state if isinstance(state, torch.Tensor) else state[0])
        return self.readout(torch.stack(outs, 1))


def _kill_units(weights: dict[str, torch.Tensor], units: list[int]) -> None:
    """Zero every gate row and the recurrent column of `units` (h_k stays 0 from a zero state)."""
    for name, w in weights.items():
        gates = w.shape[0] // H
        for k in units:
            w[[g * H + k for g in range(gates)]] = 0
            if name.startswith("weight_hh"):
                w[:, k] = 0


def _suffixes(rnn: nn.Module) -> list[str]:
    if isinstance(rnn, nn.RNNCellBase):
        return [""]
    dirs = ["", "_reverse"][: 2 if rnn.bidirectional else 1]
    return [f"_l{layer}{d}" for layer in range(rnn.num_layers) for d in dirs]


def _outputs(rnn: nn.Module) -> list[str]:
    """The cells whose units form the module's output (the last layer, every direction)."""
    return _suffixes(rnn)[-(2 if getattr(rnn, "bidirectional", False) else 1) :]


def _plant(model: nn.Module, rnn: nn.Module, dead: dict[str, list[int]], dead_enc: list[int]):
    """Plant dead units per cell and dead encoder channels; their consumers read them with 0."""
    dirs = ["", "_reverse"][: 2 if getattr(rnn, "bidirectional", False) else 1]
    with torch.no_grad():
        for suffix, units in dead.items():
            names = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
            _kill_units({n: getattr(rnn, n + suffix) for n in names}, units)
            cols = [k + (H if suffix.endswith("_reverse") else 0) for k in units]
            if suffix in _outputs(rnn):
                model.readout.weight[:, cols] = 0
            else:
                for d in dirs:
                    getattr(rnn, f"weight_ih_l{int(suffix[2]) + 1}{d}")[:, cols] = 0
        model.encoder.bias.fill_(3.0)  # > |W x| for x in [0, 1): no live channel sits at ReLU 0
        model.encoder.weight[dead_enc] = 0
        model.encoder.bias[dead_enc] = 0
        for s in _suffixes(rnn)[: len(dirs)]:
            getattr(rnn, "weight_ih" + s)[:, dead_enc] = 0


CASES = {
    "gru": lambda: RNNNet(nn.GRU),
    "lstm": lambda: RNNNet(nn.LSTM),
    "bigru": lambda: RNNNet(nn.GRU, bidirectional=True),
    "grucell": lambda: CellNet(nn.GRUCell),
    "lstmcell": lambda: CellNet(nn.LSTMCell),
}


@pytest.mark.parametrize(
    ("case", "importance"),
    [(case, "magnitude") for case in CASES] + [("gru", "taylor"), ("lstmcell", "taylor")],
)
def test_planted_dead_units_are_removed_and_outputs_unchanged(case: str, importance: str) -> None:
    torch.manual_seed(0)
    model = CASES[case]().eval()
    rnn = model.rnn if hasattr(model, "rnn") else model.cell
    suffixes = _suffixes(rnn)
    dead = {s: [(3 * i + 1) % H, (3 * i + 5) % H] for i, s in enumerate(suffixes)}
    dead = {s: sorted(u) for s, u in dead.items()}
    dead_enc = [2, 5]
    _plant(model, rnn, dead, dead_enc)
    x = torch.rand(3, 7, C)
    before = model(x)

    if importance == "taylor":  # |w * dL/dw|: dead units get no gradient
        model(x).pow(2).sum().backward()
    plan = prune_structured(model, x, 0.25, importance=importance)

    by_root = {step.root: step for step in plan}
    assert by_root["encoder"].idxs == dead_enc
    rnn_name = "rnn" if hasattr(model, "rnn") else "cell"
    step = by_root[rnn_name]
    outputs = _outputs(rnn)
    expected = [k + d * H for d, s in enumerate(outputs) for k in dead[s]]
    assert step.idxs == expected
    assert step.inner == {s: dead[s] for s in suffixes if s not in outputs}
    assert rnn.hidden_size == H - 2 and model.encoder.out_features == E - 2
    assert rnn.input_size == E - 2
    torch.testing.assert_close(model(x), before, atol=1e-6, rtol=0)


def test_replay_rebuilds_the_same_architecture() -> None:
    torch.manual_seed(1)
    model = RNNNet(nn.LSTM, bidirectional=True).eval()
    x = torch.rand(2, 5, C)
    plan = prune_structured(model, x, 0.5)
    assert model.rnn.hidden_size == H // 2 and model.encoder.out_features == E // 2
    fresh = replay(RNNNet(nn.LSTM, bidirectional=True).eval(), x, plan)
    fresh.load_state_dict(model.state_dict())  # strict: every shape matches
    torch.testing.assert_close(fresh(x), model(x))


def test_bad_ratio_and_model_without_prunable_layer() -> None:
    model = RNNNet(nn.GRU)
    x = torch.rand(2, 3, C)
    with pytest.raises(CortexEdgeError, match=r"structured ratio must lie in \[0, 1\), got 1.0"):
        prune_structured(model, x, 1.0)
    lone = nn.Sequential(nn.Linear(C, D))
    with pytest.raises(CortexEdgeError, match="no structurally prunable layer"):
        prune_structured(lone, x, 0.5)

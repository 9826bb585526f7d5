"""Magnitude pruning: exact counts per layer and globally, held masks, the cubic schedule."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from cortexedge.compress.footprint import layer_sparsity
from cortexedge.compress.magnitude import (
    cubic_sparsity,
    magnitude_masks,
    make_permanent,
    prunable,
    prune_magnitude,
)
from cortexedge.errors import CortexEdgeError


class Zoo(nn.Module):
    """One of every prunable layer type, plus a norm that must never be pruned."""

    def __init__(self) -> None:
        super().__init__()
        self.conv2 = nn.Conv2d(1, 3, 3, padding=1)
        self.conv1 = nn.Conv1d(3, 4, 3, padding=1)
        self.norm = nn.LayerNorm(4)
        self.gru = nn.GRU(4, 5, num_layers=2, batch_first=True)
        self.lstm = nn.LSTM(5, 3, batch_first=True, bidirectional=True)
        self.gcell = nn.GRUCell(6, 4)
        self.lcell = nn.LSTMCell(4, 3)
        self.readout = nn.Linear(3, 2)

    def forward(self, x):  # x [B, T, 8]
        B, T, W = x.shape
        f = self.conv2(x.unsqueeze(1)).mean(-1)  # [B, 3, T]
        f = self.norm(self.conv1(f).transpose(1, 2))  # [B, T, 4]
        f, _ = self.lstm(self.gru(f)[0])  # [B, T, 6]
        h = f.new_zeros(B, 4)
        hc = (f.new_zeros(B, 3), f.new_zeros(B, 3))
        for t in range(T):
            h = self.gcell(f[:, t], h)
            hc = self.lcell(h, hc)
        return self.readout(hc[0])


WEIGHTS = [
    "conv2.weight", "conv1.weight",
    "gru.weight_ih_l0", "gru.weight_hh_l0", "gru.weight_ih_l1", "gru.weight_hh_l1",
    "lstm.weight_ih_l0", "lstm.weight_hh_l0", "lstm.weight_ih_l0_reverse",
    "lstm.weight_hh_l0_reverse",
    "gcell.weight_ih", "gcell.weight_hh", "lcell.weight_ih", "lcell.weight_hh", "readout.weight",
]  # fmt: skip


def test_every_layer_type_is_prunable_and_biases_and_norms_are_not() -> None:
    model = Zoo()
    assert list(prunable(model)) == WEIGHTS
    with_bias = prunable(model, include_bias=True)
    assert "gru.bias_hh_l1" in with_bias and "readout.bias" in with_bias
    assert not any(name.startswith("norm") for name in with_bias)


@pytest.mark.parametrize("sparsity", [0.3, 0.5, 0.9])
def test_layer_scope_prunes_exactly_round_s_n_in_every_layer(sparsity: float) -> None:
    torch.manual_seed(0)
    model = Zoo()
    prune_magnitude(model, sparsity, scope="layer")
    report = layer_sparsity(model)
    for name, (module, tname) in prunable(model).items():
        n = getattr(module, f"{tname}_orig").numel()
        assert report[name]["zeros"] == round(sparsity * n), name
        assert report[name]["total"] == n
    assert model.norm.weight.eq(1).all() and model.readout.bias.ne(0).all()


def test_global_scope_prunes_the_smallest_entries_of_all_layers_together() -> None:
    torch.manual_seed(1)
    model = Zoo()
    before = {n: getattr(m, t).detach().clone() for n, (m, t) in prunable(model).items()}
    flat = torch.cat([w.abs().reshape(-1) for w in before.values()])
    k = round(0.6 * flat.numel())
    threshold = flat.sort().values[k - 1]
    masks = magnitude_masks(model, 0.6)
    assert sum(int((~m).sum()) for m in masks.values()) == k
    for name, w in before.items():
        pruned = ~masks[name]
        assert (w.abs()[pruned] <= threshold).all() and (w.abs()[~pruned] >= threshold).all()
    # layers differ: global scope does not equalise them
    assert len({round(float((~m).float().mean()), 2) for m in masks.values()}) > 3


def test_masks_hold_during_training_and_become_permanent() -> None:
    torch.manual_seed(2)
    model = Zoo()
    masks = prune_magnitude(model, 0.5)
    opt = torch.optim.Adam(model.parameters(), lr=0.05, weight_decay=1e-3)
    x = torch.randn(4, 5, 8)
    for _ in range(5):
        opt.zero_grad()
        model(x).pow(2).sum().backward()
        opt.step()
    make_permanent(model)
    state = model.state_dict()
    assert not any(k.endswith(("_orig", "_mask")) for k in state)
    for name, (module, tname) in prunable(model).items():
        w = getattr(module, tname)
        assert isinstance(w, nn.Parameter)
        assert w[~masks[name]].eq(0).all() and w[masks[name]].ne(0).any(), name
    model(x)  # the GRU/LSTM flat weights point at the new parameters
    assert model.gru._flat_weights[0] is model.gru.weight_ih_l0


def test_gradual_masks_grow_monotonically() -> None:
    torch.manual_seed(3)
    model = Zoo()
    previous = None
    for step in range(1, 5):
        masks = prune_magnitude(model, cubic_sparsity(step, 4, 0.5))
        if previous is not None:
            for name in masks:
                assert not (masks[name] & ~previous[name]).any()  # nothing regrows
        previous = masks
    zeros = sum(r["zeros"] for r in layer_sparsity(model).values())
    total = sum(r["total"] for r in layer_sparsity(model).values())
    assert zeros == round(0.5 * total)


def test_cubic_schedule_values() -> None:
    assert cubic_sparsity(0, 100, 0.5) == 0.0
    assert cubic_sparsity(100, 100, 0.5) == 0.5
    assert cubic_sparsity(250, 100, 0.5) == 0.5
    assert cubic_sparsity(50, 100, 0.8) == pytest.approx(0.8 * (1 - 0.5**3))
    assert cubic_sparsity(25, 100, 0.6, initial=0.2) == pytest.approx(0.6 - 0.4 * 0.75**3)
    values = [cubic_sparsity(s, 10, 0.9) for s in range(11)]
    assert values == sorted(values)  # rises fast, then levels off
    assert values[1] - values[0] > values[10] - values[9]


@pytest.mark.parametrize("bad", [1.0, -0.1, 1.5, "0.5", True])
def test_bad_sparsity_is_rejected(bad) -> None:
    with pytest.raises(CortexEdgeError, match="sparsity must"):
        magnitude_masks(Zoo(), bad)


def test_model_without_prunable_layer_and_bad_scope() -> None:
    with pytest.raises(CortexEdgeError, match="has no prunable layer"):
        magnitude_masks(nn.Sequential(nn.LayerNorm(3), nn.ReLU()), 0.5)
    with pytest.raises(CortexEdgeError, match="scope must be one of global, layer, got 'all'"):
        magnitude_masks(Zoo(), 0.5, scope="all")


def test_global_pruning_refuses_to_empty_a_layer() -> None:
    """A small layer of tiny weights would vanish under one global threshold: say so instead."""
    model = nn.Sequential(nn.Linear(20, 20), nn.Linear(20, 2))
    with torch.no_grad():
        model[0].weight.fill_(1.0)
        model[1].weight.fill_(1e-3)  # 40 tiny readout weights of 440
    with pytest.raises(CortexEdgeError, match=r"removes every weight of 1\.weight; lower the"):
        magnitude_masks(model, 0.5)
    masks = magnitude_masks(model, 0.5, scope="layer")  # per layer keeps half of each
    assert int(masks["1.weight"].sum()) == 20

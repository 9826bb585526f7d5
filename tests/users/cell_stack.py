"""Two GRUCells with a LayerNorm between them, unrolled by hand."""

import torch
from torch import nn


class CellStack(nn.Module):
    streaming_mode = "stateful"

    def __init__(self, in_channels, out_dim, hidden=12):
        super().__init__()
        self.hidden = hidden
        self.cell1 = nn.GRUCell(in_channels, hidden)
        self.norm = nn.LayerNorm(hidden)
        self.cell2 = nn.GRUCell(hidden, hidden)
        self.readout = nn.Linear(hidden, out_dim)

    def init_state(self, batch):
        return torch.zeros(batch, self.hidden), torch.zeros(batch, self.hidden)

    def step(self, x_t, state):
        h1 = self.cell1(x_t, state[0])
        h2 = self.cell2(self.norm(h1), state[1])
        return self.readout(h2), (h1, h2)

    def forward(self, x):
        state, out = self.init_state(x.shape[0]), []
        for t in range(x.shape[1]):
            y, state = self.step(x[:, t], state)
            out.append(y)
        return torch.stack(out, 1)

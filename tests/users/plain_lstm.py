"""A single-layer LSTM velocity decoder, as in many BCI papers. It declares nothing about
streaming: cortexedge has to assume it is stateful, and says so."""

import torch
from torch import nn


class PlainLSTM(nn.Module):
    def __init__(self, in_channels, out_dim, hidden=12):
        super().__init__()
        self.hidden = hidden
        self.lstm = nn.LSTM(in_channels, hidden, batch_first=True)
        self.head = nn.Linear(hidden, out_dim)

    def forward(self, x):
        return self.head(self.lstm(x)[0])

    def init_state(self, batch):
        return torch.zeros(1, batch, self.hidden), torch.zeros(1, batch, self.hidden)

    def step(self, x_t, state):
        y, (h, c) = self.lstm(x_t.unsqueeze(1), state)
        return self.head(y[:, 0]), (h, c)

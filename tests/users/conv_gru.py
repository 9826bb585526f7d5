"""A causal temporal convolution over the last few bins, then a GRU.

Streaming keeps the last `kernel - 1` input rows as part of the state, so one step sees
exactly what the convolution sees over the whole sequence."""

import torch
import torch.nn.functional as F
from torch import nn


class ConvGRU(nn.Module):
    def __init__(self, in_channels, out_dim, features=8, kernel=3, hidden=12):
        super().__init__()
        self.kernel, self.hidden, self.in_channels = kernel, hidden, in_channels
        self.conv = nn.Conv1d(in_channels, features, kernel)
        self.gru = nn.GRU(features, hidden, batch_first=True)
        self.out = nn.Linear(hidden, out_dim)

    def forward(self, x):
        z = F.pad(x.transpose(1, 2), (self.kernel - 1, 0))
        h, _ = self.gru(torch.relu(self.conv(z)).transpose(1, 2))
        return self.out(h)

    def init_state(self, batch):
        rows = torch.zeros(batch, self.kernel - 1, self.in_channels)
        return rows, torch.zeros(1, batch, self.hidden)

    def step(self, x_t, state):
        window = torch.cat([state[0], x_t.unsqueeze(1)], 1)
        z = torch.relu(self.conv(window.transpose(1, 2)))
        h, h_n = self.gru(z.transpose(1, 2), state[1])
        return self.out(h[:, 0]), (window[:, 1:], h_n)

"""A lab's decoder: z-scored counts into a 2-layer GRU, then a linear readout.

Written the way a user writes one: plain torch, no cortexedge imports. The z-scoring
statistics are buffers, so they travel with the weights.
"""

import torch
from torch import nn


class NormGRU(nn.Module):
    streaming_mode = "stateful"

    def __init__(self, in_channels, out_dim, hidden=16):
        super().__init__()
        self.hidden = hidden
        self.register_buffer("mean", torch.full((in_channels,), 0.5))
        self.register_buffer("std", torch.full((in_channels,), 0.7))
        self.gru = nn.GRU(in_channels, hidden, num_layers=2, batch_first=True)
        self.out = nn.Linear(hidden, out_dim)

    def forward(self, x):
        h, _ = self.gru((x - self.mean) / self.std)
        return self.out(h)

    def init_state(self, batch):
        return (torch.zeros(2, batch, self.hidden),)

    def step(self, x_t, state):
        h, h_n = self.gru(((x_t - self.mean) / self.std).unsqueeze(1), state[0])
        return self.out(h[:, 0]), (h_n,)

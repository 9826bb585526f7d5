"""Attention CNN-BiLSTM for two-photon calcium traces (after Mirzaee, Chang, Latifi 2025).

Only the paper's abstract is public (temporal CNN + BiLSTM + attention, focal loss, multi-task
decoding of ipsi- and contralateral forelimb movement from unilateral M1), so the sizes and the
details here are our choices:

    x [B, L, N] ΔF/F of N neurons over a window of L rows
    -> conv_layers × (Conv1d(k=5, "same" padding) -> BatchNorm1d -> ReLU)   temporal features
    -> bidirectional LSTM (hidden per direction)                             h_t [B, L, 2H]
    -> additive (Bahdanau) attention, query = h at the window's last row:
         e_t = vᵀ tanh(W_k h_t + W_q h_L),  α = softmax_t(e),  c = Σ_t α_t h_t
    -> Dropout -> heads on c: movement logits (left, right) [B, 2], multi-label (sigmoid, focal
       loss), and optionally out_kin continuous kinematics [B, out_kin] (MSE).

`forward` returns ONE prediction per window, for the label of its LAST row, as one tensor
[B, 2 + out_kin]; `heads()` says which columns hold which head.
The model is not causal (the convolutions and the backward LSTM look at the whole window), so it
streams as a sliding window with a fixed lookback L = `lookback`: the state is the buffer of the
last L rows (zero-filled at the start), and `step` pushes one row and returns `forward(buffer)`.
Train it on windows of exactly `lookback` rows so that training and streaming agree.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cortexedge.train.models.inputs import check_dropout, check_input, check_sizes

MOVEMENT_LABELS = ("left", "right")
STREAM_CHUNK = 1024  # windows per batched call in `stream` (bounds its memory)


class AdditiveAttention(nn.Module):
    """Bahdanau attention pooling over time with the last row as the query."""

    def __init__(self, features: int, attn_dim: int) -> None:
        super().__init__()
        self.key = nn.Linear(features, attn_dim)
        self.query = nn.Linear(features, attn_dim, bias=False)
        self.score = nn.Linear(attn_dim, 1, bias=False)

    def forward(self, h: Tensor) -> Tensor:
        """h [B, L, F] -> context [B, F]."""
        energy = self.score(torch.tanh(self.key(h) + self.query(h[:, -1:]))).squeeze(-1)
        weights = torch.softmax(energy, dim=1)
        return (weights.unsqueeze(-1) * h).sum(1)


class AttnCNNBiLSTM(nn.Module):
    """Conv1d features -> BiLSTM -> additive attention -> movement (+ kinematics) heads."""

    modality = "calcium"
    streaming_mode = "window"  # bidirectional: each step re-reads a fixed lookback

    @property
    def streaming_window(self) -> int:
        """Rows each step reads: the lookback."""
        return self.lookback

    def __init__(
        self,
        in_channels: int,
        conv_channels: int = 32,
        kernel_size: int = 5,
        conv_layers: int = 2,
        hidden: int = 32,
        attn_dim: int = 32,
        out_kin: int = 0,
        lookback: int = 32,
        dropout: float = 0.2,
    ) -> None:
        super().__init__()
        sizes = dict(
            in_channels=in_channels,
            conv_channels=conv_channels,
            kernel_size=kernel_size,
            conv_layers=conv_layers,
            hidden=hidden,
            attn_dim=attn_dim,
            lookback=lookback,
        )
        check_sizes("AttnCNNBiLSTM", **sizes)
        if out_kin != 0:
            check_sizes("AttnCNNBiLSTM", out_kin=out_kin)
        check_dropout("AttnCNNBiLSTM", dropout)
        self._config = dict(sizes, out_kin=out_kin, dropout=dropout)
        self.in_channels, self.lookback, self.out_kin = in_channels, lookback, out_kin

        blocks = []
        for i in range(conv_layers):
            blocks += [
                nn.Conv1d(
                    in_channels if i == 0 else conv_channels,
                    conv_channels,
                    kernel_size,
                    padding="same",
                ),
                nn.BatchNorm1d(conv_channels),
                nn.ReLU(),
            ]
        self.conv = nn.Sequential(*blocks)
        self.lstm = nn.LSTM(conv_channels, hidden, batch_first=True, bidirectional=True)
        self.attention = AdditiveAttention(2 * hidden, attn_dim)
        self.dropout = nn.Dropout(dropout)
        self.movement = nn.Linear(2 * hidden, len(MOVEMENT_LABELS))
        self.kinematics = nn.Linear(2 * hidden, out_kin) if out_kin else None

    def config(self) -> dict:
        """Constructor kwargs (JSON-able), for rebuilding the model from a checkpoint."""
        return dict(self._config)

    def heads(self) -> dict[str, slice]:
        """Which output columns hold which head: movement logits, then kinematics if any."""
        n = len(MOVEMENT_LABELS)
        heads = {"movement": slice(0, n)}
        if self.out_kin:
            heads["kinematics"] = slice(n, n + self.out_kin)
        return heads

    def forward(self, x: Tensor) -> Tensor:
        """Window x [B, L, N] -> [B, 2 + out_kin] for the window's last row."""
        check_input(x, "AttnCNNBiLSTM", "x", ("batch", "time", "neurons"), (self.in_channels,))
        features = self.conv(x.transpose(1, 2)).transpose(1, 2)
        h, _ = self.lstm(features)
        context = self.dropout(self.attention(h))
        outs = [self.movement(context)]
        if self.kinematics is not None:
            outs.append(self.kinematics(context))
        return torch.cat(outs, dim=-1)

    # ---------------------------------------------------------------- streaming
    def state_names(self) -> tuple[str, ...]:
        """Names of the state tensors, in order."""
        return ("buffer",)

    def init_state(self, batch: int) -> tuple[Tensor, ...]:
        """Zero-filled buffer of the last `lookback` rows [B, L, N]."""
        w = self.movement.weight
        return (w.new_zeros(batch, self.lookback, self.in_channels),)

    def step(self, x_t: Tensor, state: tuple[Tensor, ...]) -> tuple[Tensor, tuple[Tensor, ...]]:
        """Push one row x_t [B, N] -> (forward(buffer) [B, 2 + out_kin], new buffer)."""
        check_input(x_t, "AttnCNNBiLSTM", "x_t", ("batch", "neurons"), (self.in_channels,))
        buffer = torch.cat([state[0][:, 1:], x_t.unsqueeze(1)], dim=1)
        return self.forward(buffer), (buffer,)

    def stream(self, x: Tensor) -> Tensor:
        """Rows x [B, T, N] -> [B, T, 2 + out_kin]: stepping from `init_state`, vectorised."""
        check_input(x, "AttnCNNBiLSTM", "x", ("batch", "time", "neurons"), (self.in_channels,))
        padded = F.pad(x, (0, 0, self.lookback - 1, 0))
        windows = padded.unfold(1, self.lookback, 1).transpose(2, 3)  # [B, T, L, N] (a view)
        batch, time = x.shape[:2]
        chunk = max(1, STREAM_CHUNK // batch)
        outs = [
            self.forward(windows[:, s : s + chunk].flatten(0, 1)).unflatten(0, (batch, -1))
            for s in range(0, time, chunk)
        ]
        return torch.cat(outs, dim=1)

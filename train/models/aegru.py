"""AEGRU: the BioCAS 2024 Grand Challenge winner (Wang, Wang, Liu 2024), as a streaming decoder.

Per 80 ms bin of spike counts x (C channels):

    mu  = clamp(BatchNorm(Linear_C→E(log(softplus(x)))), ±10)       encoder = the VAE's `mu`
    h_l = LayerNorm(GRUCell(h_{l-1}, h_l))  for each layer l         h_0 := mu (or z, see below)
    y   = Linear_H→D(Dropout(h_last))                                one output per bin

Training-only parts live in `self.aux` (an `AEGRUAux`): the log-variance branch
Linear(C→128)→ReLU→Linear(128→E) and the Poisson decoder rates = exp(Linear_E→C(z)). As in the
public challenge code, in training mode the GRU reads the reparameterised sample
z = mu + ε·exp(logvar/2), and the decoder reconstructs the bin from z; in eval mode z = mu.
`inference_module()` returns a copy without `aux`: that is what compression and export carry.
Unlike the public inference code, the encoder keeps its ±10 clamp at inference, so training and
inference run the same function of mu.

Size (C=96, E=32, D=2, inference part): 22,242 parameters at hidden=64, 9,634 at hidden=32.
The published 9,634 (indy, C=96) and 12,706 (loco, C=192) are matched exactly by hidden=32, so
the challenge entry ran GRUCell(32→32), and so does the default here (hidden=32): it also gives
the published dense count (≈54.3k MACs per 4 ms averaged over C=96 and C=192).
The training-only parts add 19,712 parameters at C=96.

Streaming (`init_state` / `step`, one raw 4 ms sample per step, bin_width samples per bin):
- "window" (the published mode): the state is the buffer of the last num_steps·bin_width raw
  samples; each step re-bins it and reruns the GRU from zero over the num_steps bins, and y_t is
  the output of the last bin. The buffer starts zero-filled, so the first outputs see empty
  bins (the public code instead grew its buffer from empty; both agree once it is full).
- "stateful": the state is the last bin_width-1 raw samples plus the hidden state of every
  layer; each step feeds the box sum of the last bin_width samples (ending now) through one GRU
  step. Train such a model with `forward` on long sequences of bins computed at EVERY sample,
  `forward(box_sum(x_raw, bin_width))` over a segment (truncated back-propagation through time
  in chunks, labels per sample): that is exactly the sequence `stream` runs, so training and
  streaming see the same inputs.
`stream(x_raw)` is the vectorised equivalent of stepping through a sequence from `init_state`;
it equals stepping in eval mode (BatchNorm uses running statistics, dropout is off).
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cortexedge.errors import CortexEdgeError
from cortexedge.train.models.inputs import check_dropout, check_input, check_sizes, log_softplus

MODES = ("window", "stateful")
ENCODER_CLAMP = 10.0
STREAM_CHUNK = 4096  # windows per batched GRU call in `stream` (bounds its memory)


def box_sum(x: Tensor, width: int) -> Tensor:
    """Sum of the last `width` rows at every row of x [B, T, C], zeros before the start."""
    padded = F.pad(x, (0, 0, width - 1, 0))
    return padded.unfold(1, width, 1).sum(-1)


class AEGRUAux(nn.Module):
    """AEGRU's training-only parts: log-variance branch and Poisson decoder (never exported)."""

    def __init__(self, in_channels: int, enc_dim: int, logvar_hidden: int) -> None:
        super().__init__()
        self.logvar = nn.Sequential(
            nn.Linear(in_channels, logvar_hidden), nn.ReLU(), nn.Linear(logvar_hidden, enc_dim)
        )
        self.decoder = nn.Linear(enc_dim, in_channels)

    def rates(self, z: Tensor) -> Tensor:
        """Poisson rates exp(Linear(z)) reconstructing the input counts of each bin."""
        return torch.exp(self.decoder(z))


class AEGRU(nn.Module):
    """Autoencoder-regularised GRU decoder of binned spike counts; see the module docstring."""

    modality = "spikes"

    @property
    def streaming_mode(self) -> str:
        """ "window" (the published mode: every step re-reads the last bins) or "stateful"."""
        return self.mode

    @property
    def streaming_window(self) -> int:
        """Rows a window-mode step reads: `num_steps` bins of `bin_width` rows."""
        return self.num_steps * self.bin_width

    def __init__(
        self,
        in_channels: int,
        out_dim: int = 2,
        enc_dim: int = 32,
        hidden: int = 32,
        layers: int = 1,
        dropout: float = 0.5,
        bin_width: int = 20,
        num_steps: int = 5,
        mode: str = "window",
        logvar_hidden: int = 128,
        training_parts: bool = True,
    ) -> None:
        super().__init__()
        sizes = dict(
            in_channels=in_channels,
            out_dim=out_dim,
            enc_dim=enc_dim,
            hidden=hidden,
            layers=layers,
            bin_width=bin_width,
            num_steps=num_steps,
            logvar_hidden=logvar_hidden,
        )
        check_sizes("AEGRU", **sizes)
        check_dropout("AEGRU", dropout)
        if mode not in MODES:
            raise CortexEdgeError(f"AEGRU: mode must be one of {', '.join(MODES)}, got {mode!r}")
        self._config = dict(sizes, dropout=dropout, mode=mode, training_parts=bool(training_parts))
        self.in_channels, self.hidden, self.layers = in_channels, hidden, layers
        self.bin_width, self.num_steps, self.mode = bin_width, num_steps, mode

        self.encoder = nn.Linear(in_channels, enc_dim)
        self.norm = nn.BatchNorm1d(enc_dim)
        self.cells = nn.ModuleList(
            nn.GRUCell(enc_dim if i == 0 else hidden, hidden) for i in range(layers)
        )
        self.cell_norms = nn.ModuleList(nn.LayerNorm(hidden) for _ in range(layers))
        self.dropout = nn.Dropout(dropout)
        self.readout = nn.Linear(hidden, out_dim)
        self.aux = AEGRUAux(in_channels, enc_dim, logvar_hidden) if training_parts else None

    def config(self) -> dict:
        """Constructor kwargs (JSON-able): `build_model("aegru", **config)` rebuilds the model."""
        return dict(self._config)

    # ---------------------------------------------------------------- binned windows
    def _mu(self, features: Tensor) -> Tensor:
        """Encoder on transformed bins [N, C] -> clamped, batch-normalised mu [N, E]."""
        return self.norm(self.encoder(features)).clamp(-ENCODER_CLAMP, ENCODER_CLAMP)

    def _mu_steps(self, steps: Tensor) -> Tensor:
        """Transformed bins sequence-first [S, B, C] -> mu [S, B, E]."""
        mu = self._mu(steps.flatten(0, 1))
        # S and E as sizes and -1 for the batch: an exported step graph keeps its batch free
        return mu.reshape(len(steps), -1, self.encoder.out_features)

    def _cells(self, inp: Tensor, h: list[Tensor | None]) -> list[Tensor]:
        """One bin through the GRUCell+LayerNorm stack: inp [B, E], h[i] [B, H] or None -> the
        new h. None is the zero state, sized by the cell from inp: an exported graph's batch
        dim stays free, and with the batch fixed at load onnxruntime folds the zeros."""
        new = []
        for cell, norm, h_i in zip(self.cells, self.cell_norms, h, strict=True):
            inp = norm(cell(inp, h_i))
            new.append(inp)
        return new

    def _recur(self, z: Tensor) -> list[Tensor]:
        """The stack from zero over z [S, B, E] -> the last layer's h after every bin [B, H]."""
        h: list[Tensor | None] = [None] * self.layers
        outs = []
        for t in range(len(z)):  # not unbind: torch-pruning would map it as a channel split
            h = self._cells(z[t], h)
            outs.append(h[-1])
        return outs

    def _zero_hidden(self, batch: int) -> list[Tensor]:
        w = self.readout.weight
        # widths come from the cells, so a structurally pruned model still allocates right
        return [w.new_zeros(batch, cell.hidden_size) for cell in self.cells]

    def forward(self, x: Tensor) -> Tensor:
        """Binned counts x [B, S, C] -> y [B, S, D], GRU from zero state (z = mu)."""
        check_input(x, "AEGRU", "x", ("batch", "steps", "channels"), (self.in_channels,))
        hs = torch.stack(self._recur(self._mu_steps(log_softplus(x.transpose(0, 1)))), dim=1)
        return self.readout(self.dropout(hs))

    def forward_train(self, x: Tensor) -> dict[str, Tensor]:
        """Binned counts x [B, S, C] -> dict(y, rates, mu, logvar) for `aegru_loss`."""
        if self.aux is None:
            raise CortexEdgeError("AEGRU: forward_train needs the training parts, stripped here")
        check_input(x, "AEGRU", "x", ("batch", "steps", "channels"), (self.in_channels,))
        features = log_softplus(x)
        mu = self._mu_steps(features.transpose(0, 1)).transpose(0, 1)
        logvar = self.aux.logvar(features)
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar) if self.training else mu
        hs = torch.stack(self._recur(z.transpose(0, 1)), dim=1)
        y = self.readout(self.dropout(hs))
        return dict(y=y, rates=self.aux.rates(z), mu=mu, logvar=logvar)

    def inference_module(self) -> AEGRU:
        """A copy without the training-only parts (same weights, same outputs in eval mode)."""
        stripped = copy.deepcopy(self)
        stripped.aux = None
        stripped._config["training_parts"] = False
        return stripped

    # ---------------------------------------------------------------- streaming
    @property
    def _buffered(self) -> bool:
        """Whether the state keeps raw samples (a stateful model with bin_width 1 needs none)."""
        return self.mode == "window" or self.bin_width > 1

    def state_names(self) -> tuple[str, ...]:
        """Names of the state tensors `init_state` returns, in order."""
        hidden = tuple(f"h{i}" for i in range(self.layers)) if self.mode == "stateful" else ()
        return ("buffer", *hidden) if self._buffered else hidden

    def init_state(self, batch: int) -> tuple[Tensor, ...]:
        """Zero state: raw-sample buffer [B, num_steps·bin_width or bin_width-1, C] (+ hiddens)."""
        rows = self.num_steps * self.bin_width if self.mode == "window" else self.bin_width - 1
        buffer = (self.readout.weight.new_zeros(batch, rows, self.in_channels),)
        hidden = tuple(self._zero_hidden(batch)) if self.mode == "stateful" else ()
        return (*buffer, *hidden) if self._buffered else hidden

    def _last_output(self, bins: Tensor) -> Tensor:
        """Windows of binned counts [N, S, C] -> the output of each window's last bin [N, D]:
        the stack run from zero over the S bins, read out once (window mode's y per sample)."""
        # transposed before the transform, whose output is then a sequence-first copy (the
        # numpy backend flattens it as a view)
        h_last = self._recur(self._mu_steps(log_softplus(bins.transpose(0, 1))))[-1]
        return self.readout(self.dropout(h_last))

    def step(self, x_t: Tensor, state: tuple[Tensor, ...]) -> tuple[Tensor, tuple[Tensor, ...]]:
        """One raw 4 ms sample x_t [B, C] -> (y_t [B, D], new state)."""
        check_input(x_t, "AEGRU", "x_t", ("batch", "channels"), (self.in_channels,))
        if self.mode == "window":
            buffer = torch.cat([state[0], x_t.unsqueeze(1)], dim=1)[:, 1:]
            shape = (-1, self.num_steps, self.bin_width, self.in_channels)  # batch stays free
            return self._last_output(buffer.reshape(shape).sum(2)), (buffer,)
        counts, kept, hidden = x_t, (), state  # stateful, one raw sample per bin: no buffer
        if self._buffered:  # the bin ending now: kept samples plus this one
            buffer = torch.cat([state[0], x_t.unsqueeze(1)], dim=1)
            counts, kept, hidden = buffer.sum(1), (buffer[:, 1:],), state[1:]
        h = self._cells(self._mu(log_softplus(counts)), list(hidden))
        return self.readout(self.dropout(h[-1])), (*kept, *h)

    def stream(self, x: Tensor) -> Tensor:
        """Raw samples x [B, T, C] -> y [B, T, D]: stepping from `init_state`, vectorised."""
        check_input(x, "AEGRU", "x", ("batch", "samples", "channels"), (self.in_channels,))
        bins = box_sum(x, self.bin_width)  # the bin ending at every sample
        if self.mode == "stateful":
            return self.forward(bins)
        span = (self.num_steps - 1) * self.bin_width
        padded = F.pad(bins, (0, 0, span, 0))
        offsets = torch.arange(self.num_steps, device=x.device) * self.bin_width
        batch, samples = x.shape[:2]
        chunk = max(1, STREAM_CHUNK // batch)
        outs = []
        for start in range(0, samples, chunk):
            rows = torch.arange(start, min(start + chunk, samples), device=x.device)
            windows = padded[:, rows[:, None] + offsets]  # [B, n, num_steps, C]
            y = self._last_output(windows.flatten(0, 1))
            outs.append(y.unflatten(0, (batch, len(rows))))
        return torch.cat(outs, dim=1)

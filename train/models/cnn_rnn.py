"""Run/rest decoders for widefield calcium imaging (after Ajioka et al., PLoS Comput Biol 2024).

`CNNRNN`, the end-to-end model: at each frame t the `frames_per_input` latest frames
(default 3: t-2, t-1, t) are stacked as channels and go through a SMALL 2-D CNN,
3 × (Conv2d 3×3, stride 2, padding 1 -> ReLU) with 8-16-32 channels, then a global average
pool -> a 32-d embedding per frame; the embeddings feed a GRU (hidden 32) and Linear(H→1)
gives the run/rest logit of every frame. The paper used EfficientNet-B0 features (1,280-d,
~4M parameters, ImageNet weights) and a 2-layer GRU(128): pretrained weights cannot be
downloaded here, and that size is far beyond an edge target. With the defaults this model has
224 + 1,168 + 4,640 (convs) + 6,336 (GRU) + 33 (readout) = 12,401 parameters.
The paper labels the centre of a ±5-frame window; this decoder is causal (frame t from frames
≤ t), so streaming needs no lookahead; to let it use future frames, train on labels delayed by
the lookahead you accept. Frames before the start are zeros.
Streaming state: ("frames", "h") = the last frames_per_input-1 frames [B, F-1, H, W] and the GRU
hidden state [layers, B, hidden].

`ROIGRU`, the ROI-trace model: GRU(32) over 50 ROI ΔF/F traces -> Linear(1), a `GRUDecoder`
with those defaults. With torch's nn.GRU it has 3·32·(50+32) + 6·32 + 33 = 8,097 parameters;
the paper's 8,001 is the Keras count with `reset_after=False` (one bias vector per gate,
3·32 fewer). Torch's GRU (like ONNX's with linear_before_reset=1) has two.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cortexedge.errors import CortexEdgeError
from cortexedge.train.models.inputs import check_dropout, check_input, check_sizes
from cortexedge.train.models.rnn import GRUDecoder


class CNNRNN(nn.Module):
    """Per-frame small CNN on stacked frames -> GRU -> one logit per frame."""

    modality = "widefield"
    streaming_mode = "stateful"

    def __init__(
        self,
        frame_shape: tuple[int, int] | list[int] = (64, 64),
        frames_per_input: int = 3,
        conv_channels: tuple[int, ...] | list[int] = (8, 16, 32),
        hidden: int = 32,
        layers: int = 1,
        out_dim: int = 1,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        frame_shape, conv_channels = tuple(frame_shape), tuple(conv_channels)
        if len(frame_shape) != 2:
            raise CortexEdgeError(f"CNNRNN: frame_shape must be [height, width], got {frame_shape}")
        check_sizes(
            "CNNRNN",
            frame_height=frame_shape[0],
            frame_width=frame_shape[1],
            frames_per_input=frames_per_input,
            hidden=hidden,
            layers=layers,
            out_dim=out_dim,
            conv_layers=len(conv_channels),
        )
        check_sizes("CNNRNN", **{f"conv_channels[{i}]": c for i, c in enumerate(conv_channels)})
        check_dropout("CNNRNN", dropout)
        self._config = dict(
            frame_shape=list(frame_shape),
            frames_per_input=frames_per_input,
            conv_channels=list(conv_channels),
            hidden=hidden,
            layers=layers,
            out_dim=out_dim,
            dropout=dropout,
        )
        self.frame_shape, self.frames_per_input = frame_shape, frames_per_input
        self.hidden, self.layers = hidden, layers

        blocks, channels = [], frames_per_input
        for c in conv_channels:
            blocks += [nn.Conv2d(channels, c, 3, stride=2, padding=1), nn.ReLU()]
            channels = c
        self.cnn = nn.Sequential(*blocks)
        # sequence-first, the ONNX GRU op's layout: the exported step graph needs no transposes
        self.rnn = nn.GRU(channels, hidden, layers, dropout=dropout if layers > 1 else 0.0)
        self.readout = nn.Linear(hidden, out_dim)

    def config(self) -> dict:
        """Constructor kwargs (JSON-able), for rebuilding the model from a checkpoint."""
        return dict(self._config)

    def embed(self, stacks: Tensor) -> Tensor:
        """Frame stacks [N, F, H, W] -> embeddings [N, conv_channels[-1]] (global average)."""
        return self.cnn(stacks).mean(dim=(-2, -1))

    def forward(self, x: Tensor) -> Tensor:
        """Frames x [B, T, H, W] -> logits [B, T, out_dim], from zero frames and state."""
        check_input(x, "CNNRNN", "x", ("batch", "time", "height", "width"), self.frame_shape)
        padded = F.pad(x, (0, 0, 0, 0, self.frames_per_input - 1, 0))
        stacks = padded.unfold(1, self.frames_per_input, 1).movedim(-1, 2)  # [B, T, F, H, W]
        emb = self.embed(stacks.flatten(0, 1)).unflatten(0, x.shape[:2])
        out, _ = self.rnn(emb.transpose(0, 1))
        return self.readout(out.transpose(0, 1))

    def state_names(self) -> tuple[str, ...]:
        """Names of the state tensors, in order."""
        return ("frames", "h")

    def init_state(self, batch: int) -> tuple[Tensor, ...]:
        """Zero frames [B, F-1, H, W] and zero hidden state [layers, B, hidden]."""
        w = self.readout.weight
        frames = w.new_zeros(batch, self.frames_per_input - 1, *self.frame_shape)
        return frames, w.new_zeros(self.rnn.num_layers, batch, self.rnn.hidden_size)

    def step(self, x_t: Tensor, state: tuple[Tensor, ...]) -> tuple[Tensor, tuple[Tensor, ...]]:
        """One frame x_t [B, H, W] -> (logit [B, out_dim], new state)."""
        check_input(x_t, "CNNRNN", "x_t", ("batch", "height", "width"), self.frame_shape)
        stack = torch.cat([state[0], x_t.unsqueeze(1)], dim=1)
        _, h = self.rnn(self.embed(stack).unsqueeze(0), state[1])
        return self.readout(h[-1]), (stack[:, 1:], h)  # the last layer's new h is the output

    def stream(self, x: Tensor) -> Tensor:
        """Frames x [B, T, H, W] -> [B, T, out_dim]: stepping from `init_state` (= forward)."""
        return self.forward(x)


class ROIGRU(GRUDecoder):
    """Ajioka et al.'s ROI model: GRU(32) over 50 ROI ΔF/F traces -> one run/rest logit per row."""

    modality = "calcium"

    def __init__(
        self,
        in_channels: int = 50,
        out_dim: int = 1,
        hidden: int = 32,
        layers: int = 1,
        transform: str = "none",
        dropout: float = 0.0,
    ) -> None:
        super().__init__(in_channels, out_dim, hidden, layers, transform, dropout)

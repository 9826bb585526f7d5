"""A torch model decoding rows causally from its initial state, as a deployed decoder would.

This is what train and compress score (`cortexedge.scoring`) and what export checks a model's
`step` against. Runs of rows side by side, x [B, T, ...], become outputs y [B, T, D] by, in
this order:
- the model's sequence form (`stream`, else a `forward` its class defines), when that returns
  one output per row, [B, T, ...];
- else its `step`, bin by bin from `init_state`;
- else, for a model that does not stream, its forward on the window of `window` rows ending at
  each row, zero-padded before the run (what the window-mode runtime would see).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor, nn

from cortexedge import scoring
from cortexedge.errors import CortexEdgeError
from cortexedge.families import streaming_of
from cortexedge.recording import Recording

WINDOW_BATCH = 1024


def sequence_form(model: nn.Module) -> Callable[[Tensor], Tensor] | None:
    """The model's own sequence function: `stream`, else a `forward` its class defines, else
    None (a step-only module)."""
    if callable(getattr(model, "stream", None)):
        return model.stream
    return None if type(model).forward is nn.Module.forward else model.forward


def _streams(model: nn.Module) -> bool:
    return all(callable(getattr(model, m, None)) for m in ("init_state", "step"))


def _stepped(model: nn.Module, x: Tensor) -> Tensor:
    state, out = model.init_state(len(x)), []
    for t in range(x.shape[1]):
        y, state = model.step(x[:, t], state)
        out.append(y.reshape(len(x), -1))
    return torch.stack(out, 1)


def _windowed(model: nn.Module, x: Tensor, window: int) -> Tensor:
    padded = torch.cat([x.new_zeros((len(x), window - 1, *x.shape[2:])), x], 1)
    windows = padded.unfold(1, window, 1).movedim(-1, 2).flatten(0, 1)  # [B·T, window, ...]
    out = []
    for i in range(0, len(windows), WINDOW_BATCH):
        y = model(windows[i : i + WINDOW_BATCH])
        y = y[:, -1] if y.dim() >= 3 and y.shape[1] == window else y  # per-step outputs
        out.append(y.reshape(len(y), -1))
    return torch.cat(out).unflatten(0, x.shape[:2])


def decoder(model: nn.Module, window: int | None = None) -> Callable[[np.ndarray], np.ndarray]:
    """`decode(x [B, T, ...]) -> y [B, T, D]` of an eval-mode model (module docstring)."""
    sequence = sequence_form(model)

    @torch.no_grad()
    def decode(x: np.ndarray) -> np.ndarray:
        xt = torch.as_tensor(np.ascontiguousarray(x, dtype=np.float32))
        if sequence is not None:
            y = sequence(xt)
            if isinstance(y, Tensor) and y.dim() >= 2 and y.shape[:2] == xt.shape[:2]:
                return y.reshape(*xt.shape[:2], -1).numpy()
        if _streams(model):
            return _stepped(model, xt).numpy()
        if window is None:
            raise CortexEdgeError(
                f"{type(model).__name__} cannot be scored causally: it has no step/init_state "
                "and its forward does not return one output per row of x [1, T, ...]"
            )
        return _windowed(model, xt, window).numpy()

    return decode


def score_model(
    model: nn.Module, rec: Recording, split: str, kind: str, window: int | None = None
) -> dict:
    """The split's score by the one definition (`cortexedge.scoring`), decoded in torch."""
    was_training = model.training
    model.eval()
    try:
        context = scoring.context_rows(streaming_of(model)[0], rec.bin_ms)
        return scoring.score(rec, split, kind, decoder(model, window), context)
    finally:
        model.train(was_training)

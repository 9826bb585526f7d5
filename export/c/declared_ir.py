"""The layer IR of a decoder class the toolkit has no reader for, read from what its `step` does.

The class is read by running its `step` once (eval mode, no gradients) with hooks on its
submodules. The outermost layers it calls, in order, must form

    [per-channel affine of the bin] -> [Linear encoder] -> recurrent layers (GRU / LSTM stacks
    or cells, one kind) -> Linear readout

and every edge is checked by value, so a step that computes anything else between its layers
is refused with the edge that differs:
- each layer reads the previous layer's output;
- each recurrent layer reads its state from the step's state tuple, and the step returns that
  layer's new state in the same place (which is how the graph's states map onto the C state);
- the step's output is the readout's;
- what the step does to the bin before its first layer is probed: it must be x·a + b per
  channel (a z-scoring, say), checked on random counts.
Neither the class's name nor its attribute names decide anything.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from cortexedge.errors import CortexEdgeError
from cortexedge.export.c.model_ir import Structure, is_quantized, layer_kind, rnn_layers

RECURRENT = ("gru", "lstm", "gru_cell", "lstm_cell")
PROBES = 3  # random count vectors the front end's affine fit is checked on


@dataclass
class Call:
    """One outermost layer call of the step: its name, module, kind, arguments and output."""

    name: str
    module: nn.Module
    kind: str
    args: tuple
    out: object


def _record(model: nn.Module, x: torch.Tensor, state: tuple) -> tuple[list[Call], object]:
    """The outermost submodule calls of `model.step(x, state)` and what the step returned."""
    calls: list[Call] = []
    depth = [0]
    names = {m: n for n, m in model.named_modules() if n}

    def pre(module, args):
        if depth[0] == 0:
            calls.append(Call(names[module], module, "", args, None))
        depth[0] += 1

    def post(module, args, out):
        depth[0] -= 1
        if depth[0] == 0:
            calls[-1].out = out

    hooks = [m.register_forward_pre_hook(pre) for m in names]
    hooks += [m.register_forward_hook(post) for m in names]
    try:
        with torch.no_grad():
            returned = model.step(x, state)
    except Exception as e:  # the user's code: any failure is a refusal naming it
        raise CortexEdgeError(
            f"C export: {type(model).__name__}.step failed on a bin of {x.shape[1]} channels: {e}"
        ) from None
    finally:
        for h in hooks:
            h.remove()
    for c in calls:
        c.kind = layer_kind(c.module, c.name)
    return [c for c in calls if c.kind != "dropout"], returned


def _rows(t) -> torch.Tensor:
    """A layer's main tensor as rows [1, width] (batch 1, one step)."""
    if isinstance(t, tuple):
        t = t[0]
    return t.reshape(1, -1)


def _same(a, b) -> bool:
    return (
        isinstance(a, torch.Tensor)
        and isinstance(b, torch.Tensor)
        and (a.shape == b.shape or a.numel() == b.numel())
        and torch.equal(a.reshape(-1), b.reshape(-1))
    )


def _channels(model: nn.Module) -> int:
    """The bin width: the input width of the first layer the model registers that has one."""
    for name, m in model.named_modules():
        if name and layer_kind(m, name) in ("linear", *RECURRENT):
            return int(getattr(m, "in_features", None) or m.input_size)
    raise CortexEdgeError(f"C export: {type(model).__name__} has no Linear or recurrent layer")


def _counts(rng: np.random.Generator, channels: int) -> torch.Tensor:
    return torch.from_numpy(rng.poisson(2.0, (1, channels)).astype(np.float32))


def _first_input(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """What the first layer the step calls reads, for bin `x`, as rows."""
    calls, _ = _record(model, x, model.init_state(1))
    return _rows(calls[0].args[0]).double()


def _front(model: nn.Module, x: torch.Tensor, first: torch.Tensor):
    """(a, b) with first-layer input = x·a + b per channel, or None when it reads x itself."""
    if _same(first, x):
        return None
    c = x.shape[1]
    if first.numel() != c:
        raise CortexEdgeError(
            f"C export: {type(model).__name__}.step turns the bin of {c} values into "
            f"{first.numel()} before its first layer (the integer path reads a per-channel "
            "affine at most)"
        )
    b = _first_input(model, torch.zeros(1, c))
    a = _first_input(model, torch.ones(1, c)) - b
    rng = np.random.default_rng(0)
    for _ in range(PROBES):
        probe = _counts(rng, c)
        got, fit = _first_input(model, probe), probe.double() * a + b
        if not torch.allclose(got, fit, rtol=1e-4, atol=1e-5 * (1 + float(fit.abs().max()))):
            raise CortexEdgeError(
                f"C export: {type(model).__name__}.step transforms the bin before its first "
                "layer by more than x·a + b per channel, which the integer path cannot read"
            )
    return a.numpy().reshape(-1), b.numpy().reshape(-1)


def _check_edges(model: nn.Module, calls: list[Call], returned) -> None:
    """Each layer reads the previous one's output, and the step returns the readout's."""
    cls = type(model).__name__
    for prev, nxt in zip(calls, calls[1:], strict=False):
        if not _same(_rows(nxt.args[0]), _rows(prev.out)):
            raise CortexEdgeError(
                f"C export: {cls}.step computes something between '{prev.name}' and "
                f"'{nxt.name}' (the integer path reads layers that feed each other directly)"
            )
    y = returned[0] if isinstance(returned, tuple) else returned
    if not _same(y, calls[-1].out):
        raise CortexEdgeError(f"C export: {cls}.step returns more than its readout's output")


def _state_args(call: Call) -> list[torch.Tensor]:
    """The state tensors a recurrent call reads (h, or h and c), in that order."""
    arg = call.args[1] if len(call.args) > 1 else None
    parts = list(arg) if isinstance(arg, tuple | list) else [arg]
    want = 2 if "lstm" in call.kind else 1
    if len(parts) != want or any(not isinstance(p, torch.Tensor) for p in parts):
        raise CortexEdgeError(
            f"C export: layer '{call.name}' must read its state from the step's state tuple"
        )
    return parts


def _new_states(call: Call) -> list[torch.Tensor]:
    """The new state tensors a recurrent call returns (h, or h and c)."""
    out = call.out
    if call.kind in ("gru", "lstm"):
        out = out[1]
    return list(out) if isinstance(out, tuple) else [out]


def _state_parts(model: nn.Module, calls: list[Call], state: tuple, returned) -> list:
    """Per tensor of the step's state tuple, (part "h" or "c", C layer indices)."""
    cls, parts = type(model).__name__, [None] * len(state)
    new = returned[1] if isinstance(returned, tuple) and len(returned) == 2 else ()
    if not isinstance(new, tuple | list) or len(new) != len(state):
        raise CortexEdgeError(f"C export: {cls}.step must return (output, state tuple)")
    base = 0
    for call in (c for c in calls if c.kind in RECURRENT):
        width = len(rnn_layers(call.module, call.name)) if call.kind in ("gru", "lstm") else 1
        layers = list(range(base, base + width))
        for part, arg, out in zip("hc", _state_args(call), _new_states(call), strict=False):
            slot = next((i for i, s in enumerate(state) if s is arg), None)
            if slot is None or parts[slot] is not None or not _same(new[slot], out):
                raise CortexEdgeError(
                    f"C export: {cls}.step must pass layer '{call.name}' one tensor of its "
                    "state tuple and return that layer's new state in its place"
                )
            parts[slot] = (part, layers)
        base += width
    if None in parts:
        raise CortexEdgeError(f"C export: {cls}.step carries a state no recurrent layer reads")
    return parts


def _split(model: nn.Module, calls: list[Call]) -> tuple[Call | None, list[Call]]:
    """(the Linear encoder or None, the recurrent calls) of the call sequence, checked."""
    kinds = [c.kind for c in calls]
    enc = calls[0] if len(calls) > 2 and kinds[0] == "linear" else None
    rec = calls[1 if enc else 0 : -1]
    if not rec or kinds[-1] != "linear" or any(c.kind not in RECURRENT for c in rec):
        raise CortexEdgeError(
            f"C export: {type(model).__name__}.step calls {', '.join(kinds) or 'no layer'}; the "
            "integer path reads [Linear ->] GRU or LSTM layers -> Linear readout"
        )
    if len({c.kind.split("_")[0] for c in rec}) != 1:
        raise CortexEdgeError("C export: the integer path needs its recurrent layers of one kind")
    return enc, rec


def read_declared(model: nn.Module) -> Structure:
    """The checked parts of a decoder class read from its `step` (see the module docstring)."""
    from cortexedge.families import streaming_of

    cls = type(model).__name__
    streaming, _ = streaming_of(model)
    if streaming.mode != "stateful":
        raise CortexEdgeError(
            f"C export: the integer path streams a class of its own statefully; {cls} declares "
            f"streaming_mode '{streaming.mode}'"
        )
    channels = _channels(model)
    x, state = _counts(np.random.default_rng(1), channels), tuple(model.init_state(1))
    calls, returned = _record(model, x, state)
    enc, rec = _split(model, calls)
    _check_edges(model, calls, returned)
    front = _front(model, x, _rows(calls[0].args[0]).double())
    if front is not None and enc is not None:
        raise CortexEdgeError(
            f"C export: {cls}.step transforms the bin before a Linear encoder, which the integer "
            "path cannot fold"
        )
    parts = _state_parts(model, calls, state, returned)
    stacks = (
        rnn_layers(c.module, c.name) if c.kind in ("gru", "lstm") else [c.module] for c in rec
    )
    cells = [cell for stack in stacks for cell in stack]
    return Structure(
        family=cls, channels=channels, width=1, mode="stateful", num_steps=1, lag=1,
        transform="none", encoder=None if enc is None else enc.module, norm=None, clamp=None,
        cells=cells, norms=[None] * len(cells), readout=calls[-1].module,
        quantized=is_quantized(model), front=front, state_parts=parts,
    )  # fmt: skip

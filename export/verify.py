"""Built-in verification: the exported graph in onnxruntime against the torch model it came from.

The step graph streams real inputs (a recording's test split, or seeded stand-ins) in
onnxruntime, `streams` streams side by side, feeding its own states back: after `warmup` bins
every state is non-zero. Over the next `bins` bins, torch's `step` is evaluated on exactly the
inputs and states the graph saw at each bin (one batched call, so brevitas models verify in
seconds), and every output `y` and every new state is compared with its scale s = max|torch|:
- float graphs: max|Δ| ≤ 1e-5·s (relative 1e-5);
- quantized graphs: max|Δ| ≤ 4 quantization steps, one step being s / 2^(A-1) for A-bit
  activations. onnxruntime and torch may round a value that sits on a rounding boundary to
  different neighbours (field notes); a bin off by more is accepted only when torch with the
  state nudged by 1e-6 of its magnitude reproduces the graph's result (`rounding.py`), and the
  error is then measured against that evaluation. `boundary_bins` counts such bins.
Comparing bin by bin from the same state checks the graph's function without letting a flip,
or float drift, compound through the recurrence; long free-running agreement is covered by the
tests. A sequence graph is checked against the verified step graph streamed in
onnxruntime from the initial state, window by window.

Before any of that, `verify_model` checks the model against itself: stepping it bin by bin
from `init_state` must give what its sequence form gives on the same bins (`stream(x)` where
the class has one, else `forward(x)`, x [1, T, ...] -> [1, T, D]), compared on the bins after
the warm-up, where the state is no longer the initial one. A class whose `step` and `forward`
disagree would otherwise export a graph that matches its `step` and nothing it was trained as.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass

import numpy as np
import onnxruntime as ort
import torch
from torch import nn

from cortexedge.contract import StateSpec
from cortexedge.errors import CortexEdgeError
from cortexedge.export.rounding import resolve
from cortexedge.export.streamable import initial_state
from cortexedge.train.causal import sequence_form

FLOAT_RTOL = 1e-5
QUANT_STEPS = 4.0
MIN_BINS = 1000
WARMUP = 200
TORCH_CHUNK = 250  # bins per batched torch call (and per chunk of states held)


@dataclass(frozen=True)
class Tolerance:
    """How far the graph may be from torch: `rtol`·scale (float) or `steps` A-bit steps."""

    act_bits: int | None = None
    float_rtol: float = FLOAT_RTOL

    @property
    def rtol(self) -> float:
        """Allowed error as a fraction of the reference's max magnitude."""
        return self.float_rtol if self.act_bits is None else QUANT_STEPS / 2 ** (self.act_bits - 1)

    def rule(self) -> str:
        """The rule in words, written into the metadata."""
        if self.act_bits is None:
            return f"max|onnx-torch| <= {self.float_rtol:g} * max|torch| per output and state"
        return (
            f"max|onnx-torch| <= {QUANT_STEPS:g} steps of max|torch|/2^{self.act_bits - 1} "
            "per output and state"
        )

    def steps(self, err: float, scale: float) -> float | None:
        """An error expressed in quantization steps (None for float graphs)."""
        return None if self.act_bits is None else err / (scale / 2 ** (self.act_bits - 1))


@dataclass
class Verification:
    """What the comparison measured; `passed` is False when any tensor exceeds its bound."""

    bins: int
    streams: int
    warmup: int
    split: str
    reference: str  # what the graph was compared with
    max_abs_err: float  # on y
    tolerance: float  # absolute bound on y
    max_rel_err: float  # worst over y and the states, relative to each one's scale
    max_err_steps: float | None  # quantized graphs: the worst error in quantization steps
    worst: str  # which tensor had the worst relative error
    rule: str
    passed: bool
    boundary_bins: int = 0  # quantized graphs: bins explained as rounding-boundary flips

    def summary(self) -> dict:
        """JSON-ready dict for reports."""
        return asdict(self)


def session(model_bytes: bytes) -> ort.InferenceSession:
    """A single-threaded onnxruntime session configured exactly as the runtime's ORT backend
    (which keeps QuantizeLinear/DequantizeLinear unfused), so the verification measures what
    the runtime will run."""
    from cortexedge.runtime.backends.ort import session_options

    opts = session_options(1)
    opts.log_severity_level = 4  # failures surface as exceptions; no stderr noise from probes
    return ort.InferenceSession(model_bytes, opts, providers=["CPUExecutionProvider"])


def stream_onnx(
    sess: ort.InferenceSession, specs: tuple[StateSpec, ...], xs: np.ndarray, state: tuple
) -> tuple[np.ndarray, list[tuple[np.ndarray, ...]]]:
    """Run a step graph over xs [T, B, ...] from `state`.

    Returns y [T, B, D] and the T+1 states: before each bin, and after the last one.
    """
    names = ["y", *(s.output_name for s in specs)]
    state = tuple(np.ascontiguousarray(s, dtype=np.float32) for s in state)
    ys, states = [], [state]
    for x in xs:
        feed = {"x": np.ascontiguousarray(x, dtype=np.float32)}
        feed.update({s.input_name: v for s, v in zip(specs, state, strict=True)})
        y, *new = sess.run(names, feed)
        state = tuple(new)
        ys.append(y)
        states.append(state)
    return np.stack(ys), states


@contextmanager
def one_thread() -> Iterator[None]:
    """Run torch single-threaded: per-step work is tiny and thread hand-offs dominate (10x)."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def step_torch(
    model: nn.Module, specs: tuple[StateSpec, ...], xs: np.ndarray, states: list[tuple]
) -> tuple[np.ndarray, list[tuple[np.ndarray, ...]]]:
    """torch `step` on every (xs[t], states[t]) pair in one call batched over t.

    xs [T, B, ...]; returns y [T, B, D] and the T new states.
    """
    n = len(xs)
    with torch.no_grad(), one_thread():
        x = torch.as_tensor(np.concatenate(list(xs), axis=0))
        st = tuple(
            torch.as_tensor(np.concatenate([states[t][i] for t in range(n)], axis=s.batch_axis))
            for i, s in enumerate(specs)
        )
        y, new = model.step(x, st)
    parts = [np.split(v.numpy(), n, axis=s.batch_axis) for s, v in zip(specs, new, strict=True)]
    return np.stack(np.split(y.numpy(), n, axis=0)), [tuple(p[t] for p in parts) for t in range(n)]


def _named(specs: tuple[StateSpec, ...], y: np.ndarray, new: list[tuple]) -> dict:
    """y [T, ...] and T states -> {"y": y, "state_<name>_out": [T, ...]}."""
    out = {"y": y}
    for i, s in enumerate(specs):
        out[s.output_name] = np.stack([n[i] for n in new])
    return out


def stream_batch(inputs: np.ndarray, bins: int, warmup: int, streams: int) -> np.ndarray:
    """[warmup + bins, streams, ...] from rows of `inputs` (tiled when too short); stream k
    starts k/streams of the way into the data, so the streams differ."""
    total = warmup + bins
    n = len(inputs)
    starts = [(k * n) // streams for k in range(streams)]
    idx = (np.arange(total)[:, None] + np.array(starts)[None, :]) % n
    return np.asarray(inputs, dtype=np.float32)[idx]


def compare(pairs: dict[str, tuple[np.ndarray, np.ndarray]]) -> dict[str, tuple[float, float]]:
    """Per tensor name -> (max abs error, scale = max|reference|) for (reference, graph) pairs."""
    out = {}
    for name, (ref, got) in pairs.items():
        if ref.shape != got.shape:
            raise CortexEdgeError(
                f"verification: '{name}' has shape {list(got.shape)} in the ONNX graph but "
                f"{list(ref.shape)} in torch"
            )
        err = float(np.abs(ref.astype(np.float64) - got.astype(np.float64)).max())
        out[name] = (err, float(np.abs(ref).max()))
    return out


def relative(err: float, scale: float) -> float:
    """An error as a fraction of its tensor's scale."""
    return err / max(scale, 1e-12)


def _merge(total: dict, part: dict) -> dict:
    """Running (max error, max scale) per tensor over chunks."""
    return {
        k: (max(total.get(k, v)[0], v[0]), max(total.get(k, v)[1], v[1])) for k, v in part.items()
    }


def _result(errs: dict, tol: Tolerance, **facts) -> Verification:
    worst = max(errs, key=lambda k: relative(*errs[k]))
    y_err, y_scale = errs["y"]
    rel = relative(*errs[worst])
    return Verification(
        **facts,
        max_abs_err=y_err,
        tolerance=tol.rtol * max(y_scale, 1e-12),
        max_rel_err=rel,
        max_err_steps=tol.steps(*errs[worst]),
        worst=worst,
        rule=tol.rule(),
        passed=rel <= tol.rtol,
    )


def verify_step(
    model: nn.Module,
    sess: ort.InferenceSession,
    specs: tuple[StateSpec, ...],
    inputs: np.ndarray,
    tol: Tolerance,
    *,
    split: str,
    bins: int = MIN_BINS,
    warmup: int = WARMUP,
    streams: int = 2,
) -> Verification:
    """Compare the step graph with torch `step` bin by bin over `bins` streamed bins (see the
    module docstring). `inputs` [N, ...] are rows of data in time order; `streams` is the batch
    (1 for a graph with a fixed batch of 1)."""
    xs = stream_batch(inputs, bins, warmup, streams)
    state = stream_onnx(sess, specs, xs[:warmup], initial_state(specs, streams))[1][-1]
    if not all(s.any() for s in state):
        zero = [sp.name for sp, s in zip(specs, state, strict=True) if not s.any()]
        raise CortexEdgeError(
            f"verification: state {', '.join(zero)} is still all zero after {warmup} bins; "
            "pass inputs that drive the model"
        )

    def evaluate(xs: np.ndarray, states: list[tuple]) -> dict[str, np.ndarray]:
        return _named(specs, *step_torch(model, specs, xs, states))

    errs: dict = {}
    boundary = 0
    for a in range(warmup, warmup + bins, TORCH_CHUNK):  # chunks bound the states held
        chunk = xs[a : a + TORCH_CHUNK]
        y_got, states = stream_onnx(sess, specs, chunk, state)
        refs = evaluate(chunk, states[:-1])
        gots = _named(specs, y_got, states[1:])
        if tol.act_bits is not None:
            scales = {
                k: max(errs.get(k, (0.0, 0.0))[1], float(np.abs(v).max())) for k, v in refs.items()
            }
            bounds = {k: tol.rtol * max(v, 1e-12) for k, v in scales.items()}
            boundary += resolve(evaluate, chunk, states[:-1], refs, gots, bounds, seed=a)
        errs = _merge(errs, compare({k: (refs[k], gots[k]) for k in refs}))
        state = states[-1]
    return _result(
        errs, tol, bins=bins, streams=streams, warmup=warmup, split=split,
        boundary_bins=boundary,
        reference="torch step, bin by bin from the graph's states",
    )  # fmt: skip


SELF_CHECK_BINS = 256  # bins after the warm-up compared between step and the sequence form
SELF_CHECK_WARMUP = 32
# step runs free from init_state while the sequence form is vectorised: float32 rounding of
# the two orders of operations compounds through the recurrence (1e-5 of scale seen on AEGRU)
SELF_CHECK_RTOL = 1e-4


def verify_model(model: nn.Module, specs: tuple[StateSpec, ...], inputs: np.ndarray,
                 tol: Tolerance, split: str) -> Verification | None:  # fmt: skip
    """`step` from `init_state` against the model's own sequence form (module docstring);
    None when the class has no sequence form."""
    sequence = sequence_form(model)
    if sequence is None:
        return None
    total = SELF_CHECK_WARMUP + SELF_CHECK_BINS
    xs = stream_batch(inputs, total, 0, 1)  # [T, 1, ...]
    with torch.no_grad(), one_thread():
        whole = sequence(torch.as_tensor(xs[:, 0])[None])
        state, steps = model.init_state(1), []
        for x in xs:
            y, state = model.step(torch.as_tensor(x), state)
            steps.append(y)
    whole = whole.numpy() if isinstance(whole, torch.Tensor) else np.asarray(whole)
    stepped = torch.cat(steps).numpy()
    if whole.shape != (1, *stepped.shape):
        raise CortexEdgeError(
            f"verification: {type(model).__name__}'s sequence form returns shape "
            f"{list(whole.shape)} for x [1, {total}, ...]; it must return [1, T, D] "
            f"= {[1, *stepped.shape]} (define stream(x) if forward is not that)"
        )
    keep = slice(SELF_CHECK_WARMUP, None)
    errs = compare({"y": (whole[0][keep], stepped[keep])})
    own = Tolerance(tol.act_bits, SELF_CHECK_RTOL)
    return _result(errs, own, bins=SELF_CHECK_BINS, streams=1, warmup=SELF_CHECK_WARMUP,
                   split=split, boundary_bins=0,
                   reference=f"its own {getattr(sequence, '__name__', 'forward')} over "
                   f"{SELF_CHECK_BINS} bins after a {SELF_CHECK_WARMUP}-bin warm-up")  # fmt: skip


def verify_sequence(
    seq: ort.InferenceSession,
    step: ort.InferenceSession,
    specs: tuple[StateSpec, ...],
    inputs: np.ndarray,
    length: int,
    tol: Tolerance,
    *,
    split: str,
    bins: int = MIN_BINS,
    streams: int = 2,
) -> Verification:
    """Compare a sequence graph with the (verified) step graph streamed from the initial state,
    on windows of `length` bins (`streams` per call) covering at least `bins` bins."""
    calls = -(-bins // (length * streams))
    xs = stream_batch(inputs, calls * length, 0, streams)  # [calls·T, B, ...]
    ref, got = [], []
    for c in range(calls):
        window = xs[c * length : (c + 1) * length]  # [T, B, ...]
        y, _ = stream_onnx(step, specs, window, initial_state(specs, streams))
        ref.append(np.swapaxes(y, 0, 1))
        got.append(seq.run(["y"], {"x": np.ascontiguousarray(np.swapaxes(window, 0, 1))})[0])
    return _result(
        compare({"y": (np.stack(ref), np.stack(got))}), tol,
        bins=calls * length, streams=streams, warmup=0, split=split,
        reference="the verified step graph, streamed from the initial state",
    )  # fmt: skip

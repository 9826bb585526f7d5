"""The exported-decoder metadata contract: what an ONNX step graph must carry, defined once.

The export stage writes it (`attach`), the runtime reads and checks it (`from_props`,
`check_against_graph`). It lives in ONNX `metadata_props` under keys prefixed `cortexedge.`;
strings are stored as-is, every other value as JSON. Torch-free and numpy-free on purpose: it
works on plain dicts and on an already-loaded onnx `ModelProto` (onnx is never imported here).

Step-graph naming convention: inputs `x` (one bin, [B, C] or [B, H, W]) and `state_<name>`;
outputs `y` ([B, D]) and `state_<name>_out`. The batch dimension B is symbolic (dynamic) or a
fixed size; each state says on which axis its batch dimension sits (`nn.GRU` state is
[layers, B, H], so `batch_axis` = 1).
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field, fields, replace
from typing import Any

from cortexedge import __version__
from cortexedge.errors import ContractError

FORMAT_VERSION = 1
PREFIX = "cortexedge."
INPUT_KINDS = ("spike_counts", "calcium", "frames")
STREAMING_MODES = ("stateful", "window")
SCORE_METRICS = ("r2", "accuracy")
DTYPES = ("float32", "float64", "float16", "int8", "uint8", "int16", "int32", "int64", "bool")
# onnx TensorProto element types -> dtype names (the enum is stable across onnx versions)
ONNX_DTYPES = {1: "float32", 2: "uint8", 3: "int8", 5: "int16", 6: "int32", 7: "int64",
               9: "bool", 10: "float16", 11: "float64"}  # fmt: skip


@dataclass(frozen=True)
class InputSpec:
    """One bin of input: per-bin `shape` ([C] or [H, W]), kind, dtype and expected value range.

    `range` is (lo, hi); None means unbounded on that side (JSON null).
    """

    shape: tuple[int, ...]
    kind: str
    dtype: str = "float32"
    range: tuple[float | None, float | None] = (None, None)

    @property
    def channels(self) -> int:
        """Number of input values per bin (C, or H·W for frames)."""
        return math.prod(self.shape)


@dataclass(frozen=True)
class OutputSpec:
    """One output column of `y`: its name and physical unit."""

    name: str
    unit: str = ""


@dataclass(frozen=True)
class StateSpec:
    """A recurrent state tensor; `shape` is for ONE stream, so `shape[batch_axis]` is 1.

    `init` is a scalar fill value or "zeros".
    """

    name: str
    shape: tuple[int, ...]
    dtype: str = "float32"
    init: float | str = "zeros"
    batch_axis: int = 0

    @property
    def input_name(self) -> str:
        return f"state_{self.name}"

    @property
    def output_name(self) -> str:
        return f"state_{self.name}_out"

    @property
    def fill(self) -> float:
        """The initial value every element starts at."""
        return 0.0 if self.init == "zeros" else float(self.init)


@dataclass(frozen=True)
class Streaming:
    """`stateful`: the state carries the history; `window`: the graph sees the last `window`
    bins."""

    mode: str = "stateful"
    window: int | None = None


@dataclass
class DecoderMetadata:
    """Everything the runtime needs to stream a decoder, and the numbers measured at export.

    - `macs`: {"dense", "effective"} per bin (NeuroBench definitions, cortexedge.macs).
    - `bits`: {"weights", "activations"} for quantized models, None for float.
    - `score`: {"metric": "r2"|"accuracy", "value", "split", "rows", "context_rows"} measured
      at export time by the one definition of `cortexedge.scoring`.
    - `verification`: {"max_abs_err", "tolerance", "bins"}: exported graph vs the torch model.
    - `extra`: further `cortexedge.<key>` entries (any JSON value), carried through unchanged.
      The export writes the graph's own MAC count there (`graph_macs_dense`,
      `graph_macs_effective`) and, when that count leaves nodes out, `graph_macs_uncounted`:
      [{"node", "op_type"}] of the ops the runtime's numpy engine does not implement.
    """

    toolkit_version: str
    model_family: str
    bin_ms: float
    input: InputSpec
    outputs: list[OutputSpec]
    states: list[StateSpec]
    streaming: Streaming
    macs: dict
    params: int
    bytes: int
    sparsity: float
    bits: dict | None
    score: dict | None
    verification: dict
    graph_sha256: str = ""
    format_version: int = FORMAT_VERSION
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        """Plain JSON-ready dict (the decoded form of the props)."""
        out = {k: json.loads(v) if k not in _RAW else v for k, v in _encode(self).items()}
        return {**out, "extra": dict(self.extra)}


# ---------------------------------------------------------------------------- validators
def _fail(key: str, what: str, got: Any) -> ContractError:
    return ContractError(f"metadata {PREFIX}{key}: expected {what}, got {got!r}")


def _int(key: str, v: Any, lo: int = 0) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or v < lo:
        raise _fail(key, f"an integer >= {lo}", v)
    return v


def _num(key: str, v: Any, lo: float | None = None, positive: bool = False) -> float:
    ok = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
    if not ok or (lo is not None and v < lo) or (positive and v <= 0):
        raise _fail(key, "a positive number" if positive else f"a finite number >= {lo}", v)
    return float(v)


def _str(key: str, v: Any, choices: tuple[str, ...] | None = None) -> str:
    if not isinstance(v, str) or not v or (choices and v not in choices):
        raise _fail(key, f"one of {choices}" if choices else "a non-empty string", v)
    return v


def _dict(key: str, v: Any, keys: tuple[str, ...]) -> dict:
    if not isinstance(v, dict) or any(k not in v for k in keys):
        raise _fail(key, f"an object with keys {keys}", v)
    return v


def _shape(key: str, v: Any) -> tuple[int, ...]:
    if (
        not isinstance(v, list)
        or not v
        or not all(isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in v)
    ):
        raise _fail(key, "a non-empty list of positive integers", v)
    return tuple(v)


def _input(key: str, v: Any) -> InputSpec:
    v = _dict(key, v, ("shape", "kind", "dtype", "range"))
    rng = v["range"]
    if not (isinstance(rng, list) and len(rng) == 2):
        raise _fail(f"{key}.range", "[lo, hi] (null for unbounded)", rng)
    lo, hi = (None if b is None else _num(f"{key}.range", b) for b in rng)
    if lo is not None and hi is not None and lo > hi:
        raise _fail(f"{key}.range", "lo <= hi", rng)
    return InputSpec(
        shape=_shape(f"{key}.shape", v["shape"]),
        kind=_str(f"{key}.kind", v["kind"], INPUT_KINDS),
        dtype=_str(f"{key}.dtype", v["dtype"], DTYPES),
        range=(lo, hi),
    )


def _outputs(key: str, v: Any) -> list[OutputSpec]:
    if not isinstance(v, list) or not v:
        raise _fail(key, "a non-empty list of {name, unit}", v)
    out = [OutputSpec(_str(key, _dict(key, o, ("name",))["name"]), o.get("unit", "")) for o in v]
    if not all(isinstance(o.unit, str) for o in out):
        raise _fail(key, "string units", v)
    return out


def _state(key: str, v: Any) -> StateSpec:
    v = _dict(key, v, ("name", "shape", "dtype", "init"))
    name = _str(f"{key}.name", v["name"])
    if not re.fullmatch(r"[A-Za-z0-9_]+", name):
        raise _fail(f"{key}.name", "letters, digits and _", name)
    shape = _shape(f"{key}.shape", v["shape"])
    axis = _int(f"{key}.batch_axis", v.get("batch_axis", 0))
    if axis >= len(shape) or shape[axis] != 1:
        raise _fail(f"{key}.shape", f"size 1 on batch_axis {axis} (one stream)", list(shape))
    init = v["init"]
    if init != "zeros":
        _num(f"{key}.init", init)
    return StateSpec(name, shape, _str(f"{key}.dtype", v["dtype"], DTYPES), init, axis)


def _states(key: str, v: Any) -> list[StateSpec]:
    if not isinstance(v, list):
        raise _fail(key, "a list of states", v)
    states = [_state(f"{key}[{i}]", s) for i, s in enumerate(v)]
    names = [s.name for s in states]
    if len(set(names)) != len(names):
        raise _fail(key, "unique state names", names)
    return states


def _streaming(key: str, v: Any) -> Streaming:
    v = _dict(key, v, ("mode",))
    mode = _str(f"{key}.mode", v["mode"], STREAMING_MODES)
    window = v.get("window")
    if mode == "window" or window is not None:
        window = _int(f"{key}.window", window, lo=1)
    return Streaming(mode, window)


def _macs(key: str, v: Any) -> dict:
    v = _dict(key, v, ("dense", "effective"))
    dense, eff = _int(f"{key}.dense", v["dense"]), _int(f"{key}.effective", v["effective"])
    if eff > dense:
        raise _fail(key, "effective <= dense", v)
    return {"dense": dense, "effective": eff}


def _bits(key: str, v: Any) -> dict | None:
    if v is None:
        return None
    v = _dict(key, v, ("weights", "activations"))
    act = v["activations"]
    return {
        "weights": _int(f"{key}.weights", v["weights"], lo=1),
        "activations": None if act is None else _int(f"{key}.activations", act, lo=1),
    }


def _score(key: str, v: Any) -> dict | None:
    if v is None:
        return None
    v = _dict(key, v, ("metric", "value", "split"))
    out = {
        "metric": _str(f"{key}.metric", v["metric"], SCORE_METRICS),
        "value": _num(f"{key}.value", v["value"]),
        "split": _str(f"{key}.split", v["split"]),
    }
    for rows in ("rows", "context_rows"):  # what was scored (cortexedge.scoring)
        if rows in v:
            out[rows] = _int(f"{key}.{rows}", v[rows], lo=0)
    return out


def _verification(key: str, v: Any) -> dict:
    v = _dict(key, v, ("max_abs_err", "tolerance", "bins"))
    out = {
        "max_abs_err": _num(f"{key}.max_abs_err", v["max_abs_err"], lo=0.0),
        "tolerance": _num(f"{key}.tolerance", v["tolerance"], positive=True),
        "bins": _int(f"{key}.bins", v["bins"], lo=1),
    }
    if out["max_abs_err"] > out["tolerance"]:
        raise ContractError(
            f"metadata {PREFIX}{key}: the export did not verify (max_abs_err "
            f"{out['max_abs_err']:.3g} > tolerance {out['tolerance']:.3g})"
        )
    return out


def _fraction(key: str, v: Any) -> float:
    x = _num(key, v, lo=0.0)
    if x > 1:
        raise _fail(key, "a fraction in [0, 1]", v)
    return x


def _sha(key: str, v: Any) -> str:
    if not (isinstance(v, str) and re.fullmatch(r"[0-9a-f]{64}", v)):
        raise _fail(key, "64 lowercase hex characters (use contract.attach)", v)
    return v


# field name -> parser of the decoded value; `_RAW` fields are stored as plain strings
_PARSERS: dict[str, Callable[[str, Any], Any]] = {
    "format_version": lambda k, v: _int(k, v, lo=1),
    "toolkit_version": _str,
    "model_family": _str,
    "bin_ms": lambda k, v: _num(k, v, positive=True),
    "input": _input,
    "outputs": _outputs,
    "states": _states,
    "streaming": _streaming,
    "macs": _macs,
    "params": _int,
    "bytes": _int,
    "sparsity": _fraction,
    "bits": _bits,
    "score": _score,
    "verification": _verification,
    "graph_sha256": _sha,
}
_RAW = ("toolkit_version", "model_family", "graph_sha256")
_SEAL_NAME = "contract_sha256"  # the seal over graph and contract (see `write_props`)


def _jsonable(v: Any) -> Any:
    if isinstance(v, (InputSpec, OutputSpec, StateSpec, Streaming)):
        return {f.name: _jsonable(getattr(v, f.name)) for f in fields(v)}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    return v


def _encode(meta: DecoderMetadata) -> dict[str, str]:
    out = {}
    for name in _PARSERS:
        v = getattr(meta, name)
        out[name] = v if name in _RAW else json.dumps(_jsonable(v), separators=(",", ":"))
    return out


# ---------------------------------------------------------------------------- public API
def from_props(props: dict[str, str]) -> DecoderMetadata:
    """Decode and validate `metadata_props` (key -> string); ContractError names the bad key."""
    if not any(k.startswith(PREFIX) for k in props):
        raise ContractError("no cortexedge metadata in this file (not exported by cortexedge?)")
    values: dict[str, Any] = {}
    for name, parse in _PARSERS.items():
        key = PREFIX + name
        if key not in props:
            raise ContractError(f"metadata key '{key}' is missing")
        raw = props[key]
        if name not in _RAW:
            try:
                raw = json.loads(raw)
            except json.JSONDecodeError:
                raise _fail(name, "a JSON value", raw) from None
        values[name] = parse(name, raw)
        if name == "format_version" and values[name] > FORMAT_VERSION:
            raise ContractError(
                f"decoder format version {values[name]} is newer than this cortexedge "
                f"supports ({FORMAT_VERSION}); upgrade cortexedge"
            )
    extra = {k[len(PREFIX) :]: v for k, v in props.items() if k.startswith(PREFIX)}
    extra = {k: _json_or_text(v) for k, v in extra.items() if k not in (*_PARSERS, _SEAL_NAME)}
    return DecoderMetadata(**values, extra=extra)


def _json_or_text(value: str) -> Any:
    """An `extra` value: JSON when it parses (what to_props writes), else the text itself."""
    try:
        return json.loads(value)
    except json.JSONDecodeError:
        return value


def to_props(meta: DecoderMetadata) -> dict[str, str]:
    """Encode `meta` as `cortexedge.*` props, validating it exactly as `from_props` will."""
    props = {PREFIX + k: v for k, v in _encode(meta).items()}
    for key, value in meta.extra.items():
        if key in _PARSERS:
            raise ContractError(f"metadata extra key '{key}' would overwrite a contract field")
        props[PREFIX + key] = json.dumps(value, separators=(",", ":"))
    from_props(props)
    return props


def graph_sha256(model: Any) -> str:
    """sha256 of the serialized graph (weights included, metadata_props excluded)."""
    return hashlib.sha256(model.graph.SerializeToString(deterministic=True)).hexdigest()


SEAL = PREFIX + _SEAL_NAME


def _seal_of(model: Any) -> str:
    """sha256 over the graph and every `cortexedge.*` prop but the seal itself."""
    props = sorted((p.key, p.value) for p in model.metadata_props
                   if p.key.startswith(PREFIX) and p.key != SEAL)  # fmt: skip
    h = hashlib.sha256(model.graph.SerializeToString(deterministic=True))
    h.update(b"\0" + json.dumps(props, separators=(",", ":")).encode())
    return h.hexdigest()


def write_props(model: Any, props: dict[str, str]) -> None:
    """Replace the model's `cortexedge.*` props by `props` (others kept) and seal them: the
    seal covers the graph and the whole contract, so no metadata edit goes unnoticed."""
    kept = [(p.key, p.value) for p in model.metadata_props if not p.key.startswith(PREFIX)]
    del model.metadata_props[:]
    for key, value in kept + sorted(props.items()):
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    entry = model.metadata_props.add()
    entry.key, entry.value = SEAL, _seal_of(model)


def check_seal(model: Any) -> dict[str, str]:
    """The model's props (key -> value) after checking that no key is repeated and that the
    seal matches the graph and the contract; ContractError otherwise."""
    keys = [p.key for p in model.metadata_props]
    repeated = sorted({k for k in keys if keys.count(k) > 1})
    if repeated:
        raise ContractError(f"metadata key(s) {repeated} appear more than once (file edited?)")
    props = {p.key: p.value for p in model.metadata_props}
    if not any(k.startswith(PREFIX) for k in props):
        raise ContractError("no cortexedge metadata in this file (not exported by cortexedge?)")
    if SEAL not in props:
        raise ContractError(f"metadata key '{SEAL}' is missing (exported by an older cortexedge? "
                            "export it again)")  # fmt: skip
    if props.pop(SEAL) != _seal_of(model):
        raise ContractError(
            "the contract seal does not match the graph and metadata: the file was modified "
            "after export"
        )
    return props


def attach(model: Any, meta: DecoderMetadata) -> DecoderMetadata:
    """Stamp `meta` (with this graph's sha256 and toolkit version) into `model.metadata_props`.

    Replaces any earlier `cortexedge.*` props, keeps the others; checks the result against the
    graph. Returns the metadata as written.
    """
    meta = replace(meta, graph_sha256=graph_sha256(model), format_version=FORMAT_VERSION)
    if not meta.toolkit_version:
        meta = replace(meta, toolkit_version=__version__)
    props = to_props(meta)
    check_against_graph(meta, model)
    write_props(model, props)
    return meta


def _value_info(values: Any, initializers: set[str]) -> dict[str, tuple[str, list]]:
    """name -> (dtype name, dims) with a dim as int, or str for a symbolic/unknown dim."""
    out = {}
    for v in values:
        if v.name in initializers:
            continue
        t = v.type.tensor_type
        dims = [d.dim_value if d.HasField("dim_value") else (d.dim_param or "?")
                for d in t.shape.dim]  # fmt: skip
        out[v.name] = (ONNX_DTYPES.get(t.elem_type, f"onnx type {t.elem_type}"), dims)
    return out


def _check_tensor(where: str, got: tuple[str, list], dtype: str, shape: tuple, axis: int) -> Any:
    """Compare one graph tensor with the expected per-stream shape; return its batch dim."""
    gdtype, dims = got
    if gdtype != dtype:
        raise ContractError(f"{where}: graph dtype {gdtype} but metadata says {dtype}")
    want = list(shape)
    if len(dims) != len(want) or any(
        i != axis and d != w for i, (d, w) in enumerate(zip(dims, want, strict=True))
    ):
        shown = want.copy()
        shown[axis] = "B"
        raise ContractError(f"{where}: graph shape {dims} but metadata says {shown}")
    return dims[axis]


def check_against_graph(meta: DecoderMetadata, model: Any) -> None:
    """Refuse (ContractError) a graph whose hash, names, shapes or dtypes disagree with `meta`."""
    if graph_sha256(model) != meta.graph_sha256:
        raise ContractError(
            "graph sha256 does not match the metadata: the file was modified after export"
        )
    inits = {t.name for t in model.graph.initializer}
    ins = _value_info(model.graph.input, inits)
    outs = _value_info(model.graph.output, inits)
    want_in = ["x"] + [s.input_name for s in meta.states]
    want_out = ["y"] + [s.output_name for s in meta.states]
    for kind, got, want in (("inputs", ins, want_in), ("outputs", outs, want_out)):
        if sorted(got) != sorted(want):
            raise ContractError(f"graph {kind} {sorted(got)} but metadata expects {sorted(want)}")
    batch = {_check_tensor("input x", ins["x"], meta.input.dtype, (1, *meta.input.shape), 0)}
    n_out = len(meta.outputs)
    ydtype = outs["y"][0]
    if not ydtype.startswith("float"):
        raise ContractError(f"output y: expected a float dtype, graph has {ydtype}")
    batch.add(_check_tensor("output y", outs["y"], ydtype, (1, n_out), 0))
    for s in meta.states:
        for name, got in ((s.input_name, ins[s.input_name]), (s.output_name, outs[s.output_name])):
            batch.add(_check_tensor(f"state {name}", got, s.dtype, s.shape, s.batch_axis))
    fixed = {b for b in batch if isinstance(b, int) and b > 0}
    if len(fixed) > 1 or (fixed and len(batch) > 1):
        raise ContractError(f"graph batch dimensions disagree: {sorted(map(str, batch))}")

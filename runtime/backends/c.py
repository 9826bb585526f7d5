"""The "c" backend: a generated C decoder (cortexedge export --target c), loaded with ctypes.

An exported C folder holds decoder.onnx (the graph the C code implements, with its metadata),
the C sources, `decoder_c.json` (the manifest: graph hash, numeric path, how the C state maps
onto the graph's state tensors) and `libdecoder.so`, the host build of the sources plus the
host shim decoder_host.c. `StreamingDecoder("<folder>/decoder.onnx", backend="c")` then runs
the C code with the same API as the other backends.

- The manifest must name the same graph sha256 as the ONNX file, else ContractError, and hold
  its seal and the hashes of the library and sources (`c_manifest.py`): an edited, truncated,
  swapped or out-of-folder library is refused before it is loaded.
- Integer builds take whole spike counts 0..max_count: any other value raises CortexEdgeError
  naming the stream and channel, and nothing is decoded.
- One stream, one call: when the library holds its Python entry point (decoder_host_py.c,
  built for this interpreter: manifest `host_python`), `step_bin` decodes a caller's float32
  bin in a single call, with no ctypes and no numpy calls around the C step; StreamingDecoder
  takes it first and falls back to its general path for any bin it does not take.
- States: the shim keeps a copy of the last raw samples (the graph's `buffer`), and stateful
  hidden states are read/written through the shim (dequantized/quantized on the integer
  path; a manifest entry's `layers` are the shim's indices, an LSTM's c after all the h).
  Writing a state resets the decoder and replays the buffer, which rebuilds the C state
  exactly (window chains included).
"""

from __future__ import annotations

import ctypes
import platform
import sys
from collections.abc import Callable
from pathlib import Path
from typing import ClassVar

import numpy as np

from cortexedge.errors import ContractError, CortexEdgeError
from cortexedge.runtime.backends.c_manifest import MANIFEST, load_manifest
from cortexedge.runtime.inputs import BinChecker
from cortexedge.runtime.model import LoadedModel

_P, _L, _F = ctypes.c_void_p, ctypes.c_long, ctypes.c_float


class _Call(ctypes.Structure):
    """decoder_host_call_t: the arguments of one decoder_host_run call, built once per backend."""

    _fields_ = [("states", _P), ("batch", _L), ("x", _P), ("n", _L), ("y", _P), ("raw", _P),
                ("history", _P), ("rows", _L), ("pos", _P), ("lo", _F), ("hi", _F)]  # fmt: skip


# the CPU features of the x86-64-v3 level (AVX2, FMA, ...) as /proc/cpuinfo names them
X86_64_V3 = frozenset({"avx", "avx2", "bmi1", "bmi2", "f16c", "fma", "abm", "movbe", "xsave"})


def host_isa() -> str | None:
    """ "x86-64-v3" when this machine has every feature of that level, else None: host builds
    target it when they can (their loops vectorize eight floats wide, with FMA), and a build
    for it must not be loaded on a CPU without (it would die of an illegal instruction)."""
    if platform.machine() not in ("x86_64", "AMD64"):
        return None
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return None
    line = next((ln for ln in text.splitlines() if ln.startswith("flags")), "")
    return "x86-64-v3" if X86_64_V3 <= set(line.partition(":")[2].split()) else None


def host_python() -> str:
    """The interpreter and numpy C ABI a library's Python entry point is built for, e.g.
    "cpython-311-numpy2": the backend uses that entry point only under the same one."""
    return f"{sys.implementation.cache_tag}-numpy{np.__version__.split('.')[0]}"


class CLibrary:
    """ctypes view of a compiled decoder (device code + host shim)."""

    def __init__(self, path: str | Path, numeric: str, outputs: int, channels: int) -> None:
        path = Path(path)
        if not path.is_file():
            raise ContractError(
                f"{path}: the C decoder is not built (export with --target c on a machine "
                "with a C compiler)"
            )
        try:
            self.lib = ctypes.CDLL(str(path.resolve()))
        except OSError as e:
            raise ContractError(f"{path}: cannot load the C decoder ({e})") from None
        self.numeric, self.outputs, self.channels = numeric, outputs, channels
        self.raw_dtype = np.dtype(np.int32 if numeric == "int" else np.float32)
        lib = self.lib
        lib.decoder_host_state_size.restype = ctypes.c_size_t
        lib.decoder_host_reset.argtypes = [_P, _L]
        lib.decoder_host_run.argtypes = [_P, _L, _P, _L, _P, _P, _P, _L, _P, _F, _F]
        lib.decoder_host_run.restype = _L
        lib.decoder_host_call.argtypes = [_P]
        lib.decoder_host_call.restype = _L
        self.state_size = int(lib.decoder_host_state_size())
        self.has_hidden = hasattr(lib, "decoder_host_get_hidden")
        if self.has_hidden:
            for fn in (lib.decoder_host_get_hidden, lib.decoder_host_set_hidden):
                fn.argtypes = [_P, ctypes.c_int, _P]
        self._path = path
        self.has_python = hasattr(lib, "decoder_host_python")  # built with decoder_host_py.c

    def step_function(self, call: _Call) -> Callable | None:
        """The library's Python fast path bound to `call` (one stream; keep `call` alive as
        long as the function), or None when the library was built without it."""
        if not self.has_python:
            return None
        make = ctypes.PyDLL(str(self._path.resolve())).decoder_host_python  # holds the GIL
        make.argtypes, make.restype = [_P], ctypes.py_object
        return make(ctypes.addressof(call))

    def states(self, batch: int) -> np.ndarray:
        """Zeroed memory for `batch` decoder_state_t structs, reset."""
        mem = np.zeros(batch * self.state_size, dtype=np.uint8)
        self.lib.decoder_host_reset(mem.ctypes.data, batch)
        return mem

    def run(self, states: np.ndarray, x: np.ndarray) -> np.ndarray:
        """Decode x [T, C] (one stream) from `states`; returns the raw outputs [T, D].

        Raw outputs are int32 accumulators on the integer path (y = raw · output scale)."""
        x = np.ascontiguousarray(x, dtype=np.float32)
        y = np.empty((len(x), self.outputs), dtype=np.float32)
        raw = np.empty((len(x), self.outputs), dtype=self.raw_dtype)
        bad = self.lib.decoder_host_run(
            states.ctypes.data, 1, x.ctypes.data, len(x), y.ctypes.data, raw.ctypes.data,
            None, 1, None, -np.inf, np.inf,
        )  # fmt: skip
        if bad >= 0:
            raise _bad_value(x.reshape(-1)[bad], bad, 1, self.channels, "row")
        return raw


def _bad_value(value: float, index: int, batch: int, channels: int, unit: str) -> CortexEdgeError:
    where, channel = divmod(index, channels)
    row, stream = divmod(where, batch)
    place = f"stream {stream}" if unit == "stream" else f"{unit} {row}"
    return CortexEdgeError(
        f"c backend: {place}, channel {channel}: {value:g} is not a whole spike count the "
        "integer C build accepts (0 .. max_count)"
    )


class CBackend:
    """Runs the generated C decoder of an exported folder for `batch` streams."""

    name: ClassVar[str] = "c"
    checks_values: ClassVar[bool] = True  # the host shim checks every value before decoding
    missing: ClassVar[str] = "no C build of this graph next to the file (export --target c)"

    @staticmethod
    def available(model: LoadedModel) -> bool:
        """True when the decoder's folder holds a built C decoder of this very graph (what a
        profiler's "all backends" should check before adding "c")."""
        try:
            man = load_manifest(model.path.parent)
        except ContractError:
            return False
        return man["graph_sha256"] == model.meta.graph_sha256

    def __init__(self, model: LoadedModel, batch: int, threads: int = 1) -> None:
        model.check_batch(batch)
        folder = model.path.parent
        man = load_manifest(folder)
        if man["graph_sha256"] != model.meta.graph_sha256:
            raise ContractError(
                f"{folder / MANIFEST}: the C build is of another graph than {model.path.name} "
                "(sha256 differs); export both again"
            )
        isa = man.get("host_isa")
        if isa is not None and host_isa() != isa:
            raise ContractError(
                f"{folder / man['library']}: built for {isa} CPUs, which this one is not; "
                "export again on this machine"
            )
        if sorted(e["name"] for e in man["states"]) != sorted(s.name for s in model.meta.states):
            raise ContractError(f"{folder / MANIFEST}: the C build's states are not the states "
                                f"of {model.path.name}; export both again")  # fmt: skip
        channels, outputs = int(np.prod(model.meta.input.shape)), len(model.meta.outputs)
        self.lib = CLibrary(folder / man["library"], man["numeric"], outputs, channels)
        self.batch, self.channels, self.outputs = batch, channels, outputs
        self._map = man["states"]
        self._initial = model.initial_states(batch)
        self._shapes = {s.name: s for s in model.meta.states}
        rows = next((s["rows"] for s in self._map if s["kind"] == "history"), 0)
        self._rows, self._history_rows = max(rows, 1), rows
        self._mem = self.lib.states(batch)
        self._history = np.zeros((batch, self._rows, channels), dtype=np.float32)
        self._pos = np.zeros(1, dtype=np.int64)
        self._x = np.zeros((batch, channels), dtype=np.float32)
        self._y = np.zeros((batch, outputs), dtype=model.y_dtype)
        check = BinChecker(model.meta.input)
        # the shim refuses values outside the input spec's range, as BinChecker would
        self._bounds = (
            -np.inf if check.lo is None else check.lo,
            np.inf if check.hi is None else check.hi,
        )
        self._calls: dict[int, tuple[_Call, int, np.ndarray]] = {}  # id(buffer) -> call
        self.bind_input(self._x)
        self._step_fn = self.lib.lib.decoder_host_call
        self._run = self.lib.lib.decoder_host_run
        # one stream, built for this interpreter: StreamingDecoder steps in a single call
        fast = batch == 1 and man.get("host_python") == host_python()
        self.step_bin = self.lib.step_function(self._calls[id(self._x)][0]) if fast else None

    def bind_input(self, buffer: np.ndarray) -> None:
        """Let `step` read `buffer` (float32, C-contiguous, the size of one [batch, C] block) in
        place, with no copy: the ctypes call for it is built here, once."""
        if not (buffer.dtype == np.float32 and buffer.flags.c_contiguous
                and buffer.size == self._x.size):  # fmt: skip
            raise CortexEdgeError(f"c backend: cannot bind a {buffer.dtype} {buffer.shape} input")
        call = _Call(
            self._mem.ctypes.data, self.batch, buffer.ctypes.data, 1, self._y.ctypes.data, None,
            self._history.ctypes.data if self._history_rows else None, self._rows,
            self._pos.ctypes.data, *self._bounds,
        )  # fmt: skip
        # the entry keeps the buffer alive, so its id cannot be reused by another array
        self._calls[id(buffer)] = (call, ctypes.addressof(call), buffer)

    def step(self, x: np.ndarray) -> np.ndarray:
        bound = self._calls.get(id(x))
        if bound is None:
            self._x[...] = x.reshape(self._x.shape)  # item assignment: a third of copyto's cost
            x, bound = self._x, self._calls[id(self._x)]
        bad = self._step_fn(bound[1])
        if bad >= 0:
            raise _bad_value(x.reshape(-1)[bad], bad, self.batch, self.channels, "stream")
        return self._y

    def check_block(self, x: np.ndarray, label: Callable[[int], str]) -> None:
        """Refuse, before any bin of a block x [rows, ...] is decoded, a value the build would
        refuse mid-block (the integer build takes whole counts only); `label(r)` names row r.
        The other checks of the shim (NaN, inf, the input range) are the runtime's own."""
        if self.lib.numeric != "int":
            return
        flat = x.reshape(len(x), -1)
        bad = flat != np.floor(flat)
        if bad.any():
            row, channel = (int(i) for i in np.argwhere(bad)[0])
            raise CortexEdgeError(
                f"{label(row)}: channel {channel}: {flat[row, channel]:g} is not a whole spike "
                "count the integer C build accepts (0 .. max_count)"
            )

    def read_state(self) -> dict[str, np.ndarray]:
        out = {}
        for entry in self._map:
            spec = self._shapes[entry["name"]]
            shape = list(spec.shape)
            shape[spec.batch_axis] = self.batch
            if entry["kind"] == "tensor":
                value = self._fields(entry).copy()
            elif entry["kind"] == "history":
                order = (int(self._pos[0]) + np.arange(self._rows)) % self._rows
                value = self._history[:, order]
            else:
                value = np.zeros(
                    (self.batch, len(entry["layers"]), self._hidden_size()), np.float32
                )
                for b in range(self.batch):
                    for k, layer in enumerate(entry["layers"]):
                        self.lib.lib.decoder_host_get_hidden(
                            self._struct(b), layer, value[b, k].ctypes.data
                        )
            out[entry["name"]] = _from_batch_first(value, shape, spec.batch_axis)
        return out

    def write_state(self, states: dict[str, np.ndarray]) -> None:
        if all(not np.any(states[k]) for k in states) and all(
            not np.any(v) for v in self._initial.values()
        ):
            self.lib.lib.decoder_host_reset(self._mem.ctypes.data, self.batch)
            self._history[...] = 0
            self._pos[0] = 0
            return
        saved = (self._mem.copy(), self._history.copy(), self._pos.copy())
        try:
            self._replay(states)
        except CortexEdgeError:
            for dst, src in zip((self._mem, self._history, self._pos), saved, strict=True):
                np.copyto(dst, src)
            raise

    def _replay(self, states: dict[str, np.ndarray]) -> None:
        """Reset, replay the raw-sample buffer (rebuilds ring and window chains), set hiddens."""
        self.lib.lib.decoder_host_reset(self._mem.ctypes.data, self.batch)
        self._history[...] = 0
        self._pos[0] = 0
        for entry in self._map:
            spec = self._shapes[entry["name"]]
            value = np.moveaxis(np.asarray(states[entry["name"]], np.float32), spec.batch_axis, 0)
            if entry["kind"] == "history":
                rows = np.ascontiguousarray(
                    value.reshape(self.batch, self._rows, -1).swapaxes(0, 1)
                )
                y = np.zeros((self._rows, self.batch, self.outputs), np.float32)
                bad = self._run(
                    self._mem.ctypes.data, self.batch, rows.ctypes.data, self._rows, y.ctypes.data,
                    None, self._history.ctypes.data, self._rows, self._pos.ctypes.data,
                    *self._bounds,
                )  # fmt: skip
                if bad >= 0:
                    raise _bad_value(rows.reshape(-1)[bad], bad, self.batch, self.channels, "row")
        for entry in self._map:
            if entry["kind"] == "tensor":
                spec = self._shapes[entry["name"]]
                value = np.moveaxis(np.asarray(states[entry["name"]], np.float32),
                                    spec.batch_axis, 0)  # fmt: skip
                self._fields(entry)[...] = value.reshape(self.batch, -1)
            if entry["kind"] != "hidden":
                continue
            spec = self._shapes[entry["name"]]
            value = np.moveaxis(np.asarray(states[entry["name"]], np.float32), spec.batch_axis, 0)
            value = np.ascontiguousarray(value.reshape(self.batch, len(entry["layers"]), -1))
            for b in range(self.batch):
                for k, layer in enumerate(entry["layers"]):
                    self.lib.lib.decoder_host_set_hidden(
                        self._struct(b), layer, value[b, k].ctypes.data
                    )

    def _fields(self, entry: dict) -> np.ndarray:
        """The float fields of a graph state tensor in every stream's struct, [batch, size]
        (a view of the states' memory)."""
        floats = self._mem.view(np.float32).reshape(self.batch, -1)
        return floats[:, entry["offset"] : entry["offset"] + entry["size"]]

    def _struct(self, b: int) -> int:
        return self._mem.ctypes.data + b * self.lib.state_size

    def _hidden_size(self) -> int:
        entry = next(e for e in self._map if e["kind"] == "hidden")
        spec = self._shapes[entry["name"]]
        return int(np.prod(spec.shape)) // len(entry["layers"])


def _from_batch_first(value: np.ndarray, shape: list[int], axis: int) -> np.ndarray:
    """[B, ...] (batch first) -> the metadata layout with the batch on `axis`."""
    moved = [shape[axis]] + [d for i, d in enumerate(shape) if i != axis]
    return np.moveaxis(value.reshape(moved), 0, axis).astype(np.float32)

"""What the runtime benchmarks share (latency.py, runtime_targets.py, scaling.py).

- one thread everywhere: BLAS thread pools are pinned to 1 through the environment before numpy
  loads (import this module before numpy), torch and onnxruntime are set per call site;
- `machine_info`: cores, CPU model, load average (the machine is shared and noisy: record it);
- `mac_rate`: the single-thread float32 MAC rate of a large numpy matmul, the compute floor;
- `time_interleaved`: per-call latencies of several methods, timed in alternating blocks so
  that load changes hit every method alike (ratios from one run are the robust numbers);
- `Stepper`: a torch `step` with its state carried, timed like `StreamingDecoder.step`;
- `stats`: the runtime profiler's `latency_stats`, the one percentile definition;
- `exported_decoder`: a seeded registry decoder and its verified ONNX step graph;
- `OrtChain` and `per_node_cost`: onnxruntime's floor per call (an Identity graph) and its
  cost per extra node (chains of Relu), called as the runtime's ort backend calls a step;
- `write_results`: atomic JSON next to the other benchmark results; `print_table`: rich.
"""

from __future__ import annotations

import os
import sys

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"
if "numpy" in sys.modules:  # too late for the variables above to reach OpenBLAS
    print("warning: import _common before numpy, or BLAS may use several threads", file=sys.stderr)

import platform  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable, Sequence  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

from cortexedge.runtime.profile import latency_stats  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
BIN_MS = 4.0  # bin width stamped on the exported benchmark decoders (latency does not use it)


def load_average() -> list[float]:
    """1, 5 and 15 minute load averages."""
    return [round(v, 2) for v in os.getloadavg()]


def machine_info() -> dict:
    """Cores, CPU model, load average now, library versions: the header of every result."""
    import onnxruntime as ort

    model = next(
        (line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
         if line.startswith("model name")), platform.processor() or "unknown",
    )  # fmt: skip
    versions = {"python": platform.python_version(), "numpy": np.__version__,
                "onnxruntime": ort.__version__}  # fmt: skip
    if "torch" in sys.modules:
        versions["torch"] = sys.modules["torch"].__version__
    return {"cores": os.cpu_count(), "cpu_model": model, "load_average_start": load_average(),
            "versions": versions, "threads": 1}  # fmt: skip


def finish(info: dict, started: float) -> dict:
    """`info` plus the load average at the end and the wall time of the run."""
    return {**info, "load_average_end": load_average(), "seconds": round(time.time() - started, 1)}


def mac_rate(n: int = 1024, repeats: int = 10) -> dict:
    """Single-thread float32 MAC rate: an n×n @ n×n numpy matmul (n³ MACs), best of `repeats`.

    The best run is the machine's peak; the median shows how much the load took from it.
    """
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    out = np.empty((n, n), dtype=np.float32)
    np.matmul(a, b, out=out)  # warm-up
    seconds = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        np.matmul(a, b, out=out)
        seconds.append(time.perf_counter() - t0)
    macs = float(n) ** 3
    return {
        "matmul": f"{n}x{n} @ {n}x{n} float32, numpy, 1 BLAS thread",
        "repeats": repeats,
        "macs_per_s": macs / min(seconds),
        "macs_per_s_median": macs / float(np.median(seconds)),
    }


class Stepper:
    """A step function `fn(x, state) -> (y, state)` (torch `step`, TorchScript) carrying its
    state between calls, so it can be timed like a decoder's `step(x)`."""

    def __init__(self, fn: Callable, state: object) -> None:
        self.fn, self.state = fn, state

    def __call__(self, x: object) -> None:
        _, self.state = self.fn(x, self.state)


Method = tuple[Callable[[object], object], Sequence]  # (function of one input, inputs to cycle)


def time_interleaved(
    methods: dict[str, Method], n: int, warmup: int, block: int = 100
) -> dict[str, np.ndarray]:
    """Per-call latencies (ns) of each method, `n` timed calls after `warmup` untimed ones.

    Calls run in blocks of `block`, the methods taking turns, so every method sees the same
    machine load. Call i of a method gets input i of its sequence (cycled).
    """
    clock = time.perf_counter_ns
    for fn, inputs in methods.values():
        for i in range(warmup):
            fn(inputs[i % len(inputs)])
    out = {name: np.empty(n, dtype=np.int64) for name in methods}
    for start in range(0, n, block):
        stop = min(start + block, n)
        for name, (fn, inputs) in methods.items():
            lat, m = out[name], len(inputs)
            for i in range(start, stop):
                x = inputs[i % m]
                t0 = clock()
                fn(x)
                lat[i] = clock() - t0
    return out


def stats(ns: np.ndarray) -> dict[str, float]:
    """The runtime profiler's latency summary (µs), rounded for the JSON."""
    return {k: round(v, 3) for k, v in latency_stats(ns).items()}


def p50_p99(summary: dict[str, float]) -> str:
    """A table cell "p50 / p99" (µs) of a `stats` summary."""
    return f"{summary['p50']:.1f} / {summary['p99']:.1f}"


def poisson_bins(n: int, shape: tuple[int, ...], seed: int = 0, rate: float = 1.0) -> np.ndarray:
    """Poisson spike counts [n, *shape] as float32 (the exported decoders' input dtype)."""
    rng = np.random.default_rng(seed)
    return rng.poisson(rate, size=(n, *shape)).astype(np.float32)


def exported_decoder(name: str, kwargs: dict, path: Path, seed: int = 0):
    """A registry decoder with seeded random weights (eval mode, training-only parts dropped),
    exported to `path` by `to_onnx` (verified against torch on seeded Poisson bins).

    Returns (torch model, LoadedModel of the file).
    """
    import torch

    from cortexedge.export.api import to_onnx
    from cortexedge.runtime.model import load_decoder
    from cortexedge.train.models.registry import build_model

    torch.manual_seed(seed)
    model = build_model(name, **kwargs).eval()
    if hasattr(model, "inference_module"):
        model = model.inference_module().eval()
    to_onnx(model, path, modality="spikes", bin_ms=BIN_MS)
    return model, load_decoder(path)


class OrtChain:
    """y = Relu^n(x) on [1, width] (n = 0: one Identity node) in an onnxruntime session with the
    runtime backend's options, run with IOBinding on preallocated OrtValues through the same
    pybind call and RunOptions as `OrtBackend.step`."""

    def __init__(self, width: int, n_relu: int = 0) -> None:
        import onnxruntime as ort
        from onnx import TensorProto, helper

        from cortexedge.runtime.backends.ort import session_options

        names = ["x", *(f"t{i}" for i in range(1, n_relu)), "y"]
        nodes = [helper.make_node("Relu", [a], [b]) for a, b in zip(names, names[1:], strict=False)]
        nodes = nodes or [helper.make_node("Identity", ["x"], ["y"])]
        io = [helper.make_tensor_value_info(n, TensorProto.FLOAT, [1, width]) for n in "xy"]
        graph = helper.make_graph(nodes, "chain", [io[0]], [io[1]])
        proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
        proto.ir_version = 10  # onnx.helper's default IR is newer than onnxruntime 1.31 reads
        self.sess = ort.InferenceSession(proto.SerializeToString(), session_options(1),
                                         providers=["CPUExecutionProvider"])  # fmt: skip
        self.x = np.zeros((1, width), dtype=np.float32)
        self.values = [ort.OrtValue.ortvalue_from_numpy(a) for a in (self.x, self.x.copy())]
        self.binding = self.sess.io_binding()
        self.binding.bind_ortvalue_input("x", self.values[0])
        self.binding.bind_ortvalue_output("y", self.values[1])
        self.run = self.sess._sess.run_with_iobinding
        self.args = (self.binding._iobinding, ort.RunOptions())

    def __call__(self, x: np.ndarray) -> None:
        self.x[...] = x
        self.run(*self.args)


def per_node_cost(n: int, warmup: int, sizes: Sequence[int] = (0, 1, 4, 16)) -> dict:
    """Latency stats of chains of `sizes` Relu nodes (0: Identity), interleaved, and the p50
    slope in µs per extra node (a least-squares line through the Relu chains)."""
    rows = list(np.ones((8, 1, 64), dtype=np.float32))
    methods = {f"{k} Relu" if k else "Identity": (OrtChain(64, k), rows) for k in sizes}
    lat = {k: stats(v) for k, v in time_interleaved(methods, n, warmup).items()}
    p50 = [lat[k]["p50"] for k in list(methods)[1:]]
    return {"latency_us": lat, "us_per_node_p50": round(float(np.polyfit(sizes[1:], p50, 1)[0]), 3)}


def rss_bytes() -> int:
    """Resident set size of this process now (VmRSS)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("VmRSS not found in /proc/self/status")


def write_results(name: str, report: dict) -> Path:
    """Write benchmarks/results/<name> atomically (temp file in the folder, then rename)."""
    from cortexedge.train.checkpoint import write_json

    RESULTS.mkdir(parents=True, exist_ok=True)
    return write_json(RESULTS / name, report)


def print_table(title: str, columns: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    """A rich table; numbers are printed as given (format them first)."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title, title_justify="left")
    for i, c in enumerate(columns):
        table.add_column(c, justify="left" if i == 0 else "right")
    for r in rows:
        table.add_row(*[str(v) for v in r])
    Console(width=200).print(table)


def machine_line(info: dict) -> str:
    """One-line machine header for a table title."""
    start, end = info["load_average_start"], info.get("load_average_end", "?")
    return f"{info['cores']} cores, {info['cpu_model']}, load avg start {start} end {end}, 1 thread"

"""How the streaming runtime's cost grows with streams, channels and hidden units.

All decoders are `build_model("gru", in_channels=C, hidden=H, out_dim=2)` with random seeded
weights, exported by `to_onnx`; inputs are Poisson(1) spike counts; one thread.

1. streams: MultiStreamDecoder (C=96, H=64) with N = 1, 4, 16, 64, 256 streams, one batched
   call per bin of every stream: call latency, throughput (bins/s over all streams) and µs per
   stream-bin, for the "ort" and "numpy" backends;
2. channels: StreamingDecoder.step per bin for C = 32, 96, 192, 384 (H=64);
3. hidden units: the same for H = 32, 64, 128, 256 (C=96).
For 2 and 3 the bare onnxruntime backend step is timed too, and a least-squares line
p50 = fixed + MACs / rate per backend separates the per-call overhead from the arithmetic.
Within each sweep the methods are timed interleaved, so they share the machine's load.

Prints three tables and writes benchmarks/results/scaling.json.
Run: .venv/bin/python benchmarks/scaling.py [--quick]
"""

from __future__ import annotations

# isort: off
import _common as C  # first: it pins BLAS to one thread before numpy loads
# isort: on

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

STREAMS = (1, 4, 16, 64, 256)
CHANNELS = (32, 96, 192, 384)
HIDDEN = (32, 64, 128, 256)
BACKENDS = ("ort", "numpy")


def stream_sweep(path: Path, calls: int) -> list[dict]:
    """Throughput and call latency of MultiStreamDecoder against the number of streams."""
    from cortexedge.runtime.multistream import MultiStreamDecoder

    methods, shape = {}, None
    for n in STREAMS:
        for backend in BACKENDS:
            dec = MultiStreamDecoder(path, n, backend=backend)
            shape = dec.meta.input.shape
            methods[(backend, n)] = (dec.step, C.poisson_bins(100, (n, *shape), seed=n))
    lat = C.time_interleaved(methods, calls, 50, 50)
    rows = []
    for (backend, n), ns in lat.items():
        rows.append({"backend": backend, "streams": n, "call_latency_us": C.stats(ns),
                     "bins_per_s": round(n * len(ns) / (ns.sum() / 1e9)),
                     "us_per_stream_bin": round(ns.mean() / 1e3 / n, 3)})  # fmt: skip
    return rows


def size_sweep(sizes: dict[str, tuple[int, int]], work: Path, bins: int) -> list[dict]:
    """StreamingDecoder.step (ort, numpy) and the bare ORT step for decoders of several sizes."""
    from cortexedge.runtime.backends.ort import OrtBackend
    from cortexedge.runtime.decoder import StreamingDecoder

    methods, facts = {}, {}
    for label, (c, h) in sizes.items():
        kw = dict(in_channels=c, hidden=h, out_dim=2)
        _, loaded = C.exported_decoder("gru", kw, work / f"gru_c{c}_h{h}.onnx")
        xs = C.poisson_bins(2000, (c,), seed=c + h)
        facts[label] = {"channels": c, "hidden": h, "macs": loaded.meta.macs["dense"]}
        for backend in BACKENDS:
            methods[(label, backend)] = (StreamingDecoder(loaded.path, backend=backend).step, xs)
        methods[(label, "ort bare")] = (OrtBackend(loaded, 1).step, list(xs[:, None]))
    lat = C.time_interleaved(methods, bins, 300)
    return [{**facts[label], "method": m, "latency_us": C.stats(ns)}
            for (label, m), ns in lat.items()]  # fmt: skip


def linear_fit(rows: list[dict]) -> dict[str, dict]:
    """Per method, p50 = fixed_us + MACs / rate: least squares over the sizes."""
    out = {}
    for method in sorted({r["method"] for r in rows}):
        pts = [(r["macs"], r["latency_us"]["p50"]) for r in rows if r["method"] == method]
        macs, p50 = np.array(pts, dtype=np.float64).T
        slope, fixed = np.polyfit(macs, p50, 1)
        out[method] = {"fixed_us": round(float(fixed), 2), "ns_per_mac": round(slope * 1e3, 4),
                       "macs_per_s": round(1e6 / slope) if slope > 0 else None}  # fmt: skip
    return out


def print_report(report: dict) -> None:
    head = C.machine_line(report["machine"])
    rows = [[r["backend"], r["streams"], f"{r['call_latency_us']['p50']:.1f}",
             f"{r['call_latency_us']['p99']:.1f}", f"{r['bins_per_s']:,}",
             f"{r['us_per_stream_bin']:.2f}"] for r in report["streams"]]  # fmt: skip
    columns = ["backend", "streams", "call p50 µs", "call p99 µs", "bins/s", "µs per stream-bin"]
    C.print_table(f"MultiStreamDecoder, GRU C=96 H=64 — {head}", columns, rows)
    for sweep in ("channels", "hidden"):
        data = report[sweep]
        methods = sorted({r["method"] for r in data["rows"]})
        sizes = sorted({(r["channels"], r["hidden"], r["macs"]) for r in data["rows"]})
        by = {(r["channels"], r["hidden"], r["method"]): r["latency_us"] for r in data["rows"]}
        table = [[f"C={c} H={h}", f"{m:,}", *(C.p50_p99(by[(c, h, k)]) for k in methods)]
                 for c, h, m in sizes]  # fmt: skip
        fit = data["fit"]
        table.append(["fit: fixed µs + ns/MAC", "", *(f"{fit[k]['fixed_us']:.1f} + "
                      f"{fit[k]['ns_per_mac']:.3f}" for k in methods)])  # fmt: skip
        C.print_table(f"Per-bin step latency p50 / p99 (µs) vs {sweep}", ["decoder", "MACs/bin",
                      *methods], table)  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer calls and bins (~20 s)")
    args = ap.parse_args()
    calls, bins = (300, 800) if args.quick else (5000, 10000)
    started, info, rate = time.time(), C.machine_info(), C.mac_rate(repeats=5)
    with tempfile.TemporaryDirectory(prefix="ce-scaling-") as tmp:
        work = Path(tmp)
        _, base = C.exported_decoder("gru", dict(in_channels=96, hidden=64, out_dim=2),
                                     work / "gru_c96_h64.onnx")  # fmt: skip
        streams = stream_sweep(base.path, calls)
        channels = size_sweep({f"C={c}": (c, 64) for c in CHANNELS}, work, bins)
        hidden = size_sweep({f"H={h}": (96, h) for h in HIDDEN}, work, bins)
    report = {
        "machine": C.finish(info, started),
        "mac_rate": rate,
        "settings": {"calls_per_stream_count": calls, "timed_bins": bins, "quick": args.quick,
                     "weights": "random init, seed 0", "inputs": "Poisson(1) spike counts"},
        "streams": streams,
        "channels": {"rows": channels, "fit": linear_fit(channels)},
        "hidden": {"rows": hidden, "fit": linear_fit(hidden)},
    }  # fmt: skip
    print_report(report)
    print(f"wrote {C.write_results('scaling.json', report)}")


if __name__ == "__main__":
    main()

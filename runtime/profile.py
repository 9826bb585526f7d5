"""The profiler: stream bins through one or more backends and measure what each step costs.

For every backend a fresh StreamingDecoder decodes the same bins one `step` at a time
(validation included, as a user would call it), timed with `perf_counter_ns`. The first
`warmup` bins are decoded but left out of the latency statistics. With `realtime=True` bins are
paced at their real rate (sleep, then busy-wait to each bin's due time) and lateness is
reported. A bin misses its deadline when its step takes longer than `bin_ms` (realtime: when
it finishes later than its due time + `bin_ms`). Accuracy against targets, when the bins come
from a recording, uses cortexedge.metrics; MACs and footprint come from graph_macs, which
names the ops its MAC count leaves out (`macs_uncounted`).
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from cortexedge.contract import DecoderMetadata
from cortexedge.errors import CortexEdgeError
from cortexedge.runtime.decoder import StreamingDecoder
from cortexedge.runtime.graph_macs import GraphCounts, count_graph
from cortexedge.runtime.model import load_decoder

PERCENTILES = {"p50": 50.0, "p90": 90.0, "p99": 99.0, "p999": 99.9}


def latency_stats(ns: np.ndarray) -> dict[str, float]:
    """The one latency summary, in µs: p50, p90, p99, p99.9 (linear interpolation), max, mean,
    std, and jitter = p99 − p50."""
    us = np.asarray(ns, dtype=np.float64) / 1e3
    if us.size == 0:
        return {k: float("nan") for k in (*PERCENTILES, "max", "mean", "std", "jitter")}
    out = dict(
        zip(PERCENTILES, np.percentile(us, list(PERCENTILES.values())).tolist(), strict=True)
    )
    out.update(max=float(us.max()), mean=float(us.mean()), std=float(us.std()))
    out["jitter"] = out["p99"] - out["p50"]
    return out


@dataclass
class Stream:
    """Bins to decode, with optional targets (regression) or labels, where to reset state and
    which bins are scored (the others are context, `cortexedge.scoring`)."""

    bins: np.ndarray
    source: str
    targets: np.ndarray | None = None
    labels: np.ndarray | None = None
    resets: np.ndarray | None = None  # bool [T]: reset the state before this bin
    scored: np.ndarray | None = None  # bool [T]: the bin counts in the score (default: all)
    kind: str = "regression"  # the target kind the score is computed as


@dataclass
class ProfileRun:
    """The JSON-ready summary plus the raw series the plot needs."""

    summary: dict
    latencies_ns: dict[str, np.ndarray] = field(default_factory=dict)
    predictions: np.ndarray | None = None
    stream: Stream | None = None


def synthetic_stream(meta: DecoderMetadata, n: int, seed: int = 0) -> Stream:
    """Poisson(1) bins of the decoder's input shape, clipped to its range, in its dtype."""
    x = np.random.default_rng(seed).poisson(1.0, size=(n, *meta.input.shape)).astype(np.float64)
    lo, hi = meta.input.range
    x = np.clip(x, lo, hi) if (lo is not None or hi is not None) else x
    return Stream(x.astype(meta.input.dtype), source=f"synthetic Poisson(1), seed {seed}")


def recording_stream(path: str | os.PathLike, meta: DecoderMetadata, n: int | None) -> Stream:
    """The test split of a recording as the one score definition feeds it (every test row,
    each run from the initial state after its context rows, `cortexedge.scoring`), first `n`
    bins; a recording without a test split is streamed whole.
    """
    from cortexedge import scoring
    from cortexedge.recording import Recording

    rec = Recording.load(path)
    _check_recording(path, rec, meta)
    split = "test" if "test" in rec.split else "all"
    if split == "test":
        context = scoring.context_rows(meta.streaming, rec.bin_ms)
        rows, resets, scored = scoring.fed_rows(scoring.runs(rec, "test", context))
    else:
        rows = np.arange(rec.n_bins)
        resets, scored = np.r_[True, np.diff(rec.segment) != 0], np.ones(rec.n_bins, bool)
    keep = slice(None, n)
    rows, resets, scored = rows[keep], resets[keep], scored[keep]
    if rows.size == 0:
        raise CortexEdgeError(f"{path}: the {split} split is empty")
    pick = lambda a: None if a is None else a[rows]  # noqa: E731
    classes = meta.score is not None and meta.score["metric"] == "accuracy"
    kind = scoring.target_kind(rec, "classification" if classes else "regression")
    return Stream(rec.x[rows], f"{path} ({split} split)", pick(rec.y), pick(rec.labels), resets,
                  scored, kind)  # fmt: skip


def _check_recording(path, rec, meta: DecoderMetadata) -> None:
    if rec.input_shape != meta.input.shape:
        raise CortexEdgeError(
            f"{path}: bins have shape {rec.input_shape}, the decoder expects {meta.input.shape}"
        )
    if abs(rec.bin_ms - meta.bin_ms) > 1e-6 * meta.bin_ms:
        raise CortexEdgeError(
            f"{path}: bins are {rec.bin_ms:g} ms, the decoder was exported for {meta.bin_ms:g} ms"
        )
    if rec.y is not None and rec.y.shape[1] != len(meta.outputs):
        raise CortexEdgeError(
            f"{path}: {rec.y.shape[1]} targets per bin, the decoder has {len(meta.outputs)} outputs"
        )


def _wait_until(t_ns: int) -> None:
    """Sleep most of the way, then busy-wait: sleep alone overshoots by up to a millisecond."""
    remaining = t_ns - time.perf_counter_ns()
    if remaining > 2_000_000:
        time.sleep((remaining - 1_000_000) / 1e9)
    while time.perf_counter_ns() < t_ns:
        pass


def _time_backend(
    path: Path, backend: str, stream: Stream, realtime: bool, threads: int, bin_ns: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Decode every bin; returns predictions, step latencies, lateness and deadline misses."""
    dec = StreamingDecoder(path, backend=backend, threads=threads)
    n = len(stream.bins)
    preds = np.empty((n, len(dec.meta.outputs)), dtype=np.float64)
    lat, late = np.empty(n, dtype=np.int64), np.zeros(n, dtype=np.int64)
    missed = np.zeros(n, dtype=bool)
    resets = stream.resets if stream.resets is not None else np.zeros(n, dtype=bool)
    clock, start = time.perf_counter_ns, time.perf_counter_ns() + bin_ns
    for i in range(n):
        if resets[i]:
            dec.reset()
        if realtime:
            due = start + i * bin_ns
            _wait_until(due)
        t0 = clock()
        preds[i] = dec.step(stream.bins[i])
        t1 = clock()
        lat[i] = t1 - t0
        if realtime:
            late[i], missed[i] = t0 - due, t1 > due + bin_ns
        else:
            missed[i] = lat[i] > bin_ns
    return preds, lat, late, missed


def _accuracy(stream: Stream, preds: np.ndarray, metric: str) -> dict:
    """The score of the scored bins by the one definition (`cortexedge.scoring`)."""
    from cortexedge.scoring import split_metrics

    if stream.targets is None and stream.labels is None:
        return {metric: None}
    keep = np.ones(len(preds), bool) if stream.scored is None else stream.scored
    if not keep.any():  # the bins kept are all context rows
        return {metric: None, "scored_bins": 0}
    pick = lambda a: None if a is None else a[keep]  # noqa: E731
    result = split_metrics(stream.kind, preds[keep], pick(stream.targets), pick(stream.labels))
    out = {result["metric"]: result["value"], "scored_bins": int(keep.sum())}
    if result["metric"] == "accuracy":
        out["classification"] = {k: v for k, v in result.items() if k not in ("metric", "value")}
    return out


def _backend_result(
    lat: np.ndarray,
    late: np.ndarray,
    missed: np.ndarray,
    diff: float,
    bin_ns: int,
    warmup: int,
    realtime: bool,
) -> dict:
    """One backend's latency, deadline and throughput figures over the bins after warm-up;
    `diff` is its largest prediction difference from the first backend."""
    timed = lat[warmup:]
    res = {
        "latency_us": latency_stats(timed),
        "deadline_misses": int(missed[warmup:].sum()),
        "deadline_miss_rate": float(missed[warmup:].mean()),
        "bins_per_s": float(len(timed) / (timed.sum() / 1e9)),
        "real_time_factor": float(timed.sum() / (len(timed) * bin_ns)),
        "max_abs_diff_vs_first": diff,
    }
    if realtime:
        res["lateness_us"] = latency_stats(late[warmup:])
    return res


def _time_backends(
    path: Path,
    stream: Stream,
    backends: tuple[str, ...],
    realtime: bool,
    threads: int,
    bin_ns: int,
    warmup: int,
) -> tuple[dict, dict[str, np.ndarray], np.ndarray]:
    """Results and latencies per backend, and the first backend's predictions."""
    results, lats, first = {}, {}, None
    for name in backends:
        preds, lat, late, missed = _time_backend(path, name, stream, realtime, threads, bin_ns)
        diff = 0.0 if first is None else float(np.abs(preds - first).max())
        res = _backend_result(lat, late, missed, diff, bin_ns, warmup, realtime)
        first = preds if first is None else first
        results[name], lats[name] = res, lat
    fastest = min(r["latency_us"]["p50"] for r in results.values())
    for r in results.values():
        r["p50_vs_fastest"] = r["latency_us"]["p50"] / fastest
    return results, lats, first


def _graph_summary(counts: GraphCounts, meta: DecoderMetadata) -> dict:
    """MACs (with the ops the count leaves out), sparsity and footprint of the step graph."""
    return {
        "macs": {"dense": counts.dense, "effective": counts.effective},
        "macs_metadata": meta.macs,
        "macs_per_op": [asdict(o) for o in counts.ops],
        "macs_uncounted": [asdict(u) for u in counts.uncounted],
        "sparsity": counts.sparsity,
        "footprint_bytes": counts.footprint_bytes,
        "footprint": {
            "weight_bytes": counts.weight_bytes,
            "state_bytes": counts.state_bytes,
            "peak_activation_bytes": counts.peak_activation_bytes,
        },
    }


def c_build(model) -> dict | None:
    """What the C build next to `model`'s file (export --target c) takes: flash, RAM and the
    MACs its step executes, from its checked manifest; None when there is none of this graph."""
    from cortexedge.runtime.backends.c import CBackend
    from cortexedge.runtime.backends.c_manifest import load_manifest

    if not CBackend.available(model):
        return None
    man = load_manifest(model.path.parent)
    mem = man["memory"]
    arm = mem.get("cortex_m4") or {}
    return {
        "folder": str(model.path.parent), "numeric": man["numeric"], "prefix": man.get("prefix"),
        "flash_bytes": arm.get("flash_bytes"), "weights_bytes": mem["weights_bytes"],
        "state_bytes": mem["state_bytes"], "ram_bytes": mem.get("ram_bytes"),
        "ram_bytes_bound": mem.get("ram_bytes_bound"),
        "macs_executed": man["macs"]["executed_per_step"],
        "qemu_insns_per_step": (man.get("qemu") or {}).get("insns_per_step"),
    }  # fmt: skip


def profile(
    path: str | os.PathLike,
    stream: Stream,
    backends: tuple[str, ...] = ("ort",),
    realtime: bool = False,
    warmup: int | None = None,
    threads: int = 1,
) -> ProfileRun:
    """Stream `stream` through each backend; latency, deadlines, MACs, footprint, accuracy."""
    path = Path(path)
    model = load_decoder(path)
    meta = model.meta
    n = len(stream.bins)
    warmup = min(100, n // 10) if warmup is None else warmup
    if not 0 <= warmup < n:
        raise CortexEdgeError(f"warmup: must be in [0, {n}) for {n} bins, got {warmup}")
    bin_ns = round(meta.bin_ms * 1e6)
    counts = count_graph(model.proto)
    results, lats, first = _time_backends(path, stream, backends, realtime, threads, bin_ns, warmup)
    metric = meta.score["metric"] if meta.score else "r2"
    summary = {
        "decoder": str(path),
        "model_family": meta.model_family,
        "bin_ms": meta.bin_ms,
        "outputs": [{"name": o.name, "unit": o.unit} for o in meta.outputs],
        "source": stream.source,
        "bins": n,
        "warmup_bins": warmup,
        "realtime": realtime,
        "threads": threads,
        **_graph_summary(counts, meta),
        **_accuracy(stream, first, metric),
        "score_at_export": meta.score,
        "c_build": c_build(model),
        "backends": results,
    }
    return ProfileRun(summary, lats, first, stream)

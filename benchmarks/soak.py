"""Soak: a million bins through one StreamingDecoder per backend, memory and exactness checked.

The decoder is the GRU C=96 H=64 step graph (random seeded weights) and, where a C compiler is
present, its float C build. Each backend decodes 1,000,000 Poisson(1) bins one `step` at a
time, cycling through a fixed block of 10,000 distinct bins. The process RSS is read before the
first bin and after 250k, 500k and 1M bins (flat means no leak per bin); at the end, `step`
over one 10k chunk from a reset state is compared with `run` over the same chunk (bit for bit).

Prints a table and writes benchmarks/results/soak.json.
Run: .venv/bin/python benchmarks/soak.py [--bins 1000000]
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

CHUNK = 10_000
MARKS = (0.25, 0.5, 1.0)
RSS_FLAT_BYTES = 4 << 20  # allocator noise over a million steps stays well below this


def soak(decoder, bins: int, block: np.ndarray) -> dict:
    """Step `bins` bins (cycling `block`); RSS at the start and at each mark, then step vs run."""
    marks = {round(bins * m): f"{round(bins * m):,}" for m in MARKS}
    rss = {"0": C.rss_bytes()}
    t0 = time.perf_counter()
    step, n = decoder.step, len(block)
    for i in range(1, bins + 1):
        step(block[i % n])
        if i in marks:
            rss[marks[i]] = C.rss_bytes()
    seconds = time.perf_counter() - t0
    decoder.reset()
    stepped = np.stack([decoder.step(x) for x in block])
    decoder.reset()
    ran = decoder.run(block)
    growth = max(rss.values()) - rss["0"]
    return {
        "bins": bins,
        "seconds": round(seconds, 1),
        "us_per_bin": round(seconds / bins * 1e6, 2),
        "rss_bytes": rss,
        "rss_growth_bytes": growth,
        "step_vs_run_max_abs": float(np.abs(stepped - ran).max()),
        "targets": {
            "RSS flat (growth <= 4 MiB)": growth <= RSS_FLAT_BYTES,
            "step == run on a 10k chunk (bit-exact)": bool(np.array_equal(stepped, ran)),
        },
    }


def decoders(work: Path) -> dict:
    """backend -> StreamingDecoder of the same exported graph (c only when it builds)."""
    from cortexedge.runtime.decoder import StreamingDecoder

    model, loaded = C.exported_decoder(
        "gru", {"in_channels": 96, "hidden": 64, "out_dim": 2}, work / "gru.onnx"
    )
    out = {"ort": StreamingDecoder(loaded.path, backend="ort")}
    try:
        from cortexedge.export.c.generate import export_c

        export_c(model, work / "c", onnx_path=loaded.path, verify_bins=1000, cortex_m=False)
        out["c"] = StreamingDecoder(work / "c" / "decoder.onnx", backend="c")
    except Exception as e:  # no compiler, or a build failure: say so and soak ort alone
        print(f"c backend skipped: {type(e).__name__}: {str(e).splitlines()[0][:160]}")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bins", type=int, default=1_000_000, help="bins per backend")
    args = ap.parse_args()
    started, info = time.time(), C.machine_info()
    block = C.poisson_bins(CHUNK, (96,), seed=2)
    with tempfile.TemporaryDirectory(prefix="ce-soak-") as tmp:
        results = {name: soak(dec, args.bins, block) for name, dec in decoders(Path(tmp)).items()}
    report = {"machine": C.finish(info, started), "decoder": "GRU C=96 H=64", "backends": results}
    marks = list(next(iter(results.values()))["rss_bytes"])
    rows = [
        [name, f"{r['us_per_bin']:.2f}", *(f"{r['rss_bytes'][m] / 2**20:.1f}" for m in marks),
         f"{r['rss_growth_bytes'] / 2**10:.0f}", f"{r['step_vs_run_max_abs']:.1e}",
         " ".join("ok" if v else "MISSED" for v in r["targets"].values())]
        for name, r in results.items()
    ]  # fmt: skip
    columns = ["backend", "µs/bin", *(f"RSS MiB @{m}" for m in marks), "growth KiB",
               "step vs run", "targets"]  # fmt: skip
    C.print_table(f"Soak, {args.bins:,} bins — {C.machine_line(report['machine'])}", columns, rows)
    print(f"wrote {C.write_results('soak.json', report)}")


if __name__ == "__main__":
    main()

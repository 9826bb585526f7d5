"""Issue 17 scaling: the same 8-cell sweep with 1 and then 2 Ray workers, in one run.

The plan: one 2-minute synthetic reaching recording (16 channels), decoders gru and lstm
(hidden 32), recipes "dense" (the trained run, exported) and "s50" (50% magnitude pruning,
2 fine-tuning epochs), seeds 0 and 1: 4 training runs (6 epochs) shared by 8 cells. Each
worker count gets a fresh sweep folder and its own embedded Ray (start-up timed separately).

Reports the wall time of each, the speedup (goal >= 1.6x on 2 cores), and the driver's peak
RSS (ru_maxrss: the driver holds the plan, ObjectRefs and result rows, never a model). The
machine is shared: the 1-minute load average after each run says how many cores were free.
Writes benchmarks/results/sweep_scaling.json.
Run: .venv/bin/python benchmarks/sweep_scaling.py
"""

from __future__ import annotations

# isort: off
import _common as C  # first: it pins BLAS to one thread before numpy loads
# isort: on

import resource
import tempfile
import time
from pathlib import Path

PLAN = """
recordings = ["rec.npz"]
decoders = ["gru", "lstm"]
seeds = [0, 1]
[train]
epochs = 6
patience = 6
[models.gru]
hidden = 32
[models.lstm]
hidden = 32
[[recipes]]
name = "dense"
[[recipes]]
name = "s50"
sparsity = 0.5
finetune_epochs = 2
"""


def timed_sweep(plan: Path, out: Path, workers: int) -> dict:
    """Start a Ray of `workers` CPUs, run the sweep on it, stop it; returns the timings."""
    import ray

    from cortexedge.sweep import run
    from cortexedge.sweep.runner import LOOPBACK_ENV

    C.os.environ.update(LOOPBACK_ENV)
    t0 = time.perf_counter()
    ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False)
    t1 = time.perf_counter()
    try:
        rows = run(plan, out, progress=False)
    finally:
        ray.shutdown()
    t2 = time.perf_counter()
    ok = sum(r["status"] == "ok" for r in rows)
    assert ok == len(rows) == 8, rows
    return {"workers": workers, "startup_s": round(t1 - t0, 2), "sweep_s": round(t2 - t1, 2),
            "cells": ok, "load_average_end": C.load_average()}  # fmt: skip


def main() -> None:
    from cortexedge.train.data.synth import generate

    started, info = time.time(), C.machine_info()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        generate("reaching", seed=0, channels=16, minutes=2.0).save(folder / "rec.npz")
        (folder / "plan.toml").write_text(PLAN)
        runs = [timed_sweep(folder / "plan.toml", folder / f"w{n}", n) for n in (1, 2)]
    speedup = runs[0]["sweep_s"] / runs[1]["sweep_s"]
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    report = {"machine": C.finish(info, started), "runs": runs, "speedup": round(speedup, 2),
              "driver_peak_rss_bytes": peak}  # fmt: skip
    C.print_table(
        f"8-cell sweep, 1 vs 2 workers ({C.machine_line(report['machine'])})",
        ["workers", "Ray start-up s", "sweep s", "cells", "load avg after"],
        [
            [r["workers"], r["startup_s"], r["sweep_s"], r["cells"], r["load_average_end"][0]]
            for r in runs
        ],  # fmt: skip
    )
    print(f"speedup {speedup:.2f}x (goal >= 1.6x); driver peak RSS {peak / 2**20:.0f} MiB")
    print(f"wrote {C.write_results('sweep_scaling.json', report)}")


if __name__ == "__main__":
    main()

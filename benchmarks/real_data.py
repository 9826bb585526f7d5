"""Every decoder family with its defaults on the two real recordings, float and W8, ridge for
reference.

- imperial_reaching_20ms.npz: macaque M1, 98 units, 20 ms bins, trials of 19-39 bins, split by
  trial (the reader's default);
- s1_reaching_v5.mat: macaque S1, 52 units, continuous, converted as a lab would
  (`--x spikes --y vel --bin-ms 50`, time split 70/15/15).

Each family whose spec reads the recording (spikes, regression) is built for it with
`model_for` (its durations in ms made rows at the recording's bin width), fitted with `fit`
(epochs capped by --epochs and --max-seconds), then quantized to W8A8 with QAT (`compress`).
The R² is the one test score every stage reports (`cortexedge.scoring`). Prints a table per
recording and writes benchmarks/results/real_data.json; skips with the reason when the
recordings are absent.
Run: .venv/bin/python benchmarks/real_data.py [--epochs 100] [--max-seconds 240] [--only gru]
"""

from __future__ import annotations

import argparse  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import _common  # noqa: F401  (pins BLAS threads before numpy loads)
from _common import finish, machine_info, machine_line, print_table, write_results  # noqa: E402

REAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "real"
RECORDINGS = {
    "imperial 20 ms (trial split)": (REAL / "imperial_reaching_20ms.npz", {}),
    "s1 50 ms .mat (time 70/15/15)": (
        REAL / "s1_reaching_v5.mat",
        {"fmt": "arrays", "x": "spikes", "y": "vel", "bin_ms": 50.0},
    ),
}
LINEAR = ("ridge", "kalman")


def _families(rec) -> list[str]:
    """The families of the table whose training spec reads this recording."""
    from cortexedge.errors import CortexEdgeError
    from cortexedge.families import FAMILIES
    from cortexedge.scoring import target_kind
    from cortexedge.train.specs import spec_for

    names = []
    for name in FAMILIES:
        try:
            spec_for(name).check(rec, target_kind(rec), name)
        except CortexEdgeError:
            continue
        names.append(name)
    return names


def _row(name: str, rec, epochs: int, max_seconds: float) -> dict:
    """Fit one family with its defaults, quantize it to W8A8; its figures."""
    from cortexedge.compress.recipe import Recipe, compress
    from cortexedge.train.build import model_for
    from cortexedge.train.fit import fit

    t0 = time.perf_counter()
    model = model_for(name, rec, seed=0)
    trained = fit(model, rec, epochs=epochs, max_seconds=max_seconds, progress=False)
    qat = 0 if name in LINEAR else 2
    small = compress(trained.model, rec, Recipe(bits=8, finetune_epochs=qat), progress=False)
    first, last = small.stages[0], small.stages[-1]
    return {
        "family": name,
        "float_r2": trained.metrics["test"]["r2"],
        "w8_r2": last["r2"],
        "macs_effective": last["macs_effective"],
        "bytes_float": first["bytes"],
        "bytes_w8": last["bytes"],
        "test_rows": trained.metrics["test"]["rows"],
        "durations": trained.config.get("durations", {}),
        "epochs_run": trained.metrics["epochs_run"],
        "seconds": round(time.perf_counter() - t0, 1),
    }


def _verdict(rows: list[dict]) -> dict:
    """The best neural decoder against ridge, by float test R²."""
    ridge = next((r for r in rows if r["family"] == "ridge"), None)
    neural = [r for r in rows if r["family"] not in LINEAR]
    if ridge is None or not neural:
        return {}
    best = max(neural, key=lambda r: r["float_r2"])
    beats = best["float_r2"] > ridge["float_r2"]
    return {"best_neural": best["family"], "best_neural_r2": best["float_r2"],
            "ridge_r2": ridge["float_r2"], "neural_beats_ridge": beats}  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--max-seconds", type=float, default=240.0)
    parser.add_argument("--only", default=None, help="comma-separated families")
    args = parser.parse_args()
    from cortexedge.train.data.readers import read

    started, info = time.time(), machine_info()
    report = {"machine": info, "epochs": args.epochs, "max_seconds": args.max_seconds,
              "recordings": {}}  # fmt: skip
    for label, (path, options) in RECORDINGS.items():
        if not path.is_file():
            print(f"skipped {label}: {path} is absent", file=sys.stderr)
            continue
        rec = read(path, **options)
        names = _families(rec)
        if args.only:
            names = [n for n in names if n in args.only.split(",")]
        rows = []
        for name in names:
            rows.append(_row(name, rec, args.epochs, args.max_seconds))
            print(f"{label}: {name} done in {rows[-1]['seconds']} s", file=sys.stderr)
        report["recordings"][label] = {"rows": rows, **_verdict(rows)}
        print_table(
            f"{label}: test R² by the one definition, every test row ({rows[0]['test_rows']})",
            ["family", "float R²", "W8 R²", "eff. MACs/bin", "bytes float", "bytes W8", "s"],
            [[r["family"], f"{r['float_r2']:.4f}", f"{r['w8_r2']:.4f}",
              f"{r['macs_effective']:,.0f}", f"{r['bytes_float']:,}", f"{r['bytes_w8']:,}",
              r["seconds"]] for r in rows],
        )  # fmt: skip
    report["machine"] = info = finish(info, started)
    print(machine_line(info))
    print(f"wrote {write_results('real_data.json', report)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

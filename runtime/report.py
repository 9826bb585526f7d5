"""Reports of a profile run: a rich table on the terminal, a JSON file and a PNG.

matplotlib is imported inside `save_plot` only (and drawn with the Agg canvas, so no display
and no global backend switch); rich inside `print_summary`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from cortexedge.atomic import atomic_open
from cortexedge.errors import CortexEdgeError
from cortexedge.runtime.profile import ProfileRun

_LATENCY_COLUMNS = {"p50": "p50", "p90": "p90", "p99": "p99", "p99.9": "p999", "max": "max",
                    "mean": "mean", "jitter": "jitter"}  # fmt: skip
_LOAD_COLUMNS = ("misses", "bins/s", "real-time factor", "p50 vs fastest")


def _atomic_write(path: Path, write) -> None:
    """Write through a temporary file in the same folder, then rename over `path`."""
    path = Path(path)
    if not path.parent.exists():
        raise CortexEdgeError(f"output folder does not exist: {path.parent}")
    with atomic_open(path) as f:
        write(f)


def write_json(summary: dict, path: str | os.PathLike) -> None:
    """The summary as indented JSON (atomic)."""
    text = json.dumps(summary, indent=2, default=float).encode()
    _atomic_write(Path(path), lambda f: f.write(text))


def _uncounted_line(uncounted: list[dict]) -> str:
    """The ops the MAC count leaves out, by type and node name."""
    ops = ", ".join(f"{u['op_type']} '{u['node']}'" for u in uncounted)
    return f"MACs leave out {len(uncounted)} op(s) the numpy engine does not implement: {ops}"


def print_summary(summary: dict, console=None) -> None:
    """Header lines (MACs and the ops they leave out, footprint, accuracy) and one table row
    per backend."""
    from rich import box
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    macs, foot = summary["macs"], summary["footprint"]
    console.print(
        f"[bold]{summary['decoder']}[/] ({summary['model_family']}, {summary['bin_ms']:g} ms "
        f"bins): {summary['bins']} bins from {summary['source']}, "
        f"{summary['warmup_bins']} warm-up bins excluded"
    )
    console.print(
        f"MACs/bin dense {macs['dense']:,} effective {macs['effective']:,} "
        f"(sparsity {summary['sparsity']:.2f}); footprint {summary['footprint_bytes']:,} B "
        f"(weights {foot['weight_bytes']:,} + state {foot['state_bytes']:,}); "
        f"peak activations {foot['peak_activation_bytes']:,} B"
    )
    if summary["macs_uncounted"]:
        console.print(_uncounted_line(summary["macs_uncounted"]), markup=False)
    for key in ("r2", "accuracy"):
        if summary.get(key) is not None:
            export = summary.get("score_at_export") or {}
            at_export = (
                f" (at export: {export['value']:.3f} on {export['split']})" if export else ""
            )
            console.print(f"{key}: {summary[key]:.4f}{at_export}")
    latency = Table(title="latency per bin (µs); jitter = p99 − p50", box=box.SIMPLE)
    load = Table(title=f"deadline {summary['bin_ms']:g} ms per bin", box=box.SIMPLE)
    for table, cols in ((latency, _LATENCY_COLUMNS), (load, _LOAD_COLUMNS)):
        table.add_column("backend")
        for col in cols:
            table.add_column(col, justify="right")
    for name, r in summary["backends"].items():
        lat = r["latency_us"]
        latency.add_row(name, *(f"{lat[k]:.1f}" for k in _LATENCY_COLUMNS.values()))
        load.add_row(
            name,
            str(r["deadline_misses"]),
            f"{r['bins_per_s']:,.0f}",
            f"{r['real_time_factor']:.4f}",
            f"{r['p50_vs_fastest']:.2f}x",
        )
    console.print(latency)
    console.print(load)


def save_plot(run: ProfileRun, path: str | os.PathLike, max_bins: int = 1000) -> None:
    """PNG: latency histogram per backend and, with targets, predicted vs true trajectories."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    stream = run.stream
    truth = None if stream is None else stream.targets
    n_axes = 1 + (0 if truth is None else truth.shape[1])
    fig = Figure(figsize=(9, 3 * n_axes), layout="constrained")
    axes = fig.subplots(n_axes, 1, squeeze=False)[:, 0]
    warm = run.summary["warmup_bins"]
    all_us = np.concatenate([lat[warm:] for lat in run.latencies_ns.values()]) / 1e3
    edges = np.geomspace(max(all_us.min(), 0.1), all_us.max() * 1.01, 60)
    for name, lat in run.latencies_ns.items():
        axes[0].hist(lat[warm:] / 1e3, bins=edges, alpha=0.6, label=name)
    axes[0].set(xscale="log", xlabel="step latency (µs)", ylabel="bins",
                title=f"{run.summary['decoder']}: latency per bin")  # fmt: skip
    axes[0].legend()
    if truth is not None:
        shown = slice(0, min(max_bins, len(truth)))
        t = np.arange(len(truth))[shown] * run.summary["bin_ms"] / 1e3
        for k, (ax, out) in enumerate(zip(axes[1:], run.summary["outputs"], strict=True)):
            ax.plot(t, truth[shown, k], label="true", lw=1)
            ax.plot(t, run.predictions[shown, k], label="predicted", lw=1)
            ax.set(xlabel="time (s)", ylabel=f"{out['name']} ({out['unit']})")
            ax.legend()
        axes[1].set_title(f"R² {run.summary.get('r2', float('nan')):.3f}")
    canvas = FigureCanvasAgg(fig)
    _atomic_write(Path(path), lambda f: canvas.print_png(f))

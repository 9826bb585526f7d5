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
_LOAD_COLUMNS = ("misses", "bins/s", "RT factor", "p50 vs fastest")
_LATENESS_COLUMNS = {"late p50 ms": "p50", "late p99 ms": "p99", "late max ms": "max"}


def _atomic_write(path: Path, write) -> None:
    """Write through a temporary file in the same folder, then rename over `path`."""
    path = Path(path)
    if not path.parent.exists():
        raise CortexEdgeError(f"output folder does not exist: {path.parent}")
    with atomic_open(path) as f:
        write(f)


PNG_MARK = "cortexedge profile"  # the PNG text chunk that marks a plot as profile's own


def written_by_profile(path: Path) -> bool:
    """Whether `path` is a summary or a plot that profile wrote (so a new run may replace it)."""
    raw = path.read_bytes()
    if raw.startswith(b"\x89PNG"):
        return PNG_MARK.encode() in raw[:4096]  # text chunks come before the image data
    try:
        summary = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError):
        return False
    return isinstance(summary, dict) and {"decoder", "macs_per_op"} <= summary.keys()


def write_json(summary: dict, path: str | os.PathLike) -> None:
    """The summary as indented JSON (atomic)."""
    text = json.dumps(summary, indent=2, default=float).encode()
    _atomic_write(Path(path), lambda f: f.write(text))


def _uncounted_line(uncounted: list[dict]) -> str:
    """The ops the MAC count leaves out, by type and node name."""
    ops = ", ".join(f"{u['op_type']} '{u['node']}'" for u in uncounted)
    return f"MACs leave out {len(uncounted)} op(s) the numpy engine does not implement: {ops}"


def c_build_line(c: dict) -> str:
    """One line on the C build next to the decoder: what it takes on the device."""
    flash = f"flash {c['flash_bytes']:,} B" if c["flash_bytes"] else (
        f"constants {c['weights_bytes']:,} B (flash not measured)")  # fmt: skip
    if c["ram_bytes"]:
        ram = f"RAM {c['ram_bytes']:,} B (state {c['state_bytes']:,} + measured stack)"
    elif c["ram_bytes_bound"]:
        ram = f"RAM <= {c['ram_bytes_bound']:,} B (state {c['state_bytes']:,} + stack bound)"
    else:
        ram = f"state {c['state_bytes']:,} B"
    insns = c.get("qemu_insns_per_step")
    device = f"; Cortex-M4 {insns:,.0f} instructions/bin" if insns else ""
    return (f"C build ({c['numeric']} path, {c['folder']}): {flash}, {ram}, "
            f"MACs/bin executed {c['macs_executed']:,}{device}")  # fmt: skip


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
    if summary.get("c_build"):
        console.print(c_build_line(summary["c_build"]), markup=False)
    for name, why in (summary.get("backends_left_out") or {}).items():
        console.print(f"{name}: left out, {why}", markup=False)
    for key in ("r2", "accuracy"):
        if summary.get(key) is not None:
            export = summary.get("score_at_export") or {}
            at_export = (
                f" (at export: {export['value']:.3f} on {export['split']})" if export else ""
            )
            console.print(f"{key}: {summary[key]:.4f}{at_export}")
    latency = Table(title="latency per bin (µs); jitter = p99 − p50", box=box.SIMPLE)
    load = Table(title=f"deadline {summary['bin_ms']:g} ms per bin; RT factor = mean step / bin",
                 box=box.SIMPLE)  # fmt: skip
    for table, cols in ((latency, _LATENCY_COLUMNS), (load, _LOAD_COLUMNS)):
        table.add_column("backend")
        for col in cols:
            table.add_column(col, justify="right")
    paced = any("lateness_us" in r for r in summary["backends"].values())
    if paced:  # a miss is a late start as often as a slow step: show how late bins began
        for col in _LATENESS_COLUMNS:
            load.add_column(col, justify="right")
    for name, r in summary["backends"].items():
        lat = r["latency_us"]
        latency.add_row(name, *(f"{lat[k]:.1f}" for k in _LATENCY_COLUMNS.values()))
        late = r.get("lateness_us")
        # in ms, the deadline's unit (µs in the JSON): six-digit µs crop at 80 columns
        lateness = [f"{late[k] / 1e3:.2f}" for k in _LATENESS_COLUMNS.values()] if late else []
        load.add_row(
            name,
            str(r["deadline_misses"]),
            f"{r['bins_per_s']:,.0f}",
            f"{r['real_time_factor']:.4f}",
            f"{r['p50_vs_fastest']:.2f}x",
            *(lateness if paced else []),
        )
    console.print(latency)
    console.print(load)
    if paced:
        console.print(
            "paced at the real bin rate: lateness is how long after its due time a bin's "
            "step began (a busy machine); a miss is a step that ended after due time + one bin"
        )


def save_plot(run: ProfileRun, path: str | os.PathLike, max_bins: int = 1000) -> None:
    """PNG: latency histogram per backend (with its p50 and p99 and the bin deadline) and,
    with targets, predicted against true trajectories with the R² of each output."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    truth = None if run.stream is None else run.stream.targets
    n_axes = 1 + (0 if truth is None else truth.shape[1])
    fig = Figure(figsize=(9, 3 * n_axes), layout="constrained")
    axes = fig.subplots(n_axes, 1, squeeze=False)[:, 0]
    _latency_panel(axes[0], run)
    if truth is not None:
        _trace_panels(axes[1:], run, truth, max_bins)
    canvas = FigureCanvasAgg(fig)
    _atomic_write(Path(path), lambda f: canvas.print_png(f, metadata={"Software": PNG_MARK}))


def axis_label(output: dict) -> str:
    """An output's name, with its unit when the recording gave one (a converted file may not)."""
    return output["name"] + (f" ({output['unit']})" if output.get("unit") else "")


def _latency_panel(ax, run: ProfileRun) -> None:
    """Step latency per backend on a log axis, p50/p99 and misses per backend, the deadline as
    a red line."""
    warm, summary = run.summary["warmup_bins"], run.summary
    deadline_us = summary["bin_ms"] * 1e3
    all_us = np.concatenate([lat[warm:] for lat in run.latencies_ns.values()]) / 1e3
    top = max(all_us.max(), deadline_us) * 1.2
    edges = np.geomspace(max(all_us.min(), 0.1), top, 70)
    for k, (name, lat) in enumerate(run.latencies_ns.items()):
        stats = summary["backends"][name]["latency_us"]
        color = f"C{k}"
        misses = summary["backends"][name]["deadline_misses"]
        label = f"{name}: p50 {stats['p50']:.1f} µs, p99 {stats['p99']:.1f} µs, {misses} misses"
        ax.hist(lat[warm:] / 1e3, bins=edges, alpha=0.55, color=color, label=label)
        ax.axvline(stats["p50"], color=color, ls="-", lw=1)
        ax.axvline(stats["p99"], color=color, ls=":", lw=1.2)
    deadline = f"deadline: one {summary['bin_ms']:g} ms bin"
    ax.axvline(deadline_us, color="red", lw=1.5, label=deadline)
    decoder = Path(summary["decoder"])  # with its folder: every C build holds a decoder.onnx
    title = f"{decoder.parent.name}/{decoder.name}: latency per bin, {summary['bins']} bins"
    ax.set(xscale="log", xlabel="step latency (µs, log scale); solid p50, dotted p99",
           ylabel="bins", title=f"{title} after {warm} warm-up")  # fmt: skip
    ax.legend(fontsize=8)


def _trace_panels(axes, run: ProfileRun, truth: np.ndarray, max_bins: int) -> None:
    """True and predicted trajectory of each output over the first bins, with its R² over the
    scored bins (context bins are fed, not scored: `cortexedge.scoring`)."""
    from cortexedge.metrics import r2_score

    scored = run.stream.scored if run.stream.scored is not None else np.ones(len(truth), bool)
    shown = slice(0, min(max_bins, len(truth)))
    t = np.arange(len(truth))[shown] * run.summary["bin_ms"] / 1e3
    backend = next(iter(run.latencies_ns))
    for k, (ax, out) in enumerate(zip(axes, run.summary["outputs"], strict=True)):
        ax.plot(t, truth[shown, k], label="true", lw=1)
        ax.plot(t, run.predictions[shown, k], label=f"predicted ({backend})", lw=1)
        r2 = r2_score(truth[scored, k], run.predictions[scored, k]) if scored.any() else np.nan
        ax.set(xlabel="time (s)", ylabel=axis_label(out),
               title=f"{out['name']}: R² {r2:.3f} over the {int(scored.sum())} scored bins "
               f"(first {t.size} bins shown)")  # fmt: skip
        ax.legend(fontsize=8, loc="upper right")

"""The sweep's summary, read from results.jsonl alone: a table per (recording, decoder, recipe)
with mean ± sd over seeds, its Pareto-optimal rows marked, and pareto.png.

A row is Pareto-optimal within its recording when no other row has at least its R² with no
more effective MACs and no more bytes (C flash where built, else the model's bytes), and is
strictly better in one.
"""

from __future__ import annotations

import io
import statistics
from collections import defaultdict
from pathlib import Path

from cortexedge.atomic import write_atomic
from cortexedge.errors import CortexEdgeError
from cortexedge.sweep import results

TABLE = "table.txt"
PLOT = "pareto.png"
COLUMNS = ("r2", "macs_effective", "macs_dense", "bytes", "c_flash_bytes", "c_ram_bytes")


def _stat(values: list) -> tuple[float, float] | None:
    values = [v for v in values if v is not None]
    if not values:
        return None
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def summarize(rows: list[dict]) -> list[dict]:
    """One entry per (recording, decoder, recipe): seeds, failures, mean/sd of each column."""
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for row in rows:
        groups[(row["recording"], row["decoder"], row["recipe"])].append(row)
    out = []
    for (rec, dec, recipe), members in groups.items():
        ok = [r for r in members if r["status"] == "ok"]
        entry = {"recording": rec, "decoder": dec, "recipe": recipe, "seeds": len(ok),
                 "failed": len(members) - len(ok)}  # fmt: skip
        entry.update({c: _stat([r.get(c) for r in ok]) for c in COLUMNS})
        out.append(entry)
    _mark_pareto(out)
    return out


def cost_bytes(entry: dict) -> float:
    """The size that counts: C flash where it was built, else the model's bytes."""
    return (entry["c_flash_bytes"] or entry["bytes"])[0]


def _mark_pareto(entries: list[dict]) -> None:
    scored = [e for e in entries if e["r2"] and e["macs_effective"]]
    for e in entries:
        e["pareto"] = False
    for e in scored:
        mine = (e["r2"][0], -e["macs_effective"][0], -cost_bytes(e))
        e["pareto"] = not any(
            o is not e
            and o["recording"] == e["recording"]
            and all(a >= b for a, b in zip(theirs, mine, strict=True))
            and theirs != mine
            for o in scored
            for theirs in [(o["r2"][0], -o["macs_effective"][0], -cost_bytes(o))]
        )


def _cell(stat: tuple[float, float] | None, digits: int) -> str:
    return "-" if stat is None else f"{stat[0]:.{digits}f}±{stat[1]:.{digits}f}"


def table(entries: list[dict]) -> str:
    """The text table (`*` marks Pareto-optimal rows)."""
    head = (f"  {'recording':14s} {'decoder':10s} {'recipe':12s} {'seeds':>5s} "
            f"{'R² (test)':>15s} {'MACs eff':>17s} {'MACs dense':>17s} {'bytes':>17s} "
            f"{'C flash':>15s} {'C RAM':>13s}")  # fmt: skip
    lines = [head]
    for e in sorted(entries, key=lambda e: (e["recording"], e["decoder"], e["recipe"])):
        seeds = f"{e['seeds']}" + (f"+{e['failed']}✗" if e["failed"] else "")
        lines.append(
            f"{'*' if e['pareto'] else ' '} {e['recording'][:14]:14s} {e['decoder']:10s} "
            f"{e['recipe'][:12]:12s} {seeds:>5s} {_cell(e['r2'], 4):>15s} "
            f"{_cell(e['macs_effective'], 0):>17s} {_cell(e['macs_dense'], 0):>17s} "
            f"{_cell(e['bytes'], 0):>17s} {_cell(e['c_flash_bytes'], 0):>15s} "
            f"{_cell(e['c_ram_bytes'], 0):>13s}"
        )
    lines.append("* Pareto-optimal within its recording (R² up, effective MACs and bytes down)")
    return "\n".join(lines)


def plot(entries: list[dict]) -> bytes:
    """pareto.png: mean R² against effective MACs and against bytes, the front joined."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import EngFormatter, NullFormatter

    scored = [e for e in entries if e["r2"]]
    flash = any(e["c_flash_bytes"] for e in scored)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.5), constrained_layout=True)
    xs = (("effective MACs per bin", lambda e: e["macs_effective"][0]),
          ("C flash bytes" if flash else "model bytes", cost_bytes))  # fmt: skip
    for ax, (label, x) in zip(axes, xs, strict=True):
        for dec in sorted({e["decoder"] for e in scored}):
            mine = [e for e in scored if e["decoder"] == dec]
            ax.errorbar([x(e) for e in mine], [e["r2"][0] for e in mine],
                        yerr=[e["r2"][1] for e in mine], fmt="o", capsize=3, label=dec)  # fmt: skip
        front = sorted((e for e in scored if e["pareto"]), key=x)
        ax.plot([x(e) for e in front], [e["r2"][0] for e in front], "k*", ms=12,
                mfc="none", label="Pareto-optimal")  # fmt: skip
        for e in scored:
            ax.annotate(e["recipe"], (x(e), e["r2"][0]), fontsize=7, xytext=(4, 4),
                        textcoords="offset points")  # fmt: skip
        values = [x(e) for e in scored]
        wide = min(values) > 0 and max(values) > 10 * min(values)
        ax.set(
            xlabel=label,
            ylabel="test R² (mean ± sd over seeds)",
            xscale="log" if wide else "linear",
        )
        ax.xaxis.set_major_formatter(EngFormatter())
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    return buf.getvalue()


def report(out: str | Path) -> str:
    """Write table.txt and pareto.png from `out`'s results.jsonl; returns the table."""
    out = Path(out)
    rows = list(results.read(out).values())
    if not rows:
        raise CortexEdgeError(f"{out}: no {results.RESULTS} results (not a sweep folder?)")
    entries = summarize(rows)
    text = table(entries)
    write_atomic(out / TABLE, (text + "\n").encode())
    write_atomic(out / PLOT, plot(entries))
    return text

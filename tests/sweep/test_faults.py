"""A worker SIGKILLed mid-cell is retried by Ray; the embedded Ray listens on loopback only."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.sweep.conftest import write_plan

pytestmark = pytest.mark.slow


def _task_pids(title: str) -> list[int]:
    """Processes whose title (Ray sets `ray::<task name>` while a task runs) is `title`."""
    pids = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and (proc / "cmdline").read_bytes().startswith(title.encode()):
                pids.append(int(proc.name))
        except OSError:
            continue
    return pids


def _listeners(ppid_tree: set[int]) -> list[str]:
    """Local addresses of the TCP listeners owned by the given processes."""
    out = subprocess.run(["ss", "-ltnpH"], capture_output=True, text=True).stdout
    return [
        line.split()[3]
        for line in out.splitlines()
        if any(f"pid={pid}," in line for pid in ppid_tree)
    ]


def _start_sweep(recording_dir: Path, folder: Path) -> subprocess.Popen:
    """`cortexedge sweep` of 4 cells (gru x 2 recipes x 2 seeds) on its own Ray of 2 CPUs."""
    shutil.copy(recording_dir / "rec.npz", folder)
    plan = write_plan(folder, decoders=("gru",))
    exe = str(Path(sys.executable).parent / "cortexedge")
    return subprocess.Popen(
        [exe, "sweep", str(plan), "--out", str(folder / "out"), "--workers", "2"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def test_killed_worker_is_retried_and_ray_stays_on_loopback(recording_dir, tmp_path):
    proc = _start_sweep(recording_dir, tmp_path)
    killed, listeners, deadline = None, [], time.monotonic() + 120
    while killed is None and proc.poll() is None and time.monotonic() < deadline:
        pids = _task_pids("ray::build_cell")
        if pids:
            if shutil.which("ss"):
                listeners = _listeners({*pids, *_task_pids("ray::train_run")})
            os.kill(pids[0], signal.SIGKILL)
            killed = pids[0]
        time.sleep(0.05)
    stdout, stderr = proc.communicate(timeout=300)
    assert killed is not None, f"no cell was seen running: {stderr[-1500:]}"
    assert proc.returncode == 0, stderr[-2000:]
    rows = [json.loads(x) for x in (tmp_path / "out" / "results.jsonl").read_text().splitlines()]
    assert len(rows) == 4 and all(r["status"] == "ok" for r in rows), rows
    assert "4 cells ok, 0 failed" in stdout
    assert not list((tmp_path / "out" / "cells").glob(".stage-*"))
    assert listeners or not shutil.which("ss")
    assert all(a.startswith(("127.0.0.1:", "[::ffff:127.0.0.1]:")) for a in listeners), listeners


def test_ctrl_c_stops_cleanly_keeping_finished_cells(recording_dir, tmp_path):
    proc = _start_sweep(recording_dir, tmp_path)
    results = tmp_path / "out" / "results.jsonl"
    deadline = time.monotonic() + 120

    def finished() -> bool:  # one whole line: the file exists a moment before its line
        return results.is_file() and results.read_text().endswith("\n")

    while proc.poll() is None and not finished() and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130 and "interrupted" in stderr, stderr[-2000:]
    rows = [json.loads(x) for x in results.read_text().splitlines()]
    assert 1 <= len(rows) < 4 and all(r["status"] == "ok" for r in rows)
    done = {p.name for p in (tmp_path / "out" / "cells").iterdir() if not p.name.startswith(".")}
    # every recorded cell kept its artifacts; a cell that finished in the instant of the Ctrl-C,
    # after the last results line, is a whole folder the next run recomputes and replaces
    assert {r["key"] for r in rows} <= done

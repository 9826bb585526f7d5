"""Run a plan on Ray: one task per training run, one per cell, depending on its run's task.

Locally `run` starts an embedded Ray of `workers` CPUs (loopback only, no dashboard); with
`address` ("auto" or HOST:PORT) it joins a running cluster, whose nodes must see `out` and the
recordings at the same paths. Every task asks for one CPU and pins torch to it, so N workers
use N cores. The driver keeps only ObjectRefs and result rows and streams each row to disk.
"""

from __future__ import annotations

import os
import re
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path

from cortexedge.errors import CortexEdgeError
from cortexedge.sweep import results
from cortexedge.sweep.cells import build_cell, train_run
from cortexedge.sweep.plan import Cell, Plan, load_plan
from cortexedge.sweep.progress import Progress

THREADS = 1  # per task: these decoders train fastest on one thread (see `fit`'s threads)
RETRIES = 3  # times Ray reruns a task whose worker process died
_ADDRESS = re.compile(r"auto|(ray://)?[\w.\-]+:\d{1,5}")


# Ray binds its servers to loopback when it runs as a single-machine instance (as it does on
# macOS and Windows); read when ray is first imported, so set before that.
LOOPBACK_ENV = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}


def _start(address: str | None, workers: int | None) -> bool:
    """Start or join Ray; True when this call started it (and so shuts it down)."""
    if address is None:
        os.environ.update(LOOPBACK_ENV)
    import ray

    if ray.is_initialized():
        return False
    if address is not None:
        if not _ADDRESS.fullmatch(address):
            raise CortexEdgeError(f"--address must be 'auto' or HOST:PORT, got '{address}'")
        try:
            ray.init(address=address, log_to_driver=False)
        except (ConnectionError, ValueError, RuntimeError) as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise CortexEdgeError(f"cannot join the Ray cluster at {address}: {first}") from None
        return True
    ray.init(num_cpus=workers or os.cpu_count(), include_dashboard=False, log_to_driver=False)
    return True


def _error_line(err: BaseException) -> str:
    """The one-line reason of a task's failure (the user's exception, not Ray's wrapper)."""
    cause = getattr(err, "cause", None) or err
    text = str(cause).strip().splitlines()
    return f"{type(cause).__name__}: {text[0] if text else ''}".rstrip(": ")


def _submit(plan: Plan, todo: list[Cell], out: Path) -> tuple[dict, dict]:
    """Submit the training runs the cells need and the cells; returns the refs of both
    ({cell ref: cell}, {group key: training ref})."""
    import ray

    opts = dict(num_cpus=THREADS, max_retries=RETRIES)
    train_task = ray.remote(train_run).options(**opts, name="train_run")
    cell_task = ray.remote(build_cell).options(**opts, name="build_cell")
    trained: dict[str, object] = {}
    refs = {}
    for cell in todo:
        if cell.group not in trained:
            group = plan.group_config(cell.recording, cell.decoder, cell.seed)
            folder = str(out / "trained" / cell.group)
            trained[cell.group] = train_task.remote(cell.recording, group, folder, THREADS)
        spec = {**asdict(cell), "train": plan.train, "data": plan.data, "build": plan.build}
        folder = str(out / "cells" / cell.key)
        refs[cell_task.remote(spec, trained[cell.group], folder, THREADS)] = cell
    return refs, trained


def _row(cell: Cell, status: str, **facts) -> dict:
    return {"key": cell.key, "status": status, "recording": Path(cell.recording).name,
            "fingerprint": cell.fingerprint, "decoder": cell.decoder,
            "recipe": cell.recipe_name, "recipe_config": cell.recipe, "seed": cell.seed,
            **facts}  # fmt: skip


def _running(pending: list, refs: dict, trained: dict, cpus: int) -> int:
    """Tasks that can be running: unfinished trainings and cells whose training is done."""
    import ray

    done, waiting = ray.wait(list(trained.values()), num_returns=len(trained), timeout=0)
    ready = {key for key, ref in trained.items() if ref in set(done)}
    return min(cpus, len(waiting) + sum(refs[ref].group in ready for ref in pending))


def _collect(refs: dict, trained: dict, out: Path, bar: Progress | None, cpus: int) -> None:
    """Stream results to results.jsonl as cells finish; Ctrl-C cancels the rest."""
    import ray

    def record(ready: list) -> None:
        for ref in ready:
            cell = refs[ref]
            try:
                row = _row(cell, "ok", **ray.get(ref))
            except Exception as e:  # a failed cell is recorded; the sweep goes on
                row = _row(cell, "failed", error=_error_line(e))
            results.append(out, row)
            if bar:
                bar.update(done=row["status"] == "ok", failed=row["status"] != "ok")

    pending = list(refs)
    try:
        with _ctrl_c() as stop:
            while pending and not stop.is_set():
                ready, pending = ray.wait(pending, num_returns=1, timeout=1.0)
                record(ready)
                if bar:
                    bar.update(running=_running(pending, refs, trained, cpus))
        if stop.is_set():
            raise KeyboardInterrupt
    except KeyboardInterrupt:  # keep what has finished by now, then stop the rest
        ready, pending = ray.wait(pending, num_returns=len(pending), timeout=0)
        record([ref for ref in ready if _finished_ok(ref)])
        for ref in pending:
            ray.cancel(ref, force=True)
        raise


@contextmanager
def _ctrl_c() -> Iterator[threading.Event]:
    """An event set by Ctrl-C (SIGINT) while the block runs. Ray can drop a KeyboardInterrupt
    raised inside its own callbacks ("Exception ignored in ..."), so the signal only sets the
    event and the wait loop stops on it; off the main thread the default handling stays."""
    stop = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return
    previous = signal.signal(signal.SIGINT, lambda signum, frame: stop.set())
    try:
        yield stop
    finally:
        signal.signal(signal.SIGINT, previous)


def _finished_ok(ref) -> bool:
    """True for a finished cell that succeeded (an interrupted one is not recorded as failed)."""
    import ray

    try:
        ray.get(ref, timeout=0)
    except Exception:
        return False
    return True


def run(
    plan: Plan | str | os.PathLike,
    out: str | os.PathLike,
    *,
    address: str | None = None,
    workers: int | None = None,
    progress: bool = True,
    trust_code: bool = False,
) -> list[dict]:
    """Run every cell of `plan` not yet complete in `out`; returns the final rows of all cells.
    `trust_code` lets a plan file name user decoders (file.py:Class).

    Cells already complete are skipped (a rerun computes nothing). Failed cells are recorded
    with their error and retried by the next run.
    """
    plan = plan if isinstance(plan, Plan) else load_plan(plan, trust_code)
    if workers is not None and workers < 1:
        raise CortexEdgeError(f"--workers must be >= 1, got {workers}")
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise CortexEdgeError(f"--out {out} exists and is not a folder")
    out.mkdir(parents=True, exist_ok=True)
    cells = plan.cells()
    done = results.complete(out)
    todo = [c for c in cells if c.key not in done]
    if todo:
        started = _start(address, workers)
        import ray

        try:
            results.clear_stale(out)
            cpus = int(ray.cluster_resources().get("CPU", 1))
            bar = Progress(len(todo)) if progress else None
            _collect(*_submit(plan, todo, out), out, bar, cpus)
            results.clear_stale(out)  # a worker killed mid-cell left its staging folder
            if bar:
                bar.close()
        finally:
            if started:
                ray.shutdown()
    rows = results.read(out)
    return [rows[c.key] for c in cells if c.key in rows]

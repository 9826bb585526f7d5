"""Runs CLI commands and kills them at chosen file-system events: the engine of test_kill.py.

Run as `python kill_driver.py PLAN.json`; prints one JSON object with the results. The plan has
`setup` (commands run to completion, in order) and `cases`: a command, its output path and a
pristine copy of the old artifact. For each case the driver:
  1. restores the old artifact and runs the command to completion, recording every file-system
     change it makes under `root` (Python's audit events: open for writing, rename, replace,
     remove, mkdir, link, rmtree, mkstemp/mkdtemp), and snapshots the new artifact;
  2. for each of SIGINT, then SIGKILL, and for each chosen event index k, restores the old
     artifact and runs the command again with SIGKILL/SIGINT sent to itself just before its
     k-th event, then snapshots the output path and lists what else is left beside it;
  3. runs the command once more, unkilled (it must clear whatever the kills left).
torch and the CLI are imported once; every run is a fork of this process, so a kill point
costs only the command's own work.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import sys
from pathlib import Path

import torch  # noqa: F401  (imported once, before the forks)

from cortexedge.cli.main import main

WRITES = {
    "os.rename", "os.replace", "os.remove", "os.rmdir", "os.mkdir", "os.link", "os.symlink",
    "os.truncate", "os.chmod", "shutil.rmtree", "tempfile.mkstemp", "tempfile.mkdtemp",
}  # fmt: skip
WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND


def _is_write(event: str, args: tuple) -> bool:
    if event == "open":
        mode, flags = args[1], args[2]
        if isinstance(mode, str):
            return any(c in mode for c in "wax+")
        return bool(flags & WRITE_FLAGS)
    return event in WRITES


def _under(root: str, args: tuple) -> str | None:
    for a in args[:2]:
        if isinstance(a, (str, bytes, os.PathLike)):
            path = os.path.abspath(os.fsdecode(a))
            if path.startswith(root):
                return path
    return None


def _run(args: list[str], root: str, log: Path, kill: tuple[int, int] | None) -> dict:
    """Fork, run the command in the child (killed before event kill[1] with signal kill[0]),
    and return its exit and the events it made."""
    events_file = log.with_suffix(".events")
    pid = os.fork()
    if pid == 0:
        fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        seen: list[str] = []

        def hook(event: str, hargs: tuple) -> None:
            if event not in WRITES and event != "open":
                return
            path = _under(root, hargs)
            if path is None or not _is_write(event, hargs) or path.startswith(str(log.parent)):
                return
            seen.append(f"{event} {path}")
            if kill is not None and len(seen) == kill[1]:
                os.kill(os.getpid(), kill[0])

        sys.addaudithook(hook)
        code = main(args)
        sys.stdout.flush()
        sys.stderr.flush()
        events_file.write_text("\n".join(seen))
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    events = events_file.read_text().splitlines() if events_file.exists() else []
    return {
        "signal": os.WTERMSIG(status) if os.WIFSIGNALED(status) else None,
        "code": os.WEXITSTATUS(status) if os.WIFEXITED(status) else None,
        "events": events,
        "log": log.read_text(errors="replace")[-2000:],
    }


def snapshot(path: Path) -> dict[str, str] | None:
    """relative path -> sha256 of every file at `path` (a file is ""), None when absent."""
    if path.is_file():
        return {"": hashlib.sha256(path.read_bytes()).hexdigest()}
    if not path.is_dir():
        return None
    return {
        str(f.relative_to(path)): hashlib.sha256(f.read_bytes()).hexdigest()
        for f in sorted(path.rglob("*"))
        if f.is_file()
    }


def _check(kind: str, out: Path) -> str | None:
    """None when `out` holds a complete artifact of `kind` that passes its load-time checks."""
    from cortexedge.runtime.backends.c_manifest import load_manifest
    from cortexedge.runtime.model import load_decoder
    from cortexedge.train.checkpoint import read_sealed

    load = {"run": read_sealed, "onnx": load_decoder, "c": load_manifest}[kind]
    try:
        load(out)
    except Exception as e:  # noqa: BLE001 (the test reports whatever the loader says)
        return f"{type(e).__name__}: {e}"
    return None


def _restore(pristine: Path, out: Path) -> None:
    if out.is_dir():
        shutil.rmtree(out)
    elif out.exists():
        out.unlink()
    if pristine.is_dir():
        shutil.copytree(pristine, out)
    else:
        shutil.copy2(pristine, out)


def kill_points(n: int, per_signal: int) -> list[int]:
    """Event indices to kill at: the first, spread through the middle, and the last few
    (where the artifact is put in place)."""
    tail = list(range(max(1, n - 2), n + 1))
    spread = per_signal - len(tail)
    return sorted({*(1 + (n - 4) * f // spread for f in range(spread)), *tail})


def _case(case: dict, root: str, logs: Path) -> dict:
    out, pristine = Path(case["out"]), Path(case["pristine"])
    beside = sorted(p.name for p in out.parent.iterdir() if p.name != out.name)

    def attempt(tag: str, kill: tuple[int, int] | None) -> dict:
        _restore(pristine, out)
        result = _run(case["args"], root, logs / f"{case['name']}-{tag}.log", kill)
        result["state"] = snapshot(out)
        result["invalid"] = _check(case["kind"], out)
        result["left"] = sorted(
            p.name for p in out.parent.iterdir() if p.name != out.name and p.name not in beside
        )
        return result

    clean = attempt("clean", None)
    points = kill_points(len(clean["events"]), case.get("points", 5))
    kills = [
        {"sig": sig.name, "at": k, **attempt(f"{sig.name}-{k}", (sig, k))}
        for sig in (signal.SIGINT, signal.SIGKILL)
        for k in points
    ]
    final = attempt("final", None)
    old = snapshot(pristine)
    return {"name": case["name"], "old": old, "clean": clean, "kills": kills, "final": final}


def drive(plan: dict) -> dict:
    root = os.path.abspath(plan["root"])
    logs = Path(root) / "logs"
    logs.mkdir(exist_ok=True)
    for i, args in enumerate(plan["setup"]):
        done = _run(args, root, logs / f"setup-{i}.log", None)
        if done["code"] != 0:
            raise SystemExit(f"setup command {args} failed:\n{done['log']}")
    return {"cases": [_case(c, root, logs) for c in plan["cases"]]}


if __name__ == "__main__":
    print(json.dumps(drive(json.loads(Path(sys.argv[1]).read_text()))))

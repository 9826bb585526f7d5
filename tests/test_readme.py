"""The README cannot drift from the code: every `cortexedge` command and Python block in it runs.

Blocks run in order in one scratch folder, the way a reader would paste them.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

FENCE = re.compile(r"```(\w+)\n(.*?)```", re.S)


def _blocks(lang: str, text: str | None = None) -> list[str]:
    text = (REPO / "README.md").read_text() if text is None else text
    return [body for kind, body in FENCE.findall(text) if kind == lang]


def _sweeps() -> str:
    """The README's Sweeps section (its blocks run together, in their own test)."""
    text = (REPO / "README.md").read_text()
    start = text.index("## Sweeps")
    return text[start : text.index("\n## ", start + 1)]


def _python_blocks() -> list[str]:
    """The Python blocks outside the Sweeps section."""
    return [b for b in _blocks("python") if b not in _blocks("python", _sweeps())]


def _commands() -> list[str]:
    lines = [line.split("#")[0].strip() for body in _blocks("bash") for line in body.splitlines()]
    return [line for line in lines if line.startswith("cortexedge ")]


def test_readme_shows_the_two_setup_commands():
    setup = "\n".join(_blocks("bash"))
    assert "make demo" in setup and "make test" in setup
    assert len(_commands()) >= 6 and len(_blocks("python")) >= 2


@pytest.fixture(scope="module")
def scratch(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("readme")


def _env() -> dict:
    bin_dir = str(Path(sys.executable).parent)
    return {**os.environ, "PATH": bin_dir + os.pathsep + os.environ["PATH"]}


def _activation() -> str:
    """The README's own instruction for reaching the CLI (a `source ...` line)."""
    lines = [line.strip() for body in _blocks("bash") for line in body.splitlines()]
    return next(line for line in lines if line.startswith("source "))


def _fresh_shell_env() -> dict:
    """A new user's shell: no virtual environment active, the venv's bin not on PATH."""
    venv_bin = str(Path(sys.executable).parent)
    path = [p for p in os.environ["PATH"].split(os.pathsep) if p != venv_bin]
    env = {k: v for k, v in os.environ.items() if k != "VIRTUAL_ENV"}
    return {**env, "PATH": os.pathsep.join(path)}


@pytest.mark.slow
@pytest.mark.parametrize("index", range(len(_commands())))
def test_readme_command_runs(index, scratch):
    """Each CLI line as a new user runs it: a fresh shell, the README's activation line run in
    the repository, then the command in the scratch folder."""
    cmd = _commands()[index]
    script = (
        f"cd {shlex.quote(str(REPO))} && {_activation()} && cd {shlex.quote(str(scratch))} && {cmd}"
    )
    r = subprocess.run(
        ["bash", "-c", script], capture_output=True, text=True, env=_fresh_shell_env()
    )
    assert r.returncode == 0, f"{cmd}\n{r.stderr[-2000:]}"


def test_only_the_activation_line_puts_the_cli_on_path(tmp_path):
    """The fresh shell really lacks the venv's CLI, so the command test relies on the README."""
    venv_cli = str(Path(sys.executable).parent / "cortexedge")
    found = {}
    for label, script in (("fresh", ""), ("activated", f"{_activation()} && ")):
        line = f"cd {shlex.quote(str(REPO))} && {script}command -v cortexedge"
        r = subprocess.run(["bash", "-c", line], capture_output=True, text=True,
                           env=_fresh_shell_env())  # fmt: skip
        found[label] = r.stdout.strip()
    assert found["fresh"] != venv_cli and found["activated"] == venv_cli


@pytest.mark.slow
@pytest.mark.parametrize("index", range(len(_python_blocks())))
def test_readme_python_runs(index, scratch):
    r = subprocess.run(
        [sys.executable, "-c", _python_blocks()[index]],
        cwd=scratch,
        capture_output=True,
        text=True,
        env=_env(),
    )
    assert r.returncode == 0, r.stderr[-2000:]


@pytest.mark.slow
def test_readme_sweep_section_runs(tmp_path):
    """The Sweeps section as a reader pastes it: the Python block, then each local command of
    its console blocks (the cluster lines, `ray start` and `--address`, need a cluster)."""
    section = _sweeps()
    for block in _blocks("python", section):
        r = subprocess.run([sys.executable, "-c", block], cwd=tmp_path, capture_output=True,
                           text=True, env=_env())  # fmt: skip
        assert r.returncode == 0, r.stderr[-2000:]
    lines = [
        line.split("#")[0].strip() for b in _blocks("console", section) for line in b.splitlines()
    ]
    local = [x for x in lines if x.startswith("cortexedge ") and "--address" not in x]
    assert len(local) == 3
    outputs = []
    for line in local:
        r = subprocess.run(["bash", "-c", line], cwd=tmp_path, capture_output=True, text=True,
                           env=_env())  # fmt: skip
        assert r.returncode == 0, f"{line}\n{r.stderr[-2000:]}"
        outputs.append(r.stdout)
    # the Python block ran the 2 cells: the dry run finds them complete, the run redoes nothing
    assert "2 already complete" in outputs[0] and "2 cells ok, 0 failed" in outputs[1]

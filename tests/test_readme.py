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


def _blocks(lang: str) -> list[str]:
    return [body for kind, body in FENCE.findall((REPO / "README.md").read_text()) if kind == lang]


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


@pytest.mark.slow
@pytest.mark.parametrize("index", range(len(_commands())))
def test_readme_command_runs(index, scratch):
    cmd = _commands()[index]
    r = subprocess.run(shlex.split(cmd), cwd=scratch, capture_output=True, text=True, env=_env())
    assert r.returncode == 0, f"{cmd}\n{r.stderr[-2000:]}"


@pytest.mark.slow
@pytest.mark.parametrize("index", range(len(_blocks("python"))))
def test_readme_python_runs(index, scratch):
    r = subprocess.run(
        [sys.executable, "-c", _blocks("python")[index]],
        cwd=scratch,
        capture_output=True,
        text=True,
        env=_env(),
    )
    assert r.returncode == 0, r.stderr[-2000:]

"""The distribution maps the stage folders into cortexedge.* and installs nothing else."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from tests.conftest import REPO

STAGES = {
    "train": "train",
    "compress": "compress",
    "export": "export",
    "runtime": "runtime",
    "sweep": "sweep",
}


def _pyproject() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text())


def test_every_package_folder_is_listed():
    cfg = _pyproject()["tool"]["setuptools"]
    listed = set(cfg["packages"])
    dirs = {"cortexedge": "cortexedge", **{f"cortexedge.{k}": v for k, v in STAGES.items()}}
    assert cfg["package-dir"] == dirs
    found = set()
    for pkg, folder in dirs.items():
        for init in (REPO / folder).rglob("__init__.py"):
            rel = init.parent.relative_to(REPO / folder).parts
            found.add(".".join((pkg, *rel)))
    assert found == listed, f"pyproject packages out of date: {found ^ listed}"


@pytest.mark.parametrize("name", ["train", "export", "compress", "runtime", "sweep"])
def test_no_top_level_stage_import(name, tmp_path):
    # run outside the repository so the working directory cannot shadow the install
    r = subprocess.run(
        [sys.executable, "-c", f"import importlib.util as u; print(u.find_spec('{name}'))"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert r.stdout.strip() == "None"


def test_stage_namespaces_resolve_to_folders(tmp_path):
    code = "import cortexedge.train as t, cortexedge.runtime as r; print(t.__file__, r.__file__)"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path)
    train_file, runtime_file = r.stdout.split()
    assert Path(train_file) == REPO / "train" / "__init__.py"
    assert Path(runtime_file) == REPO / "runtime" / "__init__.py"


def test_torch_is_pinned_to_the_cpu_build():
    deps = _pyproject()["project"]["dependencies"]
    assert "torch==2.13.0" in deps

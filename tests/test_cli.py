"""The console script: every subcommand has --help; user errors are one line with exit 2."""

from __future__ import annotations

import subprocess
import sys

import pytest

SUBCOMMANDS = ["data", "train", "compress", "export", "profile", "demo"]


def _run(*args: str, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "cortexedge", *args], capture_output=True, text=True, cwd=cwd
    )


@pytest.mark.parametrize("cmd", SUBCOMMANDS)
def test_every_subcommand_has_help(cmd):
    r = _run(cmd, "--help")
    assert r.returncode == 0, r.stderr
    assert "Usage: cortexedge" in r.stdout


def test_unknown_option_exits_2():
    r = _run("data", "synth", "reaching", "--bogus")
    assert r.returncode == 2
    assert r.stderr.splitlines() == [
        "error: No such option '--bogus'. Did you mean '--out'?"
        " (see 'cortexedge data synth --help')"
    ]


def test_a_bad_value_is_one_line_naming_the_option():
    r = _run("train", "--epochs", "abc")
    assert r.returncode == 2
    assert r.stderr.splitlines() == [
        "error: Invalid value for '--epochs': 'abc' is not a valid integer range."
        " (see 'cortexedge train --help')"
    ]


def test_missing_recording_is_one_line_exit_2(tmp_path):
    r = _run("data", "info", str(tmp_path / "absent.npz"))
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [
        f"error: recording not found: {tmp_path / 'absent.npz'}"
    ]
    assert "Traceback" not in r.stderr


def test_output_in_missing_folder_exits_2(tmp_path):
    r = _run("data", "synth", "reaching", "--out", str(tmp_path / "no" / "r.npz"))
    assert r.returncode == 2
    assert "output folder does not exist" in r.stderr
    assert not (tmp_path / "no").exists()

"""Atomic writes: complete files with the usual mode, or nothing at all."""

from __future__ import annotations

import os

import pytest

from cortexedge.atomic import atomic_open, write_atomic


def test_write_atomic_gives_complete_file_with_umask_mode(tmp_path):
    mask = os.umask(0o022)
    try:
        path = write_atomic(tmp_path / "a.bin", b"abc")
    finally:
        os.umask(mask)
    assert path.read_bytes() == b"abc"
    assert path.stat().st_mode & 0o777 == 0o644
    assert [p.name for p in tmp_path.iterdir()] == ["a.bin"]


def test_failure_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "keep.json"
    target.write_text("old")
    with pytest.raises(RuntimeError, match="boom"):
        with atomic_open(target) as f:
            f.write(b"half")
            raise RuntimeError("boom")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["keep.json"]


def test_the_file_and_its_folder_reach_the_disk_before_and_after_the_rename(tmp_path, monkeypatch):
    """fsync of the temporary file, then the rename, then fsync of the folder (SQLite's order)."""
    events = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        events.append("dir" if os.path.isdir(f"/proc/self/fd/{fd}") else "file")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", lambda a, b: events.append("rename") or real_replace(a, b))
    write_atomic(tmp_path / "a.bin", b"data")
    assert events == ["file", "rename", "dir"]
    assert (tmp_path / "a.bin").read_bytes() == b"data"

"""Atomic writes: complete files with the usual mode, or nothing at all."""

from __future__ import annotations

import os

import pytest

from cortexedge.atomic import (
    STAGE,
    _exchange,
    atomic_open,
    refuse_overwriting,
    staged_folder,
    write_atomic,
)
from cortexedge.errors import CortexEdgeError


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


def test_exchange_swaps_two_folders_atomically(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    (a / "which").write_text("a")
    (b / "which").write_text("b")
    assert _exchange(a, b)  # Linux renameat2(RENAME_EXCHANGE)
    assert (a / "which").read_text() == "b" and (b / "which").read_text() == "a"


def _tree(folder):
    return {p.name: p.read_text() for p in sorted(folder.iterdir())}


def test_a_staged_folder_replaces_the_old_one_whole_and_keeps_what_the_writer_did_not_make(
    tmp_path,
):
    out = tmp_path / "run"
    out.mkdir()
    for name, text in (("model", "old"), ("metrics", "old"), ("notes.txt", "mine")):
        (out / name).write_text(text)
    (tmp_path / f".run{STAGE}killed").mkdir()  # left by a SIGKILLed writer
    with staged_folder(out, keep=lambda name: name == "notes.txt") as stage:
        assert _tree(out)["model"] == "old"  # nothing changes before the block completes
        (stage / "model").write_text("new")
    # the stale metrics of the old run are gone, the user's file is carried over, not copied
    assert _tree(out) == {"model": "new", "notes.txt": "mine"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]


def test_an_interrupted_staged_folder_leaves_the_old_one_and_no_stage(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "model").write_text("old")
    with pytest.raises(KeyboardInterrupt), staged_folder(out) as stage:
        (stage / "model").write_text("half")
        raise KeyboardInterrupt
    assert _tree(out) == {"model": "old"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]


def test_a_temporary_file_left_by_a_killed_writer_goes_with_the_next_write(tmp_path):
    (tmp_path / ".a.bin.x1y2.tmp").write_bytes(b"torn")
    (tmp_path / ".other.bin.x1y2.tmp").write_bytes(b"another file's writer")
    write_atomic(tmp_path / "a.bin", b"abc")
    assert sorted(p.name for p in tmp_path.iterdir()) == [".other.bin.x1y2.tmp", "a.bin"]


@pytest.mark.parametrize("out", ["run", "run/model.safetensors", "rec.npz", "."])
def test_an_output_that_is_or_holds_an_input_is_refused(tmp_path, monkeypatch, out):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "run").mkdir()
    with pytest.raises(CortexEdgeError, match=r"(is|holds) the input .*choose another path"):
        refuse_overwriting(out, "rec.npz", None, "run", "run/model.safetensors")
    refuse_overwriting("run/decoder.onnx", "rec.npz", "run", "run/model.safetensors")

"""Atomic writes of files and folders, for every artifact the toolkit writes: nothing is ever
half-written, and nothing is a mix of an old artifact and a new one.

A file goes to a temporary file in the destination folder, which is flushed to disk and renamed
over the target only once complete; the folder is then flushed too, so that after a power cut
the target is the old file or the new one, never a torn one (SQLite's recipe). On any error the
temporary file is removed and the target is untouched.

A folder artifact (a run, a C build, a sweep cell) is built in a hidden sibling,
`.<name>.partial-*`, and put in place whole: a new folder by one rename, an existing one by an
atomic exchange (Linux `renameat2`), so that at every instant the path holds the old folder or
the new one. Entries of the old folder that the caller says it did not make are carried over
(hard links), never deleted. A SIGKILL cannot run cleanup code: the temporary file or hidden
folder it leaves is removed by the next write to the same path.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from cortexedge.errors import CortexEdgeError


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextmanager
def atomic_open(path: str | os.PathLike) -> Iterator[BinaryIO]:
    """A binary file to write `path` through; it replaces `path` when the block succeeds."""
    path = Path(path)
    for stale in path.parent.glob(f".{glob_escape(path.name)}.*.tmp"):  # left by a SIGKILL
        stale.unlink(missing_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp creates 0600; give the usual mode
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def fsync_dir(folder: str | os.PathLike) -> None:
    """Flush a folder's entries (a rename in it) to disk; a no-op where folders cannot be opened."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:  # some file systems refuse fsync on a directory
        pass
    finally:
        os.close(fd)


def write_atomic(path: str | os.PathLike, data: bytes) -> Path:
    """Write `data` to `path` atomically; returns the path."""
    with atomic_open(path) as f:
        f.write(data)
    return Path(path)


STAGE = ".partial-"  # a folder being built is .<name>.partial-<random>, next to its final path
_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def glob_escape(name: str) -> str:
    """`name` as a literal in a glob pattern."""
    return "".join(f"[{c}]" if c in "*?[" else c for c in name)


def staging_folder(out: Path) -> Path:
    """A fresh hidden sibling of `out` to build the folder in; those of killed writers go."""
    out.parent.mkdir(parents=True, exist_ok=True)
    clear_stages(out.parent, out.name)
    return Path(tempfile.mkdtemp(prefix=f".{out.name}{STAGE}", dir=out.parent))


def clear_stages(folder: Path, name: str = "*") -> None:
    """Remove the staging folders (of `name`, or of every entry) that killed writers left."""
    pattern = f".{name if name == '*' else glob_escape(name)}{STAGE}*"
    for stale in folder.glob(pattern) if folder.is_dir() else ():
        shutil.rmtree(stale, ignore_errors=True)


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths atomically; False where the system cannot (then the caller falls back)."""
    try:
        fn = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return False
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    return fn(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0


def _sync_tree(folder: Path) -> None:
    for f in folder.rglob("*"):
        if f.is_file() and not f.is_symlink():
            with open(f, "rb") as handle:
                os.fsync(handle.fileno())
    fsync_dir(folder)


def publish_folder(stage: Path, out: Path, *, keep: Callable[[str], bool] | None = None) -> None:
    """Put the complete folder `stage` at `out` in one step. Entries of an existing `out` whose
    name `keep` accepts (files the writer did not make) are hard-linked into the new folder."""
    for entry in out.iterdir() if keep is not None and out.is_dir() else ():
        if keep(entry.name) and not (stage / entry.name).exists():
            if entry.is_dir() and not entry.is_symlink():
                shutil.copytree(entry, stage / entry.name, symlinks=True, copy_function=os.link)
            else:
                os.link(entry, stage / entry.name, follow_symlinks=False)
    _sync_tree(stage)
    if not out.exists():
        os.rename(stage, out)
    elif _exchange(stage, out):
        shutil.rmtree(stage)  # now holds the previous folder
    else:  # no atomic exchange here: the old folder is moved aside, briefly leaving no folder
        old = Path(tempfile.mkdtemp(prefix=f".{out.name}{STAGE}old-", dir=out.parent))
        os.rename(out, old / out.name)
        os.rename(stage, out)
        shutil.rmtree(old)
    fsync_dir(out.parent)


@contextmanager
def staged_folder(out: Path, *, keep: Callable[[str], bool] | None = None) -> Iterator[Path]:
    """A fresh hidden folder that replaces `out` whole when the block succeeds (see
    `publish_folder`); on any error or interrupt it is removed and `out` is untouched."""
    stage = staging_folder(Path(out))
    try:
        yield stage
        publish_folder(stage, Path(out), keep=keep)
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def refuse_overwriting(out: str | os.PathLike, *inputs: object, option: str = "output") -> None:
    """Refuse an output path that is one of the command's inputs or holds one (a folder to be
    replaced). Inputs that are not paths (a model object, None) are skipped."""
    target = Path(out).resolve()
    for given in inputs:
        if not isinstance(given, (str, os.PathLike)):
            continue
        source = Path(given).resolve()
        if target == source or target in source.parents:
            what = "is" if target == source else "holds"
            raise CortexEdgeError(f"{option} {out} {what} the input {given}; choose another path")


def check_file_out(
    out: str | os.PathLike, *inputs: object, option: str = "output", exists: str | None = None
) -> Path:
    """The file output `out`, refused when its folder is missing, it is a folder, it is or holds
    one of `inputs`, or it exists and `exists` says why it may not be replaced (None: it may)."""
    out = Path(out)
    if not out.parent.is_dir():
        raise CortexEdgeError(f"output folder does not exist: {out.parent}")
    if out.is_dir():
        raise CortexEdgeError(f"output path is a folder, expected a file name: {out}")
    refuse_overwriting(out, *inputs, option=option)
    if exists is not None and out.exists():
        raise CortexEdgeError(f"{option} {out} exists{exists}")
    return out

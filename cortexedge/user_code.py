"""A user's decoder class, named as `my_decoders.py:NormGRU` or `package.module:NormGRU`.

Code is imported only on an explicit opt-in. Naming a class on `cortexedge train --model` is
that opt-in for the run that names it. A checkpoint records the class it holds (`model_code`:
the import spec, with the file's sha256), and rebuilding it from that record needs
`trust_code=True` (`--trust-code` on the CLI), as with Hugging Face's `trust_remote_code`:
without it the load stops with one line naming the class and the flag, and nothing is imported.

An imported class joins the family table under its spec, with the default training spec, so
every stage reads it as it reads ours: what it streams like and what it reads come from the
class's own declarations (`cortexedge/families.py`).
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path

from cortexedge.errors import CheckpointError, CortexEdgeError

TRUST_HINT = "pass --trust-code (trust_code=True in Python) to import it"
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_MODULE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")


@dataclass(frozen=True)
class CodeRef:
    """Where a user's class lives: a `.py` file (absolute path) or a dotted module, and a name."""

    module: str
    name: str

    @property
    def is_file(self) -> bool:
        """Whether the class comes from a source file rather than an importable module."""
        return self.module.endswith(".py")

    @property
    def spec(self) -> str:
        """`module:name`, the text a checkpoint records and the family table keys on."""
        return f"{self.module}:{self.name}"

    def record(self) -> dict:
        """What a checkpoint stores: the spec and, for a file, the sha256 of its source."""
        digest = _file_sha256(Path(self.module)) if self.is_file else None
        return {"spec": self.spec, "sha256": digest}


def is_code_ref(text: str) -> bool:
    """Whether a --model value names user code (`file.py:Class` or `module:Class`)."""
    return ":" in text


def parse_ref(text: str, what: str = "--model") -> CodeRef:
    """A CodeRef from `path/to/file.py:Class` (made absolute) or `package.module:Class`;
    `what` names the source of the text in errors."""
    module, sep, name = text.rpartition(":")
    if not sep or not module or not _IDENT.fullmatch(name):
        raise CortexEdgeError(
            f"{what} {text!r}: expected file.py:ClassName or package.module:ClassName"
        )
    if module.endswith(".py"):
        path = Path(module).expanduser()
        if not path.is_file():
            raise CortexEdgeError(f"{what} {text!r}: no such file {path}")
        return CodeRef(str(path.resolve()), name)
    if not _MODULE.fullmatch(module):
        raise CortexEdgeError(f"{what} {text!r}: '{module}' is neither a .py file nor a module")
    return CodeRef(module, name)


def import_class(ref: CodeRef) -> type:
    """Import the class `ref` names (callers have the user's opt-in); CortexEdgeError for a
    file or module that fails to import, or a name that is not a class in it."""
    try:
        module = (
            _import_file(Path(ref.module)) if ref.is_file else importlib.import_module(ref.module)
        )
    except Exception as e:  # the user's module raised while importing: name it, one line
        raise CortexEdgeError(f"importing {ref.module}: {type(e).__name__}: {e}") from None
    cls = getattr(module, ref.name, None)
    if not isinstance(cls, type):
        raise CortexEdgeError(f"{ref.module} defines no class {ref.name}")
    return cls


def _import_file(path: Path):
    """Import a source file as a module of its own (its folder goes on sys.path, so the file
    may import its neighbours)."""
    digest = hashlib.sha256(str(path).encode()).hexdigest()[:12]
    name = re.sub(r"\W", "_", f"cortexedge_user_{path.stem}_{digest}")
    if name in sys.modules:
        return sys.modules[name]
    folder = str(path.parent)
    if folder not in sys.path:
        sys.path.append(folder)
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module


def _file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def register_user_class(ref: CodeRef) -> str:
    """Import `ref`'s class and add it to the family table under its spec; returns that name."""
    from cortexedge.families import FAMILIES, Family, register

    if ref.spec not in FAMILIES:
        cls = import_class(ref)
        register(Family(ref.spec, cls, None, f"user class {ref.name}", source=ref.record()))
    return ref.spec


def checkpoint_class(config: dict, where: str | os.PathLike, trust_code: bool) -> str:
    """The family name of a checkpoint that records user code, registered after the opt-in
    check: CheckpointError naming the class and the flag when `trust_code` is False."""
    record = config.get("model_code")
    if not isinstance(record, dict) or not isinstance(record.get("spec"), str):
        raise CheckpointError(f"{where}: model_code must record the class's import spec")
    if not trust_code:
        raise CheckpointError(
            f"{where}: the checkpoint's model is user code {record['spec']}; {TRUST_HINT}"
        )
    ref = parse_ref(record["spec"], f"{where}: model_code")
    if ref.is_file and record.get("sha256") not in (None, _file_sha256(Path(ref.module))):
        print(
            f"warning: {ref.module} changed since the checkpoint was saved (sha256 differs); "
            "its weights must still fit the class",
            file=sys.stderr,
        )
    return register_user_class(ref)

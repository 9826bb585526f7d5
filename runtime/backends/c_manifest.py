"""The C build manifest (`decoder_c.json`) and its checks: one build, one sealed unit.

The manifest lists every file of the build that the runtime trusts (`files`: the library, the
sources, decoder.onnx, the integer reference) with its sha256, and carries `sha256`, a seal over
all of its own entries. `load_manifest` refuses, each in one ContractError line:
- a manifest that is missing, unreadable, of another version, or lacks a key the runtime reads
  or holds one of the wrong type (checked after the seal: a hand-made manifest can be resealed);
- an edited manifest (seal mismatch);
- a `library` that is not a plain file name listed in `files` (no path leaves the folder, so
  `../../other/libdecoder.so` or libc is never loaded);
- a listed file that is missing or differs from its hash: a truncated or swapped library is
  refused before ctypes maps it (a truncated one would kill the process with a bus error), and
  a library from an older build next to a newer graph cannot run.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from cortexedge.errors import ContractError

MANIFEST = "decoder_c.json"
MANIFEST_VERSION = 2  # 2: files and their hashes, the seal
# every key the runtime reads (the backend, and profile's C build figures), with its JSON type
REQUIRED = {"library": str, "numeric": str, "graph_sha256": str, "layout": dict, "states": list,
            "files": dict, "macs": dict, "memory": dict, "sha256": str}  # fmt: skip


def seal(manifest: dict) -> str:
    """sha256 over every entry of a manifest but its own `sha256`."""
    body = {k: v for k, v in manifest.items() if k != "sha256"}
    return hashlib.sha256(
        json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
    ).hexdigest()


def file_sha256(path: Path) -> str:
    """sha256 of a file's bytes."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def sealed(manifest: dict, folder: Path, files: list[str]) -> dict:
    """The manifest with the hashes of `files` (names in `folder`) and its seal."""
    out = {**manifest, "files": {name: file_sha256(folder / name) for name in sorted(files)}}
    out.pop("sha256", None)
    return {**out, "sha256": seal(out)}


def load_manifest(folder: str | Path) -> dict:
    """The checked C build manifest of an export folder (see the module docstring)."""
    folder = Path(folder)
    path = folder / MANIFEST
    if not path.is_file():
        raise ContractError(
            f"{folder}: no C build here ({MANIFEST} missing); export with --target c"
        )
    try:
        man = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ContractError(f"{path}: not a readable C manifest ({e})") from None
    if not isinstance(man, dict) or man.get("format_version") != MANIFEST_VERSION:
        version = man.get("format_version") if isinstance(man, dict) else None
        raise ContractError(
            f"{path}: C manifest version {version!r} is not {MANIFEST_VERSION}; export again"
        )
    missing = [k for k in REQUIRED if k not in man]
    if missing:
        raise ContractError(
            f"{path}: missing key '{missing[0]}' (not a complete C build; export again)"
        )
    if seal(man) != man["sha256"]:
        raise ContractError(f"{path}: the manifest was modified after the build (sha256 mismatch)")
    _check_types(path, man)
    _check_files(folder, man)
    return man


def _check_types(path: Path, man: dict) -> None:
    """Refuse an entry of the wrong type even in a sealed manifest (the seal is no secret: a
    hand-made manifest may be sealed again), so no read of it fails with a TypeError."""
    for key, kind in REQUIRED.items():
        if not isinstance(man[key], kind):
            raise ContractError(f"{path}: '{key}' must be a JSON {_JSON[kind]}, got "
                                f"{type(man[key]).__name__}; export again")  # fmt: skip
    if man["numeric"] not in ("float", "int"):
        raise ContractError(f"{path}: numeric {man['numeric']!r} is not 'float' or 'int'")
    for i, entry in enumerate(man["states"]):
        need = _STATE_KEYS.get(entry.get("kind")) if isinstance(entry, dict) else None
        if need is None or any(k not in entry for k in need):
            raise ContractError(f"{path}: states[{i}] is not a state entry of a C build")
    for key, need in _NESTED.items():
        if any(k not in man[key] for k in need):
            raise ContractError(f"{path}: '{key}' lacks {', '.join(need)}; export again")
    if not all(isinstance(v, str) for v in man["files"].values()):
        raise ContractError(f"{path}: 'files' must map file names to sha256 strings")


_JSON = {str: "string", dict: "object", list: "array"}
_NESTED = {"macs": ("executed_per_step",), "memory": ("weights_bytes", "state_bytes")}
_STATE_KEYS = {"tensor": ("name", "offset", "size"), "history": ("name", "rows"),
               "hidden": ("name", "layers")}  # fmt: skip


def _check_files(folder: Path, man: dict) -> None:
    files, library = man["files"], man["library"]
    if not isinstance(library, str) or Path(library).name != library or library not in files:
        raise ContractError(
            f"{folder / MANIFEST}: library {library!r} must be a file of the build folder listed "
            "in 'files'"
        )
    for name, digest in files.items():
        path = folder / name
        if Path(name).name != name or not path.is_file():
            raise ContractError(
                f"{path}: missing from the C build (the C decoder is not built, or the folder is "
                "incomplete; export with --target c again)"
            )
        if file_sha256(path) != digest:
            raise ContractError(
                f"{path}: differs from the build's manifest (sha256 mismatch: truncated, edited "
                "or from another build); export again"
            )

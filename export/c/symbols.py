"""The symbol prefix of a generated decoder, so that several link into one firmware image.

The emitters write the API as `decoder_init` / `decoder_step` / `decoder_state_t` /
`DECODER_CHANNELS` and name their constant arrays freely; `prefixed` then renames, in every
generated file, the API functions and types, every macro (include guards included) and every
array with external linkage (decoder_weights.c) to `<prefix>_...` / `<PREFIX>_...`. Static
functions stay as they are (they do not leave their file). The host shim's own entry points
(`decoder_host_*`, host only, one per shared library) keep their names, which the runtime's
ctypes backend looks up. decoder.h records the prefix (`prefix_of`), so our own harnesses
(qemu, sanitizers, size probes) read it from the folder.
"""

from __future__ import annotations

import keyword
import re
from pathlib import Path

from cortexedge.errors import CortexEdgeError

API = ("init", "reset", "step", "state_t", "input_t", "output_t")
C_KEYWORDS = frozenset(
    "auto break case char const continue default do double else enum extern float for goto if "
    "inline int long register restrict return short signed sizeof static struct switch "
    "typedef union unsigned void volatile while".split()
)
MAX_LENGTH = 24  # leaves room for the longest suffix within C99's 31 significant characters
_MARK = re.compile(r"^ \* symbol prefix: (\w+)$", re.M)


def model_name(family: str) -> str:
    """What to call a model in generated files: its family, or for a user's class recorded as
    `path/to/file.py:Class` only the class (no path of the machine it was exported on)."""
    return family.rsplit(":", 1)[-1]


def default_prefix(family: str) -> str:
    """A prefix from a model's name: "NormGRU" -> "normgru", "aegru" -> "aegru"."""
    name = re.sub(r"\W+", "_", model_name(family)).strip("_").lower()
    name = name[:MAX_LENGTH] or "decoder"
    return name if name[0].isalpha() else f"d_{name}"[:MAX_LENGTH]


def check_prefix(prefix: str) -> str:
    """`prefix` if it is a usable C identifier, else a one-line CortexEdgeError."""
    if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_]*", prefix or "") or len(prefix) > MAX_LENGTH:
        raise CortexEdgeError(
            f"name: {prefix!r} is not a C identifier of 1..{MAX_LENGTH} letters, digits and "
            "underscores starting with a letter"
        )
    if prefix in C_KEYWORDS or keyword.iskeyword(prefix) or prefix.startswith("decoder_host"):
        raise CortexEdgeError(f"name: {prefix!r} is reserved")
    return prefix


def external_arrays(weights_c: str) -> list[str]:
    """The names of the const arrays decoder_weights.c defines (external linkage)."""
    return re.findall(r"^const \w+ (\w+)\[", weights_c, re.M)


def rename(text: str, prefix: str, arrays: list[str]) -> str:
    """`text` with the API, macros and `arrays` under `prefix`."""
    if prefix == "decoder" and not arrays:
        return text
    text = re.sub(rf"\bdecoder_({'|'.join(API)})\b", rf"{prefix}_\1", text)
    text = re.sub(r"\bDECODER_(\w+)", rf"{prefix.upper()}_\1", text)
    for name in sorted(arrays, key=len, reverse=True):
        bare = name[len("decoder_") :] if name.startswith("decoder_") else name
        text = re.sub(rf"\b{name}\b", f"{prefix}_{bare}", text)
    return text


def prefixed(files: dict[str, str], prefix: str) -> dict[str, str]:
    """Every generated file under `prefix`; decoder.h records it."""
    arrays = external_arrays(files["decoder_weights.c"])
    out = {name: rename(text, prefix, arrays) for name, text in files.items()}
    head, _, rest = out["decoder.h"].partition("\n")
    out["decoder.h"] = f"{head}\n * symbol prefix: {prefix}\n{rest}"  # inside the top comment
    return out


def prefix_of(folder: str | Path) -> str:
    """The prefix the decoder in `folder` was generated with."""
    found = _MARK.search((Path(folder) / "decoder.h").read_text())
    return found.group(1) if found else "decoder"


def for_folder(text: str, folder: str | Path) -> str:
    """A harness written against `decoder_*` names, for the decoder in `folder`."""
    return rename(text, prefix_of(folder), [])

"""cortexedge: train, compress, export and stream-run neural decoders on the edge.

This package holds the torch-free contracts (recordings, exported-decoder metadata) and the
CLI. The stages live in `cortexedge.train`, `.compress`, `.export` and `.runtime`; the names a
user needs most are offered here (`import cortexedge as ce; ce.fit(...)`) and loaded on first
use, so `import cortexedge` and `cortexedge --help` load neither torch nor onnx.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# public name -> (the module that defines it, its name there)
_API: dict[str, tuple[str, str]] = {
    "Recording": ("cortexedge.recording", "Recording"),
    "generate": ("cortexedge.train.data.synth", "generate"),
    "read_recording": ("cortexedge.train.data.readers", "read"),
    "build_model": ("cortexedge.train.models.registry", "build_model"),
    "fit": ("cortexedge.train.fit", "fit"),
    "Recipe": ("cortexedge.compress.recipe", "Recipe"),
    "compress": ("cortexedge", "compress"),  # the callable package (see its docstring)
    "to_onnx": ("cortexedge.export.api", "to_onnx"),
    "StreamingDecoder": ("cortexedge.runtime.decoder", "StreamingDecoder"),
}

__all__ = [
    "__version__",
    "Recording",
    "generate",
    "read_recording",
    "build_model",
    "fit",
    "Recipe",
    "compress",
    "to_onnx",
    "StreamingDecoder",
]

if TYPE_CHECKING:
    from cortexedge import compress
    from cortexedge.compress.recipe import Recipe
    from cortexedge.export.api import to_onnx
    from cortexedge.recording import Recording
    from cortexedge.runtime.decoder import StreamingDecoder
    from cortexedge.train.data.readers import read as read_recording
    from cortexedge.train.data.synth import generate
    from cortexedge.train.fit import fit
    from cortexedge.train.models.registry import build_model


def __getattr__(name: str) -> Any:
    """Load a public name's module on first use (PEP 562)."""
    if name not in _API:
        raise AttributeError(f"module 'cortexedge' has no attribute '{name}'")
    module, attr = _API[name]
    if module == __name__:  # a subpackage of the same name
        value = import_module(f"{__name__}.{attr}")
    else:
        value = getattr(import_module(module), attr)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_API})

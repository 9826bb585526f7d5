"""cortexedge.export: ONNX step and sequence graphs, verification, the C generator.

`cortexedge.export.to_onnx(model_or_checkpoint, path, ...)` is the entry point (see `api.py`);
it is loaded on first use so that importing the package stays light.
"""

from __future__ import annotations

from typing import Any

__all__ = ["ExportReport", "to_onnx"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from cortexedge.export import api

        return getattr(api, name)
    raise AttributeError(f"module 'cortexedge.export' has no attribute '{name}'")

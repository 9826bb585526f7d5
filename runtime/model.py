"""Loading an exported decoder file: parse, read the metadata contract, check it against the graph.

Every backend and report starts from a `LoadedModel`, so a file is validated exactly once and
in one way: unreadable, truncated, tampered or inconsistent files raise ContractError with one
line that names the file.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cortexedge.contract import (
    ONNX_DTYPES,
    DecoderMetadata,
    check_against_graph,
    check_seal,
    from_props,
)
from cortexedge.errors import ContractError, CortexEdgeError


@dataclass(frozen=True)
class LoadedModel:
    """A validated decoder: file path and bytes, parsed graph, metadata and batch size.

    `batch` is None when the graph's batch dimension is dynamic, else its fixed size.
    """

    path: Path
    data: bytes
    proto: Any
    meta: DecoderMetadata
    batch: int | None

    def initial_states(self, batch: int) -> dict[str, np.ndarray]:
        """Every state tensor at its initial value, with `batch` streams on its batch axis."""
        out = {}
        for s in self.meta.states:
            shape = list(s.shape)
            shape[s.batch_axis] = batch
            out[s.name] = np.full(shape, s.fill, dtype=s.dtype)
        return out

    @property
    def y_dtype(self) -> np.dtype:
        """dtype of the graph's output `y` (the contract has checked it is a float type)."""
        y = next(o for o in self.proto.graph.output if o.name == "y")
        return np.dtype(ONNX_DTYPES[y.type.tensor_type.elem_type])

    def check_batch(self, batch: int) -> None:
        """Refuse a batch size the graph cannot run."""
        if self.batch is not None and self.batch != batch:
            raise ContractError(
                f"{self.path}: graph has a fixed batch of {self.batch}, cannot run {batch} "
                "stream(s) in one call"
            )


def _batch_dim(proto: Any) -> int | None:
    x = next(i for i in proto.graph.input if i.name == "x")
    dim = x.type.tensor_type.shape.dim[0]
    return dim.dim_value if dim.HasField("dim_value") and dim.dim_value > 0 else None


def load_decoder(path: str | os.PathLike) -> LoadedModel:
    """Read and validate an exported decoder (.onnx with cortexedge metadata)."""
    import onnx
    from google.protobuf.message import DecodeError

    path = Path(path)
    if not path.is_file():
        raise CortexEdgeError(f"decoder file not found: {path}")
    data = path.read_bytes()
    try:
        proto = onnx.load_from_string(data)
    except (DecodeError, ValueError, RuntimeError) as e:
        raise ContractError(
            f"{path}: not a readable ONNX file, truncated or corrupted ({e})"
        ) from None
    if not proto.HasField("graph") or not proto.graph.node:
        raise ContractError(f"{path}: ONNX file has no graph (truncated or not a model)")
    try:
        meta = from_props(check_seal(proto))
        check_against_graph(meta, proto)
    except ContractError as e:
        raise ContractError(f"{path}: {e}") from None
    return LoadedModel(path, data, proto, meta, _batch_dim(proto))

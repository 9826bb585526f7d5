"""The one table of the ONNX ops the runtime implements: `OPS`, op type -> `OpDef`.

Each op is defined once, in the `ops_*.py` file of its kind; adding an op is adding its
`OpDef` there. The reference interpreter, the compiled tier and the MAC walker all read this
table, and only this table.
"""

from __future__ import annotations

from cortexedge.runtime.onnx_numpy.opdef import OpDef
from cortexedge.runtime.onnx_numpy.ops_elementwise import ELEMENTWISE
from cortexedge.runtime.onnx_numpy.ops_gru import GRU
from cortexedge.runtime.onnx_numpy.ops_linear import LINEAR
from cortexedge.runtime.onnx_numpy.ops_lstm import LSTM
from cortexedge.runtime.onnx_numpy.ops_norm import NORM
from cortexedge.runtime.onnx_numpy.ops_quant import QUANT
from cortexedge.runtime.onnx_numpy.ops_reduce import REDUCE
from cortexedge.runtime.onnx_numpy.ops_shape import SHAPE

OPS: dict[str, OpDef] = {
    op.name: op for op in (*ELEMENTWISE, *SHAPE, *REDUCE, *LINEAR, GRU, LSTM, *NORM, *QUANT)
}

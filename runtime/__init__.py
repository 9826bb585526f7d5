"""cortexedge.runtime: torch-free streaming decoders, MAC and footprint counts, profiling.

Imports numpy, onnx (to read the graph) and onnxruntime only; never torch.
"""

from cortexedge.runtime.decoder import StreamingDecoder
from cortexedge.runtime.graph_macs import count_graph
from cortexedge.runtime.model import load_decoder
from cortexedge.runtime.multistream import MultiStreamDecoder

__all__ = ["MultiStreamDecoder", "StreamingDecoder", "count_graph", "load_decoder"]

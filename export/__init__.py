"""cortexedge.export: ONNX step and sequence graphs, verification, the C generator."""

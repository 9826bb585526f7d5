"""cortexedge: train, compress, export and stream-run neural decoders on the edge.

This package holds the torch-free contracts (recordings, exported-decoder metadata) and the
CLI. The stages live in `cortexedge.train`, `.compress`, `.export` and `.runtime`.
"""

__version__ = "0.1.0"

"""cortexedge.runtime: torch-free streaming decoders, MAC and footprint counts, profiling."""

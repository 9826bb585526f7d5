"""cortexedge.compress: magnitude and structured pruning, quantization-aware fine-tuning."""

"""Recording readers, synthetic generators and windowing (numpy only, no torch)."""

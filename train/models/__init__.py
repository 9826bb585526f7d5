"""Decoder models: plain `nn.Module`s with `init_state`/`step` next to `forward`."""

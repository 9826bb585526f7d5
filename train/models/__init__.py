"""Decoder models: plain `nn.Module`s with `init_state`/`step` next to `forward`.

- `aegru.py`: AEGRU, the BioCAS 2024 winner (window and stateful streaming modes)
- `rnn.py`: GRUDecoder, LSTMDecoder, the baselines
- `cnn_bilstm.py`: AttnCNNBiLSTM for two-photon calcium traces
- `cnn_rnn.py`: CNNRNN (widefield frames) and ROIGRU (ROI traces)
- `linear.py`: RidgeDecoder, KalmanFilterDecoder, fitted in closed form (no SGD)
- `losses.py`: aegru_loss, focal_loss
- `registry.py`: register_model, build_model, model_name (rows of cortexedge/families.py)
- `inputs.py`: input transforms and the input-shape check shared by the models

The names are re-exported lazily: importing this package alone does not import torch.
"""

import importlib

_EXPORTS = {
    "AEGRU": "aegru",
    "GRUDecoder": "rnn",
    "LSTMDecoder": "rnn",
    "AttnCNNBiLSTM": "cnn_bilstm",
    "CNNRNN": "cnn_rnn",
    "ROIGRU": "cnn_rnn",
    "RidgeDecoder": "linear",
    "KalmanFilterDecoder": "linear",
    "aegru_loss": "losses",
    "focal_loss": "losses",
    "register_model": "registry",
    "build_model": "registry",
    "model_name": "registry",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)

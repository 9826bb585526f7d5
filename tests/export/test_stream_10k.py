"""10,000 bins streamed through the exported step graph in onnxruntime (free-running: the graph
feeds its own states back) equal torch's sequence output `stream` within 1e-5 relative."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cortexedge.export.api import to_onnx
from tests.export.small_models import SMALL, build

BINS = 10_000


@pytest.fixture(scope="module")
def long_reaching():
    from cortexedge.train.data.synth import generate

    return generate("reaching", seed=1, channels=16, minutes=3.0)


def _trained_stateful_aegru(rec):
    """A briefly trained stateful AEGRU. With its random initial weights the recurrence is
    ill-conditioned enough that torch's own `step` and `stream` drift apart by ~3e-3 of the
    output scale over 10k bins; two epochs bring that below 2e-6."""
    from cortexedge.train.fit import fit

    result = fit(build(*SMALL["aegru_stateful"]), rec, epochs=2, progress=False, train_stride=8)
    return result.model


@pytest.mark.slow
@pytest.mark.parametrize("key", ["gru", "lstm", "aegru_window", "aegru_stateful"])
def test_ten_thousand_streamed_bins_equal_torch_sequence(key, long_reaching, tmp_path):
    from cortexedge.runtime.decoder import StreamingDecoder

    rec = long_reaching
    model = _trained_stateful_aegru(rec) if key == "aegru_stateful" else build(*SMALL[key])
    to_onnx(model, tmp_path / "d.onnx", recording=rec)
    x = rec.x[rec.rows("test")][:BINS].astype(np.float32)
    assert len(x) == BINS
    got = StreamingDecoder(tmp_path / "d.onnx", backend="ort").run(x)
    with torch.no_grad():
        ref = model.eval().stream(torch.as_tensor(x)[None])[0].numpy()
    assert np.abs(got - ref).max() <= 1e-5 * np.abs(ref).max()

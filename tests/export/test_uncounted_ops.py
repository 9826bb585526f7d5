"""An op the runtime's numpy engine lacks does not refuse the export: the MAC count names it.

The user decoder below (the README's "Bring your own model" contract) max-pools adjacent
channel pairs before its GRU: the step graph holds a MaxPool, which onnxruntime runs and the
numpy engine does not implement.
"""

from __future__ import annotations

import onnx
import pytest
import torch
import torch.nn.functional as F
from rich.console import Console
from torch import nn

from cortexedge.errors import ContractError
from cortexedge.export.api import to_onnx
from cortexedge.runtime import StreamingDecoder, load_decoder
from cortexedge.runtime.profile import profile, synthetic_stream
from cortexedge.runtime.report import print_summary

C, H, D = 8, 6, 2


class PooledGRU(nn.Module):
    """Bins [B, C] -> max over channel pairs [B, C/2] -> GRU -> linear readout [B, D]."""

    def __init__(self) -> None:
        super().__init__()
        self.gru = nn.GRU(C // 2, H, batch_first=True)
        self.readout = nn.Linear(H, D)

    @staticmethod
    def pool(x):  # [N, C] -> [N, C/2]
        return F.max_pool1d(x.unsqueeze(1), 2).squeeze(1)

    def forward(self, x):  # [B, T, C] -> [B, T, D]
        b, t, _ = x.shape
        pooled = self.pool(x.reshape(b * t, C)).reshape(b, t, C // 2)
        return self.readout(self.gru(pooled)[0])

    def init_state(self, batch: int):
        return (torch.zeros(1, batch, H),)

    def step(self, x_t, state):  # [B, C] -> ([B, D], state)
        out, h = self.gru(self.pool(x_t).unsqueeze(1), state[0])
        return self.readout(out[:, 0]), (h,)


@pytest.fixture(scope="module")
def pooled(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("pooled") / "pooled.onnx"
    report = to_onnx(PooledGRU(), path, input_shape=(C,), modality="spikes", bin_ms=4.0)
    pools = [n for n in onnx.load(path).graph.node if n.op_type == "MaxPool"]
    assert len(pools) == 1
    return report, [{"node": pools[0].name, "op_type": "MaxPool"}]


def test_export_succeeds_and_the_metadata_names_the_uncounted_op(pooled):
    report, uncounted = pooled
    assert report.verification.passed
    meta = load_decoder(report.path).meta
    assert meta.extra["graph_macs_uncounted"] == uncounted
    # the rest of the graph is still counted: the GRU on the pooled channels and the readout
    dense = 3 * H * (C // 2 + H) + 3 * H + H * D
    assert meta.extra["graph_macs_dense"] == dense
    assert meta.macs == {"dense": dense, "effective": dense}


def test_profile_report_names_the_uncounted_op(pooled):
    report, uncounted = pooled
    meta = load_decoder(report.path).meta
    run = profile(report.path, synthetic_stream(meta, 40), backends=("ort",), warmup=4)
    assert run.summary["macs_uncounted"] == uncounted
    console = Console(record=True, width=300)
    print_summary(run.summary, console)
    line = "MACs leave out 1 op(s) the numpy engine does not implement: MaxPool"
    assert f"{line} '{uncounted[0]['node']}'" in console.export_text()


def test_numpy_backend_still_refuses_to_run_it_by_name(pooled):
    report, uncounted = pooled
    with pytest.raises(ContractError, match=f"op 'MaxPool' of node '{uncounted[0]['node']}' is "
                       "not supported by the numpy backend"):  # fmt: skip
        StreamingDecoder(report.path, backend="numpy")

"""Bad inputs to the export: each gives one clear CortexEdgeError and leaves no file behind."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

from cortexedge.errors import CheckpointError, CortexEdgeError
from cortexedge.export import to_onnx
from tests.export.small_models import SMALL, build


class Streamer(nn.Module):
    """A user's own streaming decoder: Linear -> GRUCell -> Linear, state ("h",)."""

    def __init__(self, channels: int = 16, hidden: int = 8) -> None:
        super().__init__()
        self.in_channels = channels
        self.inp, self.cell, self.out = (
            nn.Linear(channels, hidden),
            nn.GRUCell(hidden, hidden),
            nn.Linear(hidden, 2),
        )

    def init_state(self, batch: int) -> tuple[Tensor, ...]:
        return (torch.zeros(batch, self.cell.hidden_size),)

    def step(self, x: Tensor, state: tuple[Tensor, ...]):
        h = self.cell(self.inp(x), state[0])
        return self.out(h), (h,)


class NoStep(nn.Module):
    def forward(self, x: Tensor) -> Tensor:
        return x


class Cummax(Streamer):
    def step(self, x: Tensor, state: tuple[Tensor, ...]):
        y, new = super().step(torch.cummax(x, dim=-1)[0], state)
        return y, new


class TracedDiffers(Streamer):
    """Behaves differently while traced: the graph is wrong, verification must catch it."""

    def step(self, x: Tensor, state: tuple[Tensor, ...]):
        y, new = super().step(x, state)
        return (y * 1.001 if torch.jit.is_tracing() else y), new


class Constant(Streamer):
    """State never driven by the input: stays at its zero start."""

    def step(self, x: Tensor, state: tuple[Tensor, ...]):
        return self.out(self.inp(x)[:, : self.cell.hidden_size]), state


class OnesState(Streamer):
    def init_state(self, batch: int) -> tuple[Tensor, ...]:
        return (torch.arange(batch * 8.0).reshape(batch, 8),)


def test_user_module_with_step_exports(tmp_path):
    report = to_onnx(Streamer(), tmp_path / "u.onnx", bin_ms=20, modality="spikes")
    assert report.verification.passed and report.verification.split == "synthetic"
    assert report.metadata.model_family == "Streamer" and report.metadata.score is None
    assert [s.name for s in report.metadata.states] == ["s0"]


def test_module_without_step_says_what_to_add(tmp_path):
    with pytest.raises(CortexEdgeError, match=r"NoStep .*no init_state / step; add `init_state"):
        to_onnx(NoStep(), tmp_path / "n.onnx", bin_ms=4)
    assert list(tmp_path.iterdir()) == []


def test_missing_output_folder(tmp_path):
    out = tmp_path / "missing" / "d.onnx"
    with pytest.raises(CortexEdgeError, match="output folder does not exist: .*missing"):
        to_onnx(Streamer(), out, bin_ms=20, modality="spikes")
    assert not out.parent.exists()


def test_unsupported_op(tmp_path):
    with pytest.raises(CortexEdgeError, match=r"Cummax: unsupported operator: .*aten::cummax"):
        to_onnx(Cummax(), tmp_path / "c.onnx", bin_ms=20, modality="spikes")
    assert list(tmp_path.iterdir()) == []


def test_failed_verification_leaves_no_file(tmp_path):
    with pytest.raises(CortexEdgeError, match="export verification failed: 'y' differs"):
        to_onnx(TracedDiffers(), tmp_path / "t.onnx", bin_ms=20, modality="spikes")
    assert list(tmp_path.iterdir()) == []


def test_undriven_state_is_refused(tmp_path):
    with pytest.raises(CortexEdgeError, match="state s0 is still all zero after 200 bins"):
        to_onnx(Constant(), tmp_path / "z.onnx", bin_ms=20, modality="spikes")


def test_state_must_start_constant(tmp_path):
    with pytest.raises(CortexEdgeError, match="must fill state 's0' with one constant value"):
        to_onnx(OnesState(), tmp_path / "o.onnx", bin_ms=20, modality="spikes")


def test_checkpoint_with_missing_tensors(tmp_path, reaching):
    from safetensors.torch import load_file, save_file

    from cortexedge.train.checkpoint import save_checkpoint

    folder = save_checkpoint(build(*SMALL["gru"]), tmp_path / "run")
    tensors = load_file(folder / "model.safetensors")
    del tensors["readout.weight"]
    save_file(tensors, folder / "model.safetensors")
    with pytest.raises(CheckpointError, match="modified after saving"):  # the seal sees it first
        to_onnx(folder, tmp_path / "d.onnx", recording=reaching)
    assert not (tmp_path / "d.onnx").exists()


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"opset": 16}, "opset: must be an integer from 17 to 20, got 16"),
        ({"verify_bins": 999}, "verify_bins: must be an integer >= 1000, got 999"),
        ({"input_shape": (12,)}, r"recording: one bin has shape \[16\], the model reads \[12\]"),
    ],
)
def test_bad_options(kwargs, message, tmp_path, reaching):
    with pytest.raises(CortexEdgeError, match=message):
        to_onnx(build(*SMALL["gru"]), tmp_path / "d.onnx", recording=reaching, **kwargs)
    assert list(tmp_path.iterdir()) == []


def test_unknown_modality(tmp_path):
    with pytest.raises(CortexEdgeError, match="modality: cannot tell what the model reads"):
        to_onnx(Streamer(), tmp_path / "d.onnx", bin_ms=20)


def test_unknown_bin_width(tmp_path):
    with pytest.raises(CortexEdgeError, match=r"bin_ms: unknown bin width; pass bin_ms="):
        to_onnx(Streamer(), tmp_path / "d.onnx", modality="spikes")
    assert list(tmp_path.iterdir()) == []


def test_a_recording_with_more_targets_than_outputs_is_one_clear_error(tmp_path, reaching):
    from dataclasses import replace

    import numpy as np

    three = replace(reaching, y=np.concatenate([reaching.y, reaching.y[:, :1]], axis=1),
                    target_names=None)  # fmt: skip
    with pytest.raises(CortexEdgeError, match="3 targets, but the decoder has 2 outputs"):
        to_onnx(Streamer(), tmp_path / "d.onnx", recording=three)
    assert not (tmp_path / "d.onnx").exists()

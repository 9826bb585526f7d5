"""Cortex-M4: cross-compiled sizes and a run under qemu-system-arm that equals the host build.
Skipped, with the reason, where arm-none-eabi-gcc or qemu-system-arm is not installed."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

from cortexedge.export.c import build, qemu
from cortexedge.export.c.generate import export_c
from cortexedge.train.models.aegru import AEGRU
from tests.export.c_helpers import contract_onnx, prune_half, ptq, window_batches

needs_arm = pytest.mark.skipif(
    shutil.which("arm-none-eabi-gcc") is None or shutil.which("arm-none-eabi-size") is None,
    reason="arm-none-eabi-gcc / arm-none-eabi-size not installed (Debian: gcc-arm-none-eabi)",
)
needs_qemu = pytest.mark.skipif(
    shutil.which(qemu.QEMU) is None,
    reason="qemu-system-arm not installed (Debian: qemu-system-arm)",
)


def small(quantized: bool) -> tuple[AEGRU, np.ndarray]:
    torch.manual_seed(4)
    model = AEGRU(12, hidden=8, enc_dim=8, bin_width=4, num_steps=3, training_parts=False).eval()
    prune_half(model)
    x = np.random.default_rng(2).poisson(0.6, (900, 12)).astype(np.float32)
    if quantized:
        ptq(model, window_batches(x, 4, 3))
    return model, x


@needs_arm
@needs_qemu
@pytest.mark.parametrize("quantized", [True, False])
def test_cortex_m4_build_runs_under_qemu_like_the_host(tmp_path, quantized):
    model, _ = small(quantized)
    onnx = contract_onnx(model, tmp_path / "m.onnx", 12)
    res = export_c(model, tmp_path / "c", onnx_path=onnx, max_count=7, verify_bins=600,
                   reference_bins=300, qemu_bins=500)  # fmt: skip
    mem, run = res.manifest["memory"], res.manifest["qemu"]
    arm = mem["cortex_m4"]
    assert arm["data_bytes"] == 0 and arm["bss_bytes"] == 0  # no writable globals
    assert arm["weights_bytes"] == mem["weights_bytes"]  # every constant lands in flash
    assert run["state_bytes"] == arm["state_bytes"] == mem["state_bytes"]
    assert 0 < run["stack_bytes"] <= arm["stack_bound_bytes"]
    assert mem["ram_bytes"] == run["state_bytes"] + run["stack_bytes"]
    assert run["bins"] == 500 and run["max_abs_diff_to_host"] <= (0 if quantized else 1e-5)
    # SysTick under -icount ticks once per 40 instructions (25 MHz clock, 1 ns per instruction)
    assert run["insns_per_tick"] == pytest.approx(40.0, rel=0.01)
    lo, hi = run["cycles_per_step_estimate"]
    assert run["insns_per_step_min"] <= run["insns_per_step"] <= run["insns_per_step_max"]
    assert lo == pytest.approx(1.2 * run["insns_per_step"]) and hi > lo


@needs_arm
def test_size_report_of_an_object(tmp_path):
    model, _ = small(True)
    from cortexedge.export.c import emit_int
    from cortexedge.export.c.int_extract import int_model
    from cortexedge.export.c.model_ir import read_structure

    program = emit_int.emit(int_model(read_structure(model), 7))
    for name, text in program.files().items():
        (tmp_path / name).write_text(text)
    sizes = build.arm_objects(tmp_path)
    assert sizes["weights_bytes"] == program.weight_bytes
    assert sizes["flash_bytes"] == sizes["weights_bytes"] + sizes["code_bytes"]
    lay = program.layout
    assert lay.ring_cols == 5  # 12 channels of 3 bits, packed exactly
    data = lay.ring_rows * lay.ring_cols + (lay.num_steps - 1) * lay.lag * 8 + lay.channels
    # ring + chains + running box sums (one byte each), padded to the 2 uint16 indices
    assert sizes["state_bytes"] == -(-data // 2) * 2 + 4

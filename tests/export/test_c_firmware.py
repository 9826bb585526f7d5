"""Firmware with two decoders: an integer AEGRU and a user's float GRU, each under its own
prefix, link into one Cortex-M4 image and run side by side under qemu, with outputs equal to
each one built alone. Skipped, with the reason, without arm-none-eabi-gcc or qemu."""

from __future__ import annotations

import re
import shutil
import subprocess

import numpy as np
import pytest

from cortexedge.errors import CortexEdgeError
from cortexedge.export.c import qemu
from cortexedge.export.c.generate import export_c
from tests.export.c_helpers import contract_onnx
from tests.export.test_c_arm import small
from tests.users.norm_gru import NormGRU

pytestmark = pytest.mark.skipif(
    shutil.which("arm-none-eabi-gcc") is None or shutil.which(qemu.QEMU) is None,
    reason="arm-none-eabi-gcc or qemu-system-arm not installed (Debian: gcc-arm-none-eabi, "
    "qemu-system-arm)",
)
ROWS = 300

MAIN = r"""
#include <stdio.h>
#include "left/decoder.h"
#include "right/decoder.h"

static float bins[ROWS][12];
static left_state_t ls;
static right_state_t rs;
static left_output_t lo[ROWS][LEFT_OUTPUTS];
static right_output_t ro[ROWS][RIGHT_OUTPUTS];

int main(void)
{
    FILE *f = fopen("in.bin", "rb");
    int i, c;
    if (!f || fread(bins, sizeof bins, 1, f) != 1) {
        return 2;
    }
    fclose(f);
    left_init(&ls);
    right_init(&rs);
    for (i = 0; i < ROWS; ++i) { /* the two decoders take turns on the same stream */
        left_input_t counts[LEFT_CHANNELS];
        for (c = 0; c < LEFT_CHANNELS; ++c) {
            counts[c] = (left_input_t)bins[i][c];
        }
        left_step(&ls, counts, lo[i]);
        right_step(&rs, bins[i], ro[i]);
    }
    f = fopen("out.bin", "wb");
    fwrite(lo, sizeof lo, 1, f);
    fwrite(ro, sizeof ro, 1, f);
    fclose(f);
    printf("done\n");
    return 0;
}
"""


@pytest.fixture(scope="module")
def builds(tmp_path_factory):
    import torch

    tmp = tmp_path_factory.mktemp("fw")
    aegru, x = small(quantized=True)
    torch.manual_seed(0)
    user = NormGRU(12, 2, hidden=8).eval()
    out = {}
    for name, model in (("left", aegru), ("right", user)):
        onnx = contract_onnx(model, tmp / f"{name}.onnx", 12)
        out[name] = export_c(model, tmp / "fw" / name, onnx_path=onnx, max_count=7,
                             verify_bins=300, reference_bins=100, name=name).folder  # fmt: skip
    return tmp, out, np.minimum(x[:ROWS], 7)


def _globals(folder) -> set[str]:
    names = set()
    for src in ("decoder.c", "decoder_weights.c"):
        obj = folder / "arm_probe.o"
        subprocess.run(["arm-none-eabi-gcc", "-std=c99", "-O2", "-mcpu=cortex-m4", "-mthumb",
                        "-c", src, "-o", obj.name], cwd=folder, check=True)  # fmt: skip
        nm = subprocess.run(["arm-none-eabi-nm", "-g", "--defined-only", obj.name], cwd=folder,
                            capture_output=True, text=True, check=True).stdout  # fmt: skip
        names |= {line.split()[-1] for line in nm.splitlines() if line.strip()}
        obj.unlink()
    return names


def test_every_external_symbol_and_macro_carries_the_prefix(builds):
    _, folders, _ = builds
    for prefix, folder in folders.items():
        symbols = _globals(folder)
        assert symbols and all(s.startswith(f"{prefix}_") for s in symbols), symbols
        header = (folder / "decoder.h").read_text()
        macros = re.findall(r"^#define (\w+)", header, re.M)
        assert macros and all(m.startswith(f"{prefix.upper()}_") for m in macros), macros
        assert not re.search(r"\bdecoder_(init|reset|step|state_t)\b", header)


def test_two_decoders_link_into_one_image_and_run_as_each_alone(builds):
    tmp, folders, x = builds
    elf = qemu.firmware(tmp / "both", [folders[n] / s for n in ("left", "right")
                                       for s in ("decoder.c", "decoder_weights.c")],
                        MAIN, [f"-DROWS={ROWS}", f"-I{tmp / 'fw'}"])  # fmt: skip
    x.astype(np.float32).tofile(tmp / "both" / "in.bin")
    assert "done" in qemu.emulate(elf)
    raw = (tmp / "both" / "out.bin").read_bytes()
    left = np.frombuffer(raw[: ROWS * 2 * 4], dtype=np.int32).reshape(ROWS, 2)
    right = np.frombuffer(raw[ROWS * 2 * 4 :], dtype=np.float32).reshape(ROWS, 2)
    alone_l = qemu.run_harness(folders["left"], x, np.uint8, np.int32, 2)["outputs"]
    alone_r = qemu.run_harness(folders["right"], x, np.float32, np.float32, 2)["outputs"]
    np.testing.assert_array_equal(left, alone_l)
    np.testing.assert_array_equal(right, alone_r)
    assert np.abs(right).max() > 0 and np.abs(left).max() > 0


@pytest.mark.parametrize("name", ["2fast", "step-one", "int", "decoder_host", "x" * 30])
def test_a_bad_name_is_refused_before_anything_is_built(name, tmp_path):
    with pytest.raises(CortexEdgeError, match=r"^name: "):
        export_c(NormGRU(12, 2).eval(), tmp_path / "c", name=name)
    assert not (tmp_path / "c").exists()

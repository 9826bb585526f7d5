"""A C build folder is put in place whole: new, swapped with an earlier build, or refused."""

from __future__ import annotations

import json

import pytest

from cortexedge.atomic import STAGE
from cortexedge.errors import CortexEdgeError
from cortexedge.export.c.generate import export_c
from tests.export.small_models import SMALL, build


@pytest.fixture(scope="module")
def models():
    return build(*SMALL["gru"]), build("gru", dict(SMALL["gru"][1], hidden=16))


def _export(model, out):
    return export_c(model, out, verify_bins=400, cortex_m=False, input_shape=(16,),
                    modality="spikes", bin_ms=4.0)  # fmt: skip


def test_a_rebuild_swaps_the_whole_folder_and_leaves_nothing_behind(models, tmp_path):
    out = tmp_path / "c"
    _export(models[0], out)
    first = json.loads((out / "decoder_c.json").read_text())
    (tmp_path / f".c{STAGE}stale").mkdir()  # left by a killed export
    _export(models[1], out)
    second = json.loads((out / "decoder_c.json").read_text())
    # the C state is the graph's h: 2 layers of 24, then of 16
    assert first["states"][0]["size"] == 48 and second["states"][0]["size"] == 32
    assert first["graph_sha256"] != second["graph_sha256"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c"]  # no build folder, old or stale
    assert not [p for p in out.iterdir() if p.name.startswith(".")]


def test_a_folder_of_the_users_files_is_refused_and_untouched(models, tmp_path):
    out = tmp_path / "firmware"
    out.mkdir()
    (out / "README.md").write_text("my notes")
    (out / "decoder.h").write_text("my header")
    with pytest.raises(CortexEdgeError, match="holds files that are not a C build"):
        _export(models[0], out)
    assert (out / "README.md").read_text() == "my notes"
    assert sorted(p.name for p in out.iterdir()) == ["README.md", "decoder.h"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["firmware"]

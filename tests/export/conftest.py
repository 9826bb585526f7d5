"""Shared fixtures of the export tests: small synthetic recordings, small decoders with their
default (trained-like magnitude) initialisation, and pruned + quantized checkpoints."""

from __future__ import annotations

from pathlib import Path

import pytest

from cortexedge.recording import Recording
from tests.export.small_models import GRU_DATA, SMALL, build


@pytest.fixture(scope="session")
def reaching() -> Recording:
    from cortexedge.train.data.synth import generate

    return generate("reaching", seed=0, channels=16, minutes=0.5)


@pytest.fixture(scope="session")
def two_photon() -> Recording:
    from cortexedge.train.data.synth import generate

    return generate("two-photon", seed=0, channels=12, minutes=0.5)


@pytest.fixture(scope="session")
def widefield() -> Recording:
    from cortexedge.train.data.synth import generate

    return generate("widefield", seed=0, minutes=0.5)


@pytest.fixture(scope="session")
def compressed(reaching: Recording, tmp_path_factory) -> dict[tuple[str, int], tuple[Path, dict]]:
    """(family, bits) -> (compressed checkpoint folder, its last compression stage), for GRU and
    AEGRU pruned to 50%, float (bits None) and quantized to W8A8 / W4A8 (no fine-tuning)."""
    from cortexedge.compress.artifacts import save_compressed
    from cortexedge.compress.recipe import Recipe, compress

    out = {}
    root = tmp_path_factory.mktemp("compressed")
    for key, data in (("gru", GRU_DATA), ("aegru_window", None), ("aegru_stateful", None)):
        name, kwargs = SMALL[key]
        model = build(name, kwargs)
        for bits in (None, 8, 4):
            recipe = Recipe(sparsity=0.5, bits=bits, finetune_epochs=0, calib_batches=2)
            result = compress(model, reaching, recipe, data=data)
            folder = save_compressed(result, root / f"{key}-w{bits}")
            out[(key, bits)] = (folder, result.stages[-1])
    return out


@pytest.fixture(scope="session")
def compressed_onnx(compressed, reaching: Recording, tmp_path_factory) -> dict:
    """(family, bits) -> (ExportReport, its .onnx path) of every `compressed` checkpoint,
    exported once for all the tests that read them."""
    from cortexedge.export.api import to_onnx

    root = tmp_path_factory.mktemp("compressed_onnx")
    out = {}
    for (key, bits), (folder, _) in compressed.items():
        path = root / f"{key}-w{bits}.onnx"
        out[(key, bits)] = (to_onnx(folder, path, recording=reaching), path)
    return out

"""`import cortexedge as ce` offers the pipeline's names; importing it or the CLI help is light."""

from __future__ import annotations

import subprocess
import sys

import pytest

import cortexedge as ce

HEAVY = ("torch", "onnx", "onnxruntime", "brevitas", "torch_pruning", "matplotlib")


def _loaded_after(code: str) -> set[str]:
    probe = f"import sys\n{code}\nprint('MODULES', *sorted(sys.modules))"
    r = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    return set(r.stdout.rsplit("MODULES", 1)[1].split())


@pytest.mark.parametrize(
    "code",
    [
        "import cortexedge",
        "import cortexedge as ce; ce.__version__; dir(ce)",
        "from cortexedge.cli.main import main\nassert main(['--help']) == 0",
        "from cortexedge.cli.main import main\nassert main(['train', '--help']) == 0",
    ],
)
def test_light_imports_load_no_heavy_module(code):
    loaded = _loaded_after(code)
    assert not [m for m in HEAVY if m in loaded], sorted(m for m in HEAVY if m in loaded)


def test_public_names_resolve_to_their_homes():
    from cortexedge.compress.recipe import Recipe
    from cortexedge.export.api import to_onnx
    from cortexedge.recording import Recording
    from cortexedge.runtime.decoder import StreamingDecoder
    from cortexedge.train.data.readers import read
    from cortexedge.train.data.synth import generate
    from cortexedge.train.fit import fit
    from cortexedge.train.models.registry import build_model

    assert (ce.fit, ce.Recipe, ce.to_onnx) == (fit, Recipe, to_onnx)
    assert (ce.StreamingDecoder, ce.Recording, ce.build_model) == (
        StreamingDecoder,
        Recording,
        build_model,
    )
    assert (ce.generate, ce.read_recording) == (generate, read)
    assert set(ce.__all__) == {"__version__", *ce._API} and set(ce.__all__) <= set(dir(ce))


def test_compress_is_callable_whatever_was_imported_first():
    """The subpackage `cortexedge.compress` shadows the function; it calls it instead."""
    import cortexedge.compress.recipe as recipe

    calls = []
    original = recipe.compress
    recipe.compress = lambda *a, **k: calls.append((a, k)) or "done"
    try:
        assert ce.compress("model", "rec", recipe="r") == "done"
    finally:
        recipe.compress = original
    assert calls == [(("model", "rec"), {"recipe": "r"})]


def test_unknown_name_is_an_attribute_error():
    with pytest.raises(AttributeError, match="no attribute 'fitt'"):
        ce.fitt  # noqa: B018

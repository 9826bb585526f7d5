"""Class 2, the C build folder: a tampered manifest, a library outside the folder, a truncated
or edited library, a missing key, a swapped source. Each is refused before ctypes loads
anything (library and `cortexedge profile --backend c`), the folder unchanged; a manifest
entry the runtime does not read may be removed (and the manifest sealed again) and the build
then decodes exactly as before.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.reliability.conftest import copy_of, needs_cc
from tests.reliability.outcomes import accepted, refused, refused_cli

pytestmark = needs_cc
GROUP = "2 C build folder"
BUILDS = ("float", "int")
READ = ("format_version", "numeric", "graph_sha256", "library", "layout", "states", "files",
        "sha256", "macs", "memory")  # fmt: skip
UNREAD = ("toolkit_version", "family", "prefix", "host_isa", "storage", "host_python",
          "verification", "verified_on")  # fmt: skip
WRONG = {"text": "x", "number": 5, "null": None, "list": [], "dict": {}}
# an empty layout is of the right type, and the runtime reads none of it
TYPED = [(k, w) for k in READ if k not in ("sha256", "format_version") for w in WRONG
         if (k, w) != ("layout", "dict")]  # fmt: skip
LIBRARY_PATHS = ("../other/libdecoder.so", "/lib/x86_64-linux-gnu/libc.so.6", "libc.so.6",
                 "sub/libdecoder.so", "./libdecoder.so", "")  # fmt: skip
CUTS = (0.0, 0.01, 0.33, 0.5, 0.9, -1)
SOURCES = ("decoder.c", "decoder.h", "decoder_weights.c", "decoder_host.c", "decoder_host.h",
           "decoder_host_py.c", "decoder.onnx")  # fmt: skip


def folder_of(request, pipeline, build: str, tmp_path: Path) -> Path:
    src = pipeline.cbuild if build == "float" else request.getfixturevalue("int_build")
    return copy_of(src, tmp_path)


def rewrite(folder: Path, change, reseal: bool = True) -> None:
    from cortexedge.runtime.backends.c_manifest import seal

    path = folder / "decoder_c.json"
    man = json.loads(path.read_text())
    change(man)
    if reseal:
        man["sha256"] = seal(man)
    path.write_text(json.dumps(man))


def open_c(folder: Path):
    from cortexedge.runtime import StreamingDecoder

    return lambda: StreamingDecoder(folder / "decoder.onnx", backend="c")


def both_refuse(folder: Path, match: str | None = None) -> None:
    refused(GROUP, open_c(folder), match, watch=(folder,))
    refused_cli(GROUP, ["profile", folder, "--backend", "c", "--bins", 5], match, watch=(folder,))


@pytest.mark.parametrize("key", READ)
@pytest.mark.parametrize("build", BUILDS)
def test_a_missing_key_is_refused(request, pipeline, tmp_path, build, key):
    folder = folder_of(request, pipeline, build, tmp_path)
    rewrite(folder, lambda m: m.pop(key), reseal=key != "sha256")
    both_refuse(folder)


@pytest.mark.parametrize("key", UNREAD)
@pytest.mark.parametrize("build", BUILDS)
def test_a_key_the_runtime_does_not_read_may_go(request, pipeline, tmp_path, build, key):
    folder = folder_of(request, pipeline, build, tmp_path)
    channels = json.loads((folder / "decoder_c.json").read_text())["layout"]["channels"]
    bins = np.random.default_rng(1).poisson(0.7, (30, channels)).astype(np.float32)
    clean = open_c(folder)().run(bins)
    rewrite(folder, lambda m: m.pop(key))
    accepted(GROUP, open_c(folder)().run(bins), clean)


@pytest.mark.parametrize("key", [k for k in READ if k not in ("sha256",)] + ["host_isa"])
@pytest.mark.parametrize("build", BUILDS)
def test_an_edit_without_the_seal_is_refused(request, pipeline, tmp_path, build, key):
    from tests.reliability.test_contract_tamper import nudge

    folder = folder_of(request, pipeline, build, tmp_path)
    rewrite(folder, lambda m: m.update({key: nudge(m[key])}), reseal=False)
    both_refuse(folder)


@pytest.mark.parametrize("key, kind", TYPED)
@pytest.mark.parametrize("build", BUILDS)
def test_a_resealed_wrong_type_is_refused(request, pipeline, tmp_path, build, key, kind):
    folder = folder_of(request, pipeline, build, tmp_path)
    rewrite(folder, lambda m: m.update({key: WRONG[kind]}))
    refused(GROUP, open_c(folder), watch=(folder,))


def _point_library(man: dict, path: str) -> None:
    man["files"][path] = man["files"]["libdecoder.so"]
    man["library"] = path


@pytest.mark.parametrize("path", LIBRARY_PATHS)
@pytest.mark.parametrize("build", BUILDS)
def test_a_library_outside_the_folder_is_refused(request, pipeline, tmp_path, build, path):
    folder = folder_of(request, pipeline, build, tmp_path)
    (folder / "sub").mkdir()
    copy_of(folder / "libdecoder.so", folder / "sub")
    rewrite(folder, lambda m: _point_library(m, path))
    both_refuse(folder)


@pytest.mark.parametrize("cut", CUTS)
@pytest.mark.parametrize("build", BUILDS)
def test_a_truncated_library_is_refused(request, pipeline, tmp_path, build, cut):
    folder = folder_of(request, pipeline, build, tmp_path)
    lib = folder / "libdecoder.so"
    data = lib.read_bytes()
    lib.write_bytes(data[: int(len(data) * cut)] if cut >= 0 else data[:cut])
    both_refuse(folder, "libdecoder.so: differs from the build's manifest")


@pytest.mark.parametrize("how", ("swapped", "edited", "deleted", "emptied"))
@pytest.mark.parametrize("name", SOURCES)
@pytest.mark.parametrize("build", BUILDS)
def test_a_changed_source_is_refused(request, pipeline, tmp_path, build, name, how):
    folder = folder_of(request, pipeline, build, tmp_path)
    path = folder / name
    if how == "swapped":  # the same file of the other build
        other = pipeline.cbuild if build == "int" else request.getfixturevalue("int_build")
        path.write_bytes((other / name).read_bytes())
    elif how == "edited":
        path.write_bytes(path.read_bytes() + b"\n")
    elif how == "deleted":
        path.unlink()
    else:
        path.write_bytes(b"")
    refused(GROUP, open_c(folder), watch=(folder,))


@pytest.mark.parametrize(
    "text",
    (
        "",
        "{",
        "[]",
        "null",
        '"x"',
        '{"format_version": 1}',
        '{"format_version": "2"}',
        '{"format_version": 3}',
        "\xff\xfe",
    ),  # fmt: skip
)
@pytest.mark.parametrize("build", BUILDS)
def test_an_unreadable_manifest_is_refused(request, pipeline, tmp_path, build, text):
    folder = folder_of(request, pipeline, build, tmp_path)
    (folder / "decoder_c.json").write_text(text, encoding="latin-1")
    both_refuse(folder)

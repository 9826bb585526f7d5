"""Class 6, runtime: bad bins and bad states, for every backend (c when a compiler exists).

Each backend x bad bin kind x position (a `step`, or a `run` block of 10 with the bad bin at
index k) must be refused, naming the bin, with the state and bins_since_reset unchanged;
bins of another dtype or layout holding the same numbers decode exactly as the float32 bins.
"""

from __future__ import annotations

import numpy as np
import pytest

from tests.reliability.conftest import HAVE_CC
from tests.reliability.outcomes import accepted, refused

GROUP = "6 runtime inputs"
C_ONLY = pytest.mark.skipif(not HAVE_CC, reason="no C compiler (cc/gcc): no C build to test")
DECODERS = [
    pytest.param("float", "numpy", id="float-numpy"),
    pytest.param("float", "ort", id="float-ort"),
    pytest.param("cfloat", "c", id="float-c", marks=C_ONLY),
    pytest.param("int", "numpy", id="int-numpy", marks=C_ONLY),
    pytest.param("int", "ort", id="int-ort", marks=C_ONLY),
    pytest.param("int", "c", id="int-c", marks=C_ONLY),
]
WARM = 5  # clean bins decoded before the bad one


def decoder_path(request, pipeline, source: str):
    if source == "float":
        return pipeline.onnx
    if source == "cfloat":
        return pipeline.cbuild / "decoder.onnx"
    return request.getfixturevalue("int_build") / "decoder.onnx"


def make(request, pipeline, source: str, backend: str):
    from cortexedge.runtime import StreamingDecoder

    return StreamingDecoder(decoder_path(request, pipeline, source), backend=backend)


def clean_bins(channels: int, rows: int = 10, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).poisson(0.8, (rows, channels)).astype(np.float32)


def _set(value):
    def bad(b):
        b = b.copy()
        b[len(b) // 2] = value
        return b

    return bad


VALUES = {  # bin -> a bin of the right shape with one refused value
    "nan": _set(np.nan), "inf": _set(np.inf), "neg_inf": _set(-np.inf), "negative": _set(-1.0),
    "tiny_negative": _set(-1e-30), "over_float32": lambda b: _set(1e300)(b.astype(np.float64)),
    "neg_nan": lambda b: _set(np.float32(-np.nan))(b),
}  # fmt: skip
STRUCTURE = {  # bin -> a bin of the wrong shape, dtype or kind
    "short": lambda b: b[:-1], "long": lambda b: np.append(b, 0), "row": lambda b: b[None],
    "scalar": lambda b: b[0], "empty": lambda b: b[:0], "complex": lambda b: b + 0j,
    "strings": lambda b: b.astype(str), "bytes": lambda b: b.astype("S4"),
    "objects": lambda b: b.astype(object), "datetime": lambda b: b.astype("datetime64[s]"),
    "ragged": lambda b: [b[:2].tolist(), [1.0]], "nones": lambda b: [None] * len(b),
    "dict": lambda b: {"x": b}, "text": lambda b: "1 2 3",
}  # fmt: skip
DTYPES = ("complex", "strings", "bytes", "objects", "datetime", "nones", "dict", "text")
POSITIONS = ("step", "run@0", "run@4", "run@9")


def _over_range(b):
    return _set(8.0)(b)  # the integer build reads counts 0..7


def _half(b):
    return _set(0.5)(b)  # not a whole count: only the integer C build refuses it


def bad_kinds(backend_id: str) -> list[str]:
    kinds = [*VALUES, *STRUCTURE]
    if backend_id.startswith("int"):
        kinds.append("over_range")
    if backend_id == "int-c":
        kinds.append("half_count")
    return kinds


def bad_of(kind: str):
    return {**VALUES, **STRUCTURE, "over_range": _over_range, "half_count": _half}[kind]


CASES = [
    pytest.param(*d.values, kind, pos, id=f"{d.id}-{kind}-{pos}", marks=d.marks)
    for d in DECODERS
    for kind in bad_kinds(d.id)
    for pos in POSITIONS
]


def _block(clean: np.ndarray, bad, k: int):
    """The clean block with row k replaced by `bad`: an array when it can be one, else a list."""
    rows = [*clean[:k], bad, *clean[k + 1 :]]
    if isinstance(bad, np.ndarray) and bad.shape == clean[0].shape:
        return np.stack([np.asarray(r, dtype=bad.dtype) for r in rows])
    return [r.tolist() if isinstance(r, np.ndarray) else r for r in rows]


@pytest.mark.parametrize("source, backend, kind, pos", CASES)
def test_a_bad_bin_is_refused_and_changes_nothing(request, pipeline, source, backend, kind, pos):
    dec = make(request, pipeline, source, backend)
    channels = dec.meta.input.shape[0]
    dec.run(clean_bins(channels, WARM, seed=1))
    clean, bad = clean_bins(channels), bad_of(kind)(clean_bins(channels)[0])
    if pos == "step":
        refused(GROUP, lambda: dec.step(bad), rf"^bin {WARM}\b", decoder=dec)
        return
    k = int(pos.split("@")[1])
    block = _block(clean, bad, k)
    # a value or a row's shape is named by its bin; a dtype may be the whole block's
    match = rf"^bin {WARM + k}\b" if kind not in DTYPES else rf"^(bin {WARM + k}\b|bins {WARM}\.\.)"
    refused(GROUP, lambda: dec.run(block), match, decoder=dec)


def _zeros_negative(b):
    out = b.copy()
    out[out == 0] = -0.0
    return out


def _strided(b):
    wide = np.zeros((b.shape[0], b.shape[1] * 2), b.dtype)
    wide[:, ::2] = b
    return wide[:, ::2]


def _readonly(b):
    out = b.copy()
    out.flags.writeable = False
    return out


SAME_NUMBERS = {  # a block [T, C] of float32 counts -> the same numbers in another form
    "float64": lambda b: b.astype(np.float64), "float16": lambda b: b.astype(np.float16),
    "int16": lambda b: b.astype(np.int16), "int64": lambda b: b.astype(np.int64),
    "uint8": lambda b: b.astype(np.uint8), "bool": lambda b: b > 0,
    "list": lambda b: b.tolist(), "tuple": lambda b: tuple(map(tuple, b.tolist())),
    "big_endian": lambda b: b.astype(">f4"), "strided": _strided, "readonly": _readonly,
    "negative_zero": _zeros_negative, "fortran": np.asfortranarray,
}  # fmt: skip
SAME = [
    pytest.param(*d.values, kind, pos, id=f"{d.id}-{kind}-{pos}", marks=d.marks)
    for d in DECODERS
    for kind in SAME_NUMBERS
    for pos in ("step", "run")
]


def _decode(dec, block, pos: str) -> np.ndarray:
    if pos == "run":
        return dec.run(block)
    return np.stack([dec.step(row) for row in block])


@pytest.mark.parametrize("source, backend, kind, pos", SAME)
def test_the_same_numbers_decode_alike(request, pipeline, source, backend, kind, pos):
    dec, ref = (make(request, pipeline, source, backend) for _ in range(2))
    channels = dec.meta.input.shape[0]
    clean = np.minimum(clean_bins(channels), 7)
    if kind == "bool":
        clean = (clean > 0).astype(np.float32)
    variant = SAME_NUMBERS[kind](clean)
    want = _decode(ref, clean, pos)
    accepted(GROUP, _decode(dec, variant, pos), want)
    assert dec.bins_since_reset == ref.bins_since_reset == len(clean)


def _one(state: dict, change) -> dict:
    name = sorted(state)[0]
    return {**state, name: change(state[name])}


BAD_STATES = {  # a decoder's state dict -> a refused one
    "list": lambda s: list(s.values()), "none": lambda s: None,
    "array": lambda s: next(iter(s.values())), "empty": lambda s: {},
    "extra": lambda s: {**s, "zz": next(iter(s.values()))},
    "renamed": lambda s: {k + "x": v for k, v in s.items()},
    "int_key": lambda s: {i: v for i, v in enumerate(s.values())},
    "mixed_keys": lambda s: {**s, 1: next(iter(s.values()))},
    "extra_dim": lambda s: _one(s, lambda v: v[None]), "flat": lambda s: _one(s, np.ravel),
    "transposed": lambda s: _one(s, lambda v: v.T), "scalar": lambda s: _one(s, lambda v: 0.0),
    "nan": lambda s: _one(s, lambda v: np.full(v.shape, np.nan)),
    "inf": lambda s: _one(s, lambda v: np.full(v.shape, -np.inf)),
    "overflow": lambda s: _one(s, lambda v: np.full(v.shape, 1e300)),
    "strings": lambda s: _one(s, lambda v: v.astype(str)),
    "complex": lambda s: _one(s, lambda v: v + 1j),
    "objects": lambda s: _one(s, lambda v: v.astype(object)),
    "ragged": lambda s: _one(s, lambda v: [[1.0, 2.0], [3.0]]),
    "nones": lambda s: _one(s, lambda v: [None] * v.size),
}  # fmt: skip
STATES = [
    pytest.param(*d.values, kind, id=f"{d.id}-{kind}", marks=d.marks)
    for d in DECODERS
    for kind in BAD_STATES
]


@pytest.mark.parametrize("source, backend, kind", STATES)
def test_a_bad_state_is_refused_and_changes_nothing(request, pipeline, source, backend, kind):
    dec = make(request, pipeline, source, backend)
    dec.run(clean_bins(dec.meta.input.shape[0], WARM, seed=2))
    bad = BAD_STATES[kind](dec.state)

    def set_state():
        dec.state = bad

    refused(GROUP, set_state, r"^state", decoder=dec)


@pytest.mark.parametrize("form", ("float64", "list", "float16_exact"))
@pytest.mark.parametrize("source, backend", [d for d in DECODERS])
def test_a_state_in_another_form_restores_alike(request, pipeline, source, backend, form):
    a, b = (make(request, pipeline, source, backend) for _ in range(2))
    channels = a.meta.input.shape[0]
    a.run(clean_bins(channels, WARM, seed=3))
    saved = a.state
    if form == "float16_exact":  # a state whose values float16 holds exactly
        saved = {k: np.round(v * 4) / 4 for k, v in saved.items()}
        a.state = saved
    convert = {"float64": lambda v: v.astype(np.float64), "list": lambda v: v.tolist(),
               "float16_exact": lambda v: v.astype(np.float16)}[form]  # fmt: skip
    b.state = {k: convert(v) for k, v in saved.items()}
    x = clean_bins(channels, seed=4)
    accepted(GROUP, b.run(x), a.run(x))

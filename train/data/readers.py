"""The registry of recording readers behind `cortexedge data convert` and `data formats`.

Each reader is a name, a one-line description, a cheap `detect(path)` that never raises, and
`read(path, **kwargs) -> Recording`. Auto-detection tries the readers in the order listed.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from cortexedge.errors import RecordingError
from cortexedge.recording import Recording
from cortexedge.train.data import arrays, imaging, imperial, neurobench, nwb
from cortexedge.train.data.containers import array_names


@dataclass(frozen=True)
class Reader:
    """One input format: how to recognise it and how to read it."""

    name: str
    description: str
    detect: Callable[[Path], bool]
    read: Callable[..., Recording]


READERS: dict[str, Reader] = {
    r.name: r
    for r in (
        Reader(
            "neurobench",
            "O'Doherty 2017 primate reaching .mat (v7.3), NeuroBench 2.3 preprocessing",
            neurobench.detect,
            neurobench.read,
        ),
        Reader(
            "nwb",
            "NWB file: units table -> binned counts, behaviour -> velocity (needs [nwb] extra)",
            nwb.detect,
            nwb.read,
        ),
        Reader(
            "imperial",
            "Imperial centre-out reaching .npz (spikes, hand_pos, direction, trial, bin_ms)",
            imperial.detect,
            imperial.read,
        ),
        Reader(
            "calcium",
            "two-photon .npz/.h5: dff [T, N], labels, fs_hz|bin_ms, optional mouse/session/trial",
            imaging.detect_calcium,
            imaging.read_calcium,
        ),
        Reader(
            "widefield",
            "widefield .npz/.h5: frames [T, H, W], labels, fs_hz|bin_ms, optional ids",
            imaging.detect_widefield,
            imaging.read_widefield,
        ),
        Reader(
            "arrays",
            "any .mat (v5, v7.3), .npz or HDF5 by array name: x=KEY y=KEY [bin_ms, split, ...]",
            arrays.detect,
            arrays.read,
        ),
    )
}


def read(path: str | Path, fmt: str = "auto", **kwargs) -> Recording:
    """Read `path` with the reader `fmt` ("auto": the first whose `detect` accepts the file).

    Errors name the file: missing, unreadable, unrecognised, or the reader's own complaint.
    """
    path = Path(path)
    if not path.is_file():
        raise RecordingError(f"recording not found: {path}")
    if fmt != "auto" and fmt not in READERS:
        raise RecordingError(f"unknown format '{fmt}': expected auto or one of {list(READERS)}")
    try:
        reader = READERS[fmt] if fmt != "auto" else _detect(path)
        _check_options(reader, kwargs)
        return reader.read(path, **kwargs)
    except RecordingError as e:
        raise RecordingError(f"{path}: {e}") from None


def _check_options(reader: Reader, kwargs: dict) -> None:
    params = inspect.signature(reader.read).parameters
    known = [n for n, p in params.items() if p.kind == p.KEYWORD_ONLY or p.default is not p.empty]
    unknown = sorted(set(kwargs) - set(known))
    if unknown:
        raise RecordingError(
            f"reader '{reader.name}' has no option {unknown}; its options: {known}"
        )


def _detect(path: Path) -> Reader:
    names = array_names(path)  # raises for a file that is neither .npz nor HDF5
    for reader in READERS.values():
        if reader.detect(path):
            return reader
    raise RecordingError(
        f"no reader recognises this file (top-level names {sorted(names)[:12]}); "
        f"known formats: {list(READERS)}; name its arrays with --x KEY --y KEY"
    )

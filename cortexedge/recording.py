"""The recording format every stage reads: neural input, targets, timing, segments and a split.

Torch-free on purpose, so that the runtime and the data commands load it fast. A recording is
saved as one `.npz` (no pickled objects) with a format version; loading validates every field
and names the one that is wrong.
"""

from __future__ import annotations

import json
import os
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cortexedge.atomic import atomic_open
from cortexedge.errors import RecordingError

FORMAT_VERSION = 1
MODALITIES = ("spikes", "calcium", "widefield")
SPLITS = ("train", "val", "test")


@dataclass
class Recording:
    """Neural input `x` with its targets, bin width, segment ids and train/val/test split.

    - `x`: [T, C] spike counts (`spikes`), [T, N] ΔF/F (`calcium`) or [T, H, W] frames
      (`widefield`).
    - `y`: [T, D] continuous targets (e.g. velocity), or None.
    - `labels`: [T] class ids or [T, K] multi-label {0, 1}, or None.
    - `segment`: [T] trial/segment id per row; windows never cross a change of id.
    - `split`: row indices for "train", "val" and "test" (disjoint).
    """

    x: np.ndarray
    bin_ms: float
    modality: str = "spikes"
    y: np.ndarray | None = None
    labels: np.ndarray | None = None
    segment: np.ndarray | None = None
    split: dict[str, np.ndarray] = field(default_factory=dict)
    channel_names: list[str] | None = None
    target_names: list[str] | None = None
    label_names: list[str] | None = None
    meta: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.x = np.asarray(self.x)
        if self.segment is None:
            self.segment = np.zeros(len(self.x), dtype=np.int64)
        if self.channel_names is None and self.x.ndim == 2:
            self.channel_names = [f"ch{i}" for i in range(self.x.shape[1])]
        self.validate()

    # ------------------------------------------------------------------ properties
    @property
    def n_bins(self) -> int:
        return int(self.x.shape[0])

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Shape of one bin of input: (C,) or (H, W)."""
        return tuple(int(s) for s in self.x.shape[1:])

    @property
    def task(self) -> str:
        """ "regression" when continuous targets exist, else "classification"."""
        return "regression" if self.y is not None else "classification"

    def rows(self, split: str) -> np.ndarray:
        """Row indices of one split, sorted."""
        if split not in self.split:
            raise RecordingError(f"recording has no '{split}' split (has {sorted(self.split)})")
        return self.split[split]

    def fingerprint(self) -> str:
        """Short sha256 of the data arrays, recorded in checkpoints to tie a model to its data."""
        import hashlib

        h = hashlib.sha256()
        for arr in (self.x, self.y, self.labels, self.segment):
            if arr is not None:
                h.update(np.ascontiguousarray(arr).tobytes())
        return h.hexdigest()[:16]

    # ------------------------------------------------------------------ validation
    def validate(self) -> None:
        """Check shapes, dtypes, finite values, non-negative counts and the split."""
        x = self.x
        if self.modality not in MODALITIES:
            raise RecordingError(f"modality: '{self.modality}' is not one of {MODALITIES}")
        if x.ndim not in (2, 3):
            raise RecordingError(f"x: expected [T, C] or [T, H, W], got shape {x.shape}")
        if self.modality == "widefield" and x.ndim != 3:
            raise RecordingError(f"x: widefield frames must be [T, H, W], got shape {x.shape}")
        if self.modality != "widefield" and x.ndim != 2:
            raise RecordingError(f"x: {self.modality} input must be [T, C], got shape {x.shape}")
        if x.shape[0] == 0 or x.size == 0:
            raise RecordingError(f"x: recording is empty (shape {x.shape})")
        if not (np.issubdtype(x.dtype, np.integer) or np.issubdtype(x.dtype, np.floating)):
            raise RecordingError(f"x: dtype {x.dtype} is not numeric")
        if np.issubdtype(x.dtype, np.floating) and not np.isfinite(x).all():
            bad = int(np.argwhere(~np.isfinite(x))[0][0])
            raise RecordingError(f"x: non-finite value (NaN or inf) at row {bad}")
        if self.modality == "spikes" and (x < 0).any():
            bad = int(np.argwhere(x < 0)[0][0])
            raise RecordingError(f"x: spike counts must be non-negative, row {bad} is negative")
        if not (np.isfinite(self.bin_ms) and self.bin_ms > 0):
            raise RecordingError(f"bin_ms: must be a positive number, got {self.bin_ms}")
        T = x.shape[0]
        if self.y is None and self.labels is None:
            raise RecordingError("y/labels: a recording needs continuous targets or class labels")
        if self.y is not None:
            self.y = np.asarray(self.y)
            if self.y.ndim != 2 or self.y.shape[0] != T:
                raise RecordingError(f"y: expected [T={T}, D], got shape {self.y.shape}")
            if not np.issubdtype(self.y.dtype, np.floating):
                raise RecordingError(f"y: expected a float dtype, got {self.y.dtype}")
            if not np.isfinite(self.y).all():
                bad = int(np.argwhere(~np.isfinite(self.y))[0][0])
                raise RecordingError(f"y: non-finite value (NaN or inf) at row {bad}")
        if self.labels is not None:
            self.labels = np.asarray(self.labels)
            lab = self.labels
            if lab.ndim not in (1, 2) or lab.shape[0] != T:
                raise RecordingError(f"labels: expected [T={T}] or [T, K], got shape {lab.shape}")
            if not np.issubdtype(lab.dtype, np.integer):
                raise RecordingError(f"labels: expected an integer dtype, got {lab.dtype}")
            if (lab < 0).any():
                raise RecordingError("labels: class ids must be non-negative")
            if lab.ndim == 2 and lab.max() > 1:
                raise RecordingError("labels: multi-label [T, K] labels must be 0 or 1")
        seg = np.asarray(self.segment)
        if seg.shape != (T,) or not np.issubdtype(seg.dtype, np.integer):
            raise RecordingError(f"segment: expected integer [T={T}], got {seg.dtype} {seg.shape}")
        self.segment = seg
        if self.channel_names is not None and x.ndim == 2 and len(self.channel_names) != x.shape[1]:
            raise RecordingError(
                f"channel_names: {len(self.channel_names)} names for {x.shape[1]} channels"
            )
        if self.y is not None and self.target_names is not None:
            if len(self.target_names) != self.y.shape[1]:
                raise RecordingError(
                    f"target_names: {len(self.target_names)} names for {self.y.shape[1]} targets"
                )
        self._validate_split(T)

    def _validate_split(self, T: int) -> None:
        unknown = set(self.split) - set(SPLITS)
        if unknown:
            raise RecordingError(f"split: unknown set(s) {sorted(unknown)}, expected {SPLITS}")
        seen = np.zeros(T, dtype=bool)
        for name in SPLITS:
            if name not in self.split:
                continue
            idx = np.asarray(self.split[name])
            if idx.ndim != 1 or (idx.size and not np.issubdtype(idx.dtype, np.integer)):
                raise RecordingError(f"split.{name}: expected a 1-D integer index array")
            idx = idx.astype(np.int64)
            if idx.size and (idx.min() < 0 or idx.max() >= T):
                raise RecordingError(f"split.{name}: index out of range [0, {T})")
            if seen[idx].any():
                raise RecordingError(f"split.{name}: overlaps another split")
            seen[idx] = True
            self.split[name] = np.sort(idx)

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | os.PathLike) -> Path:
        """Write to `.npz` atomically (temporary file, then rename)."""
        path = Path(path)
        if not path.parent.exists():
            raise RecordingError(f"output folder does not exist: {path.parent}")
        arrays: dict[str, np.ndarray] = {
            "format_version": np.array(FORMAT_VERSION),
            "x": self.x,
            "bin_ms": np.array(float(self.bin_ms)),
            "segment": self.segment,
            "header": np.array(
                json.dumps(
                    {
                        "modality": self.modality,
                        "channel_names": self.channel_names,
                        "target_names": self.target_names,
                        "label_names": self.label_names,
                        "meta": self.meta,
                    }
                )
            ),
        }
        if self.y is not None:
            arrays["y"] = self.y
        if self.labels is not None:
            arrays["labels"] = self.labels
        for name, idx in self.split.items():
            arrays[f"split_{name}"] = np.asarray(idx, dtype=np.int64)
        with atomic_open(path) as f:
            np.savez_compressed(f, **arrays)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> Recording:
        """Read and validate a recording written by `save`."""
        path = Path(path)
        if not path.is_file():
            raise RecordingError(f"recording not found: {path}")
        data = _read_npz(path)
        try:
            version, bin_ms, header = _check_fields(data)
            split = {name: data[f"split_{name}"] for name in SPLITS if f"split_{name}" in data}
            return cls(
                x=data["x"],
                bin_ms=bin_ms,
                modality=header.get("modality", "spikes"),
                y=data.get("y"),
                labels=data.get("labels"),
                segment=data["segment"],
                split=split,
                channel_names=header.get("channel_names"),
                target_names=header.get("target_names"),
                label_names=header.get("label_names"),
                meta=header.get("meta") or {},
            )
        except RecordingError as e:
            raise RecordingError(f"{path}: {e}") from None

    def summary(self) -> dict:
        """A small dict describing the recording, for `cortexedge data info` and logs."""
        return {
            "modality": self.modality,
            "bins": self.n_bins,
            "bin_ms": self.bin_ms,
            "input_shape": list(self.input_shape),
            "targets": None if self.y is None else int(self.y.shape[1]),
            "labels": None if self.labels is None else list(self.labels.shape[1:]) or "class ids",
            "segments": int(len(np.unique(self.segment))),
            "split": {k: int(len(v)) for k, v in self.split.items()},
            "source": self.meta.get("source"),
            **({"read": self.meta["read"]} if "read" in self.meta else {}),
        }


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    """Every array of an `.npz` (no pickles), or one clear error for anything else. A file
    that is not a zip is refused before numpy sees it, as numpy would call it a pickle."""
    with open(path, "rb") as f:
        magic = f.read(6)
    if magic[:4] != b"PK\x03\x04" and magic != b"\x93NUMPY":
        raise RecordingError(f"{path}: not an .npz recording (no zip header: empty, truncated "
                             "or another kind of file)")  # fmt: skip
    try:
        z = np.load(path, allow_pickle=False)
        if not isinstance(z, np.lib.npyio.NpzFile):
            raise RecordingError(f"{path}: a single .npy array, not an .npz recording")
        with z:
            return {k: z[k] for k in z.files}
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as e:
        raise RecordingError(f"{path}: not a readable .npz recording ({e})") from None


def _scalar(data: dict, key: str, kind: type) -> float | int:
    value = data[key]
    if value.shape != () or not np.issubdtype(value.dtype, np.number) or value.dtype == bool:
        raise RecordingError(f"{key}: expected one number, got {value.dtype} {value.shape}")
    if kind is int and float(value) != int(value):
        raise RecordingError(f"{key}: expected a whole number, got {value}")
    return kind(value)


_HEADER_LISTS = ("channel_names", "target_names", "label_names")


def _check_fields(data: dict) -> tuple[int, float, dict]:
    """(format version, bin_ms, header) with every field's type checked."""
    for key in ("format_version", "x", "bin_ms", "segment", "header"):
        if key not in data:
            raise RecordingError(f"missing field '{key}' (not a cortexedge recording?)")
    version = _scalar(data, "format_version", int)
    if version < 1:
        raise RecordingError(f"format_version: expected a whole number ≥ 1, got {version}")
    if version > FORMAT_VERSION:
        raise RecordingError(
            f"format version {version} is newer than this cortexedge ({FORMAT_VERSION}); "
            "upgrade cortexedge"
        )
    if data["header"].shape != () or data["header"].dtype.kind != "U":
        raise RecordingError("header: expected one JSON string")
    try:
        header = json.loads(str(data["header"]))
    except json.JSONDecodeError as e:
        raise RecordingError(f"header is not valid JSON ({e})") from None
    if not isinstance(header, dict):
        raise RecordingError(f"header: expected a JSON object, got {type(header).__name__}")
    for key in _HEADER_LISTS:
        names = header.get(key)
        if names is not None and not (
            isinstance(names, list) and all(isinstance(n, str) for n in names)
        ):
            raise RecordingError(f"header.{key}: expected a list of strings, got {names!r:.60}")
    if not isinstance(header.get("modality", "spikes"), str):
        raise RecordingError("header.modality: expected a string")
    if not isinstance(header.get("meta") or {}, dict):
        raise RecordingError("header.meta: expected a JSON object")
    return version, float(_scalar(data, "bin_ms", float)), header

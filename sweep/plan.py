"""A sweep plan: the TOML file that names recordings, decoders, recipes, seeds and builds.

    recordings = ["reach.npz"]             # paths, relative to the plan file
    decoders = ["gru", "my_decoders.py:NormGRU"]  # families, or user classes (--trust-code)
    seeds = [0, 1]
    [train]   fit settings (epochs, train_stride, patience, ...), as `cortexedge train`
    [data]    windowing parameters, as `cortexedge train`
    [models.gru]  constructor kwargs of one decoder (e.g. hidden = 16)
    [[recipes]]   one table per recipe: `name` plus any `Recipe` field (sparsity, bits, ...)
    [build]   c = false, qemu_bins = 0 (ONNX is always built)

`Plan.cells()` expands the grid; a cell's key hashes its full config with the recording's
fingerprint, so a changed recording or setting is a new cell and an unchanged one is skipped.
Everything is checked here, before Ray starts: every mistake is one CortexEdgeError line.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from cortexedge.errors import CortexEdgeError

TOP_KEYS = {"recordings", "decoders", "seeds", "train", "data", "models", "recipes", "build"}
BUILD_KEYS = {"c": bool, "qemu_bins": int}


class PlanError(CortexEdgeError):
    """A sweep plan is malformed or names something that does not exist."""


@dataclass(frozen=True)
class Cell:
    """One train-compress-export unit; `group` is the key of the training run it shares."""

    recording: str
    fingerprint: str
    decoder: str
    recipe_name: str
    recipe: dict
    seed: int
    group: str
    key: str

    def label(self) -> str:
        return f"{Path(self.recording).stem}/{self.decoder}/{self.recipe_name}/seed{self.seed}"


@dataclass
class Plan:
    """A checked plan; recordings are absolute paths with their fingerprints."""

    recordings: dict[str, str]  # path -> fingerprint
    decoders: list[str]
    seeds: list[int]
    recipes: dict[str, dict]  # name -> Recipe fields (without seed)
    train: dict = field(default_factory=dict)
    data: dict = field(default_factory=dict)
    models: dict[str, dict] = field(default_factory=dict)
    build: dict = field(default_factory=lambda: {"c": False, "qemu_bins": 0})
    code: dict[str, dict] = field(default_factory=dict)  # user decoder -> its code record

    def group_config(self, recording: str, decoder: str, seed: int) -> dict:
        """What a training run depends on (its key is the hash of this: an edited user decoder
        file is a new run)."""
        return {
            "fingerprint": self.recordings[recording],
            "decoder": decoder,
            **({"code": self.code[decoder]} if decoder in self.code else {}),
            "model": self.models.get(decoder, {}),
            "train": self.train,
            "data": self.data,
            "seed": seed,
        }

    def cells(self) -> list[Cell]:
        """The grid, in recording, decoder, seed, recipe order."""
        out = []
        grid = itertools.product(self.recordings, self.decoders, self.seeds, self.recipes)
        for rec, dec, seed, name in grid:
            config = self.group_config(rec, dec, seed)
            group = digest(config)
            key = digest({**config, "recipe": self.recipes[name], "build": self.build})
            fp = self.recordings[rec]
            out.append(Cell(rec, fp, dec, name, self.recipes[name], seed, group, key))
        return out

    def describe(self) -> str:
        """The grid and its size, as `--dry-run` prints it."""
        n = len(self.cells())
        groups = len(self.recordings) * len(self.decoders) * len(self.seeds)
        builds = "ONNX" + (" + C" if self.build["c"] else "")
        if self.build["qemu_bins"]:
            builds += f" + qemu ({self.build['qemu_bins']} bins)"
        lines = [
            f"recordings ({len(self.recordings)}): "
            + ", ".join(Path(r).name for r in self.recordings),
            f"decoders ({len(self.decoders)}): {', '.join(self.decoders)}",
            f"recipes ({len(self.recipes)}): {', '.join(self.recipes)}",
            f"seeds ({len(self.seeds)}): {', '.join(map(str, self.seeds))}",
            f"builds: {builds}",
            f"{n} cells = {len(self.recordings)} x {len(self.decoders)} x "
            f"{len(self.recipes)} x {len(self.seeds)}; {groups} training runs shared by them",
        ]
        return "\n".join(lines)


def digest(obj: dict) -> str:
    """A short, stable hash of a JSON-able config."""
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _list(raw: dict, name: str, kind: type, where: Path) -> list:
    value = raw.get(name)
    if not isinstance(value, list) or not value:
        raise PlanError(f"{where}: '{name}' must be a non-empty list")
    for v in value:
        if isinstance(v, bool) or not isinstance(v, kind):
            raise PlanError(f"{where}: '{name}' entries must be {kind.__name__}s, got {v!r}")
    if len(set(value)) != len(value):
        raise PlanError(f"{where}: '{name}' lists an entry twice")
    return value


def _table(raw: dict, name: str, where: Path) -> dict:
    value = raw.get(name, {})
    if not isinstance(value, dict):
        raise PlanError(f"{where}: '{name}' must be a table")
    return value


def _decoders(raw: dict, where: Path, trust_code: bool) -> tuple[list[str], dict, dict]:
    """The decoder names (a user class as its resolved spec, a file path taken from the plan's
    folder), the code records of the user classes (imported only with `trust_code`) and the
    name each was written as."""
    from cortexedge.families import FAMILIES
    from cortexedge.user_code import TRUST_HINT, is_code_ref, parse_ref, register_user_class

    names, code, written = [], {}, {}
    for name in _list(raw, "decoders", str, where):
        as_written = name
        if is_code_ref(name):
            if not trust_code:
                raise PlanError(f"{where}: decoder '{name}' is user code; {TRUST_HINT}")
            module, _, cls = name.rpartition(":")
            local = where.parent / module if module.endswith(".py") else None
            try:
                ref = parse_ref(f"{local}:{cls}" if local else name, f"{where}: decoder")
                name = register_user_class(ref)
            except CortexEdgeError as e:
                raise PlanError(str(e)) from None
            code[name] = ref.record()
        elif name not in FAMILIES:
            raise PlanError(
                f"{where}: unknown decoder '{name}' (known: {', '.join(sorted(FAMILIES))}, "
                "or file.py:Class)"
            )
        names.append(name)
        written[as_written] = name
    return names, code, written


def _models(raw: dict, written: dict[str, str], where: Path) -> dict[str, dict]:
    """[models.<decoder>] tables, keyed by the decoder's resolved name."""
    from cortexedge.families import FAMILIES
    from cortexedge.train.config import RunConfig, check_model_keys

    models = {}
    for name, kwargs in _table(raw, "models", where).items():
        if name not in written or not isinstance(kwargs, dict):
            raise PlanError(f"{where}: [models.{name}] must be a table for a listed decoder")
        try:
            check_model_keys(RunConfig(model=kwargs), FAMILIES[written[name]].model_class())
        except CortexEdgeError as e:
            raise PlanError(f"{where}: [models.{name}]: {e}") from None
        models[written[name]] = kwargs
    return models


def _train(raw: dict, where: Path) -> dict:
    from cortexedge.train.config import train_key_types

    train, types = _table(raw, "train", where), train_key_types()
    for key, value in train.items():
        if key not in types or key == "seed":
            known = ", ".join(k for k in types if k != "seed")
            raise PlanError(f"{where}: unknown key 'train.{key}' (known: {known}; seeds: 'seeds')")
        if isinstance(value, bool) or not isinstance(value, types[key]):
            raise PlanError(f"{where}: train.{key} has the wrong type: {value!r}")
    return train


def _recipes(raw: dict, where: Path) -> dict[str, dict]:
    from dataclasses import fields

    from cortexedge.compress.recipe import Recipe

    tables = raw.get("recipes")
    if not isinstance(tables, list) or not tables or not all(isinstance(t, dict) for t in tables):
        raise PlanError(f"{where}: 'recipes' must be one or more [[recipes]] tables")
    known = {f.name for f in fields(Recipe)} - {"seed"}
    recipes = {}
    for i, table in enumerate(tables):
        fields_ = {k: v for k, v in table.items() if k != "name"}
        name = str(table.get("name", f"recipe{i}"))
        bad = sorted(set(fields_) - known)
        if bad:
            names = ", ".join(sorted(known))
            raise PlanError(f"{where}: recipe '{name}': unknown key '{bad[0]}' (known: {names})")
        try:
            Recipe(**fields_).validate()
        except CortexEdgeError as e:
            raise PlanError(f"{where}: recipe '{name}': {e}") from None
        if name in recipes:
            raise PlanError(f"{where}: two recipes are named '{name}'")
        recipes[name] = fields_
    return recipes


def _build(raw: dict, where: Path) -> dict:
    build = {"c": False, "qemu_bins": 0, **_table(raw, "build", where)}
    for key, value in build.items():
        kind = BUILD_KEYS.get(key)
        if kind is None:
            raise PlanError(f"{where}: unknown key 'build.{key}' (known: c, qemu_bins)")
        if not isinstance(value, kind) or (kind is int and (isinstance(value, bool) or value < 0)):
            raise PlanError(f"{where}: build.{key} must be a {kind.__name__}, got {value!r}")
    if build["qemu_bins"] and not build["c"]:
        raise PlanError(f"{where}: build.qemu_bins needs build.c = true")
    return build


def _recordings(raw: dict, where: Path) -> dict[str, str]:
    from cortexedge.recording import Recording

    out = {}
    for entry in _list(raw, "recordings", str, where):
        path = (where.parent / entry).resolve()
        if not path.is_file():
            raise PlanError(f"{where}: recording not found: {entry}")
        out[str(path)] = Recording.load(path).fingerprint()  # dropped at once: only the hash
    return out


def load_plan(path: str | os.PathLike, trust_code: bool = False) -> Plan:
    """Read and check a plan file (recordings are fingerprinted, not kept in memory);
    `trust_code` lets it name user decoders (file.py:Class, module:Class)."""
    where = Path(path)
    try:
        raw = tomllib.loads(where.read_text())
    except (FileNotFoundError, IsADirectoryError):
        raise PlanError(f"plan file not found: {where}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise PlanError(f"{where}: not valid TOML ({e})") from None
    unknown = sorted(set(raw) - TOP_KEYS)
    if unknown:
        raise PlanError(
            f"{where}: unknown key '{unknown[0]}' (known: {', '.join(sorted(TOP_KEYS))})"
        )
    decoders, code, written = _decoders(raw, where, trust_code)
    return Plan(
        recordings=_recordings(raw, where),
        decoders=decoders,
        seeds=_list(raw, "seeds", int, where),
        recipes=_recipes(raw, where),
        train=_train(raw, where),
        data=_table(raw, "data", where),
        models=_models(raw, written, where),
        build=_build(raw, where),
        code=code,
    )

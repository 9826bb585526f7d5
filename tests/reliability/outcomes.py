"""The two outcomes a bad input may have, asserted, and the tally they report to.

`refused` runs a library call that must raise one clear CortexEdgeError (one line) and
leave the watched files and the decoder's state as they were; `refused_cli` runs a CLI
command that must exit 2 with one error line and no traceback, files unchanged;
`accepted` asserts a result equal to the clean input's. Each records its outcome in
`TALLY` under the defect class of the issue, for the summary `conftest.py` prints.
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from cortexedge.errors import CortexEdgeError

TALLY: dict[str, Counter] = {}


def record(group: str, outcome: str) -> None:
    """Count one case of `group` with `outcome` ("refused", "accepted" or "failed")."""
    TALLY.setdefault(group, Counter())[outcome] += 1


def digest(*paths: Path) -> dict[str, str]:
    """sha256 of every file under `paths` (files or folders), by path; absent paths too."""
    out = {}
    for root in map(Path, paths):
        files = sorted(root.rglob("*")) if root.is_dir() else [root]
        for f in files:
            if f.is_file():
                out[str(f)] = hashlib.sha256(f.read_bytes()).hexdigest()
            elif not f.exists():
                out[str(f)] = "absent"
    return out


def _decoder_facts(decoder: Any) -> tuple[dict, int] | None:
    if decoder is None:
        return None
    return {k: v.copy() for k, v in decoder.state.items()}, decoder.bins_since_reset


def _same_facts(before: tuple[dict, int] | None, decoder: Any) -> None:
    if before is None:
        return
    state, bins = before
    assert decoder.bins_since_reset == bins, "a refused input changed bins_since_reset"
    after = decoder.state
    assert sorted(after) == sorted(state)
    for name, value in state.items():
        np.testing.assert_array_equal(after[name], value, err_msg=f"state {name} changed")


def refused(
    group: str,
    call: Callable[[], Any],
    match: str | None = None,
    *,
    watch: tuple[Path, ...] = (),
    decoder: Any = None,
) -> str:
    """`call()` raises one one-line CortexEdgeError (matching `match`), changing nothing."""
    files, facts = digest(*watch), _decoder_facts(decoder)
    try:
        call()
    except CortexEdgeError as e:
        message = str(e)
    else:
        raise AssertionError("the bad input was accepted")
    assert message and "\n" not in message, f"not one line: {message!r}"
    if match is not None:
        assert re.search(match, message), f"{match!r} not in {message!r}"
    assert digest(*watch) == files, "a refused input changed files"
    _same_facts(facts, decoder)
    record(group, "refused")
    return message


def refused_cli(
    group: str, args: list[str], match: str | None = None, *, watch: tuple[Path, ...] = ()
) -> str:
    """The CLI exits 2 with one error line and no traceback, and changes no watched file."""
    from click.testing import CliRunner

    from cortexedge.cli.main import cli

    files = digest(*watch)
    result = CliRunner().invoke(cli, [str(a) for a in args], terminal_width=200)
    text = result.output
    assert result.exit_code == 2, f"exit {result.exit_code}: {text[-2000:]} {result.exception!r}"
    assert isinstance(result.exception, SystemExit | None), repr(result.exception)
    assert "Traceback" not in text, text
    errors = [line for line in text.splitlines() if re.match(r"(error|Error): ", line)]
    assert len(errors) == 1, f"not one error line: {text!r}"
    if match is not None:
        assert re.search(match, errors[0]), f"{match!r} not in {errors[0]!r}"
    assert digest(*watch) == files, "a refused command changed files"
    record(group, "refused")
    return errors[0]


def accepted(group: str, got: Any, want: Any) -> None:
    """The result of a bad-looking but valid input equals the clean input's result."""
    got, want = np.asarray(got), np.asarray(want)
    assert got.shape == want.shape and got.dtype == want.dtype, (got.dtype, want.dtype)
    np.testing.assert_array_equal(got, want)
    record(group, "accepted")

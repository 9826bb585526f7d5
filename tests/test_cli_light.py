"""Every `--help` and every argument error answers before torch, brevitas or onnx load."""

from __future__ import annotations

import json
import subprocess
import sys

PROBE = r"""
import json, sys
import click
from cortexedge.cli.main import cli, main

HEAVY = ("torch", "brevitas", "torch_pruning", "onnx", "onnxruntime", "ray")

def paths(group, prefix=()):
    for name, cmd in group.commands.items():
        yield (*prefix, name)
        if isinstance(cmd, click.Group):
            yield from paths(cmd, (*prefix, name))

out = {}
for path in [(), *paths(cli)]:
    codes = [main([*path, "--help"]), main([*path, "--no-such-option"])]
    out[" ".join(path) or "cortexedge"] = codes
out["train --epochs abc"] = [main(["train", "--epochs", "abc"])]
out["heavy"] = [m for m in HEAVY if m in sys.modules]
print("RESULT" + json.dumps(out))
"""


def test_help_and_argument_errors_load_no_heavy_module():
    r = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, check=True)
    out = json.loads(r.stdout.rsplit("RESULT", 1)[1])
    assert out.pop("heavy") == []
    assert out.pop("train --epochs abc") == [2]
    assert {"cortexedge", "train", "compress", "export", "profile", "data", "data convert"} <= set(
        out
    )
    assert {k: v for k, v in out.items() if v != [0, 2]} == {}

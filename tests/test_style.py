"""Source functions stay small enough to hold in your head: at most 60 lines of code each.

Lines inside a string literal of a function (its docstring, a C or Markdown template) do not
count: a template reads as one block, not as logic.
"""

from __future__ import annotations

import ast
import subprocess

from tests.conftest import REPO

MAX_LINES = 60


def _source_files() -> list[str]:
    out = subprocess.run(["git", "ls-files", "*.py"], cwd=REPO, capture_output=True, text=True)
    return [f for f in out.stdout.split() if not f.startswith("tests/")]


def code_lines(fn: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    """Lines of `fn` outside its multi-line string literals."""
    lines = set(range(fn.lineno, fn.end_lineno + 1))
    for node in ast.walk(fn):
        if isinstance(node, ast.Constant | ast.JoinedStr) and node.end_lineno > node.lineno:
            if isinstance(node, ast.JoinedStr) or isinstance(node.value, str):
                lines -= set(range(node.lineno + 1, node.end_lineno + 1))
    return len(lines)


def long_functions(files: list[str], limit: int = MAX_LINES) -> list[str]:
    found = []
    for name in files:
        tree = ast.parse((REPO / name).read_text(), name)
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                n = code_lines(node)
                if n > limit:
                    found.append(f"{name}:{node.lineno} {node.name} ({n} lines)")
    return found


def test_code_lines_leave_out_templates_only():
    fn = ast.parse('def f():\n    """doc\n    more"""\n    x = 1\n    t = f"""a\nb\nc"""\n')
    assert code_lines(fn.body[0]) == 4  # def, docstring's first line, x, t's first line


def test_no_source_function_is_over_60_lines():
    assert long_functions(_source_files()) == []

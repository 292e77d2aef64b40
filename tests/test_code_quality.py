"""ruff (lint + format) and mypy stay clean."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import ROOT, run, tool


@pytest.mark.parametrize(
    "cmd", [["ruff", "check", "."], ["ruff", "format", "--check", "."], ["mypy"]]
)
def test_tool_is_clean(cmd: list[str], tmp_path: Path) -> None:
    # their caches go to tmp: the tests leave the checkout as they found it
    caches = {"RUFF_CACHE_DIR": str(tmp_path / "ruff"), "MYPY_CACHE_DIR": str(tmp_path / "mypy")}
    run([tool(cmd[0]), *cmd[1:]], ROOT, timeout=300, **caches)


MAX_APP_FUNCTION_LINES = 60


def long_functions(root: Path, limit: int) -> list[str]:
    """``file:line name (n lines)`` of every function under ``root`` longer than ``limit``
    lines, from its ``def`` to its last line."""
    import ast

    found = []
    for f in sorted(root.rglob("*.py")):
        for node in ast.walk(ast.parse(f.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                n = (node.end_lineno or node.lineno) - node.lineno + 1
                if n > limit:
                    found.append(f"{f.relative_to(root)}:{node.lineno} {node.name} ({n} lines)")
    return found


def test_the_app_layer_has_short_functions() -> None:
    """The Hydra-facing layer stays thin: a function of ``app/`` longer than this is split
    into helpers named for what they do (or its logic moves to the library)."""
    app = ROOT / "src" / "geoensemble" / "app"
    assert long_functions(app, MAX_APP_FUNCTION_LINES) == []

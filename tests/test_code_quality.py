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

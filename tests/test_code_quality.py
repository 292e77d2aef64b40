"""ruff (lint + format) and mypy stay clean."""

from __future__ import annotations

import pytest

from tests.conftest import ROOT, run, tool


@pytest.mark.parametrize(
    "cmd", [["ruff", "check", "."], ["ruff", "format", "--check", "."], ["mypy"]]
)
def test_tool_is_clean(cmd: list[str]) -> None:
    run([tool(cmd[0]), *cmd[1:]], ROOT, timeout=300)

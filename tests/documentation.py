"""The user documentation: the short README plus the mkdocs site under docs/.

Tests that check a documented promise (a command, a key, a rule) read it from here, so the
promise stays checked wherever in the manual it lives.
"""

from __future__ import annotations

from pathlib import Path

from tests.conftest import ROOT

README = ROOT / "README.md"
DOCS = ROOT / "docs"


def documentation_files() -> list[Path]:
    """README.md and every Markdown page of the documentation site, in a stable order."""
    return [README, *sorted(DOCS.rglob("*.md"))]


def documentation_text() -> str:
    """The whole manual as one text (README first, then the docs pages)."""
    return "\n\n".join(f.read_text() for f in documentation_files())

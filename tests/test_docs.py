"""The manual fits: a short README with the two commands, and a documentation site that
builds with warnings as errors (``mkdocs build --strict``), its API reference generated from
the docstrings."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT
from tests.documentation import DOCS, README, documentation_files

MAX_README_LINES = 250
PICTURE_MAX_BYTES = 200_000


def _two_commands() -> tuple[str, str]:
    """The README's two commands: the first two bash blocks under "The two commands"."""
    text = README.read_text()
    section = text.split("## The two commands", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```bash\n(.*?)\n```", section, flags=re.S)
    assert len(blocks) >= 2, "README: 'The two commands' needs two ```bash blocks"
    return blocks[0].strip(), blocks[1].strip()


def _git_status() -> str:
    return subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=all", "--ignored"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout


def test_the_readme_is_short_and_holds_the_two_commands() -> None:
    lines = README.read_text().splitlines()
    assert len(lines) <= MAX_README_LINES, f"README.md has {len(lines)} lines"
    main, tests = _two_commands()
    assert main == (
        "python3.11 -m venv .venv && . .venv/bin/activate && pip install -e . && dvc repro"
    )
    assert tests == (
        "python3.11 -m venv .venv && .venv/bin/pip install -q -e '.[test]' "
        "&& .venv/bin/python -m pytest -n 2 --dist loadfile"
    )
    # the install page says the same
    install = (DOCS / "install.md").read_text()
    assert main in install and tests in install


def test_ci_runs_the_readmes_test_command() -> None:
    _, tests = _two_commands()
    ci = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()]
    assert tests in ci, ".ci/run must run the README's test command as it is written"


def test_the_readme_picture_and_links_lead_somewhere() -> None:
    text = README.read_text()
    pictures = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text)
    assert len(pictures) == 1, pictures
    picture = ROOT / pictures[0]
    assert picture.suffix == ".png" and picture.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert picture.stat().st_size < PICTURE_MAX_BYTES
    links = re.findall(r"(?<!!)\[[^\]]*\]\((docs/[^)#]+\.md)(?:#[^)]*)?\)", text)
    assert len(links) >= 5, "README: 'where to go next' links into the docs"
    for link in links:
        assert (ROOT / link).is_file(), link


def test_the_docs_dependencies_are_in_the_test_extras() -> None:
    import tomllib

    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]["test"]
    names = {re.split(r"[<>=!\[ ]", e, maxsplit=1)[0] for e in extras}
    assert {"mkdocs", "mkdocs-material", "mkdocstrings"} <= names
    assert any(e.startswith("mkdocstrings[python]") for e in extras)
    assert all(re.search(r">=.*,<", e) for e in extras if e.startswith("mkdocs"))


def test_every_nav_page_exists_and_every_page_is_documentation() -> None:
    config = yaml.load((ROOT / "mkdocs.yml").read_text(), Loader=yaml.BaseLoader)
    assert config["docs_dir"] == "docs" and config["strict"] == "true"

    def pages(node: object) -> list[str]:
        if isinstance(node, str):
            return [node]
        if isinstance(node, dict):
            return [p for v in node.values() for p in pages(v)]
        if isinstance(node, list):
            return [p for v in node for p in pages(v)]
        return []

    nav = pages(config["nav"])
    assert "index.md" in nav and "reference/api.md" in nav
    for page in nav:
        assert (DOCS / page).is_file(), page
    assert len(documentation_files()) > len(nav)  # README + every page


def _build(project: Path, site: Path) -> subprocess.CompletedProcess[str]:
    """``mkdocs build --strict`` of ``project``'s mkdocs.yml into ``site``."""
    pytest.importorskip("mkdocs")
    pytest.importorskip("mkdocstrings_handlers.python")
    cmd = [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)]
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    proc = subprocess.run(cmd, cwd=project, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"{shlex.join(cmd)}\n{proc.stdout}\n{proc.stderr}"
    assert "WARNING" not in proc.stderr, proc.stderr
    return proc


def test_the_site_builds_with_warnings_as_errors(tmp_path: Path) -> None:
    before = _git_status()
    site = tmp_path / "site"
    _build(ROOT, site)
    # the API reference is generated from the docstrings
    api = (site / "reference" / "api" / "index.html").read_text()
    for name in ("EnsembleSearch", "SpatialBlockCV", "fit_ensemble", "predict_many"):
        assert f'id="geoensemble.api.{name}"' in api, name
    assert "Fit the generations of members and keep the best." in api
    # every key of params.yaml reaches the configuration reference
    assert "n_clusters" in (site / "reference" / "params" / "index.html").read_text()
    assert (site / "index.html").is_file() and (site / "tour" / "index.html").is_file()
    assert not (ROOT / "site").exists()
    assert _git_status() == before


def test_a_page_outside_the_nav_does_not_fail_the_strict_build(tmp_path: Path) -> None:
    """Pages added beside the nav (before someone lists them) are reported, not fatal."""
    project = tmp_path / "project"
    shutil.copytree(DOCS, project / "docs")
    shutil.copy(ROOT / "mkdocs.yml", project / "mkdocs.yml")
    for name in ("src", "params.yaml"):  # the API reference and the key reference read them
        (project / name).symlink_to(ROOT / name)
    (project / "docs" / "not-in-nav.md").write_text("# Extra\n\nSee [the tour](tour.md).\n")
    proc = _build(project, tmp_path / "site")
    assert "not-in-nav.md" in proc.stderr  # named as INFO
    assert (tmp_path / "site" / "not-in-nav" / "index.html").is_file()

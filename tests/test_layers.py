"""The package's layering, checked by import-linter with the contracts in pyproject.toml.

app > api > predict > ensemble > tracking > features > io > core: a module imports only from
its own layer or below (imports inside functions count), the config schema imports nothing of
the library, and no two sibling modules import each other.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT

LINT = Path(sys.executable).parent / "lint-imports"


def lint(src: Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    """``lint-imports`` on the package under ``src``, run outside the checkout (its cache
    goes to ``cwd``)."""
    return subprocess.run(
        [str(LINT), "--config", str(ROOT / "pyproject.toml"), "--no-cache"],
        cwd=cwd,
        env={"PYTHONPATH": str(src), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_the_layering_contracts_are_kept(tmp_path: Path) -> None:
    proc = lint(ROOT / "src", tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for name in (
        "app > api > predict > ensemble > tracking > features > io > core KEPT",
        "the config schema imports nothing of the library but its defaults KEPT (1 ignored import)",
        "no import cycles between sibling modules KEPT",
        "only the app layer knows Hydra and OmegaConf KEPT",
    ):
        assert name in proc.stdout


def test_an_upward_import_inside_a_function_breaks_the_contract(tmp_path: Path) -> None:
    src = tmp_path / "src"
    shutil.copytree(ROOT / "src" / "geoensemble", src / "geoensemble")
    mod = src / "geoensemble" / "io" / "atomic.py"
    mod.write_text(
        mod.read_text() + "\n\ndef _sneaky() -> None:\n    from geoensemble.app import config\n"
    )
    proc = lint(src, tmp_path)
    assert proc.returncode == 1
    assert "geoensemble.io is not allowed to import geoensemble.app" in proc.stdout
    assert "geoensemble.io.atomic -> geoensemble.app.config" in proc.stdout


def test_hydra_below_the_app_layer_breaks_the_contract(tmp_path: Path) -> None:
    src = tmp_path / "src"
    shutil.copytree(ROOT / "src" / "geoensemble", src / "geoensemble")
    mod = src / "geoensemble" / "ensemble" / "pipeline.py"
    mod.write_text(mod.read_text() + "\n\ndef _sneaky() -> None:\n    import hydra.utils\n")
    proc = lint(src, tmp_path)
    assert proc.returncode == 1
    assert "only the app layer knows Hydra and OmegaConf BROKEN" in proc.stdout


def private_imports(root: Path) -> list[str]:
    """``file:line module`` of every import of another package's private module or name."""
    import ast

    found = []
    for f in sorted(root.rglob("*.py")):
        for node in ast.walk(ast.parse(f.read_text())):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
            for name in names:
                if name.split(".")[0] in {"geoensemble", "__future__"}:
                    continue
                if any(part.startswith("_") for part in name.split(".")):
                    found.append(f"{f.relative_to(root)}:{node.lineno} {name}")
    return found


def test_no_private_module_of_another_package_is_imported(tmp_path: Path) -> None:
    """Other projects are used through their public APIs only: a private module or name
    (``sklearn.ensemble._forest``, ``omegaconf._utils``) can change in any release."""
    assert private_imports(ROOT / "src" / "geoensemble") == []
    bad = tmp_path / "pkg"
    bad.mkdir()
    (bad / "m.py").write_text("from sklearn.utils._testing import MinimalClassifier\n")
    assert private_imports(bad) == [
        "m.py:1 sklearn.utils._testing",
        "m.py:1 sklearn.utils._testing.MinimalClassifier",
    ]

"""The package's layering, checked by import-linter with the contracts in pyproject.toml.

app > api > predict > ensemble > tracking > features > io > core: a module imports only from
its own layer or below (imports inside functions count), the config schema imports nothing of
the library, no two sibling modules import each other, and the app's stage modules (train,
evaluate, predict, promote) import none of the others: what two of them share lives in the
library or in a shared app module, and only the dispatcher (``app/stages.py``) calls them.
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
        "the stage modules do not import each other KEPT",
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


STAGE_MODULES = ("train", "evaluate", "predict", "promote")


def stage_imports(app: Path) -> list[str]:
    """``file:line module`` of every import, at module level or inside a function, absolute or
    relative (or by name, ``importlib.import_module``), of one stage module of the ``app``
    package by another."""
    import ast

    stages = {f"geoensemble.app.{s}" for s in STAGE_MODULES}
    found = []
    for stage in STAGE_MODULES:
        f = app / f"{stage}.py"
        others = stages - {f"geoensemble.app.{stage}"}
        for node in ast.walk(ast.parse(f.read_text())):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = ["geoensemble", "app"][: 3 - node.level] if node.level else []
                mod = ".".join([*base, *([node.module] if node.module else [])])
                names = [mod, *(f"{mod}.{a.name}" for a in node.names)]
            elif isinstance(node, ast.Constant) and isinstance(node.value, str):
                names = [node.value] if node.value in stages else []
            for name in names:
                for other in others:
                    if name == other or name.startswith(f"{other}."):
                        found.append(f"{f.name}:{node.lineno} {other}")
    return sorted(set(found))


def test_no_stage_module_imports_another(tmp_path: Path) -> None:
    """train, evaluate, predict and promote stand alone: a stage importing another (even
    inside a function) breaks both this check and the import-linter contract."""
    assert stage_imports(ROOT / "src" / "geoensemble" / "app") == []
    src = tmp_path / "src"
    shutil.copytree(ROOT / "src" / "geoensemble", src / "geoensemble")
    app = src / "geoensemble" / "app"
    sneaky = {
        "evaluate": "from geoensemble.app.train import member_spec",
        "train": "from geoensemble.app import promote",
        "predict": "from .evaluate import headline",
        "promote": "import importlib; importlib.import_module('geoensemble.app.predict')",
    }
    for stage, line in sneaky.items():
        mod = app / f"{stage}.py"
        mod.write_text(mod.read_text() + f"\n\ndef _sneaky() -> None:\n    {line}\n")
    found = stage_imports(app)
    assert [f.split(":")[0] for f in found] == [
        "evaluate.py",
        "predict.py",
        "promote.py",
        "train.py",
    ], found
    assert [f.split(" ")[1] for f in found] == [
        "geoensemble.app.train",
        "geoensemble.app.evaluate",
        "geoensemble.app.predict",
        "geoensemble.app.promote",
    ], found
    proc = lint(src, tmp_path)
    assert proc.returncode == 1
    assert "the stage modules do not import each other BROKEN" in proc.stdout

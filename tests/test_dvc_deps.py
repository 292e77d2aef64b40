"""Every stage of ``dvc.yaml`` depends on the code it runs, so an edit re-runs it.

The code closure of a stage is derived from the imports (module level and inside functions)
of its entry script and of the modules it reaches, starting from the stage's function in
``stages.py`` rather than the whole dispatch table, plus modules named in strings (dask
worker preloads). Package ``__init__`` files count: importing a submodule runs them.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"
PKG = "geoensemble"
STAGES = ("scene", "ingest", "featurize", "labels", "train", "evaluate", "predict")
# cli dispatches to every stage through this module; each stage's own function is followed
DISPATCH = f"{PKG}.app.stages"


def _module_file(name: str) -> Path | None:
    base = SRC / Path(*name.split("."))
    if (base / "__init__.py").exists():
        return base / "__init__.py"
    if base.with_suffix(".py").exists():
        return base.with_suffix(".py")
    return None


def _resolve(name: str) -> list[str]:
    """``name`` and its parent packages, as far as they are modules of ours."""
    parts = name.split(".")
    out = []
    for i in range(1, len(parts) + 1):
        mod = ".".join(parts[:i])
        if _module_file(mod) is not None:
            out.append(mod)
    return out


def _imports(node: ast.AST, package: str) -> set[str]:
    found: set[str] = set()
    for n in ast.walk(node):
        if isinstance(n, ast.Import):
            names = [a.name for a in n.names]
        elif isinstance(n, ast.ImportFrom):
            if n.level:
                base = package.split(".")[: len(package.split(".")) - n.level + 1]
                mod = ".".join([*base, n.module] if n.module else base)
            else:
                mod = n.module or ""
            names = [mod, *(f"{mod}.{a.name}" for a in n.names)]
        elif isinstance(n, ast.Constant) and isinstance(n.value, str):
            names = [n.value] if n.value.startswith(f"{PKG}.") else []
        else:
            continue
        for name in names:
            if name == PKG or name.startswith(f"{PKG}."):
                found.update(_resolve(name))
    return found


def _package_of(mod: str, path: Path) -> str:
    return mod if path.name == "__init__.py" else mod.rpartition(".")[0]


def stage_closure(stage: str) -> set[Path]:
    """The source files (relative to the project root) that ``stage`` can run."""
    script = ROOT / "pipelines" / f"{stage}.py"
    stages_file = _module_file(DISPATCH)
    assert stages_file is not None
    tree = ast.parse(stages_file.read_text())
    fn = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == stage)
    top = [n for n in tree.body if isinstance(n, ast.Import | ast.ImportFrom)]
    # the helpers of stages.py (e.g. the DVC-output guard cli runs before every stage)
    top += [
        n
        for n in tree.body
        if isinstance(n, ast.FunctionDef) and n.name not in (*STAGES, "run_all", "promote")
    ]
    todo = _imports(ast.parse(script.read_text()), PKG) | _imports(fn, PKG)
    for n in top:
        todo |= _imports(n, PKG)
    files = {script.relative_to(ROOT), stages_file.relative_to(ROOT)}
    seen: set[str] = {DISPATCH}
    while todo:
        mod = todo.pop()
        if mod in seen:
            continue
        seen.add(mod)
        path = _module_file(mod)
        if path is None:
            continue
        files.add(path.relative_to(ROOT))
        todo |= _imports(ast.parse(path.read_text()), _package_of(mod, path)) - {DISPATCH}
    return files


def suggest_deps(stage: str) -> list[str]:
    """The closure of ``stage`` as dvc.yaml deps: a folder where all its modules are needed."""
    files = stage_closure(stage)
    out: set[str] = set()
    for f in files:
        d = f.parent
        whole = d != Path("src") / PKG and all(
            p.relative_to(ROOT) in files for p in (ROOT / d).glob("*.py")
        )
        out.add(str(d) if whole else str(f))
    return sorted(out)


def _covered(path: Path, deps: list[str]) -> bool:
    return any(path == Path(d) or Path(d) in path.parents for d in deps)


def _dvc_stages() -> dict[str, dict]:
    return yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]


@pytest.mark.parametrize("stage", STAGES)
def test_stage_depends_on_its_code(stage: str) -> None:
    deps = [str(d) for d in _dvc_stages()[stage].get("deps", [])]
    missing = sorted(str(p) for p in stage_closure(stage) if not _covered(p, deps))
    assert not missing, (
        f"dvc.yaml stage {stage!r} misses code deps {missing}; its code is {suggest_deps(stage)}"
    )


def test_closure_follows_function_imports() -> None:
    """The closure sees imports inside functions and string preloads (a hand-worked case)."""
    train = {str(p) for p in stage_closure("train")}
    assert "src/geoensemble/ensemble/member.py" in train  # named only as a preload string
    assert "src/geoensemble/workers.py" in train  # compute's worker preload
    assert "src/geoensemble/tracking/tracker.py" in train
    scene = {str(p) for p in stage_closure("scene")}
    assert "src/geoensemble/synthetic.py" in scene
    assert "src/geoensemble/ensemble/search.py" not in scene


def write_deps() -> None:
    """Rewrite the code deps of every stage in dvc.yaml from the closures (comments kept).

    ``python tests/test_dvc_deps.py`` after adding or moving modules.
    """
    from ruamel.yaml import YAML

    y = YAML()
    y.width = 100
    y.indent(mapping=2, sequence=4, offset=2)
    path = ROOT / "dvc.yaml"
    doc = y.load(path.read_text())
    for stage in STAGES:
        deps = doc["stages"][stage]["deps"]
        data = [d for d in deps if not str(d).startswith(("src/", "pipelines/"))]
        deps[:] = [*suggest_deps(stage), *data]
    with path.open("w") as f:
        y.dump(doc, f)


if __name__ == "__main__":
    import sys

    sys.path.insert(0, str(SRC))
    write_deps()

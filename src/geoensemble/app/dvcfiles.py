"""What ``dvc.yaml`` and ``dvc.lock`` in a project folder say about a path (no DVC import).

Small on purpose: the guard of the pipeline's outputs runs before every stage.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml


def load_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return {}
    return data if isinstance(data, dict) else {}


def rel_path(path: str | os.PathLike[str], root: Path) -> str:
    p = Path(path)
    p = p.resolve() if p.is_absolute() else (root / p).resolve()
    try:
        return p.relative_to(root.resolve()).as_posix()
    except ValueError:
        return p.as_posix()


def dvc_outputs(root: Path | None = None) -> dict[str, str]:
    """Every output (``outs``, ``metrics``, ``plots`` with a path) of ``dvc.yaml`` in ``root``,
    relative to it, with the name of the stage that writes it."""
    root = root or Path.cwd()
    stages = load_yaml(root / "dvc.yaml").get("stages") or {}
    found = {}
    for name, stage in stages.items():
        for kind in ("outs", "metrics", "plots"):
            for out in (stage or {}).get(kind) or []:
                path = next(iter(out)) if isinstance(out, dict) else str(out)
                found[rel_path(path, root)] = str(name)
    return found


def dvc_owner(
    path: str | os.PathLike[str], root: Path | None = None, *, holding: bool = False
) -> tuple[str, str] | None:
    """``(output, stage)`` of the ``dvc.yaml`` output that ``path`` lies in (or, with
    ``holding``, that lies in ``path``), else None."""
    root = root or Path.cwd()
    rel = rel_path(path, root)
    for out, stage in dvc_outputs(root).items():
        if rel == out or rel.startswith(out.rstrip("/") + "/"):
            return out, stage
        if holding and out.startswith(rel.rstrip("/") + "/"):
            return out, stage
    return None


def dvc_managed(path: str | os.PathLike[str], root: Path | None = None) -> bool:
    """Whether ``path`` lies in an output of a stage of ``dvc.yaml`` (DVC versions it)."""
    return dvc_owner(path, root) is not None

"""Where a map came from: a hash of the resolved config, DVC hashes of the inputs, and
whether an output path belongs to a DVC-managed output (which may always be replaced)."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import yaml

from geoensemble.config import AppConfig, to_dict


def config_hash(cfg: AppConfig) -> str:
    """SHA-256 of the resolved config (keys sorted), the same on every machine."""
    text = json.dumps(to_dict(cfg), sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def _load_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return {}
    return data if isinstance(data, dict) else {}


def _rel(path: str | os.PathLike[str], root: Path) -> str:
    p = Path(path)
    p = p.resolve() if p.is_absolute() else (root / p).resolve()
    try:
        return p.relative_to(root.resolve()).as_posix()
    except ValueError:
        return p.as_posix()


def dvc_hashes(paths: list[str], root: Path | None = None) -> dict[str, str]:
    """The md5 DVC recorded in ``dvc.lock`` (outs and deps) for each of ``paths`` it knows."""
    root = root or Path.cwd()
    lock = _load_yaml(root / "dvc.lock")
    known: dict[str, str] = {}
    for stage in (lock.get("stages") or {}).values():
        for entry in [*(stage.get("deps") or []), *(stage.get("outs") or [])]:
            if isinstance(entry, dict) and entry.get("md5") and entry.get("path"):
                known[_rel(entry["path"], root)] = str(entry["md5"])
    out = {}
    for p in paths:
        rel = _rel(p, root)
        if rel in known:
            out[rel] = known[rel]
    return out


def dvc_outputs(root: Path | None = None) -> dict[str, str]:
    """Every output (``outs``, ``metrics``, ``plots`` with a path) of ``dvc.yaml`` in ``root``,
    relative to it, with the name of the stage that writes it."""
    root = root or Path.cwd()
    stages = _load_yaml(root / "dvc.yaml").get("stages") or {}
    found = {}
    for name, stage in stages.items():
        for kind in ("outs", "metrics", "plots"):
            for out in (stage or {}).get(kind) or []:
                path = next(iter(out)) if isinstance(out, dict) else str(out)
                found[_rel(path, root)] = str(name)
    return found


def dvc_owner(
    path: str | os.PathLike[str], root: Path | None = None, *, holding: bool = False
) -> tuple[str, str] | None:
    """``(output, stage)`` of the ``dvc.yaml`` output that ``path`` lies in (or, with
    ``holding``, that lies in ``path``), else None."""
    root = root or Path.cwd()
    rel = _rel(path, root)
    for out, stage in dvc_outputs(root).items():
        if rel == out or rel.startswith(out.rstrip("/") + "/"):
            return out, stage
        if holding and out.startswith(rel.rstrip("/") + "/"):
            return out, stage
    return None


def dvc_managed(path: str | os.PathLike[str], root: Path | None = None) -> bool:
    """Whether ``path`` lies in an output of a stage of ``dvc.yaml`` (DVC versions it)."""
    return dvc_owner(path, root) is not None

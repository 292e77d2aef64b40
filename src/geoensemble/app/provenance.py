"""Where a map came from: a hash of the resolved config, DVC hashes of the inputs, and
whether an output path belongs to a DVC-managed output (which may always be replaced)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from geoensemble.app.config import AppConfig, to_dict
from geoensemble.app.dvcfiles import dvc_managed, dvc_outputs, dvc_owner, load_yaml, rel_path

__all__ = ["config_hash", "dvc_hashes", "dvc_managed", "dvc_outputs", "dvc_owner"]


def config_hash(cfg: AppConfig) -> str:
    """SHA-256 of the resolved config (keys sorted), the same on every machine."""
    text = json.dumps(to_dict(cfg), sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def dvc_hashes(paths: list[str], root: Path | None = None) -> dict[str, str]:
    """The md5 DVC recorded in ``dvc.lock`` (outs and deps) for each of ``paths`` it knows."""
    root = root or Path.cwd()
    lock = load_yaml(root / "dvc.lock")
    known: dict[str, str] = {}
    for stage in (lock.get("stages") or {}).values():
        for entry in [*(stage.get("deps") or []), *(stage.get("outs") or [])]:
            if isinstance(entry, dict) and entry.get("md5") and entry.get("path"):
                known[rel_path(entry["path"], root)] = str(entry["md5"])
    out = {}
    for p in paths:
        rel = rel_path(p, root)
        if rel in known and _still_has(root, rel, known[rel]):
            out[rel] = known[rel]
    return out


def _still_has(root: Path, rel: str, md5: str) -> bool:
    """Whether the file or folder ``rel`` on disk still hashes to ``md5`` (DVC's own hash,
    so a lock entry is only copied into a map's provenance when it is true; DVC's state cache
    makes this cheap for outputs it has just written)."""
    try:
        from dvc.repo import Repo

        with Repo(str(root)) as repo:
            outs = repo.find_outs_by_path(str(root / rel))
            return any(str(o.get_hash().value) == md5 for o in outs)
    except Exception:  # not a DVC output, no DVC repo: nothing to vouch for
        return False

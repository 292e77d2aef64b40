"""Registered model versions of a local SQLite store, read with ``sqlite3`` alone.

Importing MLflow and opening its SQL store take 1.5-3 s, before the first model can be
loaded. For the common case of the predict stage (``models:/<name>/<version>`` or
``models:/<name>@<alias>`` in a ``sqlite:///`` store on this machine, its model files in a
local folder) the version, its tags and its folder are read straight from MLflow's tables,
read-only. Anything else (another schema than the installed MLflow's, a server, a
``runs:/`` URI, a version not READY, files elsewhere) returns ``None``: the caller then
takes MLflow's own path. Trust is unchanged: the file is checked against the sha256 tag
recorded at registration and loaded from geoensemble's allow-list
(:func:`~geoensemble.tracking.models._load_skops`).
"""

from __future__ import annotations

import contextlib
import functools
import json
import re
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from geoensemble.tracking.store import sqlite_path


@dataclass(frozen=True)
class LocalVersion:
    """A registered version read from a local store: where its files are and its tags."""

    name: str
    version: str
    run_id: str | None
    folder: Path
    tags: dict[str, str]
    model_id: str | None


@functools.cache
def mlflow_schema_head() -> str | None:
    """The schema revision the installed MLflow writes, from its migration files (MLflow is
    not imported); ``None`` if it cannot be told."""
    import importlib.util

    try:
        spec = importlib.util.find_spec("mlflow")
    except (ImportError, ValueError):
        return None
    if spec is None or spec.origin is None:
        return None
    folder = Path(spec.origin).parent / "store" / "db_migrations" / "versions"
    revisions: set[str] = set()
    parents: set[str] = set()
    for f in folder.glob("*.py"):
        text = f.read_text(encoding="utf-8", errors="replace")
        m = re.search(r"^revision\s*=\s*[\"'](\w+)[\"']", text, re.M)
        if m is None:
            continue
        revisions.add(m.group(1))
        for line in re.findall(r"^down_revision\s*=\s*(.*)$", text, re.M):
            parents.update(re.findall(r"[\"'](\w+)[\"']", line))
    heads = revisions - parents
    return heads.pop() if len(heads) == 1 else None


def _current(con: sqlite3.Connection) -> bool:
    """Whether the store open as ``con`` has the schema the installed MLflow writes."""
    head = mlflow_schema_head()
    rows = con.execute("SELECT version_num FROM alembic_version").fetchall()
    return head is not None and rows == [(head,)]


def schema_current(path: Path, timeout: float = 10.0) -> bool:
    """Whether the SQLite store ``path`` has the schema the installed MLflow writes."""
    try:
        uri = f"{path.resolve().as_uri()}?mode=ro"
        with contextlib.closing(sqlite3.connect(uri, uri=True, timeout=timeout)) as con:
            return _current(con)
    except sqlite3.Error:
        return False


def local_version(store_uri: str, model_uri: str, *, timeout: float = 10.0) -> LocalVersion | None:
    """The version ``model_uri`` names in the SQLite store ``store_uri``, read with sqlite3,
    or ``None`` when MLflow's own path must resolve it (see the module's description)."""
    path = sqlite_path(store_uri)
    if path is None or not path.is_file() or not model_uri.startswith("models:/"):
        return None
    ref = model_uri[len("models:/") :]
    if "@" in ref:
        name, alias = ref.split("@", 1)
        version = None
    elif "/" in ref:
        name, version = ref.rsplit("/", 1)
        alias = None
        if not version.isdigit():
            return None
    else:
        return None  # models:/<model id>
    try:
        uri = f"{path.resolve().as_uri()}?mode=ro"
        with contextlib.closing(sqlite3.connect(uri, uri=True, timeout=timeout)) as con:
            if not _current(con):
                return None  # another schema: MLflow reports it (or knows it)
            if alias is not None:
                found = con.execute(
                    "SELECT version FROM registered_model_aliases WHERE name = ? AND alias = ?",
                    (name, alias),
                ).fetchall()
                if len(found) != 1:
                    return None
                version = str(found[0][0])
            rows = con.execute(
                "SELECT run_id, source, storage_location, status, current_stage "
                "FROM model_versions WHERE name = ? AND version = ?",
                (name, int(str(version))),
            ).fetchall()
            if len(rows) != 1:
                return None
            run_id, source, location, status, stage = rows[0]
            if status != "READY" or stage == "Deleted_Internal":
                return None
            tags = dict(
                con.execute(
                    "SELECT key, value FROM model_version_tags WHERE name = ? AND version = ?",
                    (name, int(str(version))),
                ).fetchall()
            )
    except (sqlite3.Error, ValueError):
        return None
    source = str(source or "")
    model_id = (
        source.split("models:/", 1)[1].split("/", 1)[0] if source.startswith("models:/m-") else None
    )
    folder = _local_folder(str(location or ""))
    if folder is None or not (folder / "MLmodel").is_file():
        return None
    return LocalVersion(
        name=name,
        version=str(version),
        run_id=str(run_id) if run_id else None,
        folder=folder,
        tags={str(k): str(v) for k, v in tags.items()},
        model_id=model_id,
    )


def _local_folder(location: str) -> Path | None:
    """The folder of a ``file://`` storage location (``None`` for any other scheme)."""
    from urllib.parse import unquote, urlsplit

    parts = urlsplit(location)
    if parts.scheme != "file" or parts.netloc not in ("", "localhost") or parts.query:
        return None
    folder = Path(unquote(parts.path))
    return folder if folder.is_absolute() and folder.is_dir() else None


def read_mlmodel(folder: Path) -> tuple[dict[str, Any], list[str]] | None:
    """The flavours and the signature's input names of the model in ``folder`` (its
    ``MLmodel`` file), or ``None`` if it has no column names (MLflow's path reports it)."""
    import yaml

    try:
        info = yaml.safe_load((folder / "MLmodel").read_text(encoding="utf-8"))
        flavors = info["flavors"]
        inputs = json.loads(info["signature"]["inputs"])
        names = [str(c["name"]) for c in inputs]
    except (OSError, yaml.YAMLError, ValueError, TypeError, KeyError):
        return None
    if not isinstance(flavors, dict) or not names:
        return None
    return flavors, names

"""Which existing outputs geoensemble may replace: only what it recognisably wrote itself.

A store (the stack, the features) is replaced as a whole folder, so a wrong path
would delete whatever is there: it is replaced only when it is a finished geoensemble store of
the same kind (its ``geoensemble.json`` sidecar names the kind; stores of earlier versions
are recognised by their sidecar's keys) holding nothing but the store itself. A GeoTiff (a
map, ``labels.tif``, a scene band) is replaced only when its tags say geoensemble wrote it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

SIDECAR = "geoensemble.json"
# the kind of a store -> the stage that writes it (named in "rebuild it" advice)
STORE_STAGES = {"stack": "ingest", "features": "featurize"}
# what a store folder holds besides its arrays
_STORE_FILES = {".zattrs", ".zgroup", ".zmetadata", SIDECAR}
# files that mark a project (or a user's) folder: never a store
PROJECT_MARKERS = (".git", ".dvc", "dvc.yaml", "mlflow.db", "params.yaml", "pyproject.toml")
# the tag every GeoTiff geoensemble writes carries (value: what it is)
OUTPUT_TAG = "geoensemble_output"
_LEGACY_SCENE = ("SOURCE", "geoensemble.synthetic")


def store_kind(path: str | os.PathLike[str]) -> str | None:
    """The kind of geoensemble store at ``path`` (``stack``, ``features``), else None."""
    try:
        meta = json.loads((Path(path) / SIDECAR).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(meta, dict):
        return None
    kind = meta.get("kind")
    if kind is None:  # a store of a geoensemble version before "kind"
        if "feature_names" in meta:
            kind = "features"
        elif "layers" in meta and "source" in meta:
            kind = "stack"
    return kind if kind in STORE_STAGES else None


def store_refusal(path: str | os.PathLike[str], kind: str) -> str | None:
    """Why the existing ``path`` must not be replaced by a new ``kind`` store (None: it may).

    Only an empty folder or a finished geoensemble store of the same kind, holding nothing
    else, may be replaced.
    """
    p = Path(path)
    if p.is_symlink():
        return "it is a symbolic link, not a store folder"
    if not p.is_dir():
        return "it is a file, not a store folder"
    entries = sorted(p.iterdir())
    if not entries:
        return None  # nothing to lose
    marker = next((e.name for e in entries if e.name in PROJECT_MARKERS), None)
    if marker:
        return f"it is not a store but a project folder (it holds {marker})"
    found = store_kind(p)
    if found is None or not (p / ".zmetadata").is_file():
        return f"it is not a store geoensemble wrote (no {SIDECAR} and .zmetadata of one)"
    if found != kind:
        return f"it is a geoensemble {found} store, not a {kind} store"
    for e in entries:
        if e.name in _STORE_FILES:
            continue
        if e.is_symlink() or not e.is_dir() or not (e / ".zarray").is_file():
            return f"it holds {e.name}, which is not part of a store"
        with os.scandir(e) as it:
            odd = next((f.name for f in it if not f.is_file()), None)  # links: DVC's cache
        if odd:
            return f"it holds {e.name}/{odd}, which is not part of a store"
    return None


def tif_refusal(path: str | os.PathLike[str]) -> str | None:
    """Why the existing file ``path`` is not a GeoTiff geoensemble wrote (None: it is)."""
    import rasterio
    from rasterio.errors import RasterioError

    p = Path(path)
    if p.is_symlink() or not p.is_file():
        return "it is not a regular file"
    try:
        with rasterio.open(p) as src:
            tags = src.tags()
    except (RasterioError, OSError):
        return "it is not a GeoTiff geoensemble wrote (it cannot be read as one)"
    if OUTPUT_TAG in tags or tags.get(_LEGACY_SCENE[0]) == _LEGACY_SCENE[1]:
        return None
    return f"it is not a GeoTiff geoensemble wrote (it has no {OUTPUT_TAG} tag)"


def refuse_unless_ours_tif(
    extra: Callable[[Path], bool] | None = None,
) -> Callable[[Path], str | None]:
    """A ``replace_if`` for :func:`~geoensemble.io.atomic.atomic_path`: only our GeoTiffs
    (or files ``extra`` recognises, e.g. outputs of an earlier version) are replaced."""

    def check(p: Path) -> str | None:
        why = tif_refusal(p)
        return None if why is None or (extra is not None and extra(p)) else why

    return check

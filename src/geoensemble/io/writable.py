"""Check, before a stage does any work, that its outputs can be written.

A stage that computes for minutes and then finds its output folder unwritable wastes the work
and may leave half of its outputs (and an MLflow run) behind; these checks fail first, naming
the output as the caller calls it, and change nothing on disk.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

from geoensemble.errors import OutputError


def _first_existing(p: Path) -> Path:
    while not p.exists() and p != p.parent:
        p = p.parent
    return p


def _probe(folder: Path) -> str | None:
    """Why a file cannot be created in ``folder`` (None if it can); leaves nothing behind.

    ``os.access`` is not enough: as root it says yes to read-only mounts and to /proc.
    """
    probe = folder / f".geoensemble-write-probe-{uuid.uuid4().hex[:8]}"
    try:
        probe.touch(exist_ok=False)
    except OSError as exc:
        return exc.strerror or type(exc).__name__
    probe.unlink(missing_ok=True)
    return None


def check_writable(
    target: str | os.PathLike[str], *, key: str, kind: Literal["folder", "store"] = "folder"
) -> None:
    """Fail early if ``target`` cannot be written.

    Parameters
    ----------
    target
        A folder the stage writes into (``kind="folder"``), or a store (a folder written as
        a whole: created beside it under a temporary name and moved into place).
    key
        What the caller calls ``target`` (its argument name, say), for the message.

    Raises
    ------
    OutputError
        Naming the key, the path and the obstacle (a file where a folder should be, a
        read-only or missing location).
    """
    p = Path(target).absolute()
    fix = f"set {key} to a writable location"
    if p.exists() and not p.is_dir():
        raise OutputError(f"cannot write {key}={target}: {p} is a file, not a folder; {fix}")
    base = _first_existing(p if kind == "folder" else p.parent)
    if not base.is_dir():
        raise OutputError(
            f"cannot write {key}={target}: {base} is a file, not a folder, so nothing can be "
            f"created under it; {fix}"
        )
    why = _probe(base)
    if why is not None:
        raise OutputError(
            f"cannot write {key}={target}: cannot create files in {base} ({why}); {fix}"
        )


def check_store_target(
    target: str | os.PathLike[str],
    *,
    key: str,
    kind: str,
    others: Mapping[str, str | None] | None = None,
) -> None:
    """Fail early unless the store ``target`` may be written, and replaced if it exists.

    A store is replaced as a whole folder, so a path that names anything else would delete
    it: the current folder (or one holding it), a folder holding another configured path
    (an input, another output, the MLflow store), a project folder, or
    any folder that is not a finished geoensemble store of the same kind is refused.

    Parameters
    ----------
    kind
        The kind of store written (``stack``, ``features``).
    others
        Every other path the caller names, by its name (``None`` or URLs are skipped).

    Raises
    ------
    OutputError
        Naming the key, the path, what is there and the fix.
    """
    from geoensemble.io.owned import store_refusal

    check_writable(target, key=key, kind="store")
    p = Path(target).resolve()
    cwd = Path.cwd().resolve()
    why = None
    if p == cwd or p in cwd.parents:
        why = "it is the current folder" if p == cwd else f"it holds the current folder {cwd}"
    else:
        for other, value in (others or {}).items():
            if not value or "://" in value or value == "???":
                continue
            q = Path(value).resolve()
            if q == p or p in q.parents:
                why = f"it holds {other}={value}" if q != p else f"it is also {other}"
                break
    if why is None and (p.exists() or p.is_symlink()):
        why = store_refusal(p, kind)
    if why:
        raise OutputError(
            f"refusing to write {key}={target}: the {kind} store replaces that folder as a "
            f"whole, and {why}; set {key} to a folder of its own (a new path, or an earlier "
            f"{kind} store)"
        )

"""Write to a temporary name beside the target and move into place only when complete."""

from __future__ import annotations

import contextlib
import glob
import json
import os
import shutil
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from geoensemble.errors import OutputError

TMP_MARK = ".partial-"


def tmp_name(target: Path) -> Path:
    """A hidden sibling of ``target`` that no reader mistakes for a finished output."""
    return target.with_name(f".{target.name}{TMP_MARK}{uuid.uuid4().hex[:8]}")


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike[str], *, overwrite: bool = True) -> Iterator[Path]:
    """Yield a temporary path; on success move it to ``target``, on failure delete it.

    Works for files and directories (e.g. a Zarr store).

    Raises
    ------
    OutputError
        If the parent folder cannot be created or written, or ``target`` exists and
        ``overwrite`` is false.
    """
    target = Path(target)
    if target.exists() and not overwrite:
        raise OutputError(
            f"output {target} already exists: delete it or allow overwriting "
            f"(predict.overwrite=true)"
        )
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(
            f"cannot create output folder {target.parent}: {exc.strerror}; "
            f"choose a writable location"
        ) from None
    if not os.access(target.parent, os.W_OK):
        raise OutputError(
            f"output folder {target.parent} is not writable: fix its "
            f"permissions or choose another output folder"
        )
    tmp = tmp_name(target)
    try:
        yield tmp
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)
        os.replace(tmp, target)
    except BaseException:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            tmp.unlink(missing_ok=True)
        raise


def remove_stale_partials(
    folder: str | os.PathLike[str], names: Iterable[str] | None = None
) -> list[Path]:
    """Delete leftovers of interrupted writes (``.name.partial-xxxx``) in ``folder``.

    With ``names``, only the leftovers of those outputs go (a run cleans up after its own
    earlier, killed self without touching other writers' files in a shared folder).
    """
    removed = []
    folder = Path(folder)
    if names is None:
        patterns = [f".*{TMP_MARK}*"]
    else:
        patterns = [glob.escape(f".{n}{TMP_MARK}") + "*" for n in names]
    if folder.is_dir():
        for p in (p for pat in patterns for p in folder.glob(pat)):
            if p.is_dir():
                shutil.rmtree(p, ignore_errors=True)
            else:
                p.unlink(missing_ok=True)
            removed.append(p)
    return removed


def write_json(path: str | os.PathLike[str], obj: Any) -> Path:
    """Write ``obj`` as indented JSON atomically (reports, metrics, plot data, sidecars).

    numpy scalars and arrays and paths are written as plain JSON values.
    """
    target = Path(path)
    with atomic_path(target) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, default=_jsonable) + "\n")
    return target


def _jsonable(o: Any) -> Any:
    import numpy as np

    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")

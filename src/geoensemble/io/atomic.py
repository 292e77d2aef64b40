"""Write to a temporary name beside the target and move into place only when complete.

Replacing an existing output never passes through a state where the target name holds a
half-deleted output: a folder is swapped with its replacement in one atomic step
(``renameat2(RENAME_EXCHANGE)`` on Linux), or, where the file system cannot do that, renamed
aside (``.name.old-xxxx``) before the new one moves in; the old one is deleted only then. A
kill at any point leaves the old or the new output at the target name, plus hidden leftovers
that :func:`remove_stale_partials` of the next run removes (or, if the kill fell between the
two renames, moves back).
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import glob
import json
import os
import shutil
import uuid
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from geoensemble.errors import DiskFullError, OutputError

TMP_MARK = ".partial-"
OLD_MARK = ".old-"
# errno values saying the disk (or the user's quota) is full
_FULL = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}
# how GDAL and other C libraries word it when they do not pass an errno on
_FULL_TEXT = ("no space left on device", "disk quota exceeded", "free disk space available is")
_LOW_SPACE = 1 << 20  # bytes free below which an I/O error is taken for a full disk


def tmp_name(target: Path) -> Path:
    """A hidden sibling of ``target`` that no reader mistakes for a finished output."""
    return target.with_name(f".{target.name}{TMP_MARK}{uuid.uuid4().hex[:8]}")


def aside_name(target: Path) -> Path:
    """The hidden name an output being replaced is moved to before it is deleted."""
    return target.with_name(f".{target.name}{OLD_MARK}{uuid.uuid4().hex[:8]}")


def disk_full(exc: BaseException, folder: str | os.PathLike[str] | None = None) -> bool:
    """Whether ``exc`` (or what caused it) says the disk or the quota is full.

    GDAL often reports a full disk as a bare I/O error ("IO error writing tag data"): an
    I/O error of an output in ``folder`` counts too when that file system is (nearly) full.
    """
    seen: set[int] = set()
    e: BaseException | None = exc
    io_error = False
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, OSError) and e.errno in _FULL:
            return True
        if any(t in str(e).lower() for t in _FULL_TEXT):
            return True
        io_error = io_error or isinstance(e, OSError) or type(e).__module__.startswith("rasterio")
        e = e.__cause__ or e.__context__
    if folder is None or not io_error:
        return False
    p = Path(folder).absolute()
    while not p.exists() and p != p.parent:
        p = p.parent
    try:
        return shutil.disk_usage(p).free < _LOW_SPACE
    except OSError:
        return False


def full_error(what: str, key: str | None = None) -> DiskFullError:
    """The one-line error for a full disk while writing ``what``."""
    fix = f"set {key} to" if key else "choose"
    return DiskFullError(
        f"cannot write {what}: no space left on the device (or the disk quota is used up); "
        f"free space there or {fix} another location with room for it"
    )


_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def _exchange(a: Path, b: Path) -> bool:
    """Swap ``a`` and ``b`` in one atomic step; False where the system cannot."""
    try:
        fn = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return False
    rc = fn(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE)
    if rc == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.EXDEV):
        return False
    raise OSError(err, os.strerror(err), str(b))


def _remove(p: Path) -> None:
    if p.is_dir() and not p.is_symlink():
        shutil.rmtree(p, ignore_errors=True)
    else:
        p.unlink(missing_ok=True)


def _swap_in(tmp: Path, target: Path) -> None:
    """Put the finished ``tmp`` at ``target``; the folder there before is deleted last."""
    if not (target.is_dir() and not target.is_symlink()):
        os.replace(tmp, target)  # files: rename(2) replaces in one step
        return
    if _exchange(tmp, target):
        old = tmp  # the old folder now sits under the hidden temporary name
    else:
        old = aside_name(target)
        os.rename(target, old)
        os.replace(tmp, target)
    _remove(old)


Replaceable = Callable[[Path], str | None]


@contextlib.contextmanager
def atomic_path(
    target: str | os.PathLike[str],
    *,
    overwrite: bool = True,
    replace_if: Replaceable | None = None,
    key: str | None = None,
) -> Iterator[Path]:
    """Yield a temporary path; on success move it to ``target``, on failure delete it.

    Works for files and directories (e.g. a Zarr store).

    Parameters
    ----------
    overwrite
        Whether an existing ``target`` may be replaced at all.
    replace_if
        Says why an existing ``target`` must not be replaced (``None``: it may). Without it,
        files may be replaced and folders never: a folder is replaced only when the caller
        recognises it as its own earlier output.
    key
        What the caller calls ``target`` (its argument name, say), for the messages.

    Raises
    ------
    OutputError
        If the parent folder cannot be created or written, ``target`` exists and may not be
        replaced, or the disk is full.
    """
    target = Path(target)
    what = f"{key}={target}" if key else str(target)
    _check_replaceable(target, what, overwrite=overwrite, replace_if=replace_if, key=key)
    _writable_parent(target, what, key)
    tmp = tmp_name(target)
    try:
        yield tmp
        _swap_in(tmp, target)
    except BaseException as exc:
        _remove(tmp)
        if isinstance(exc, Exception) and disk_full(exc, target.parent):
            raise full_error(what, key) from None
        raise


def _check_replaceable(
    target: Path,
    what: str,
    *,
    overwrite: bool,
    replace_if: Replaceable | None,
    key: str | None,
) -> None:
    """Raise an OutputError if ``target`` exists and may not be replaced."""
    if target.exists() or target.is_symlink():
        if not overwrite:
            raise OutputError(
                f"output {target} already exists: delete it or allow overwriting (overwrite=True)",
                arguments={"overwrite": "atomic_path.overwrite"},
            )
        why = replace_if(target) if replace_if else _default_refusal(target)
        if why:
            fix = f"set {key} to a new path" if key else "choose another output path"
            raise OutputError(f"refusing to replace {what}: {why}; {fix} or move it away")


def _writable_parent(target: Path, what: str, key: str | None) -> None:
    """Create the folder of ``target``; raise an OutputError if it cannot be or is not
    writable."""
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        if disk_full(exc):
            raise full_error(what, key) from None
        raise OutputError(
            f"cannot create output folder {target.parent}: {exc.strerror}; "
            f"choose a writable location"
        ) from None
    if not os.access(target.parent, os.W_OK):
        raise OutputError(
            f"output folder {target.parent} is not writable: fix its "
            f"permissions or choose another output folder"
        )


def _default_refusal(target: Path) -> str | None:
    if target.is_dir() and not target.is_symlink():
        return "it is a folder, and only a file is written there"
    return None


def remove_stale_partials(
    folder: str | os.PathLike[str], names: Iterable[str] | None = None
) -> list[Path]:
    """Delete leftovers of interrupted writes (``.name.partial-xxxx``) in ``folder``.

    With ``names``, only the leftovers of those outputs go (a run cleans up after its own
    earlier, killed self without touching other writers' files in a shared folder). An
    output renamed aside (``.name.old-xxxx``) by a replacement that was killed before the
    new one moved in is moved back when nothing took its name, else deleted.
    """
    removed: list[Path] = []
    folder = Path(folder)
    if not folder.is_dir():
        return removed
    marks = (TMP_MARK, OLD_MARK)
    if names is None:
        patterns = [f".*{m}*" for m in marks]
    else:
        patterns = [glob.escape(f".{n}{m}") + "*" for n in names for m in marks]
    for p in sorted({p for pat in patterns for p in folder.glob(pat)}):
        if OLD_MARK in p.name and TMP_MARK not in p.name and p.is_dir():
            own = folder / p.name[1 : p.name.rindex(OLD_MARK)]
            if not own.exists() and not own.is_symlink():
                with contextlib.suppress(OSError):
                    os.rename(p, own)  # the old output, complete: the new one never arrived
                    continue
        _remove(p)
        removed.append(p)
    return removed


# significant digits of every float in a report (reports/*.json): the last digits of a sum
# depend on the order of its terms (threads, BLAS), so a re-run would otherwise rewrite a
# committed report that differs only in its 16th digit
REPORT_DIGITS = 10


def write_json(path: str | os.PathLike[str], obj: Any, *, significant: int | None = None) -> Path:
    """Write ``obj`` as indented JSON atomically (reports, metrics, plot data, sidecars).

    numpy scalars and arrays and paths are written as plain JSON values; a NaN or infinite
    number as ``null`` (JSON has no NaN: ``jq``, browsers and DVC's plots refuse a bare
    ``NaN``); with ``significant``, every float rounded to that many significant digits.
    """
    target = Path(path)
    text = json.dumps(_finite(obj, significant), indent=2, default=_jsonable, allow_nan=False)
    with atomic_path(target) as tmp:
        tmp.write_text(text + "\n")
    return target


def write_report(path: str | os.PathLike[str], obj: Any) -> Path:
    """:func:`write_json` with every float to :data:`REPORT_DIGITS` significant digits: a
    stage's report (DVC output committed to git) that a re-run reproduces byte for byte."""
    return write_json(path, obj, significant=REPORT_DIGITS)


def _finite(o: Any, significant: int | None = None) -> Any:
    """``o`` with every NaN or infinite float (numpy's too) as ``None`` (and every other float
    rounded to ``significant`` digits when given)."""
    import math

    import numpy as np

    if isinstance(o, np.ndarray):
        o = o.tolist()
    elif isinstance(o, np.generic):
        o = o.item()
    if isinstance(o, float):
        if not math.isfinite(o):
            return None
        return o if significant is None else float(f"{o:.{significant}g}")
    if isinstance(o, dict):
        return {k: _finite(v, significant) for k, v in o.items()}
    if isinstance(o, list | tuple):
        return [_finite(v, significant) for v in o]
    return o


def _jsonable(o: Any) -> Any:
    import numpy as np

    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")

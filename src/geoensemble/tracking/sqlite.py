"""A SQLite store created whole and checked before MLflow opens it (MLflow reports a
damaged, locked or half-made store badly, or only after retrying for minutes)."""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

from geoensemble.errors import TrackingError
from geoensemble.tracking.store import (
    chain,
    check_server,
    local_error,
    read_only,
    sqlite_fault,
    sqlite_path,
)

log = logging.getLogger("geoensemble")


def check_store(uri: str, *, timeout: float = 10.0) -> bool:
    """Check the store before any work, without loading MLflow (which takes seconds).

    A tracking server must answer; an existing SQLite store must be whole, unlocked and
    writable (see :func:`check_sqlite_store`). Returns False when the store does not exist
    yet: :meth:`geoensemble.tracking.Tracker.open` must then create it before the stage goes
    on.

    Raises
    ------
    TrackingError
        Naming the store and the fix.
    """
    check_server(uri, timeout=timeout)
    path = sqlite_path(uri)
    if path is None:
        return True
    if not path.parent.is_dir() or _is_blank(path):
        return False
    check_sqlite_store(path, timeout=timeout)
    return True


def init_sqlite_store(uri: str, *, timeout: float = 10.0) -> None:
    """Make sure a SQLite store is usable: created whole, or checked, before MLflow opens it.

    A new store is created (MLflow's tables and migrations, ~1 MB) in a hidden temporary file
    beside it and linked into place only once complete, so a full disk or a kill leaves no
    half-made ``mlflow.db`` (which would break every later run). Creation and checks run
    under a lock on the store's folder shared by geoensemble processes, so two stages starting
    at once on a new store do not both create it. An existing store is checked for what
    MLflow reports badly or only after retrying for minutes: a damaged or truncated file, a
    lock held by another process (waited for at most ``timeout`` s), a read-only file or
    folder, a half-created store. Other stores, and folders that do not exist (:meth:`Tracker.open`
    reports those), are left alone.

    Raises
    ------
    TrackingError
        Naming the file and the fix.
    """
    path = sqlite_path(uri)
    if path is None or not path.parent.is_dir():
        return
    with _folder_lock(path.parent, wait=max(timeout, 120.0), store=path):
        _remove_stale_creations(path)
        if _is_blank(path):
            if not os.access(path.parent, os.W_OK):
                raise read_only(path)
            _create_sqlite_store(path)
        check_sqlite_store(path, timeout=timeout)


@contextlib.contextmanager
def _folder_lock(folder: Path, *, wait: float, store: Path) -> Iterator[None]:
    """An exclusive ``flock`` on ``folder`` (no lock file left behind), waited for at most
    ``wait`` s; without ``fcntl`` (not POSIX), no lock."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        yield
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        deadline = time.monotonic() + wait
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise TrackingError(
                        f"another process has held the lock on the folder of the MLflow "
                        f"store {store} for more than {wait:g} s while creating or checking "
                        f"it: wait for it to finish (or stop it), then rerun"
                    ) from None
                time.sleep(0.1)
        yield
    finally:
        os.close(fd)  # releases the lock


CREATING = ".creating-"  # a store being created: .<name>.creating-<pid>[-journal]


def _remove_stale_creations(path: Path) -> None:
    """Remove temporary stores of creations that were killed (we hold the folder lock, so no
    live geoensemble process is creating one)."""
    for stale in path.parent.glob(f".{path.name}{CREATING}*"):
        with contextlib.suppress(OSError):
            stale.unlink()
            log.info("MLflow: removed %s, left by an interrupted store creation", stale)


def _is_blank(path: Path) -> bool:
    """True if ``path`` is missing or empty (nothing to lose by creating the store there)."""
    try:
        return path.stat().st_size == 0
    except FileNotFoundError:
        return True


def _create_sqlite_store(path: Path) -> None:
    """Create the store in a temporary file beside ``path`` and link it into place."""
    from mlflow import MlflowClient

    tmp = path.with_name(f".{path.name}{CREATING}{os.getpid()}")
    tmp_uri = f"sqlite:///{tmp}"
    log.info("MLflow: creating the store %s", path)
    try:
        # What MLflow does on first use (tables, migrations, default experiment), in tmp.
        MlflowClient(tmp_uri, tmp_uri).search_experiments(max_results=1)
    except Exception as exc:
        _discard(tmp)
        text = "; ".join(str(e) for e in chain(exc)).lower()
        if "disk is full" in text or "no space" in text:
            raise TrackingError(
                f"could not create the MLflow store {path}: no space left on its disk (nothing "
                f"was left behind): free space there, or set uri to a store on another disk",
                arguments={"uri": "Tracker.uri"},
            ) from None
        fault = sqlite_fault(str(path), text, 0) or local_error(exc, f"sqlite:///{path}", 0)
        if fault is None:
            raise
        raise fault from None
    # MLflow keeps its connection to tmp_uri for the life of the process (there is no public
    # way to close it): idle, it holds no lock, and once linked it is a link to the store.
    try:
        if path.exists() and path.stat().st_size == 0:
            os.replace(tmp, path)  # an empty file holds nothing
        else:
            try:
                os.link(tmp, path)  # fails if another program created it meanwhile
            except FileExistsError:
                log.info("MLflow: %s was created by another program meanwhile", path)
            except OSError:  # no hard links on this file system
                if not path.exists():
                    os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def _discard(tmp: Path) -> None:
    for f in tmp.parent.glob(f"{tmp.name}*"):  # the file and its -journal
        with contextlib.suppress(OSError):
            f.unlink()


SQLITE_MAGIC = b"SQLite format 3\x00"


def _header_problem(path: Path, head: bytes) -> str | None:
    """Why ``path`` is not a whole SQLite file, from its 100-byte header ``head`` (``None``:
    fine)."""
    if len(head) < 100 or not head.startswith(SQLITE_MAGIC):
        return "it is not an SQLite database (its first bytes are not 'SQLite format 3')"
    page = int.from_bytes(head[16:18], "big")
    page = 65536 if page == 1 else page
    pages = int.from_bytes(head[28:32], "big")
    size = path.stat().st_size
    hot = any(Path(f"{path}{s}").exists() for s in ("-journal", "-wal"))
    # The page count is valid when "version-valid-for" matches the change counter.
    if head[92:96] == head[24:28] and pages and not hot and size < page * pages:
        return f"it is truncated ({size} of {page * pages} bytes)"
    return None


def _connect_ro(path: Path, timeout: float) -> sqlite3.Connection:
    return sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=timeout)


# SQLite files of other applications say so in their header (MLflow's stores leave it 0).
APPLICATIONS = {0x47504B47: "a GeoPackage", 0x47503130: "a GeoPackage", 0x47503131: "a GeoPackage"}


def check_sqlite_store(path: Path, *, timeout: float) -> None:
    """Raise a one-line :class:`TrackingError` if the existing SQLite file ``path`` cannot be
    used as a store: damaged, another application's database (a GeoPackage), locked for more
    than ``timeout`` s or read-only. Only SQLite's own header and lock are looked at, never
    MLflow's tables; a schema from another MLflow version is diagnosed from MLflow's own
    refusal (:func:`schema_error`)."""
    with path.open("rb") as f:
        head = f.read(100)
    problem = _header_problem(path, head)
    if problem is not None:
        raise TrackingError(
            f"the MLflow store {path} is damaged: {problem}: restore it from a backup, or move "
            f"it aside (mv {path} {path}.broken) and rerun to start a new store"
        )
    app = int.from_bytes(head[68:72], "big")
    if app:
        what = APPLICATIONS.get(app, f"another application's database (application id {app:#x})")
        raise TrackingError(
            f"{path} is {what}, not an MLflow store: set uri to an MLflow store, or to a new "
            f"file such as sqlite:///{path.parent}/mlflow.db",
            arguments={"uri": "Tracker.uri"},
        )
    try:
        with contextlib.closing(_connect_ro(path, timeout)) as con:
            con.execute("PRAGMA schema_version").fetchone()  # waits out a writer's lock
    except sqlite3.Error as exc:
        fault = sqlite_fault(str(path), str(exc), timeout)
        if fault is None:
            fault = TrackingError(
                f"cannot read the MLflow store {path} ({exc}): check the file, or set uri to "
                f"another store",
                arguments={"uri": "Tracker.uri"},
            )
        raise fault from None
    if not (os.access(path, os.W_OK) and os.access(path.parent, os.W_OK)):
        raise read_only(path)


# MLflow's refusal of a store whose schema is not the one it needs (public message text)
_SCHEMA = re.compile(r"out-of-date database schema \(found version (\w+), but expected (\w+)\)")


def schema_error(exc: BaseException, path: Path) -> TrackingError | None:
    """The one-line error for MLflow refusing the schema of the store ``path`` (``None`` if
    ``exc`` is not that): a store with no schema version, or whose tables MLflow finds made
    already, was left half-created; otherwise it was written by an older MLflow (``mlflow db
    upgrade``) or a newer one (upgrade MLflow)."""
    import mlflow

    text = " ".join(str(e) for e in chain(exc))
    m = _SCHEMA.search(text)
    # MLflow completing a store whose creation stopped halfway trips over the tables made
    half = re.search(r"table \w+ already exists", text) is not None
    if m is None and not half:
        return None
    if half or m is None or m.group(1) == "None":
        return TrackingError(
            f"the MLflow store {path} was left half-created (no schema version in it: its "
            f"creation was interrupted, e.g. by a full disk), so it holds no run: delete it "
            f"(rm {path}) and rerun to create it again"
        )
    found, head = m.groups()
    return TrackingError(
        f"the MLflow store {path} has schema {found}, but MLflow {mlflow.__version__} here "
        f"needs {head}: if an older MLflow wrote it, back it up and run mlflow db upgrade "
        f"sqlite:///{path}; if a newer MLflow wrote it, upgrade MLflow in this environment "
        f"(pip install -U mlflow) and do not downgrade the store; or set uri to another "
        f"store",
        arguments={"uri": "Tracker.uri"},
    )

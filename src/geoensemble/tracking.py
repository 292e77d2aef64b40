"""Everything MLflow: the store, parent and member runs, logged and registered models.

This is the only module that imports mlflow. The default store is SQLite ``mlflow.db`` at the
project root, given as an absolute URI; when DVC runs a stage in a temporary copy (queued and
``--temp`` experiments) ``DVC_ROOT`` names the real project root, so runs land in the real
store and not in the copy that DVC deletes afterwards.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import logging
import math
import os
import re
import socket
import sqlite3
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from geoensemble.app.config import TrackingConfig
from geoensemble.errors import (
    FeatureMismatchError,
    GeoEnsembleError,
    ModelNotFoundError,
    TrackingError,
)

log = logging.getLogger("geoensemble")

PARENT_TAG = "mlflow.parentRunId"
MAX_PARAM_LEN = 6000


def store_root() -> Path:
    """Where the default store lives: ``GEOENSEMBLE_ROOT``, else ``DVC_ROOT``, else the cwd."""
    for var in ("GEOENSEMBLE_ROOT", "DVC_ROOT"):
        if os.environ.get(var):
            return Path(os.environ[var]).resolve()
    return Path.cwd().resolve()


def tracking_uri(t: TrackingConfig) -> str:
    """``tracking.uri``, else ``MLFLOW_TRACKING_URI``, else ``sqlite:///<root>/mlflow.db``.

    ``mlflow run`` exports ``MLFLOW_TRACKING_URI`` with the run it created, so honouring it
    keeps that run and ours in one store.
    """
    return (
        t.uri or os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{store_root() / 'mlflow.db'}"
    )


def artifact_base(uri: str) -> Path:
    """The folder a relative ``tracking.artifact_root`` starts at: a SQLite store's own folder
    (its artifacts stay beside it wherever the stage runs), else the project root."""
    if uri.startswith("sqlite:///"):
        return Path(uri.removeprefix("sqlite:///")).resolve().parent
    return store_root()


def is_local_store(uri: str) -> bool:
    """True for stores on this machine's disk (SQLite, file), False for servers."""
    return not uri.startswith(("http://", "https://", "databricks"))


# --------------------------------------------------------------------------- bounded calls
@dataclass
class _Session:
    """The store this process uses and what it left open (one per stage; see :func:`setup`).

    ``down`` holds the error of a tracking server that stopped answering: later calls fail
    at once with it instead of each waiting ``timeout`` again.
    """

    uri: str = ""
    timeout: float = 10.0
    down: TrackingError | None = None
    open_runs: dict[str, str | None] = field(default_factory=dict)  # run id -> parent id
    parents: list[str] = field(default_factory=list)  # parent runs it started
    failed: bool = False  # a run was ended by an error or interruption


_session = _Session()
_atexit_registered = False

# MLflow reads these on every HTTP request (mlflow.utils.rest_utils.http_request), so
# setting them per stage takes effect at once. One try per call: with MLflow's default of 7
# retries and exponential backoff a dead server held a stage for minutes.
HTTP_RETRY_VARS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "0",
    "MLFLOW_HTTP_REQUEST_BACKOFF_JITTER": "0",
}
HTTP_TIMEOUT_VARS = ("MLFLOW_HTTP_REQUEST_TIMEOUT", "MLFLOW_DOWNLOAD_CHUNK_TIMEOUT")


def bound_http_calls(timeout: float) -> None:
    """Make every MLflow HTTP request wait at most ``timeout`` s, with no retry.

    The variables are MLflow's own (integers, so the timeout is rounded up to whole
    seconds); they override values inherited from the environment, since ``tracking.timeout``
    is the documented setting.
    """
    os.environ.update(HTTP_RETRY_VARS)
    for var in HTTP_TIMEOUT_VARS:
        os.environ[var] = str(max(1, math.ceil(timeout)))


def _sqlite_path(uri: str) -> Path | None:
    """The file of a ``sqlite:///`` store (``None`` for other stores and in-memory ones)."""
    if not uri.startswith("sqlite:///"):
        return None
    path = uri[len("sqlite:///") :].split("?", 1)[0]
    return Path(path) if path and path != ":memory:" else None


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and the exceptions it was raised from or while handling (bounded)."""
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen and len(seen) < 20:
        seen.add(id(cur))
        yield cur
        cur = cur.__cause__ or cur.__context__


def store_error(exc: BaseException) -> TrackingError | None:
    """The one-line error for a store fault the user can fix, or ``None`` if ``exc`` is not one.

    Faults: a tracking server that refuses connections or does not answer within
    ``tracking.timeout``; a SQLite store that is locked, full, read-only or damaged; a disk
    that fills up or is read-only while MLflow writes artifacts.
    """
    if isinstance(exc, GeoEnsembleError):
        return None
    uri, timeout = _session.uri, _session.timeout
    texts = [f"{type(e).__name__}: {e}" for e in _chain(exc)]
    text = " | ".join(texts)
    if uri.startswith(("http://", "https://")) and (
        "API request to" in text or any(_is_connection_error(e) for e in _chain(exc))
    ):
        m = re.search(r"API request to \S*?(/(?:ajax-)?api/[^\s?]+)", text)
        where = f" to {m.group(1)}" if m else ""
        low = text.lower()
        code = re.search(r"failed with error code (\d+)", text)
        if code:
            reason = f"answered HTTP {code.group(1)}{where}"
        elif "timed out" in low or "timeout" in low:
            reason = f"gave no answer{where} within {timeout:g} s"
        elif "refused" in low:
            reason = f"refused the connection{where}"
        elif "too many" in low and "error responses" in low:
            reason = f"answered with server errors{where}"
        else:
            reason = f"dropped the connection{where}"
        left = (
            "; the runs it could not close are marked KILLED by the next stage"
            if _session.open_runs
            else ""
        )
        err = TrackingError(
            f"the MLflow tracking server {redact_uri(uri)} {reason} (tracking.timeout="
            f"{timeout:g} s bounds each call): check that it is running and restart it, fix "
            f"tracking.uri, or raise tracking.timeout if it is only slow{left}"
        )
        _session.down = err
        return err
    for e in _chain(exc):
        if isinstance(e, sqlite3.Error):
            path = _sqlite_path(uri)
            where = str(path) if path else redact_uri(uri)
            return _sqlite_fault(where, str(e), timeout)
        if isinstance(e, OSError) and e.errno and not isinstance(e, GeoEnsembleError):
            import errno

            name = e.filename or where_of(uri)
            if e.errno == errno.ENOSPC:
                return TrackingError(
                    f"no space left on the disk of {name} while MLflow wrote it: free space "
                    f"there, or point tracking.uri (and tracking.artifact_root) at another disk"
                )
            if e.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
                return TrackingError(
                    f"MLflow cannot write {name} ({e.strerror}): make it writable, or point "
                    f"tracking.uri (and tracking.artifact_root) at a writable folder"
                )
    return None


def where_of(uri: str) -> str:
    path = _sqlite_path(uri)
    return str(path) if path else redact_uri(uri)


def _is_connection_error(exc: BaseException) -> bool:
    try:
        import requests
    except ImportError:  # pragma: no cover - MLflow depends on requests
        return False
    return isinstance(exc, requests.exceptions.ConnectionError | requests.exceptions.Timeout)


def _sqlite_fault(path: str, message: str, timeout: float) -> TrackingError | None:
    """The one-line error for a SQLite message about the store ``path`` (``None``: no fault)."""
    low = message.lower()
    if "locked" in low or "busy" in low:
        return TrackingError(
            f"the MLflow store {path} is locked by another process (waited "
            f"tracking.timeout={timeout:g} s): let the other stage, `mlflow ui` or `mlflow "
            f"server` using it finish (or stop it), or raise tracking.timeout"
        )
    if "disk is full" in low or "no space" in low:
        return TrackingError(
            f"no space left on the disk of the MLflow store {path}: free space there, or set "
            f"tracking.uri to a store on another disk"
        )
    if "readonly" in low or "read-only" in low or "unable to open" in low:
        return _read_only(Path(path))
    if "malformed" in low or "not a database" in low or "disk i/o" in low or "corrupt" in low:
        return TrackingError(
            f"the MLflow store {path} is damaged ({message}): restore it from a backup, or "
            f"move it aside (mv {path} {path}.broken) and rerun to start a new store"
        )
    return None


_F = TypeVar("_F", bound=Callable[..., Any])


def guarded(fn: _F) -> _F:
    """Raise store faults from ``fn`` as one-line :class:`TrackingError`; once the server
    stopped answering, fail at once instead of waiting for it again."""

    @functools.wraps(fn)
    def call(*args: Any, **kwargs: Any) -> Any:
        if _session.down is not None and _server_in_use():
            raise _session.down
        try:
            return fn(*args, **kwargs)
        except Exception as exc:
            err = store_error(exc)
            if err is None:
                raise
            raise err from None

    return call  # type: ignore[return-value]


def _server_in_use() -> bool:
    """True while MLflow still points at the server that stopped answering."""
    import mlflow

    return bool(mlflow.get_tracking_uri() == _session.uri)


# --------------------------------------------------------------------------- closing runs
def _opened(run_id: str, parent_id: str | None = None) -> str:
    """Remember a run this process started, so it is closed however the process ends."""
    global _atexit_registered
    _session.open_runs[run_id] = parent_id
    if not _atexit_registered:
        atexit.register(_close_at_exit)
        _atexit_registered = True
    return run_id


def _failure(exc: BaseException | None) -> tuple[str, str]:
    """MLflow status and ``failure_reason`` of a run ended by ``exc``."""
    if isinstance(exc, KeyboardInterrupt | SystemExit):
        how = str(exc) or "SIGINT (Ctrl-C)"
        return "KILLED", f"interrupted by {how}"
    if exc is None:
        return "KILLED", "the process exited without closing the run"
    return "FAILED", f"{type(exc).__name__}: {exc}"


def close_open_runs(exc: BaseException | None = None, *, parent_id: str | None = None) -> None:
    """End, as FAILED or KILLED (see :func:`end_run`), runs this process started and has not
    ended: all of them, or ``parent_id``, its child runs still open or RUNNING (model logging
    reopens a member's run) and then ``parent_id`` itself.

    Best effort: a store that fails here must not hide the error that brought us here, and
    a server that stopped answering is not waited for again (the next stage closes those
    runs, see :func:`close_orphaned_runs`).
    """
    status, reason = _failure(exc)
    if exc is not None:
        _session.failed = True
        _release_interrupted_connections(exc)
    if parent_id is None:
        ids = list(reversed(_session.open_runs))
        for parent in _session.parents:  # members reopened to log their models
            with contextlib.suppress(Exception):
                ids += [r for r in _running_children(parent) if r not in ids]
    else:
        ids = [r for r, p in reversed(_session.open_runs.items()) if p == parent_id]
        with contextlib.suppress(Exception):
            ids += [r for r in _running_children(parent_id) if r not in ids]
        ids.append(parent_id)
    for run_id in ids:
        try:
            _terminate(run_id, status, reason)
        except Exception as err:
            log.debug("MLflow: could not close run %s: %s", run_id, err)
            if _session.down is not None or "locked" in str(err):
                return  # not worth a wait per run: the exit handler tries again


def _release_interrupted_connections(exc: BaseException) -> None:
    """Let go of the store connections the frames of ``exc`` still hold.

    Ctrl-C can land inside a SQLite write, skipping its rollback; the interrupted frames keep
    that connection, and its lock, alive, so closing the runs would wait on our own lock.
    Clearing the frames' locals (the traceback keeps its lines) frees the connection.
    """
    import gc
    import traceback

    for e in _chain(exc):
        if e.__traceback__ is not None:
            traceback.clear_frames(e.__traceback__)
    gc.collect()


def _close_at_exit() -> None:
    """Last chance, once interrupted frames are gone: the runs still open, and the RUNNING
    children of our parent runs after a failure."""
    if _session.open_runs or _session.failed:
        close_open_runs(None)


@guarded
def _running_children(parent_id: str) -> list[str]:
    from mlflow import MlflowClient

    client = MlflowClient()
    runs = client.search_runs(
        [experiment_of(parent_id)],
        filter_string=f"attributes.status = 'RUNNING' and tags.`{PARENT_TAG}` = '{parent_id}'",
        max_results=1000,
    )
    return [str(r.info.run_id) for r in runs]


def check_server(uri: str, *, timeout: float = 10.0) -> None:
    """Fail fast when a tracking server does not answer (MLflow would retry for minutes).

    Only ``http(s)://`` stores are probed, on their ``/health`` endpoint; any HTTP answer
    (even 401/404 from a proxy) counts as reachable.

    Raises
    ------
    TrackingError
        If nothing answers at ``uri`` within ``timeout`` seconds.
    """
    import urllib.error
    import urllib.parse
    import urllib.request

    if not uri.startswith(("http://", "https://")):
        return
    parts = urllib.parse.urlsplit(uri)
    netloc = parts.hostname or ""
    netloc = f"[{netloc}]" if ":" in netloc else netloc
    if parts.port:
        netloc += f":{parts.port}"
    health = urllib.parse.urlunsplit((parts.scheme, netloc, "/health", "", ""))
    try:
        with urllib.request.urlopen(health, timeout=timeout):
            return
    except urllib.error.HTTPError:
        return  # something answers: MLflow's own calls will report what is wrong
    except (OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        raise TrackingError(
            f"the MLflow tracking server {redact_uri(uri)} does not answer "
            f"({type(reason).__name__}: {reason}; waited at most tracking.timeout={timeout:g} "
            f"s): start it "
            f"(mlflow server --host 127.0.0.1 --port 5000 ...), fix tracking.uri, or use the "
            f"local store with tracking=sqlite"
        ) from None


def init_sqlite_store(uri: str, *, timeout: float = 10.0) -> None:
    """Make sure a SQLite store is usable: created whole, or checked, before MLflow opens it.

    A new store is created (MLflow's tables and migrations, ~1 MB) in a hidden temporary file
    beside it and linked into place only once complete, so a full disk or a kill leaves no
    half-made ``mlflow.db`` (which would break every later run). Creation and checks run
    under a lock on the store's folder shared by geoensemble processes, so two stages starting
    at once on a new store do not both create it. An existing store is checked for what
    MLflow reports badly or only after retrying for minutes: a damaged or truncated file, a
    lock held by another process (waited for at most ``timeout`` s), a read-only file or
    folder, a half-created store. Other stores, and folders that do not exist (:func:`setup`
    reports those), are left alone.

    Raises
    ------
    TrackingError
        Naming the file and the fix.
    """
    path = _sqlite_path(uri)
    if path is None or not path.parent.is_dir():
        return
    with _folder_lock(path.parent, wait=max(timeout, 120.0), store=path):
        _remove_stale_creations(path)
        if _is_blank(path):
            if not os.access(path.parent, os.W_OK):
                raise _read_only(path)
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
        _discard(tmp, tmp_uri)
        text = "; ".join(str(e) for e in _chain(exc)).lower()
        if "disk is full" in text or "no space" in text:
            raise TrackingError(
                f"could not create the MLflow store {path}: no space left on its disk (nothing "
                f"was left behind): free space there, or set tracking.uri to a store on "
                f"another disk"
            ) from None
        fault = _sqlite_fault(str(path), text, 0) or store_error(exc)
        if fault is None:
            raise
        raise fault from None
    _dispose(tmp_uri)
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


def _dispose(uri: str) -> None:
    """Close MLflow's cached connections to the SQLite file of ``uri``."""
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    engine = SqlAlchemyStore._engine_map.pop(uri, None)
    if engine is not None:
        engine.dispose()


def _discard(tmp: Path, tmp_uri: str) -> None:
    with contextlib.suppress(Exception):
        _dispose(tmp_uri)
    for f in tmp.parent.glob(f"{tmp.name}*"):  # the file and its -journal
        with contextlib.suppress(OSError):
            f.unlink()


SQLITE_MAGIC = b"SQLite format 3\x00"


def _header_problem(path: Path) -> str | None:
    """Why ``path`` is not a whole SQLite file, from its 100-byte header (``None``: fine)."""
    with path.open("rb") as f:
        head = f.read(100)
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


def check_sqlite_store(path: Path, *, timeout: float) -> None:
    """Raise a one-line :class:`TrackingError` if the existing SQLite store ``path`` cannot be
    used: damaged, locked for more than ``timeout`` s, read-only, half-created or not an
    MLflow store. Cheap (the header and a few rows); a schema from another MLflow version
    is diagnosed when MLflow refuses it (:func:`schema_error`)."""
    problem = _header_problem(path)
    if problem is not None:
        raise TrackingError(
            f"the MLflow store {path} is damaged: {problem}: restore it from a backup, or move "
            f"it aside (mv {path} {path}.broken) and rerun to start a new store"
        )
    try:
        with contextlib.closing(_connect_ro(path, timeout)) as con:
            tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master")}
            version = None
            if "alembic_version" in tables:
                row = con.execute("SELECT version_num FROM alembic_version").fetchone()
                version = row[0] if row else None
            experiments = (
                con.execute("SELECT count(*) FROM experiments").fetchone()[0]
                if "experiments" in tables
                else 0
            )
    except sqlite3.Error as exc:
        fault = _sqlite_fault(str(path), str(exc), timeout)
        if fault is None:
            fault = TrackingError(
                f"cannot read the MLflow store {path} ({exc}): check the file, or set "
                f"tracking.uri to another store"
            )
        raise fault from None
    if "experiments" not in tables:
        raise TrackingError(
            f"{path} is an SQLite database but not an MLflow store (no 'experiments' table): "
            f"set tracking.uri to an MLflow store, or to a new file such as "
            f"sqlite:///{path.parent}/mlflow.db"
        )
    if version is None or experiments == 0:
        raise TrackingError(
            f"the MLflow store {path} was left half-created (its creation was interrupted, "
            f"e.g. by a full disk: {'no schema version' if version is None else 'no experiment'}"
            f" in it), so it holds no run: delete it (rm {path}) and rerun to create it again"
        )
    if not (os.access(path, os.W_OK) and os.access(path.parent, os.W_OK)):
        raise _read_only(path)


def _read_only(path: Path) -> TrackingError:
    return TrackingError(
        f"the MLflow store {path} cannot be written (read-only file, folder or disk): make "
        f"it and its folder writable, or set tracking.uri to a store in a writable folder"
    )


def schema_error(path: Path) -> TrackingError | None:
    """Explain a store whose schema MLflow refused: written by a newer MLflow (upgrade MLflow),
    or by an older one (``mlflow db upgrade``). ``None`` if the schema is current."""
    import mlflow
    from alembic.script import ScriptDirectory
    from mlflow.store.db.utils import _get_alembic_config

    try:
        with contextlib.closing(_connect_ro(path, 5.0)) as con:
            row = con.execute("SELECT version_num FROM alembic_version").fetchone()
    except sqlite3.Error:
        return None
    found = row[0] if row else None
    script = ScriptDirectory.from_config(_get_alembic_config(""))
    head = script.get_current_head()
    if found is None or found == head:
        return None
    known = {r.revision for r in script.walk_revisions()}
    if found not in known:
        return TrackingError(
            f"the MLflow store {path} was written by a newer MLflow (schema {found}, unknown "
            f"to MLflow {mlflow.__version__} installed here): upgrade MLflow in this "
            f"environment (pip install -U mlflow), or set tracking.uri to another store; do "
            f"not downgrade the store"
        )
    return TrackingError(
        f"the MLflow store {path} was written by an older MLflow (schema {found}, this MLflow "
        f"{mlflow.__version__} needs {head}): back it up, then run mlflow db upgrade "
        f"sqlite:///{path}, or set tracking.uri to another store"
    )


def setup(t: TrackingConfig) -> str:
    """Point MLflow at the store and return the experiment id (created if needed).

    Every later MLflow call of the stage is bounded by ``tracking.timeout`` (see
    :func:`bound_http_calls`); runs that dead processes left RUNNING are closed.
    """
    _preloaded()
    import mlflow
    from mlflow.exceptions import MlflowException

    uri = tracking_uri(t)
    _session.uri, _session.timeout, _session.down = uri, t.timeout, None
    bound_http_calls(t.timeout)
    # MLflow logs a store error with its traceback before raising it; we report it in one line.
    logging.getLogger("mlflow.store.db.utils").setLevel(logging.CRITICAL)
    check_server(uri, timeout=t.timeout)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    init_sqlite_store(uri, timeout=t.timeout)
    try:
        return _experiment(t, uri)
    except GeoEnsembleError:
        raise
    except Exception as exc:
        path = _sqlite_path(uri)
        schema = schema_error(path) if path is not None and path.is_file() else None
        if schema is not None:
            raise schema from None
        if isinstance(exc, MlflowException):
            raise TrackingError(
                f"cannot use the MLflow store {redact_uri(uri)}: {exc.message}. Check "
                f"tracking.uri (is the server running?)"
            ) from None
        if isinstance(exc, OSError):  # e.g. the folder of a sqlite:/// store does not exist
            raise TrackingError(
                f"cannot open the MLflow store {redact_uri(uri)}: {exc.strerror or exc} "
                f"({exc.filename or uri}). Set tracking.uri to sqlite:///<existing "
                f"folder>/mlflow.db or a server's http://host:port"
            ) from None
        raise


@guarded
def _experiment(t: TrackingConfig, uri: str) -> str:
    """The id of experiment ``tracking.experiment``, created if needed; closes orphaned runs."""
    import mlflow
    from mlflow.exceptions import MlflowException

    client = mlflow.MlflowClient()  # refuses unsupported URI schemes
    exp = client.get_experiment_by_name(t.experiment)
    if exp is not None:
        closed = close_orphaned_runs(exp.experiment_id)
        if closed:
            log.info(
                "MLflow: marked KILLED %d run(s) left RUNNING by processes that no longer "
                "exist: %s",
                len(closed),
                ", ".join(closed),
            )
        return str(exp.experiment_id)
    # A server chooses (and proxies) the artifact store itself; a local path would only
    # be valid on this machine.
    location = (artifact_base(uri) / t.artifact_root).as_uri() if is_local_store(uri) else None
    try:
        return str(client.create_experiment(t.experiment, artifact_location=location))
    except MlflowException:
        # Two jobs starting at once on a new store: the other one created it first.
        exp = client.get_experiment_by_name(t.experiment)
        if exp is None:
            raise
        return str(exp.experiment_id)


def run_tags() -> dict[str, str]:
    """Provenance tags: git commit of the project and the DVC experiment name when present."""
    tags = {}
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            cwd=store_root(),
            timeout=10,
            check=False,
        ).stdout.strip()
        if sha:
            tags["mlflow.source.git.commit"] = sha
            tags["git_commit"] = sha
    except (OSError, subprocess.SubprocessError):
        pass
    if os.environ.get("DVC_EXP_NAME"):
        tags["dvc_exp_name"] = os.environ["DVC_EXP_NAME"]
    tags.update(sweep_tags())
    return tags


SWEEP_ID_VAR = "GEOENSEMBLE_SWEEP_ID"
SWEEP_RUN_VAR = "GEOENSEMBLE_SWEEP_RUN_ID"


def sweep_tags() -> dict[str, str]:
    """``sweep_id``, job number and overrides of a Hydra multirun job (empty otherwise).

    The sweep id comes from the environment, set by :mod:`geoensemble.app.sweep` in the process
    that launches the jobs, so jobs in other processes (joblib launcher) share it.
    """
    sweep_id = os.environ.get(SWEEP_ID_VAR)
    if not sweep_id:
        return {}
    tags = {"sweep_id": sweep_id}
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import OmegaConf

    if HydraConfig.initialized():
        hc: Any = HydraConfig.get()  # a DictConfig at run time
        num = OmegaConf.select(hc, "job.num")
        if num is not None:
            tags["sweep_job"] = str(num)
        tags["sweep_overrides"] = " ".join(OmegaConf.select(hc, "overrides.task") or [])
    return tags


# Key names whose values are never logged (matched per dotted segment, case-insensitive).
SECRET_KEY = re.compile(
    r"(^|[._-])(password|passwd|pwd|secret|token|credentials?|api_?key|access_?key|"
    r"secret_?key|private_?key|auth|key|sig|signature)($|[._-])",
    re.IGNORECASE,
)
# user:password@ in URIs
_URI_CREDENTIALS = re.compile(r"(?P<scheme>[a-zA-Z][\w+.-]*://)(?P<user>[^/@:\s]*):[^/@\s]*@")
# name=value pairs in query strings (?token=...) and override lists (a.password=...)
_NAME_VALUE = re.compile(r"(?P<pre>^|[?&;\s])(?P<name>[\w.+~-]+)=(?P<value>[^&;#\s]*)")
REDACTED = "***"


def redact_uri(text: str) -> str:
    """``text`` with URI passwords and secret ``name=value`` pairs replaced by ``***``."""
    text = _URI_CREDENTIALS.sub(rf"\g<scheme>\g<user>:{REDACTED}@", text)

    def pair(m: re.Match[str]) -> str:
        if not SECRET_KEY.search(m["name"].lstrip("+~")):
            return m[0]
        return f"{m['pre']}{m['name']}={REDACTED}"

    return _NAME_VALUE.sub(pair, text)


def redact_value(key: str, value: Any) -> str:
    """A parameter value fit to log: secrets hidden, the home directory shown as ``~``.

    Values of secret-looking keys (``password``, ``token``, ``secret``, ``api_key``, ...)
    become ``***``; credentials inside URIs and secret query parameters too; the user's
    home directory prefix becomes ``~`` so runs do not record who ran them, or where.
    """
    text = str(value)
    if value is not None and text != "" and SECRET_KEY.search(key):
        return REDACTED
    text = redact_uri(text)
    home = str(Path.home()).rstrip("/")
    if home and home != "/" and home in text:
        text = re.sub(rf"{re.escape(home)}(?=/|$|[\s,;:'\"\]}})])", "~", text)
    return text


def _params(params: Mapping[str, Any]) -> list[Any]:
    from mlflow.entities import Param

    return [Param(k, redact_value(k, v)[:MAX_PARAM_LEN]) for k, v in params.items()]


@guarded
def log_batch(
    run_id: str,
    *,
    metrics: Mapping[str, float] | None = None,
    params: Mapping[str, Any] | None = None,
    tags: Mapping[str, str] | None = None,
    steps: Mapping[str, list[tuple[int, float]]] | None = None,
) -> None:
    """Batched calls of at most 100 params and 1000 metrics (MLflow's limits): single calls
    cost ~10 ms each on SQLite. ``steps`` are metrics with one value per step."""
    import time

    from mlflow import MlflowClient
    from mlflow.entities import Metric, RunTag

    client = MlflowClient()
    ts = int(time.time() * 1000)
    points = [(k, v, 0) for k, v in (metrics or {}).items()]
    points += [(k, v, step) for k, series in (steps or {}).items() for step, v in series]
    ms = [
        Metric(k, float(v), ts, int(step))
        for k, v, step in points
        if v is not None and np.isfinite(v)
    ]
    ps = _params(params or {})
    ts_ = [RunTag(k, str(v)) for k, v in (tags or {}).items()]
    for n in range(max(-(-len(ps) // 100), -(-len(ms) // 1000), 1)):
        client.log_batch(
            run_id,
            metrics=ms[n * 1000 : (n + 1) * 1000],
            params=ps[n * 100 : (n + 1) * 100],
            tags=ts_ if n == 0 else [],
        )


@contextlib.contextmanager
def parent_run(
    experiment_id: str, *, run_name: str, params: Mapping[str, Any], tags: Mapping[str, str]
) -> Iterator[str]:
    """The ensemble's parent run; marked FAILED with the reason if the body raises.

    Under ``mlflow run`` the run it created (``MLFLOW_RUN_ID``) becomes the parent; in a Hydra
    sweep each job's parent run is a child of the sweep's run instead.
    """
    run_id, outer = start_parent(experiment_id, run_name=run_name, params=params, tags=tags)
    try:
        yield run_id
    except BaseException as exc:
        end_parent(run_id, outer, failed=exc)
        raise
    end_parent(run_id, outer)


def start_parent(
    experiment_id: str, *, run_name: str, params: Mapping[str, Any], tags: Mapping[str, str]
) -> tuple[str, bool]:
    """Start an ensemble's parent run (see :func:`parent_run`) with its params and tags;
    return its id and whether ``mlflow run`` owns it (and ends it)."""
    run_id, outer = _start_parent(experiment_id, run_name)
    try:
        log_batch(run_id, params=params, tags={**tags, "geoensemble.role": "ensemble"})
    except BaseException as exc:
        end_parent(run_id, outer, failed=exc)
        raise
    return run_id, outer


def end_parent(run_id: str, outer: bool, *, failed: BaseException | None = None) -> None:
    """End a parent run: FINISHED (unless ``mlflow run`` owns it), or, with ``failed``, FAILED
    or KILLED with its member runs (see :func:`end_run`)."""
    if failed is not None:
        end_run(run_id, failed=failed)  # and its members' runs
    elif not outer:
        end_run(run_id)


def check_store(t: TrackingConfig) -> bool:
    """Check the store before any work, without loading MLflow (which takes seconds).

    A tracking server must answer; an existing SQLite store must be whole, unlocked and
    writable (see :func:`check_sqlite_store`). Returns False when the store does not exist
    yet: :func:`setup` must then create it before the stage goes on.

    Raises
    ------
    TrackingError
        Naming the store and the fix.
    """
    uri = tracking_uri(t)
    _session.uri, _session.timeout = uri, t.timeout
    check_server(uri, timeout=t.timeout)
    path = _sqlite_path(uri)
    if path is None:
        return True
    if not path.parent.is_dir() or _is_blank(path):
        return False
    check_sqlite_store(path, timeout=t.timeout)
    return True


@guarded
def _start_parent(experiment_id: str, run_name: str) -> tuple[str, bool]:
    """Create (or adopt) the parent run; return its id and whether ``mlflow run`` owns it."""
    from mlflow import MlflowClient

    client = MlflowClient()
    sweep_run = os.environ.get(SWEEP_RUN_VAR)
    outer, bystander = (None, None) if sweep_run else _outer_run(client, experiment_id)
    if sweep_run:
        run_id = client.create_run(
            experiment_of(sweep_run),
            run_name=run_name,
            tags={PARENT_TAG: sweep_run, **owner_tags()},
        ).info.run_id
    elif outer:
        run_id = outer
        client.set_tag(run_id, "mlflow.runName", run_name)
    else:
        run_id = client.create_run(experiment_id, run_name=run_name, tags=owner_tags()).info.run_id
    if bystander:
        _link_outer_run(client, bystander, str(run_id))
    if not outer:
        _opened(str(run_id))
        _session.parents.append(str(run_id))
    return str(run_id), bool(outer)


@guarded
def experiment_of(run_id: str) -> str:
    """The experiment a run belongs to (``mlflow run`` may have chosen another one)."""
    from mlflow import MlflowClient

    return str(MlflowClient().get_run(run_id).info.experiment_id)


@guarded
def log_child_run(
    experiment_id: str,
    parent_id: str,
    *,
    run_name: str,
    params: Mapping[str, Any],
    metrics: Mapping[str, float],
    tags: Mapping[str, str],
) -> str:
    """A finished child run with its params, metrics and tags in one batched call."""
    from mlflow import MlflowClient

    client = MlflowClient()
    run = client.create_run(
        experiment_id, run_name=run_name, tags={PARENT_TAG: parent_id, **owner_tags(), **tags}
    )
    run_id = _opened(str(run.info.run_id), parent_id)
    log_batch(run_id, params=params, metrics=metrics)
    _terminate(run_id, "FINISHED")
    return run_id


@guarded
def log_artifact(
    run_id: str, path: str | os.PathLike[str], artifact_path: str | None = None
) -> None:
    from mlflow import MlflowClient

    MlflowClient().log_artifact(run_id, str(path), artifact_path)


def log_metrics(run_id: str, metrics: Mapping[str, float]) -> None:
    log_batch(run_id, metrics=metrics)


def pip_requirements() -> list[str]:
    """Pinned requirements of a logged pipeline, given so MLflow need not infer them."""
    import sklearn

    return [f"scikit-learn=={sklearn.__version__}", f"numpy=={np.__version__}"]


@guarded
def log_model(
    run_id: str,
    pipeline: Any,
    *,
    feature_names: list[str],
    example: np.ndarray,
    model_name: str,
    tags: Mapping[str, str],
    description: str | None = None,
    experiment_id: str | None = None,
) -> str:
    """Log a fitted pipeline as the model of run ``run_id`` and register it; return the version.

    The signature names the input features (``example`` gives their types). No input example
    is stored: MLflow would reload the model to check it, ~0.1 s per model for a file that
    only shows one row. The run is not reopened (it stays as it is, e.g. FINISHED), and the
    version is created in one call with its tags and ``description``. ``experiment_id`` is
    the run's (looked up when not given): the logged model goes there.
    """
    import mlflow
    import pandas as pd
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException
    from mlflow.models import infer_signature

    frame = pd.DataFrame(example, columns=feature_names)
    signature = infer_signature(frame, pipeline.predict(example))
    with _active_experiment(experiment_id or experiment_of(run_id)):
        info = mlflow.sklearn.log_model(
            pipeline,
            name="model",
            signature=signature,
            pip_requirements=pip_requirements(),
            skops_trusted_types=skops_trusted_types(pipeline),
            run_id=run_id,
        )
    # The digest of the file as stored, so that loading the version can tell a changed file.
    digest = logged_skops_sha256(info.model_uri)
    client = MlflowClient()
    try:
        client.get_registered_model(model_name)  # a read: most trainings find it
    except MlflowException as exc:
        if exc.error_code != "RESOURCE_DOES_NOT_EXIST":
            raise
        try:
            client.create_registered_model(model_name)
        except MlflowException as again:  # another stage created it meanwhile
            if again.error_code not in ("RESOURCE_ALREADY_EXISTS", "ALREADY_EXISTS"):
                raise
    mv = client.create_model_version(
        model_name,
        info.model_uri,
        run_id=run_id,
        tags={**tags, SKOPS_SHA256_TAG: digest},
        description=description,
        model_id=info.model_id,
    )
    return str(mv.version)


@contextlib.contextmanager
def _active_experiment(experiment_id: str) -> Iterator[None]:
    """Make ``experiment_id`` MLflow's active experiment for the block, then restore it.

    A model logged with ``run_id`` and no active run goes to MLflow's active experiment,
    else the Default one (whose artifacts are ``./mlruns/0`` in the working directory), not
    to the run's. ``mlflow.set_experiment`` would also export ``MLFLOW_EXPERIMENT_ID`` to every
    later subprocess, so the attribute it sets is set here for the block only.
    """
    from mlflow.tracking import fluent

    old = fluent._active_experiment_id
    setattr(fluent, "_active_experiment_id", experiment_id)  # noqa: B010 (typed as None)
    try:
        yield
    finally:
        fluent._active_experiment_id = old


SKOPS_SHA256_TAG = "geoensemble.skops_sha256"
SKOPS_FILE = "model.skops"  # where mlflow.sklearn stores a skops model in its folder


def file_sha256(path: str | os.PathLike[str]) -> str:
    """The sha256 hex digest of a file, read in 1 MiB pieces."""
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as f:
        for piece in iter(lambda: f.read(1 << 20), b""):
            h.update(piece)
    return h.hexdigest()


def logged_skops_sha256(model_uri: str) -> str:
    """The sha256 of a logged model's ``model.skops``, read back from the store."""
    import tempfile

    import mlflow

    with tempfile.TemporaryDirectory(prefix="geoensemble-model-") as tmp:
        local = mlflow.artifacts.download_artifacts(artifact_uri=model_uri, dst_path=tmp)
        return file_sha256(Path(local) / SKOPS_FILE)


_preloading: threading.Thread | None = None
_mlflow_imported = threading.Event()


def preload() -> threading.Thread:
    """Import MLflow and load what logging a model needs, in a background thread (once per
    process); :func:`setup` waits for it.

    ``import mlflow`` and its SQL store take 1.5-3 s, the first ``log_model`` imports skops
    (which imports every scikit-learn estimator, ~1.3 s) and has MLflow map installed
    packages to check the requirements (~0.7 s). Started when the train stage starts, this
    work runs while the stage reads its training data and the dask workers start. It is only
    a warm-up: a failure here surfaces, if at all, in the MLflow call that needs the module.
    """
    global _preloading

    def warm() -> None:
        with contextlib.suppress(Exception):
            import mlflow
            import mlflow.store.model_registry.sqlalchemy_store
            import mlflow.store.tracking.sqlalchemy_store
        _mlflow_imported.set()  # setup() can go on while the rest loads

        with contextlib.suppress(Exception):
            import mlflow.sklearn  # noqa: F401
            import skops.io  # noqa: F401
            from mlflow.utils.requirements_utils import warn_dependency_requirement_mismatches

            warn_dependency_requirement_mismatches(pip_requirements())

    if _preloading is None:
        _preloading = threading.Thread(target=warm, name="geoensemble-warm-mlflow", daemon=True)
        _preloading.start()
    return _preloading


def warm_model_logging() -> threading.Thread:
    """The :func:`preload` thread: join it before logging a model."""
    return preload()


def _preloaded() -> None:
    """Wait for a :func:`preload` under way to have imported MLflow: two threads importing
    one package at once can see it half-initialised."""
    if _preloading is not None and _preloading is not threading.current_thread():
        _mlflow_imported.wait()


class Background:
    """MLflow calls run one after another on one background thread while the stage goes on
    (logging a member while the others fit costs the stage no wall time).

    :meth:`wait` returns when every call submitted so far is done and raises the first
    failure; once a call failed, the later ones are skipped. :meth:`close` (on an error or
    an interruption of the stage) drops the calls not started and waits for the one running,
    so that the runs can then be closed without racing it. ``seconds`` is the time the
    thread spent in the calls.
    """

    def __init__(self) -> None:
        from concurrent.futures import ThreadPoolExecutor

        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="geoensemble-mlflow")
        self.error: BaseException | None = None
        self.seconds = 0.0

    def submit(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        def call() -> None:
            if self.error is not None:
                return  # the stage fails with the first error: later calls would only add noise
            t0 = time.perf_counter()
            try:
                fn(*args, **kwargs)
            except BaseException as exc:
                self.error = exc
            finally:
                self.seconds += time.perf_counter() - t0

        self._pool.submit(call)

    def wait(self) -> None:
        """Wait for every call submitted; raise the first failure."""
        self._pool.submit(lambda: None).result()
        if self.error is not None:
            raise self.error

    def close(self) -> None:
        """Drop the calls not started, wait for the one running, end the thread."""
        self._pool.shutdown(wait=True, cancel_futures=True)


@guarded
def set_alias(model_name: str, alias: str, version: str) -> None:
    from mlflow import MlflowClient

    MlflowClient().set_registered_model_alias(model_name, alias, version)


# --------------------------------------------------------------------------- registry (issue 14)
DEFAULT_EXPERIMENT_ID = "0"  # MLflow's "Default" experiment, where `mlflow run` puts runs


def _outer_run(client: Any, experiment_id: str) -> tuple[str | None, str | None]:
    """``(run to adopt, run to leave)`` of the run ``mlflow run`` created (``MLFLOW_RUN_ID``).

    ``mlflow run`` without ``--experiment-name`` creates its run in MLflow's Default
    experiment (artifacts under ``./mlruns/0``), and an MLproject cannot choose another one.
    That run is adopted as the stage's run only when it is in ``tracking.experiment`` or in
    an experiment the user chose (``--experiment-name``/``--experiment-id``, or
    ``MLFLOW_EXPERIMENT_NAME``/``_ID`` in the shell); in Default, the stage logs into its own
    run in ``tracking.experiment`` and only links the two (see :func:`_link_outer_run`).
    """
    outer = os.environ.get("MLFLOW_RUN_ID")
    if not outer:
        return None, None
    in_exp = str(client.get_run(outer).info.experiment_id)
    if in_exp == DEFAULT_EXPERIMENT_ID and experiment_id != DEFAULT_EXPERIMENT_ID:
        return None, outer
    return outer, None


def _link_outer_run(client: Any, outer: str, run_id: str) -> None:
    """Point the run ``mlflow run`` left in Default at the stage's run, and back."""
    from mlflow.entities import RunTag

    theirs = client.get_run(outer).data.tags
    copied = {
        k: v for k, v in theirs.items() if k.startswith(("mlflow.project.", "mlflow.source."))
    }
    client.log_batch(
        run_id, tags=[RunTag(k, v) for k, v in {**copied, "mlflow_run_id": outer}.items()]
    )
    note = (
        f"geoensemble logged this entry point's work in experiment "
        f"{experiment_name(experiment_of(run_id))}, run {run_id} (tracking.experiment); "
        f"this run only records that `mlflow run` was called"
    )
    client.log_batch(
        outer,
        tags=[RunTag("geoensemble.run_id", run_id), RunTag("mlflow.note.content", note)],
    )


@guarded
def experiment_name(experiment_id: str) -> str:
    from mlflow import MlflowClient

    return str(MlflowClient().get_experiment(experiment_id).name)


@dataclass(frozen=True)
class VersionInfo:
    """A registered model version: its number, tags, aliases and member run."""

    name: str
    version: str
    tags: dict[str, str]
    aliases: list[str]
    run_id: str | None


def _version_info(mv: Any) -> VersionInfo:
    return VersionInfo(
        name=str(mv.name),
        version=str(mv.version),
        tags=dict(mv.tags or {}),
        aliases=list(getattr(mv, "aliases", None) or []),
        run_id=mv.run_id,
    )


@guarded
def model_version(name: str, version: str) -> VersionInfo:
    """One registered version.

    Raises
    ------
    ModelNotFoundError
        If the model or the version does not exist.
    """
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    try:
        return _version_info(MlflowClient().get_model_version(name, str(version)))
    except MlflowException as exc:
        if (fault := store_error(exc)) is not None:
            raise fault from None
        raise ModelNotFoundError(
            f"model '{name}' has no version {version} in the store {mlflow_uri()}: list its "
            f"versions in the MLflow UI (Models > {name}), or check tracking.model_name and "
            f"tracking.uri"
        ) from None


@guarded
def alias_version(name: str, alias: str) -> str | None:
    """The version ``alias`` points at (``None`` if the alias or the model does not exist)."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    try:
        return str(MlflowClient().get_model_version_by_alias(name, alias).version)
    except MlflowException as exc:
        if (fault := store_error(exc)) is not None:
            raise fault from None
        return None


@guarded
def model_versions(name: str) -> list[VersionInfo]:
    """Every registered version of model ``name`` (oldest first)."""
    from mlflow import MlflowClient

    found = MlflowClient().search_model_versions(f"name = '{name}'", max_results=10_000)
    return sorted((_version_info(mv) for mv in found), key=lambda v: int(v.version))


@dataclass(frozen=True)
class LoadedModel:
    """A model from the registry with what predict needs to check and record."""

    uri: str
    model: Any
    feature_names: list[str]
    name: str | None
    version: str | None
    run_id: str | None


def model_uri(t: TrackingConfig, uri: str | None, alias: str) -> str:
    """``uri`` if given, else ``models:/<tracking.model_name>@<alias>``."""
    return uri or f"models:/{t.model_name}@{alias}"


@guarded
def load_model(uri: str, *, trusted_types: Sequence[str] = ()) -> LoadedModel:
    """Load a logged scikit-learn model and its signature's feature names.

    Parameters
    ----------
    uri
        ``models:/<name>/<version>``, ``models:/<name>@<alias>``, ``runs:/<id>/model``...
    trusted_types
        ``trust.types``: types the model file may hold besides geoensemble's allow-list.

    Raises
    ------
    ModelNotFoundError
        If there is no such model.
    InputFileError
        If its ``model.skops`` differs from the file registered, is damaged, or holds types
        that are not trusted (see :func:`load_sklearn_flavour`).
    """
    import mlflow
    from mlflow.exceptions import MlflowException

    client = mlflow.MlflowClient()
    name = version = run_id = None
    expected: str | None = None
    try:
        if uri.startswith("models:/"):
            ref = uri[len("models:/") :]
            if "@" in ref:
                name, alias = ref.split("@", 1)
                mv = client.get_model_version_by_alias(name, alias)
            else:
                name, version = ref.rsplit("/", 1)
                mv = client.get_model_version(name, version)
            version, run_id = str(mv.version), mv.run_id
            expected = (mv.tags or {}).get(SKOPS_SHA256_TAG)
        info = mlflow.models.get_model_info(uri)
        model = load_sklearn_flavour(
            uri, info.flavors, trusted_types=trusted_types, expected_sha256=expected
        )
    except MlflowException as exc:
        if (fault := store_error(exc)) is not None:
            raise fault from None
        # only the workspace pipeline and `geoensemble promote` set the champion alias
        how = (
            " (dvc repro on the committed params.yaml), promote a registered version "
            "(geoensemble promote version=N)"
            if "@" in uri
            else ""
        )
        raise ModelNotFoundError(
            f"cannot load {uri}: {exc.message.splitlines()[0].rstrip('.')}. Run the "
            f"train stage first{how}, or check tracking.model_name and "
            f"predict.alias"
        ) from None
    if info.signature is None:
        raise FeatureMismatchError(
            f"{uri} has no signature naming its input features: "
            f"log it with one (the train stage does)"
        )
    names = list(info.signature.inputs.input_names())
    return LoadedModel(
        uri=uri,
        model=model,
        feature_names=[str(n) for n in names],
        name=name,
        version=version,
        run_id=run_id,
    )


def load_sklearn_flavour(
    uri: str,
    flavors: Mapping[str, Any],
    *,
    trusted_types: Sequence[str] = (),
    expected_sha256: str | None = None,
) -> Any:
    """The model of a logged ``sklearn`` flavour stored with skops, built only from trusted types.

    Trust comes from geoensemble, never from the artifact: the types the file may hold are
    :data:`geoensemble.trust.SKOPS_TYPES` (beyond skops' own defaults) plus
    ``trusted_types``; the ``skops_trusted_types`` the model's ``MLmodel`` lists are ignored.
    A pickle would run whatever code the file holds, so a model stored as a (cloud)pickle is
    refused; so is a file whose sha256 is not the one recorded at registration.

    Raises
    ------
    ConfigError
        If the model has no ``sklearn`` flavour, or is stored as a pickle.
    InputFileError
        If its ``model.skops`` is not the file registered, is damaged or truncated, or holds
        types that are not trusted (the message names them and ``trust.types``).
    """
    import tempfile

    import mlflow
    import skops.io

    from geoensemble.errors import ConfigError, InputFileError
    from geoensemble.trust import skops_trusted

    conf = flavors.get("sklearn")
    if conf is None:
        raise ConfigError(
            f"{uri} was logged with the {sorted(flavors)} flavour(s), not mlflow.sklearn: "
            f"predict loads scikit-learn models only; log it with mlflow.sklearn.log_model"
        )
    fmt = conf.get("serialization_format", "pickle")
    if fmt != "skops":
        raise ConfigError(
            f"{uri} is stored as a {fmt} file, and loading a pickle runs code stored in the "
            f"file: log it again with serialization_format='skops' (as the train stage "
            f"does), or, only if you trust its source, predict it as a file with "
            f"predict.external.path and predict.external.allow_pickle=true"
        )
    damaged = (
        f"its {SKOPS_FILE} is damaged or truncated: retrain (python pipelines/train.py), or "
        f"register an intact copy of the model again"
    )
    allowed = skops_trusted(trusted_types)
    with tempfile.TemporaryDirectory(prefix="geoensemble-model-") as tmp:
        local = Path(mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=tmp))
        path = local / SKOPS_FILE
        if not path.is_file():
            raise InputFileError(f"cannot load {uri}: {damaged} (the file is missing)")
        if expected_sha256 and file_sha256(path) != expected_sha256:
            raise InputFileError(
                f"cannot load {uri}: its {SKOPS_FILE} is not the file registered (its sha256 "
                f"differs from the tag {SKOPS_SHA256_TAG}), so it was changed or damaged "
                f"after train logged it: retrain (python pipelines/train.py), or register "
                f"the intended model again"
            )
        try:
            # Reads the file's schema only: nothing is imported or built yet.
            found = skops.io.get_untrusted_types(file=path)
        except Exception as exc:  # zip, JSON and schema errors of a damaged file
            raise InputFileError(
                f"cannot load {uri}: {damaged} ({type(exc).__name__}: "
                f"{str(exc).splitlines()[0] if str(exc) else 'unreadable'})"
            ) from None
        untrusted = sorted(set(found) - set(allowed))
        if untrusted:
            raise InputFileError(
                f"cannot load {uri}: its {SKOPS_FILE} holds types geoensemble does not trust "
                f"{untrusted}: retrain, or, only if you trust where this model comes from, "
                f"list them in trust.types (e.g. trust.types=[{untrusted[0]}])"
            )
        try:
            return skops.io.load(path, trusted=allowed)
        except Exception as exc:  # arrays or attributes of a damaged file
            raise InputFileError(
                f"cannot load {uri}: {damaged} ({type(exc).__name__}: "
                f"{str(exc).splitlines()[0] if str(exc) else 'unreadable'})"
            ) from None


@guarded
def start_predict_run(
    experiment_id: str, *, run_name: str, params: Mapping[str, Any], tags: Mapping[str, str]
) -> str:
    from mlflow import MlflowClient

    run = MlflowClient().create_run(
        experiment_id,
        run_name=run_name,
        tags={**tags, **owner_tags(), "geoensemble.role": "predict"},
    )
    run_id = _opened(str(run.info.run_id))
    log_batch(run_id, params=params)
    return run_id


OWNER_HOST, OWNER_PID = "geoensemble.host", "geoensemble.pid"


def owner_tags() -> dict[str, str]:
    """The host and process that own a run they create and end (every run geoensemble
    starts: ensemble parent, members, predict, sweep)."""
    return {OWNER_HOST: socket.gethostname(), OWNER_PID: str(os.getpid())}


@guarded
def close_orphaned_runs(experiment_id: str) -> list[str]:
    """Mark KILLED the RUNNING runs whose owning process on this host no longer exists.

    A stage killed outright (SIGKILL, out of memory, power loss) cannot end its run, which
    would stay RUNNING in the MLflow UI for ever. Runs of other hosts, of live processes and
    runs without owner tags (``mlflow run``'s own, sweeps) are left alone.

    Returns
    -------
    list of str
        The ids of the runs closed.
    """
    from mlflow import MlflowClient

    client = MlflowClient()
    host = socket.gethostname().replace("'", "")
    runs = client.search_runs(
        [experiment_id],
        filter_string=f"attributes.status = 'RUNNING' and tags.`{OWNER_HOST}` = '{host}'",
        max_results=1000,
    )
    closed: list[str] = []
    for run in runs:
        pid = run.data.tags.get(OWNER_PID, "")
        if not pid.isdigit() or _alive(int(pid)):
            continue
        reason = (
            f"its process ({pid} on {host}) ended without closing the run: it was killed "
            f"or crashed; found by a later run"
        )
        # Its children first: runs logged before members carried owner tags have none.
        for child in [*_running_children(run.info.run_id), run.info.run_id]:
            if child not in closed:
                _terminate(child, "KILLED", reason)
                closed.append(child)
    return closed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process
    return True


def end_run(run_id: str, *, failed: BaseException | None = None) -> None:
    """End a run: FINISHED, or with ``failed`` as its ``failure_reason``: KILLED if it was
    interrupted (Ctrl-C, SIGTERM), else FAILED.

    Ending a failed run, and its child runs, is best effort: a store error here would hide
    the error being reported.
    """
    if failed is None:
        _terminate(run_id, "FINISHED")
        return
    # Its child runs too: one cut short, or reopened to log its model, would stay RUNNING.
    close_open_runs(failed, parent_id=run_id)


@guarded
def _terminate(run_id: str, status: str, reason: str | None = None) -> None:
    from mlflow import MlflowClient

    client = MlflowClient()
    if reason is not None:
        client.set_tag(run_id, "failure_reason", reason[:5000])
    client.set_terminated(run_id, status=status)
    _session.open_runs.pop(run_id, None)


# --------------------------------------------------------------------------- predict: models
@guarded
def find_ensemble_run(spec: str, experiment_id: str) -> str:
    """The parent run of one ensemble: a run id, ``latest``, or a ``key:value`` tag.

    ``latest`` and tags pick the most recent ensemble parent run of the experiment
    (``key=value`` works too, quoted on a Hydra command line).
    """
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    client = MlflowClient()
    sep = "=" if "=" in spec else ":" if ":" in spec else None
    if spec != "latest" and sep is None:
        try:
            return str(client.get_run(spec).info.run_id)
        except MlflowException as exc:
            if (fault := store_error(exc)) is not None:
                raise fault from None
            raise ModelNotFoundError(
                f"predict.ensemble={spec!r}: no such run in the store "
                f"{mlflow_uri()}; give the parent run id from reports/train.json, "
                f"'latest', or a key:value tag of the ensemble run"
            ) from None
    query = "tags.`geoensemble.role` = 'ensemble'"
    if sep is not None:
        key, value = (p.strip() for p in spec.split(sep, 1))
        query += f" and tags.`{key}` = '{value}'"
    runs = client.search_runs(
        [experiment_id], query, order_by=["attributes.start_time DESC"], max_results=1
    )
    if not runs:
        raise ModelNotFoundError(
            f"predict.ensemble={spec!r}: no ensemble run matches in experiment "
            f"{experiment_id}; run the train stage first or check the tag"
        )
    return str(runs[0].info.run_id)


def mlflow_uri() -> str:
    import mlflow

    return str(mlflow.get_tracking_uri())


@guarded
def kept_member_uris(model_name: str, parent_run_id: str) -> list[str]:
    """``models:/<name>/<version>`` of every kept member of one ensemble, best rank first."""
    from mlflow import MlflowClient

    versions = [
        mv
        for mv in MlflowClient().search_model_versions(f"name = '{model_name}'")
        if mv.tags.get("ensemble_run_id") == parent_run_id
    ]
    if not versions:
        raise ModelNotFoundError(
            f"ensemble run {parent_run_id} registered no version of model "
            f"'{model_name}': check tracking.model_name, or that its train run finished"
        )

    def order(mv: Any) -> tuple[int, int]:
        rank = mv.tags.get("rank", "")
        return (int(rank) if rank.isdigit() else 1_000_000, int(mv.version))

    return [f"models:/{model_name}/{mv.version}" for mv in sorted(versions, key=order)]


@guarded
def model_id_of(name: str, version: str) -> str | None:
    """The MLflow 3 logged-model id behind a registered version (for run-model links)."""
    from mlflow import MlflowClient

    mv = MlflowClient().get_model_version(name, version)
    if getattr(mv, "model_id", None):
        return str(mv.model_id)
    src = str(mv.source or "")
    return src.split("models:/", 1)[1].split("/", 1)[0] if src.startswith("models:/m-") else None


@guarded
def link_models(run_id: str, model_ids: list[str]) -> None:
    """Record the logged models a run used as its model inputs (shown in the MLflow UI)."""
    from mlflow import MlflowClient
    from mlflow.entities import LoggedModelInput

    if model_ids:
        MlflowClient().log_inputs(run_id, models=[LoggedModelInput(m) for m in model_ids])


# --------------------------------------------------------------------------- ensembles (issue 5)
@guarded
def log_image(run_id: str, image: np.ndarray, artifact_file: str) -> None:
    """An RGB(A) uint8 array saved as a PNG artifact of the run (a member's map preview)."""
    from mlflow import MlflowClient

    MlflowClient().log_image(run_id, image, artifact_file=artifact_file)


def log_metric_steps(run_id: str, series: Mapping[str, list[tuple[int, float]]]) -> None:
    """Metrics with one value per step (e.g. the best AIC per generation), batched."""
    log_batch(run_id, steps=series)


@guarded
def log_dict(run_id: str, obj: Any, artifact_file: str) -> None:
    """A JSON/YAML-serialisable object as an artifact (e.g. the search history)."""
    from mlflow import MlflowClient

    MlflowClient().log_dict(run_id, obj, artifact_file)


def redacted_config(tree: Any, prefix: str = "") -> Any:
    """A nested config with every value fit to log (see :func:`redact_value`); numbers,
    booleans and nulls keep their type, unless their key is a secret's."""
    key = prefix.rstrip(".")
    if isinstance(tree, Mapping):
        return {str(k): redacted_config(v, f"{prefix}{k}.") for k, v in tree.items()}
    if isinstance(tree, list | tuple):
        return [redacted_config(v, prefix) for v in tree]
    if tree is None or isinstance(tree, bool):
        return tree
    if isinstance(tree, int | float) and not SECRET_KEY.search(key):
        return tree
    return redact_value(key, tree)


@guarded
def log_config(run_id: str, config: Mapping[str, Any], artifact_file: str = "config.yaml") -> None:
    """The resolved config as one YAML artifact of the run, secrets and home paths hidden."""
    from mlflow import MlflowClient

    MlflowClient().log_dict(run_id, redacted_config(config), artifact_file)


VIEW_TAG = "mlflow.sharedViewState."  # the MLflow UI's saved views of an experiment's runs


@guarded
def set_runs_view(experiment_id: str, key: str, view: Mapping[str, Any]) -> None:
    """Save a view of the experiment's runs table (filter, sort, columns) that the MLflow UI
    opens at ``#/experiments/<id>/runs?viewStateShareKey=<key>``.

    The view is the UI's own "share" format: an experiment tag ``mlflow.sharedViewState.<key>``
    holding the JSON of its search facets and table state.
    """
    import json

    from mlflow import MlflowClient

    MlflowClient().set_experiment_tag(experiment_id, VIEW_TAG + key, json.dumps(view))


@guarded
def set_version_tags(model_name: str, version: str, tags: Mapping[str, str]) -> None:
    """Tags on a registered model version (e.g. its final rank in the ensemble)."""
    from mlflow import MlflowClient

    client = MlflowClient()
    for k, v in tags.items():
        client.set_model_version_tag(model_name, version, k, str(v))


@guarded
def version_tags(model_name: str, version: str) -> dict[str, str]:
    """The tags of a registered model version (e.g. the class names recorded at training)."""
    from mlflow import MlflowClient

    return dict(MlflowClient().get_model_version(model_name, version).tags or {})


def skops_trusted_types(pipeline: Any) -> list[str]:
    """Types a pipeline we just fitted needs trusted for MLflow's skops format to load it.

    skops refuses types outside its default allow-list on load, and MLflow checks this when
    saving: ``SimpleImputer`` (``numpy.dtype``), geoensemble's own transformers and
    ``SelectKBest``'s score function all need it. The list is written into the model's
    ``MLmodel`` file for MLflow's own check when saving; loading never reads it (trust comes
    from :mod:`geoensemble.trust` and ``trust.types``, see :func:`load_sklearn_flavour`).
    """
    import skops.io

    return sorted(skops.io.get_untrusted_types(data=skops.io.dumps(pipeline)))


# --------------------------------------------------------------------------- sweeps
@guarded
def start_sweep_run(
    experiment_id: str, *, sweep_id: str, params: Mapping[str, Any], tags: Mapping[str, str]
) -> tuple[str, bool]:
    """The run every job of a Hydra sweep nests under; return ``(run_id, created)``.

    Under ``mlflow run`` (``MLFLOW_RUN_ID`` set) that run is the sweep run and ``mlflow run``
    ends it, so ``created`` is False.
    """
    from mlflow import MlflowClient

    client = MlflowClient()
    outer, bystander = _outer_run(client, experiment_id)
    if outer:
        run_id = outer
        client.set_tag(run_id, "mlflow.runName", f"sweep-{sweep_id}")
    else:
        run_id = client.create_run(
            experiment_id, run_name=f"sweep-{sweep_id}", tags=owner_tags()
        ).info.run_id
        _opened(run_id)
        if bystander:
            _link_outer_run(client, bystander, str(run_id))
    log_batch(
        run_id, params=params, tags={**tags, "sweep_id": sweep_id, "geoensemble.role": "sweep"}
    )
    return str(run_id), not outer


@guarded
def sweep_ensembles(sweep_run_id: str, sweep_id: str) -> list[dict[str, Any]]:
    """The ensemble runs of a sweep: run id, status, job number, overrides and metrics."""
    from mlflow import MlflowClient

    client = MlflowClient()
    runs = client.search_runs(
        [experiment_of(sweep_run_id)],
        f"tags.sweep_id = '{sweep_id}' and tags.`geoensemble.role` = 'ensemble'",
        max_results=5000,
    )
    return [
        {
            "run_id": r.info.run_id,
            "run_name": r.info.run_name,
            "status": r.info.status,
            "job": int(r.data.tags.get("sweep_job", -1)),
            "overrides": r.data.tags.get("sweep_overrides", ""),
            "metrics": dict(r.data.metrics),
            "tags": dict(r.data.tags),
        }
        for r in runs
    ]


@guarded
def finish_sweep_run(
    run_id: str,
    *,
    created: bool,
    failed: bool,
    metrics: Mapping[str, float],
    tags: Mapping[str, str],
    summary: str | os.PathLike[str] | None = None,
) -> None:
    """Record the sweep's outcome on its run and end it (if this process created it)."""

    log_batch(run_id, metrics=metrics, tags=tags)
    if summary is not None:
        log_artifact(run_id, summary)
    if created:
        _terminate(run_id, "FAILED" if failed else "FINISHED")

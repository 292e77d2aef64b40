"""Where the store is, bounded calls to it, and its faults as one-line errors.

The default store is SQLite ``mlflow.db`` at the project root, given as an absolute URI;
when DVC runs a stage in a temporary copy (queued and ``--temp`` experiments) ``DVC_ROOT``
names the real project root, so runs land in the real store and not in the copy that DVC
deletes afterwards.
"""

from __future__ import annotations

import functools
import os
import re
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from geoensemble.errors import GeoEnsembleError, TrackingError
from geoensemble.redact import redact_uri


def store_root() -> Path:
    """Where the default store lives: ``GEOENSEMBLE_ROOT``, else ``DVC_ROOT``, else the cwd."""
    for var in ("GEOENSEMBLE_ROOT", "DVC_ROOT"):
        if os.environ.get(var):
            return Path(os.environ[var]).resolve()
    return Path.cwd().resolve()


def default_uri(uri: str | None = None) -> str:
    """``uri``, else ``MLFLOW_TRACKING_URI``, else ``sqlite:///<root>/mlflow.db``.

    ``mlflow run`` exports ``MLFLOW_TRACKING_URI`` with the run it created, so honouring it
    keeps that run and ours in one store.
    """
    return uri or os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{store_root() / 'mlflow.db'}"


def artifact_base(uri: str) -> Path:
    """The folder a relative ``artifact_root`` starts at: a SQLite store's own folder
    (its artifacts stay beside it wherever the stage runs), else the project root."""
    if uri.startswith("sqlite:///"):
        return Path(uri.removeprefix("sqlite:///")).resolve().parent
    return store_root()


def is_local_store(uri: str) -> bool:
    """True for stores on this machine's disk (SQLite, file), False for servers."""
    return not uri.startswith(("http://", "https://", "databricks"))


def sqlite_path(uri: str) -> Path | None:
    """The file of a ``sqlite:///`` store (``None`` for other stores and in-memory ones)."""
    if not uri.startswith("sqlite:///"):
        return None
    path = uri[len("sqlite:///") :].split("?", 1)[0]
    return Path(path) if path and path != ":memory:" else None


def chain(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and the exceptions it was raised from or while handling (bounded)."""
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen and len(seen) < 20:
        seen.add(id(cur))
        yield cur
        cur = cur.__cause__ or cur.__context__


def server_error(
    exc: BaseException, uri: str, timeout: float, *, runs_left: bool = False
) -> TrackingError | None:
    """The one-line error for a tracking server at ``uri`` that refuses connections, does
    not answer within ``timeout`` or answers with an error (``None``: not such a fault).
    ``runs_left``: this process has runs open in that store."""
    if isinstance(exc, GeoEnsembleError) or not uri.startswith(("http://", "https://")):
        return None
    text = " | ".join(f"{type(e).__name__}: {e}" for e in chain(exc))
    if "API request to" not in text and not any(_is_connection_error(e) for e in chain(exc)):
        return None
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
    left = "; the runs it could not close are marked KILLED by the next stage" if runs_left else ""
    return TrackingError(
        f"the MLflow tracking server {redact_uri(uri)} {reason} (timeout={timeout:g} s bounds "
        f"each call): check that it is running and restart it, fix uri, or raise timeout if "
        f"it is only slow{left}",
        arguments={"uri": "Tracker.uri", "timeout": "Tracker.timeout"},
    )


def local_error(
    exc: BaseException, uri: str, timeout: float, *, artifacts: Path | None = None
) -> TrackingError | None:
    """The one-line error for a fault of a store on this machine the user can fix (``None``
    if ``exc`` is not one): a SQLite store that is locked, full, read-only or damaged; a disk
    that fills up or is read-only while MLflow writes artifacts (``artifacts``: the artifact
    folder, to name the disk that is full when the error does not say)."""
    import errno

    if isinstance(exc, GeoEnsembleError):
        return None
    for e in chain(exc):
        if isinstance(e, sqlite3.Error):
            return sqlite_fault(where_of(uri), str(e), timeout)
        if isinstance(e, OSError) and e.errno and not isinstance(e, GeoEnsembleError):
            name = e.filename or where_of(uri)
            if e.errno == errno.ENOSPC:
                return _full(e.filename, uri, artifacts)
            if e.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
                return TrackingError(
                    f"MLflow cannot write {name} ({e.strerror}): make it writable, or point "
                    f"uri (and artifact_root) at a writable folder",
                    arguments={"uri": "Tracker.uri", "artifact_root": "Tracker.artifact_root"},
                )
    return None


def _full(filename: str | None, uri: str, artifacts: Path | None) -> TrackingError:
    """No space left: name the disk that is full, the store's or the artifact store's."""
    store = sqlite_path(uri)
    if filename is None and artifacts is not None and store is not None:
        # a write() that fails names no file: the fuller of the two disks is the one
        if _free_bytes(artifacts) < _free_bytes(store.parent):
            return TrackingError(
                f"no space left on the disk of the MLflow artifact store {artifacts} while "
                f"MLflow wrote a model there: free space there, or point artifact_root at "
                f"another disk",
                arguments={"artifact_root": "Tracker.artifact_root"},
            )
    name = filename or where_of(uri)
    return TrackingError(
        f"no space left on the disk of {name} while MLflow wrote it: free space "
        f"there, or point uri (and artifact_root) at another disk",
        arguments={"uri": "Tracker.uri", "artifact_root": "Tracker.artifact_root"},
    )


def _free_bytes(path: Path) -> int:
    """Free bytes on the disk of ``path`` (or of its nearest existing parent)."""
    import shutil

    while not path.exists() and path != path.parent:
        path = path.parent
    try:
        return shutil.disk_usage(path).free
    except OSError:
        return 1 << 62


def store_error(
    exc: BaseException, uri: str, timeout: float, *, runs_left: bool = False
) -> TrackingError | None:
    """The one-line error for a store fault the user can fix, or ``None`` if ``exc`` is not
    one (see :func:`server_error` and :func:`local_error`)."""
    return server_error(exc, uri, timeout, runs_left=runs_left) or local_error(exc, uri, timeout)


def where_of(uri: str) -> str:
    """The store as shown in messages: its SQLite file, else its URI without secrets."""
    path = sqlite_path(uri)
    return str(path) if path else redact_uri(uri)


def _is_connection_error(exc: BaseException) -> bool:
    try:
        import requests
    except ImportError:  # pragma: no cover - MLflow depends on requests
        return False
    return isinstance(exc, requests.exceptions.ConnectionError | requests.exceptions.Timeout)


def sqlite_fault(path: str, message: str, timeout: float) -> TrackingError | None:
    """The one-line error for a SQLite message about the store ``path`` (``None``: no fault)."""
    low = message.lower()
    if "locked" in low or "busy" in low:
        return TrackingError(
            f"the MLflow store {path} is locked by another process (waited "
            f"timeout={timeout:g} s): let the other stage, `mlflow ui` or `mlflow "
            f"server` using it finish (or stop it), or raise timeout",
            arguments={"timeout": "Tracker.timeout"},
        )
    if "disk is full" in low or "no space" in low:
        return TrackingError(
            f"no space left on the disk of the MLflow store {path}: free space there, or set "
            f"uri to a store on another disk",
            arguments={"uri": "Tracker.uri"},
        )
    if "readonly" in low or "read-only" in low or "unable to open" in low:
        return read_only(Path(path))
    if "malformed" in low or "not a database" in low or "disk i/o" in low or "corrupt" in low:
        return TrackingError(
            f"the MLflow store {path} is damaged ({message}): restore it from a backup, or "
            f"move it aside (mv {path} {path}.broken) and rerun to start a new store"
        )
    return None


def read_only(path: Path) -> TrackingError:
    return TrackingError(
        f"the MLflow store {path} cannot be written (read-only file, folder or disk): make "
        f"it and its folder writable, or set uri to a store in a writable folder",
        arguments={"uri": "Tracker.uri"},
    )


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
            f"({type(reason).__name__}: {reason}; waited at most timeout={timeout:g} s): start "
            f"it (mlflow server --host 127.0.0.1 --port 5000 ...), fix uri, or leave uri unset "
            f"for the local SQLite store",
            arguments={"uri": "Tracker.uri", "timeout": "Tracker.timeout"},
        ) from None


_F = TypeVar("_F", bound=Callable[..., Any])


def guarded(fn: _F) -> _F:
    """Make a method of a :class:`~geoensemble.tracking.Tracker` raise store faults as one-line
    :class:`TrackingError`; once its server stopped answering, fail at once instead of
    waiting for it again."""

    @functools.wraps(fn)
    def call(self: Any, *args: Any, **kwargs: Any) -> Any:
        if self.down is not None:
            raise self.down
        try:
            return fn(self, *args, **kwargs)
        except Exception as exc:
            err = self.fault(exc)
            if err is None:
                raise
            raise err from None

    return call  # type: ignore[return-value]

"""The runs this process opened, by store, and the exit handler that closes them.

A process may use several stores (a notebook, the tests, a stage and a benchmark). Each run
is recorded with its store's URI, and closed in that store by the tracker that opened it,
whichever store another tracker uses meanwhile.
"""

from __future__ import annotations

import atexit
from collections.abc import Callable
from dataclasses import dataclass, field

# Ends, as FAILED or KILLED, the runs of one store still open (a tracker's close_open_runs).
Closer = Callable[[BaseException | None], None]


@dataclass
class Session:
    """What this process left open, keyed by ``(store uri, run id)``."""

    open_runs: dict[tuple[str, str], str | None] = field(default_factory=dict)  # -> parent id
    parents: list[tuple[str, str]] = field(default_factory=list)  # parent runs it started
    closers: dict[str, Closer] = field(default_factory=dict)  # store uri -> its closer
    failed: bool = False  # a run was ended by an error or interruption
    # (status, failure_reason) of runs an error or interruption could not end then (the
    # store was locked by the interrupted write): the exit handler ends them with it
    reasons: dict[tuple[str, str], tuple[str, str]] = field(default_factory=dict)


SESSION = Session()
_atexit_registered = False


def opened(uri: str, run_id: str, parent_id: str | None, closer: Closer) -> str:
    """Remember a run started in the store ``uri``, so it is closed however the process ends."""
    global _atexit_registered
    SESSION.open_runs[(uri, run_id)] = parent_id
    SESSION.closers[uri] = closer
    if not _atexit_registered:
        atexit.register(close_at_exit)
        _atexit_registered = True
    return run_id


def started_parent(uri: str, run_id: str) -> None:
    """Remember a parent run: after a failure its RUNNING children are closed at exit."""
    SESSION.parents.append((uri, run_id))


def ended(uri: str, run_id: str) -> None:
    SESSION.open_runs.pop((uri, run_id), None)
    SESSION.reasons.pop((uri, run_id), None)


def open_runs(uri: str, parent_id: str | None = None, *, children_only: bool = False) -> list[str]:
    """Runs still open in the store ``uri``, the latest first: all of them, or with
    ``children_only`` those whose parent is ``parent_id``."""
    return [
        r
        for (u, r), p in reversed(SESSION.open_runs.items())
        if u == uri and (not children_only or p == parent_id)
    ]


def remember(uri: str, run_ids: list[str], ending: tuple[str, str]) -> None:
    """Keep the ``(status, failure_reason)`` that ``run_ids`` could not be ended with yet."""
    for run_id in run_ids:
        SESSION.reasons.setdefault((uri, run_id), ending)


def ending_of(uri: str, run_id: str, default: tuple[str, str]) -> tuple[str, str]:
    """The ``(status, failure_reason)`` remembered for ``run_id``, else ``default``."""
    return SESSION.reasons.get((uri, run_id), default)


def parents(uri: str) -> list[str]:
    return [r for u, r in SESSION.parents if u == uri]


def close_at_exit() -> None:
    """Last chance, once interrupted frames are gone: in each store, the runs still open, and
    the RUNNING children of our parent runs after a failure."""
    for uri, close in list(SESSION.closers.items()):
        if open_runs(uri) or (SESSION.failed and parents(uri)):
            close(None)


def forget() -> None:
    """Drop every record (tests: their stores are gone, nothing is left to close)."""
    SESSION.open_runs.clear()
    SESSION.parents.clear()
    SESSION.closers.clear()
    SESSION.reasons.clear()
    SESSION.failed = False

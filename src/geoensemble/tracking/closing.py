"""Ending runs: FINISHED, FAILED or KILLED with the reason, with their children, and the runs
that killed processes left RUNNING (a mixin of :class:`~geoensemble.tracking.Tracker`)."""

from __future__ import annotations

import contextlib
import logging
import os
import socket
from collections.abc import Iterator

from geoensemble.tracking import session
from geoensemble.tracking.base import TrackerBase
from geoensemble.tracking.store import chain, guarded
from geoensemble.tracking.tags import OWNER_HOST, OWNER_PID

log = logging.getLogger("geoensemble")

PARENT_TAG = "mlflow.parentRunId"


class Closing(TrackerBase):
    """Run-ending methods of :class:`~geoensemble.tracking.Tracker`."""

    def end_run(self, run_id: str, *, failed: BaseException | None = None) -> None:
        """End a run: FINISHED, or with ``failed`` as its ``failure_reason``: KILLED if it
        was interrupted (Ctrl-C, SIGTERM), else FAILED.

        Ending a failed run, and its child runs, is best effort: a store error here would
        hide the error being reported.
        """
        if failed is None:
            self._terminate(run_id, "FINISHED")
            return
        # Its child runs too: one cut short, or reopened to log its model, would stay RUNNING.
        self.close_open_runs(failed, parent_id=run_id)

    def end_run_as(self, run_id: str, status: str, reason: str) -> None:
        """End a run (no child runs) with an MLflow ``status`` and ``failure_reason`` that
        :func:`failure` gave in another process (the predict stage's, for its helper)."""
        session.SESSION.failed = True
        self._terminate(run_id, status, reason)

    @guarded
    def _terminate(
        self, run_id: str, status: str, reason: str | None = None, end_time: int | None = None
    ) -> None:
        if reason is not None:
            self.client.set_tag(run_id, "failure_reason", reason[:5000])
        self.client.set_terminated(run_id, status=status, end_time=end_time)
        session.ended(self.uri, run_id)

    def close_open_runs(
        self, exc: BaseException | None = None, *, parent_id: str | None = None
    ) -> None:
        """End, as FAILED or KILLED (see :meth:`end_run`), runs this process started in this
        store and has not ended: all of them, or ``parent_id``, its child runs still open or
        RUNNING (model logging may reopen a member's run) and then ``parent_id`` itself.

        Best effort: a store that fails here must not hide the error that brought us here,
        and a server that stopped answering is not waited for again (the next stage closes
        those runs, see :meth:`close_orphaned_runs`).
        """
        status, reason = failure(exc)
        if exc is not None:
            session.SESSION.failed = True
            _release_interrupted_connections(exc)
        if parent_id is None:
            ids = session.open_runs(self.uri)
            for parent in session.parents(self.uri):  # members reopened to log their models
                with contextlib.suppress(Exception):
                    ids += [r for r in self._running_children(parent) if r not in ids]
        else:
            ids = session.open_runs(self.uri, parent_id, children_only=True)
            with contextlib.suppress(Exception):
                ids += [r for r in self._running_children(parent_id) if r not in ids]
            ids.append(parent_id)
        with _store_errors_reported_here():
            for i, run_id in enumerate(ids):
                try:
                    self._terminate(run_id, *session.ending_of(self.uri, run_id, (status, reason)))
                except Exception as err:
                    log.debug("MLflow: could not close run %s: %s", run_id, err)
                    if exc is not None:  # the exit handler ends them, with this reason
                        session.remember(self.uri, ids[i:], (status, reason))
                    if self.down is not None or "locked" in str(err):
                        return  # not worth a wait per run: the exit handler tries again

    @guarded
    def _running_children(self, parent_id: str) -> list[str]:
        runs = self.client.search_runs(
            [self.experiment_of(parent_id)],
            filter_string=f"attributes.status = 'RUNNING' and tags.`{PARENT_TAG}` = '{parent_id}'",
            max_results=1000,
        )
        return [str(r.info.run_id) for r in runs]

    @guarded
    def close_orphaned_runs(self, experiment_id: str) -> list[str]:
        """Mark KILLED the RUNNING runs whose owning process on this host no longer exists.

        A stage killed outright (SIGKILL, out of memory, power loss) cannot end its run,
        which would stay RUNNING in the MLflow UI for ever. Runs of other hosts, of live
        processes and runs without owner tags (``mlflow run``'s own, sweeps) are left alone.

        Returns
        -------
        list of str
            The ids of the runs closed.
        """
        host = socket.gethostname().replace("'", "")
        runs = self.client.search_runs(
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
            for child in [*self._running_children(run.info.run_id), run.info.run_id]:
                if child not in closed:
                    self._terminate(child, "KILLED", reason)
                    closed.append(child)
        return closed


#: MLflow's logger that prints a store error, traceback and all, before raising it.
STORE_ERRORS_LOGGER = "mlflow.store.db.utils"


class _DropAll(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return False


@contextlib.contextmanager
def _store_errors_reported_here() -> Iterator[None]:
    """While ending runs after a failure, MLflow's own report of a store error it raises
    (a locked SQLite store: the interrupted write's) is held back: the error is caught and
    handled here (best effort, the exit handler retries), and a traceback would bury the
    stage's one line. A filter on that one logger, removed afterwards."""
    logger, drop = logging.getLogger(STORE_ERRORS_LOGGER), _DropAll()
    logger.addFilter(drop)
    try:
        yield
    finally:
        logger.removeFilter(drop)


def failure(exc: BaseException | None) -> tuple[str, str]:
    """MLflow status and ``failure_reason`` of a run ended by ``exc``."""
    if isinstance(exc, KeyboardInterrupt | SystemExit):
        how = str(exc) or "SIGINT (Ctrl-C)"
        return "KILLED", f"interrupted by {how}"
    if exc is None:
        return "KILLED", "the process exited without closing the run"
    return "FAILED", f"{type(exc).__name__}: {exc}"


def _release_interrupted_connections(exc: BaseException) -> None:
    """Let go of the store connections the frames of ``exc`` still hold.

    Ctrl-C can land inside a SQLite write, skipping its rollback; the interrupted frames keep
    that connection, and its lock, alive, so closing the runs would wait on our own lock.
    Clearing the frames' locals (the traceback keeps its lines) frees the connection.
    """
    import gc
    import traceback

    for e in chain(exc):
        if e.__traceback__ is not None:
            traceback.clear_frames(e.__traceback__)
    gc.collect()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process
    return True

"""A predict run's MLflow bookkeeping, in this process or in a helper process.

The predict stage records one run: started with its params, tags, linked models and legend,
finished with its quicklooks and metrics, or ended as FAILED/KILLED. :class:`RunBook` does
that on a background thread of the stage; :class:`RunBookProcess` in a child process
(``python -m geoensemble.tracking.runbook``), so that the stage never imports MLflow: its
import, store and calls (about 1 s of pure Python and 90 MB) run on a core the stage leaves
idle while it loads its models, instead of holding the GIL beside the block threads.

The child takes one JSON object per line on stdin and answers each with one line on stdout.
It runs only the operations of :data:`OPERATIONS`, whatever a line asks for, and ignores
Ctrl-C (the stage tells it how the run ended); if the stage dies, the end of its stdin ends
the run as KILLED.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from geoensemble.errors import TrackingError

if TYPE_CHECKING:
    from geoensemble.tracking.background import Background
    from geoensemble.tracking.tracker import Tracker


def start_predict(
    tracker: Tracker,
    *,
    run_name: str,
    params: Mapping[str, Any],
    tags: Mapping[str, str],
    model_ids: Sequence[str],
    legend: Mapping[str, Any] | None,
) -> str:
    """Open the store if needed, start the predict run, link its models, log its legend."""
    import contextlib

    if tracker.experiment_id is None:
        tracker.open()
    assert tracker.experiment_id is not None
    run_id = tracker.start_predict_run(
        tracker.experiment_id, run_name=run_name[:250], params=params, tags=tags
    )
    with contextlib.suppress(Exception):  # older stores cannot link models to runs
        tracker.link_models(run_id, list(model_ids))
    if legend is not None:
        tracker.log_dict(run_id, dict(legend), "maps/legend.json")
    return run_id


def finish_predict(
    tracker: Tracker, run_id: str, *, artifacts: Sequence[str], metrics: Mapping[str, float]
) -> None:
    """Log the run's quicklooks (under ``maps/``) and metrics, and end it FINISHED."""
    for path in artifacts:
        tracker.log_artifact(run_id, path, "maps")
    tracker.log_metrics(run_id, dict(metrics))
    tracker.end_run(run_id)


class RunBook:
    """The predict run's bookkeeping on ``background`` (one thread, calls in order)."""

    def __init__(self, tracker: Tracker, background: Background) -> None:
        self.tracker, self.background = tracker, background
        self.id: str | None = None
        self.ended = False

    def start(self, **spec: Any) -> None:
        """:func:`start_predict` with ``spec``, on the background thread."""

        def call() -> None:
            self.id = start_predict(self.tracker, **spec)

        self.background.submit(call)

    def run_id(self) -> str:
        """The run's id, once started (raises the bookkeeping's first error)."""
        if self.id is None:
            self.background.wait()
        assert self.id is not None
        return self.id

    def finish(self, *, artifacts: Sequence[str], metrics: Mapping[str, float]) -> None:
        def call() -> None:
            assert self.id is not None
            finish_predict(self.tracker, self.id, artifacts=artifacts, metrics=metrics)
            self.ended = True

        self.background.submit(call)
        self.background.wait()

    def fail(self, exc: BaseException) -> None:
        """End the run, if it was started and not ended, as ``exc`` ended the stage."""
        self.background.close()  # nothing may still write while the run is closed
        if self.id is not None and not self.ended:
            self.tracker.end_run(self.id, failed=exc)

    def close(self) -> None:
        self.background.close()


class RunBookProcess:
    """The predict run's bookkeeping in a child process (see the module's docstring).

    Operations are sent at once and answered in order; :meth:`run_id` and :meth:`finish`
    wait for their answers and raise a failure of the child as one-line
    :class:`~geoensemble.errors.TrackingError`. ``seconds`` is what the child spent in
    them, ``peak_rss_mb`` its peak resident memory so far (both as of its last answer).
    """

    def __init__(self, tracker: Tracker) -> None:
        self.proc = _take_spare() or _spawn()
        self.id: str | None = None
        self.seconds = 0.0
        self.peak_rss_mb = 0.0
        self._pending: list[str] = []
        self._send(
            "open",
            uri=tracker.uri,
            experiment=tracker.experiment,
            timeout=tracker.timeout,
            artifact_root=tracker.artifact_root,
        )

    def _send(self, op: str, **args: Any) -> None:
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write(json.dumps({"op": op, **args}) + "\n")
            self.proc.stdin.flush()
        except OSError:  # it died: _answer says how
            pass
        self._pending.append(op)

    def _answer(self) -> Any:
        """The answer to the oldest operation not yet answered."""
        assert self.proc.stdout is not None
        op = self._pending.pop(0)
        while True:
            line = self.proc.stdout.readline()
            if not line:
                code = self.proc.wait()
                raise TrackingError(
                    f"the MLflow bookkeeping process ended (exit code {code}) before it "
                    f"answered '{op}': see the messages above; rerun with GEOENSEMBLE_DEBUG=1 "
                    f"for details"
                )
            try:
                reply = json.loads(line)
            except ValueError:
                reply = None
            if isinstance(reply, dict) and "seconds" in reply:
                break
            sys.stderr.write(line)  # printed before the helper took its stdout for answers
        self.seconds = float(reply.get("seconds", self.seconds))
        self.peak_rss_mb = float(reply.get("peak_rss_mb", self.peak_rss_mb))
        if "error" in reply:
            raise TrackingError(str(reply["error"]))
        return reply.get("ok")

    def start(self, **spec: Any) -> None:
        self._send("start", **spec)

    def run_id(self) -> str:
        while self.id is None:
            if not self._pending:
                raise TrackingError("the predict run was not started (no start was sent)")
            op = self._pending[0]
            value = self._answer()
            if op == "start":
                self.id = str(value)
        return self.id

    def finish(self, *, artifacts: Sequence[str], metrics: Mapping[str, float]) -> None:
        self.run_id()
        self._send("finish", artifacts=[str(a) for a in artifacts], metrics=dict(metrics))
        while self._pending:
            self._answer()

    def fail(self, exc: BaseException) -> None:
        """End the run as ``exc`` ended the stage (best effort: the stage's error is what
        the user must see); a run the child could not start needs nothing."""
        from geoensemble.tracking.closing import failure

        status, reason = failure(exc)
        try:
            self._send("fail", status=status, reason=reason)
            while self._pending:
                try:
                    self._answer()
                except TrackingError:
                    continue
        finally:
            self.close()

    def close(self) -> None:
        """Close the child's stdin and wait for it (killed after 60 s)."""
        if self.proc.stdin is not None and not self.proc.stdin.closed:
            try:
                self.proc.stdin.close()
            except OSError:
                pass
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()


# The helper prewarm() started, and the directory and environment it was started in.
_spare: subprocess.Popen[str] | None = None
_spare_context: tuple[str, dict[str, str]] | None = None


def _context() -> tuple[str, dict[str, str]]:
    return os.getcwd(), dict(os.environ)


def _take_spare() -> subprocess.Popen[str] | None:
    """The prewarmed helper, if it was started where and as a new one would be (a process
    that runs several stages, a notebook or the tests, may have moved since)."""
    global _spare
    proc = _spare
    if proc is None or _spare_context != _context():
        _discard_spare()
        return None
    _spare = None
    return proc


def _spawn() -> subprocess.Popen[str]:
    import geoensemble

    here = str(Path(geoensemble.__file__).resolve().parents[1])
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (here, env.get("PYTHONPATH")) if p)
    return subprocess.Popen(
        [sys.executable, "-m", "geoensemble.tracking.runbook"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=env,
        start_new_session=True,  # Ctrl-C reaches the stage only; it says how the run ended
    )


def prewarm() -> None:
    """Start the helper process now, so that it imports MLflow (1.5 s) while the stage
    starts and composes its config; the next :class:`RunBookProcess` takes it. Unused
    (a config error, a tracking server), it is killed when the process exits: it has
    done nothing but import."""
    global _spare, _spare_context
    if _spare is None:
        import atexit

        _spare, _spare_context = _spawn(), _context()
        atexit.unregister(_discard_spare)  # once, however many stages this process runs
        atexit.register(_discard_spare)


def _discard_spare() -> None:
    global _spare
    if _spare is not None:
        _spare.kill()
        _spare.wait()
        for pipe in (_spare.stdin, _spare.stdout):
            if pipe is not None:
                pipe.close()
        _spare = None


# --------------------------------------------------------------------------- the child
class _Child:
    """The child's state: its tracker and the run it started."""

    def __init__(self) -> None:
        self.tracker: Tracker | None = None
        self.run_id: str | None = None

    def open(self, *, uri: str, experiment: str, timeout: float, artifact_root: str) -> None:
        from geoensemble.tracking.tracker import Tracker

        self.tracker = Tracker(
            uri, experiment=experiment, timeout=timeout, artifact_root=artifact_root
        )
        self.tracker.open()

    def start(self, **spec: Any) -> str:
        assert self.tracker is not None
        self.run_id = start_predict(self.tracker, **spec)
        return self.run_id

    def finish(self, *, artifacts: list[str], metrics: dict[str, float]) -> None:
        assert self.tracker is not None and self.run_id is not None
        finish_predict(self.tracker, self.run_id, artifacts=artifacts, metrics=metrics)
        self.run_id = None

    def fail(self, *, status: str, reason: str) -> None:
        if self.tracker is not None and self.run_id is not None:
            self.tracker.end_run_as(self.run_id, status, reason)
            self.run_id = None


#: What a line may ask the child to do: nothing else runs.
OPERATIONS = ("open", "start", "finish", "fail")


def _peak_rss_mb() -> float:
    """This process's own peak RSS: ``VmHWM`` where Linux gives it (``ru_maxrss`` would
    start from the RSS of the process that forked it: the stage, or a test runner)."""
    import resource

    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def serve(lines: Any, out: Any) -> None:
    """Answer each JSON line of ``lines`` on ``out``; after a failure, every later
    operation but ``fail`` answers with that failure (the stage reports the first)."""
    child = _Child()
    failed: str | None = None
    spent = 0.0
    for line in lines:
        t0 = time.perf_counter()
        msg = json.loads(line)
        op = msg.pop("op", None)
        reply: dict[str, Any]
        if op not in OPERATIONS:
            reply = {"error": f"unknown bookkeeping operation {op!r}"}
        elif failed is not None and op != "fail":
            reply = {"error": failed}
        else:
            try:
                reply = {"ok": getattr(child, op)(**msg)}
            except Exception as exc:  # sent to the stage, which says it in one line
                from geoensemble.errors import GeoEnsembleError

                failed = (
                    str(exc)
                    if isinstance(exc, GeoEnsembleError)
                    else (f"MLflow bookkeeping: {type(exc).__name__}: {exc}")
                )
                reply = {"error": failed}
        spent += time.perf_counter() - t0
        out.write(json.dumps({**reply, "seconds": spent, "peak_rss_mb": _peak_rss_mb()}) + "\n")
        out.flush()


def main() -> None:
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # Standard output is the answers' pipe alone: whatever a library prints goes to stderr.
    answers = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    # What every operation needs, before the first one comes (see prewarm). The collector
    # stays off while MLflow imports and never walks what it loaded (geoensemble.heap):
    # 1.7 s of CPU down to 1.0 s, on the core the stage's blocks will need.
    from geoensemble.heap import script_mode, settle

    script_mode()
    import mlflow
    import mlflow.store.tracking.sqlalchemy_store  # noqa: F401

    settle()
    serve(sys.stdin, answers)
    # The stage's pipe closed. The exit handlers end, KILLED, a run the stage left open
    # (:mod:`.session`); then leave without freeing MLflow's objects one by one (most of
    # a second, which the stage would wait for).
    import atexit

    atexit._run_exitfuncs()
    for stream in (answers, sys.stderr):
        stream.flush()
    os._exit(0)


if __name__ == "__main__":
    main()

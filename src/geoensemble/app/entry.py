"""The scripts' first import: Ctrl-C is one line from the first instant.

``pipelines/<stage>.py`` and the ``geoensemble`` command import only this module before they
run; the command line's own imports (Hydra, OmegaConf, the config schema) take a second or
more on a busy machine, and a Ctrl-C while they load would otherwise print Python's
traceback instead of the stage's one line (:func:`geoensemble.app.cli.stage_main` handles
Ctrl-C once it runs).
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator

EXIT_INTERRUPTED = 130  # 128 + SIGINT, what shells report for Ctrl-C
EXIT_TERMINATED = 143  # 128 + SIGTERM


def _quiet_downloads() -> None:
    """No MLflow progress bar per model loaded ("Downloading artifacts: 100%|...", five
    lines a member): the stage's own log says what it loads. Only in a stage's own process
    (these entry points), through MLflow's public switch, and only if the user has not set
    it (``MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR=true`` brings the bars back)."""
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")


def _settle_for_exit() -> None:
    """Let the interpreter's exit skip walking what the stage leaves alive.

    Python's exit ends with full collections over every object still alive: with MLflow,
    SQLAlchemy, skops and scikit-learn loaded, 0.8-0.9 s of a stage's whole time (a script
    that only imports them and opens the store exits as slowly; no ``atexit`` handler takes
    any of it). :func:`gc.freeze` (public, documented) moves those objects out of every later
    collection. Only in a stage's own process, once its work is done and only when it
    succeeded (then every file, run and connection it used was closed explicitly): an
    interrupted or failed stage may leave garbage whose collection releases something (an
    abandoned store session's lock) that its exit still waits for. The exit stays normal:
    ``atexit`` handlers, ``weakref.finalize`` callbacks, logging's flush and module teardown
    all run.
    """
    import gc

    gc.freeze()


EXIT_BOUND = 30.0  # seconds an interrupted stage's exit may take once its runs are closed
_INTERRUPTED_CODES = (EXIT_INTERRUPTED, EXIT_TERMINATED)


def _bound_exit(code: int) -> None:
    """End the process with ``code`` if the interpreter's exit takes over
    :data:`EXIT_BOUND` s.

    Called once an interrupted stage has closed its runs and removed its partial outputs:
    all that is left is the interpreter's exit, which joins every thread that is not a
    daemon. An interruption that landed while a library started a thread (a thread pool
    growing) can leave that thread idle and unknown to its pool, and the exit would then
    wait forever (seen: dask's thread pools, since replaced by pools of ours in the
    stages). The user asked the stage to stop, so it stops within the bound and says which
    threads it left.
    """
    import threading
    import time

    def watch() -> None:
        time.sleep(EXIT_BOUND)
        main = threading.main_thread()
        left = [t.name for t in threading.enumerate() if not t.daemon and t is not main]
        with contextlib.suppress(Exception):
            sys.stdout.flush()
        print(
            f"geoensemble: the interrupted stage's exit still waited after {EXIT_BOUND:g} s "
            f"for thread(s) {', '.join(left) or '?'}; exiting without them (a bug in "
            f"geoensemble: please report it)",
            file=sys.stderr,
            flush=True,
        )
        os._exit(code)

    threading.Thread(target=watch, name="geoensemble-exit-bound", daemon=True).start()


@contextlib.contextmanager
def _settled_exit() -> Iterator[None]:
    """:func:`_settle_for_exit` after the body returns or exits with code 0; any other
    exit (an error, an interruption) leaves the heap to the collector, and an interrupted
    exit is bounded (:func:`_bound_exit`)."""
    try:
        yield
    except SystemExit as exc:
        if not exc.code:
            _settle_for_exit()
        elif exc.code in _INTERRUPTED_CODES:
            _bound_exit(int(exc.code))
        raise
    _settle_for_exit()


def _interrupted(stage: str) -> SystemExit:
    print(f"geoensemble {stage}: interrupted by SIGINT (Ctrl-C)", file=sys.stderr)
    return SystemExit(EXIT_INTERRUPTED)


def run(stage: str) -> None:
    """Run ``stage`` as ``pipelines/<stage>.py`` does and exit with its code."""
    _quiet_downloads()
    with _settled_exit():
        try:
            from geoensemble.app.cli import run_then_exit

            run_then_exit(stage)
        except KeyboardInterrupt:  # while the command line loads, before it handles Ctrl-C
            raise _interrupted(stage) from None


def main() -> None:
    """The ``geoensemble`` command (:func:`geoensemble.app.cli.main`)."""
    _quiet_downloads()
    with _settled_exit():
        try:
            from geoensemble.app.cli import main as cli_main

            cli_main()
        except KeyboardInterrupt:
            stage = sys.argv[1] if len(sys.argv) > 1 and not sys.argv[1].startswith("-") else ""
            raise _interrupted(stage or "command") from None

"""MLflow imported ahead of need, and MLflow calls run on a background thread."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from typing import Any

_preloading: threading.Thread | None = None
_mlflow_imported = threading.Event()


def preload() -> threading.Thread:
    """Import MLflow and load what logging a model needs, in a background thread (once per
    process); :meth:`Tracker.open` waits for it.

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
        _mlflow_imported.set()  # Tracker.open() can go on while the rest loads

        with contextlib.suppress(Exception):
            import mlflow.sklearn  # noqa: F401
            import skops.io  # noqa: F401
            from mlflow.utils.requirements_utils import warn_dependency_requirement_mismatches

            from geoensemble.tracking.models import pip_requirements

            warn_dependency_requirement_mismatches(pip_requirements())

    if _preloading is None:
        _preloading = threading.Thread(target=warm, name="geoensemble-warm-mlflow", daemon=True)
        _preloading.start()
    return _preloading


def warm_model_logging() -> threading.Thread:
    """The :func:`preload` thread: join it before logging a model."""
    return preload()


def wait_for_import() -> None:
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
    thread spent in the calls submitted (those the stage did not wait for).
    """

    def __init__(self) -> None:
        from concurrent.futures import ThreadPoolExecutor

        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="geoensemble-mlflow")
        self.error: BaseException | None = None
        self.seconds = 0.0
        # set by close(): a long call (registering the kept members) stops at its next step
        self.stopping = threading.Event()

    def submit(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        self._pool.submit(self._call, fn, args, kwargs, waited=False)

    def _call(self, fn: Callable[..., Any], args: Any, kwargs: Any, *, waited: bool) -> Any:
        if self.error is not None:
            return None  # the stage fails with the first error: later calls would only add noise
        t0 = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        except BaseException as exc:
            self.error = exc
            return None
        finally:
            if not waited:  # a call run() waits for is the caller's time, not background time
                self.seconds += time.perf_counter() - t0

    def wait(self) -> None:
        """Wait for every call submitted; raise the first failure."""
        self._pool.submit(lambda: None).result()
        if self.error is not None:
            raise self.error

    def run(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """``fn(*args, **kwargs)`` on the thread, after the calls submitted so far; its value.

        Only the thread writes to the store: a Ctrl-C or SIGTERM (delivered to the main
        thread) lands in this wait, never inside a store write that would leave the store
        locked while the stage closes its runs. The caller waits for it, so its time is not
        added to :attr:`seconds`."""
        value = self._pool.submit(self._call, fn, args, kwargs, waited=True).result()
        if self.error is not None:
            raise self.error
        return value

    def close(self) -> None:
        """Drop the calls not started, ask the one running to stop at its next step
        (:attr:`stopping`), wait for it, end the thread."""
        self.stopping.set()
        self._pool.shutdown(wait=True, cancel_futures=True)

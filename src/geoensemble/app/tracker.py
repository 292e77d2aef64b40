"""The application's one way from ``tracking`` config to a :class:`~geoensemble.tracking.Tracker`
(the tracking package itself knows nothing of the config)."""

from __future__ import annotations

import contextlib
import logging
import math
import os
from collections.abc import Iterator

from geoensemble.app.config import TrackingConfig
from geoensemble.tracking import Tracker

# MLflow reads these on every HTTP request (mlflow.utils.rest_utils.http_request). One try per
# call: with MLflow's default of 7 retries and exponential backoff a dead server held a stage
# for minutes.
HTTP_RETRY_VARS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "0",
    "MLFLOW_HTTP_REQUEST_BACKOFF_JITTER": "0",
}
HTTP_TIMEOUT_VARS = ("MLFLOW_HTTP_REQUEST_TIMEOUT", "MLFLOW_DOWNLOAD_CHUNK_TIMEOUT")


@contextlib.contextmanager
def bounded_mlflow(timeout: float) -> Iterator[None]:
    """For the life of a stage: every MLflow HTTP request waits at most ``timeout`` s
    (``tracking.timeout``, rounded up to whole seconds) with no retry, and MLflow's store
    logger keeps its tracebacks to itself (geoensemble says a store error in one line).

    The command line owns its process; the variables and the logger's level are restored
    after, so a caller of the stage functions keeps its own.
    """
    env = {**HTTP_RETRY_VARS, **{v: str(max(1, math.ceil(timeout))) for v in HTTP_TIMEOUT_VARS}}
    old = {k: os.environ.get(k) for k in env}
    logger = logging.getLogger("mlflow.store.db.utils")
    level = logger.level
    os.environ.update(env)
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(level)
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def tracker_for(t: TrackingConfig) -> Tracker:
    """The store of ``tracking.uri`` (else ``MLFLOW_TRACKING_URI``, else the project's
    ``mlflow.db``) with ``tracking.experiment``, ``timeout`` and ``artifact_root``."""
    return Tracker(t.uri, experiment=t.experiment, timeout=t.timeout, artifact_root=t.artifact_root)

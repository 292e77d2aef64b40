"""The application's one way from ``tracking`` config to a :class:`~geoensemble.tracking.Tracker`
(the tracking package itself knows nothing of the config)."""

from __future__ import annotations

from geoensemble.app.config import TrackingConfig
from geoensemble.tracking import Tracker


def tracker_for(t: TrackingConfig) -> Tracker:
    """The store of ``tracking.uri`` (else ``MLFLOW_TRACKING_URI``, else the project's
    ``mlflow.db``) with ``tracking.experiment``, ``timeout`` and ``artifact_root``."""
    return Tracker(t.uri, experiment=t.experiment, timeout=t.timeout, artifact_root=t.artifact_root)

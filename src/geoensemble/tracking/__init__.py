"""Everything MLflow, around one object: a :class:`Tracker` holds one store and its client.

This is the only package that imports mlflow, and it knows nothing of the application's
config: callers build a :class:`Tracker` from plain values (the application does it in
:func:`geoensemble.app.tracker.tracker_for`). Nothing here sets MLflow's process-wide
tracking URI, so one process can use several stores.

- :mod:`.tracker`: :class:`Tracker` (runs, artifacts, sweeps) and :mod:`.registry` (models);
- :mod:`.store` and :mod:`.sqlite`: where the store is, its checks, its faults in one line;
- :mod:`.session`: the runs this process left open, closed in their own store at exit;
- :mod:`.models`: skops model files, their sha256 and trusted types;
- :mod:`.tags`, :mod:`.background`: pure helpers (redaction lives in :mod:`geoensemble.redact`).
"""

from geoensemble.errors import TrackingError
from geoensemble.redact import redact_uri, redact_value, redacted_config
from geoensemble.tracking.background import Background, preload, warm_model_logging
from geoensemble.tracking.models import (
    SKOPS_FILE,
    SKOPS_SHA256_TAG,
    LoadedModel,
    VersionInfo,
    file_sha256,
    load_sklearn_flavour,
    pip_requirements,
    skops_trusted_types,
)
from geoensemble.tracking.sqlite import CREATING, check_store, init_sqlite_store
from geoensemble.tracking.store import check_server, default_uri, store_error, store_root
from geoensemble.tracking.tags import (
    OWNER_HOST,
    OWNER_PID,
    SWEEP_ID_VAR,
    SWEEP_RUN_VAR,
    owner_tags,
    run_tags,
    sweep_tags,
)
from geoensemble.tracking.tracker import PARENT_TAG, Tracker

__all__ = [
    "CREATING",
    "OWNER_HOST",
    "OWNER_PID",
    "PARENT_TAG",
    "SKOPS_FILE",
    "SKOPS_SHA256_TAG",
    "SWEEP_ID_VAR",
    "SWEEP_RUN_VAR",
    "Background",
    "LoadedModel",
    "Tracker",
    "TrackingError",
    "VersionInfo",
    "check_server",
    "check_store",
    "default_uri",
    "file_sha256",
    "init_sqlite_store",
    "load_sklearn_flavour",
    "owner_tags",
    "pip_requirements",
    "preload",
    "redact_uri",
    "redact_value",
    "redacted_config",
    "run_tags",
    "skops_trusted_types",
    "store_error",
    "store_root",
    "sweep_tags",
    "warm_model_logging",
]

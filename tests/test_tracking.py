"""Tracking helpers that need no store: the background warm-up of model logging."""

from __future__ import annotations

import sys

from geoensemble import tracking


def test_model_logging_is_warmed_in_the_background() -> None:
    thread = tracking.warm_model_logging()
    assert thread.daemon  # never holds the process open
    thread.join(timeout=120)
    assert not thread.is_alive()
    # What the first log_model of a process would otherwise load while the stage waits.
    assert "skops.io" in sys.modules and "mlflow.sklearn" in sys.modules

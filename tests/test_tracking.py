"""Tracking helpers: the background warm-up of model logging, and closing the runs of
processes that were killed (on a real SQLite store)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from geoensemble import tracking
from tests.integration.conftest import reset_mlflow_uris


def test_model_logging_is_warmed_in_the_background() -> None:
    thread = tracking.warm_model_logging()
    assert thread.daemon  # never holds the process open
    thread.join(timeout=120)
    assert not thread.is_alive()
    # What the first log_model of a process would otherwise load while the stage waits.
    assert "skops.io" in sys.modules and "mlflow.sklearn" in sys.modules


def test_runs_left_running_by_dead_processes_are_marked_killed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import mlflow

    from geoensemble.config import TrackingConfig

    monkeypatch.setenv("GEOENSEMBLE_ROOT", str(tmp_path))
    cfg = TrackingConfig(uri=f"sqlite:///{tmp_path}/mlflow.db")
    try:
        exp = tracking.setup(cfg)
        dead = subprocess.Popen(["true"])
        dead.wait()
        here = socket.gethostname()
        client = mlflow.MlflowClient()

        def running(host: str, pid: int) -> str:
            tags = {tracking.OWNER_HOST: host, tracking.OWNER_PID: str(pid)}
            return str(client.create_run(exp, tags=tags).info.run_id)

        killed = running(here, dead.pid)  # e.g. a predict SIGKILLed mid-map
        alive = running(here, os.getpid())  # a stage still working
        elsewhere = running("another-host", dead.pid)  # cannot be checked from here
        untagged = str(client.create_run(exp).info.run_id)  # not ours (mlflow run, sweeps)

        assert tracking.setup(cfg) == exp  # the next stage to open the store closes it
        status = {r: client.get_run(r).info.status for r in (killed, alive, elsewhere, untagged)}
        assert status == {
            killed: "KILLED",
            alive: "RUNNING",
            elsewhere: "RUNNING",
            untagged: "RUNNING",
        }
        reason = client.get_run(killed).data.tags["failure_reason"]
        assert f"its process ({dead.pid} on {here}) ended without closing the run" in reason
    finally:
        reset_mlflow_uris()

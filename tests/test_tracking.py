"""Tracking helpers: the background warm-up of model logging, and closing the runs of
processes that were killed (on a real SQLite store)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from geoensemble import tracking
from geoensemble.app.tracker import tracker_for
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

    from geoensemble.app.config import TrackingConfig

    monkeypatch.setenv("GEOENSEMBLE_ROOT", str(tmp_path))
    cfg = TrackingConfig(uri=f"sqlite:///{tmp_path}/mlflow.db")
    try:
        tracker = tracker_for(cfg)
        exp = tracker.open()
        dead = subprocess.Popen(["true"])
        dead.wait()
        here = socket.gethostname()
        client = mlflow.MlflowClient(cfg.uri, cfg.uri)

        def running(host: str, pid: int) -> str:
            tags = {tracking.OWNER_HOST: host, tracking.OWNER_PID: str(pid)}
            return str(client.create_run(exp, tags=tags).info.run_id)

        killed = running(here, dead.pid)  # e.g. a predict SIGKILLed mid-map
        alive = running(here, os.getpid())  # a stage still working
        elsewhere = running("another-host", dead.pid)  # cannot be checked from here
        untagged = str(client.create_run(exp).info.run_id)  # not ours (mlflow run, sweeps)

        assert tracker_for(cfg).open() == exp  # the next stage to open the store closes it
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


def test_the_logged_config_hides_secrets_and_the_home_folder(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HOME", "/home/alice")
    config = {
        "tracking": {"uri": "http://bob:pw@127.0.0.1:5000", "password": 1234, "timeout": 10},
        "data": {"path": "/home/alice/scene.tif", "layers": ["/home/alice/a.tif"]},
        "model": {"n_clusters": None, "space": {}},
        "ensemble": {"size": 4, "keep": 1.5, "previews": True},
        "service": {"token": "abc"},
    }
    assert tracking.redacted_config(config) == {
        "tracking": {"uri": "http://bob:***@127.0.0.1:5000", "password": "***", "timeout": 10},
        "data": {"path": "~/scene.tif", "layers": ["~/a.tif"]},
        "model": {"n_clusters": None, "space": {}},
        "ensemble": {"size": 4, "keep": 1.5, "previews": True},
        "service": {"token": "***"},
    }


def test_background_calls_run_in_order_and_the_first_failure_is_raised() -> None:
    done: list[int] = []
    bg = tracking.Background()
    try:
        bg.submit(done.append, 1)
        bg.wait()
        assert done == [1]

        def fail() -> None:
            raise tracking.TrackingError("the store is locked")

        bg.submit(fail)
        bg.submit(done.append, 2)  # skipped: the stage fails with the first error
        with pytest.raises(tracking.TrackingError, match="the store is locked"):
            bg.wait()
        assert done == [1] and bg.seconds >= 0
    finally:
        bg.close()
    assert not any(t.name.startswith("geoensemble-mlflow") for t in threading.enumerate())


def test_closing_the_background_drops_the_calls_not_started() -> None:
    started, release = threading.Event(), threading.Event()
    done: list[int] = []

    def slow() -> None:
        started.set()
        release.wait(30)

    bg = tracking.Background()
    bg.submit(slow)
    bg.submit(done.append, 1)
    assert started.wait(30)
    threading.Timer(0.2, release.set).start()
    bg.close()  # waits for the running call, drops the next one
    assert done == []


def test_background_run_returns_the_value_and_an_interruption_lands_in_the_wait() -> None:
    """Background.run: the call runs on the thread (never where the main thread's Ctrl-C
    lands); closing asks a long call to stop at its next step and waits for it."""
    import signal

    bg = tracking.Background()
    assert bg.run(lambda a, b=0: (threading.current_thread().name, a + b), 1, b=2) == (
        "geoensemble-mlflow_0",
        3,
    )
    # seconds: the calls the stage did not wait for (mlflow_background_seconds), not run's
    bg.run(time.sleep, 0.05)
    assert bg.seconds == 0.0
    bg.submit(time.sleep, 0.05)
    bg.wait()
    assert 0.05 <= bg.seconds < 1
    steps: list[int] = []

    def registering() -> None:  # a step per kept member, as MemberLogger._finish
        for i in range(200):
            if bg.stopping.is_set():
                return
            steps.append(i)
            if i == 2:
                # Ctrl-C while the members register (delivered to the main thread, waiting)
                signal.pthread_kill(threading.main_thread().ident, signal.SIGINT)
            time.sleep(0.02)

    with pytest.raises(KeyboardInterrupt):
        bg.run(registering)
    bg.close()  # as MemberLogger.__exit__ does: the running call stops at its next step
    assert 3 <= len(steps) < 200 and steps == list(range(len(steps)))


def test_a_dvc_experiment_logs_the_params_it_changed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from geoensemble.app.train import experiment_keys
    from tests.conftest import run

    params = tmp_path / "params.yaml"
    params.write_text("model:\n  n_clusters: null\n  name: kmeans\nensemble:\n  size: 4\n")
    run(["git", "init", "-q"], tmp_path)
    run(["git", "add", "params.yaml"], tmp_path)
    run(["git", "commit", "-qm", "baseline"], tmp_path)
    # what `dvc exp run -S model.n_clusters=5 -S ensemble.size=3 -S +seed=1` leaves
    params.write_text("model:\n  n_clusters: 5\n  name: kmeans\nensemble:\n  size: 3\nseed: 1\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DVC_EXP_BASELINE_REV", raising=False)
    assert experiment_keys() == []  # not an experiment: dvc repro runs the committed file
    monkeypatch.setenv("DVC_EXP_BASELINE_REV", "HEAD")
    assert experiment_keys() == ["model.n_clusters", "ensemble.size", "seed"]

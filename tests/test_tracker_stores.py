"""A :class:`~geoensemble.tracking.Tracker` holds its own store: two in one process each log to
theirs, MLflow's process-wide tracking URI is neither read nor changed, and runs left open
are closed at exit each in its own store (real SQLite stores, a real process exit)."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from geoensemble.tracking import Tracker, session
from tests.conftest import tool_env
from tests.integration.conftest import reset_mlflow_uris

SRC = Path(__file__).resolve().parents[1] / "src"


@pytest.fixture
def stores(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, str]]:
    """Two SQLite stores, each in its own folder (and artifact root)."""
    monkeypatch.setenv("GEOENSEMBLE_ROOT", str(tmp_path))
    monkeypatch.delenv("MLFLOW_RUN_ID", raising=False)
    uris = []
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        uris.append(f"sqlite:///{tmp_path / name}/mlflow.db")
    reset_mlflow_uris()
    yield uris[0], uris[1]
    session.forget()
    reset_mlflow_uris()


def runs_in(uri: str, experiment: str) -> dict[str, tuple[str, str]]:
    """Run id -> (name, status) of every run of ``experiment`` in the store ``uri``."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        return {}
    runs = client.search_runs([exp.experiment_id], max_results=100)
    return {r.info.run_id: (r.info.run_name, r.info.status) for r in runs}


def test_two_trackers_log_to_their_own_stores_and_leave_the_global_uri_alone(
    stores: tuple[str, str], tmp_path: Path
) -> None:
    import mlflow
    from mlflow import MlflowClient
    from sklearn.cluster import KMeans

    uri_a, uri_b = stores
    # A process-wide URI no code of ours may use: a store in a folder that does not exist.
    trap = f"sqlite:///{tmp_path}/nowhere/mlflow.db"
    mlflow.set_tracking_uri(trap)
    env_before = os.environ.get("MLFLOW_TRACKING_URI")
    a, b = Tracker(uri_a, experiment="ex"), Tracker(uri_b, experiment="ex")
    exp_a, exp_b = a.open(), b.open()
    X = np.random.default_rng(0).normal(size=(50, 2)).astype(np.float32)
    with a.parent_run(exp_a, run_name="ens-a", params={"k": 2}, tags={}) as pa:
        child = a.log_child_run(exp_a, pa, run_name="m-a", params={}, metrics={"aic": 1.0}, tags={})
        with b.parent_run(exp_b, run_name="ens-b", params={"k": 3}, tags={}) as pb:
            for i in range(2):
                b.log_child_run(exp_b, pb, run_name=f"m-b{i}", params={}, metrics={}, tags={})
        model = KMeans(2, n_init=1, random_state=0).fit(X)
        version = a.log_model(
            child, model, feature_names=["x", "y"], example=X[:3], model_name="m", tags={}
        )
    a.set_alias("m", "champion", version)

    assert sorted(n for n, _ in runs_in(uri_a, "ex").values()) == ["ens-a", "m-a"]
    assert sorted(n for n, _ in runs_in(uri_b, "ex").values()) == ["ens-b", "m-b0", "m-b1"]
    assert {s for _, s in runs_in(uri_a, "ex").values()} == {"FINISHED"}
    # the model is registered in store a only, and loads from there
    assert a.alias_version("m", "champion") == version == "1"
    assert b.alias_version("m", "champion") is None
    assert MlflowClient(uri_b, uri_b).search_registered_models() == []
    loaded = a.load_model("models:/m@champion")
    assert loaded.feature_names == ["x", "y"] and loaded.version == "1"
    np.testing.assert_array_equal(loaded.model.predict(X), model.predict(X))
    # MLflow's process-wide URI is as it was, and nothing was created there
    assert mlflow.get_tracking_uri() == trap
    assert os.environ.get("MLFLOW_TRACKING_URI") == env_before
    assert not (tmp_path / "nowhere").exists()


def test_runs_left_open_are_closed_at_exit_each_in_its_own_store(
    stores: tuple[str, str], tmp_path: Path
) -> None:
    """A process that opened runs in two stores and exits without ending them: the exit
    handler closes each in its store (it used to close them all in the current one)."""
    uri_a, uri_b = stores
    script = textwrap.dedent(
        f"""
        import mlflow
        from geoensemble.tracking import Tracker

        a, b = Tracker({uri_a!r}, experiment="ex"), Tracker({uri_b!r}, experiment="ex")
        exp_a, exp_b = a.open(), b.open()
        a.start_parent(exp_a, run_name="ens-a", params={{}}, tags={{}})
        a.start_predict_run(exp_a, run_name="predict-a", params={{}}, tags={{}})
        b.start_predict_run(exp_b, run_name="predict-b", params={{}}, tags={{}})
        assert mlflow.get_tracking_uri() != {uri_b!r}
        print("started", flush=True)
        """
    )
    env = tool_env(PYTHONPATH=str(SRC), GEOENSEMBLE_ROOT=str(tmp_path))
    proc = subprocess.run(
        [sys.executable, "-c", script],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert "started" in proc.stdout and "Traceback" not in proc.stderr
    in_a, in_b = runs_in(uri_a, "ex"), runs_in(uri_b, "ex")
    assert sorted(in_a.values()) == [("ens-a", "KILLED"), ("predict-a", "KILLED")]
    assert sorted(in_b.values()) == [("predict-b", "KILLED")]
    from mlflow import MlflowClient

    for uri, runs in ((uri_a, in_a), (uri_b, in_b)):
        client = MlflowClient(uri, uri)
        for run_id in runs:
            reason = client.get_run(run_id).data.tags["failure_reason"]
            assert reason == "the process exited without closing the run"
    # the process used no other store: no default mlflow.db where it ran
    assert not (tmp_path / "mlflow.db").exists() and not (tmp_path / "mlruns").exists()


def test_a_failed_run_closes_its_open_children_in_its_own_store(
    stores: tuple[str, str],
) -> None:
    """end_run(failed=...) on one tracker ends its run and the children it opened, and leaves
    the runs of another store open until that store's own tracker closes them."""
    uri_a, uri_b = stores
    a, b = Tracker(uri_a, experiment="ex"), Tracker(uri_b, experiment="ex")
    exp_a, exp_b = a.open(), b.open()
    pa, _ = a.start_parent(exp_a, run_name="ens-a", params={}, tags={})
    pb = b.start_predict_run(exp_b, run_name="predict-b", params={}, tags={})
    a.end_run(pa, failed=RuntimeError("boom"))
    assert sorted(runs_in(uri_a, "ex").values()) == [("ens-a", "FAILED")]
    assert runs_in(uri_b, "ex") == {pb: ("predict-b", "RUNNING")}
    assert session.open_runs(uri_b) == [pb] and session.open_runs(uri_a) == []
    session.close_at_exit()  # what the exit handler does
    assert runs_in(uri_b, "ex") == {pb: ("predict-b", "KILLED")}
    assert session.open_runs(uri_b) == []


def test_an_interrupted_run_the_locked_store_kept_open_is_ended_at_exit_as_interrupted(
    stores: tuple[str, str], monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Ctrl-C inside a registry write: ending the runs then meets the store's lock; the exit
    handler ends them later, still KILLED *interrupted by SIGINT*, not as runs the process
    forgot."""
    from mlflow import MlflowClient

    uri, _ = stores
    tracker = Tracker(uri, experiment="ex")
    exp = tracker.open()
    parent, _ = tracker.start_parent(exp, run_name="ens", params={}, tags={})
    real = tracker.client.set_terminated
    calls = []

    def locked_once(run_id: str, **kw: object) -> None:
        calls.append(run_id)
        if len(calls) == 1:
            # as MLflow's SQL store does: it logs the error, traceback and all, then raises
            logging.getLogger("mlflow.store.db.utils").error("database is locked", exc_info=True)
            raise RuntimeError("(sqlite3.OperationalError) database is locked")
        real(run_id, **kw)

    monkeypatch.setattr(tracker.client, "set_terminated", locked_once)
    caplog.set_level(logging.DEBUG)
    caplog.clear()  # the store's creation logs its own lines
    tracker.end_run(parent, failed=KeyboardInterrupt())
    assert runs_in(uri, "ex") == {parent: ("ens", "RUNNING")}  # the lock won
    # MLflow's report of the error we handle is held back (no traceback under the stage's
    # one line), and only for that while: the logger is as it was
    assert not [r for r in caplog.records if r.name == "mlflow.store.db.utils"]
    assert logging.getLogger("mlflow.store.db.utils").filters == []
    session.close_at_exit()  # what the exit handler does
    run = MlflowClient(uri, uri).get_run(parent)
    assert run.info.status == "KILLED"
    assert run.data.tags["failure_reason"] == "interrupted by SIGINT (Ctrl-C)"


def test_a_view_saved_by_two_trainings_at_once_is_written_not_a_failure(
    stores: tuple[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two trainings on a new SQLite store both insert the experiment's saved view; the loser
    of the unique key (the error MLflow raised in CI) writes it again, now as an update."""
    import json

    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    uri, _ = stores
    tracker = Tracker(uri, experiment="ex")
    exp = tracker.open()
    other = MlflowClient(uri, uri)  # the other training, already done
    real = tracker.client.set_experiment_tag
    calls = []

    def raced(experiment_id: str, key: str, value: str) -> None:
        calls.append(key)
        if len(calls) == 1:
            other.set_experiment_tag(experiment_id, key, '{"theirs": 1}')
            raise MlflowException(
                "(sqlite3.IntegrityError) UNIQUE constraint failed: experiment_tags.key, "
                "experiment_tags.experiment_id"
            )
        real(experiment_id, key, value)

    monkeypatch.setattr(tracker.client, "set_experiment_tag", raced)
    tracker.set_runs_view(exp, "members-by-aic", {"orderByKey": "metrics.`aic`"})
    tags = MlflowClient(uri, uri).get_experiment(exp).tags
    assert json.loads(tags["mlflow.sharedViewState.members-by-aic"]) == {
        "orderByKey": "metrics.`aic`"
    }
    assert len(calls) == 2

    # any other store error is still an error, in one line
    def broken(experiment_id: str, key: str, value: str) -> None:
        raise MlflowException("database is locked")

    monkeypatch.setattr(tracker.client, "set_experiment_tag", broken)
    with pytest.raises(Exception, match="database is locked"):
        tracker.set_runs_view(exp, "members-by-aic", {})

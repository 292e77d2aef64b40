"""A real ``mlflow server`` on loopback: a small ensemble logged through it, checked through
its REST API (members, their ``aic``, the champion alias, artifacts served by the server).
"""

from __future__ import annotations

import re
from typing import Any

import pytest

from geoensemble.app.config import TrackingConfig
from geoensemble.app.keys import keyed
from geoensemble.app.tracker import tracker_for
from geoensemble.errors import TrackingError
from tests.integration.conftest import Server, free_port, run_metrics, run_params, run_tags

pytestmark = pytest.mark.integration


def test_members_and_their_aic_are_on_the_server(
    mlflow_server: Server, server_ensemble: dict[str, Any]
) -> None:
    report = server_ensemble
    exp = mlflow_server.api("experiments/get-by-name", experiment_name="server-test")["experiment"]
    # the server chose (and proxies) the artifact store: nothing points at the client's disk
    assert exp["artifact_location"].startswith("mlflow-artifacts:")
    parent = mlflow_server.api("runs/get", run_id=report["parent_run_id"])["run"]
    assert parent["info"]["status"] == "FINISHED"
    assert run_tags(parent)["geoensemble.role"] == "ensemble"
    assert run_params(parent)["ensemble.size"] == "3"

    members = mlflow_server.search_runs(
        exp["experiment_id"], f"tags.mlflow.parentRunId = '{report['parent_run_id']}'"
    )
    assert len(members) == 3
    by_id = {m["info"]["run_id"]: m for m in members}
    assert set(by_id) == {m["run_id"] for m in report["members"]}
    for m in report["members"]:
        served = run_metrics(by_id[m["run_id"]])
        assert served["aic"] == pytest.approx(m["aic"])
        assert by_id[m["run_id"]]["info"]["run_name"] == m["member"]
    best = min(members, key=lambda m: run_metrics(m)["aic"])
    assert best["info"]["run_id"] == report["champion"]["run_id"]

    # a hand run sets no alias: the champion's version is found by its number
    assert report["registry"]["alias"] is None
    found = mlflow_server.api(
        "model-versions/get", name="server_model", version=report["champion"]["version"]
    )
    assert found["model_version"]["run_id"] == report["champion"]["run_id"]
    # the digest of its model.skops, read back through the server, is recorded for predict
    tags = {t["key"]: t["value"] for t in found["model_version"].get("tags", [])}
    assert re.fullmatch(r"[0-9a-f]{64}", tags["geoensemble.skops_sha256"])
    # the champion's model went through the server into its artifact destination
    assert list((mlflow_server.store / "mlartifacts").rglob("MLmodel"))


def test_unreachable_server_names_the_uri(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")  # fail now, not after backoff
    uri = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(TrackingError, match=r"127\.0\.0\.1.*fix uri") as e:
        tracker_for(TrackingConfig(uri=uri, experiment="nowhere")).open()
    assert "fix tracking.uri" in str(keyed(e.value))  # as a stage says it

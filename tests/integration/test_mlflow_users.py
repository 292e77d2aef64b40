"""MLflow as its users expect, on a real SQLite store: a model-training experiment with
descriptions, member runs that last their fit, real UI addresses, one registered model per
data set and family, and registration only on request, never twice for the same member."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest

from geoensemble.app.tracker import tracker_for
from tests.integration.conftest import compose_tiny

pytestmark = pytest.mark.integration


def train(tiny_store: Path, tmp_path: Path, *overrides: str) -> tuple[Any, dict[str, Any]]:
    from geoensemble.app import stages

    cfg = compose_tiny(
        tiny_store,
        f"tracking.uri=sqlite:///{tmp_path}/mlflow.db",
        f"paths.reports={tmp_path}/reports",
        *overrides,
    )
    return cfg, dict(stages.train(cfg))


def test_training_experiment_runs_links_and_registered_model(
    tiny_store: Path, tmp_path: Path
) -> None:
    from mlflow import MlflowClient

    cfg, report = train(tiny_store, tmp_path, "tracking.register=always", "tracking.model_name=")
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    client = MlflowClient(uri, uri)
    exp_id = report["experiment_id"]

    # the MLflow 3 UI opens a model-training experiment on its runs table
    tags = client.get_experiment(exp_id).tags
    assert tags["mlflow.experimentKind"] == "custom_model_development"
    assert "one child run per member" in tags["mlflow.note.content"]
    assert "mlflow.sharedViewState.members-by-aic" in tags
    parent = client.get_run(report["parent_run_id"])
    assert parent.data.tags["mlflow.note.content"].startswith(
        f"Ensemble of kmeans (cluster) members on data set {cfg.data.name}"
    )

    # a member run lasts at least its fit
    for m in report["members"]:
        info = client.get_run(m["run_id"]).info
        assert info.end_time - info.start_time >= 1000 * m["fit_seconds"] - 1

    # real addresses: no server, so the command that serves the UI, and its page
    assert report["mlflow_ui_command"] == (
        f"mlflow ui --backend-store-uri {uri} --host 127.0.0.1 --port 5000"
    )
    assert report["mlflow_ui_url"] == (
        f"http://127.0.0.1:5000/#/experiments/{exp_id}/runs?viewStateShareKey=members-by-aic"
        f"&workflowType=machine_learning"
    )

    # one registered model per data set and family, described, its versions ours
    name = f"{cfg.data.name}-kmeans"
    assert cfg.tracking.model_name == report["model_name"] == name
    model = client.get_registered_model(name)
    assert model.description.startswith("kmeans (cluster) ensemble members trained on data")
    versions = client.search_model_versions(f"name = '{name}'")
    assert sorted(int(v.version) for v in versions) == list(range(1, len(report["kept"]) + 1))
    assert {v.tags["geoensemble.registered_by"] for v in versions} == {"geoensemble"}
    assert {v.tags["origin"] for v in versions} == {"manual"}
    assert all(v.aliases == [] for v in versions)  # a hand run sets no alias
    assert report["registry"]["alias"] is None

    # the same members trained again: nothing registered twice
    _, again = train(tiny_store, tmp_path, "tracking.register=always", "tracking.model_name=")
    assert [k["version"] for k in again["kept"]] == [k["version"] for k in report["kept"]]
    assert len(client.search_model_versions(f"name = '{name}'")) == len(report["kept"])

    # registry prune deletes only our versions that no alias holds
    _, other = train(
        tiny_store, tmp_path, "tracking.register=always", "tracking.model_name=", "seed=7"
    )
    kept = [k["version"] for k in report["kept"] + other["kept"]]
    assert len(set(kept)) == len(kept) >= 2  # other members: other versions
    client.set_registered_model_alias(name, "champion", kept[0])
    first_run = client.search_model_versions(f"name = '{name}'")[0]
    foreign = client.create_model_version(name, first_run.source, run_id=first_run.run_id)
    listed = registry(uri, "list")
    assert f"{name} version {kept[0]}: @champion" in listed.stdout
    assert f"{name} version {foreign.version}" not in listed.stdout  # not ours: not shown
    dry = registry(uri, "prune", "--dry-run")
    assert dry.stdout.strip().splitlines()[-1] == (
        f"geoensemble registry: {len(kept)} version(s) registered by geoensemble; "
        f"would delete {len(kept) - 1} held by no alias"
    )
    assert len(client.search_model_versions(f"name = '{name}'")) == len(kept) + 1
    done = registry(uri, "prune")
    assert done.returncode == 0, done.stderr
    left = sorted(str(v.version) for v in client.search_model_versions(f"name = '{name}'"))
    assert left == sorted([kept[0], str(foreign.version)])
    bad = registry(uri, "registry.action=burn")
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert len([ln for ln in bad.stderr.splitlines() if "error" in ln]) == 1, bad.stderr


def registry(uri: str, *args: str) -> subprocess.CompletedProcess[str]:
    """``geoensemble registry args`` against the store ``uri``."""
    from tests.conftest import tool, tool_env

    return subprocess.run(
        [tool("geoensemble"), "registry", *args, f"tracking.uri={uri}"],
        capture_output=True,
        text=True,
        timeout=120,
        env=tool_env(GEOENSEMBLE_LOG_DIR=uri.removeprefix("sqlite:///").rsplit("/", 1)[0]),
        check=False,
    )


def test_a_hand_run_logs_its_models_without_registering(tiny_store: Path, tmp_path: Path) -> None:
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    cfg, report = train(tiny_store, tmp_path, "tracking.register=auto")  # not the pipeline
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    client = MlflowClient(uri, uri)
    with pytest.raises(MlflowException):
        client.get_registered_model(cfg.tracking.model_name)
    champion = report["champion"]
    assert champion["version"] is None
    assert champion["uri"] == f"models:/{champion['model_id']}"
    assert [k["version"] for k in report["kept"]] == [None] * len(report["kept"])
    assert report["registry"]["registered"] is False
    # evaluate and predict load the logged models the report names
    tracker = tracker_for(cfg.tracking)
    tracker.open()
    loaded = tracker.load_model(champion["uri"])
    assert loaded.feature_names == report["feature_names"]
    assert loaded.version is None and loaded.run_id == champion["run_id"]
    assert loaded.tags is not None and loaded.tags["member"] == champion["member"]

    from geoensemble.app import stages

    maps = tmp_path / "maps"
    cfg = compose_tiny(
        tiny_store,
        f"tracking.uri={uri}",
        f"paths.reports={tmp_path}/reports",
        "predict.model_uri=train_report",
        f"predict.output_dir={maps}",
    )
    stages.predict(cfg)
    assert sorted(p.name for p in maps.glob("*_best.tif"))  # named by role, not by version

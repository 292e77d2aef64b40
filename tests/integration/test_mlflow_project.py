"""MLflow Projects: ``mlflow run . -e <entry> -P overrides=...`` with the real ``mlflow`` CLI.

The run that ``mlflow run`` creates (``MLFLOW_RUN_ID``) must be the one the stage logs into:
the ensemble's parent run for ``train``, the sweep's parent run for ``sweep``.
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import mlflow
import pytest
import yaml

from tests.conftest import ROOT, run, tool
from tests.integration.conftest import copy_project, tiny_overrides

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return copy_project(tmp_path_factory.mktemp("mlproject"))


def mlflow_run(project: Path, entry: str, overrides: list[str]) -> str:
    """``mlflow run`` from the project root, as the README shows; return its output."""
    proc = run(
        [
            *(tool("mlflow"), "run", ".", "-e", entry),
            *("-P", "overrides=" + " ".join(shlex.quote(o) for o in overrides)),
            *("--env-manager", "local", "--experiment-name", "geoensemble"),
        ],
        project,
        timeout=600,
    )
    return proc.stdout + proc.stderr


def test_every_stage_and_a_sweep_is_an_entry_point() -> None:
    from geoensemble.app.stages import STAGES

    spec = yaml.safe_load((ROOT / "MLproject").read_text())
    entries = spec["entry_points"]
    # promote only moves an alias, sample only draws points from a map, registry only lists
    # and prunes versions: no run for `mlflow run` to hold (geoensemble promote, sample,
    # registry)
    skip = ("all", "promote", "sample", "registry")
    assert set(entries) >= {*(s for s in STAGES if s not in skip), "main", "sweep"}
    for name, e in entries.items():
        assert e["parameters"]["overrides"]["default"] == "", name
        assert e["command"].endswith("{overrides}"), name
    assert " -m " in entries["sweep"]["command"]


def test_train_entry_logs_into_the_run_mlflow_run_created(
    project: Path, tiny_store: Path, tmp_path: Path
) -> None:
    family = "gmm" if (ROOT / "conf/model/gmm.yaml").exists() else "kmeans"
    overrides = [
        *tiny_overrides(tiny_store),
        f"model={family}",
        "model.n_clusters=5",
        "model.space={}",
        "ensemble.size=2",
        f"paths.reports={tmp_path}/reports",
        "tracking.uri=null",  # the default store: mlflow.db at the project root
    ]
    out = mlflow_run(project, "train", overrides)
    report = json.loads((tmp_path / "reports/train.json").read_text())
    run_id = report["parent_run_id"]
    assert f"Run (ID '{run_id}') succeeded" in out

    mlflow.set_tracking_uri(f"sqlite:///{project / 'mlflow.db'}")
    client = mlflow.MlflowClient()
    parent = client.get_run(run_id)
    assert parent.info.status == "FINISHED"  # ended by mlflow run
    assert parent.data.tags["mlflow.project.entryPoint"] == "train"
    assert parent.data.tags["geoensemble.role"] == "ensemble"
    assert parent.data.params["model.name"] == family
    assert parent.data.params["model.n_clusters"] == "5"
    assert client.get_experiment(parent.info.experiment_id).name == "geoensemble"
    members = client.search_runs(
        [parent.info.experiment_id], f"tags.mlflow.parentRunId = '{run_id}'"
    )
    assert len(members) == 2
    assert {m.info.run_id for m in members} == {m["run_id"] for m in report["members"]}
    assert parent.data.metrics["best_aic"] == pytest.approx(
        min(m.data.metrics["aic"] for m in members)
    )
    # one run for the whole entry point: nothing else was created
    assert len(client.search_runs([parent.info.experiment_id])) == 3


def test_sweep_entry_nests_every_job_under_the_run_mlflow_run_created(
    project: Path, tiny_store: Path, tmp_path: Path
) -> None:
    overrides = [
        *tiny_overrides(tiny_store),
        "model.n_clusters=4,6",
        "model.space={}",
        "ensemble.size=2",
        f"paths.reports={tmp_path}/reports",
        f"hydra.sweep.dir={tmp_path}/sweep",
        "tracking.uri=null",
    ]
    mlflow_run(project, "sweep", overrides)
    summary = json.loads((tmp_path / "sweep/sweep_summary.json").read_text())
    mlflow.set_tracking_uri(f"sqlite:///{project / 'mlflow.db'}")
    client = mlflow.MlflowClient()
    sweep_run = client.get_run(summary["sweep_run_id"])
    assert sweep_run.info.status == "FINISHED"
    assert sweep_run.data.tags["mlflow.project.entryPoint"] == "sweep"
    assert sweep_run.data.tags["best_run_id"] == summary["best"]["run_id"]
    jobs = client.search_runs(
        [sweep_run.info.experiment_id],
        f"tags.mlflow.parentRunId = '{sweep_run.info.run_id}'",
    )
    assert sorted(j.data.params["model.n_clusters"] for j in jobs) == ["4", "6"]
    assert all(j.info.status == "FINISHED" for j in jobs)

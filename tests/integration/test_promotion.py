"""Promotion is a deliberate act, with real DVC, git, Hydra sweeps, ``mlflow run`` and a real
SQLite MLflow store in a project copy.

After ``dvc repro`` on the committed params, ``@champion`` is the version in
``reports/train.json``. A queued DVC experiment (``dvc exp run --queue`` + ``dvc queue
start``), a Hydra sweep, ``mlflow run . -e train --env-manager local`` (without
``--experiment-name``, as MLproject's comments show it) and a one-cluster training by hand
log their models and register only when asked (``tracking.register=always``), set no alias
of their own and leave ``@champion`` where it was: the registry then holds the pipeline's
kept members plus what was asked for;
``geoensemble promote version=N`` moves it and records why, refuses the degenerate candidate,
and ``dvc repro`` of predict still maps the version its train recorded.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pytest
import rasterio

from tests.conftest import run, tool
from tests.integration.conftest import tiny_git_project
from tests.integration.test_dvc_experiments import wait_for_queue

pytestmark = [pytest.mark.integration, pytest.mark.slow]

MAP = "outputs/maps/synthetic_geoensemble_champion.tif"


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The project in a git repo whose conf/ holds the tiny scene, after ``dvc repro``."""
    with tiny_git_project(tmp_path_factory.mktemp("promote-project")) as d:
        yield d


def client(repo: Path) -> Any:
    uri = f"sqlite:///{repo / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    return mlflow.MlflowClient()


def champion(repo: Path) -> str:
    return str(client(repo).get_model_version_by_alias("geoensemble", "champion").version)


def registered(repo: Path) -> list[str]:
    """The versions of model ``geoensemble``, oldest first."""
    found = client(repo).search_model_versions("name = 'geoensemble'")
    return sorted((str(v.version) for v in found), key=int)


def by_alias(repo: Path, alias: str) -> Any:
    return client(repo).get_model_version_by_alias("geoensemble", alias)


def map_version(repo: Path, path: str = MAP) -> tuple[str, np.ndarray]:
    with rasterio.open(repo / path) as m:
        return m.tags()["model_version"], m.read(1)


def promote(repo: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return run([tool("geoensemble"), "promote", *args], repo, check=False, timeout=120)


def test_only_the_pipeline_and_promote_move_the_champion(repo: Path, tmp_path: Path) -> None:
    train = json.loads((repo / "reports/train.json").read_text())
    ours = train["champion"]["version"]
    assert train["registry"]["origin"] == "pipeline" and train["registry"]["champion_moved"]
    assert train["champion"]["uri"] == f"models:/geoensemble/{ours}"
    assert champion(repo) == ours and map_version(repo)[0] == ours
    tags = by_alias(repo, "champion").tags
    assert tags["promoted_by"] == "pipeline" and tags["origin"] == "pipeline"
    assert tags["ensemble_run_id"] == train["parent_run_id"]
    assert tags["criterion"] == "aic" and float(tags["criterion_value"]) == pytest.approx(
        train["champion"]["aic"], rel=1e-6
    )
    assert tags["family"] == "kmeans" and tags["score_space"] and tags["n_classes"]

    pipeline_versions = registered(repo)
    assert pipeline_versions == sorted(str(k["version"]) for k in train["kept"])

    # A queued DVC experiment logs its models and registers nothing; the champion stays.
    run(
        [
            *(tool("dvc"), "exp", "run", "--queue", "-n", "tiny-k5"),
            *("-S", "model.n_clusters=5", "-S", "~model.space"),
        ],
        repo,
    )
    run([tool("dvc"), "queue", "start"], repo)
    assert wait_for_queue(repo).count("Success") == 1
    assert registered(repo) == pipeline_versions
    assert champion(repo) == ours

    # A Hydra sweep of 4 jobs: logged, not registered, no alias per job.
    sweep_dir = tmp_path / "sweep"
    run(
        [
            *(tool("python"), "pipelines/train.py", "-m"),
            *("model.n_clusters=3,4,5,6", "model.space={}"),
            f"paths.reports={tmp_path}/reports/${{hydra:job.num}}",
            f"hydra.sweep.dir={sweep_dir}",
        ],
        repo,
        timeout=900,
        GEOENSEMBLE_LOG_DIR=str(tmp_path / "logs"),
    )
    for job in range(4):
        job_report = json.loads((tmp_path / f"reports/{job}/train.json").read_text())
        assert job_report["registry"]["origin"] == "sweep"
        assert job_report["champion"]["version"] is None
        assert job_report["champion"]["uri"].startswith("models:/m-")
    assert registered(repo) == pipeline_versions
    assert champion(repo) == ours

    # mlflow run as MLproject's comments write it (no --experiment-name), asked to register.
    mlrun = tmp_path / "mlrun"
    overrides = f"model.n_clusters=5 model.space={{}} paths.reports={mlrun}"
    out = run(
        [
            *(tool("mlflow"), "run", ".", "-e", "train", "--env-manager", "local"),
            *("-P", f"overrides={overrides} tracking.register=always"),
        ],
        repo,
        timeout=900,
        GEOENSEMBLE_LOG_DIR=str(tmp_path / "logs"),
    )
    report = json.loads((mlrun / "train.json").read_text())
    c = client(repo)
    parent = c.get_run(report["parent_run_id"])
    assert c.get_experiment(parent.info.experiment_id).name == "geoensemble"
    assert parent.info.status == "FINISHED"
    outer = c.get_run(parent.data.tags["mlflow_run_id"])  # the run `mlflow run` made
    assert f"Run (ID '{outer.info.run_id}') succeeded" in out.stdout + out.stderr
    assert parent.data.tags["mlflow.project.entryPoint"] == "train"
    assert outer.data.tags["geoensemble.run_id"] == parent.info.run_id
    assert not (repo / "mlruns").exists()  # nothing logged into the Default experiment
    assert report["registry"]["origin"] == "mlflow-run" and report["registry"]["alias"] is None
    asked = str(report["champion"]["version"])
    mv = c.get_model_version("geoensemble", asked)
    assert mv.tags["origin"] == "mlflow-run" and mv.aliases == []
    assert mv.tags["mlflow_run_id"] == outer.info.run_id
    # the registry holds the pipeline's kept members plus what was asked for
    asked_versions = sorted(str(k["version"]) for k in report["kept"])
    assert registered(repo) == sorted({*pipeline_versions, *asked_versions}, key=int)
    assert champion(repo) == ours
    exp_version = asked

    # A degenerate candidate trained by hand (one cluster) is refused, in one line.
    one = tmp_path / "one"
    run(
        [
            *(tool("python"), "pipelines/train.py", "model.n_clusters=1", "model.space={}"),
            f"paths.reports={one}",
            "tracking.register=always",
        ],
        repo,
        timeout=600,
        GEOENSEMBLE_LOG_DIR=str(tmp_path / "logs"),
    )
    bad = json.loads((one / "train.json").read_text())
    assert bad["registry"]["origin"] == "manual" and not bad["registry"]["champion_moved"]
    refused = promote(repo, f"version={bad['champion']['version']}")
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    assert refused.stderr.strip().splitlines() == [
        f"geoensemble promote: error: version {bad['champion']['version']} of model "
        f"'geoensemble' is not promoted to @champion: it uses only one cluster: promote "
        f"another version (geoensemble promote version=N), or retrain"
    ]
    assert champion(repo) == ours

    # Nothing of the workspace was touched by all this.
    status = run([tool("dvc"), "status"], repo).stdout
    assert "up to date" in status.lower(), status

    # promote moves it and records why ...
    done = promote(repo, f"version={exp_version}", "reason=k=5 reads better")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == (
        f"geoensemble promote: @champion of model 'geoensemble' moved from version {ours} to "
        f"{exp_version} (k=5 reads better)"
    )
    tags = by_alias(repo, "champion").tags
    assert tags["previous_champion"] == ours and tags["promotion_reason"] == "k=5 reads better"
    assert tags["promoted_by"] == f"promote version={exp_version}"

    # ... and the pipeline's predict still maps the version its train recorded.
    before = map_version(repo)
    run([tool("dvc"), "repro", "-f", "-s", "predict"], repo, timeout=600)
    # no longer @champion, its map is named by its role: the best of its ensemble
    after = map_version(repo, MAP.replace("_champion.", "_best."))
    assert after[0] == ours != exp_version
    np.testing.assert_array_equal(after[1], before[1])
    assert champion(repo) == exp_version

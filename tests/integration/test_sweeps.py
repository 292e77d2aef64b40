"""Hydra multirun sweeps: one ensemble per job, a shared sweep id and parent run, the best job.

The sequential sweep logs to a SQLite store; the parallel one (joblib launcher) to a real
``mlflow server`` on loopback, as the README tells users to do.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import mlflow
import pytest
from omegaconf import OmegaConf

from geoensemble.app.params import compose
from geoensemble.app.sweep import check_launcher, summarize
from geoensemble.app.validate import validate
from geoensemble.errors import ConfigError
from tests.conftest import ROOT, run, tool
from tests.integration.conftest import (
    Server,
    run_metrics,
    run_params,
    run_tags,
    tiny_overrides,
)

pytestmark = pytest.mark.integration

JOBLIB = "hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher"
BASIC = "hydra._internal.core_plugins.basic_launcher.BasicLauncher"


def models() -> list[str]:
    """The model families to sweep: kmeans and gmm (issue 5) when conf/ has it."""
    return ["kmeans", "gmm"] if (ROOT / "conf/model/gmm.yaml").exists() else ["kmeans"]


def sweep(tmp: Path, store: Path, *args: str, check: bool = True) -> Any:
    return run(
        [
            tool("python"),
            "pipelines/train.py",
            "-m",
            *tiny_overrides(store),
            f"paths.reports={tmp}/reports/${{hydra:job.num}}",
            f"hydra.sweep.dir={tmp}/sweep",
            "ensemble.size=2",
            *args,
        ],
        ROOT,
        timeout=600,
        check=check,
    )


@pytest.mark.parametrize(
    "name", sorted(p.stem for p in (ROOT / "conf" / "experiment").glob("*.yaml"))
)
def test_every_experiment_file_composes_and_validates(name: str) -> None:
    cfg = validate(compose([f"+experiment={name}"], config_dir=ROOT / "conf"))
    if name == "parallel_sweep":
        assert cfg.tracking.uri == "http://127.0.0.1:5000"
        assert (cfg.compute.processes, cfg.compute.n_workers) == (False, 1)
    if name == "cluster":
        assert cfg.compute.address == "tcp://127.0.0.1:8786"


@pytest.mark.parametrize(
    ("target", "n_jobs", "uri", "refused"),
    [
        (JOBLIB, 2, "sqlite:////tmp/x/mlflow.db", True),
        (JOBLIB, -1, "sqlite:////tmp/x/mlflow.db", True),
        (JOBLIB, 1, "sqlite:////tmp/x/mlflow.db", False),
        (JOBLIB, 2, "http://127.0.0.1:5000", False),
        (BASIC, None, "sqlite:////tmp/x/mlflow.db", False),
    ],
)
def test_parallel_jobs_on_sqlite_are_refused(
    target: str, n_jobs: int | None, uri: str, refused: bool
) -> None:
    launcher: dict[str, Any] = {"_target_": target}
    if n_jobs is not None:
        launcher["n_jobs"] = n_jobs
    config = OmegaConf.create({"hydra": {"launcher": launcher}})
    if refused:
        with pytest.raises(ConfigError, match=r"n_jobs=-?\d.*SQLite.*tracking=server"):
            check_launcher(config, uri)
    else:
        check_launcher(config, uri)


def test_summarize_picks_the_best_finished_job() -> None:
    def row(
        job: int, status: str, aic: float | None, family: str = "kmeans", space: str = "s1"
    ) -> dict[str, Any]:
        metrics = {} if aic is None else {"best_aic": aic}
        return {
            "job": job,
            "run_id": f"r{job}",
            "status": status,
            "overrides": "",
            "metrics": metrics,
            "tags": {"model_family": family, "score_space": space},
        }

    rows = [
        row(2, "FINISHED", 5.0),
        row(0, "FINISHED", 7.0),
        row(1, "FAILED", 1.0),
        row(3, "RUNNING", None),
    ]
    best, jobs, why = summarize(rows, metric="aic", direction="minimize")
    assert best is not None and best["job"] == 2 and best["best_aic"] == 5.0 and why is None
    assert [j["job"] for j in jobs] == [0, 1, 2, 3]
    best, _, _ = summarize(rows, metric="aic", direction="maximize")
    assert best is not None and best["job"] == 0
    assert summarize([row(1, "FAILED", 1.0)], metric="aic", direction="minimize")[0] is None
    # a failed job of another family does not matter; a finished one does
    assert summarize([*rows, row(4, "FAILED", 0.1, "gmm")], metric="aic", direction="minimize")[0]


@pytest.mark.parametrize(
    ("other", "match"),
    [
        ({"family": "gmm"}, r"differ in model family \(gmm, kmeans\).*best_aic"),
        ({"space": "s2"}, r"different data \(features, sample, seed or metric"),
    ],
)
def test_summarize_names_no_best_job_across_incomparable_jobs(
    other: dict[str, str], match: str
) -> None:
    def row(job: int, aic: float, family: str = "kmeans", space: str = "s1") -> dict[str, Any]:
        return {
            "job": job,
            "run_id": f"r{job}",
            "status": "FINISHED",
            "overrides": "",
            "metrics": {"best_aic": aic},
            "tags": {"model_family": family, "score_space": space},
        }

    best, jobs, why = summarize(
        [row(0, 5.0), row(1, 1.0, **other)], metric="aic", direction="minimize"
    )
    assert best is None and why is not None and re.search(match, why)
    assert [j["best_aic"] for j in jobs] == [5.0, 1.0]  # every job's score is still listed


def test_sweep_runs_one_ensemble_per_job_and_names_the_best(
    tiny_store: Path, tmp_path: Path
) -> None:
    fams = models()
    proc = sweep(
        tmp_path, tiny_store, f"model={','.join(fams)}", "model.n_clusters=4,8", "model.space={}"
    )
    summary = json.loads((tmp_path / "sweep" / "sweep_summary.json").read_text())
    n_jobs = 2 * len(fams)
    assert summary["status"] == "FINISHED" and len(summary["jobs"]) == n_jobs

    mlflow.set_tracking_uri(f"sqlite:///{tiny_store}/mlflow.db")
    client = mlflow.MlflowClient()
    sweep_run = client.get_run(summary["sweep_run_id"])
    assert sweep_run.info.status == "FINISHED"
    assert sweep_run.data.tags["sweep_id"] == summary["sweep_id"]
    exp = sweep_run.info.experiment_id
    ensembles = client.search_runs(
        [exp], f"tags.sweep_id = '{summary['sweep_id']}' and tags.`geoensemble.role` = 'ensemble'"
    )
    assert len(ensembles) == n_jobs
    seen = set()
    for e in ensembles:
        assert e.info.status == "FINISHED"
        assert e.data.tags["mlflow.parentRunId"] == sweep_run.info.run_id
        job_overrides = e.data.tags["sweep_overrides"]
        family, k = e.data.params["model.name"], e.data.params["model.n_clusters"]
        assert f"model={family}" in job_overrides and f"model.n_clusters={k}" in job_overrides
        seen.add((family, k))
        members = client.search_runs([exp], f"tags.mlflow.parentRunId = '{e.info.run_id}'")
        assert len(members) == 2
        assert e.data.metrics["best_aic"] == pytest.approx(
            min(m.data.metrics["aic"] for m in members)
        )
        # every job wrote its own report, under its own job number
        report = json.loads(
            (tmp_path / "reports" / e.data.tags["sweep_job"] / "train.json").read_text()
        )
        assert report["parent_run_id"] == e.info.run_id
    assert seen == {(f, k) for f in fams for k in ("4", "8")}

    if len(fams) > 1:
        # AIC of different model families is not compared: no best job, and the reason
        assert summary["best"] is None and "differ in model family" in summary["not_compared"]
        assert "best_run_id" not in sweep_run.data.tags
        assert "no best job: the jobs differ in model family" in proc.stdout
        return
    best = min(ensembles, key=lambda e: e.data.metrics["best_aic"])
    assert summary["best"]["run_id"] == best.info.run_id
    assert summary["best"]["job"] == int(best.data.tags["sweep_job"])
    assert sweep_run.data.tags["best_run_id"] == best.info.run_id
    assert sweep_run.data.metrics["best_aic"] == pytest.approx(best.data.metrics["best_aic"])
    assert f"best job {summary['best']['job']} by aic" in proc.stdout


def test_failed_job_is_reported_and_others_still_run(tiny_store: Path, tmp_path: Path) -> None:
    proc = sweep(tmp_path, tiny_store, "ensemble.keep=1,0", check=False)
    assert proc.returncode != 0
    assert "ensemble.keep" in proc.stderr
    summary = json.loads((tmp_path / "sweep" / "sweep_summary.json").read_text())
    assert summary["status"] == "FAILED"
    assert [j["job"] for j in summary["jobs"]] == [0]
    assert summary["best"]["job"] == 0
    mlflow.set_tracking_uri(f"sqlite:///{tiny_store}/mlflow.db")
    assert mlflow.MlflowClient().get_run(summary["sweep_run_id"]).info.status == "FAILED"


def test_parallel_sweep_logs_every_job_to_the_server(
    tiny_store: Path, tmp_path: Path, mlflow_server: Server
) -> None:
    sweep(
        tmp_path,
        tiny_store,
        "+experiment=parallel_sweep",
        f"tracking.uri={mlflow_server.url}",
        "tracking.experiment=parallel-sweep",
        "tracking.model_name=parallel_model",
        "model.n_clusters=4,5,6",
        "model.space={}",
    )
    summary = json.loads((tmp_path / "sweep" / "sweep_summary.json").read_text())
    exp = mlflow_server.api("experiments/get-by-name", experiment_name="parallel-sweep")
    exp_id = exp["experiment"]["experiment_id"]
    ensembles = mlflow_server.search_runs(
        exp_id, f"tags.sweep_id = '{summary['sweep_id']}' and tags.`geoensemble.role` = 'ensemble'"
    )
    assert len(ensembles) == 3
    assert {run_params(e)["model.n_clusters"] for e in ensembles} == {"4", "5", "6"}
    assert {run_tags(e)["sweep_job"] for e in ensembles} == {"0", "1", "2"}
    for e in ensembles:
        assert e["info"]["status"] == "FINISHED"
        assert run_tags(e)["mlflow.parentRunId"] == summary["sweep_run_id"]
        members = mlflow_server.search_runs(
            exp_id, f"tags.mlflow.parentRunId = '{e['info']['run_id']}'"
        )
        assert len(members) == 2 and all("aic" in run_metrics(m) for m in members)
    best = min(ensembles, key=lambda e: run_metrics(e)["best_aic"])
    assert summary["best"]["run_id"] == best["info"]["run_id"]

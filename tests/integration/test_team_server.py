"""A team's setup for real: ``mlflow server`` with a PostgreSQL backend store and a served
artifact store, on loopback. The pipeline, a two-job Hydra sweep, a promotion and predict run
against it and give what the single-user SQLite store gives for the same seed.

PostgreSQL comes from the machine (Debian's ``postgresql`` binaries); the tests skip, naming
why, where it cannot start.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio

from tests.conftest import ROOT, run, tool
from tests.integration.conftest import (
    Server,
    compose_tiny,
    free_port,
    reset_mlflow_uris,
    run_metrics,
    run_tags,
    serve,
    tiny_overrides,
)
from tests.integration.postgres import Cluster, PostgresUnavailable, postgres_cluster

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    """A PostgreSQL cluster on loopback for this module (skipped, naming why, without one)."""
    try:
        cm = postgres_cluster(free_port())
        c = cm.__enter__()
    except PostgresUnavailable as e:
        pytest.skip(f"no PostgreSQL server for the team-server tests: {e}")
    try:
        yield c
    finally:
        cm.__exit__(None, None, None)


@pytest.fixture(scope="module")
def pg_server(cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """``mlflow server`` over a fresh PostgreSQL database, artifacts served from a tmp dir."""
    with serve(cluster.uri, tmp_path_factory.mktemp("pg-server"), serve_artifacts=True) as server:
        yield server


def pipeline(tiny_store: Path, out: Path, uri: str, *overrides: str) -> dict[str, Any]:
    """Labels, train, evaluate and predict (as ``dvc repro`` runs them) on the tiny scene,
    reports and maps under ``out``, tracking at ``uri``."""
    from geoensemble.app import stages

    cfg = compose_tiny(
        tiny_store,
        f"tracking.uri={uri}",
        "tracking.experiment=team",
        "tracking.model_name=team_model",
        f"paths.labels={out}/labels",
        f"paths.reports={out}/reports",
        f"predict.output_dir={out}/maps",
        "predict.model_uri=train_report",
        *overrides,
    )
    try:
        done = {s: stages.STAGES[s](cfg) for s in ("labels", "train", "evaluate", "predict")}
    finally:
        reset_mlflow_uris()
    return {
        "train": json.loads((out / "reports/train.json").read_text()),
        "metrics": json.loads((out / "reports/metrics.json").read_text()),
        "maps": done["predict"]["scenes"],
    }


def members(report: dict[str, Any]) -> list[tuple[str, str, float]]:
    return sorted(
        (m["member"], json.dumps(m.get("params"), sort_keys=True), m["aic"])
        for m in report["members"]
    )


def main_map(out: Path) -> tuple[dict[str, str], np.ndarray]:
    """The tags and codes of the main map (by the version train recorded, or by alias)."""
    (tif,) = [p for p in (out / "maps").glob("*.tif") if p.stem.endswith(("_best", "_champion"))]
    with rasterio.open(tif) as m:
        return m.tags(), m.read(1)


@pytest.fixture(scope="module")
def both(
    pg_server: Server, tiny_store: Path, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Any]:
    """The same pipeline, same seed, once on a SQLite store and once on the team server."""
    lite, team = tmp_path_factory.mktemp("lite"), tmp_path_factory.mktemp("team")
    return {
        "lite": pipeline(tiny_store, lite, f"sqlite:///{lite}/mlflow.db"),
        "team": pipeline(tiny_store, team, pg_server.url),
        "dirs": {"lite": lite, "team": team},
    }


def test_pipeline_on_postgres_gives_what_sqlite_gives(
    pg_server: Server, both: dict[str, Any]
) -> None:
    lite, team = both["lite"], both["team"]
    # same members, parameters, scores and champion; metrics identical
    assert members(team["train"]) == members(lite["train"])
    assert team["train"]["champion"]["member"] == lite["train"]["champion"]["member"]
    assert team["train"]["champion"]["aic"] == lite["train"]["champion"]["aic"]
    assert team["metrics"] == lite["metrics"]
    map_l = main_map(both["dirs"]["lite"])[1]
    tags_t, map_t = main_map(both["dirs"]["team"])
    np.testing.assert_array_equal(map_t, map_l)
    assert tags_t["model_version"] == str(team["train"]["champion"]["version"])

    # what the report says is what the server (PostgreSQL) holds: run ids, metrics, champion
    report = team["train"]
    exp = pg_server.api("experiments/get-by-name", experiment_name="team")["experiment"]
    assert exp["artifact_location"].startswith("mlflow-artifacts:")
    parent = pg_server.api("runs/get", run_id=report["parent_run_id"])["run"]
    assert parent["info"]["status"] == "FINISHED"
    runs = pg_server.search_runs(
        exp["experiment_id"], f"tags.mlflow.parentRunId = '{report['parent_run_id']}'"
    )
    served = {r["info"]["run_id"]: run_metrics(r)["aic"] for r in runs}
    assert served == {m["run_id"]: pytest.approx(m["aic"]) for m in report["members"]}
    version = pg_server.api(
        "model-versions/get", name="team_model", version=str(report["champion"]["version"])
    )["model_version"]
    assert version["run_id"] == report["champion"]["run_id"]
    # the model went through the server into its artifact destination
    assert list((pg_server.store / "mlartifacts").rglob("MLmodel"))


def test_two_job_sweep_on_the_team_server(
    pg_server: Server, tiny_store: Path, tmp_path: Path
) -> None:
    proc = run(
        [
            *(tool("python"), "pipelines/train.py", "-m", *tiny_overrides(tiny_store)),
            *(f"tracking.uri={pg_server.url}", "tracking.experiment=team-sweep"),
            "tracking.model_name=team_sweep_model",
            f"paths.reports={tmp_path}/reports/${{hydra:job.num}}",
            f"hydra.sweep.dir={tmp_path}/sweep",
            *("ensemble.size=2", "model.n_clusters=4,6", "model.space={}"),
        ],
        ROOT,
        timeout=600,
    )
    summary = json.loads((tmp_path / "sweep/sweep_summary.json").read_text())
    assert summary["status"] == "FINISHED" and len(summary["jobs"]) == 2, proc.stdout
    sweep_run = pg_server.api("runs/get", run_id=summary["sweep_run_id"])["run"]
    assert sweep_run["info"]["status"] == "FINISHED"
    ensembles = pg_server.search_runs(
        sweep_run["info"]["experiment_id"],
        f"tags.sweep_id = '{summary['sweep_id']}' and tags.`geoensemble.role` = 'ensemble'",
    )
    assert len(ensembles) == 2
    reports = [json.loads((tmp_path / f"reports/{j}/train.json").read_text()) for j in (0, 1)]
    assert {e["info"]["run_id"] for e in ensembles} == {r["parent_run_id"] for r in reports}
    for e in ensembles:
        assert run_tags(e)["mlflow.parentRunId"] == summary["sweep_run_id"]
        r = next(r for r in reports if r["parent_run_id"] == e["info"]["run_id"])
        assert run_metrics(e)["best_aic"] == pytest.approx(r["champion"]["aic"])


def test_promotion_then_predict_on_the_team_server(
    pg_server: Server, tiny_store: Path, both: dict[str, Any], tmp_path: Path
) -> None:
    from geoensemble.app import stages

    first = both["team"]["train"]["champion"]
    # another training registers another version ...
    again = pipeline(tiny_store, tmp_path / "again", pg_server.url, "seed=7")
    other = again["train"]["champion"]
    assert other["version"] != first["version"]
    # ... and an explicit promotion puts @champion on the first one, with the reason
    cfg = compose_tiny(
        tiny_store,
        f"tracking.uri={pg_server.url}",
        "tracking.experiment=team",
        "tracking.model_name=team_model",
        f"promote.version={first['version']}",
        "promote.reason=team review",
    )
    try:
        stages.promote(cfg)
    finally:
        reset_mlflow_uris()
    alias = pg_server.api("registered-models/alias", name="team_model", alias="champion")
    assert alias["model_version"]["version"] == str(first["version"])
    assert alias["model_version"]["run_id"] == first["run_id"]

    # predict by alias maps with the promoted version: the first pipeline's map again
    out = tmp_path / "by-alias"
    cfg = compose_tiny(
        tiny_store,
        f"tracking.uri={pg_server.url}",
        "tracking.model_name=team_model",
        "predict.model_uri=null",
        "predict.alias=champion",
        f"predict.output_dir={out}/maps",
    )
    try:
        stages.predict(cfg)
    finally:
        reset_mlflow_uris()
    tags, band = main_map(out)
    assert tags["model_version"] == str(first["version"])
    np.testing.assert_array_equal(band, main_map(both["dirs"]["team"])[1])


def test_store_copy_moves_sqlite_to_a_postgres_server(
    cluster: Cluster, both: dict[str, Any], tmp_path: Path
) -> None:
    """`geoensemble store copy` moves the SQLite store (runs, metric histories, artifacts,
    logged models, versions, aliases) to an empty team server."""
    from mlflow import MlflowClient

    lite = both["dirs"]["lite"]
    source = f"sqlite:///{lite}/mlflow.db"
    with serve(cluster.create_database("moved"), tmp_path) as server:
        done = run(
            [tool("geoensemble"), "store", "copy", "--from", source, "--to", server.url], ROOT
        )
        assert done.stdout.splitlines()[-1].startswith("geoensemble store: copied "), done.stdout
        src, dst = (MlflowClient(u, u) for u in (source, server.url))
        s_exp = src.get_experiment_by_name("team")
        d_exp = dst.get_experiment_by_name("team")
        s_runs = src.search_runs([s_exp.experiment_id])
        d_runs = {
            r.data.tags["geoensemble.copied_from"]: r
            for r in dst.search_runs([d_exp.experiment_id])
        }
        assert set(d_runs) == {r.info.run_id for r in s_runs}
        for r in s_runs:
            c = d_runs[r.info.run_id]
            assert c.data.params == r.data.params and c.data.metrics == r.data.metrics
            assert c.info.status == r.info.status and c.info.run_name == r.info.run_name
            for key in r.data.metrics:
                history = [(m.step, m.value) for m in src.get_metric_history(r.info.run_id, key)]
                assert [
                    (m.step, m.value) for m in dst.get_metric_history(c.info.run_id, key)
                ] == history
            parent = r.data.tags.get("mlflow.parentRunId")
            if parent:
                assert c.data.tags["mlflow.parentRunId"] == d_runs[parent].info.run_id
        champion = both["lite"]["train"]["champion"]
        copied = dst.get_model_version("team_model", str(champion["version"]))
        assert d_runs[champion["run_id"]].info.run_id == copied.run_id
        assert copied.tags == src.get_model_version("team_model", str(champion["version"])).tags
        if champion.get("alias"):
            moved = dst.get_model_version_by_alias("team_model", champion["alias"])
            assert moved.version == copied.version
        # a second copy into the same (now full) store is refused in one line
        again = run(
            [tool("geoensemble"), "store", "copy", "--from", source, "--to", server.url],
            ROOT,
            check=False,
        )
        assert again.returncode == 2 and "already holds runs" in again.stderr
        # the model itself came along: its artifacts are served by the new server
        assert copied.source.startswith("models:/m-"), copied.source
        model = dst.get_logged_model(copied.source.removeprefix("models:/"))
        assert str(model.status) == "READY"
        assert model.source_run_id == copied.run_id
        assert list((tmp_path / "mlartifacts").rglob("model.skops"))

"""DVC experiments with real DVC in a temporary git repo: a queued grid run in temporary copies,
``dvc exp show``, MLflow runs tagged with the experiment name in the project's own store, and
a round trip through a local DVC remote.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import mlflow
import pytest
import rasterio
import yaml

from tests.conftest import ROOT, run, tool
from tests.integration.conftest import tiny_git_project

pytestmark = pytest.mark.integration


def gmm() -> bool:
    return (ROOT / "conf/model/gmm.yaml").exists()


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The project in a git repo whose conf/ itself holds the tiny scene, after dvc repro.

    The tiny values go into ``conf/config.yaml`` (after the groups, so they win) because
    ``dvc exp run`` recomposes conf/ from scratch with only the ``-S`` overrides.
    """
    with tiny_git_project(tmp_path_factory.mktemp("exp-project")) as d:
        yield d


def exp_rows(shown: Any) -> list[dict[str, Any]]:
    """Every experiment (not the baseline) of ``dvc exp show --json``, with params and metrics."""
    rows = []
    for base in shown:
        for exp in base.get("experiments") or []:
            for rev in exp.get("revs") or []:
                data = rev.get("data") or {}
                params = (data.get("params") or {}).get("params.yaml", {}).get("data", {})
                metrics = (data.get("metrics") or {}).get("reports/metrics.json", {}).get("data")
                rows.append(
                    {
                        "name": rev.get("name") or exp.get("name"),
                        "params": params,
                        "metrics": metrics,
                        "metric_files": sorted(data.get("metrics") or {}),
                    }
                )
    return rows


def wait_for_queue(repo: Path, timeout: float = 900) -> str:
    """Poll ``dvc queue status`` until nothing is queued or running; return the last table."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        out = run([tool("dvc"), "queue", "status"], repo).stdout
        if not any(w in out for w in ("Queued", "Running")):
            return out
        time.sleep(3)
    pytest.fail(f"dvc queue did not finish in {timeout} s:\n{out}")


def test_queued_grid_runs_in_temp_copies_and_logs_to_the_project_store(repo: Path) -> None:
    family = "gmm" if gmm() else "kmeans"
    grid = run(
        [
            *(tool("dvc"), "exp", "run", "--queue"),
            *("-S", f"model={family}", "-S", "model.n_clusters=range(4,8,2)"),
            *("-S", "~model.space"),  # the number is set: it must not be searched too
            *("-S", "ensemble.size=3"),
        ],
        repo,
    )
    assert grid.stdout.count("Queued experiment") == 2
    run([tool("dvc"), "queue", "start"], repo)
    status = wait_for_queue(repo)
    assert status.count("Success") == 2, status

    shown = json.loads(run([tool("dvc"), "exp", "show", "--json"], repo).stdout)
    rows = exp_rows(shown)
    assert len(rows) == 2, rows
    by_name = {r["name"]: r for r in rows}
    assert sorted(r["params"]["model"]["n_clusters"] for r in rows) == [4, 6]
    for r in rows:
        assert r["params"]["model"]["name"] == family and r["params"]["ensemble"]["size"] == 3
        # the few numbers that matter, per experiment: AIC, k, agreement with the truth
        assert set(r["metrics"]) == {
            "champion_aic",
            "clusters",
            "champion_adjusted_rand",
            "champion_nmi",
        }
        assert 2 <= r["metrics"]["clusters"] <= r["params"]["model"]["n_clusters"]
        assert r["metric_files"] == ["reports/metrics.json"]  # no per-layer ingest statistics
        assert 0 < r["metrics"]["champion_adjusted_rand"] <= 1
    table = run([tool("dvc"), "exp", "show", "--md", "--only-changed"], repo).stdout
    assert "champion_aic" in table and "model.n_clusters" in table

    # Each experiment ran in a temporary copy (.dvc/tmp/exps) that DVC deleted afterwards; its
    # runs are in the project's mlflow.db, tagged with the experiment's name.
    mlflow.set_tracking_uri(f"sqlite:///{repo / 'mlflow.db'}")
    client = mlflow.MlflowClient()
    exp = client.get_experiment_by_name("geoensemble")
    assert exp.artifact_location == (repo / "mlartifacts").as_uri()
    ensembles = client.search_runs(
        [exp.experiment_id], "tags.`geoensemble.role` = 'ensemble' and tags.dvc_exp_name != ''"
    )
    assert {e.data.tags["dvc_exp_name"] for e in ensembles} == set(by_name)
    for e in ensembles:
        row = by_name[e.data.tags["dvc_exp_name"]]
        assert e.info.status == "FINISHED"
        assert e.data.params["model.n_clusters"] == str(row["params"]["model"]["n_clusters"])
        assert e.data.params["model.name"] == row["params"]["model"]["name"]
        assert e.data.metrics["best_aic"] == pytest.approx(row["metrics"]["champion_aic"])
        members = client.search_runs(
            [exp.experiment_id], f"tags.mlflow.parentRunId = '{e.info.run_id}'"
        )
        assert len(members) == row["params"]["ensemble"]["size"]
        assert all(m.data.tags["dvc_exp_name"] == e.data.tags["dvc_exp_name"] for m in members)
    assert not list((repo / ".dvc").rglob("mlflow.db"))


# `dvc exp show` lists every key of params.yaml (DVC always reads its default params file whole,
# and no setting chooses columns) and a hash per dependency: 258 columns here. The documented
# view (docs/dvc-workflow.md) keeps what varies and drops dependency hashes (paths), dates and
# queue states; metrics come first, so at 120 columns they are whole and only the last
# parameter columns may be cut.
EXP_SHOW = ("exp", "show", "--no-pager", "--only-changed", "--drop", "Created|State|Executor|/")


def test_exp_show_view_fits_120_columns_with_the_metrics_readable(repo: Path) -> None:
    table = run([tool("dvc"), *EXP_SHOW], repo, COLUMNS="120").stdout
    lines = [line for line in table.splitlines() if line.strip()]
    assert max(len(line) for line in lines) <= 120, table
    header = lines[1].split()
    assert header[:5] == [
        "Experiment",
        "champion_aic",
        "clusters",
        "champion_adjusted_rand",
        "champion_nmi",
    ], table
    rows = exp_rows(json.loads(run([tool("dvc"), "exp", "show", "--json"], repo).stdout))
    assert rows
    for r in rows:  # every experiment's numbers, as DVC rounds them (5 significant digits)
        line = next(x for x in lines if f"[{r['name']}]" in x)
        cells = line.split()
        assert int(cells[4]) == r["metrics"]["clusters"], line
        assert float(cells[5]) == pytest.approx(r["metrics"]["champion_adjusted_rand"], 1e-4)
        assert float(cells[6]) == pytest.approx(r["metrics"]["champion_nmi"], 1e-4)
    md = run([tool("dvc"), *EXP_SHOW, "--md"], repo).stdout  # every column, none cut
    assert "…" not in md and "model.n_clusters" in md, md


def test_mlflow_run_writes_no_dvc_output_and_generated_files_are_ignored(repo: Path) -> None:
    """`mlflow run . -e train` writes under runs/mlflow/, so `dvc status` stays clean; what
    users generate in the checkout (plots page, notebook folder, runs, store) is ignored."""
    lock_before = (repo / "dvc.lock").read_bytes()
    out = run(
        [
            *(tool("mlflow"), "run", ".", "-e", "train", "--env-manager", "local"),
            *("--experiment-name", "geoensemble"),
        ],
        repo,
        timeout=600,
    )
    report = json.loads((repo / "runs/mlflow/reports/train.json").read_text())
    assert f"Run (ID '{report['parent_run_id']}') succeeded" in out.stdout + out.stderr
    status = run([tool("dvc"), "status"], repo).stdout
    assert "up to date" in status.lower() and "train" not in status, status
    assert (repo / "dvc.lock").read_bytes() == lock_before
    run([tool("dvc"), "plots", "show"], repo)
    assert (repo / "dvc_plots/index.html").is_file()
    (repo / "examples/walkthrough").mkdir(exist_ok=True)  # where the notebook writes its maps
    (repo / "examples/walkthrough/vote.tif").write_bytes(b"map")
    assert run(["git", "status", "--porcelain"], repo).stdout == ""
    assert not run(["git", "diff", "--cached", "--name-only"], repo).stdout  # no autostage


def test_rerunning_evaluate_rewrites_the_same_reports(repo: Path) -> None:
    """Metrics and reports are written at a fixed precision: re-running the stage (as a fresh
    clone's `dvc repro` does) leaves git clean, and DVC stages nothing (no autostage)."""
    assert run(["git", "status", "--porcelain"], repo).stdout == ""
    metrics = json.loads((repo / "reports/metrics.json").read_text())
    assert all(v == float(f"{v:.10g}") for v in metrics.values()), metrics
    run([tool("dvc"), "repro", "-f", "-s", "evaluate"], repo, timeout=600)
    assert run(["git", "status", "--porcelain"], repo).stdout == ""


def test_remote_push_clone_pull_is_up_to_date(repo: Path, tmp_path: Path) -> None:
    remote = tmp_path / "remote"
    run([tool("dvc"), "remote", "add", "-d", "local", str(remote)], repo)
    run(["git", "commit", "-qm", "local remote", ".dvc/config"], repo)
    pushed = run([tool("dvc"), "push"], repo)
    assert "pushed" in pushed.stdout and remote.is_dir()

    clone = tmp_path / "clone"
    run(["git", "clone", "-q", str(repo), str(clone)], tmp_path)
    assert not (clone / "outputs/maps").exists()
    run([tool("dvc"), "pull"], clone)
    status = run([tool("dvc"), "status"], clone).stdout
    assert "up to date" in status, status
    repro = run([tool("dvc"), "repro"], clone).stdout
    assert "up to date" in repro.lower() and "Running stage" not in repro, repro
    maps = sorted(p.relative_to(repo) for p in (repo / "outputs/maps").rglob("*.tif"))
    assert maps
    for m in maps:
        assert (clone / m).read_bytes() == (repo / m).read_bytes()
        # class names and statistics travel with the map (its .aux.xml is a DVC output)
        aux = clone / m.with_name(m.name + ".aux.xml")
        assert b"<CategoryNames>" in aux.read_bytes() and b"STATISTICS_MEAN" in aux.read_bytes()
        with rasterio.open(clone / m) as src:
            src.stats(approx=False)  # what gdalinfo -stats asks
    after = run([tool("dvc"), "status"], clone).stdout
    assert "up to date" in after, after
    # the data and features came from the remote too: nothing was recomputed
    for out in ("data/raw/scene", "data/stack", "data/features", "data/labels"):
        files = sorted(p.relative_to(repo) for p in (repo / out).rglob("*") if p.is_file())
        assert files, out
        assert all((clone / f).read_bytes() == (repo / f).read_bytes() for f in files), out
    if shutil.which("gdalinfo"):  # GDAL's own reader lists the class names
        info = run(["gdalinfo", str(clone / maps[0])], clone).stdout
        assert "Categories:" in info, info
    lock = yaml.safe_load((clone / "dvc.lock").read_text())
    assert set(lock["stages"]) >= {"scene", "ingest", "featurize", "train", "evaluate", "predict"}

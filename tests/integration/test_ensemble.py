"""Two-generation ensembles on the synthetic scene, unsupervised and supervised, on a real
dask LocalCluster and a real SQLite MLflow store, checked through the MLflow client."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import mlflow
import numpy as np
import pytest
import yaml

from geoensemble.app import stages
from geoensemble.app.config import AppConfig
from geoensemble.app.params import compose
from geoensemble.app.tracker import tracker_for
from geoensemble.app.validate import validate
from tests.conftest import ROOT, TINY

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def scene(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., AppConfig]:
    """The tiny synthetic scene through scene, ingest, featurize and labels, once."""
    t = tmp_path_factory.mktemp("ensemble")
    paths = [
        f"paths.raw={t}/raw",
        f"paths.stack={t}/stack",
        f"paths.features={t}/features",
        f"paths.labels={t}/labels",
        f"paths.reports={t}/reports",  # not the project's own reports/
        f"data.path={t}/raw/scene",
        f"data.truth={t}/raw/labels/truth.tif",
        f"data.labels.path={t}/raw/labels/points.geojson",
        f"tracking.uri=sqlite:///{t}/mlflow.db",
        "data.scene.n_points=240",
    ]

    def make(*overrides: str) -> AppConfig:
        return validate(compose([*TINY, *paths, *overrides], config_dir=ROOT / "conf"))

    base = make()
    for stage in ("scene", "ingest", "featurize", "labels"):
        stages.PIPELINE[stage](base)
    return make


def client_for(cfg: AppConfig) -> mlflow.MlflowClient:
    mlflow.set_tracking_uri(cfg.tracking.uri)
    mlflow.set_registry_uri(cfg.tracking.uri)
    return mlflow.MlflowClient()


def check_structure(cfg: AppConfig, train: dict, keep: int) -> list:
    client = client_for(cfg)
    parent = client.get_run(train["parent_run_id"])
    assert parent.info.status == "FINISHED"
    assert parent.data.tags["geoensemble.role"] == "ensemble"
    assert parent.data.tags.get("git_commit")
    # a few key params (the whole config is the artifact config.yaml), one name per metric
    ens, metric = cfg.ensemble, train["metric"]
    assert parent.data.params == {
        "data.name": cfg.data.name,
        "features.name": cfg.features.name,
        "model.name": cfg.model.name,
        "model.kind": cfg.model.kind.value,
        "ensemble.size": str(ens.size),
        "ensemble.generations": "2",
        "ensemble.keep": str(keep),
        "ensemble.metric": metric,
        "ensemble.direction": ens.direction.value,
    }
    assert set(parent.data.metrics) == {
        f"best_{metric}",
        "n_members",
        "n_generations",
        "sample_pixels",
        "mlflow_seconds",
        "mlflow_share",
        "mlflow_background_seconds",
        "train_seconds",
        # supervised runs: labelled pixels dropped for NaN features
        *(["labelled_dropped_nan"] if train["kind"] != "cluster" else []),
    }
    assert 0 <= parent.data.metrics["mlflow_share"] < 1
    arts = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert {"config.yaml", "search_history.json"} <= arts
    config = yaml.safe_load(mlflow.artifacts.load_text(f"{parent.info.artifact_uri}/config.yaml"))
    assert config["model"]["name"] == cfg.model.name and config["ensemble"]["size"] == ens.size
    children = client.search_runs(
        [parent.info.experiment_id], f"tags.mlflow.parentRunId = '{parent.info.run_id}'"
    )
    assert len(children) == len(train["members"])
    # numbered as created, without gaps
    names = [f"member-{i:03d}" for i in range(len(children))]
    assert sorted(c.info.run_name for c in children) == names
    assert [m["member"] for m in train["members"]] == names
    # clusterers: the partition criterion; supervised members: no AIC, a held-out score
    scores = {"aic", "bic"} if cfg.model.kind.value == "cluster" else {"heldout_penalized_nll"}
    for c in children:
        assert scores | {"fit_seconds", "generation", "rank", "front"} <= set(c.data.metrics)
        # only what varies: the searched values and the seed
        assert set(c.data.params) == {f"model.{k}" for k in cfg.model.space} | {"seed"}
        arts = [a.path for a in client.list_artifacts(c.info.run_id)]
        assert "preview.png" in arts
    # best_<metric> by generation: the best score so far, ending at the champion's
    by_step = {
        m.step: m.value for m in client.get_metric_history(parent.info.run_id, f"best_{metric}")
    }
    assert sorted(by_step) == [0, 1]
    for gen, best in by_step.items():
        so_far = [c.data.metrics[metric] for c in children if c.data.metrics["generation"] <= gen]
        assert best == pytest.approx(
            min(so_far) if ens.direction.value == "minimize" else max(so_far)
        )
    assert by_step[1] == pytest.approx(train["champion"][metric])
    assert {int(c.data.metrics["generation"]) for c in children} == {0, 1}
    ranks = sorted(int(c.data.metrics["rank"]) for c in children)
    assert ranks == list(range(1, len(children) + 1))
    versions = [
        mv
        for mv in client.search_model_versions(f"name = '{cfg.tracking.model_name}'")
        if mv.tags.get("ensemble_run_id") == parent.info.run_id
    ]
    assert len(versions) == keep
    assert sorted(mv.tags["rank"] for mv in versions) == [str(r) for r in range(1, keep + 1)]
    for mv in versions:  # family, hyperparameters, score and a description on each version
        member = next(m for m in train["members"] if m["member"] == mv.tags["member"])
        assert mv.tags["family"] == cfg.model.name and mv.tags["criterion"] == metric
        assert float(mv.tags[metric]) == pytest.approx(member[metric], rel=1e-5)
        for k, v in member["params"].items():
            if k in cfg.model.space:
                assert mv.tags[f"model.{k}"] == str(v)
        assert mv.description.startswith(f"{cfg.model.name} ")
        # the logged model is in the run's experiment (not MLflow's Default one)
        model_id = tracker_for(cfg.tracking).model_id_of(mv.name, mv.version)
        assert client.get_logged_model(model_id).experiment_id == parent.info.experiment_id
        assert f"{mv.tags['member']} of ensemble ensemble-{cfg.model.name}-" in mv.description
        assert f"rank {mv.tags['rank']} of {len(children)} by {metric}" in mv.description
    # a training outside the pipeline sets no alias; its origin is a version tag
    assert train["registry"]["origin"] == "manual" and not train["registry"]["champion_moved"]
    assert train["registry"]["alias"] is None
    champ = client.get_model_version(cfg.tracking.model_name, train["champion"]["version"])
    assert champ.tags["rank"] == "1" and champ.run_id == train["champion"]["run_id"]
    assert champ.tags["origin"] == "manual" and champ.tags["criterion"] == train["metric"]
    best_child = next(c for c in children if c.info.run_id == champ.run_id)
    assert best_child.data.tags["kept"] == "True"
    history = train["history"]
    assert len(history) == 2
    b0, b1 = history[0]["best"], history[1]["best"]
    assert b1 == b0 or _better(b1, b0, train["direction"])  # improved or kept
    return children


def _better(a: float, b: float, direction: str) -> bool:
    return a < b if direction == "minimize" else a > b


def test_unsupervised_two_generations_with_consensus(scene: Callable[..., AppConfig]) -> None:
    cfg = scene(
        "ensemble.size=3",
        "ensemble.generations=2",
        "ensemble.keep=2",
        "ensemble.patience=2",
        "ensemble.consensus.enabled=true",
        "ensemble.consensus.top=2",
        "tracking.model_name=geo_kmeans",
        "compute.n_workers=2",
        "compute.processes=true",
    )
    train = stages.train(cfg)
    children = check_structure(cfg, train, keep=2)
    aics = {c.info.run_name: c.data.metrics["aic"] for c in children}
    assert train["champion"]["member"] == min(aics, key=aics.get)
    cons = [m for m in train["members"] if m["consensus"]]
    assert len(cons) == 1 and cons[0]["params"]["consensus_of"].count("member-") == 2
    assert {"elm_aic", "inertia"} <= set(children[0].data.metrics)

    metrics = stages.evaluate(cfg)
    reports = Path(cfg.paths.reports)
    saved = json.loads((reports / "evaluation.json").read_text())
    assert saved["champion_aic"] == pytest.approx(min(aics.values()))
    # DVC's metrics: the criterion, k and the agreement with the truth, named as above
    headline = json.loads((reports / "metrics.json").read_text())
    assert list(headline) == ["champion_aic", "clusters", "champion_adjusted_rand", "champion_nmi"]
    assert headline == {k: saved[k] for k in headline}
    assert saved["n_generations"] == 2 and 0 < saved["kept_agreement"] <= 1
    assert metrics["champion_adjusted_rand"] > 0.3
    rows = json.loads((reports / "plots/members.json").read_text())
    assert {r["generation"] for r in rows} == {0, 1} and all(r["bic"] for r in rows)
    assert (reports / "figures/evaluate/members.png").stat().st_size > 1000
    parent = client_for(cfg).get_run(train["parent_run_id"])
    assert parent.data.metrics["eval_champion_aic"] == pytest.approx(saved["champion_aic"])


def test_supervised_two_generations_from_scene_points(scene: Callable[..., AppConfig]) -> None:
    cfg = scene(
        "model=random_forest",
        "ensemble=supervised",
        "ensemble.size=2",
        "ensemble.generations=2",
        "ensemble.keep=2",
        "ensemble.cv.folds=3",
        "ensemble.cv.block_size=16",
        "model.space.n_estimators={low: 10, high: 30, step: 10}",
        "tracking.model_name=geo_rf",
    )
    train = stages.train(cfg)
    assert train["kind"] == "classifier" and train["metric"] == "kappa"
    assert set(train["classes"].values()) == {
        "water",
        "forest",
        "cropland",
        "bare_soil",
        "built_up",
        "snow",
    }
    assert sum(train["fold_sizes"]) == train["sample_pixels"] == 240
    children = check_structure(cfg, train, keep=2)
    for c in children:
        m = c.data.metrics
        assert {"accuracy", "kappa", "f1_macro", "log_loss", "n_params"} <= set(m)
        assert not {"aic", "bic"} & set(m)  # not an information criterion: renamed
        assert m["heldout_penalized_nll"] == pytest.approx(
            2 * m["n_params"] - 2 * m["heldout_log_likelihood"]
        )
        assert c.data.tags["n_params_family"] == "forest"
    kappas = {c.info.run_name: c.data.metrics["kappa"] for c in children}
    assert kappas[train["champion"]["member"]] == max(kappas.values())

    model = mlflow.sklearn.load_model(train["champion"]["uri"])
    codes = model.predict(np.zeros((3, len(train["feature_names"])), np.float32))
    assert set(codes.tolist()) <= {int(k) for k in train["classes"]}

    metrics = stages.evaluate(cfg)
    assert 0.5 < metrics["accuracy"] <= 1 and metrics["kappa"] > 0.4
    assert metrics["labelled_pixels"] == 240
    # no validation sample: the area estimates are flagged, without intervals
    assert metrics["design_based"] is False and "area_weighted_accuracy_ci95" not in metrics
    assert 0 < metrics["area_weighted_accuracy"] <= 1
    # the held-out figures are the champion's own under train's folds
    assert metrics["accuracy"] == pytest.approx(train["champion"]["accuracy"])
    assert metrics["cv"]["folds"] == train["cv"]["folds"] == 3
    reports = Path(cfg.paths.reports)
    areas = json.loads((reports / "plots/areas.json").read_text())
    total = sum(a["mapped_area"] for a in areas)
    valid = 128 * 112 * 0.64  # the footprint covers ~64 % of the tiny scene
    assert total == pytest.approx(valid * 30 * 30, rel=0.05)
    assert sum(a["estimated_area"] for a in areas) == pytest.approx(total)
    importance = json.loads((reports / "plots/importance.json").read_text())
    assert len(importance) == len(train["feature_names"])
    assert importance[0]["importance"] >= importance[-1]["importance"]
    per_class = json.loads((reports / "plots/per_class.json").read_text())
    assert {r["class"] for r in per_class} == set(train["classes"].values())
    confusion = json.loads((reports / "plots/confusion.json").read_text())
    assert len(confusion) == 240
    client = client_for(cfg)
    parent = client.get_run(train["parent_run_id"])
    assert parent.data.metrics["eval_area_weighted_accuracy"] == pytest.approx(
        metrics["area_weighted_accuracy"]
    )
    arts = [a.path for a in client.list_artifacts(parent.info.run_id, "evaluate/figures/evaluate")]
    assert {Path(a).name for a in arts} >= {"confusion.png", "areas.png", "importance.png"}

"""The train stage: assemble the training data, fit the ensemble on dask, log it to MLflow."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from geoensemble.app.candidates import (
    after_training,
    lineage_tags,
    model_description,
    registers,
    scoring_space,
    training_origin,
)
from geoensemble.app.config import AppConfig, flatten, to_dict
from geoensemble.app.estimators import pipeline_template
from geoensemble.app.sweep import job_tags
from geoensemble.app.training_data import training_data
from geoensemble.ensemble.checks import check_members
from geoensemble.ensemble.member import MemberSpec
from geoensemble.ensemble.precedence import member_estimator
from geoensemble.ensemble.runlog import MemberLogger, candidate_tags, timed_call
from geoensemble.ensemble.search import EnsembleResult, Member, Search, TrainingData, run_ensemble
from geoensemble.ensemble.space import configured_values
from geoensemble.tracking.promotion import Origin

log = logging.getLogger("geoensemble")


def member_spec(cfg: AppConfig) -> MemberSpec:
    """The shared build/fit/score recipe of ``cfg``'s members: the config's pipeline built
    here, in the application, as live objects."""
    steps = {k: (dict(v) if v is not None else None) for k, v in cfg.features.steps.items()}
    estimator = member_estimator(dict(cfg.model.estimator))
    template = pipeline_template(
        steps,
        estimator,
        impute=cfg.features.impute,
        impute_value=cfg.features.impute_value,
        trusted_modules=cfg.trust.modules,
        space=dict(cfg.model.space),
    )
    return MemberSpec(
        template=template,
        configured=configured_values(steps, estimator),
        seeded="random_state" in estimator,
        impute=cfg.features.impute,
        impute_value=cfg.features.impute_value,
        kind=cfg.model.kind.value,
        threads=cfg.compute.threads_per_worker,
        partial_fit_batches=cfg.ensemble.partial_fit_batches,
        per_member_sample=cfg.ensemble.sample.value == "per_member",
        member_fraction=cfg.ensemble.member_fraction,
    )


def search_of(cfg: AppConfig) -> Search:
    """The search ``cfg`` asks for: ``model.space``, ``ensemble.*``, the seed and retries."""
    ens = cfg.ensemble
    objectives = [(ens.metric, ens.direction.value)]
    objectives += [(o.metric, o.direction.value) for o in ens.objectives]
    return Search(
        space=dict(cfg.model.space),
        size=ens.size,
        generations=ens.generations,
        keep=ens.keep,
        objectives=tuple(objectives),
        patience=ens.patience,
        seed=cfg.seed,
        retries=cfg.compute.retries,
        consensus_top=ens.consensus.top if ens.consensus.enabled else None,
        consensus_clusters=ens.consensus.n_clusters,
    )


def key_params(cfg: AppConfig) -> dict[str, Any]:
    """The parent run's params: what tells ensembles apart at a glance, plus the keys given
    on the command line (a sweep's swept keys) or changed by a DVC experiment (``-S``). The
    whole config is its ``config.yaml``."""
    ens = cfg.ensemble
    params: dict[str, Any] = {
        "data.name": cfg.data.name,
        "features.name": cfg.features.name,
        "model.name": cfg.model.name,
        "model.kind": cfg.model.kind.value,
        "ensemble.size": ens.size,
        "ensemble.generations": ens.generations,
        "ensemble.keep": ens.keep,
        "ensemble.metric": ens.metric,
        "ensemble.direction": ens.direction.value,
    }
    if ens.objectives:
        params["ensemble.objectives"] = ",".join(
            f"{o.metric}:{o.direction.value}" for o in ens.objectives
        )
    flat = flatten(to_dict(cfg))
    for key in [*overridden_keys(), *experiment_keys()][:MAX_CHANGED]:
        if key in flat:  # not a group (model=gmm) or a section: those are in config.yaml
            params.setdefault(key, flat[key])
    return params


MAX_CHANGED = 80  # keys logged as params beyond the key ones (MLflow takes 100 per call)


def experiment_keys(params_file: str = "params.yaml") -> list[str]:
    """The keys of ``params_file`` that a DVC experiment changed: those that differ from the
    file in its baseline commit (``DVC_EXP_BASELINE_REV``, set by ``dvc exp run``); none
    outside an experiment or when git cannot show the baseline."""
    import os
    import subprocess

    import yaml

    rev = os.environ.get("DVC_EXP_BASELINE_REV")
    path = Path(params_file)
    if not rev or not path.is_file():
        return []
    try:
        shown = subprocess.run(
            ["git", "show", f"{rev}:{params_file}"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
        base = yaml.safe_load(shown.stdout) if shown.returncode == 0 else None
        now = yaml.safe_load(path.read_text())
    except (OSError, subprocess.SubprocessError, yaml.YAMLError):
        return []
    if not isinstance(base, dict) or not isinstance(now, dict):
        return []
    old, new = flatten(base), flatten(now)
    return [k for k in new if old.get(k, None) != new[k] or k not in old]


def overridden_keys() -> list[str]:
    """The config keys of this Hydra job's command-line overrides (none outside Hydra)."""
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import OmegaConf

    if not HydraConfig.initialized():
        return []
    hc: Any = HydraConfig.get()
    keys = []
    for text in OmegaConf.select(hc, "overrides.task") or []:
        key = str(text).split("=", 1)[0].lstrip("+~").strip()
        if key and not key.startswith("hydra.") and "@" not in key:
            keys.append(key)
    return keys


def runs_view(cfg: AppConfig, parent_id: str, space_keys: list[str]) -> dict[str, Any]:
    """The MLflow UI view of one ensemble's members: sorted by the criterion (best first),
    with the criterion, the other objectives, generation, rank and the searched values as
    columns (see :meth:`geoensemble.tracking.Tracker.set_runs_view`)."""
    ens = cfg.ensemble
    metrics = [ens.metric, *(o.metric for o in ens.objectives)]
    if cfg.model.kind.value == "cluster":
        metrics += ["aic", "bic", "n_clusters"]
    metrics += ["generation", "rank"]
    columns = [f"metrics.`{m}`" for m in dict.fromkeys(metrics)]
    columns += [f"params.`model.{k}`" for k in space_keys] + ["params.`seed`"]
    return {
        "searchFilter": f"tags.ensemble_run_id = '{parent_id}'",
        "orderByKey": f"metrics.`{ens.metric}`",
        "orderByAsc": ens.direction.value == "minimize",
        "startTime": "ALL",
        "lifecycleFilter": "Active",
        "datasetsFilter": [],
        "modelVersionFilter": "All Runs",
        "selectedColumns": ["attributes.`Models`", *columns],
    }


def view_key(cfg: AppConfig) -> str:
    """The name of the saved view of the latest ensemble ranked by ``ensemble.metric``."""
    return f"members-by-{cfg.ensemble.metric}"


def train_ensemble(cfg: AppConfig) -> dict[str, Any]:
    """Fit, log and register the ensemble; return the ``reports/train.json`` content."""
    from geoensemble import tracking

    t0 = time.perf_counter()
    # MLflow's imports (seconds) run while the training data is read and workers start.
    tracking.preload()
    data, names, facts = training_data(cfg)
    log.info(
        "train: %s model %s on %d pixels x %d features",
        facts["kind"],
        cfg.model.name,
        facts["sample_pixels"],
        len(names),
    )
    # A member that cannot be built or fitted on this sample fails here, before the cluster
    # and the MLflow run start (run_ensemble checks again for callers of the API).
    check_members(
        member_spec(cfg),
        cfg.model.space,
        cfg.ensemble.size,
        data,
        source=f"paths.features={cfg.paths.features}",
    )
    trained = fit_and_register(cfg, data, names, facts, t0)
    wall = time.perf_counter() - t0  # the parent run ended, the cluster closed
    report = train_report(cfg, trained, names, facts, wall)
    log_trained(cfg, trained, report, wall)
    for w in report["warnings"]:
        log.warning("train: %s", w)
    return report


@dataclass
class Trained:
    """What the fit left for the report: the search's result, the logger of its runs (their
    ids, MLflow's cost), the registered version of each kept member and the ``registry``
    entry (:func:`geoensemble.app.candidates.after_training`)."""

    result: EnsembleResult
    logger: MemberLogger
    versions: dict[int, str]
    registry: dict[str, Any]
    experiment_id: str
    parent_id: str

    @property
    def champion(self) -> Member:
        """The best kept member."""
        return self.result.kept[0]


def fit_and_register(
    cfg: AppConfig, data: TrainingData, names: list[str], facts: dict[str, Any], t0: float
) -> Trained:
    """Fit the members on dask, each logged to MLflow as it finishes, then register the kept
    ones, alias the best and log the parent run's metrics (``t0``: when the stage started)."""
    from geoensemble.app.settings import cluster_of
    from geoensemble.compute import dask_client, wait_for_workers

    # The cluster's workers start, and import what members need, while MLflow is imported.
    with dask_client(cluster_of(cfg.compute), preload=["geoensemble.ensemble.member"]) as client:
        logger, origin = member_logger(cfg)
        with logger:
            start_parent_run(cfg, logger, facts["kind"])
            wait_for_workers(client, cfg.compute.timeout)
            result: EnsembleResult = run_ensemble(
                data, member_spec(cfg), search_of(cfg), client, on_member=logger.log_member
            )
            trained = register(cfg, logger, origin, result, names, data, facts)
            metrics = parent_metrics(trained, facts, time.perf_counter() - t0)
            tags = {f"{EDGE_TAG}.{i}": w for i, w in enumerate(edge_warnings(cfg, result))}
            timed_call(
                logger, logger.tracker.log_batch, trained.parent_id, metrics=metrics, tags=tags
            )
    return trained


# A warning of the search on the parent run (``geoensemble.warning.0``, ...), seen in the UI.
EDGE_TAG = "geoensemble.warning"


def edge_warnings(cfg: AppConfig, result: EnsembleResult) -> list[str]:
    """A line per searched integer range the champion sits at an end of, naming the
    ``model.space`` entry to widen (logged once, when the search ends)."""
    from geoensemble.ensemble.space import range_edges

    edges = range_edges(cfg.model.space, result.kept[0].params)
    return [e.message(f"model.space.{e.name}") for e in edges]


def member_logger(cfg: AppConfig) -> tuple[MemberLogger, Origin]:
    """The logger of this ensemble's runs, on a store checked before any fit, and where this
    training runs (which decides the alias of its best member)."""
    from geoensemble import tracking
    from geoensemble.app.tracker import tracker_for

    t_mlflow = time.perf_counter()
    # A store that cannot be used fails here, before any fit; MLflow itself is opened,
    # and the parent run started, in the background while the members fit.
    tracker = tracker_for(cfg.tracking)
    if not tracker.check():
        tracker.open()  # a new store: created now, once
    tags = tracking.run_tags(job_tags())
    origin = training_origin()
    logger = MemberLogger(
        tracker=tracker, family=cfg.model.name, space_keys=list(cfg.model.space), tags=tags
    )
    logger.seconds += time.perf_counter() - t_mlflow
    return logger, origin


def start_parent_run(cfg: AppConfig, logger: MemberLogger, kind: str) -> None:
    """Start the ensemble's parent run (in the background): key params, tags, the config."""
    logger.start(
        run_name=f"ensemble-{cfg.model.name}",
        params=key_params(cfg),
        tags={
            **logger.tags,
            "model_family": cfg.model.name,
            "model_kind": kind,
            # sweeps compare jobs' best scores only when this is equal
            "score_space": scoring_space(cfg),
            "mlflow.note.content": parent_description(cfg),
        },
        config=to_dict(cfg),
    )


def parent_description(cfg: AppConfig) -> str:
    """The parent run's description in the MLflow UI: what was searched, on what, by what."""
    e = cfg.ensemble
    return (
        f"Ensemble of {cfg.model.name} ({cfg.model.kind.value}) members on data set "
        f"{cfg.data.name}, searched over {', '.join(cfg.model.space) or 'fixed parameters'} "
        f"and ranked by {e.metric} ({e.direction.value}). Its child runs are the members "
        f"(aic, bic, generation, rank as metrics); the kept ones are logged as models and, "
        f"when registered, versions of model '{cfg.tracking.model_name}'."
    )


def register(
    cfg: AppConfig,
    logger: MemberLogger,
    origin: Origin,
    result: EnsembleResult,
    names: list[str],
    data: TrainingData,
    facts: dict[str, Any],
) -> Trained:
    """Log the kept members' models and, as ``tracking.register`` and ``origin`` decide,
    register them as candidates with their lineage; save the MLflow UI's view of the
    members, and move the champion alias as ``origin`` allows."""
    lineage = lineage_tags(cfg, origin, logger.tags)
    versions = logger.finish(
        result,
        feature_names=names,
        example=data.X[:5],
        model_name=cfg.tracking.model_name,
        lineage=lineage,
        class_names=facts.get("classes"),
        register=registers(cfg, origin),
        model_description=model_description(cfg),
    )
    exp_id, parent_id = logger.experiment_id, logger.parent_id
    view = runs_view(cfg, parent_id, logger.space_keys)
    timed_call(logger, logger.tracker.set_runs_view, exp_id, view_key(cfg), view)
    champion = result.kept[0]
    registry = timed_call(
        logger,
        after_training,
        cfg,
        logger.tracker,
        origin,
        parent_run_id=parent_id,
        version=versions.get(champion.number),
        tags={**lineage, **candidate_tags(champion.scores, champion.pipeline, result.metric)},
    )
    return Trained(result, logger, versions, registry, exp_id, parent_id)


def mlflow_cost(logger: MemberLogger, wall: float) -> dict[str, float]:
    """The time the stage waited on MLflow, its share of the stage's ``wall`` time, the time
    of the calls that ran in the background while members fitted, and ``wall`` itself."""
    return {
        "mlflow_seconds": logger.seconds,
        "mlflow_share": logger.seconds / wall,
        "mlflow_background_seconds": logger.background.seconds,
        "train_seconds": wall,
    }


def parent_metrics(trained: Trained, facts: dict[str, Any], wall: float) -> dict[str, float]:
    """The parent run's metrics: the search's size, the sample, and MLflow's cost so far."""
    result = trained.result
    return {
        "n_members": len(result.members),
        "n_generations": len(result.history),
        "sample_pixels": facts["sample_pixels"],
        **(
            {"labelled_dropped_nan": facts["dropped_nan"].get("pixels", 0)}
            if "dropped_nan" in facts
            else {}
        ),
        **mlflow_cost(trained.logger, wall),
    }


def train_report(
    cfg: AppConfig, trained: Trained, names: list[str], facts: dict[str, Any], wall: float
) -> dict[str, Any]:
    """The content of ``reports/train.json`` (``wall``: the stage's seconds)."""
    result = trained.result
    return {
        "experiment_id": trained.experiment_id,
        "parent_run_id": trained.parent_id,
        "model_name": cfg.tracking.model_name,
        "model": cfg.model.name,
        "kind": facts["kind"],
        "metric": result.metric,
        "direction": cfg.ensemble.direction.value,
        "objectives": [{"metric": m, "direction": d} for m, d in result.objectives],
        "feature_names": names,
        "sample_pixels": facts["sample_pixels"],
        "classes": facts.get("classes", {}),
        "fold_sizes": facts.get("folds", []),
        **({"cv": facts["cv"]} if "cv" in facts else {}),
        **dropped_nan_entries(facts),
        # MLflow's cost (see benchmarks/train_mlflow_benchmark.py)
        **mlflow_cost(trained.logger, wall),
        # the MLflow UI's runs table of this ensemble's members, best first: append to the
        # UI's address, e.g. http://127.0.0.1:5000/
        "mlflow_ui_view": (
            f"#/experiments/{trained.experiment_id}/runs?viewStateShareKey={view_key(cfg)}"
        ),
        **ui_entries(trained, view_key(cfg)),
        "champion": champion_entry(cfg, trained),
        "registry": trained.registry,
        "kept": [
            {
                "member": m.name,
                "version": trained.versions.get(m.number),
                "model_id": trained.logger.model_ids.get(m.number),
                "uri": member_uri(cfg, trained, m),
                "rank": m.rank,
            }
            for m in result.kept
        ],
        "members": [member_entry(m, trained) for m in result.members],
        "history": result.history,
        "warnings": edge_warnings(cfg, result),
    }


def ui_entries(trained: Trained, key: str) -> dict[str, Any]:
    """The full address of the members' view in the MLflow UI and, for a store without a
    server, the ``mlflow ui`` command that serves it (see
    :meth:`geoensemble.tracking.Tracker.ui_url`)."""
    url, command = trained.logger.tracker.ui_url(
        f"#/experiments/{trained.experiment_id}/runs?viewStateShareKey={key}"
    )
    return {"mlflow_ui_url": url, "mlflow_ui_command": command}


def dropped_nan_entries(facts: dict[str, Any]) -> dict[str, Any]:
    """The report's count (and, when any, breakdown) of labelled pixels dropped for NaN."""
    if "dropped_nan" not in facts:
        return {}
    dropped = facts["dropped_nan"]
    return {
        "labelled_dropped_nan": dropped.get("pixels", 0),
        **({"dropped_nan": dropped} if dropped else {}),
    }


def champion_entry(cfg: AppConfig, trained: Trained) -> dict[str, Any]:
    """The report's champion: member, registered version, run, alias and scores."""
    champion = trained.champion
    return {
        "member": champion.name,
        "version": trained.versions.get(champion.number),
        "model_id": trained.logger.model_ids.get(champion.number),
        "run_id": trained.logger.runs[champion.number],
        "alias": trained.registry["alias"],
        # the exact model: evaluate and the pipeline's predict use this one
        "uri": member_uri(cfg, trained, champion),
        **champion.scores,
    }


def member_uri(cfg: AppConfig, trained: Trained, m: Member) -> str:
    """A kept member's model: its registered version ``models:/<name>/<version>``, else
    (not registered) its logged model ``models:/<model id>``."""
    version = trained.versions.get(m.number)
    if version is not None:
        return f"models:/{cfg.tracking.model_name}/{version}"
    return f"models:/{trained.logger.model_ids[m.number]}"


def member_entry(m: Member, trained: Trained) -> dict[str, Any]:
    """One member of the report: its run, place in the search, params, version and scores."""
    return {
        "member": m.name,
        "run_id": trained.logger.runs[m.number],
        "generation": m.generation,
        "rank": m.rank,
        "front": m.front,
        "consensus": m.consensus,
        "params": m.params,
        "version": trained.versions.get(m.number),
        "fit_seconds": m.fit_seconds,
        **m.scores,
    }


def log_trained(cfg: AppConfig, trained: Trained, report: dict[str, Any], wall: float) -> None:
    """One line: the search's size, the champion, its model, and MLflow's share of time;
    then where to see the members in the MLflow UI."""
    result, champion, logger = trained.result, trained.champion, trained.logger
    version = trained.versions.get(champion.number)
    where = (
        f"registered as {cfg.tracking.model_name} version {version}"
        if version is not None
        else f"logged as {report['champion']['uri']} (not registered)"
    )
    log.info(
        "train: %d members in %d generation(s), champion %s (%s=%.6g) %s; %.1f s, %.0f %% "
        "of it waiting on MLflow",
        len(result.members),
        len(result.history),
        champion.name,
        result.metric,
        champion.scores[result.metric],
        where,
        wall,
        100 * logger.seconds / wall,
    )
    if report["mlflow_ui_command"]:
        log.info(
            "train: the members, best first, in the MLflow UI: run `%s`, then open %s",
            report["mlflow_ui_command"],
            report["mlflow_ui_url"],
        )
    else:
        log.info("train: the members, best first, in the MLflow UI: %s", report["mlflow_ui_url"])

"""The train stage: assemble the training data, fit the ensemble on dask, log it to MLflow."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from geoensemble.app.config import AppConfig, flatten, to_dict
from geoensemble.app.estimators import pipeline_template
from geoensemble.app.promote import scoring_space
from geoensemble.app.sweep import job_tags
from geoensemble.ensemble.checks import check_members
from geoensemble.ensemble.member import MemberSpec
from geoensemble.ensemble.precedence import member_estimator
from geoensemble.ensemble.runlog import candidate_tags
from geoensemble.ensemble.search import EnsembleResult, Search, TrainingData, run_ensemble
from geoensemble.ensemble.space import configured_values
from geoensemble.errors import ConfigError

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


# What decides the labelled sample and its folds: recorded in train.json, reused by evaluate.
CV_KEYS = ("folds", "block_size", "buffer", "seed", "sample_size", "stratify", "nan_threshold")


def cv_settings(cfg: AppConfig) -> dict[str, Any]:
    """The settings that decide the labelled sample and its spatial folds."""
    cv = cfg.ensemble.cv
    return {
        "folds": cv.folds,
        "block_size": cv.block_size,
        "buffer": cv.buffer,
        "seed": cfg.seed,
        "sample_size": cfg.features.sample.size,
        "stratify": cfg.features.sample.stratify,
        "nan_threshold": cfg.features.nan_threshold,
    }


def with_cv_settings(cfg: AppConfig, settings: dict[str, Any]) -> AppConfig:
    """``cfg`` with the sample and fold settings of :func:`cv_settings` replaced."""
    import dataclasses

    e, f = cfg.ensemble, cfg.features
    return dataclasses.replace(
        cfg,
        seed=int(settings["seed"]),
        ensemble=dataclasses.replace(
            e,
            cv=dataclasses.replace(
                e.cv,
                folds=int(settings["folds"]),
                block_size=int(settings["block_size"]),
                buffer=int(settings["buffer"]),
            ),
        ),
        features=dataclasses.replace(
            f,
            nan_threshold=int(settings["nan_threshold"]),
            sample=dataclasses.replace(
                f.sample, size=int(settings["sample_size"]), stratify=bool(settings["stratify"])
            ),
        ),
    )


def training_data(cfg: AppConfig) -> tuple[TrainingData, list[str], dict[str, Any]]:
    """The members' training data, the feature names, and facts for the report.

    Clusterers get a seeded sample of valid pixels; supervised models the labelled pixels of
    the labels stage with their spatial block folds.
    """
    from geoensemble.ensemble.folds import folds_digest
    from geoensemble.ensemble.preview import preview_grid
    from geoensemble.ensemble.training import draw_training_data
    from geoensemble.io.labels import load_labels
    from geoensemble.io.stack import open_store, store_meta

    feats = open_store(cfg.paths.features)
    names = store_meta(cfg.paths.features).get("feature_names") or [str(v) for v in feats.data_vars]
    kind = cfg.model.kind.value
    facts: dict[str, Any] = {"kind": kind}
    labels = None
    if kind != "cluster":
        labels = load_labels(cfg.paths.labels)
        if labels is None:
            raise ConfigError(
                f"model={cfg.model.name} (kind {kind}) needs labels, but the labels stage "
                f"found none: set data.labels.path to a label raster or vector file and "
                f"run the labels stage"
            )
        want = "value" if kind == "regressor" else "classes"
        if labels.target != want:
            raise ConfigError(
                f"model.kind={kind} needs data.labels.target={want}, but the labels in "
                f"{cfg.paths.labels} are {labels.target}: set data.labels.target={want}"
            )
    settings = cv_settings(cfg)
    drawn = draw_training_data(
        feats,
        names,
        labels,
        kind=kind,
        size=settings["sample_size"],
        seed=settings["seed"],
        nan_threshold=settings["nan_threshold"],
        stratify=settings["stratify"],
        n_folds=settings["folds"],
        block_size=settings["block_size"],
        buffer=settings["buffer"],
    )
    data = drawn.data
    facts["sample_pixels"] = drawn.pixels
    if drawn.labelled is not None:
        assert labels is not None
        ls, folds = drawn.labelled, drawn.folds
        facts.update(
            classes={str(k): v for k, v in labels.classes.items()},
            folds=[int(f.test.size) for f in folds],
            cv={
                **settings,
                "fold_sizes": [int(f.test.size) for f in folds],
                "buffered": [int(f.buffered.size) for f in folds],
                "digest": folds_digest(ls.rows, ls.cols, folds),
            },
            dropped_nan=ls.dropped,
        )
    if cfg.ensemble.previews:
        grid = preview_grid(
            feats, names, size=cfg.ensemble.preview_size, nan_threshold=cfg.features.nan_threshold
        )
        data.preview_X, data.preview_mask = grid.X, grid.mask
    return data, names, facts


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
    from geoensemble.app import promote
    from geoensemble.app.tracker import tracker_for
    from geoensemble.compute import dask_client, wait_for_workers
    from geoensemble.ensemble.runlog import MemberLogger, timed_call

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
    # The cluster's workers start, and import what members need, while MLflow is imported.
    with dask_client(cfg.compute, preload=["geoensemble.ensemble.member"]) as client:
        t_mlflow = time.perf_counter()
        # A store that cannot be used fails here, before any fit; MLflow itself is opened,
        # and the parent run started, in the background while the members fit.
        tracker = tracker_for(cfg.tracking)
        if not tracker.check():
            tracker.open()  # a new store: created now, once
        tags = tracking.run_tags(job_tags())
        origin = promote.training_origin()
        space_keys = list(cfg.model.space)
        logger = MemberLogger(
            tracker=tracker, family=cfg.model.name, space_keys=space_keys, tags=tags
        )
        logger.seconds += time.perf_counter() - t_mlflow
        with logger:
            logger.start(
                run_name=f"ensemble-{cfg.model.name}",
                params=key_params(cfg),
                tags={
                    **tags,
                    "model_family": cfg.model.name,
                    "model_kind": facts["kind"],
                    # sweeps compare jobs' best scores only when this is equal
                    "score_space": scoring_space(cfg),
                },
                config=to_dict(cfg),
            )
            wait_for_workers(client, cfg.compute.timeout)
            result: EnsembleResult = run_ensemble(
                data, member_spec(cfg), search_of(cfg), client, on_member=logger.log_member
            )
            versions = logger.finish(
                result,
                feature_names=names,
                example=data.X[:5],
                model_name=cfg.tracking.model_name,
                lineage=(lineage := promote.lineage_tags(cfg, origin, tags)),
                class_names=facts.get("classes"),
            )
            exp_id, parent_id = logger.experiment_id, logger.parent_id
            timed_call(
                logger,
                tracker.set_runs_view,
                exp_id,
                view_key(cfg),
                runs_view(cfg, parent_id, space_keys),
            )
            champion = result.kept[0]
            registry = timed_call(
                logger,
                promote.after_training,
                cfg,
                tracker,
                origin,
                parent_run_id=parent_id,
                version=versions[champion.number],
                tags={
                    **lineage,
                    **candidate_tags(champion.scores, champion.pipeline, result.metric),
                },
            )
            wall = time.perf_counter() - t0
            timed_call(
                logger,
                tracker.log_metrics,
                parent_id,
                {
                    "n_members": len(result.members),
                    "n_generations": len(result.history),
                    "sample_pixels": facts["sample_pixels"],
                    **(
                        {"labelled_dropped_nan": facts["dropped_nan"].get("pixels", 0)}
                        if "dropped_nan" in facts
                        else {}
                    ),
                    "mlflow_seconds": logger.seconds,
                    "mlflow_share": logger.seconds / wall,
                    "mlflow_background_seconds": logger.background.seconds,
                    "train_seconds": wall,
                },
            )
    runs = logger.runs
    wall = time.perf_counter() - t0  # the parent run ended, the cluster closed
    report: dict[str, Any] = {
        "experiment_id": exp_id,
        "parent_run_id": parent_id,
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
        **(
            {
                "labelled_dropped_nan": facts["dropped_nan"].get("pixels", 0),
                **({"dropped_nan": facts["dropped_nan"]} if facts["dropped_nan"] else {}),
            }
            if "dropped_nan" in facts
            else {}
        ),
        # MLflow's cost (see benchmarks/train_mlflow_benchmark.py): the time the stage
        # waited on MLflow, its share of the stage's wall time, and the time of the calls
        # that ran in the background while members fitted.
        "mlflow_seconds": logger.seconds,
        "mlflow_share": logger.seconds / wall,
        "mlflow_background_seconds": logger.background.seconds,
        "train_seconds": wall,
        # the MLflow UI's runs table of this ensemble's members, best first: append to the
        # UI's address, e.g. http://127.0.0.1:5000/
        "mlflow_ui_view": f"#/experiments/{exp_id}/runs?viewStateShareKey={view_key(cfg)}",
        "champion": {
            "member": champion.name,
            "version": versions[champion.number],
            "run_id": runs[champion.number],
            "alias": registry["alias"],
            # the exact version: evaluate and the pipeline's predict use this one
            "uri": f"models:/{cfg.tracking.model_name}/{versions[champion.number]}",
            **champion.scores,
        },
        "registry": registry,
        "kept": [
            {"member": m.name, "version": versions[m.number], "rank": m.rank} for m in result.kept
        ],
        "members": [
            {
                "member": m.name,
                "run_id": runs[m.number],
                "generation": m.generation,
                "rank": m.rank,
                "front": m.front,
                "consensus": m.consensus,
                "params": m.params,
                "version": versions.get(m.number),
                "fit_seconds": m.fit_seconds,
                **m.scores,
            }
            for m in result.members
        ],
        "history": result.history,
    }
    log.info(
        "train: %d members in %d generation(s), champion %s (%s=%.6g) registered as %s "
        "version %s; %.1f s, %.0f %% of it waiting on MLflow; the members, best first, in "
        "the MLflow UI: <UI address>/%s",
        len(result.members),
        len(result.history),
        champion.name,
        result.metric,
        champion.scores[result.metric],
        cfg.tracking.model_name,
        versions[champion.number],
        wall,
        100 * logger.seconds / wall,
        report["mlflow_ui_view"],
    )
    return report

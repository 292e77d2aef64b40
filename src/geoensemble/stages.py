"""The stages as plain functions of a validated config.

``dvc repro`` (via ``params.yaml``), ``mlflow run`` and Hydra (sweeps included) all call these
same functions; only the wrapper in :mod:`geoensemble.cli` differs.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from geoensemble.config import AppConfig, flatten, to_dict
from geoensemble.errors import GridMismatchError
from geoensemble.io.atomic import atomic_path

log = logging.getLogger("geoensemble")


def write_json(path: str | os.PathLike[str], obj: Any) -> Path:
    """Write JSON atomically (reports are DVC outputs and metrics)."""
    target = Path(path)
    with atomic_path(target) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=False, default=_jsonable) + "\n")
    return target


def _jsonable(o: Any) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def reports_dir(cfg: AppConfig) -> Path:
    return Path(cfg.paths.reports)


# --------------------------------------------------------------------------- scene
def scene(cfg: AppConfig) -> dict[str, Path]:
    """Write the embedded default scene under ``paths.raw``."""
    from geoensemble.synthetic import write_scene

    s = cfg.data.scene
    out = write_scene(
        cfg.paths.raw,
        width=s.width,
        height=s.height,
        seed=s.seed,
        pixel_size=s.pixel_size,
        crs=s.crs,
        n_points=s.n_points,
    )
    log.info("scene: wrote %s x %s px scene to %s", s.width, s.height, out["scene"])
    return out


# --------------------------------------------------------------------------- ingest
def ingest(cfg: AppConfig) -> dict[str, Any]:
    """Read the layers named by ``data`` onto one grid and store them as ``paths.stack``."""
    from geoensemble.io.layers import detect_format
    from geoensemble.io.stack import build_stack, write_stack

    ds = build_stack(cfg.data)
    meta: dict[str, Any] = {
        "source": cfg.data.path,
        "format": detect_format(Path(cfg.data.path), cfg.data.format),
        "shape": [int(ds.sizes["y"]), int(ds.sizes["x"])],
        "geotransform": ds.attrs["geotransform"],
        "categorical": [str(n) for n, v in ds.data_vars.items() if v.attrs.get("categorical")],
    }
    # One pass over the data: the store is written chunk by chunk while the report is summed.
    report = write_stack(ds, cfg.paths.stack, meta=meta)
    meta = {"layers": report, **meta}
    write_json(reports_dir(cfg) / "ingest.json", meta)
    for name, r in report.items():
        log.info(
            "ingest: %-12s valid %5.1f %%  min %-10.4g max %.4g",
            name,
            100 * r["valid_fraction"],
            r["min"],
            r["max"],
        )
    return meta


# --------------------------------------------------------------------------- featurize
def featurize(cfg: AppConfig) -> list[str]:
    """Bands and indices from the stack, stored as ``paths.features``, plus quicklooks."""
    from geoensemble import plots
    from geoensemble.features.build import build_features
    from geoensemble.io.stack import open_store, write_store

    feats = build_features(open_store(cfg.paths.stack), cfg.features)
    names = [str(n) for n in feats.data_vars]
    write_store(
        feats, cfg.paths.features, meta={"feature_names": names, "features": cfg.features.name}
    )
    fig_dir = reports_dir(cfg) / "figures" / "features"
    for name in cfg.features.quicklooks:
        if name in feats:
            plots.layer_png(
                fig_dir / f"{name}.png",
                feats[name].to_numpy(),
                title=name.upper(),
                cmap="RdYlGn" if name != "ndwi" else "BrBG",
            )
    if len(cfg.features.false_colour) == 3 and all(n in feats for n in cfg.features.false_colour):
        rgb = np.stack([feats[n].to_numpy() for n in cfg.features.false_colour])
        plots.false_colour_png(
            fig_dir / "false_colour.png", rgb, title="RGB = " + ", ".join(cfg.features.false_colour)
        )
    log.info("featurize: %d features: %s", len(names), ", ".join(names))
    return names


# --------------------------------------------------------------------------- train
def train(cfg: AppConfig) -> dict[str, Any]:
    """Fit the ensemble on a sample of valid pixels, log every member, register the kept."""
    from geoensemble import tracking
    from geoensemble.compute import dask_client
    from geoensemble.ensemble.search import Member, run_ensemble
    from geoensemble.features.sample import sample_pixels
    from geoensemble.io.stack import open_store, store_meta

    feats = open_store(cfg.paths.features)
    names = store_meta(cfg.paths.features).get("feature_names") or list(feats.data_vars)
    sample = sample_pixels(
        feats,
        names,
        size=cfg.features.sample.size,
        seed=cfg.seed,
        nan_threshold=cfg.features.nan_threshold,
    )
    log.info("train: %d sample pixels x %d features", len(sample), len(names))
    exp_id = tracking.setup(cfg.tracking)
    tags = tracking.run_tags()
    flat = flatten(to_dict(cfg))
    member_runs: dict[int, str] = {}

    with tracking.parent_run(
        exp_id,
        run_name=f"ensemble-{cfg.model.name}",
        params=flat,
        tags={**tags, "model_family": cfg.model.name},
    ) as parent_id:
        exp_id = tracking.experiment_of(parent_id)

        def log_generation(gen: int, members: list[Member]) -> None:
            for m in members:
                params = {
                    **{f"model.{k}": v for k, v in m.params.items()},
                    "model.family": cfg.model.name,
                    "generation": gen,
                }
                metrics = {**m.scores, "fit_seconds": m.fit_seconds, "generation": gen}
                member_runs[m.number] = tracking.log_child_run(
                    exp_id,
                    parent_id,
                    run_name=m.name,
                    params=params,
                    metrics=metrics,
                    tags={**tags, "geoensemble.role": "member", "ensemble_run_id": parent_id},
                )

        with dask_client(cfg.compute) as client:
            result = run_ensemble(sample.X, cfg, client, on_generation=log_generation)

        example = sample.X[:5]
        versions: dict[int, str] = {}
        for m in result.kept:
            versions[m.number] = tracking.log_model(
                member_runs[m.number],
                m.pipeline,
                feature_names=names,
                example=example,
                model_name=cfg.tracking.model_name,
                tags={
                    "ensemble_run_id": parent_id,
                    "member": m.name,
                    "rank": str(m.rank),
                    cfg.ensemble.metric: f"{m.scores[cfg.ensemble.metric]:.6g}",
                },
            )
        for m in result.members:
            tracking.set_tags(
                member_runs[m.number], {"rank": str(m.rank), "kept": str(m.number in versions)}
            )
            tracking.log_metrics(member_runs[m.number], {"rank": m.rank})
        champion = result.kept[0]
        tracking.set_alias(cfg.tracking.model_name, cfg.predict.alias, versions[champion.number])
        tracking.log_metrics(
            parent_id,
            {
                f"best_{result.metric}": champion.scores[result.metric],
                "n_members": len(result.members),
                "sample_pixels": len(sample),
            },
        )

    report = {
        "experiment_id": exp_id,
        "parent_run_id": parent_id,
        "model_name": cfg.tracking.model_name,
        "metric": result.metric,
        "direction": cfg.ensemble.direction.value,
        "feature_names": names,
        "sample_pixels": len(sample),
        "champion": {
            "member": champion.name,
            "version": versions[champion.number],
            "run_id": member_runs[champion.number],
            "alias": cfg.predict.alias,
            "uri": f"models:/{cfg.tracking.model_name}@{cfg.predict.alias}",
            **champion.scores,
        },
        "members": [
            {
                "member": m.name,
                "run_id": member_runs[m.number],
                "generation": m.generation,
                "rank": m.rank,
                "params": m.params,
                "version": versions.get(m.number),
                "fit_seconds": m.fit_seconds,
                **m.scores,
            }
            for m in result.members
        ],
        "history": result.history,
    }
    write_json(reports_dir(cfg) / "train.json", report)
    log.info(
        "train: %d members, champion %s (%s=%.6g) registered as %s version %s",
        len(result.members),
        champion.name,
        result.metric,
        champion.scores[result.metric],
        cfg.tracking.model_name,
        versions[champion.number],
    )
    return report


# --------------------------------------------------------------------------- evaluate
def evaluate(cfg: AppConfig) -> dict[str, Any]:
    """Scores of every member and, where ground truth exists, agreement of the champion."""
    from geoensemble import plots, tracking
    from geoensemble.features.sample import sample_pixels
    from geoensemble.io.geotiff import read_band
    from geoensemble.io.stack import grid_attrs, open_store

    rep = json.loads((reports_dir(cfg) / "train.json").read_text())
    metric = rep["metric"]
    members = sorted(rep["members"], key=lambda m: m["rank"])
    metrics: dict[str, Any] = {
        "n_members": len(members),
        "metric": metric,
        "champion": rep["champion"]["member"],
        f"champion_{metric}": rep["champion"][metric],
        f"best_{metric}": members[0][metric],
        f"worst_{metric}": members[-1][metric],
    }
    plot_rows = [
        {
            "member": m["member"],
            "generation": m["generation"],
            "aic": m.get("aic"),
            "bic": m.get("bic"),
            **{f"param_{k}": v for k, v in m["params"].items()},
        }
        for m in sorted(rep["members"], key=lambda m: m["member"])
    ]
    plot_dir = reports_dir(cfg) / "plots"
    write_json(plot_dir / "members.json", plot_rows)
    names = [r["member"] for r in plot_rows]
    fig = plots.bar_png(
        reports_dir(cfg) / "figures" / f"{metric}_by_member.png",
        names,
        [r[metric] for r in plot_rows],
        title=f"{metric.upper()} by member",
        ylabel=metric.upper(),
        highlight=names.index(rep["champion"]["member"]),
    )

    tracking.setup(cfg.tracking)
    if cfg.data.truth and Path(cfg.data.truth).exists():
        from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

        feats = open_store(cfg.paths.features)
        truth, _, t_transform, t_nodata = read_band(cfg.data.truth)
        _, f_transform = grid_attrs(feats)
        if truth.shape != (feats.sizes["y"], feats.sizes["x"]) or t_transform != f_transform:
            raise GridMismatchError(
                f"truth raster {cfg.data.truth} is not on the features' "
                f"grid: resample it, or set data.truth=null"
            )
        nodata = 255 if t_nodata is None else int(t_nodata)
        labels = np.where(truth == nodata, -1, truth.astype(np.int64))
        sample = sample_pixels(
            feats,
            rep["feature_names"],
            size=cfg.features.sample.size,
            seed=cfg.seed + 7,
            nan_threshold=cfg.features.nan_threshold,
            labels=labels,
        )
        model = tracking.load_model(rep["champion"]["uri"]).model
        pred = model.predict(sample.X)
        assert sample.y is not None
        metrics["champion_adjusted_rand"] = float(adjusted_rand_score(sample.y, pred))
        metrics["champion_nmi"] = float(normalized_mutual_info_score(sample.y, pred))
        metrics["truth_pixels"] = len(sample)
    write_json(reports_dir(cfg) / "metrics.json", metrics)
    numeric = {k: float(v) for k, v in metrics.items() if isinstance(v, int | float)}
    tracking.log_metrics(rep["parent_run_id"], {f"eval_{k}": v for k, v in numeric.items()})
    tracking.log_artifact(rep["parent_run_id"], fig, "figures")
    log.info("evaluate: %s", json.dumps(metrics))
    return metrics


# --------------------------------------------------------------------------- predict
def predict(cfg: AppConfig) -> dict[str, Any]:
    """Every selected model on every scene: COG maps, quicklooks and an MLflow predict run.

    See :func:`geoensemble.predict.run.predict_many`.
    """
    from geoensemble.predict import predict_many

    out = predict_many(cfg)
    for name, s in out["scenes"].items():
        log.info(
            "predict: %s: wrote %s (%d valid of %d px, %.2f s)",
            name,
            ", ".join(s["maps"].values()),
            s["valid_pixels"],
            s["pixels"],
            s["seconds"],
        )
    return out


def run_all(cfg: AppConfig) -> dict[str, Any]:
    """Every stage in order on one config (the ``main`` MLflow entry point)."""
    return {name: fn(cfg) for name, fn in PIPELINE.items()}


PIPELINE = {
    "scene": scene,
    "ingest": ingest,
    "featurize": featurize,
    "train": train,
    "evaluate": evaluate,
    "predict": predict,
}
STAGES = {**PIPELINE, "all": run_all}

"""The evaluate stage: metrics of every member, plots, and the champion's accuracy assessment.

``reports/metrics.json`` (DVC's metrics) holds the few numbers that matter (see
:func:`headline`); ``reports/evaluation.json`` holds everything below, under the same names.

Always: AIC/BIC (and the selection metric) of every member by generation, the search history,
and the agreement between the kept members (consensus labelling). Supervised runs add, from
held-out predictions under the very spatial block folds train used (the labelled sample and
folds recorded in ``train.json``, whatever the current ``ensemble.cv``): the confusion matrix,
per-class precision/recall/F1, overall accuracy and Cohen's kappa, and permutation feature
importance; the area-weighted accuracy and class areas with 95 % confidence intervals
(:mod:`geoensemble.ensemble.assessment`, class areas from the champion's map) from a separate
validation sample (``data.validation``) only, else as point estimates flagged
``design_based: false``. Clustering runs with a
ground-truth raster (``data.truth``) add the adjusted Rand index and NMI of the champion and of
every kept member (``kept_members``), the truth-by-cluster contingency table and each
cluster's name as on the maps (the truth class it mostly holds, with its share:
:func:`geoensemble.classes.match_clusters`). Everything is written under ``reports/`` for DVC
and logged to the parent run.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import xarray as xr

from geoensemble.app.config import AppConfig
from geoensemble.app.keys import KEYS, keyed
from geoensemble.errors import (
    ConfigError,
    EmptyLayerError,
    GeoEnsembleError,
    GridMismatchError,
    InputFileError,
)
from geoensemble.io.atomic import write_report as write_json
from geoensemble.io.limits import read_json

if TYPE_CHECKING:
    from geoensemble.ensemble.search import TrainingData
    from geoensemble.io.labels import Labels
    from geoensemble.tracking import Tracker

log = logging.getLogger("geoensemble")

MAX_MAP_PIXELS = 1_000_000
PLOTS = "plots"
FIGURES = "figures/evaluate"
# The JSON files dvc.yaml's plots read; the ones a run does not make are written empty so that
# `dvc plots show` finds every file.
PLOT_FILES = ("confusion.json", "per_class.json", "areas.json", "importance.json")


def mapped_counts(
    ds: xr.Dataset,
    names: list[str],
    model: Any,
    *,
    nan_threshold: int = 0,
    max_pixels: int | None = MAX_MAP_PIXELS,
    strip_rows: int = 256,
) -> tuple[dict[int, int], int]:
    """Pixels per predicted class over the map (every ``step``-th pixel on large scenes;
    every pixel with ``max_pixels=None``, strip by strip).

    Returns the counts (scaled to the full grid) and the step used.
    """
    from geoensemble.features.table import to_table, valid_mask

    h, w = int(ds.sizes["y"]), int(ds.sizes["x"])
    step = 1 if max_pixels is None else max(1, int(np.ceil(np.sqrt(h * w / max_pixels))))
    thin = ds[names].isel(y=slice(None, None, step), x=slice(None, None, step))
    counts: dict[int, int] = {}
    for start in range(0, int(thin.sizes["y"]), strip_rows):
        part = thin.isel(y=slice(start, start + strip_rows))
        block = np.stack([part[n].to_numpy() for n in names]).astype(np.float32)
        mask = valid_mask(block, nan_threshold=nan_threshold)
        if not mask.any():
            continue
        codes, n = np.unique(np.asarray(model.predict(to_table(block, mask))), return_counts=True)
        for c, k in zip(codes, n, strict=True):
            counts[int(c)] = counts.get(int(c), 0) + int(k) * step * step
    return counts, step


def evaluate_ensemble(cfg: AppConfig) -> dict[str, Any]:
    """Write ``reports/metrics.json``, ``reports/evaluation.json`` and the plots; log them to
    the ensemble's parent run."""
    from geoensemble.app.tracker import tracker_for

    reports = Path(cfg.paths.reports)
    rep = read_train_report(reports)
    kind = rep.get("kind", "cluster")
    if kind == "cluster":
        check_truth(cfg.data.truth)
    metrics = search_metrics(rep)
    files = member_plots(reports, rep)
    tracker = tracker_for(cfg.tracking)
    tracker.open()
    champion, kept = load_models(tracker, rep, cfg.trust.types)
    if rep.get("dropped_nan"):  # labelled pixels the NaN policy dropped in training
        metrics["labelled_dropped_nan"] = rep["dropped_nan"]
        metrics["labelled_dropped_nan_pixels"] = rep["dropped_nan"]["pixels"]
    if kind == "cluster":
        files += _cluster_assessment(cfg, rep, champion, kept, metrics)
    else:
        files += _supervised_assessment(cfg, rep, champion, metrics)
    written = {f.name for f in files}
    for name in PLOT_FILES:
        if name not in written:  # not applicable to this kind of model: an empty plot
            write_json(reports / PLOTS / name, [])
    if kind == "cluster" and isinstance(rep["champion"].get("n_clusters"), int | float):
        metrics["clusters"] = int(rep["champion"]["n_clusters"])
    elif kind == "classifier":  # what the champion predicts (not every class labelled)
        classes = getattr(champion, "classes_", None)
        metrics["classes"] = len(classes) if classes is not None else len(rep.get("classes") or {})
    for w in rep.get("warnings", []):  # the search's, from train, where the numbers are read
        log.warning("evaluate: %s", w)
    metrics["warnings"] = list(rep.get("warnings", []))
    write_json(reports / "evaluation.json", metrics)
    write_json(reports / "metrics.json", headline(metrics))
    log_to_parent_run(tracker, rep, metrics, files, reports)
    log.info("evaluate: %s", json.dumps({k: v for k, v in metrics.items() if k != "per_class"}))
    return metrics


def read_train_report(reports: Path) -> dict[str, Any]:
    """``train.json`` in the ``reports`` folder.

    Raises
    ------
    InputFileError
        If train has not written it.
    """
    if not (reports / "train.json").is_file():
        raise InputFileError(
            f"{reports / 'train.json'} does not exist: run the train stage first "
            f"(dvc repro train), with the same paths.reports"
        )
    return read_json(reports / "train.json")


def check_truth(truth: str | None) -> None:
    """Fail, before any report or figure is written, on a ground-truth raster (``data.truth``)
    that is missing or cannot be read; nothing without one.

    Raises
    ------
    InputFileError
        If the file does not exist or cannot be read as a raster.
    """
    if not truth:
        return
    if not Path(truth).exists():
        raise InputFileError(
            f"data.truth={truth} does not exist: give the path of a ground-truth raster on "
            f"the features' grid, or set data.truth=null to evaluate without one"
        )
    import rasterio

    from geoensemble.io.geotiff import check_band_fits

    try:
        check_band_fits(truth, key="data.truth")
    except rasterio.errors.RasterioIOError as exc:
        raise InputFileError(f"cannot read data.truth={truth}: {exc}") from None


def search_metrics(rep: dict[str, Any]) -> dict[str, Any]:
    """What the search found: its size, the champion and the best and worst scores."""
    metric = rep["metric"]
    members = sorted(rep["members"], key=lambda m: m["rank"])
    metrics: dict[str, Any] = {
        "kind": rep.get("kind", "cluster"),
        "n_members": len(members),
        "n_generations": len(rep.get("history", [])),
        "metric": metric,
        "champion": rep["champion"]["member"],
        f"champion_{metric}": rep["champion"][metric],
        f"best_{metric}": members[0][metric],
        f"worst_{metric}": members[-1][metric],
    }
    for key in ("aic", "bic"):
        if key in rep["champion"]:
            metrics[f"champion_{key}"] = rep["champion"][key]
    return metrics


def member_plots(reports: Path, rep: dict[str, Any]) -> list[Path]:
    """Every member's scores and params, the best score by generation, and their figure."""
    from geoensemble.ensemble import figures

    metric = rep["metric"]
    rows = [
        {
            "member": m["member"],
            "generation": m["generation"],
            "rank": m["rank"],
            "aic": m.get("aic"),
            "bic": m.get("bic"),
            metric: m.get(metric),
            **{f"param_{k}": v for k, v in m["params"].items()},
        }
        for m in sorted(rep["members"], key=lambda m: m["member"])
    ]
    plot_dir, fig_dir = reports / PLOTS, reports / FIGURES
    return [
        write_json(plot_dir / "members.json", rows),
        write_json(plot_dir / "generations.json", rep.get("history", [])),
        figures.members_png(
            fig_dir / "members.png",
            rows,
            champion=rep["champion"]["member"],
            keys=[k for k in ("aic", "bic") if any(r[k] is not None for r in rows)] or [metric],
            metric=metric,
            best=rep.get("history", []),
        ),
    ]


def load_models(
    tracker: Tracker, rep: dict[str, Any], trusted: Sequence[str]
) -> tuple[Any, list[Any]]:
    """The champion and the kept members (best first) that ``train.json`` names, from the
    registry."""
    kept = [
        tracker.load_model(
            k.get("uri") or f"models:/{rep['model_name']}/{k['version']}", trusted_types=trusted
        ).model
        for k in rep.get("kept", [])
    ]
    champion = (
        tracker.load_model(rep["champion"]["uri"], trusted_types=trusted).model
        if not kept
        else kept[0]
    )
    return champion, kept


def log_to_parent_run(
    tracker: Tracker, rep: dict[str, Any], metrics: dict[str, Any], files: list[Path], reports: Path
) -> None:
    """The numeric metrics (``eval_<name>``) and every file written, on the parent run."""
    # train logged these to the parent run already, under one name each
    logged = {"n_members", "n_generations", f"best_{rep['metric']}"}
    numeric = {
        f"eval_{k}": float(v)
        for k, v in metrics.items()
        if isinstance(v, int | float) and not isinstance(v, bool) and k not in logged
    }
    tracker.log_metrics(rep["parent_run_id"], numeric)
    for f in files:
        tracker.log_artifact(
            rep["parent_run_id"], f, "evaluate/" + f.parent.relative_to(reports).as_posix()
        )


# What `dvc metrics show` and `dvc exp show` list (reports/metrics.json), in this order when
# present; reports/evaluation.json holds them too, under the same names, with the rest.
HEADLINE = {
    "cluster": ("clusters", "champion_adjusted_rand", "champion_nmi"),
    "classifier": ("classes", "accuracy", "kappa"),
    "regressor": ("rmse", "r2"),
}


def headline(evaluation: dict[str, Any]) -> dict[str, Any]:
    """The few numbers that tell ensembles apart: the champion's criterion, then k (clusters)
    and ARI/NMI against the truth, or the classes and the held-out accuracy and kappa (RMSE
    and R2 for regressors)."""
    criterion = f"champion_{evaluation['metric']}"
    keys = (criterion, *HEADLINE.get(str(evaluation["kind"]), ()))
    return {k: evaluation[k] for k in keys if k in evaluation}


def _cluster_assessment(
    cfg: AppConfig, rep: dict[str, Any], champion: Any, kept: list[Any], metrics: dict[str, Any]
) -> list[Path]:
    """The kept members' agreement and, with a truth raster (``data.truth``), their ARI and
    NMI against it and the champion's truth-by-cluster table."""
    from geoensemble.ensemble.consensus import consensus_labels
    from geoensemble.features.sample import sample_pixels
    from geoensemble.io.stack import open_store

    feats = open_store(cfg.paths.features)
    labels, names_of = truth_labels(cfg.data.truth, feats)
    sample = sample_pixels(
        feats,
        rep["feature_names"],
        size=min(cfg.features.sample.size, 50_000),  # as predict names the clusters
        seed=cfg.seed + 7,
        nan_threshold=cfg.features.nan_threshold,
        labels=labels,
    )
    kept_preds = [np.asarray(m.predict(sample.X)) for m in kept]
    pred = kept_preds[0] if kept_preds else np.asarray(champion.predict(sample.X))
    if len(kept) > 1:
        _, agreement = consensus_labels(kept_preds)
        metrics["kept_agreement"] = float(agreement.mean())
    if sample.y is None:
        return []
    metrics.update(truth_scores(sample.y, pred, rep.get("kept", []), kept_preds))
    return truth_by_cluster(Path(cfg.paths.reports), sample.y, pred, names_of, metrics)


def truth_labels(
    truth_path: str | None, feats: xr.Dataset
) -> tuple[np.ndarray | None, dict[int, str]]:
    """The truth raster's codes on the features' grid (``-1`` at nodata) and its class
    names; ``None`` without one.

    Raises
    ------
    GridMismatchError
        If the raster is not on the features' grid.
    """
    from geoensemble.io.geotiff import read_band, read_tags
    from geoensemble.io.labels import raster_class_names
    from geoensemble.io.stack import grid_attrs

    if not truth_path:
        return None, {}
    truth, _, t_transform, t_nodata = read_band(truth_path, key="data.truth")
    _, f_transform = grid_attrs(feats)
    if truth.shape != (feats.sizes["y"], feats.sizes["x"]) or t_transform != f_transform:
        raise GridMismatchError(
            f"truth raster {truth_path} is not on the features' grid: resample it, "
            f"or set data.truth=null"
        )
    nodata = 255 if t_nodata is None else int(t_nodata)
    labels = np.where(truth == nodata, -1, truth.astype(np.int64))
    return labels, raster_class_names(truth_path, read_tags(truth_path))


def truth_scores(
    truth: np.ndarray, pred: np.ndarray, kept: list[dict[str, Any]], kept_preds: list[np.ndarray]
) -> dict[str, Any]:
    """The champion's (``pred``) adjusted Rand index and NMI against the truth, and every
    kept member's: how far the champion is from the best of them."""
    from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

    scores: dict[str, Any] = {
        "champion_adjusted_rand": float(adjusted_rand_score(truth, pred)),
        "champion_nmi": float(normalized_mutual_info_score(truth, pred)),
        "truth_pixels": len(truth),
    }
    per_member = {
        k["member"]: {
            "rank": k["rank"],
            "adjusted_rand": float(adjusted_rand_score(truth, p)),
            "nmi": float(normalized_mutual_info_score(truth, p)),
        }
        for k, p in zip(kept, kept_preds, strict=True)
    }
    if per_member:
        scores["kept_members"] = per_member
        scores["best_kept_adjusted_rand"] = max(v["adjusted_rand"] for v in per_member.values())
    return scores


def truth_by_cluster(
    reports: Path,
    truth: np.ndarray,
    pred: np.ndarray,
    names_of: dict[int, str],
    metrics: dict[str, Any],
) -> list[Path]:
    """The truth-by-cluster table (JSON and figure); each cluster's name as on the maps (the
    truth class it mostly holds, with its share) goes to ``metrics``."""
    from geoensemble.classes import match_clusters
    from geoensemble.ensemble import figures

    ref_codes, clusters = np.unique(truth), np.unique(pred)
    table = np.zeros((ref_codes.size, clusters.size), dtype=np.int64)
    np.add.at(table, (np.searchsorted(ref_codes, truth), np.searchsorted(clusters, pred)), 1)
    ref_names = [names_of.get(int(c), f"class_{int(c)}") for c in ref_codes]
    matches = match_clusters(pred, truth, [int(c) for c in clusters], names_of)
    metrics["cluster_names"] = {str(m.code): m.name for m in matches}
    metrics["cluster_shares"] = {str(m.code): round(m.share, 4) for m in matches}
    col_names = [f"cluster_{m.code}: {m.name}" for m in matches]
    records = [
        {"actual": ref_names[i], "predicted": col_names[j]}
        for (i, j), k in np.ndenumerate(table)
        for _ in range(min(int(k), 200))  # capped: the plot shows proportions
    ]
    return [
        write_json(reports / PLOTS / "confusion.json", records),
        figures.confusion_png(
            reports / FIGURES / "confusion.png",
            table,
            ref_names,
            col_names=col_names,
            title="truth by cluster (champion)",
            xlabel="cluster",
            ylabel="truth",
        ),
    ]


def train_cv_config(cfg: AppConfig, rep: dict[str, Any]) -> AppConfig:
    """``cfg`` with the labelled sample and spatial folds train used (``train.json``'s
    ``cv``), logging where the given config differs; ``cfg`` itself for an older report."""
    from geoensemble.app.training_data import CV_KEYS, cv_settings, with_cv_settings

    recorded = rep.get("cv")
    where = Path(cfg.paths.reports) / "train.json"
    if not recorded:
        log.warning(
            "evaluate: %s records no cross-validation settings (written by an older "
            "version): using the config's ensemble.cv",
            where,
        )
        return cfg
    current = cv_settings(cfg)
    differs = [k for k in CV_KEYS if current[k] != recorded.get(k)]
    if differs:
        log.warning(
            "evaluate: the config's %s differ from what train used; evaluating with train's "
            "(recorded in %s), so that the figures are those of the trained models",
            ", ".join(f"{k}={current[k]!r} (train: {recorded.get(k)!r})" for k in differs),
            where,
        )
    return with_cv_settings(cfg, recorded)


@dataclasses.dataclass
class ValidationSample:
    """The validation pixels: map class and reference class of each (codes)."""

    mapped: np.ndarray
    reference: np.ndarray
    names: dict[int, str]  # every code's name: the training classes, then new ones
    off_map: int  # validation pixels where the map has no class (NaN features)


def validation_sample(
    cfg: AppConfig,
    feats: xr.Dataset,
    names: list[str],
    model: Any,
    class_names: dict[int, str],
    nan_threshold: int,
) -> ValidationSample:
    """``data.validation`` on the features' grid, with the champion's class at each pixel.

    Reference classes are matched to the training classes by name (a name training never
    saw gets a new code). Pixels where the map has no class (more NaN features than the
    threshold) are left out and counted.

    Raises
    ------
    ConfigError
        If a validation pixel is also a training label (the sample must be independent).
    """
    from geoensemble.features.sample import pixels_at

    v = cfg.data.validation
    val = read_validation(cfg, feats)
    rows, cols = np.nonzero(val.mask)
    check_independent(cfg, rows, cols)
    ref, names_out = reference_codes(val, rows, cols, class_names)
    X, ok = pixels_at(feats, names, rows, cols, nan_threshold=nan_threshold)
    if not ok.any():
        raise EmptyLayerError(
            f"none of the {rows.size} pixels of data.validation.path={v.path} lies on the "
            f"map's valid pixels: check its CRS and extent against the scene"
        )
    if not ok.all():
        log.warning(
            "evaluate: %d of %d validation pixels lie where the map has no class (NaN "
            "features): left out of the accuracy and area estimates",
            int((~ok).sum()),
            rows.size,
        )
    mapped = np.asarray(model.predict(X[ok])).astype(np.int64)
    return ValidationSample(mapped, ref[ok], names_out, int((~ok).sum()))


# the labels reader's parameters, fed by data.validation's keys (its target is always classes)
VALIDATION_KEYS = {
    **KEYS,
    "read_labels.attribute": "data.validation.attribute",
    "read_labels.code_attribute": "data.validation.code_attribute",
    "read_labels.layer": "data.validation.layer",
    "read_labels.path": "data.validation.path",
    "read_labels.target": "target",
}


def read_validation(cfg: AppConfig, feats: xr.Dataset) -> Labels:
    """``data.validation`` rasterized onto the features' grid, its errors naming its keys."""
    from geoensemble.io.grid import Grid
    from geoensemble.io.labels import read_labels
    from geoensemble.io.stack import grid_attrs

    v = cfg.data.validation
    assert v.path is not None
    crs, transform = grid_attrs(feats)
    grid = Grid(crs, transform, (int(feats.sizes["y"]), int(feats.sizes["x"])))
    try:
        return read_labels(
            v.path,
            grid,
            attribute=v.attribute,
            code_attribute=v.code_attribute,
            layer=v.layer,
            target="classes",
        )
    except GeoEnsembleError as exc:  # the reader's arguments are data.validation's keys here
        raise keyed(exc, VALIDATION_KEYS) from None


def check_independent(cfg: AppConfig, rows: np.ndarray, cols: np.ndarray) -> None:
    """Refuse validation pixels (at ``rows``, ``cols``) that are also training labels.

    Raises
    ------
    ConfigError
        Naming how many pixels the two files share.
    """
    from geoensemble.io.labels import load_labels

    train = load_labels(cfg.paths.labels)
    if train is None:
        return
    both = int(train.mask[rows, cols].sum())
    if both:
        raise ConfigError(
            f"data.validation.path={cfg.data.validation.path}: {both} of its {rows.size} "
            f"pixels are also training labels ({cfg.data.labels.path}): a validation sample "
            f"must not be used in training; remove those pixels from one of the two files"
        )


def reference_codes(
    val: Labels, rows: np.ndarray, cols: np.ndarray, class_names: dict[int, str]
) -> tuple[np.ndarray, dict[int, str]]:
    """The validation pixels' classes as the map's codes (matched by name; a class the map
    cannot produce gets a code of its own) and every code's name."""
    code_of = {n: c for c, n in class_names.items()}
    names_out = dict(class_names)
    ref = np.empty(rows.size, dtype=np.int64)
    for c in np.unique(val.array[rows, cols]):
        name = val.classes.get(int(c), f"class_{int(c)}")
        if name not in code_of:  # a class the map cannot produce: a code of its own
            code_of[name] = max(names_out, default=-1) + 1
            names_out[code_of[name]] = name
        ref[val.array[rows, cols] == c] = code_of[name]
    return ref, names_out


def _supervised_assessment(
    cfg: AppConfig, rep: dict[str, Any], champion: Any, metrics: dict[str, Any]
) -> list[Path]:
    """The champion's held-out predictions under train's spatial folds: permutation
    importance, then the regressor's errors or the classifier's accuracy and class areas."""
    from geoensemble.io.stack import open_store

    used, data, names = train_sample(cfg, rep, metrics)
    assert data.y is not None and data.folds is not None
    kind = rep["kind"]
    class_names = {int(k): v for k, v in rep.get("classes", {}).items()}
    feats = open_store(cfg.paths.features)
    threshold = used.features.nan_threshold
    validation = None
    if cfg.data.validation.path and kind == "classifier":  # checked before any report
        validation = validation_sample(cfg, feats, names, champion, class_names, threshold)
        class_names = validation.names
    reports = Path(cfg.paths.reports)
    pred, files = importance(reports, champion, data, names, kind, used.seed, metrics)
    if kind == "regressor":
        return files + regression_scores(reports, data.y, pred, metrics)
    y = data.y.astype(np.int64)
    pred = pred.astype(np.int64)
    # Design-based estimates need the map's class areas over every pixel; otherwise a
    # thinned map gives the (not design-based) point estimates.
    map_counts, step = mapped_counts(
        feats,
        names,
        champion,
        nan_threshold=threshold,
        max_pixels=None if validation is not None else MAX_MAP_PIXELS,
    )
    tables = class_tables(feats, y, pred, map_counts, validation, class_names)
    metrics.update(area_metrics(cfg, tables, validation))
    metrics.update(accuracy_metrics(y, pred, tables, step))
    for row in tables.per_class:
        metrics[f"f1_{row['class']}"] = row["f1"]
    return files + classifier_plots(cfg, tables, y, pred, metrics, validation is not None)


def train_sample(
    cfg: AppConfig, rep: dict[str, Any], metrics: dict[str, Any]
) -> tuple[AppConfig, TrainingData, list[str]]:
    """The labelled sample and spatial folds train used, drawn again, with the config that
    draws them and the feature names; the settings used go to ``metrics``.

    Raises
    ------
    InputFileError
        If the pixels or folds differ from train's (the features or labels changed since).
    """
    from geoensemble.app.training_data import training_data

    reports = Path(cfg.paths.reports)
    used = train_cv_config(cfg, rep)
    quiet = dataclasses.replace(used, ensemble=dataclasses.replace(used.ensemble, previews=False))
    data, names, facts = training_data(quiet)
    recorded = rep.get("cv")
    if recorded and facts["cv"]["digest"] != recorded.get("digest"):
        raise InputFileError(
            f"the labelled pixels or their spatial folds differ from those train used "
            f"({reports / 'train.json'}): the features or labels changed since; run train "
            f"again (dvc repro train) before evaluate"
        )
    metrics["cv"] = {k: v for k, v in facts["cv"].items() if k != "digest"}
    metrics["cv_from"] = "train.json" if recorded else "config"
    return used, data, names


def importance(
    reports: Path,
    model: Any,
    data: TrainingData,
    names: list[str],
    kind: str,
    seed: int,
    metrics: dict[str, Any],
) -> tuple[np.ndarray, list[Path]]:
    """The held-out predictions of ``model`` fold by fold, and its permutation importance
    per feature (JSON and figure); the top feature goes to ``metrics``."""
    from geoensemble.ensemble import figures
    from geoensemble.ensemble.assessment import fold_permutation_importance

    assert data.y is not None and data.folds is not None
    pred, imp, imp_sd = fold_permutation_importance(
        model,
        data.X,
        data.y,
        data.folds,
        scoring="accuracy" if kind == "classifier" else "r2",
        seed=seed,
    )
    order = np.argsort(-imp)
    rows = [
        {"feature": names[i], "importance": float(imp[i]), "std": float(imp_sd[i])} for i in order
    ]
    metrics["top_feature"] = names[int(order[0])]
    return pred, [
        write_json(reports / PLOTS / "importance.json", rows),
        figures.bars_png(
            reports / FIGURES / "importance.png",
            [r["feature"] for r in rows],
            {"importance": [r["importance"] for r in rows]},
            errors={"importance": [r["std"] for r in rows]},
            title="permutation importance (held-out, spatial folds)",
            ylabel="drop of " + ("accuracy" if kind == "classifier" else "R2"),
        ),
    ]


def regression_scores(
    reports: Path, y: np.ndarray, pred: np.ndarray, metrics: dict[str, Any]
) -> list[Path]:
    """RMSE, MAE and R2 of the held-out predictions (to ``metrics``), and their scatter."""
    from sklearn.metrics import mean_absolute_error, mean_squared_error, r2_score

    metrics.update(
        rmse=float(np.sqrt(mean_squared_error(y, pred))),
        mae=float(mean_absolute_error(y, pred)),
        r2=float(r2_score(y, pred)),
        labelled_pixels=int(y.size),
    )
    scatter = [{"actual": float(a), "predicted": float(p)} for a, p in zip(y, pred, strict=True)]
    return [write_json(reports / PLOTS / "predicted_vs_actual.json", scatter)]


@dataclasses.dataclass
class ClassTables:
    """A classifier's assessment by class: every class seen (codes, names), the held-out
    scores per class, the error matrix of the assessed sample (map class in rows), the
    area-weighted accuracy and its class areas."""

    classes: np.ndarray
    labels: list[str]
    per_class: list[dict[str, Any]]
    counts: np.ndarray
    aw: dict[str, Any]
    areas: list[dict[str, Any]]


def class_tables(
    feats: xr.Dataset,
    y: np.ndarray,
    pred: np.ndarray,
    map_counts: dict[int, int],
    validation: ValidationSample | None,
    class_names: dict[int, str],
) -> ClassTables:
    """Per-class scores of the held-out predictions, and the area-weighted accuracy and class
    areas from the validation sample (else from the held-out predictions)."""
    from sklearn.metrics import precision_recall_fscore_support

    from geoensemble.ensemble.assessment import area_weighted_accuracy, error_matrix
    from geoensemble.io.stack import grid_attrs

    sample_map = validation.mapped if validation is not None else pred
    sample_ref = validation.reference if validation is not None else y
    classes = np.array(
        sorted(
            set(np.unique(y))
            | set(np.unique(pred))
            | set(map_counts)
            | set(np.unique(sample_ref))
            | set(np.unique(sample_map))
        )
    )
    labels = [class_names.get(int(c), f"class_{int(c)}") for c in classes]
    p, r, f, support = precision_recall_fscore_support(y, pred, labels=classes, zero_division=0)
    per_class = [
        {
            "class": labels[k],
            "code": int(c),
            "precision": float(p[k]),
            "recall": float(r[k]),
            "f1": float(f[k]),
            "support": int(support[k]),
        }
        for k, c in enumerate(classes)
    ]
    _, transform = grid_attrs(feats)
    counts = error_matrix(sample_map, sample_ref, classes)
    mapped = np.array([map_counts.get(int(c), 0) for c in classes])
    aw = area_weighted_accuracy(counts, mapped, pixel_area=abs(transform.a * transform.e))
    areas = [
        {
            "class": labels[k],
            "mapped_area": aw["mapped_area"][k],
            "estimated_area": aw["area"][k],
            "ci95": aw["area_ci95"][k] if validation is not None else None,
            "users_accuracy": aw["users_accuracy"][k],
            "producers_accuracy": aw["producers_accuracy"][k],
        }
        for k in range(classes.size)
    ]
    return ClassTables(classes, labels, per_class, counts, aw, areas)


def area_metrics(
    cfg: AppConfig, tables: ClassTables, validation: ValidationSample | None
) -> dict[str, Any]:
    """The area-weighted accuracy: design-based, with intervals and class areas, from a
    validation sample; else a point estimate flagged as not design-based."""
    aw = tables.aw
    if validation is None:
        return {
            "design_based": False,
            "area_weighted_accuracy": aw["overall_accuracy"],
            "area_estimates": (
                "not design-based: computed from the held-out predictions of the training "
                "labels, which are not a probability sample of the map, so no confidence "
                "interval is given. For design-based estimates set data.validation.path to a "
                "separate validation sample (data.validation.design: random or stratified)"
            ),
        }
    ci95 = aw["overall_accuracy_ci95"]
    return {
        "design_based": True,
        "validation_design": cfg.data.validation.design.value,
        "validation_pixels": int(validation.reference.size),
        "validation_off_map": validation.off_map,
        "area_weighted_accuracy": aw["overall_accuracy"],
        "area_weighted_accuracy_se": aw["overall_accuracy_se"],
        "area_weighted_accuracy_ci95": ci95,
        "area_weighted_accuracy_low": aw["overall_accuracy"] - ci95,
        "area_weighted_accuracy_high": aw["overall_accuracy"] + ci95,
        "areas": {
            row["class"]: {k: v for k, v in row.items() if k != "class"} for row in tables.areas
        },
    }


def accuracy_metrics(
    y: np.ndarray, pred: np.ndarray, tables: ClassTables, step: int
) -> dict[str, Any]:
    """Overall held-out accuracy, kappa and macro F1, and the per-class scores."""
    from sklearn.metrics import accuracy_score, cohen_kappa_score, f1_score

    return {
        "accuracy": float(accuracy_score(y, pred)),
        "kappa": float(cohen_kappa_score(y, pred)),
        "f1_macro": float(f1_score(y, pred, average="macro", zero_division=0)),
        "labelled_pixels": int(y.size),
        "unsampled_map_classes": tables.aw["unsampled_map_classes"],
        "map_step": step,
        "area_unit": "map units squared",
        "per_class": {
            row["class"]: {k: row[k] for k in ("precision", "recall", "f1", "support")}
            for row in tables.per_class
        },
    }


def classifier_plots(
    cfg: AppConfig,
    tables: ClassTables,
    y: np.ndarray,
    pred: np.ndarray,
    metrics: dict[str, Any],
    design_based: bool,
) -> list[Path]:
    """The held-out confusion, per-class scores and class areas: JSON for DVC and figures."""
    from geoensemble.ensemble import figures

    reports = Path(cfg.paths.reports)
    classes, labels, per_class = tables.classes, tables.labels, tables.per_class
    records = [
        {"actual": labels[j], "predicted": labels[i]}
        for i, j in zip(np.searchsorted(classes, pred), np.searchsorted(classes, y), strict=True)
    ]
    return [
        write_json(reports / PLOTS / "confusion.json", records),
        write_json(reports / PLOTS / "per_class.json", per_class),
        write_json(reports / PLOTS / "areas.json", tables.areas),
        figures.confusion_png(
            reports / FIGURES / "confusion.png",
            tables.counts.T,  # reference in rows for the figure
            labels,
            title=f"held-out confusion (accuracy {metrics['accuracy']:.3f}, "
            f"kappa {metrics['kappa']:.3f})",
        ),
        figures.bars_png(
            reports / FIGURES / "per_class.png",
            labels,
            {k: [row[k] for row in per_class] for k in ("precision", "recall", "f1")},
            title="per-class precision, recall and F1 (held-out)",
            ylabel="score",
        ),
        areas_png(cfg, tables, design_based),
    ]


def areas_png(cfg: AppConfig, tables: ClassTables, design_based: bool) -> Path:
    """Mapped and estimated class areas, with their intervals when design-based."""
    from geoensemble.ensemble import figures

    aw = tables.aw
    return figures.bars_png(
        Path(cfg.paths.reports) / FIGURES / "areas.png",
        tables.labels,
        {"mapped": aw["mapped_area"], "estimated": aw["area"]},
        errors={"estimated": aw["area_ci95"]} if design_based else None,
        title=(
            f"class areas, {cfg.data.validation.design.value} validation sample "
            f"(area-weighted accuracy {aw['overall_accuracy']:.3f} "
            f"+- {aw['overall_accuracy_ci95']:.3f})"
            if design_based
            else f"class areas, NOT design-based (held-out training labels; "
            f"area-weighted accuracy {aw['overall_accuracy']:.3f}, no interval)"
        ),
        ylabel="area (map units squared)",
    )

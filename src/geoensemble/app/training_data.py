"""The members' training data as the config decides it, for the train and evaluate stages.

Train draws the sample and records its settings (:data:`CV_KEYS`) in ``train.json``; evaluate
draws the very same labelled sample and spatial folds again from those settings
(:func:`with_cv_settings`), so that its held-out figures are those of the trained models.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

from geoensemble.app.config import AppConfig
from geoensemble.errors import ConfigError

if TYPE_CHECKING:
    import xarray as xr

    from geoensemble.ensemble.search import TrainingData
    from geoensemble.ensemble.training import Drawn
    from geoensemble.io.labels import Labels

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

    Raises
    ------
    ConfigError
        If a supervised model finds no labels, or labels of the other target.
    """
    from geoensemble.ensemble.training import draw_training_data
    from geoensemble.io.stack import open_store, store_meta

    feats = open_store(cfg.paths.features)
    names = store_meta(cfg.paths.features).get("feature_names") or [str(v) for v in feats.data_vars]
    kind = cfg.model.kind.value
    facts: dict[str, Any] = {"kind": kind}
    labels = None if kind == "cluster" else checked_labels(cfg)
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
        facts.update(labelled_facts(drawn, labels, settings))
    if cfg.ensemble.previews:
        _add_preview(data, feats, names, cfg)
    return data, names, facts


def checked_labels(cfg: AppConfig) -> Labels:
    """The labels stage's labels for a supervised model, of the target its kind needs.

    Raises
    ------
    ConfigError
        If there are none, or they are values for a classifier (classes for a regressor).
    """
    from geoensemble.io.labels import load_labels

    kind = cfg.model.kind.value
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
    return labels


def labelled_facts(drawn: Drawn, labels: Labels, settings: dict[str, Any]) -> dict[str, Any]:
    """What the report records of a labelled sample: its classes, fold sizes, the settings
    and digest that let evaluate check it draws the same folds, and the NaN pixels dropped."""
    from geoensemble.ensemble.folds import folds_digest

    ls, folds = drawn.labelled, drawn.folds
    assert ls is not None
    return {
        "classes": {str(k): v for k, v in labels.classes.items()},
        "folds": [int(f.test.size) for f in folds],
        "cv": {
            **settings,
            "fold_sizes": [int(f.test.size) for f in folds],
            "buffered": [int(f.buffered.size) for f in folds],
            "digest": folds_digest(ls.rows, ls.cols, folds),
        },
        "dropped_nan": _keyed_fix(ls.dropped),
    }


def _keyed_fix(dropped: dict[str, Any]) -> dict[str, Any]:
    """The dropped pixels' report, its ``fix`` naming the config keys to set."""
    from geoensemble.app.keys import render
    from geoensemble.ensemble.training import NAN_FIX_ARGUMENTS

    if "fix" not in dropped:
        return dropped
    return {**dropped, "fix": render(dropped["fix"], NAN_FIX_ARGUMENTS)}


def _add_preview(data: TrainingData, feats: xr.Dataset, names: list[str], cfg: AppConfig) -> None:
    """A thinned grid of the scene on ``data``, on which members' maps are previewed."""
    from geoensemble.ensemble.preview import preview_grid

    grid = preview_grid(
        feats, names, size=cfg.ensemble.preview_size, nan_threshold=cfg.features.nan_threshold
    )
    data.preview_X, data.preview_mask = grid.X, grid.mask

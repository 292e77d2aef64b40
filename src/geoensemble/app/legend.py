"""The legend of a predict run from the config: class names from the labels or the
registry, cluster names matched against a reference (see :mod:`geoensemble.predict.legend`)."""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path

import numpy as np
import xarray as xr

from geoensemble.app.config import AppConfig
from geoensemble.errors import InputFileError
from geoensemble.io.limits import read_json
from geoensemble.predict.combine import REGRESSOR, ClassScheme
from geoensemble.predict.legend import (
    Legend,
    aligned_scheme,
    name_clusters,
)
from geoensemble.predict.models import CLUSTER, LoadedMember, final_step

log = logging.getLogger("geoensemble")


def class_legend(cfg: AppConfig, members: list[LoadedMember]) -> Legend:
    """The scheme of classifiers and regressors, named as the module docstring says."""
    if members[0].kind == REGRESSOR:
        return Legend(ClassScheme.of(members), "none")
    labels = np.unique(np.concatenate([final_step(m.model).classes_ for m in members]))
    if labels.dtype.kind not in "iu":
        return Legend(ClassScheme.of(members, source="model"), "model")
    wanted = {str(v) for v in labels}
    for m in members:
        if m.class_names and wanted <= set(m.class_names):
            src = f"model {m.uri}"
            return Legend(ClassScheme.of(members, m.class_names, source=src), src)
    names = labels_names(cfg)
    if names and wanted <= set(names):
        src = f"labels {Path(cfg.paths.labels) / 'classes.json'}"
        return Legend(ClassScheme.of(members, names, source=src), src)
    return Legend(ClassScheme.of(members), "none")


def labels_names(cfg: AppConfig) -> dict[str, str]:
    """Class code -> name of the project's labels (``classes.json``), or ``{}``."""
    from geoensemble.io.labels import CLASSES_FILE

    js = Path(cfg.paths.labels) / CLASSES_FILE
    try:
        meta = read_json(js)
    except InputFileError:  # over the size limit: say so rather than drop the names
        raise
    except (OSError, ValueError):
        return {}
    if meta.get("target") != "classes" or not isinstance(meta.get("classes"), dict):
        return {}
    return {str(k): str(v) for k, v in meta["classes"].items()}


def cluster_legend(
    cfg: AppConfig, members: list[LoadedMember], scene: xr.Dataset, union: list[str]
) -> Legend:
    """Aligned cluster codes (on ``scene``), named after the reference where there is one."""
    scheme = aligned_scheme(members, scene, union)
    ref = reference(cfg)
    if ref is None:
        return Legend(scheme, "none")
    codes, class_names, source = ref
    # the evaluate stage's sample (size, seed, NaN rule), so that its truth-by-cluster table
    # and the maps give the same clusters the same names and shares
    found = name_clusters(
        cfg.paths.features,
        members,
        scheme,
        codes,
        class_names,
        sample_size=cfg.features.sample.size,
        seed=cfg.seed + 7,
        nan_threshold=cfg.features.nan_threshold,
    )
    if found is None:
        return Legend(scheme, "none")
    matches, by_map = found
    named = replace(
        scheme,
        names=[m.name for m in matches],
        colours=[m.colour for m in matches],
        source=source,
        names_by_map=by_map,
    )
    return Legend(named, source, [m.as_dict() for m in matches])


def reference(cfg: AppConfig) -> tuple[np.ndarray, dict[int, str], str] | None:
    """Reference classes on the training features' grid: ``(codes, names, source)``, codes
    -1 where unknown; from ``data.truth`` if it exists, else the labels of ``paths.labels``.
    None (with a log line saying why) when there is none or it cannot be used: naming is an
    aid, so it never stops a prediction."""
    from geoensemble.errors import GeoEnsembleError
    from geoensemble.io.labels import CLASSES_FILE, load_labels

    truth = cfg.data.truth
    labels_js = Path(cfg.paths.labels) / CLASSES_FILE
    try:
        if truth and Path(truth).is_file():
            return truth_reference(cfg, truth)
        if labels_js.is_file():
            lab = load_labels(cfg.paths.labels)
            if lab is not None and lab.target == "classes":
                codes = np.where(lab.mask, lab.array.astype(np.int64), -1)
                return codes, lab.classes, f"labels {labels_js}"
    except (GeoEnsembleError, OSError, ValueError, KeyError) as exc:
        log.warning("predict: clusters keep neutral names: %s", exc)
        return None
    log.info(
        "predict: no truth raster (data.truth) or class labels (paths.labels): clusters keep "
        "neutral names (cluster <code>)"
    )
    return None


def truth_reference(cfg: AppConfig, truth: str) -> tuple[np.ndarray, dict[int, str], str] | None:
    """The truth raster as reference codes, if it lies on the training features' grid."""
    from geoensemble.io.geotiff import read_band
    from geoensemble.io.labels import raster_class_names
    from geoensemble.io.stack import grid_attrs, open_store

    arr, _, transform, nodata = read_band(truth)
    if transform != grid_attrs(open_store(cfg.paths.features))[1]:
        log.warning(
            "predict: clusters keep neutral names: data.truth=%s is not on the grid of "
            "the training features %s (resample it onto that grid)",
            truth,
            cfg.paths.features,
        )
        return None
    unknown = arr == (255 if nodata is None else nodata)
    codes = np.where(unknown, -1, arr.astype(np.int64))
    return codes, raster_class_names(truth), f"truth {truth}"


def scheme_for(
    cfg: AppConfig, members: list[LoadedMember], scene: xr.Dataset, union: list[str]
) -> Legend:
    """The shared codes, names and colours of one prediction run (see the module docstring)."""
    if members[0].kind == CLUSTER:
        return cluster_legend(cfg, members, scene, union)
    return class_legend(cfg, members)

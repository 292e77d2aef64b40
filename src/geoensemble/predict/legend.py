"""What the codes of a map mean: aligned clusters, class names and colours.

Classifiers
    A class is named, in this order, by the model itself (string classes such as
    ``developed``), by the names recorded with the registered model at training
    (:data:`geoensemble.classes.CLASS_NAMES_TAG`), or by the project's labels
    (``<paths.labels>/classes.json``) when they name every class of the model; otherwise
    ``class <code>``.

Clusterers
    Cluster codes of different members mean nothing to each other, so before any vote every
    member's codes are matched to the first member's (the champion's) on a seeded sample of
    valid pixels (:func:`geoensemble.predict.combine.align_clusters`). Then, when a reference
    exists (the ``data.truth`` raster, else the training labels of ``paths.labels``), every
    shared code is named after the reference class it mostly holds on a seeded sample of the
    training features (:func:`geoensemble.classes.match_clusters`: ``water (91 %)``, or
    ``cluster 3`` below the threshold), and coloured with that class's colour.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from geoensemble.config import AppConfig
from geoensemble.predict.combine import CLUSTER, REGRESSOR, ClassScheme, align_clusters
from geoensemble.predict.models import Member, final_step, n_classes_of

log = logging.getLogger("geoensemble")

#: Pixels sampled to align cluster codes, and to name clusters after the reference.
ALIGN_SEED = 0
ALIGN_SAMPLE = 20_000
NAME_SAMPLE = 50_000


@dataclass
class Legend:
    """The scheme of a run and how its names were found (for tags and the MLflow run)."""

    scheme: ClassScheme
    source: str  # e.g. "truth data/raw/labels/truth.tif", "model", "none"
    clusters: list[dict[str, Any]] = field(default_factory=list)  # ClusterMatch.as_dict()

    def as_dict(self) -> dict[str, Any]:
        s = self.scheme
        colours = s.colour_table()
        out: dict[str, Any] = {
            "kind": s.kind,
            "source": self.source,
            "classes": [
                {
                    "code": int(c),
                    "name": n,
                    "colour": "#{:02x}{:02x}{:02x}".format(*colours[int(c)]),
                }
                for c, n in zip(s.codes, s.names, strict=True)
            ],
        }
        if s.kind == CLUSTER:
            from geoensemble.classes import MATCH_MIN_PIXELS, MATCH_SHARE

            out["match_rule"] = {"min_share": MATCH_SHARE, "min_pixels": MATCH_MIN_PIXELS}
            out["clusters"] = self.clusters
            out["aligned_to"] = "member 0 (the first model: the champion)"
        return out


def member_tables(X: np.ndarray, union: list[str], members: list[Member]) -> list[np.ndarray]:
    """Each member's columns of a table whose columns are ``union``."""
    idx = {n: i for i, n in enumerate(union)}
    return [np.ascontiguousarray(X[:, [idx[n] for n in m.feature_names]]) for m in members]


def class_legend(cfg: AppConfig, members: list[Member]) -> Legend:
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
        meta = json.loads(js.read_text())
    except (OSError, ValueError):
        return {}
    if meta.get("target") != "classes" or not isinstance(meta.get("classes"), dict):
        return {}
    return {str(k): str(v) for k, v in meta["classes"].items()}


def aligned_scheme(members: list[Member], scene: xr.Dataset, union: list[str]) -> ClassScheme:
    """The class scheme of clustering ``members`` with their codes matched to the first's.

    The matching sample is drawn with a fixed seed, so the stage and the Python API align the
    same members the same way.
    """
    from geoensemble.features.sample import sample_pixels

    recode = None
    if len(members) > 1:
        # Only fully valid pixels: every member can predict them whatever its NaN handling.
        sample = sample_pixels(scene, union, size=ALIGN_SAMPLE, seed=ALIGN_SEED)
        preds = [
            np.asarray(m.model.predict(x))
            for m, x in zip(members, member_tables(sample.X, union, members), strict=True)
        ]
        recode = align_clusters(preds, [n_classes_of(m.model) for m in members])
    return ClassScheme.of(members, recode=recode)


def cluster_legend(
    cfg: AppConfig, members: list[Member], scene: xr.Dataset, union: list[str]
) -> Legend:
    """Aligned cluster codes (on ``scene``), named after the reference where there is one."""
    scheme = aligned_scheme(members, scene, union)
    ref = reference(cfg)
    if ref is None:
        return Legend(scheme, "none")
    codes, class_names, source = ref
    matches = name_clusters(cfg, members, scheme, codes, class_names)
    if matches is None:
        return Legend(scheme, "none")
    named = replace(
        scheme,
        names=[m.name for m in matches],
        colours=[m.colour for m in matches],
        source=source,
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


def name_clusters(
    cfg: AppConfig,
    members: list[Member],
    scheme: ClassScheme,
    codes: np.ndarray,
    class_names: dict[int, str],
) -> list[Any] | None:
    """:class:`~geoensemble.classes.ClusterMatch` of every shared code, from each code's own
    member (the champion for its codes, the member an extra code belongs to otherwise),
    on a seeded sample of the training features' reference pixels. None when the
    training features cannot be used (missing, other grid or features)."""
    from geoensemble.classes import match_clusters
    from geoensemble.errors import GeoEnsembleError
    from geoensemble.features.sample import sample_pixels
    from geoensemble.io.stack import open_store

    union = list(dict.fromkeys(n for m in members for n in m.feature_names))
    try:
        feats = open_store(cfg.paths.features)
        missing = [n for n in union if n not in feats]
        if missing or codes.shape != (feats.sizes["y"], feats.sizes["x"]):
            why = f"it lacks {missing}" if missing else f"its grid is not {codes.shape}"
            log.warning(
                "predict: clusters keep neutral names: the reference cannot be compared with "
                "the training features %s (%s)",
                cfg.paths.features,
                why,
            )
            return None
        # The evaluate stage's sample (size, seed, NaN rule), so that its truth-by-cluster
        # table and the maps give the same clusters the same names and shares.
        sample = sample_pixels(
            feats,
            union,
            size=min(cfg.features.sample.size, NAME_SAMPLE),
            seed=cfg.seed + 7,
            nan_threshold=cfg.features.nan_threshold,
            labels=codes.astype(np.int64),
        )
    except GeoEnsembleError as exc:
        log.warning("predict: clusters keep neutral names: %s", exc)
        return None
    assert sample.y is not None
    tables = member_tables(sample.X, union, members)
    aligned = [
        scheme.positions(np.asarray(m.model.predict(x)), i)
        for i, (m, x) in enumerate(zip(members, tables, strict=True))
    ]
    # Each code is judged on the pixels of the member it belongs to: the champion for its
    # own codes, the member an extra code was created for otherwise.
    k0 = n_classes_of(members[0].model)
    owner = np.zeros(scheme.labels.size, dtype=np.int64)
    for i, lookup in enumerate(scheme.recode):
        owner[lookup[lookup >= k0]] = i
    clusters = np.concatenate([a[owner[a] == i] for i, a in enumerate(aligned)])
    ref = np.concatenate([sample.y[owner[a] == i] for i, a in enumerate(aligned)])
    return match_clusters(clusters, ref, [int(c) for c in scheme.codes], class_names)


def scheme_for(
    cfg: AppConfig, members: list[Member], scene: xr.Dataset, union: list[str]
) -> Legend:
    """The shared codes, names and colours of one prediction run (see the module docstring)."""
    if members[0].kind == CLUSTER:
        return cluster_legend(cfg, members, scene, union)
    return class_legend(cfg, members)

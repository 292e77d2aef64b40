"""Assemble what members train on: the pixel sample, or the labelled pixels and their folds."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import xarray as xr

from geoensemble.ensemble import defaults
from geoensemble.ensemble.folds import Fold
from geoensemble.ensemble.member import TrainingData
from geoensemble.errors import EmptyLayerError
from geoensemble.features.sample import Sample, balanced_quotas, pixels_at
from geoensemble.io.labels import Labels

log = logging.getLogger("geoensemble")
# The arguments the dropped pixels' ``fix`` (and its warning) names (see geoensemble.errors).
NAN_FIX_ARGUMENTS = {
    "nan_threshold": "draw_training_data.nan_threshold",
    "impute": "ensemble_pipeline.impute",
}


def labelled_sample(
    ds: xr.Dataset,
    names: list[str],
    labels: Labels,
    *,
    size: int,
    seed: int,
    nan_threshold: int = 0,
    stratify: bool = False,
) -> Sample:
    """The features at labelled pixels (at most ``size`` of them, a seeded draw).

    The draw is uniform, or with ``stratify`` (class labels only) an equal share per class,
    rare classes keeping all their pixels. Labels are sparse,
    so only their pixels are read (pointwise, chunk by chunk).
    """
    rows, cols = np.nonzero(labels.mask)
    rng = np.random.default_rng(seed)
    if stratify and labels.target != "value" and rows.size > size:
        codes = labels.array[rows, cols]
        classes, counts = np.unique(codes, return_counts=True)
        quotas = balanced_quotas(dict(zip(classes.tolist(), counts.tolist(), strict=True)), size)
        pick = np.sort(
            np.concatenate(
                [
                    rng.choice(np.flatnonzero(codes == c), size=q, replace=False)
                    for c, q in quotas.items()
                ]
            )
        )
        rows, cols = rows[pick], cols[pick]
    elif rows.size > size:
        pick = np.sort(rng.choice(rows.size, size=size, replace=False))
        rows, cols = rows[pick], cols[pick]
    X, ok = pixels_at(ds, names, rows, cols, nan_threshold=nan_threshold)
    if not ok.any():
        raise EmptyLayerError(
            f"none of the {rows.size} labelled pixels has valid features: check that the "
            f"labels ({labels.source}) lie inside the scene's footprint"
        )
    dropped = nan_dropped(X, labels.array[rows, cols], ok, names, labels, nan_threshold)
    raw = labels.array[rows[ok], cols[ok]]
    y = raw.astype(np.float64) if labels.target == "value" else raw.astype(np.int64)
    return Sample(X=X[ok], rows=rows[ok], cols=cols[ok], names=names, y=y, dropped=dropped)


def nan_dropped(
    X: np.ndarray,
    codes: np.ndarray,
    ok: np.ndarray,
    names: list[str],
    labels: Labels,
    nan_threshold: int,
) -> dict[str, Any]:
    """Which labelled pixels (and classes) the NaN policy dropped, logged as a warning.

    Returns
    -------
    dict
        ``pixels`` dropped of ``labelled``; per class name its ``dropped`` and ``labelled``
        counts (classes with drops only); ``classes_lost`` (every pixel dropped); ``nan_in``:
        NaN count per feature among the dropped pixels; ``fix``, naming the arguments of
        :data:`NAN_FIX_ARGUMENTS`. Empty when none is dropped.
    """
    bad = ~ok
    if not bad.any():
        return {}
    out: dict[str, Any] = {"pixels": int(bad.sum()), "labelled": int(ok.size)}
    if labels.target != "value":
        out["classes"], out["classes_lost"] = _dropped_by_class(codes, bad, labels)
    nan_in = np.isnan(X[bad]).sum(axis=0)
    out["nan_in"] = {n: int(k) for n, k in zip(names, nan_in, strict=True) if k}
    n_nan = np.isnan(X[bad]).sum(axis=1)
    partial = n_nan < X.shape[1]  # all-NaN pixels (off the footprint) no threshold keeps
    out["all_features_nan"] = int((~partial).sum())
    if partial.any():
        out["fix"] = (
            f"set nan_threshold={int(n_nan[partial].max())} with impute=median (or mean, "
            f"constant) to keep them, or fill the NaN of layer(s) {sorted(out['nan_in'])} "
            f"upstream"
        )
    else:
        out["fix"] = "move the labels inside the scene's footprint (every feature is NaN there)"
    per_class = "; ".join(
        f"{k}: {v['dropped']} of {v['labelled']}"
        + (" (the whole class)" if k in out.get("classes_lost", []) else "")
        for k, v in out.get("classes", {}).items()
    )
    log.warning(
        "labelled pixels dropped: %d of %d (%.1f %%) have more than nan_threshold=%d "
        "NaN features (NaN in %s)%s. Fix: %s",
        out["pixels"],
        out["labelled"],
        100 * out["pixels"] / out["labelled"],
        nan_threshold,
        ", ".join(f"{n}: {k}" for n, k in out["nan_in"].items()),
        f"; by class: {per_class}" if per_class else "",
        out["fix"],
        extra={"arguments": NAN_FIX_ARGUMENTS},
    )
    return out


def _dropped_by_class(
    codes: np.ndarray, bad: np.ndarray, labels: Labels
) -> tuple[dict[str, dict[str, int]], list[str]]:
    """Per class with drops, its ``dropped`` and ``labelled`` pixels; the classes that lost
    every pixel."""
    classes: dict[str, dict[str, int]] = {}
    for c in np.unique(codes[bad]):
        name = labels.classes.get(int(c), f"class_{int(c)}")
        classes[name] = {
            "dropped": int((bad & (codes == c)).sum()),
            "labelled": int((codes == c).sum()),
        }
    return classes, [k for k, v in classes.items() if v["dropped"] == v["labelled"]]


@dataclass(frozen=True)
class Drawn:
    """Training data drawn from a feature dataset, with what the train report records."""

    data: TrainingData
    pixels: int
    labelled: Sample | None = None
    folds: list[Fold] = field(default_factory=list)


def draw_training_data(
    ds: xr.Dataset,
    names: list[str],
    labels: Labels | None,
    *,
    kind: str,
    size: int,
    seed: int,
    nan_threshold: int = 0,
    stratify: bool = False,
    n_folds: int = defaults.CV_FOLDS,
    block_size: int = defaults.CV_BLOCK,
    buffer: int = 0,
    cv: Any = None,
) -> Drawn:
    """The members' training data: a seeded sample of valid pixels for clusterers; the
    labelled pixels with their spatial block folds for classifiers and regressors.

    The train stage and :func:`geoensemble.fit_ensemble` both draw through here, so that
    the same settings give the same sample. ``cv`` (a scikit-learn splitter, e.g.
    :class:`~geoensemble.ensemble.spatialcv.SpatialBlockCV`) replaces the spatial folds of
    ``n_folds``, ``block_size`` and ``buffer``: its ``split`` gets the samples' ``(row,
    col)`` grid positions as ``groups``.
    """
    from geoensemble.ensemble.folds import spatial_folds
    from geoensemble.features.sample import sample_pixels

    if kind == "cluster":
        s = sample_pixels(ds, names, size=size, seed=seed, nan_threshold=nan_threshold)
        return Drawn(TrainingData(X=s.X), len(s))
    assert labels is not None  # the callers say which labels are missing, in their terms
    ls = labelled_sample(
        ds, names, labels, size=size, seed=seed, nan_threshold=nan_threshold, stratify=stratify
    )
    assert ls.y is not None  # drawn where labels are
    if cv is None:
        folds = spatial_folds(
            ls.rows, ls.cols, n_folds=n_folds, block_size=block_size, seed=seed, buffer=buffer
        )
    else:
        where = np.column_stack([ls.rows, ls.cols])
        folds = [Fold(np.asarray(tr), np.asarray(te)) for tr, te in cv.split(ls.X, ls.y, where)]
    classes = np.unique(ls.y) if kind == "classifier" else None
    data = TrainingData(X=ls.X, y=ls.y, folds=folds, classes=classes)
    return Drawn(data, len(ls), ls, folds)

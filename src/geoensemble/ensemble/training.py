"""Assemble what members train on: the pixel sample, or the labelled pixels and their folds."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import xarray as xr

from geoensemble.errors import EmptyLayerError
from geoensemble.features.sample import balanced_quotas
from geoensemble.features.table import valid_mask
from geoensemble.io.labels import Labels


@dataclass(frozen=True)
class LabelledSample:
    """Labelled pixels: features, target, grid positions."""

    X: np.ndarray  # (n, features) float32
    y: np.ndarray  # (n,) int64 class codes or float64 values
    rows: np.ndarray
    cols: np.ndarray

    def __len__(self) -> int:
        return int(self.X.shape[0])


def labelled_sample(
    ds: xr.Dataset,
    names: list[str],
    labels: Labels,
    *,
    size: int,
    seed: int,
    nan_threshold: int = 0,
    stratify: bool = False,
) -> LabelledSample:
    """The features at labelled pixels (at most ``size`` of them, a seeded draw).

    The draw is uniform, or with ``stratify`` (class labels only) an equal share per class,
    rare classes keeping all their pixels (``features.sample.stratify``). Labels are sparse,
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
    ry, cx = xr.DataArray(rows, dims="pixel"), xr.DataArray(cols, dims="pixel")
    X = np.stack([ds[n].isel(y=ry, x=cx).to_numpy() for n in names], axis=1).astype(np.float32)
    ok = valid_mask(X.T[:, :, np.newaxis], nan_threshold=nan_threshold)[:, 0]
    if not ok.any():
        raise EmptyLayerError(
            f"none of the {rows.size} labelled pixels has valid features: check that the "
            f"labels ({labels.source}) lie inside the scene's footprint"
        )
    raw = labels.array[rows[ok], cols[ok]]
    y = raw.astype(np.float64) if labels.target == "value" else raw.astype(np.int64)
    return LabelledSample(X=X[ok], y=y, rows=rows[ok], cols=cols[ok])

"""A seeded random sample of valid pixels that never needs the whole scene in memory."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import xarray as xr

from geoensemble.errors import EmptyLayerError
from geoensemble.features.table import to_table, valid_mask


@dataclass(frozen=True)
class Sample:
    """Training pixels: features, grid positions (for spatial folds) and optional labels."""

    X: np.ndarray  # (n, features) float32
    rows: np.ndarray  # (n,) int
    cols: np.ndarray  # (n,) int
    names: list[str]
    y: np.ndarray | None = None

    def __len__(self) -> int:
        return int(self.X.shape[0])


def row_strips(height: int, step: int) -> list[slice]:
    """Row slices of at most ``step`` rows covering ``height``."""
    return [slice(r, min(r + step, height)) for r in range(0, height, step)]


def sample_pixels(
    ds: xr.Dataset,
    names: list[str],
    *,
    size: int,
    seed: int,
    nan_threshold: int = 0,
    strip_rows: int = 512,
    labels: np.ndarray | None = None,
) -> Sample:
    """Uniform sample of at most ``size`` valid pixels, read strip by strip.

    Each valid pixel gets a seeded random key and the ``size`` smallest keys are kept, so the
    result is a uniform sample that depends only on the data and the seed, and memory stays
    at one strip plus the sample. With ``labels`` (a ``(rows, cols)`` array, negative or 255 =
    unlabelled) only labelled valid pixels are candidates.
    """
    rng = np.random.default_rng(seed)
    height = int(ds.sizes["y"])
    keep_keys = np.empty(0)
    keep_X = np.empty((0, len(names)), dtype=np.float32)
    keep_rc = np.empty((0, 2), dtype=np.int64)
    keep_y = np.empty(0, dtype=np.int64)
    for strip in row_strips(height, strip_rows):
        block = np.stack([ds[n].isel(y=strip).to_numpy() for n in names]).astype(np.float32)
        mask = valid_mask(block, nan_threshold=nan_threshold)
        if labels is not None:
            lab = labels[strip]
            mask &= (lab >= 0) & (lab != 255)
        r, c = np.nonzero(mask)
        keys = rng.random(r.size)
        keep_keys = np.concatenate([keep_keys, keys])
        keep_X = np.concatenate([keep_X, to_table(block, mask)])
        keep_rc = np.concatenate([keep_rc, np.stack([r + strip.start, c], axis=1)])
        if labels is not None:
            keep_y = np.concatenate([keep_y, labels[strip][mask].astype(np.int64)])
        if keep_keys.size > size:
            idx = np.argpartition(keep_keys, size)[:size]
            keep_keys, keep_X, keep_rc = keep_keys[idx], keep_X[idx], keep_rc[idx]
            if labels is not None:
                keep_y = keep_y[idx]
    if keep_keys.size == 0:
        raise EmptyLayerError(
            "the features hold no valid pixel to train on: check the "
            "no-data values and features.nan_threshold"
        )
    order = np.argsort(keep_keys, kind="stable")
    return Sample(
        X=keep_X[order],
        rows=keep_rc[order, 0],
        cols=keep_rc[order, 1],
        names=list(names),
        y=keep_y[order] if labels is not None else None,
    )

"""Rasters to tables of valid pixels and back.

Estimators only ever see ``(n_pixels, n_features)`` tables of valid pixels; these functions are
the only place where rasters are flattened, rows dropped by the NaN policy, and predictions put
back on the grid with the no-data value where rows were dropped.
"""

from __future__ import annotations

import numpy as np


def valid_mask(block: np.ndarray, *, nan_threshold: int = 0) -> np.ndarray:
    """Pixels of a ``(features, rows, cols)`` block with at most ``nan_threshold`` NaN layers.

    A pixel whose every layer is NaN is never valid, whatever the threshold.
    """
    nans = np.isnan(block).sum(axis=0)
    return (nans <= nan_threshold) & (nans < block.shape[0])


def to_table(block: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The valid pixels of a ``(features, rows, cols)`` block as ``(n_valid, features)``."""
    return np.ascontiguousarray(block[:, mask].T)


def from_table(
    values: np.ndarray,
    mask: np.ndarray,
    *,
    fill: float | int,
    dtype: np.dtype | str | type | None = None,
) -> np.ndarray:
    """The exact inverse of :func:`to_table` for one value per row: ``fill`` where dropped."""
    out = np.full(mask.shape, fill, dtype=dtype or values.dtype)
    out[mask] = values
    return out

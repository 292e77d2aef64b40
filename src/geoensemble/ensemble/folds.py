"""Spatial block cross-validation: neighbouring pixels never straddle train and test.

Pixels are grouped into square blocks of ``block_size`` x ``block_size`` grid cells; whole
blocks are dealt to folds, so a block (and every pixel in it) is in the test set of exactly one
fold and never in that fold's training set. Blocks are dealt largest
first to the fold with the fewest pixels so far (after a seeded shuffle), which keeps the folds
about equally large even when labels are clustered.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from geoensemble.errors import ConfigError


@dataclass(frozen=True)
class Fold:
    """Row indices of the training and test pixels of one fold."""

    train: np.ndarray
    test: np.ndarray


def block_ids(rows: np.ndarray, cols: np.ndarray, block_size: int) -> np.ndarray:
    """The block each pixel falls in, as one integer per pixel."""
    if block_size < 1:
        raise ConfigError(f"ensemble.cv.block_size={block_size} must be >= 1 (pixels)")
    br = np.asarray(rows, dtype=np.int64) // block_size
    bc = np.asarray(cols, dtype=np.int64) // block_size
    # One integer per block: block columns fit in 2**31, plenty for any raster.
    return br * (1 << 31) + bc


def spatial_folds(
    rows: np.ndarray,
    cols: np.ndarray,
    *,
    n_folds: int,
    block_size: int,
    seed: int = 0,
) -> list[Fold]:
    """``n_folds`` folds of whole spatial blocks.

    Parameters
    ----------
    rows, cols
        Grid position of each sample pixel.
    n_folds
        Number of folds (at least 2).
    block_size
        Side of a block in pixels.
    seed
        Seed of the shuffle that breaks ties between equally large blocks.

    Raises
    ------
    ConfigError
        If the pixels fall in fewer blocks than folds (lower ``ensemble.cv.block_size`` or
        ``ensemble.cv.folds``).
    """
    if n_folds < 2:
        raise ConfigError(f"ensemble.cv.folds={n_folds} must be >= 2")
    ids = block_ids(rows, cols, block_size)
    uniq, inverse, counts = np.unique(ids, return_inverse=True, return_counts=True)
    if uniq.size < n_folds:
        raise ConfigError(
            f"the {ids.size} labelled pixels fall in only {uniq.size} spatial block(s) of "
            f"{block_size} px, fewer than ensemble.cv.folds={n_folds}: lower "
            f"ensemble.cv.block_size or ensemble.cv.folds, or add labels"
        )
    rng = np.random.default_rng(seed)
    order = rng.permutation(uniq.size)
    order = order[np.argsort(-counts[order], kind="stable")]
    fold_of_block = np.empty(uniq.size, dtype=np.int64)
    load = np.zeros(n_folds, dtype=np.int64)
    for b in order:
        f = int(np.argmin(load))
        fold_of_block[b] = f
        load[f] += counts[b]
    fold_of_pixel = fold_of_block[inverse]
    idx = np.arange(ids.size)
    return [
        Fold(train=idx[fold_of_pixel != f], test=idx[fold_of_pixel == f]) for f in range(n_folds)
    ]

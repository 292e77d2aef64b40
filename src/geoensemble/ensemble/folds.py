"""Spatial block cross-validation: neighbouring pixels never straddle train and test.

Pixels are grouped into square blocks of ``block_size`` x ``block_size`` grid cells; whole
blocks are dealt to folds, so a block (and every pixel in it) is in the test set of exactly one
fold and never in that fold's training set. Blocks are dealt largest
first to the fold with the fewest pixels so far (after a seeded shuffle), which keeps the folds
about equally large even when labels are clustered.

A block edge still has pixels either side: with ``buffer`` (in pixels), every training pixel
within ``buffer`` pixels (Chebyshev distance, i.e. inside the ``(2 buffer + 1)``-pixel square
around a test pixel) of any test pixel of a fold is left out of that fold's training set (it
stays in its own fold's test set). Test pixels are the labelled pixels of the fold's test
blocks.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np

from geoensemble.errors import ConfigError


@dataclass(frozen=True)
class Fold:
    """Row indices of the training and test pixels of one fold, and of the pixels left out of
    its training set by the buffer."""

    train: np.ndarray
    test: np.ndarray
    buffered: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.int64))


def block_ids(rows: np.ndarray, cols: np.ndarray, block_size: int) -> np.ndarray:
    """The block each pixel falls in, as one integer per pixel."""
    if block_size < 1:
        raise ConfigError(
            f"block_size={block_size} must be >= 1 (pixels)",
            arguments={"block_size": "spatial_folds.block_size"},
        )
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
    buffer: int = 0,
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
    buffer
        Training pixels within this many pixels (Chebyshev) of a test pixel of the fold are
        left out of its training set.

    Raises
    ------
    ConfigError
        If the pixels fall in fewer blocks than folds (lower ``block_size`` or ``n_folds``),
        or the buffer leaves a fold without training pixels.
    """
    if buffer < 0:
        raise ConfigError(
            f"buffer={buffer} must be >= 0 (pixels)", arguments={"buffer": "spatial_folds.buffer"}
        )
    if n_folds < 2:
        raise ConfigError(
            f"n_folds={n_folds} must be >= 2", arguments={"n_folds": "spatial_folds.n_folds"}
        )
    ids = block_ids(rows, cols, block_size)
    uniq, inverse, counts = np.unique(ids, return_inverse=True, return_counts=True)
    if uniq.size < n_folds:
        raise ConfigError(
            f"the {ids.size} labelled pixels fall in only {uniq.size} spatial block(s) of "
            f"block_size={block_size} px, fewer than n_folds={n_folds}: lower block_size or "
            f"n_folds, or add labels",
            arguments={
                "block_size": "spatial_folds.block_size",
                "n_folds": "spatial_folds.n_folds",
            },
        )
    fold_of_pixel = _fold_of_block(counts, n_folds, seed)[inverse]
    return [_fold(f, fold_of_pixel, rows, cols, n_folds, buffer) for f in range(n_folds)]


def _fold_of_block(counts: np.ndarray, n_folds: int, seed: int) -> np.ndarray:
    """The fold of each block (of ``counts`` pixels): largest blocks first (seeded shuffle
    between equal ones), each to the fold with the fewest pixels so far."""
    rng = np.random.default_rng(seed)
    order = rng.permutation(counts.size)
    order = order[np.argsort(-counts[order], kind="stable")]
    fold_of_block = np.empty(counts.size, dtype=np.int64)
    load = np.zeros(n_folds, dtype=np.int64)
    for b in order:
        f = int(np.argmin(load))
        fold_of_block[b] = f
        load[f] += counts[b]
    return fold_of_block


def _fold(
    f: int,
    fold_of_pixel: np.ndarray,
    rows: np.ndarray,
    cols: np.ndarray,
    n_folds: int,
    buffer: int,
) -> Fold:
    """Fold ``f``: its test pixels, and the training pixels less those within ``buffer``."""
    idx = np.arange(fold_of_pixel.size)
    test, train = idx[fold_of_pixel == f], idx[fold_of_pixel != f]
    near = np.zeros(train.size, dtype=bool)
    if buffer > 0:
        near = _within(rows, cols, test, train, buffer)
    if near.all():
        raise ConfigError(
            f"buffer={buffer} leaves fold {f + 1} of {n_folds} without training pixels "
            f"(all {train.size} are within {buffer} px of its test pixels): lower buffer, or "
            f"raise block_size",
            arguments={"buffer": "spatial_folds.buffer", "block_size": "spatial_folds.block_size"},
        )
    return Fold(train=train[~near], test=test, buffered=train[near])


def _within(
    rows: np.ndarray, cols: np.ndarray, test: np.ndarray, train: np.ndarray, buffer: int
) -> np.ndarray:
    """Whether each ``train`` pixel is within ``buffer`` px (Chebyshev) of a ``test`` pixel."""
    from scipy.spatial import cKDTree

    rc = np.stack([np.asarray(rows), np.asarray(cols)], axis=1).astype(np.float64)
    tree = cKDTree(rc[test])
    # Distances are whole pixels: the +0.5 bound only keeps the search short.
    dist, _ = tree.query(rc[train], k=1, p=np.inf, distance_upper_bound=buffer + 0.5)
    return np.asarray(dist <= buffer)


def fold_of_pixel(folds: list[Fold], n: int) -> np.ndarray:
    """The fold (0-based) whose test set holds each of the ``n`` pixels."""
    out = np.full(n, -1, dtype=np.int64)
    for f, fold in enumerate(folds):
        out[fold.test] = f
    return out


def folds_digest(rows: np.ndarray, cols: np.ndarray, folds: list[Fold]) -> str:
    """SHA-256 of the pixels, their test fold and the buffered pixels of each fold: equal
    digests mean the same cross-validation (recorded by train, checked by evaluate)."""
    h = hashlib.sha256()
    n = int(np.asarray(rows).size)
    for a in (rows, cols, fold_of_pixel(folds, n)):
        h.update(np.ascontiguousarray(a, dtype=np.int64).tobytes())
    for fold in folds:
        h.update(b"|" + np.ascontiguousarray(np.sort(fold.buffered), dtype=np.int64).tobytes())
    return h.hexdigest()

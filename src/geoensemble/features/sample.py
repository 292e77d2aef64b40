"""A seeded random sample of valid pixels that never needs the whole scene in memory."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import xarray as xr

from geoensemble.errors import ConfigError, EmptyLayerError, GridMismatchError
from geoensemble.features.table import valid_mask


@dataclass(frozen=True)
class Sample:
    """Drawn pixels as a table: features, grid positions (for spatial folds), and the
    labels (class codes or values) when the pixels were drawn where labels are.

    The one name for a drawn pixel table; :class:`geoensemble.features.table.Table` is a
    whole dataset's valid pixels with what is needed to put them back on the grid.
    """

    X: np.ndarray  # (n, features) float32
    rows: np.ndarray  # (n,) int
    cols: np.ndarray  # (n,) int
    names: list[str]
    y: np.ndarray | None = None
    dropped: dict[str, Any] = field(default_factory=dict)  # labelled pixels the NaN rule dropped

    def __len__(self) -> int:
        return int(self.X.shape[0])


def row_strips(height: int, step: int) -> list[slice]:
    """Row slices of at most ``step`` rows covering ``height``."""
    return [slice(r, min(r + step, height)) for r in range(0, height, step)]


#: Most pixels of one strip (all features): memory stays flat as scenes grow wider.
STRIP_PIXELS = 1 << 20


def chunk_rows(ds: xr.Dataset, names: list[str], default: int = 512) -> int:
    """Rows per strip matching the dataset's ``y`` chunks, so no chunk is read twice, but no
    more than :data:`STRIP_PIXELS` pixels a strip (a wide scene's chunk row is read in
    thinner strips; the keys, drawn in row-major order, and so the sample, are the same)."""
    chunks = ds[names[0]].chunksizes.get("y") if names else None
    rows = int(chunks[0]) if chunks else default
    width = int(ds.sizes.get("x", 1)) if names else 1
    return max(1, min(rows, STRIP_PIXELS // max(1, width)))


@dataclass
class _Reservoir:
    """The ``size`` candidates with the smallest random keys seen so far."""

    n_features: int
    keys: np.ndarray = field(default_factory=lambda: np.empty(0))
    X: np.ndarray = field(init=False)
    rc: np.ndarray = field(default_factory=lambda: np.empty((0, 2), dtype=np.int64))
    y: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.int64))

    def __post_init__(self) -> None:
        self.X = np.empty((0, self.n_features), dtype=np.float32)

    def add(self, keys: np.ndarray, X: np.ndarray, rc: np.ndarray, y: np.ndarray) -> None:
        self.keys = np.concatenate([self.keys, keys])
        self.X = np.concatenate([self.X, X])
        self.rc = np.concatenate([self.rc, rc])
        self.y = np.concatenate([self.y, y])

    def trim(self, size: int) -> None:
        if self.keys.size > size:
            idx = np.argpartition(self.keys, size)[:size]
            self.keys, self.X, self.rc, self.y = (
                self.keys[idx],
                self.X[idx],
                self.rc[idx],
                self.y[idx],
            )


def balanced_quotas(available: dict[int, int], size: int) -> dict[int, int]:
    """An equal share of ``size`` per class; classes with fewer pixels give the rest away."""
    quotas: dict[int, int] = {}
    left = size
    order = sorted(available, key=lambda k: (available[k], k))
    for i, k in enumerate(order):
        share = left // (len(order) - i)
        quotas[k] = min(available[k], share)
        left -= quotas[k]
    return quotas


def sample_pixels(
    ds: xr.Dataset,
    names: list[str],
    *,
    size: int,
    seed: int,
    nan_threshold: int = 0,
    strip_rows: int | None = None,
    labels: np.ndarray | None = None,
    stratify: bool = False,
) -> Sample:
    """Uniform (or class-balanced) sample of at most ``size`` valid pixels, strip by strip.

    Each valid pixel gets a seeded random key and the ``size`` smallest keys are kept, so the
    result is a uniform sample that depends only on the data and the seed, and memory stays
    at one strip plus the sample. With ``labels`` (a ``(rows, cols)`` array, negative or 255 =
    unlabelled) only labelled valid pixels are candidates; with ``stratify`` as well, every
    class gets an equal share of ``size`` (classes with fewer pixels keep all of theirs and the
    rest is shared among the others), which keeps rare classes in the sample.

    Parameters
    ----------
    ds
        Feature layers with dims ``(y, x)``, numpy- or dask-backed.
    names
        Feature names, the columns of ``Sample.X``.
    size
        Most pixels to keep.
    seed
        Seed of the random keys.
    nan_threshold
        Pixels with more NaN features than this are not candidates.
    strip_rows
        Rows read at a time (default: the dataset's ``y`` chunk size).
    labels
        Optional class codes on the grid of ``ds``.
    stratify
        Balance classes (needs ``labels``).

    Raises
    ------
    EmptyLayerError
        When no pixel is a candidate.
    """
    _check_sample_args(ds, size, labels, stratify)
    pools = _draw(ds, names, size, seed, nan_threshold, strip_rows, labels, stratify)
    if not pools:
        raise _no_candidates(labelled=labels is not None)
    return _merged(pools, size, names, labelled=labels is not None)


def _check_sample_args(
    ds: xr.Dataset, size: int, labels: np.ndarray | None, stratify: bool
) -> None:
    """Raise a ConfigError or GridMismatchError for arguments no sample can be drawn with."""
    if size < 1:
        raise ConfigError(f"size={size} must be >= 1", arguments={"size": "sample_pixels.size"})
    if stratify and labels is None:
        raise ConfigError(
            "stratify=true needs class labels (a truth raster or labelled points): give "
            "labels or set stratify=false",
            arguments={"stratify": "sample_pixels.stratify"},
        )
    height, width = int(ds.sizes["y"]), int(ds.sizes["x"])
    if labels is not None and labels.shape != (height, width):
        raise GridMismatchError(
            f"labels of shape {labels.shape} are not on the features' grid "
            f"{(height, width)}: rasterize them onto the same grid"
        )


def _draw(
    ds: xr.Dataset,
    names: list[str],
    size: int,
    seed: int,
    nan_threshold: int,
    strip_rows: int | None,
    labels: np.ndarray | None,
    stratify: bool,
) -> dict[int, _Reservoir]:
    """The reservoirs of candidates after reading every strip: one per class with
    ``stratify``, else one under ``-1``; none when no pixel is a candidate."""
    rng = np.random.default_rng(seed)
    step = strip_rows or chunk_rows(ds, names)
    pools: dict[int, _Reservoir] = {}
    for strip in row_strips(int(ds.sizes["y"]), step):
        block = np.stack([ds[n].isel(y=strip).to_numpy() for n in names]).astype(
            np.float32, copy=False
        )
        mask = valid_mask(block, nan_threshold=nan_threshold)
        if labels is not None:
            lab = labels[strip]
            mask &= (lab >= 0) & (lab != 255)
        r, c = np.nonzero(mask)
        if r.size == 0:
            continue
        keys = rng.random(r.size)
        y = labels[strip][mask].astype(np.int64) if labels is not None else None
        # only the strip's `size` smallest keys (per class with stratify) can be in the
        # sample: table just those, so memory is the strip's keys, not its whole table
        keep = _smallest(keys, y if stratify else None, size)
        if keep is not None:
            keys, r, c = keys[keep], r[keep], c[keep]
            y = y[keep] if y is not None else None
        X = np.ascontiguousarray(block[:, r, c].T)
        del block
        rc = np.stack([r + strip.start, c], axis=1)
        _add(pools, keys, X, rc, y, size=size, stratify=stratify)
    return pools


def _smallest(keys: np.ndarray, y: np.ndarray | None, size: int) -> np.ndarray | None:
    """Sorted indices of the ``size`` smallest ``keys`` (of each class of ``y``); None when
    every key is kept."""
    if y is None:
        if keys.size <= size:
            return None
        return np.sort(np.argpartition(keys, size)[:size])
    parts = []
    for k in np.unique(y):
        idx = np.flatnonzero(y == k)
        if idx.size > size:
            idx = idx[np.argpartition(keys[idx], size)[:size]]
        parts.append(idx)
    return np.sort(np.concatenate(parts))


def _add(
    pools: dict[int, _Reservoir],
    keys: np.ndarray,
    X: np.ndarray,
    rc: np.ndarray,
    y: np.ndarray | None,
    *,
    size: int,
    stratify: bool,
) -> None:
    """Add one strip's candidates to their class's reservoir (or the one reservoir) and keep
    its ``size`` smallest keys."""
    if stratify and y is not None:
        for k in np.unique(y):
            sel = y == k
            pool = pools.setdefault(int(k), _Reservoir(X.shape[1]))
            pool.add(keys[sel], X[sel], rc[sel], y[sel])
            pool.trim(size)
    else:
        pool = pools.setdefault(-1, _Reservoir(X.shape[1]))
        pool.add(keys, X, rc, y if y is not None else np.full(keys.size, -1, dtype=np.int64))
        pool.trim(size)


def _no_candidates(*, labelled: bool) -> EmptyLayerError:
    """The error for features without a single candidate pixel."""
    return EmptyLayerError(
        "the features hold no valid pixel to train on: check the "
        "no-data values and nan_threshold"
        + (" (and that the labels overlap valid pixels)" if labelled else ""),
        arguments={"nan_threshold": "sample_pixels.nan_threshold"},
    )


def _merged(pools: dict[int, _Reservoir], size: int, names: list[str], *, labelled: bool) -> Sample:
    """The sample of at most ``size`` pixels shared among the reservoirs, in key order."""
    quotas = balanced_quotas({k: p.keys.size for k, p in pools.items()}, size)
    for k, p in pools.items():
        p.trim(quotas[k])
    keys = np.concatenate([p.keys for p in pools.values()])
    order = np.argsort(keys, kind="stable")
    X = np.concatenate([p.X for p in pools.values()])[order]
    rc = np.concatenate([p.rc for p in pools.values()])[order]
    y_all = np.concatenate([p.y for p in pools.values()])[order]
    return Sample(
        X=X,
        rows=rc[:, 0],
        cols=rc[:, 1],
        names=list(names),
        y=y_all if labelled else None,
    )


def pixels_at(
    ds: xr.Dataset, names: list[str], rows: np.ndarray, cols: np.ndarray, *, nan_threshold: int
) -> tuple[np.ndarray, np.ndarray]:
    """The features of the pixels at ``(rows, cols)`` (read pointwise, chunk by chunk) as
    a float32 ``(n, features)`` table, and which of them the NaN rule keeps."""
    ry, cx = xr.DataArray(rows, dims="pixel"), xr.DataArray(cols, dims="pixel")
    X = np.stack([ds[n].isel(y=ry, x=cx).to_numpy() for n in names], axis=1).astype(np.float32)
    ok = valid_mask(X.T[:, :, np.newaxis], nan_threshold=nan_threshold)[:, 0]
    return X, ok

"""Rasters to tables of valid pixels and back.

Estimators only ever see ``(n_pixels, n_features)`` tables of valid pixels; these functions are
the only place where rasters are flattened, rows dropped by the NaN policy, and predictions put
back on the grid with the no-data value where rows were dropped.

Two levels: :func:`valid_mask`, :func:`to_table` and :func:`from_table` work on numpy blocks
``(features, rows, cols)`` (what blockwise prediction and sampling use); :func:`flatten` and
:func:`unflatten` work on an ``xarray.Dataset`` (numpy- or dask-backed) and keep the pixel
coordinates, so a table row can always be traced back to its place on the map.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import xarray as xr

from geoensemble.errors import ConfigError, FeatureMismatchError, LayerNotFoundError


def valid_mask(block: np.ndarray, *, nan_threshold: int = 0) -> np.ndarray:
    """Pixels of a ``(features, rows, cols)`` block with at most ``nan_threshold`` NaN layers.

    A pixel whose every layer is NaN is never valid, whatever the threshold.
    """
    if nan_threshold < 0:
        raise ConfigError(
            f"nan_threshold={nan_threshold} is negative: use the number of NaN "
            f"layers (>= 0) a pixel may have and still be used"
        )
    # Layer by layer: a (features, rows, cols) NaN count in int64 would take 4x longer.
    if not block.shape[0]:
        return np.zeros(block.shape[1:], dtype=bool)
    if nan_threshold == 0:
        bad = np.isnan(block[0])
        for layer in block[1:]:
            bad |= np.isnan(layer)
        return ~bad
    nans = np.zeros(block.shape[1:], dtype=np.int32)
    for layer in block:
        nans += np.isnan(layer)
    return (nans <= nan_threshold) & (nans < block.shape[0])


def to_table(block: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The valid pixels of a ``(features, rows, cols)`` block as ``(n_valid, features)``."""
    # Column by column (half the time of transposing block[:, mask]).
    out = np.empty((int(np.count_nonzero(mask)), block.shape[0]), dtype=block.dtype)
    for i, layer in enumerate(block):
        out[:, i] = layer[mask]
    return out


def from_table(
    values: np.ndarray,
    mask: np.ndarray,
    *,
    fill: float | int,
    dtype: np.dtype | str | type | None = None,
) -> np.ndarray:
    """The exact inverse of :func:`to_table`: ``fill`` where rows were dropped.

    ``values`` of shape ``(n_valid,)`` give a ``(rows, cols)`` raster; ``(n_valid, k)`` (for
    example class probabilities) give ``(k, rows, cols)``.
    """
    values = np.asarray(values)
    n_valid = int(np.count_nonzero(mask))
    if values.ndim not in (1, 2) or values.shape[0] != n_valid:
        raise FeatureMismatchError(
            f"cannot put {values.shape} values back on a grid with {n_valid} valid "
            f"pixels: give one row per valid pixel, in table order"
        )
    dt = np.dtype(dtype or values.dtype)
    if values.ndim == 1:
        out = np.full(mask.shape, fill, dtype=dt)
        out[mask] = values
        return out
    stacked = np.full((values.shape[1], *mask.shape), fill, dtype=dt)
    stacked[:, mask] = values.T
    return stacked


@dataclass(frozen=True)
class Table:
    """Valid pixels of a feature dataset as a table, with what is needed to go back.

    Attributes
    ----------
    X
        ``(n_valid, n_features)`` float32, rows in row-major pixel order.
    names
        Feature names, one per column.
    mask
        ``(rows, cols)`` boolean: which pixels became rows.
    y, x
        The dataset's coordinate vectors (cell centres).
    """

    X: np.ndarray
    names: list[str]
    mask: np.ndarray
    y: np.ndarray
    x: np.ndarray

    def __len__(self) -> int:
        return int(self.X.shape[0])

    @property
    def rows(self) -> np.ndarray:
        """Grid row of every table row."""
        return np.nonzero(self.mask)[0]

    @property
    def cols(self) -> np.ndarray:
        """Grid column of every table row."""
        return np.nonzero(self.mask)[1]

    def coords(self) -> tuple[np.ndarray, np.ndarray]:
        """Map coordinates ``(x, y)`` of every table row."""
        r, c = np.nonzero(self.mask)
        return self.x[c], self.y[r]


def flatten(ds: xr.Dataset, names: list[str] | None = None, *, nan_threshold: int = 0) -> Table:
    """The valid pixels of ``ds`` as a :class:`Table` (computes dask-backed data).

    Parameters
    ----------
    ds
        Feature layers with dims ``(y, x)``.
    names
        Columns, in order (default: every data variable).
    nan_threshold
        Pixels with more NaN layers than this are dropped (and never all-NaN pixels).

    Notes
    -----
    This materialises the whole dataset; for scenes larger than memory go block by block
    with :func:`valid_mask`/:func:`to_table` (as prediction and sampling do).
    """
    cols = [str(v) for v in ds.data_vars] if names is None else list(names)
    missing = [n for n in cols if n not in ds.data_vars]
    if missing:
        raise LayerNotFoundError(
            f"cannot flatten: the dataset lacks feature(s) {missing} "
            f"(it has {[str(v) for v in ds.data_vars]})"
        )
    block = np.stack([ds[n].transpose("y", "x").to_numpy() for n in cols]).astype(
        np.float32, copy=False
    )
    mask = valid_mask(block, nan_threshold=nan_threshold)
    return Table(
        X=to_table(block, mask),
        names=cols,
        mask=mask,
        y=np.asarray(ds["y"].to_numpy()) if "y" in ds.coords else np.arange(mask.shape[0]),
        x=np.asarray(ds["x"].to_numpy()) if "x" in ds.coords else np.arange(mask.shape[1]),
    )


def unflatten(
    values: np.ndarray,
    table: Table,
    *,
    fill: float | int = np.nan,
    name: str | list[str] = "prediction",
    dtype: np.dtype | str | type | None = None,
) -> xr.DataArray | xr.Dataset:
    """Put one value (or one row of values) per table row back on the grid.

    ``values`` of shape ``(n_valid,)`` give a ``DataArray`` named ``name``; ``(n_valid, k)``
    give a ``Dataset`` with one variable per column named by the list ``name`` (for example
    the table's own feature names, which makes ``unflatten(table.X, table, name=table.names)``
    the exact inverse of :func:`flatten`). Dropped pixels hold ``fill``.
    """
    coords = {"y": table.y, "x": table.x}
    values = np.asarray(values)
    if np.issubdtype(np.dtype(dtype or values.dtype), np.integer) and isinstance(fill, float):
        if np.isnan(fill):
            raise ConfigError(
                "an integer output cannot hold NaN where pixels were dropped: pass "
                "fill=<no-data value>, e.g. fill=255"
            )
    grid = from_table(values, table.mask, fill=fill, dtype=dtype)
    if grid.ndim == 2:
        return xr.DataArray(grid, dims=("y", "x"), coords=coords, name=str(name))
    names = [f"{name}_{i}" for i in range(grid.shape[0])] if isinstance(name, str) else name
    if len(names) != grid.shape[0]:
        raise FeatureMismatchError(
            f"{len(names)} names {names} for {grid.shape[0]} value columns: give one per column"
        )
    return xr.Dataset(
        {
            n: xr.DataArray(g, dims=("y", "x"), coords=coords)
            for n, g in zip(names, grid, strict=True)
        }
    )

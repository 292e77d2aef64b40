"""Small RGBA previews of a member's map, made on the worker that fitted it.

The preview grid is the features' grid thinned to at most ``size`` pixels on its longer side;
only its valid pixels are predicted. No-data is transparent.
"""

from __future__ import annotations

import numpy as np
import xarray as xr

from geoensemble.classes import palette
from geoensemble.features.table import Table, flatten


def preview_grid(ds: xr.Dataset, names: list[str], *, size: int, nan_threshold: int = 0) -> Table:
    """The valid pixels of every ``step``-th pixel of the features (the longer side at most
    ``size``) as a :class:`~geoensemble.features.table.Table` of that thinned grid."""
    step = max(1, int(np.ceil(max(ds.sizes["y"], ds.sizes["x"]) / size)))
    thin = ds[names].isel(y=slice(None, None, step), x=slice(None, None, step))
    return flatten(thin, names, nan_threshold=nan_threshold)


def preview_rgba(values: np.ndarray, mask: np.ndarray, *, kind: str) -> np.ndarray:
    """An ``(rows, cols, 4)`` uint8 image: class codes in the cluster palette, values in viridis.

    Parameters
    ----------
    values
        One prediction per valid pixel of ``mask``.
    mask
        Where the valid pixels are.
    kind
        ``regressor`` draws continuous values; anything else draws class codes.
    """
    out = np.zeros((*mask.shape, 4), dtype=np.uint8)
    if values.size == 0:
        return out
    if kind == "regressor":
        from matplotlib import colormaps

        v = values.astype(np.float64)
        lo, hi = np.nanpercentile(v, [2, 98])
        rgba = colormaps["viridis"](np.clip((v - lo) / max(hi - lo, 1e-12), 0, 1), bytes=True)
        out[mask] = rgba
        return out
    codes = values.astype(np.int64)
    codes -= min(int(codes.min()), 0)
    colours = np.asarray(palette(int(codes.max()) + 1), dtype=np.uint8)
    out[mask, :3] = colours[codes]
    out[mask, 3] = 255
    return out
